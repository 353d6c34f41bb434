"""
The DNS server: protocols, the factory that decides every answer, and the
service that binds UDP and TCP on one address.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import glob
import os
import signal
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.base import ReactorBase
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.logger import Logger
from twisted.names import dns, server
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from appnet.config import DNSConfig
from appnet.dns.answer import Answer
from appnet.dns.cache import Cache
from appnet.dns.errors import MalformedMessage, ResolutionFailed, ZoneError
from appnet.dns.exchange import Exchanger
from appnet.dns.fastpath import Key, WireCache
from appnet.dns.interfaces import IRecursiveResolver
from appnet.dns.journal import Journal, rollForward
from appnet.dns.names import display, normalize
from appnet.dns.policy import Policy, RateLimiter, Verdict
from appnet.dns.primary import Primary
from appnet.dns.records import NOTAUTH, RCODES, typeName
from appnet.dns.recursion import (
    ForwardingResolver,
    IterativeResolver,
    Recursor,
    parseHints,
)
from appnet.dns.replication import Replication
from appnet.dns.secondary import Secondaries
from appnet.dns.wire import (
    EDNS,
    STANDARD_UDP_SIZE,
    Decoded,
    decode,
    encode,
    responseTo,
)
from appnet.dns.zonefile import readFile
from appnet.dns.zones import Authority, Zone, loadZone, zoneFromText
from appnet.errors import ListenError
from appnet.faults import NO_FAULTS, Fault, Faults
from appnet.listen import AddressBook, GuardedFactory, socketFamily
from appnet.status import Status

__all__ = [
    "DNSDatagramServer",
    "DNSServerFactory",
    "DNSService",
    "DNSStreamServer",
    "ReloadResult",
    "SeenQuery",
    "buildDNS",
]

#: Largest message of a zone transfer (below 16 KiB so name compression
#: reaches every name).
_TRANSFER_CHUNK = 16000

#: What a scripted DNS fault (L{appnet.faults}) answers.
_FAULT_RCODES = {
    "servfail": dns.ESERVER,
    "nxdomain": dns.ENAME,
    "refused": dns.EREFUSED,
}
#: Unanswered queries one TCP connection may have before it stops being
#: read (RFC 7766 section 6.2.1.1: pipelining, with a bound).
_TCP_PENDING = 32


@frozen
class SeenQuery:
    """
    A query the server received (for L{appnet.dns.testing}).

    @ivar name: the name asked about, folded, without the trailing dot.
    @ivar type: its type number.
    @ivar client: the client's address.
    @ivar transport: C{"udp"} or C{"tcp"}.
    @ivar recursionDesired: the RD bit.
    """

    name: str
    type: int
    client: tuple[str, int]
    transport: str
    recursionDesired: bool

    @property
    def typeName(self) -> str:
        """C{"A"}, C{"MX"} ..."""
        return typeName(self.type)


class DNSDatagramServer(dns.DNSDatagramProtocol):
    """
    The server's UDP side: hands each datagram to the factory, counting
    the bytes in and out (the TCP side is counted by the listener's
    L{appnet.listen.GuardedFactory}, which UDP does not go through).
    """

    noisy = False

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.controller.status.increment("dns", "bytes_in", len(data))
        self.controller.handleDatagram(data, self, addr)

    def send(self, data: bytes, addr: Any) -> None:
        """Send one reply, if still listening."""
        if self.transport is None:
            return
        try:
            self.transport.write(data, addr)
        except OSError as e:
            self.controller._log.info(
                "cannot send a reply to {client}: {error}", client=addr, error=e
            )
            return
        self.controller.status.increment("dns", "bytes_out", len(data))


class DNSStreamServer(dns.DNSProtocol, TimeoutMixin):
    """
    The server's TCP side: length-prefixed messages (RFC 1035 section
    4.2.2), answered as they complete, in any order (RFC 7766 section
    6.2.1.1); closed after C{dns.idle_timeout} without a query.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        self.pending = 0
        self.setTimeout(self.controller.idleTimeout)

    def stringReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self.pending += 1
        if self.pending >= _TCP_PENDING:
            transport: Any = self.transport
            transport.pauseProducing()
        self.controller.handleStream(data, self)

    def send(self, data: bytes) -> None:
        """Send one reply, if still connected."""
        self.pending = max(0, self.pending - 1)
        if self.transport is None or not self.connected:
            return
        self.sendString(data)
        self.resetTimeout()
        if self.pending == _TCP_PENDING - 1:
            transport: Any = self.transport
            transport.resumeProducing()

    def timeoutConnection(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.setTimeout(None)
        super().connectionLost(reason)


Reply = Callable[[bytes], None]


class DNSServerFactory(server.DNSServerFactory):
    """
    Decides the answer to every query (see the module docstring).

    @ivar authority: the zones we serve.
    @ivar recursor: answers other names, or C{None} (no recursion).
    @ivar observers: called with a L{SeenQuery} for every query.
    """

    protocol = DNSStreamServer
    noisy = False
    #: Scripted faults (set by L{DNSService}).
    faults: Faults = NO_FAULTS
    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        authority: Authority,
        recursor: IRecursiveResolver | None,
        policy: Policy,
        status: Status,
        limiter: RateLimiter | None = None,
        maxUDPSize: int = 1232,
        idleTimeout: float = 30.0,
        recursionTimeout: float = 10.0,
        traced: bool = False,
        wireCache: WireCache | None = None,
    ) -> None:
        super().__init__()
        self._reactor = reactor
        self.wireCache = wireCache
        self._cacheable: str | None = None
        self.authority = authority
        self.recursor = recursor
        self.canRecurse = recursor is not None
        self.policy = policy
        self.status = status
        self.limiter = limiter
        self.maxUDPSize = maxUDPSize
        self.idleTimeout = idleTimeout
        self.recursionTimeout = recursionTimeout
        self.traced = traced
        self.observers: list[Callable[[SeenQuery], None]] = []
        #: Set by L{DNSService}: answers UPDATE, NOTIFY, transfers and
        #: signed requests (L{appnet.dns.replication}).
        self.replication: Replication | None = None

    def buildProtocol(self, addr: IAddress | None) -> DNSStreamServer:
        protocol = DNSStreamServer(self, self._reactor)
        protocol.factory = self
        return protocol

    def _count(self, name: str) -> None:
        self.status.increment("dns", name)

    # Entry points from the protocols.

    def handleDatagram(
        self, data: bytes, protocol: DNSDatagramServer, addr: Any
    ) -> None:
        """A UDP query from C{addr}."""
        host = addr[0]
        if self.limiter is not None:
            verdict = self.limiter.check(host)
            if verdict is not Verdict.ANSWER:
                self._count("rate_limited")
                if verdict is Verdict.SLIP:
                    self._slip(data, protocol, addr)
                return

        wire = self.wireCache
        if wire is not None and not self.traced and not self.faults.has("dns"):
            key = wire.keyOf(data, self.policy.mayRecurse(host), False)
            if key is not None:
                found = wire.answer(key, data)
                if found is not None:
                    if self.observers:
                        self._notify(found[1].seen, addr, "udp")
                    transport = protocol.transport
                    try:
                        if transport is None:
                            raise OSError("not listening")
                        transport.write(found[0], addr)
                    except OSError as e:
                        self._log.info(
                            "cannot send a reply to {client}: {error}",
                            client=addr,
                            error=e,
                        )
                        self.status.increment("dns", "bytes_out", -len(found[0]))
                    return
                self._fill(
                    key,
                    data,
                    (host, addr[1]),
                    "udp",
                    lambda payload: protocol.send(payload, addr),
                )
                return

        def reply(payload: bytes) -> None:
            protocol.send(payload, addr)

        self.handleRequest(data, (host, addr[1]), "udp", reply)

    def handleStream(self, data: bytes, protocol: DNSStreamServer) -> None:
        """A TCP query on C{protocol}'s connection."""
        peer = protocol.transport.getPeer()  # type: ignore[union-attr]
        client = (getattr(peer, "host", "?"), getattr(peer, "port", 0))
        wire = self.wireCache
        if wire is not None and not self.traced and not self.faults.has("dns"):
            key = wire.keyOf(data, self.policy.mayRecurse(client[0]), True)
            if key is not None:
                found = wire.answer(key, data)
                if found is not None:
                    if self.observers:
                        self._notify(found[1].seen, client, "tcp")
                    protocol.send(found[0])
                    return
                self._fill(key, data, client, "tcp", protocol.send)
                return
        self.handleRequest(data, client, "tcp", protocol.send)

    def _notify(self, seen: tuple[str, int, bool], client: Any, transport: str) -> None:
        query = SeenQuery(seen[0], seen[1], (client[0], client[1]), transport, seen[2])
        for observer in self.observers:
            observer(query)

    def _fill(
        self,
        key: Key,
        data: bytes,
        client: tuple[str, int],
        transport: str,
        send: Reply,
    ) -> None:
        """
        Answer by the full path, keeping the response in the wire cache
        when it was answered at once from data the cache can follow.
        """
        wire = self.wireCache
        assert wire is not None
        sent: list[bytes] = []
        capturing = True

        def reply(payload: bytes) -> None:
            if capturing:
                sent.append(payload)
            else:
                send(payload)

        self._cacheable = None
        done = wire.capture()
        try:
            self.handleRequest(data, client, transport, reply)
        finally:
            capturing = False
            noted = done()
        kind, self._cacheable = self._cacheable, None
        if kind is not None and len(sent) == 1:
            if transport == "udp":
                # Counted by the UDP protocol's send, which a hit skips.
                counters, rotations, trail = noted
                noted = (
                    counters + ((("dns", "bytes_out"), len(sent[0])),),
                    rotations,
                    trail,
                )
            wire.store(key, sent[0], kind, noted, _seen(key[0], data[2] & 1))
        for payload in sent:
            send(payload)

    def messageReceived(
        self, message: dns.Message, proto: Any, address: Any = None
    ) -> None:
        """
        Twisted's entry point, for callers that hand over a decoded
        message: it is re-encoded and takes the same path.
        """
        data = encode(message)
        if address is not None:
            self.handleDatagram(data, proto, address)
        else:
            self.handleStream(data, proto)

    # The query path.

    def handleRequest(
        self, data: bytes, client: tuple[str, int], transport: str, reply: Reply
    ) -> None:
        """
        Answer one query; C{reply} sends the encoded response.
        """
        self._count("queries")
        self._count(f"queries_{transport}")
        try:
            request = decode(data)
        except MalformedMessage as e:
            self._count("malformed")
            if e.id is not None and not data[2] & 0x80:
                # Answer a malformed query (never a malformed response:
                # no reply loops) with a bare FORMERR header.
                response = dns.Message(
                    id=e.id, answer=1, opCode=(data[2] >> 3) & 0xF, rCode=dns.EFORMAT
                )
                self._send(response, None, STANDARD_UDP_SIZE, reply, client, None)
            return
        message = request.message
        if message.answer:
            self._count("ignored_responses")
            return
        if self.replication is not None and self.replication.wants(request):
            # UPDATE, NOTIFY, transfers and signed requests.
            self.replication.handle(data, request, client, transport, reply)
            return
        response = responseTo(message)
        edns = EDNS(self.maxUDPSize) if request.optCount else None
        limit = 65535
        if transport == "udp":
            limit = STANDARD_UDP_SIZE
            if request.edns is not None:
                limit = max(
                    STANDARD_UDP_SIZE, min(request.edns.udpSize, self.maxUDPSize)
                )
        question = message.queries[0] if len(message.queries) == 1 else None
        if question is not None:
            if self.observers:
                seen = SeenQuery(
                    normalize(question.name).decode("ascii", "replace"),
                    question.type,
                    client,
                    transport,
                    bool(message.recDes),
                )
                for observer in self.observers:
                    observer(seen)
            if self.traced:
                self._log.info(
                    "dns {client} C: {name} {type}{rd}",
                    client=f"{client[0]}:{client[1]}",
                    name=display(question.name),
                    type=typeName(question.type),
                    rd=" +rd" if message.recDes else "",
                )
        mayRecurse = self.recursor is not None and self.policy.mayRecurse(client[0])
        response.recAv = int(mayRecurse)
        fault = None
        if question is not None and self.faults is not NO_FAULTS:
            fault = self.faults.take(
                "dns", "query", display(question.name), typeName(question.type)
            )
        if fault is not None:
            return self._faulted(fault, response, edns, limit, reply, client, request)

        def fail(rcode: int) -> None:
            self._cacheable = "zones"
            response.rCode = rcode
            self._send(response, edns, limit, reply, client, request)

        if request.optCount > 1:
            return fail(dns.EFORMAT)
        if request.edns is not None and request.edns.version > 0:
            return fail(dns.EBADVERSION)
        if message.opCode != dns.OP_QUERY:
            return fail(dns.ENOTIMP)
        if question is None:
            return fail(dns.EFORMAT)
        if question.cls not in (dns.IN, dns.ANY):
            return fail(dns.EREFUSED)
        qtype = question.type
        if qtype in (dns.OPT, dns.TSIG, dns.TKEY):
            return fail(dns.EFORMAT)
        if qtype in (dns.AXFR, dns.IXFR):
            return self._transfer(response, request, client, transport, reply)
        if qtype in (dns.MAILA, dns.MAILB):
            return fail(dns.ENOTIMP)
        name = normalize(question.name)
        recurse = mayRecurse and bool(message.recDes)
        answer = self.authority.answer(name, qtype)
        if answer is not None and not answer.authoritative and recurse:
            # A name we delegate away: a recursive client wants the
            # answer, not the referral.
            answer = None
        if answer is not None:
            if answer.pending is None or not recurse:
                self._cacheable = "zones"
                return self._finish(
                    response, answer, edns, limit, reply, client, request
                )
            first = answer
            d = self._recurse(answer.pending, qtype)
            d.addCallback(
                lambda rest: Answer(
                    rest.rcode,
                    list(first.answers) + list(rest.answers),
                    rest.authority,
                    authoritative=True,
                )
            )
        elif recurse:
            assert self.recursor is not None
            found = self.recursor.cached(name, qtype)
            if found is not None:
                self._cacheable = "cache"
                return self._finish(
                    response, found, edns, limit, reply, client, request
                )
            d = self._recurse(name, qtype)
        else:
            return fail(dns.EREFUSED)

        def finish(answer: Answer) -> None:
            self._finish(response, answer, edns, limit, reply, client, request)

        def failed(failure: Failure) -> None:
            self._failed(failure, response, edns, limit, reply, client, request)

        d.addCallbacks(finish, failed)
        d.addErrback(lambda f: self._log.failure("cannot send a reply", f))

    def _faulted(
        self,
        fault: Fault,
        response: dns.Message,
        edns: EDNS | None,
        limit: int,
        reply: Reply,
        client: tuple[str, int],
        request: Decoded,
    ) -> None:
        """Answer as the fault just taken says (L{appnet.faults})."""
        action = fault.action
        if action == "timeout":
            return
        if action == "truncate":
            response.trunc = 1
        else:
            response.rCode = _FAULT_RCODES[action]
        self._send(response, edns, limit, reply, client, request)

    def _recurse(self, name: bytes, type: int) -> Deferred[Answer]:
        assert self.recursor is not None
        d = self.recursor.resolve(name, type)
        d.addTimeout(self.recursionTimeout, self._reactor)
        return d

    def _failed(
        self,
        failure: Failure,
        response: dns.Message,
        edns: EDNS | None,
        limit: int,
        reply: Reply,
        client: tuple[str, int],
        request: Decoded,
    ) -> None:
        question = response.queries[0]
        if failure.check(ResolutionFailed):
            self._log.info("SERVFAIL: {error}", error=failure.value)
        elif failure.check(DeferredTimeout):
            self._log.info(
                "SERVFAIL: {name} {type}: no answer within {seconds}s",
                name=display(question.name),
                type=typeName(question.type),
                seconds=self.recursionTimeout,
            )
        else:
            self._log.failure(
                "SERVFAIL: resolving {name} failed unexpectedly",
                failure,
                name=display(question.name),
            )
        response.rCode = dns.ESERVER
        response.answers = []
        self._send(response, edns, limit, reply, client, request)

    def _finish(
        self,
        response: dns.Message,
        answer: Answer,
        edns: EDNS | None,
        limit: int,
        reply: Reply,
        client: tuple[str, int],
        request: Decoded,
    ) -> None:
        response.rCode = answer.rcode
        response.auth = answer.authoritative
        response.answers = list(answer.answers)
        response.authority = list(answer.authority)
        response.additional = list(answer.additional)
        self._send(response, edns, limit, reply, client, request)

    def _send(
        self,
        response: dns.Message,
        edns: EDNS | None,
        limit: int,
        reply: Reply,
        client: tuple[str, int],
        request: Decoded | None,
    ) -> None:
        data = encode(response, edns, limit)
        truncated = bool(data[2] & 0x02)
        if truncated and not response.trunc:
            self._count("truncated")
        self._count("rcode_" + RCODES.get(response.rCode, str(response.rCode)).lower())
        if self.traced:
            self._log.info(
                "dns {client} S: {rcode}{aa}{tc} {answers} answers, {size} bytes",
                client=f"{client[0]}:{client[1]}",
                rcode=RCODES.get(response.rCode, str(response.rCode)),
                aa=" aa" if response.auth else "",
                tc=" tc" if truncated else "",
                answers=len(response.answers),
                size=len(data),
            )
        reply(data)

    def _slip(self, data: bytes, protocol: DNSDatagramServer, addr: Any) -> None:
        """An empty truncated reply: "retry over TCP"."""
        try:
            request = decode(data)
        except MalformedMessage:
            return
        if request.message.answer:
            return
        response = responseTo(request.message)
        response.trunc = 1
        edns = EDNS(self.maxUDPSize) if request.optCount else None
        protocol.send(encode(response, edns, STANDARD_UDP_SIZE), addr)

    def _transfer(
        self,
        response: dns.Message,
        request: Decoded,
        client: tuple[str, int],
        transport: str,
        reply: Reply,
    ) -> None:
        """
        AXFR (and IXFR, answered with the whole zone, RFC 1995 section
        4): over TCP, to allowed addresses, for zones we serve.
        """
        question = response.queries[0]
        edns = EDNS(self.maxUDPSize) if request.optCount else None
        if transport != "tcp":
            response.rCode = dns.EFORMAT
        elif not self.policy.mayTransfer(client[0]):
            self._log.info(
                "refused a zone transfer of {zone} to {client}",
                zone=display(question.name),
                client=client[0],
            )
            response.rCode = dns.EREFUSED
        else:
            records = self.authority.transfer(normalize(question.name))
            if records is None:
                response.rCode = NOTAUTH
            else:
                self._count("transfers")
                self._log.info(
                    "zone transfer of {zone} to {client}: {count} records",
                    zone=display(question.name),
                    client=client[0],
                    count=len(records),
                )
                response.auth = True
                for chunk in _chunks(records, _TRANSFER_CHUNK):
                    response.answers = chunk
                    reply(encode(response, edns))
                return
        self._send(response, edns, 65535, reply, client, request)


