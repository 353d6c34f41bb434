"""
The DNS query path: the UDP and TCP protocols and the factory that decides
every answer (policy, wire cache, authority, recursion, truncation, zone
transfers).

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IAddress, ISystemHandle
from twisted.logger import Logger
from twisted.names import dns, server
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from appnet.dns.answer import Answer
from appnet.dns.errors import MalformedMessage, ResolutionFailed
from appnet.dns.fastpath import Key, WireCache
from appnet.dns.interfaces import IRecursiveResolver
from appnet.dns.names import display, normalize
from appnet.dns.policy import Policy, RateLimiter, Verdict
from appnet.dns.records import NOTAUTH, RCODES, typeName
from appnet.dns.replication import Replication
from appnet.dns.wire import (
    EDNS,
    STANDARD_UDP_SIZE,
    Decoded,
    chunkRecords,
    decode,
    encode,
    responseTo,
)
from appnet.dns.zones import Authority
from appnet.faults import NO_FAULTS, Fault, Faults
from appnet.status import Status

__all__ = [
    "DNSDatagramServer",
    "DNSServerFactory",
    "DNSStreamServer",
    "SeenQuery",
    "UDP_BATCH",
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
#: Most UDP datagrams read before their replies are sent (see
#: L{DNSDatagramServer}).
UDP_BATCH = 64
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


class _NotListening(OSError):
    """A reply after the UDP port stopped (a late answer from recursion)."""


def _unsent(data: bytes, addr: Any) -> None:
    raise _NotListening("not listening")


class DNSDatagramServer(dns.DNSDatagramProtocol):
    """
    The server's UDP side: answers a repeated query from the wire cache's
    tables (L{WireCache.hosts}) at once, and hands every other datagram to
    the factory, counting the bytes in and out (the TCP side is counted by
    the listener's L{appnet.listen.GuardedFactory}, which UDP does not go
    through).

    Datagrams are taken in batches, as servers with C{recvmmsg} and
    C{sendmmsg} do: given one by the port, the protocol reads on from the
    port's socket while datagrams are waiting, up to L{UDP_BATCH}, and the
    replies of the hits leave together when the batch is read (or when
    the full path answers one of its queries). Under load a client's
    queries then cost one wake-up per batch on either side instead of one
    per query; an idle server answers each datagram as it comes (a batch
    of one).
    """

    noisy = False

    def __init__(self, controller: DNSServerFactory, reactor: Any = None) -> None:
        super().__init__(controller, reactor)
        self._wire = controller.wireCache
        self._hosts: dict[str, dict[bytes, Any]] = {}
        self._sendto: Callable[[bytes, Any], Any] = _unsent
        self._recvfrom: Callable[[int], tuple[bytes, Any]] | None = None
        self._packetSize = 8192
        self._ipv6 = False
        #: The replies of the batch being read, or C{None} between batches.
        self._batch: list[tuple[bytes, Any]] | None = None

    def startProtocol(self) -> None:
        super().startProtocol()
        # A reply goes back to the address its query came from, so it
        # needs none of the address checks of the port's write: send it
        # with the socket's own sendto where there is one; read a batch
        # with its recvfrom, as the port's doRead does.
        handle = ISystemHandle(self.transport, None)
        sock = handle.getHandle() if handle is not None else None
        sendto = getattr(sock, "sendto", None)
        self._sendto = sendto if sendto is not None else self.transport.write
        self._recvfrom = getattr(sock, "recvfrom", None)
        self._packetSize = getattr(self.transport, "maxPacketSize", 8192)
        self._ipv6 = getattr(sock, "family", None) == socket.AF_INET6
        if self._wire is not None:
            self._hosts = self._wire.hosts

    def stopProtocol(self) -> None:
        self._sendto = _unsent
        self._recvfrom = None
        self._hosts = {}
        super().stopProtocol()

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if self._batch is not None:
            # Not from the port (it only calls between batches).
            self._answer(data, addr, self._batch, False)
            return
        batch: list[tuple[bytes, Any]] = []
        self._batch = batch
        try:
            self._answer(data, addr, batch, True)
        finally:
            self._batch = None
            self._flush(batch)

    def _flush(self, batch: list[tuple[bytes, Any]]) -> None:
        """Send the replies of a batch so far."""
        sendto = self._sendto
        for payload, to in batch:
            try:
                sendto(payload, to)
            except OSError as e:
                self.unsent(payload, to, e)
        batch.clear()

    def _answer(
        self, data: bytes, addr: Any, batch: list[tuple[bytes, Any]], more: bool
    ) -> None:
        """
        Answer C{data}, then with C{more} the datagrams waiting on the
        socket, up to a batch; the replies given at once go in C{batch}.
        """
        factory = self.controller
        limiter = factory.limiter
        observers = factory.observers
        faults = factory.faults
        hosts = self._hosts
        wire: Any = self._wire
        # Set when an entry has cache entries it touched.
        cache: Any = None
        seconds: Any = None
        if wire is not None and wire.cache is not None:
            cache, seconds = wire.cache, wire.clock.seconds
        recvfrom = self._recvfrom
        size = self._packetSize
        ipv6 = self._ipv6
        append = batch.append
        answer = Verdict.ANSWER
        # Faults are scripted between reactor turns and taken by the full
        # path only: checked again after each query it answers.
        faulted = faults.has("dns")
        left = UDP_BATCH if more and recvfrom is not None else 1
        while True:
            host = addr[0]
            if limiter is not None and (verdict := limiter.check(host)) is not answer:
                factory.status.increment("dns", "bytes_in", len(data))
                factory.refused(verdict, data, self, addr)
            else:
                table = None if faulted else hosts.get(host)
                entry = None if table is None else table.get(data[2:])
                if (
                    entry is not None
                    and (hot := entry.hot) is not None
                    and (
                        not entry.touched
                        # Built from the recursive cache: exact while its
                        # TTLs are the seconds left and its data unchanged.
                        or (
                            seconds() < entry.until
                            and cache.generation == entry.generation
                            # Noted as used already, or noted now.
                            and (entry.used or wire.use(entry))
                        )
                    )
                ):
                    # Counted when the counters are read (WireCache.settle).
                    entry.hits += 1
                    entry.received += len(data)
                    if observers:
                        factory.notify(entry.seen, addr, "udp")
                    append((data[:2] + hot, addr))
                else:
                    factory.status.increment("dns", "bytes_in", len(data))
                    factory.answerDatagram(data, self, addr)
                    # The full path is slow enough that batching its
                    # replies saves nothing but adds to their wait.
                    self._flush(batch)
                    faulted = faults.has("dns")
            left -= 1
            if not left:
                return
            try:
                data, addr = recvfrom(size)  # type: ignore[misc]
            except OSError:
                # Nothing waiting (or an error the port's next read
                # meets again): the batch is read.
                return
            if ipv6:
                # As the port does: host and port only.
                addr = addr[:2]

    def reply(self, data: bytes, addr: Any) -> None:
        """
        Send one reply whose bytes out are already counted: with the
        batch being read, or now (a late answer, from recursion).
        """
        batch = self._batch
        if batch is not None:
            batch.append((data, addr))
            return
        try:
            self._sendto(data, addr)
        except OSError as e:
            self.unsent(data, addr, e)

    def unsent(self, data: bytes, addr: Any, error: OSError) -> None:
        """Sending a reply failed: log it, take back its bytes out."""
        if error.errno == errno.ECONNREFUSED:
            # Sent; an earlier datagram was refused (the port's write
            # ignores this too).
            return
        if not isinstance(error, _NotListening):
            self.controller._log.info(
                "cannot send a reply to {client}: {error}", client=addr, error=error
            )
        self.controller.status.increment("dns", "bytes_out", -len(data))

    def send(self, data: bytes, addr: Any) -> None:
        """Send one reply, counting its bytes out."""
        self.controller.status.increment("dns", "bytes_out", len(data))
        self.reply(data, addr)


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
        if self.limiter is not None:
            verdict = self.limiter.check(addr[0])
            if verdict is not Verdict.ANSWER:
                self.refused(verdict, data, protocol, addr)
                return
        self.answerDatagram(data, protocol, addr)

    def refused(
        self, verdict: Verdict, data: bytes, protocol: DNSDatagramServer, addr: Any
    ) -> None:
        """A UDP query over the rate limit: dropped, or slipped (TC reply)."""
        self._count("rate_limited")
        if verdict is Verdict.SLIP:
            self._slip(data, protocol, addr)

    def answerDatagram(
        self, data: bytes, protocol: DNSDatagramServer, addr: Any
    ) -> None:
        """A UDP query from C{addr} within the rate limit."""
        host = addr[0]
        wire = self.wireCache
        if wire is not None and not self.traced and not self.faults.has("dns"):
            mayRecurse = self.policy.mayRecurse(host)
            key = wire.keyOf(data, mayRecurse, False)
            if key is not None:
                found = wire.answer(key, data)
                if found is not None:
                    if self.observers:
                        self.notify(found[1].seen, addr, "udp")
                    protocol.reply(found[0], addr)
                else:
                    self._fill(
                        key,
                        data,
                        (host, addr[1]),
                        "udp",
                        lambda payload: protocol.send(payload, addr),
                    )
                wire.remember(host, mayRecurse, data, key)
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
                        self.notify(found[1].seen, client, "tcp")
                    protocol.send(found[0])
                    return
                self._fill(key, data, client, "tcp", protocol.send)
                return
        self.handleRequest(data, client, "tcp", protocol.send)

    def notify(self, seen: tuple[str, int, bool], client: Any, transport: str) -> None:
        """Tell the query observers of a query the wire cache answered."""
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
                for chunk in chunkRecords(records, _TRANSFER_CHUNK):
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
