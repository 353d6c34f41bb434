"""
Tests for L{appnet.dns.fastpath}: the wire-level answer cache gives the
same bytes as the full query path, for a corpus of queries.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISystemHandle
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from appnet.dns.cache import Cache, Trust
from appnet.dns.fastpath import WireCache, ttlOffsets
from appnet.dns.policy import Policy, RateLimiter
from appnet.dns.query import (
    UDP_BATCH,
    DNSDatagramServer,
    DNSServerFactory,
    SeenQuery,
)
from appnet.dns.recursion import ForwardingResolver
from appnet.dns.wire import EDNS, decode, encode, newQuery
from appnet.dns.zones import Authority, zoneFromText
from appnet.faults import Faults
from appnet.status import Status
from appnet.testing import startDNS

ZONE = """\
$TTL 300
@      SOA ns hostmaster 1 3600 900 604800 60
       NS ns
       MX 10 mail
ns     A 192.0.2.53
mail   A 192.0.2.25
       AAAA 2001:db8::25
www    A 192.0.2.1
rr     A 192.0.2.11
rr     A 192.0.2.12
rr     A 192.0.2.13
txt    TXT "hello" "world"
_sip._tcp SRV 10 5 5060 www
one    CNAME two
two    CNAME www
out    CNAME www.cached.test.
*.wild A 192.0.2.77
a.b.ent A 192.0.2.9
big    TXT "{}"
big    TXT "{}"
big    TXT "{}"
sub    NS ns.sub
ns.sub A 192.0.2.54
""".format("a" * 200, "b" * 200, "c" * 200)

ORIGIN = b"hamburger.edu"
LOCAL = ("127.0.0.1", 5353)
REMOTE = ("192.0.2.99", 5353)

SOA = dns.Record_SOA(
    mname=b"ns.cached.test", rname=b"h.cached.test", serial=1, minimum=120
)


def fill(cache: Cache) -> None:
    """The recursive cache both sides start with."""
    cache.putRRSet(
        b"www.cached.test",
        dns.A,
        100,
        [dns.Record_A("198.51.100.1"), dns.Record_A("198.51.100.2")],
        Trust.ANSWER,
    )
    cache.putRRSet(
        b"alias.cached.test",
        dns.CNAME,
        40,
        [dns.Record_CNAME(b"www.cached.test")],
        Trust.ANSWER,
    )
    cache.putRRSet(
        b"glue.cached.test", dns.A, 300, [dns.Record_A("198.51.100.9")], Trust.GLUE
    )
    cache.putNegative(
        b"gone.cached.test",
        None,
        dns.RRHeader(b"cached.test", dns.SOA, dns.IN, 200, SOA),
    )
    cache.putNegative(
        b"www.cached.test",
        dns.MX,
        dns.RRHeader(b"cached.test", dns.SOA, dns.IN, 200, SOA),
    )


class Side:
    """One server: a factory, its UDP protocol, its counters."""

    def __init__(self, clock: Clock, wire: bool) -> None:
        self.clock = clock
        self.status = Status(clock)
        self.authority = Authority([zoneFromText(ZONE, "z", ORIGIN)])
        self.cache = Cache(clock)
        fill(self.cache)
        recursor = ForwardingResolver(
            clock, self.cache, [("127.0.0.1", 53)], status=self.status
        )
        self.wire = (
            WireCache(self.authority, self.cache, self.status, maxUDPSize=1232)
            if wire
            else None
        )
        self.factory = DNSServerFactory(
            clock,
            self.authority,
            recursor,
            Policy(["127.0.0.0/8"], []),
            self.status,
            None,
            maxUDPSize=1232,
            wireCache=self.wire,
        )
        self.seen: list[SeenQuery] = []
        self.factory.observers.append(self.seen.append)
        self.udp = DNSDatagramServer(self.factory, clock)
        self.transport = FakeDatagramTransport()
        self.udp.makeConnection(self.transport)

    def udpAsk(self, data: bytes, client: tuple[str, int]) -> bytes:
        before = len(self.transport.written)
        self.udp.datagramReceived(data, client)
        assert len(self.transport.written) == before + 1, "no single reply"
        payload: bytes = self.transport.written[-1][0]
        return payload

    def tcpAsk(self, data: bytes, client: tuple[str, int]) -> bytes:
        peer = IPv4Address("TCP", *client)
        protocol: Any = self.factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        protocol.dataReceived(struct.pack("!H", len(data)) + data)
        value = transport.value()
        protocol.connectionLost(None)
        (length,) = struct.unpack("!H", value[:2])
        assert len(value) == length + 2, "no single reply"
        return value[2:]


def query(
    name: bytes,
    type: int = dns.A,
    rd: bool = True,
    edns: EDNS | None = None,
    cd: bool = False,
    id: int = 1,
) -> bytes:
    message = newQuery(id, name, type, recursionDesired=rd)
    message.checkingDisabled = int(cd)
    return encode(message, edns)


def corpus() -> list[bytes]:
    """Every kind of question, with and without EDNS, RD and CD."""
    questions = [
        (b"www.hamburger.edu", dns.A),
        (b"WWW.Hamburger.EDU", dns.A),
        (b"hamburger.edu", dns.SOA),
        (b"hamburger.edu", dns.NS),
        (b"hamburger.edu", dns.MX),
        (b"mail.hamburger.edu", dns.AAAA),
        (b"txt.hamburger.edu", dns.TXT),
        (b"_sip._tcp.hamburger.edu", dns.SRV),
        (b"rr.hamburger.edu", dns.A),
        (b"one.hamburger.edu", dns.A),
        (b"one.hamburger.edu", dns.CNAME),
        (b"out.hamburger.edu", dns.A),
        (b"x.wild.hamburger.edu", dns.A),
        (b"x.wild.hamburger.edu", dns.MX),
        (b"b.ent.hamburger.edu", dns.A),
        (b"nope.hamburger.edu", dns.A),
        (b"www.hamburger.edu", dns.MX),
        (b"host.sub.hamburger.edu", dns.A),
        (b"big.hamburger.edu", dns.TXT),
        (b"hamburger.edu", dns.ALL_RECORDS),
        (b"www.cached.test", dns.A),
        (b"alias.cached.test", dns.A),
        (b"gone.cached.test", dns.A),
        (b"www.cached.test", dns.MX),
        (b"glue.cached.test", dns.A),
        (b"unknown.test", dns.A),
    ]
    variants: list[dict[str, Any]] = [
        {},
        {"rd": False},
        {"cd": True},
        {"edns": EDNS(512)},
        {"edns": EDNS(4096, dnssecOK=True)},
        {"edns": EDNS(1232, version=1)},
    ]
    out = [query(name, type, **v) for name, type in questions for v in variants]
    out.append(query(b"www.hamburger.edu", dns.A, cd=True, id=9)[:-1])
    return out


class DifferentialTests(SynchronousTestCase):
    """
    The same queries, in the same order, to a server with the wire cache
    and to one without, give the same bytes and the same counters.
    """

    def compare(self, ask: str) -> None:
        clock = Clock()
        clock.advance(1000)
        fast, full = Side(clock, True), Side(clock, False)
        queries = corpus()
        for round in range(4):
            for client in (LOCAL, REMOTE):
                for number, data in enumerate(queries):
                    data = (
                        struct.pack("!H", (round * 1000 + number) & 0xFFFF) + data[2:]
                    )
                    if len(data) < 12:
                        continue
                    # Asked twice: the second is a hit within the second.
                    for _ in range(2):
                        got = getattr(fast, ask)(data, client)
                        expected = getattr(full, ask)(data, client)
                        self.assertEqual(
                            got, expected, f"round {round}, {client}, query {number}"
                        )
            clock.advance(15.5)
        self.assertEqual(fast.status.snapshot(), full.status.snapshot())
        self.assertEqual(fast.seen, full.seen)
        self.assertEqual(len(fast.cache), len(full.cache))
        assert fast.wire is not None
        self.assertGreater(len(fast.wire), 100)

    def test_udp(self) -> None:
        """
        Over UDP: every record type, CNAME chains, wildcards, NXDOMAIN,
        NODATA, referrals, truncation, EDNS on and off, both access
        classes, recursive cache hits counting their TTLs down, and
        round-robin rotation.
        """
        self.compare("udpAsk")

    def test_tcp(self) -> None:
        """Over TCP, with its larger limit, the same holds."""
        self.compare("tcpAsk")

    def test_answeredFromCache(self) -> None:
        """
        A repeated question is answered without the full path, with the
        query's own ID.
        """
        side = Side(Clock(), True)
        first = side.udpAsk(query(b"www.hamburger.edu", id=5), LOCAL)
        side.factory.handleRequest = None  # type: ignore[assignment,method-assign]
        second = side.udpAsk(query(b"www.hamburger.edu", id=6), LOCAL)
        self.assertEqual(second[:2], b"\x00\x06")
        self.assertEqual(first[2:], second[2:])
        self.assertEqual(side.status.counter("dns", "queries"), 2)
        self.assertEqual(side.status.counter("dns", "rcode_noerror"), 2)

    def test_ttlCountsDown(self) -> None:
        """
        An answer from the recursive cache carries the seconds left, and
        is not served from the wire cache once its data expired.
        """
        clock = Clock()
        side = Side(clock, True)
        side.udpAsk(query(b"alias.cached.test"), LOCAL)
        clock.advance(30.2)
        data = side.udpAsk(query(b"alias.cached.test"), LOCAL)
        ttls = [struct.unpack_from("!I", data, o)[0] for o in ttlOffsets(data)]
        self.assertEqual(ttls, [9, 69, 69])
        clock.advance(10)
        data = side.udpAsk(query(b"alias.cached.test"), LOCAL)
        self.assertEqual(struct.unpack("!H", data[6:8])[0], 0)

    def test_zoneChangeInvalidates(self) -> None:
        """
        A change of zone data (a reload, or anything calling
        L{Authority.changed}) drops the cached answers.
        """
        side = Side(Clock(), True)
        before = side.udpAsk(query(b"www.hamburger.edu"), LOCAL)
        assert side.wire is not None
        self.assertTrue(len(side.wire))
        side.authority.replace(
            [zoneFromText(ZONE.replace("192.0.2.1", "192.0.2.2"), "z", ORIGIN)]
        )
        self.assertEqual(len(side.wire), 0)
        after = side.udpAsk(query(b"www.hamburger.edu"), LOCAL)
        self.assertNotEqual(before, after)
        self.assertIn(bytes([192, 0, 2, 2]), after)

    def test_evictedHitsCounted(self) -> None:
        """
        Hits the UDP hit path tallied in an entry are counted when the
        entry leaves the cache, so the counters match the full path's.
        """
        clock = Clock()
        fast, full = Side(clock, True), Side(clock, False)
        assert fast.wire is not None
        fast.wire.maxEntries = 2
        names = [b"www", b"www", b"www", b"ns", b"mail", b"www", b"ns", b"ns"]
        for name in names:
            data = query(name + b".hamburger.edu")
            self.assertEqual(fast.udpAsk(data, LOCAL), full.udpAsk(data, LOCAL))
        self.assertEqual(fast.status.snapshot(), full.status.snapshot())
        self.assertEqual(fast.seen, full.seen)

    def test_bounded(self) -> None:
        """The wire cache holds at most C{maxEntries} responses."""
        side = Side(Clock(), True)
        assert side.wire is not None
        side.wire.maxEntries = 3
        for name in (b"www", b"ns", b"mail", b"rr", b"txt"):
            side.udpAsk(query(name + b".hamburger.edu"), LOCAL)
        self.assertEqual(len(side.wire), 3)


class HitPathTests(SynchronousTestCase):
    """
    A repeated UDP query is answered by the protocol alone, with every
    policy still applied.
    """

    def test_noFactory(self) -> None:
        """
        The second time, neither the factory's datagram path nor the
        query path runs; the counters are those of two answers.
        """
        side = Side(Clock(), True)
        data = query(b"www.hamburger.edu", id=5)
        first = side.udpAsk(data, LOCAL)
        side.factory.answerDatagram = None  # type: ignore[assignment,method-assign]
        side.factory.handleRequest = None  # type: ignore[assignment,method-assign]
        second = side.udpAsk(b"\x00\x06" + data[2:], LOCAL)
        self.assertEqual(second, b"\x00\x06" + first[2:])
        counter = side.status.counter
        self.assertEqual(counter("dns", "queries"), 2)
        self.assertEqual(counter("dns", "queries_udp"), 2)
        self.assertEqual(counter("dns", "bytes_in"), 2 * len(data))
        self.assertEqual(counter("dns", "bytes_out"), 2 * len(first))
        self.assertEqual(len(side.seen), 2)

    def test_accessClass(self) -> None:
        """
        A client that may not recurse is not given what a recursive
        client's identical query got.
        """
        side = Side(Clock(), True)
        data = query(b"www.cached.test")
        allowed = side.udpAsk(data, LOCAL)
        side.udpAsk(data, LOCAL)
        refused = side.udpAsk(data, REMOTE)
        self.assertEqual(decode(allowed).message.rCode, dns.OK)
        self.assertEqual(decode(refused).message.rCode, dns.EREFUSED)

    def test_fault(self) -> None:
        """
        A DNS fault scripted after an answer was cached is applied to
        the next query.
        """
        clock = Clock()
        side = Side(clock, True)
        side.factory.faults = Faults(clock, side.status)
        data = query(b"www.hamburger.edu")
        side.udpAsk(data, LOCAL)
        side.udpAsk(data, LOCAL)
        side.factory.faults.dns("www.hamburger.edu", "servfail")
        reply = side.udpAsk(data, LOCAL)
        self.assertEqual(decode(reply).message.rCode, dns.ESERVER)
        self.assertEqual(decode(side.udpAsk(data, LOCAL)).message.rCode, dns.OK)

    def test_cacheRecentlyUsed(self) -> None:
        """
        An answer from the recursive cache marks the entries it read as
        just used, as a lookup would, so the cache evicts the same
        entries with and without the wire cache.
        """
        clock = Clock()
        sides = Side(clock, True), Side(clock, False)
        clock.advance(0.5)
        for name in (b"www", b"www", b"gone", b"gone", b"www"):
            data = query(name + b".cached.test")
            self.assertEqual(sides[0].udpAsk(data, LOCAL), sides[1].udpAsk(data, LOCAL))
        kept = []
        for side in sides:
            side.cache.maxEntries = len(side.cache)
            for i in range(4):
                side.cache.putRRSet(
                    b"new%d.test" % i,
                    dns.A,
                    60,
                    [dns.Record_A("192.0.2.1")],
                    Trust.ANSWER,
                )
            kept.append(side.cache.getRRSet(b"www.cached.test", dns.A) is not None)
        self.assertEqual(kept, [True, True])

    def test_rateLimited(self) -> None:
        """
        The rate limit applies to answers the hit path would give: over
        it, queries are dropped or slipped (an empty TC reply).
        """
        clock = Clock()
        side = Side(clock, True)
        side.factory.limiter = RateLimiter(clock, rate=1, burst=3, slip=2)
        data = query(b"www.hamburger.edu")
        for _ in range(6):
            side.udp.datagramReceived(data, LOCAL)
        replies = [decode(p).message for p, _ in side.transport.written]
        self.assertEqual(
            [(r.trunc, len(r.answers)) for r in replies], [(0, 1)] * 3 + [(1, 0)]
        )
        self.assertEqual(side.status.counter("dns", "rate_limited"), 3)
        self.assertEqual(side.status.counter("dns", "queries"), 3)
        self.assertEqual(side.status.counter("dns", "bytes_in"), 6 * len(data))

    def test_sendFails(self) -> None:
        """
        A reply the socket would not take is not counted as bytes out; one
        sent after an earlier datagram was refused (ECONNREFUSED) is.
        """
        side = Side(Clock(), True)
        data = query(b"www.hamburger.edu")
        size = len(side.udpAsk(data, LOCAL))
        errors = [errno.EAGAIN, errno.ECONNREFUSED]

        class Failing(FakeDatagramTransport):
            def write(self, packet: bytes, addr: Any = None) -> None:
                raise OSError(errors.pop(0), "no")

        udp = DNSDatagramServer(side.factory, side.clock)
        udp.makeConnection(Failing())
        udp.datagramReceived(data, LOCAL)
        udp.datagramReceived(data, LOCAL)
        self.assertEqual(errors, [])
        self.assertEqual(side.status.counter("dns", "bytes_out"), 2 * size)
        self.assertEqual(side.status.counter("dns", "queries"), 3)


class SocketTests(TestCase):
    """The hit path sends with the socket of a real UDP port."""

    async def test_repeated(self) -> None:
        """A query asked again is answered again, and counted."""
        running = await startDNS(self, zones={"hamburger.edu": ZONE})
        client = running.client()
        for _ in range(3):
            response = await client.query("www.hamburger.edu")
            self.assertEqual(
                [r.payload.dottedQuad() for r in response.answers], ["192.0.2.1"]
            )
        self.assertEqual(running.counter("queries_udp"), 3)
        self.assertEqual(len(running.queries), 3)


class FakeSocket:
    """
    A UDP socket's C{recvfrom} and C{sendto}: datagrams waiting in
    C{queue}, replies in C{sent}; C{onRead} is called at every read.
    """

    def __init__(self, family: int = socket.AF_INET) -> None:
        self.family = family
        self.queue: list[tuple[bytes, Any]] = []
        self.sent: list[tuple[bytes, Any]] = []
        #: How many replies had been sent at each read.
        self.sentAtRead: list[int] = []
        self.onRead: Callable[[], None] = lambda: None
        self.error: OSError | None = None

    def recvfrom(self, size: int) -> tuple[bytes, Any]:
        self.sentAtRead.append(len(self.sent))
        if self.error is not None:
            raise self.error
        if not self.queue:
            raise BlockingIOError(errno.EAGAIN, "nothing waiting")
        self.onRead()
        data, addr = self.queue.pop(0)
        return data[:size], addr

    def sendto(self, data: bytes, addr: Any) -> int:
        self.sent.append((data, addr))
        return len(data)


@implementer(ISystemHandle)
class SocketTransport(FakeDatagramTransport):
    """A datagram transport with a (fake) socket, like a real port's."""

    maxPacketSize = 8192

    def __init__(self, sock: FakeSocket) -> None:
        super().__init__()
        self.sock = sock

    def getHandle(self) -> FakeSocket:
        return self.sock


