"""
Recursion: answering names outside our zones, from the cache or
upstream.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import random
import socket
from collections.abc import Sequence
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.names import dns
from twisted.python.failure import Failure
from zope.interface import implementer

from appnet.dns.answer import Answer
from appnet.dns.cache import Cache, Trust
from appnet.dns.errors import ResolutionFailed, ZoneError
from appnet.dns.exchange import Exchange, ExchangeFailed, Exchanger
from appnet.dns.interfaces import IRecursiveResolver
from appnet.dns.names import ancestors, display, isSubdomain, normalize
from appnet.dns.records import typeName
from appnet.dns.wire import EDNS, newQuery
from appnet.dns.zonefile import parseZone
from appnet.status import Status

__all__ = [
    "ForwardingResolver",
    "Hints",
    "IterativeResolver",
    "Recursor",
    "parseHints",
]

Address = tuple[str, int]

#: CNAMEs followed for one question.
MAX_CHAIN = 10
#: Upstream queries one client question may cause, nested lookups included.
MAX_QUERIES = 48
#: Referrals followed for one name.
MAX_REFERRALS = 16
#: Nesting of lookups for the addresses of name servers without glue.
MAX_DEPTH = 4


@define
class _Budget:
    """
    What one client question may still spend.
    """

    left: list[int]
    depth: int = 0
    path: frozenset[tuple[bytes, int]] = frozenset()

    @classmethod
    def fresh(cls) -> _Budget:
        return cls([MAX_QUERIES])

    def nested(self, name: bytes, type: int) -> _Budget:
        return _Budget(self.left, self.depth + 1, self.path | {(name, type)})

    def spend(self, name: bytes) -> None:
        self.left[0] -= 1
        if self.left[0] < 0:
            raise ResolutionFailed(display(name), "too many upstream queries")


@define
class _Referral:
    """A reply that sends us to a zone's servers further down."""

    zone: bytes
    servers: list[bytes]


@define
class _Shared:
    """One resolution in flight and the clients waiting for it."""

    waiters: list[Deferred[Answer]] = field(factory=list)


def _group(
    records: Sequence[dns.RRHeader],
) -> dict[tuple[bytes, int], list[dns.RRHeader]]:
    grouped: dict[tuple[bytes, int], list[dns.RRHeader]] = {}
    for record in records:
        key = (normalize(record.name), record.type)
        grouped.setdefault(key, []).append(record)
    return grouped


def _target(record: dns.RRHeader) -> bytes:
    return normalize(record.payload.name)  # type: ignore[union-attr]