def _seen(question: bytes, rd: int) -> tuple[str, int, bool]:
    """What a query observer is told about a question section."""
    labels = []
    offset = 0
    while question[offset]:
        length = question[offset]
        labels.append(question[offset + 1 : offset + 1 + length])
        offset += length + 1
    (type,) = struct.unpack_from("!H", question, offset + 1)
    name = normalize(b".".join(labels)).decode("ascii", "replace")
    return name, type, bool(rd)


def _chunks(records: Sequence[dns.RRHeader], size: int) -> list[list[dns.RRHeader]]:
    """Split records into groups whose encoding stays under C{size}."""
    from io import BytesIO

    chunks: list[list[dns.RRHeader]] = []
    current: list[dns.RRHeader] = []
    used = 0
    for record in records:
        buffer = BytesIO()
        record.encode(buffer, None)
        length = len(buffer.getvalue())
        if current and used + length > size:
            chunks.append(current)
            current, used = [], 0
        current.append(record)
        used += length
    if current:
        chunks.append(current)
    return chunks


@frozen
class ReloadResult:
    """
    What a zone (re)load did.

    @ivar loaded: the origins now served, folded.
    @ivar failed: the problems; a zone that failed to reload keeps
        serving its previous version.
    """

    loaded: tuple[str, ...]
    failed: tuple[ZoneError, ...]