class Batched:
    """
    A L{Side} whose UDP protocol has a socket: datagrams are queued on
    it and the port hands over the first of them, as the reactor does
    when the socket is readable.
    """

    def __init__(self, side: Side, family: int = socket.AF_INET) -> None:
        self.side = side
        self.sock = FakeSocket(family)
        self.udp = DNSDatagramServer(side.factory, side.clock)
        self.udp.makeConnection(SocketTransport(self.sock))

    def ask(self, datagrams: list[tuple[bytes, Any]]) -> list[tuple[bytes, Any]]:
        """Queue C{datagrams}, let the port read until none is left."""
        self.sock.queue.extend(datagrams)
        before = len(self.sock.sent)
        while self.sock.queue:
            data, addr = self.sock.queue.pop(0)
            self.udp.datagramReceived(data, addr)
        return self.sock.sent[before:]


class BatchTests(SynchronousTestCase):
    """
    A readable UDP socket is read on while datagrams wait, up to a
    batch; the replies leave once the batch is read, and are those the
    full path gives, query by query.
    """

    def test_differential(self) -> None:
        """
        The corpus, each query twice and from both access classes, in
        batches: the same replies, in the same order, with the same
        counters and observations as a server without the wire cache
        asked one query at a time.
        """
        clock = Clock()
        clock.advance(1000)
        fast, full = Side(clock, True), Side(clock, False)
        batched = Batched(fast)
        queries = corpus()
        for round in range(4):
            datagrams = []
            for client in (LOCAL, REMOTE):
                for number, data in enumerate(queries):
                    data = (
                        struct.pack("!H", (round * 1000 + number) & 0xFFFF) + data[2:]
                    )
                    if len(data) >= 12:
                        datagrams += [(data, client)] * 2
            got = batched.ask(datagrams)
            expected = [(full.udpAsk(data, addr), addr) for data, addr in datagrams]
            self.assertEqual(got, expected, f"round {round}")
            clock.advance(15.5)
        self.assertEqual(fast.status.snapshot(), full.status.snapshot())
        self.assertEqual(fast.seen, full.seen)
        self.assertEqual(len(fast.cache), len(full.cache))

    def test_repliesAfterReading(self) -> None:
        """
        Waiting datagrams are read in one go; the replies of hits are
        sent, in order, once none is waiting, or with the reply of a
        query the full path answers.
        """
        side = Side(Clock(), True)
        batched = Batched(side)
        names = [b"www", b"mail", b"www", b"nope", b"www", b"mail"]
        batched.ask([(query(b"www.hamburger.edu"), LOCAL)])
        batched.ask([(query(b"mail.hamburger.edu"), LOCAL)])
        before = len(batched.sock.sent)
        batched.sock.sentAtRead.clear()
        datagrams = [
            (query(name + b".hamburger.edu", id=i), LOCAL)
            for i, name in enumerate(names)
        ]
        replies = batched.ask(datagrams)
        self.assertEqual([p[:2] for p, _ in replies], [d[:2] for d, _ in datagrams])
        # Six reads from the socket (the port gave the first), the last
        # finding nothing; "nope" is not cached: its reply and those
        # before it left at once.
        self.assertEqual(
            [n - before for n in batched.sock.sentAtRead], [0, 0, 0, 4, 4, 4]
        )
        self.assertEqual(side.status.counter("dns", "queries"), 8)

    def test_bounded(self) -> None:
        """
        At most C{UDP_BATCH} datagrams are read before their replies go; the
        rest wait for the port's next read.
        """
        side = Side(Clock(), True)
        batched = Batched(side)
        data = query(b"www.hamburger.edu")
        batched.sock.queue = [(data, LOCAL)] * (UDP_BATCH + 10)
        first = batched.sock.queue.pop(0)
        batched.udp.datagramReceived(*first)
        self.assertEqual(len(batched.sock.sent), UDP_BATCH)
        self.assertEqual(len(batched.sock.queue), 10)

    def test_ttlExactWithinBatch(self) -> None:
        """
        The clock is read for every hit of an entry built from the
        recursive cache: a second that ends within a batch changes the
        TTLs of the answers after it, as on the full path.
        """
        clock = Clock()
        clock.advance(1000)
        fast, full = Side(clock, True), Side(clock, False)
        batched = Batched(fast)
        data = query(b"www.cached.test")
        batched.ask([(data, LOCAL)])
        expected = [(full.udpAsk(data, LOCAL), LOCAL)]

        def later() -> None:
            # 0.3 s pass before each read from the socket; the full path
            # is asked at the time the read datagram is answered.
            clock.advance(0.3)
            expected.append((full.udpAsk(data, LOCAL), LOCAL))

        batched.sock.onRead = later
        got = batched.ask([(data, LOCAL)] * 8)
        self.assertEqual(got, expected)
        ttls = [struct.unpack_from("!I", p, ttlOffsets(p)[0])[0] for p, _ in got]
        self.assertEqual(ttls, [100, 99, 99, 99, 98, 98, 98, 97])

    def test_policies(self) -> None:
        """
        Within a batch the rate limit applies to every datagram, and a
        DNS fault scripted before it is taken by the first query it
        matches, the queries after it answered from the cache again.
        """
        clock = Clock()
        side = Side(clock, True)
        batched = Batched(side)
        data = query(b"www.hamburger.edu")
        batched.ask([(data, LOCAL)])
        side.factory.faults = Faults(clock, side.status)
        side.factory.faults.dns("www.hamburger.edu", "servfail")
        replies = batched.ask([(data, LOCAL)] * 3)
        self.assertEqual(
            [decode(p).message.rCode for p, _ in replies],
            [dns.ESERVER, dns.OK, dns.OK],
        )
        side.factory.limiter = RateLimiter(clock, rate=1, burst=3, slip=2)
        replies = batched.ask([(data, LOCAL)] * 6)
        messages = [decode(p).message for p, _ in replies]
        self.assertEqual(
            [(m.trunc, len(m.answers)) for m in messages], [(0, 1)] * 3 + [(1, 0)]
        )
        self.assertEqual(side.status.counter("dns", "rate_limited"), 3)
        self.assertEqual(side.status.counter("dns", "queries"), 7)
        self.assertEqual(side.status.counter("dns", "bytes_in"), 10 * len(data))

    def test_readError(self) -> None:
        """
        An error reading on ends the batch (the port's next read meets
        it); what was read is answered.
        """
        side = Side(Clock(), True)
        batched = Batched(side)
        data = query(b"www.hamburger.edu")
        batched.ask([(data, LOCAL)])
        batched.sock.error = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
        batched.sock.queue.append((data, LOCAL))
        batched.udp.datagramReceived(data, LOCAL)
        self.assertEqual(len(batched.sock.sent), 2)
        self.assertEqual(len(batched.sock.queue), 1)

    def test_ipv6(self) -> None:
        """
        Addresses read from an IPv6 socket are cut to host and port, as
        the port cuts them.
        """
        side = Side(Clock(), True)
        side.factory.policy = Policy(["::1"], [])
        batched = Batched(side, socket.AF_INET6)
        data = query(b"www.cached.test")
        replies = batched.ask([(data, ("::1", 53, 0, 0))] * 3)
        self.assertEqual([a for _, a in replies[1:]], [("::1", 53)] * 2)
        self.assertEqual([decode(p).message.rCode for p, _ in replies], [dns.OK] * 3)

    def test_lateReply(self) -> None:
        """
        A reply given after its batch (an answer from recursion) is sent
        at once.
        """
        side = Side(Clock(), True)
        batched = Batched(side)
        batched.udp.send(b"late", LOCAL)
        self.assertEqual(batched.sock.sent, [(b"late", LOCAL)])
