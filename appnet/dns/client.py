"""
The DNS client: Deferred lookups against a given server, and the
resolver appnet's own lookups use.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from attrs import define, field, frozen
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.names import dns
from zope.interface import implementer

from appnet.dns.answer import followChain
from appnet.dns.errors import (
    NameNotFound,
    NoRecords,
    NullMX,
    TemporaryFailure,
)
from appnet.dns.exchange import Exchange, ExchangeFailed, Exchanger
from appnet.dns.interfaces import IDNSResolver
from appnet.dns.names import display, normalize
from appnet.dns.records import RCODES, typeByName
from appnet.dns.transfer import Transfer, TransferFailed, transfer, update
from appnet.dns.wire import EDNS, newQuery

__all__ = [
    "DNSClient",
    "MailExchanger",
    "Response",
    "SystemResolvers",
    "Transfer",
    "TransferFailed",
    "resolverFor",
    "systemResolvers",
    "transfer",
    "update",
]

Address = tuple[str, int]


@frozen
class Response:
    """
    A server's complete response to one question.

    @ivar rcode: the response code, with EDNS's upper bits.
    @ivar question: the question as echoed by the server.
    @ivar edns: the server's OPT values, if it sent one.
    @ivar server: who answered.
    @ivar transport: C{"udp"} or C{"tcp"}.
    @ivar elapsed: seconds from query to reply.
    @ivar size: the reply's size in bytes.
    """

    id: int
    opcode: int
    rcode: int
    authoritative: bool
    truncated: bool
    recursionDesired: bool
    recursionAvailable: bool
    authenticData: bool
    checkingDisabled: bool
    question: dns.Query | None
    answers: tuple[dns.RRHeader, ...]
    authority: tuple[dns.RRHeader, ...]
    additional: tuple[dns.RRHeader, ...]
    edns: EDNS | None
    server: Address
    transport: str
    elapsed: float
    size: int

    @classmethod
    def of(cls, exchange: Exchange) -> Response:
        """The response carried by one exchange."""
        message = exchange.message
        reply = exchange.reply
        return cls(
            id=message.id,
            opcode=message.opCode,
            rcode=reply.rcode,
            authoritative=bool(message.auth),
            truncated=bool(message.trunc),
            recursionDesired=bool(message.recDes),
            recursionAvailable=bool(message.recAv),
            authenticData=bool(message.authenticData),
            checkingDisabled=bool(message.checkingDisabled),
            question=message.queries[0] if message.queries else None,
            answers=tuple(message.answers),
            authority=tuple(message.authority),
            additional=tuple(message.additional),
            edns=reply.edns,
            server=exchange.server,
            transport=exchange.transport,
            elapsed=exchange.elapsed,
            size=reply.size,
        )

    @property
    def rcodeName(self) -> str:
        """C{"NOERROR"}, C{"NXDOMAIN"} ..."""
        return RCODES.get(self.rcode, f"RCODE{self.rcode}")

    def records(self, name: bytes, type: int) -> list[dns.RRHeader]:
        """
        The answer records of C{type} for C{name}, after following any
        CNAME chain in the answer section.
        """
        end, found = followChain(normalize(name), type, self.answers)
        if not found:
            return []
        return [r for r in self.answers if r.type == type and normalize(r.name) == end]


@frozen
class MailExchanger:
    """
    One MX of a domain.

    @ivar host: the exchanger's name, without the trailing dot.
    @ivar addresses: its addresses if the response carried them in the
        additional section (look them up otherwise).
    """

    preference: int
    host: str
    addresses: tuple[str, ...] = ()


def systemResolvers(path: str = "/etc/resolv.conf") -> list[Address]:
    """
    The C{nameserver} lines of C{resolv.conf}, as (address, 53); an
    address written C{[127.0.0.1]:5353} (OpenBSD's syntax, which other
    resolvers skip) brings its own port. Blocking: call it in a thread.
    """
    servers: list[Address] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return servers
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            text, port = words[1], 53
            if text.startswith("["):
                text, _, rest = text[1:].partition("]")
                if rest:
                    if not rest.startswith(":") or not rest[1:].isdigit():
                        continue
                    port = int(rest[1:])
                    if not 0 < port < 65536:
                        continue
            try:
                address = str(ipaddress.ip_address(text.split("%", 1)[0]))
            except ValueError:
                continue
            servers.append((address, port))
    return servers


@define
class SystemResolvers:
    """
    The system's resolvers, as a server list for L{DNSClient}: the
    nameservers of a C{resolv.conf}, read in a thread and read again once
    they are C{maxAge} seconds old (as C{twisted.names.client.Resolver}
    notices changes to the file).

    @ivar path: the file.
    @ivar blocking: runs a function in a thread, giving a Deferred of its
        result (default: the reactor's thread pool).
    """

    _reactor: Any
    path: str = "/etc/resolv.conf"
    blocking: (
        Callable[[Callable[[], list[Address]]], Deferred[list[Address]]] | None
    ) = None
    maxAge: float = 60.0
    _servers: list[Address] | None = field(default=None, init=False)
    _readAt: float = field(default=-math.inf, init=False)
    _waiters: list[Deferred[list[Address]]] | None = field(default=None, init=False)

    def __call__(self) -> Deferred[list[Address]]:
        """The servers, read again if they are old."""
        if (
            self._servers is not None
            and self._reactor.seconds() - self._readAt < self.maxAge
        ):
            return succeed(list(self._servers))
        waiter: Deferred[list[Address]] = Deferred()
        if self._waiters is None:
            self._waiters = [waiter]
            self._read().addBoth(self._done)
        else:
            self._waiters.append(waiter)
        return waiter

    def _read(self) -> Deferred[list[Address]]:
        path = self.path

        def read() -> list[Address]:
            return systemResolvers(path)

        if self.blocking is not None:
            return self.blocking(read)
        reactor = self._reactor
        return deferToThreadPool(reactor, reactor.getThreadPool(), read)

    def _done(self, result: Any) -> None:
        servers = result if isinstance(result, list) else []
        self._servers = servers
        self._readAt = self._reactor.seconds()
        waiters, self._waiters = self._waiters or [], None
        for waiter in waiters:
            waiter.callback(list(servers))

    @property
    def missing(self) -> str:
        """Why there is no server to ask, if there is none."""
        return f"no nameserver in {self.path}"

    async def describe(self) -> str:
        """Which servers these are, for the start-up log."""
        servers = await self()
        if not servers:
            return f"no DNS server ({self.missing}): remote mail will wait"
        shown = ", ".join(_show(s) for s in servers)
        return f"the system's resolvers {shown} (from {self.path})"


def _address(record: dns.RRHeader) -> str:
    payload: Any = record.payload
    if record.type == dns.A:
        return str(payload.dottedQuad())
    return str(ipaddress.IPv6Address(payload.address))


@implementer(IDNSResolver)
class DNSClient:
    """
    Asks DNS servers questions.

    @ivar servers: where to ask, in order; or a function giving them at
        the time of each query (for servers known only later).
    @param rng: the random source that orders mail exchangers of equal
        preference (default: a new C{random.Random}; tests pass a seeded
        one).
    """

    def __init__(
        self,
        reactor: Any,
        servers: Sequence[Address]
        | Callable[[], Sequence[Address] | Awaitable[Sequence[Address]]],
        timeout: float = 2.0,
        attempts: int = 2,
        udpSize: int = 1232,
        exchanger: Exchanger | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._reactor = reactor
        self.servers = servers
        self.timeout = timeout
        self.attempts = attempts
        self.udpSize = udpSize
        self._exchanger = exchanger if exchanger is not None else Exchanger(reactor)
        self._random = rng if rng is not None else random.Random()

    async def _servers(self) -> list[Address]:
        servers = self.servers
        if not callable(servers):
            return list(servers)
        found = servers()
        if isinstance(found, Deferred):
            return list(await found)
        return list(found)  # type: ignore[arg-type]

    def describe(self) -> Deferred[str]:
        """Which servers this client asks, in a few words."""
        return Deferred.fromCoroutine(self._describe())

    async def _describe(self) -> str:
        describe = getattr(self.servers, "describe", None)
        if describe is not None:
            return str(await describe())
        servers = await self._servers()
        return ", ".join(_show(s) for s in servers) or "no DNS server"

    def query(
        self,
        name: str,
        type: int | str = dns.A,
        *,
        recursionDesired: bool = True,
        tcp: bool = False,
        edns: bool = True,
    ) -> Deferred[Response]:
        """
        Ask about C{name}; the whole response, whatever its rcode.

        Each server is tried in turn, C{attempts} rounds; a server that
        answers SERVFAIL or REFUSED is passed over for the next, but if
        none does better, that answer is returned.

        @raise TemporaryFailure: (as the Deferred's failure) if no server
            answered at all.
        """
        number = typeByName(type) if isinstance(type, str) else type
        return Deferred.fromCoroutine(
            self._query(normalize(name), number, recursionDesired, tcp, edns)
        )

    async def _query(
        self, name: bytes, type: int, recursionDesired: bool, tcp: bool, edns: bool
    ) -> Response:
        servers = await self._servers()
        if not servers:
            why = getattr(self.servers, "missing", "no DNS server to ask")
            raise TemporaryFailure(display(name), why)
        problems: list[str] = []
        fallback: Response | None = None
        for _ in range(self.attempts):
            for server in servers:
                exchange = await self._exchange(
                    server, name, type, recursionDesired, tcp, edns, problems
                )
                if exchange is None:
                    continue
                response = Response.of(exchange)
                if response.rcode in (dns.ESERVER, dns.EREFUSED) and len(servers) > 1:
                    fallback = response
                    problems.append(f"{response.rcodeName} from {_show(server)}")
                    continue
                return response
            if fallback is not None:
                return fallback
        raise TemporaryFailure(display(name), "; ".join(problems[-3:]))

    async def _exchange(
        self,
        server: Address,
        name: bytes,
        type: int,
        recursionDesired: bool,
        tcp: bool,
        edns: bool,
        problems: list[str],
    ) -> Exchange | None:
        options: EDNS | None = EDNS(self.udpSize) if edns else None
        for _ in range(3):
            query = newQuery(
                dns.randomSource(), name, type, recursionDesired=recursionDesired
            )
            try:
                exchange = await self._exchanger.query(
                    server, query, options, self.timeout, tcp=tcp
                )
            except ExchangeFailed as e:
                problems.append(str(e))
                return None
            message = exchange.message
            if message.trunc and not tcp:
                tcp = True
                continue
            if message.rCode == dns.EFORMAT and options is not None:
                options = None
                continue
            return exchange
        return None

    def _check(self, response: Response, name: str) -> None:
        if response.rcode == dns.ENAME:
            raise NameNotFound(name)
        if response.rcode != dns.OK:
            raise TemporaryFailure(
                name, f"{response.rcodeName} from {_show(response.server)}"
            )

    def lookupMX(self, domain: str) -> Deferred[list[MailExchanger]]:
        """
        The mail exchangers of C{domain}, most preferred first (equal
        preferences in random order, RFC 5321 section 5.1).
        """
        return Deferred.fromCoroutine(self._lookupMX(domain.rstrip(".")))

    async def _lookupMX(self, domain: str) -> list[MailExchanger]:
        response = await self.query(domain, dns.MX)
        self._check(response, domain)
        records = response.records(normalize(domain), dns.MX)
        if not records:
            raise NoRecords(domain, "MX")
        hosts = [
            (r.payload.preference, normalize(r.payload.name))  # type: ignore[union-attr]
            for r in records
        ]
        real = [(p, h) for p, h in hosts if h]
        if not real:
            raise NullMX(domain)
        known: dict[bytes, list[str]] = {}
        for record in response.additional:
            if record.type in (dns.A, dns.AAAA):
                known.setdefault(normalize(record.name), []).append(_address(record))
        self._random.shuffle(real)
        real.sort(key=lambda pair: pair[0])
        return [
            MailExchanger(p, h.decode("ascii", "replace"), tuple(known.get(h, ())))
            for p, h in real
        ]

    def lookupText(self, name: str) -> Deferred[list[bytes]]:
        """
        The TXT records of C{name}, each its character-strings joined
        (RFC 7208 section 3.3: how SPF reads a record split into
        strings).

        @raise NameNotFound: NXDOMAIN.
        @raise NoRecords: no TXT records.
        @raise TemporaryFailure: try again later.
        """
        return Deferred.fromCoroutine(self._lookupText(name.rstrip(".")))

    async def _lookupText(self, name: str) -> list[bytes]:
        response = await self.query(name, dns.TXT)
        self._check(response, name)
        records = response.records(normalize(name), dns.TXT)
        if not records:
            raise NoRecords(name, "TXT")
        return [b"".join(r.payload.data) for r in records]  # type: ignore[union-attr]

    def lookupAddresses(self, host: str) -> Deferred[list[str]]:
        """
        The IPv4 addresses of C{host}, then its IPv6 addresses. An IP
        address is its own answer.
        """
        return Deferred.fromCoroutine(self._lookupAddresses(host.rstrip(".")))

    async def _lookupAddresses(self, host: str) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        results = await DeferredList(
            [self.query(host, dns.A), self.query(host, dns.AAAA)], consumeErrors=True
        )
        addresses: list[str] = []
        problems: list[Exception] = []
        outcome: Any
        for (ok, outcome), type in zip(results, (dns.A, dns.AAAA), strict=True):
            if not ok:
                problems.append(outcome.value)
                continue
            result: Response = outcome
            try:
                self._check(result, host)
            except (NameNotFound, TemporaryFailure) as e:
                problems.append(e)
                continue
            addresses.extend(_address(r) for r in result.records(normalize(host), type))
        if addresses:
            return addresses
        for problem in problems:
            if isinstance(problem, NameNotFound):
                raise problem
        if problems:
            first = problems[0]
            if isinstance(first, TemporaryFailure):
                raise first
            raise TemporaryFailure(host, str(first))
        raise NoRecords(host, "A or AAAA")

    def stop(self) -> Deferred[Any]:
        """Abandon queries in flight and close their sockets."""
        return self._exchanger.stop()

    def __repr__(self) -> str:
        servers = self.servers
        shown = "later" if callable(servers) else ", ".join(_show(s) for s in servers)
        return f"<DNSClient servers: {shown}>"


def _show(server: Address) -> str:
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def resolverFor(ctx: Any) -> DNSClient:
    """
    The resolver appnet's own lookups (the mail relay's MX and address
    lookups, SPF) use, for a stack's L{appnet.stack.StackContext}:

      1. C{dns.resolver}, if configured;
      2. else this stack's own DNS service, if it recurses (C{dns.forward}
         or C{dns.root_hints}) for the address mail asks it from (its UDP
         address is looked up at query time, since it is known only once
         bound);
      3. else the system's resolvers from C{dns.resolv_conf}.

    L{DNSClient.describe} says which, for the start-up log.
    """
    config = ctx.config.dns
    if config.resolver is not None:
        return DNSClient(ctx.reactor, _Configured(config.resolver))
    if _recurses(config):
        return DNSClient(ctx.reactor, _OwnService(ctx.addresses, config))
    return DNSClient(ctx.reactor, SystemResolvers(ctx.reactor, config.resolv_conf))


def _recurses(config: Any) -> bool:
    """Whether the stack's own DNS service recurses for its own host."""
    if not config.enabled or not (config.forward or config.root_hints):
        return False
    host = _LOOPBACK.get(config.listen[0], config.listen[0])
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(
        address in ipaddress.ip_network(net, strict=False)
        for net in config.allow_recursion
    )


@frozen
class _Configured:
    server: Address

    def __call__(self) -> list[Address]:
        return [self.server]

    def describe(self) -> Deferred[str]:
        return succeed(f"the configured resolver {_show(self.server)} (dns.resolver)")


@frozen
class _OwnService:
    addresses: Any
    config: Any

    def __call__(self) -> list[Address]:
        for bound in self.addresses.of("dns"):
            if bound.transport == "udp":
                host = bound.address.host
                return [(_LOOPBACK.get(host, host), bound.address.port)]
        return []

    @property
    def missing(self) -> str:
        return "this stack's DNS service is not listening"

    def describe(self) -> Deferred[str]:
        how = "dns.forward" if self.config.forward else "dns.root_hints"
        servers = ", ".join(_show(s) for s in self())
        return succeed(f"this stack's own DNS recursion {servers} ({how})")