@frozen
class _Source:
    """A zone to load: a file, or text given directly (fixtures)."""

    name: str
    path: str | None = None
    text: str | None = None
    origin: bytes | None = None


def _loadSources(
    sources: Sequence[_Source],
    previous: Mapping[str, Zone],
    journals: dict[str, Journal] | None = None,
) -> tuple[dict[str, Zone], list[ZoneError]]:
    """
    Load every source; a source that fails keeps its previous zone (if
    any). A zone file's journal (C{FILE.jnl}) is rolled forward and put
    in C{journals}. Runs in a thread on reload: nothing here touches the
    reactor.
    """
    loaded: dict[str, Zone] = {}
    failed: list[ZoneError] = []
    origins: dict[bytes, str] = {}
    for source in sources:
        try:
            if source.text is not None:
                zone = zoneFromText(source.text, source.name, source.origin or b"")
            else:
                assert source.path is not None
                zone = loadZone(source.path, source.origin)
                journal = Journal(source.path + ".jnl")
                journal.read()
                zone = rollForward(zone, journal)
                if journals is not None:
                    journals[source.name] = journal
        except ZoneError as e:
            failed.append(e)
            if source.name in previous:
                zone = previous[source.name]
            else:
                continue
        if zone.origin in origins:
            failed.append(
                ZoneError(
                    source.name,
                    0,
                    f"zone {display(zone.origin)} is already loaded from "
                    f"{origins[zone.origin]}",
                )
            )
            continue
        origins[zone.origin] = source.name
        loaded[source.name] = zone
    return loaded, failed