@implementer(IRecursiveResolver)
class Recursor:
    """
    The engine shared by both resolvers; subclasses say whom to ask in
    L{_fetch}.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        cache: Cache,
        exchanger: Exchanger | None = None,
        timeout: float = 2.0,
        status: Status | None = None,
        udpSize: int = 1232,
    ) -> None:
        self._reactor = reactor
        self.cache = cache
        self.exchanger = exchanger if exchanger is not None else Exchanger(reactor)
        self.timeout = timeout
        self._status = status
        self._udpSize = udpSize
        self._inflight: dict[tuple[bytes, int], _Shared] = {}

    def _count(self, name: str, amount: int = 1) -> None:
        if self._status is not None:
            self._status.increment("dns", name, amount)

    # The cache walk.

    def _walk(
        self, name: bytes, type: int, chain: list[dns.RRHeader], seen: set[bytes]
    ) -> tuple[bytes, Answer | None]:
        """
        Follow C{name} through the cache, adding CNAMEs to C{chain}.

        @return: where the cache ran out, and the final answer there
            (positive or negative) if the cache has it.
        """
        cache = self.cache
        current = name
        while True:
            rrset = cache.getRRSet(current, type)
            if rrset is not None:
                return current, Answer(dns.OK, rrset.headers())
            if type != dns.CNAME:
                cname = cache.getRRSet(current, dns.CNAME)
                if cname is not None:
                    chain.extend(cname.headers())
                    target = normalize(cname.records[0].name)
                    if target in seen or len(seen) > MAX_CHAIN:
                        raise ResolutionFailed(display(name), "CNAME loop")
                    seen.add(target)
                    current = target
                    continue
            negative = cache.getNegative(current, type)
            if negative is not None:
                return current, Answer(negative.rcode, (), [negative.soa])
            return current, None

    def cached(self, name: bytes, type: int) -> Answer | None:
        """
        The whole answer from the cache, or C{None}.
        """
        if type == dns.ALL_RECORDS:
            return None
        chain: list[dns.RRHeader] = []
        try:
            _, final = self._walk(name, type, chain, {name})
        except ResolutionFailed:
            return None
        if final is None:
            return None
        self._count("cache_hits")
        return Answer(final.rcode, chain + list(final.answers), final.authority)

    def resolve(self, name: bytes, type: int) -> Deferred[Answer]:
        """
        The answer, from the cache or fetched (see L{IRecursiveResolver}).
        """
        found = self.cached(name, type)
        if found is not None:
            d: Deferred[Answer] = Deferred()
            d.callback(found)
            return d
        self._count("cache_misses")
        return Deferred.fromCoroutine(self._resolve(name, type, _Budget.fresh()))

    async def _resolve(self, name: bytes, type: int, budget: _Budget) -> Answer:
        chain: list[dns.RRHeader] = []
        seen = {name}
        if type == dns.ALL_RECORDS:
            current, final = name, None
        else:
            current, final = self._walk(name, type, chain, seen)
        while final is None:
            got = await self._shared(current, type, budget)
            chain.extend(got.answers)
            if got.pending is None:
                final = Answer(got.rcode, (), got.authority)
                break
            target = got.pending
            if target in seen or len(seen) > MAX_CHAIN:
                raise ResolutionFailed(display(name), "CNAME loop or chain too long")
            seen.add(target)
            current, final = self._walk(target, type, chain, seen)
        return Answer(final.rcode, chain + list(final.answers), final.authority)

    def _shared(self, name: bytes, type: int, budget: _Budget) -> Deferred[Answer]:
        """
        Fetch C{(name, type)}, sharing one fetch among the clients asking
        at the same time. Nested lookups (server addresses) are not
        shared, so two resolutions can never wait for each other.
        """
        if budget.depth:
            return Deferred.fromCoroutine(self._fetch(name, type, budget))
        key = (name, type)
        waiter: Deferred[Answer] = Deferred()
        shared = self._inflight.get(key)
        if shared is not None:
            self._count("coalesced")
            shared.waiters.append(waiter)
            return waiter
        shared = self._inflight[key] = _Shared([waiter])

        def done(result: Answer | Failure) -> None:
            del self._inflight[key]
            for each in shared.waiters:
                if isinstance(result, Failure):
                    each.errback(result)
                else:
                    each.callback(result)

        task = Deferred.fromCoroutine(self._fetch(name, type, budget))
        task.addBoth(done)
        return waiter

    async def _fetch(self, name: bytes, type: int, budget: _Budget) -> Answer:
        """
        Ask upstream about C{name}; subclasses implement it. The result's
        C{answers} start at C{name}; C{pending} is where a CNAME chain
        continues.
        """
        raise NotImplementedError()

    # Talking to servers.

    async def _ask(
        self,
        server: Address,
        name: bytes,
        type: int,
        recursionDesired: bool,
        budget: _Budget,
    ) -> Exchange | None:
        """
        One question to one server (TCP after a truncated reply, without
        EDNS after a FORMERR); C{None} if it did not answer.
        """
        edns: EDNS | None = EDNS(self._udpSize)
        tcp = False
        for _ in range(3):
            budget.spend(name)
            self._count("upstream_queries")
            query = newQuery(
                dns.randomSource(), name, type, recursionDesired=recursionDesired
            )
            try:
                exchange = await self.exchanger.query(
                    server, query, edns, self.timeout, tcp=tcp
                )
            except ExchangeFailed as e:
                self._log.info(
                    "{name} {type}: {problem}",
                    name=display(name),
                    type=typeName(type),
                    problem=str(e),
                )
                return None
            message = exchange.message
            if message.trunc and not tcp:
                tcp = True
                continue
            if message.rCode == dns.EFORMAT and edns is not None:
                edns = None
                continue
            return exchange
        return None

    def _digest(
        self,
        name: bytes,
        type: int,
        message: dns.Message,
        bailiwick: bytes,
        forwarded: bool,
    ) -> Answer | _Referral | None:
        """
        Take what a reply says about C{name}, cache what may be believed,
        and say what it means: an answer (perhaps partial: a CNAME chain
        whose end is C{pending}), a referral, or C{None} for a reply that
        is of no use (an error code, a lame or upward referral).
        """
        rcode = message.rCode
        if rcode not in (dns.OK, dns.ENAME):
            return None
        cache = self.cache
        trust = Trust.AUTHORITATIVE if message.auth else Trust.ANSWER
        answers = _group(
            [r for r in message.answers if isSubdomain(normalize(r.name), bailiwick)]
        )
        chain: list[dns.RRHeader] = []
        current = name
        seen = {name}
        while True:
            if type == dns.ALL_RECORDS:
                found = [rs for (owner, _), rs in answers.items() if owner == current]
            else:
                found = [answers[(current, type)]] if (current, type) in answers else []
            if found:
                for rrset in found:
                    self._cacheRRSet(rrset, trust)
                    chain.extend(rrset)
                return Answer(dns.OK, chain)
            cname = answers.get((current, dns.CNAME))
            if cname is None or type == dns.CNAME:
                break
            self._cacheRRSet(cname[:1], trust)
            chain.append(cname[0])
            target = _target(cname[0])
            if target in seen:
                break
            seen.add(target)
            current = target
        authority = _group(
            [r for r in message.authority if isSubdomain(normalize(r.name), bailiwick)]
        )
        soa = None
        for (owner, rtype), records in authority.items():
            if rtype == dns.SOA and isSubdomain(current, owner):
                soa = records[0]
                break
        if rcode == dns.ENAME:
            cache.putNegative(current, None, soa)
            return Answer(dns.ENAME, chain, [soa] if soa else [])
        if chain and soa is None:
            return Answer(dns.OK, chain, pending=current)
        if soa is None and not message.auth and not forwarded:
            referral = self._referral(current, bailiwick, authority, message)
            if referral is not None and not chain:
                return referral
            if chain:
                return Answer(dns.OK, chain, pending=current)
            return None
        cache.putNegative(current, type, soa)
        return Answer(dns.OK, chain, [soa] if soa else [])

    def _referral(
        self,
        name: bytes,
        bailiwick: bytes,
        authority: dict[tuple[bytes, int], list[dns.RRHeader]],
        message: dns.Message,
    ) -> _Referral | None:
        for (owner, rtype), records in authority.items():
            if rtype != dns.NS or owner == bailiwick or not isSubdomain(name, owner):
                continue
            self._cacheRRSet(records, Trust.REFERRAL)
            servers = [_target(r) for r in records]
            wanted = set(servers)
            glue = _group(
                [
                    r
                    for r in message.additional
                    if r.type in (dns.A, dns.AAAA)
                    and normalize(r.name) in wanted
                    and isSubdomain(normalize(r.name), bailiwick)
                ]
            )
            for rrset in glue.values():
                self._cacheRRSet(rrset, Trust.GLUE)
            return _Referral(owner, servers)
        return None

    def _cacheRRSet(self, records: Sequence[dns.RRHeader], trust: Trust) -> None:
        if not records:
            return
        first = records[0]
        self.cache.putRRSet(
            normalize(first.name),
            first.type,
            min(r.ttl for r in records),
            [r.payload for r in records],
            trust,
        )

    def stop(self) -> Deferred[None]:
        """Abandon queries in flight; fires when their sockets are closed."""
        d: Deferred[Any] = self.exchanger.stop()
        return d.addCallback(lambda _: None)


class ForwardingResolver(Recursor):
    """
    Resolves by asking upstream recursive resolvers, in order.
    """

    def __init__(
        self, reactor: Any, cache: Cache, forwarders: Sequence[Address], **kw: Any
    ) -> None:
        super().__init__(reactor, cache, **kw)
        self.forwarders = list(forwarders)

    async def _fetch(self, name: bytes, type: int, budget: _Budget) -> Answer:
        for server in self.forwarders:
            exchange = await self._ask(server, name, type, True, budget)
            if exchange is None:
                continue
            result = self._digest(name, type, exchange.message, b"", forwarded=True)
            if isinstance(result, Answer):
                return result
            self._log.info(
                "{name} {type}: {server} answered {rcode}; trying the next forwarder",
                name=display(name),
                type=typeName(type),
                server=f"{server[0]}:{server[1]}",
                rcode=exchange.reply.rcode,
            )
        raise ResolutionFailed(display(name), "no forwarder gave an answer")


@define
class Hints:
    """
    Root hints: the root servers' names and addresses.
    """

    servers: dict[bytes, list[str]]

    @property
    def names(self) -> list[bytes]:
        return list(self.servers)


def parseHints(text: str, filename: str) -> Hints:
    """
    Read a root hints file (the format of BIND's C{named.root}: NS
    records for C{.} and the A/AAAA records of those names).

    @raise ZoneError: if it is malformed or names no server with an
        address.
    """
    records = parseZone(text, filename, b"")
    names = [
        normalize(r.payload.name) for r in records if r.type == dns.NS and r.name == b""
    ]
    if not names:
        raise ZoneError(filename, 0, "no NS records for the root (.)")
    servers: dict[bytes, list[str]] = {name: [] for name in names}
    for record in records:
        if record.type == dns.A and record.name in servers:
            servers[record.name].append(record.payload.dottedQuad())
        elif record.type == dns.AAAA and record.name in servers:
            servers[record.name].append(
                socket.inet_ntop(socket.AF_INET6, record.payload.address)
            )
    if not any(servers.values()):
        raise ZoneError(filename, 0, "no addresses for the root servers")
    return Hints({name: addrs for name, addrs in servers.items() if addrs})


class IterativeResolver(Recursor):
    """
    Resolves by following referrals from the root down.
    """

    def __init__(
        self, reactor: Any, cache: Cache, hints: Hints, port: int = 53, **kw: Any
    ) -> None:
        super().__init__(reactor, cache, **kw)
        self.hints = hints
        self.port = port
        self._random = random.SystemRandom()

    def _closest(self, name: bytes) -> tuple[bytes, list[bytes]]:
        """The deepest zone above C{name} whose servers we know."""
        for up in ancestors(name):
            if not up:
                break
            ns = self.cache.getRRSet(up, dns.NS, Trust.REFERRAL)
            if ns is not None:
                return up, [normalize(r.name) for r in ns.records]
        return b"", self.hints.names

    def _known(self, zone: bytes, server: bytes) -> list[str]:
        if not zone and server in self.hints.servers:
            return list(self.hints.servers[server])
        addresses: list[str] = []
        for type in (dns.A, dns.AAAA):
            rrset = self.cache.getRRSet(server, type, Trust.GLUE)
            if rrset is not None:
                for payload in rrset.records:
                    if type == dns.A:
                        addresses.append(payload.dottedQuad())
                    else:
                        addresses.append(
                            socket.inet_ntop(socket.AF_INET6, payload.address)
                        )
        return addresses

    async def _fetch(self, name: bytes, type: int, budget: _Budget) -> Answer:
        zone, servers = self._closest(name)
        for _ in range(MAX_REFERRALS):
            outcome = await self._askZone(zone, servers, name, type, budget)
            if isinstance(outcome, Answer):
                return outcome
            zone, servers = outcome.zone, outcome.servers
        raise ResolutionFailed(display(name), "too many referrals")

    async def _askZone(
        self,
        zone: bytes,
        servers: list[bytes],
        name: bytes,
        type: int,
        budget: _Budget,
    ) -> Answer | _Referral:
        order = list(servers)
        self._random.shuffle(order)
        glueless: list[bytes] = []
        for server in order:
            addresses = self._known(zone, server)
            if not addresses:
                glueless.append(server)
            for address in addresses:
                outcome = await self._try(address, zone, name, type, budget)
                if outcome is not None:
                    return outcome
        for server in glueless:
            if isSubdomain(server, zone) or budget.depth >= MAX_DEPTH:
                continue
            if (server, dns.A) in budget.path:
                continue
            try:
                found = await self._resolve(server, dns.A, budget.nested(server, dns.A))
            except ResolutionFailed:
                continue
            for record in found.answers:
                if record.type != dns.A:
                    continue
                address = record.payload.dottedQuad()  # type: ignore[union-attr]
                outcome = await self._try(address, zone, name, type, budget)
                if outcome is not None:
                    return outcome
        raise ResolutionFailed(
            display(name), f"no server for {display(zone)} gave a usable answer"
        )

    async def _try(
        self, address: str, zone: bytes, name: bytes, type: int, budget: _Budget
    ) -> Answer | _Referral | None:
        exchange = await self._ask((address, self.port), name, type, False, budget)
        if exchange is None:
            return None
        outcome = self._digest(name, type, exchange.message, zone, forwarded=False)
        if outcome is None:
            self._log.info(
                "{name} {type}: {server} (for {zone}) answered rcode {rcode} "
                "without a usable answer or referral",
                name=display(name),
                type=typeName(type),
                server=address,
                zone=display(zone),
                rcode=exchange.reply.rcode,
            )
        return outcome