class DNSService(Service):
    """
    Binds UDP and TCP on C{config.listen}, serves the zones and, if
    configured, recursion.

    Zones are read and ports bound in L{privilegedStartService}, like every
    appnet listener (so port 53 binds before twistd drops privileges).
    L{reload} re-reads the zone files (in a thread) without dropping the
    cache; SIGHUP calls it when running under a real reactor.

    @ivar factory: the server factory, once started.
    @ivar cache: the recursive resolver's cache, once started; its time
        comes from C{cacheClock} (default: the reactor), so tests can age
        it.
    """

    _log = Logger()
    #: Scripted faults, handed to the factory when it is made.
    faults: Faults = NO_FAULTS

    def __init__(
        self,
        reactor: Any,
        config: DNSConfig,
        status: Status,
        addresses: AddressBook,
        zoneDirectory: str | None = None,
        zoneTexts: Mapping[str, str] = {},
        hintsText: str | None = None,
        traced: bool = False,
        connectionsPerAddress: int = 32,
        cacheClock: Any = None,
        keyDirectory: str | None = None,
        secondaryDirectory: str | None = None,
        inherited: tuple[int, int] | None = None,
    ) -> None:
        self._reactor = reactor
        self._inherited = inherited
        self._cacheClock = cacheClock if cacheClock is not None else reactor
        self.config = config
        self._status = status
        self._addresses = addresses
        self._zoneDirectory = zoneDirectory
        self._zoneTexts = dict(zoneTexts)
        self._hintsText = hintsText
        self._traced = traced
        self._connectionsPerAddress = connectionsPerAddress
        self.factory: DNSServerFactory | None = None
        self.cache: Cache | None = None
        self.recursor: Recursor | None = None
        self._guarded: GuardedFactory | None = None
        self._udp: IListeningPort | None = None
        self._tcp: IListeningPort | None = None
        self._zones: dict[str, Zone] = {}
        self._previousHandler: Any = None
        self._signalInstalled = False
        self._keyDirectory = keyDirectory
        self._secondaryDirectory = secondaryDirectory
        #: Dynamic update, transfers and NOTIFY, once built.
        self.primary: Primary | None = None
        #: The zones copied from primaries, once built.
        self.secondaries: Secondaries | None = None

    # Zones.

    def _sources(self) -> list[_Source]:
        sources = [
            _Source(name, text=text, origin=normalize(name))
            for name, text in sorted(self._zoneTexts.items())
        ]
        if self._zoneDirectory is not None:
            for path in sorted(glob.glob(os.path.join(self._zoneDirectory, "*.zone"))):
                sources.append(_Source(path, path=path))
        for path in self.config.zones:
            sources.append(_Source(path, path=path))
        return sources

    def _apply(
        self,
        loaded: dict[str, Zone],
        failed: list[ZoneError],
        journals: Mapping[str, Journal] | None = None,
    ) -> ReloadResult:
        for error in failed:
            self._log.error("dns: zone not loaded: {error}", error=str(error))
        assert self.factory is not None
        if self.primary is not None:
            loaded = self.primary.adopt(loaded, journals or {})
        self._zones = loaded
        extra = self.secondaries.zones() if self.secondaries is not None else []
        self.factory.authority.apply([*loaded.values(), *extra], everything=True)
        origins = tuple(sorted(display(z.origin) for z in loaded.values()))
        self._log.info(
            "dns: serving {count} zones: {zones}",
            count=len(origins),
            zones=" ".join(origins) or "none",
        )
        return ReloadResult(origins, tuple(failed))

    def reload(self) -> Deferred[ReloadResult]:
        """
        Re-read every zone file (in the reactor's thread pool) and serve
        the result; zones that fail to load keep their previous version.
        The cache is kept.
        """
        from twisted.internet.threads import deferToThreadPool

        sources = self._sources()
        previous = dict(self._zones)
        journals: dict[str, Journal] = {}
        d: Deferred[tuple[dict[str, Zone], list[ZoneError]]] = deferToThreadPool(
            self._reactor,
            self._reactor.getThreadPool(),
            _loadSources,
            sources,
            previous,
            journals,
        )
        return d.addCallback(lambda result: self._apply(result[0], result[1], journals))

    # Start and stop.

    def _build(self) -> None:
        config = self.config
        reactor = self._reactor
        cache = Cache(
            self._cacheClock,
            maxEntries=config.cache_size,
            maxTTL=config.cache_max_ttl,
            maxNegativeTTL=config.cache_max_negative_ttl,
        )
        recursor: Recursor | None = None
        options = dict(
            exchanger=Exchanger(reactor),
            timeout=config.upstream_timeout,
            status=self._status,
            udpSize=config.max_udp_size,
        )
        if config.forward:
            recursor = ForwardingResolver(reactor, cache, config.forward, **options)
        elif config.root_hints is not None or self._hintsText is not None:
            if self._hintsText is not None:
                hints = parseHints(self._hintsText, "root hints")
            else:
                assert config.root_hints is not None
                hints = parseHints(readFile(config.root_hints), config.root_hints)
            recursor = IterativeResolver(
                reactor, cache, hints, config.upstream_port, **options
            )
        limiter = RateLimiter(reactor, config.rate_limit) if config.rate_limit else None
        self.cache = cache
        self.recursor = recursor
        authority = Authority()
        wire = None
        if config.answer_cache_size:
            wire = WireCache(
                authority,
                cache if recursor is not None else None,
                self._status,
                maxUDPSize=config.max_udp_size,
                maxEntries=config.answer_cache_size,
            )
        self.factory = DNSServerFactory(
            reactor,
            authority,
            recursor,
            Policy(config.allow_recursion, config.allow_transfer),
            self._status,
            limiter,
            maxUDPSize=config.max_udp_size,
            idleTimeout=config.idle_timeout,
            recursionTimeout=config.recursion_timeout,
            traced=self._traced,
            wireCache=wire,
        )
        self.factory.faults = self.faults
        self.primary = Primary(
            reactor,
            self.factory,
            config,
            self._keyDirectory,
            self._status,
        )
        self.secondaries = self.primary.secondaries(self._secondaryDirectory)
        journals: dict[str, Journal] = {}
        self._apply(*_loadSources(self._sources(), {}, journals), journals)
        status = self._status
        status.gauge("dns", "cache_entries", lambda: float(len(cache)))
        status.gauge("dns", "zones", lambda: float(len(self._zones)))
        if wire is not None:
            status.gauge("dns", "answer_cache_entries", lambda: float(len(wire)))

        def hitRatio() -> float:
            hits = status.counter("dns", "cache_hits")
            looked = hits + status.counter("dns", "cache_misses")
            return hits / looked if looked else 0.0

        status.gauge("dns", "cache_hit_ratio", hitRatio)

    def _bind(self) -> None:
        assert self.factory is not None
        host, port = self.config.listen
        reactor = self._reactor
        self._guarded = GuardedFactory(
            self.factory, "dns", self._status, self._connectionsPerAddress
        )
        udpProtocol = DNSDatagramServer(self.factory, reactor)
        shown = f"[{host}]" if ":" in host else host
        if self._inherited is not None:
            # A worker process: serve the sockets the parent bound.
            udpFd, tcpFd = self._inherited
            tcp = reactor.adoptStreamPort(tcpFd, socketFamily(tcpFd), self._guarded)
            udp = reactor.adoptDatagramPort(
                udpFd, socketFamily(udpFd), udpProtocol, 65535
            )
            self._tcp, self._udp = tcp, udp
            self._addresses.record("dns", udp.getHost(), tls=False, transport="udp")
            self._addresses.record("dns", tcp.getHost(), tls=False, transport="tcp")
            return
        for _ in range(20 if port == 0 else 1):
            try:
                tcp = reactor.listenTCP(port, self._guarded, interface=host)
            except CannotListenError as e:
                raise ListenError("dns", f"tcp {shown}:{port}", _why(e)) from None
            bound = tcp.getHost().port
            try:
                udp = reactor.listenUDP(bound, udpProtocol, interface=host)
            except CannotListenError as e:
                tcp.stopListening()
                if port == 0:
                    continue
                raise ListenError("dns", f"udp {shown}:{port}", _why(e)) from None
            break
        else:
            raise ListenError(
                "dns", f"{shown}:0", "no port number was free for both UDP and TCP"
            )
        self._tcp, self._udp = tcp, udp
        self._addresses.record("dns", udp.getHost(), tls=False, transport="udp")
        self._addresses.record("dns", tcp.getHost(), tls=False, transport="tcp")

    def privilegedStartService(self) -> None:
        """
        Load the zones and bind UDP and TCP.

        @raise ListenError: naming the service and address that failed.
        @raise ZoneError: for unreadable root hints.
        """
        super().privilegedStartService()
        if self.factory is None:
            self._build()
        if self._udp is None:
            self._bind()

    def startService(self) -> None:
        if self._udp is None:
            self.privilegedStartService()
        super().startService()
        self._installSignal()
        if self.primary is not None:
            self.primary.start(self.config.listen[0])

    def _installSignal(self) -> None:
        """
        Reload zones on SIGHUP, under a real reactor in the main thread.
        """
        if not (
            isinstance(self._reactor, ReactorBase)
            and hasattr(signal, "SIGHUP")
            and threading.current_thread() is threading.main_thread()
        ):
            return
        self._previousHandler = signal.signal(signal.SIGHUP, self._sighup)
        self._signalInstalled = True

    def _sighup(self, signum: int, frame: Any) -> None:
        self._log.info("dns: SIGHUP: reloading zones")
        self._reactor.callFromThread(self.reload)

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, close TCP connections, abandon upstream queries.
        """
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        super().stopService()
        if self._signalInstalled:
            signal.signal(signal.SIGHUP, self._previousHandler)
            self._signalInstalled = False
        waits: list[Deferred[Any]] = []
        for port in (self._udp, self._tcp):
            if port is not None:
                self._addresses.forget("dns", port.getHost())
                closing = port.stopListening()
                if closing is not None:
                    waits.append(closing)
        self._udp = self._tcp = None
        if self._guarded is not None:
            waits.append(self._guarded.closeAll(self._reactor))
        if self.recursor is not None:
            waits.append(self.recursor.stop())
        if self.primary is not None:
            waits.append(self.primary.stop())
        if waits:
            await DeferredList(waits)

    @property
    def udpAddress(self) -> tuple[str, int]:
        """C{(host, port)} of the UDP listener."""
        assert self._udp is not None, "not listening"
        address = self._udp.getHost()
        return address.host, address.port  # type: ignore[attr-defined]

    @property
    def tcpAddress(self) -> tuple[str, int]:
        """C{(host, port)} of the TCP listener."""
        assert self._tcp is not None, "not listening"
        address = self._tcp.getHost()
        return address.host, address.port  # type: ignore[attr-defined]


def _why(error: CannotListenError) -> str:
    reason = error.socketError
    return str(getattr(reason, "strerror", None) or reason)


def buildDNS(ctx: Any) -> Any:
    """
    The stack's DNS component (listed in L{appnet.stack.BUILDERS}).
    """
    from appnet.stack import Component

    config = ctx.config.dns
    if not config.enabled:
        return Component()
    service = DNSService(
        ctx.reactor,
        config,
        ctx.status,
        ctx.addresses,
        cacheClock=ctx.clock,
        zoneDirectory=ctx.dataDir.zones.path,
        keyDirectory=config.keys or ctx.dataDir.root.child("keys").path,
        secondaryDirectory=ctx.dataDir.root.child("secondary").path,
        traced=ctx.traced("dns"),
        connectionsPerAddress=ctx.config.limits.connections_per_ip,
        inherited=ctx.worker.dnsSockets() if ctx.worker is not None else None,
    )
    service.faults = ctx.faults
    return Component(services=[service], serves=("dns",))
