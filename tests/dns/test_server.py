"""
Tests for L{appnet.dns.query.DNSServerFactory}: the query path, over a
fake datagram transport and a L{StringTransport}, on a L{Clock}.
"""

from __future__ import annotations

import random
import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from appnet.dns.answer import Answer
from appnet.dns.errors import ResolutionFailed
from appnet.dns.interfaces import IRecursiveResolver
from appnet.dns.policy import Policy, RateLimiter
from appnet.dns.query import DNSDatagramServer, DNSServerFactory, SeenQuery
from appnet.dns.wire import EDNS, Decoded, decode, encode, newQuery
from appnet.dns.zones import Authority, zoneFromText
from appnet.status import Status

ZONE = """\
$TTL 300
@    SOA ns hostmaster 1 3600 900 604800 60
     NS ns
ns   A 192.0.2.53
www  A 192.0.2.1
big  TXT "{}"
big  TXT "{}"
big  TXT "{}"
away CNAME www.elsewhere.test.
sub  NS ns.sub
ns.sub A 192.0.2.54
""".format("a" * 200, "b" * 200, "c" * 200)

LOCAL = ("127.0.0.1", 5353)
REMOTE = ("192.0.2.99", 5353)


@implementer(IRecursiveResolver)
class FakeRecursor:
    """Answers recursion as the test says; records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[bytes, int]] = []
        self.result: Deferred[Answer] | Answer | Exception = Answer(dns.OK, [])

    def cached(self, name: bytes, type: int) -> Answer | None:
        return None

    def resolve(self, name: bytes, type: int) -> Deferred[Answer]:
        self.asked.append((name, type))
        result = self.result
        if isinstance(result, Deferred):
            return result
        if isinstance(result, Exception):
            return fail(result)
        return succeed(result)

    def stop(self) -> Deferred[None]:
        return succeed(None)


def query(
    name: bytes,
    type: int = dns.A,
    rd: bool = True,
    edns: EDNS | None = None,
    id: int = 77,
) -> bytes:
    return encode(newQuery(id, name, type, recursionDesired=rd), edns)


class Harness:
    """A factory with a UDP protocol on a fake transport."""

    def __init__(
        self,
        recursor: FakeRecursor | None = None,
        allowTransfer: tuple[str, ...] = (),
        limiter: bool = False,
    ) -> None:
        self.clock = Clock()
        self.status = Status(self.clock)
        self.factory = DNSServerFactory(
            self.clock,
            Authority([zoneFromText(ZONE, "z", b"hamburger.edu")]),
            recursor,
            Policy(["127.0.0.0/8"], allowTransfer),
            self.status,
            RateLimiter(self.clock, rate=1, burst=1) if limiter else None,
            maxUDPSize=1232,
            idleTimeout=30,
            recursionTimeout=10,
        )
        self.udp = DNSDatagramServer(self.factory, self.clock)
        self.transport = FakeDatagramTransport()
        self.udp.makeConnection(self.transport)

    def send(self, data: bytes, client: tuple[str, int] = LOCAL) -> None:
        self.udp.datagramReceived(data, client)

    def ask(self, data: bytes, client: tuple[str, int] = LOCAL) -> Decoded:
        before = len(self.transport.written)
        self.send(data, client)
        assert len(self.transport.written) == before + 1, "no single reply"
        payload, address = self.transport.written[-1]
        assert address == client
        return decode(payload)

    def tcp(self, client: tuple[str, int] = LOCAL) -> tuple[Any, StringTransport]:
        peer = IPv4Address("TCP", *client)
        protocol = self.factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        return protocol, transport


def framed(transport: StringTransport) -> list[Decoded]:
    data = transport.value()
    out = []
    while data:
        (length,) = struct.unpack("!H", data[:2])
        out.append(decode(data[2 : 2 + length]))
        data = data[2 + length :]
    return out


class AuthoritativeTests(SynchronousTestCase):
    """
    Names in our zones.
    """

    def test_answer(self) -> None:
        """Our names are answered with AA, RA clear without recursion."""
        h = Harness()
        reply = h.ask(query(b"www.hamburger.edu"))
        message = reply.message
        self.assertEqual((message.id, message.answer, message.auth), (77, 1, True))
        self.assertEqual(message.recAv, 0)
        self.assertEqual(message.answers[0].payload.dottedQuad(), "192.0.2.1")

    def test_caseKept(self) -> None:
        """The question is echoed as asked (case and all)."""
        h = Harness()
        reply = h.ask(query(b"WWW.Hamburger.EDU"))
        self.assertEqual(reply.message.queries[0].name.name, b"WWW.Hamburger.EDU")
        self.assertEqual(len(reply.message.answers), 1)

    def test_nxdomain(self) -> None:
        """NXDOMAIN carries the SOA."""
        reply = Harness().ask(query(b"nope.hamburger.edu"))
        self.assertEqual(reply.message.rCode, dns.ENAME)
        self.assertEqual([r.type for r in reply.message.authority], [dns.SOA])

    def test_observersAndCounters(self) -> None:
        """Each query is shown to observers and counted."""
        h = Harness()
        seen: list[SeenQuery] = []
        h.factory.observers.append(seen.append)
        h.ask(query(b"www.hamburger.edu", dns.MX, rd=False))
        self.assertEqual(
            seen, [SeenQuery("www.hamburger.edu", dns.MX, LOCAL, "udp", False)]
        )
        self.assertEqual(h.status.counter("dns", "queries"), 1)
        self.assertEqual(h.status.counter("dns", "rcode_noerror"), 1)

    def test_udpBytes(self) -> None:
        """
        Bytes of UDP queries and replies are counted as the service's
        C{bytes_in} and C{bytes_out}, like those of TCP connections (which
        the listener counts), so C{/status} shows DNS traffic of stubs
        that never use TCP; a dropped query still counts as bytes in.
        """
        h = Harness(limiter=True)
        data = query(b"www.hamburger.edu")
        h.ask(data)
        [(payload, _)] = h.transport.written
        self.assertEqual(h.status.counter("dns", "bytes_in"), len(data))
        self.assertEqual(h.status.counter("dns", "bytes_out"), len(payload))
        h.send(data)
        self.assertEqual(len(h.transport.written), 1, "rate limited: dropped")
        self.assertEqual(h.status.counter("dns", "bytes_in"), 2 * len(data))
        self.assertEqual(h.status.counter("dns", "bytes_out"), len(payload))


class RecursionPolicyTests(SynchronousTestCase):
    """
    Recursion only for allowed clients that ask for it.
    """

    def test_fakeProvidesInterface(self) -> None:
        """The fake recursor provides the interface it stands in for."""
        self.assertTrue(verifyObject(IRecursiveResolver, FakeRecursor()))

    def test_noRecursionConfigured(self) -> None:
        """Without recursion, other names are REFUSED."""
        reply = Harness().ask(query(b"example.com"))
        self.assertEqual(reply.message.rCode, dns.EREFUSED)

    def test_disallowedClient(self) -> None:
        """A client outside allow_recursion is REFUSED; RA is clear."""
        recursor = FakeRecursor()
        h = Harness(recursor)
        reply = h.ask(query(b"example.com"), REMOTE)
        self.assertEqual((reply.message.rCode, reply.message.recAv), (dns.EREFUSED, 0))
        self.assertEqual(recursor.asked, [])

    def test_disallowedClientStillGetsOurZones(self) -> None:
        """Our own zones are answered to anyone."""
        reply = Harness(FakeRecursor()).ask(query(b"www.hamburger.edu"), REMOTE)
        self.assertEqual(reply.message.rCode, dns.OK)
        self.assertTrue(reply.message.auth)

    def test_noRD(self) -> None:
        """Without RD, other names are REFUSED even for allowed clients."""
        recursor = FakeRecursor()
        reply = Harness(recursor).ask(query(b"example.com", rd=False))
        self.assertEqual(reply.message.rCode, dns.EREFUSED)
        self.assertEqual(reply.message.recAv, 1)
        self.assertEqual(recursor.asked, [])

    def test_recursion(self) -> None:
        """An allowed client with RD gets the recursor's answer, RA set."""
        recursor = FakeRecursor()
        record = dns.RRHeader(
            b"example.com", dns.A, dns.IN, 60, dns.Record_A("192.0.2.7")
        )
        recursor.result = Answer(dns.OK, [record])
        reply = Harness(recursor).ask(query(b"Example.COM"))
        self.assertEqual(recursor.asked, [(b"example.com", dns.A)])
        self.assertEqual((reply.message.rCode, reply.message.recAv), (dns.OK, 1))
        self.assertFalse(reply.message.auth)
        self.assertEqual(reply.message.answers[0].payload.dottedQuad(), "192.0.2.7")

    def test_servfailNotNXDOMAIN(self) -> None:
        """A recursion failure is SERVFAIL, never NXDOMAIN."""
        recursor = FakeRecursor()
        recursor.result = ResolutionFailed("example.com", "no forwarder gave an answer")
        reply = Harness(recursor).ask(query(b"example.com"))
        self.assertEqual(reply.message.rCode, dns.ESERVER)

    def test_servfailOnTimeout(self) -> None:
        """Recursion taking longer than recursion_timeout is SERVFAIL."""
        recursor = FakeRecursor()
        recursor.result = Deferred()
        h = Harness(recursor)
        h.send(query(b"example.com"))
        self.assertEqual(h.transport.written, [])
        h.clock.advance(10)
        [(payload, _)] = h.transport.written
        self.assertEqual(decode(payload).message.rCode, dns.ESERVER)

    def test_delegatedNameIsRecursed(self) -> None:
        """
        A name we delegate away: a referral for clients without recursion,
        the recursor's answer for those with it.
        """
        recursor = FakeRecursor()
        h = Harness(recursor)
        referral = h.ask(query(b"www.sub.hamburger.edu", rd=False))
        self.assertFalse(referral.message.auth)
        self.assertEqual([r.type for r in referral.message.authority], [dns.NS])
        self.assertEqual(recursor.asked, [])
        h.ask(query(b"www.sub.hamburger.edu"))
        self.assertEqual(recursor.asked, [(b"www.sub.hamburger.edu", dns.A)])

    def test_cnameLeavingZoneIsRecursed(self) -> None:
        """
        A CNAME out of our zones is finished by recursion for clients
        that may recurse, and left to the client otherwise.
        """
        recursor = FakeRecursor()
        record = dns.RRHeader(
            b"www.elsewhere.test", dns.A, dns.IN, 60, dns.Record_A("192.0.2.8")
        )
        recursor.result = Answer(dns.OK, [record])
        h = Harness(recursor)
        reply = h.ask(query(b"away.hamburger.edu"))
        self.assertEqual([r.type for r in reply.message.answers], [dns.CNAME, dns.A])
        self.assertTrue(reply.message.auth)
        self.assertEqual(recursor.asked, [(b"www.elsewhere.test", dns.A)])
        reply = h.ask(query(b"away.hamburger.edu"), REMOTE)
        self.assertEqual([r.type for r in reply.message.answers], [dns.CNAME])


class TraceTests(SynchronousTestCase):
    """
    C{--trace dns} logs each query and reply as one line.
    """

    def test_trace(self) -> None:
        """The question and the outcome are logged, client first."""
        from twisted.logger import formatEvent, globalLogPublisher

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        h = Harness()
        h.factory.traced = True
        h.ask(query(b"www.hamburger.edu", dns.MX))
        lines = [formatEvent(e) for e in events if "dns 127.0.0.1" in formatEvent(e)]
        self.assertEqual(
            lines,
            [
                "dns 127.0.0.1:5353 C: www.hamburger.edu. MX +rd",
                "dns 127.0.0.1:5353 S: NOERROR aa 0 answers, 85 bytes",
            ],
        )


class SizeTests(SynchronousTestCase):
    """
    UDP replies are truncated to the client's limit; TCP gets them whole.
    """

    def test_truncatedAt512(self) -> None:
        """Without EDNS, a reply over 512 bytes is truncated, TC set."""
        reply = Harness().ask(query(b"big.hamburger.edu", dns.TXT))
        self.assertTrue(reply.message.trunc)
        self.assertEqual(reply.message.answers, [])
        self.assertEqual(reply.message.queries[0].name.name, b"big.hamburger.edu")
        self.assertLessEqual(reply.size, 512)

    def test_ednsSize(self) -> None:
        """With EDNS, the client's size (up to max_udp_size) applies."""
        reply = Harness().ask(query(b"big.hamburger.edu", dns.TXT, edns=EDNS(4096)))
        self.assertFalse(reply.message.trunc)
        self.assertEqual(len(reply.message.answers), 3)
        self.assertEqual(reply.edns, EDNS(1232))

    def test_wholeOverTCP(self) -> None:
        """Over TCP the reply is whole, TC clear."""
        h = Harness()
        protocol, transport = h.tcp()
        data = query(b"big.hamburger.edu", dns.TXT)
        protocol.dataReceived(struct.pack("!H", len(data)) + data)
        [reply] = framed(transport)
        self.assertFalse(reply.message.trunc)
        self.assertEqual(len(reply.message.answers), 3)
        self.assertEqual(h.status.counter("dns", "queries_tcp"), 1)

    def test_pipelinedTCP(self) -> None:
        """Several queries in one TCP segment are all answered."""
        protocol, transport = Harness().tcp()
        data = b"".join(
            struct.pack("!H", len(q)) + q
            for q in (
                query(b"www.hamburger.edu", id=1),
                query(b"ns.hamburger.edu", id=2),
            )
        )
        protocol.dataReceived(data)
        self.assertEqual([r.message.id for r in framed(transport)], [1, 2])

    def test_idleTimeout(self) -> None:
        """An idle TCP connection is closed after idle_timeout."""
        h = Harness()
        protocol, transport = h.tcp()
        h.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        h.clock.advance(1)
        self.assertTrue(transport.disconnecting)


class BadInputTests(SynchronousTestCase):
    """
    Bad packets get FORMERR/NOTIMP and never crash the server.
    """

    def test_malformed(self) -> None:
        """A packet whose header reads but whose body does not: FORMERR."""
        data = query(b"www.hamburger.edu")[:-2]
        reply = Harness().ask(data)
        self.assertEqual((reply.message.id, reply.message.rCode), (77, dns.EFORMAT))
        self.assertEqual(reply.message.answer, 1)

    def test_malformedResponseIgnored(self) -> None:
        """A malformed packet with QR set gets no reply (no reply loops)."""
        message = newQuery(5, b"www.hamburger.edu", dns.A)
        message.answer = 1
        h = Harness()
        h.send(encode(message)[:-2])
        self.assertEqual(h.transport.written, [])

    def test_mutatedPackets(self) -> None:
        """
        Thousands of randomly damaged queries (a fixed seed) never raise
        out of the server, over UDP or TCP.
        """
        rnd = random.Random(4)
        h = Harness(FakeRecursor(), allowTransfer=("127.0.0.1",))
        protocol, transport = h.tcp()
        seeds = [
            query(b"www.hamburger.edu"),
            query(b"big.hamburger.edu", dns.TXT, edns=EDNS(4096)),
            query(b"hamburger.edu", dns.AXFR),
            query(b"example.com", dns.MX),
        ]
        for _ in range(3000):
            data = bytearray(rnd.choice(seeds))
            for _ in range(rnd.randint(1, 4)):
                if rnd.random() < 0.6 and data:
                    data[rnd.randrange(len(data))] = rnd.randrange(256)
                elif rnd.random() < 0.5:
                    data = data[: rnd.randrange(len(data) + 1)]
                else:
                    data += bytes(rnd.randrange(256) for _ in range(8))
            h.send(bytes(data))
            protocol.dataReceived(struct.pack("!H", len(data)) + bytes(data))
        self.assertFalse(transport.disconnecting)
        self.assertGreater(h.status.counter("dns", "malformed"), 100)

    def test_tooShort(self) -> None:
        """Fewer bytes than a header: dropped, counted."""
        h = Harness()
        h.send(b"\x00\x01\x02")
        self.assertEqual(h.transport.written, [])
        self.assertEqual(h.status.counter("dns", "malformed"), 1)

    def test_severalQuestions(self) -> None:
        """Two questions: FORMERR."""
        message = newQuery(5, b"www.hamburger.edu", dns.A)
        message.queries.append(dns.Query(b"ns.hamburger.edu", dns.A))
        reply = Harness().ask(encode(message))
        self.assertEqual(reply.message.rCode, dns.EFORMAT)

    def test_noQuestion(self) -> None:
        """No question: FORMERR."""
        message = newQuery(5, b"x", dns.A)
        message.queries = []
        self.assertEqual(Harness().ask(encode(message)).message.rCode, dns.EFORMAT)

    def test_unknownOpcode(self) -> None:
        """Opcodes other than QUERY: NOTIMP, as a response (QR set)."""
        for opcode in (dns.OP_STATUS, dns.OP_NOTIFY, dns.OP_UPDATE, 9):
            message = newQuery(5, b"www.hamburger.edu", dns.A)
            message.opCode = opcode
            reply = Harness().ask(encode(message))
            self.assertEqual(
                (reply.message.rCode, reply.message.answer, reply.message.opCode),
                (dns.ENOTIMP, 1, opcode),
            )

    def test_badEDNSVersion(self) -> None:
        """EDNS version 1: BADVERS, answered with version 0."""
        reply = Harness().ask(query(b"www.hamburger.edu", edns=EDNS(1232, version=1)))
        self.assertEqual(reply.rcode, dns.EBADVERSION)
        self.assertEqual(reply.edns, EDNS(1232, version=0, extendedRcode=1))

    def test_severalOPT(self) -> None:
        """Two OPT records: FORMERR."""
        message = newQuery(5, b"www.hamburger.edu", dns.A)
        message.additional = [EDNS().record(), EDNS().record()]
        self.assertEqual(Harness().ask(encode(message)).message.rCode, dns.EFORMAT)

    def test_otherClass(self) -> None:
        """Class CH: REFUSED."""
        message = newQuery(5, b"version.bind", dns.TXT, cls=dns.CH)
        self.assertEqual(Harness().ask(encode(message)).message.rCode, dns.EREFUSED)

    def test_responsesIgnored(self) -> None:
        """A response (QR set) is never answered: no reply loops."""
        message = newQuery(5, b"www.hamburger.edu", dns.A)
        message.answer = 1
        h = Harness()
        h.send(encode(message))
        self.assertEqual(h.transport.written, [])


class TransferTests(SynchronousTestCase):
    """
    AXFR only over TCP, only to configured addresses.
    """

    def test_allowed(self) -> None:
        """An allowed client gets the zone, SOA first and last, AA set."""
        protocol, transport = Harness(allowTransfer=("127.0.0.1",)).tcp()
        data = query(b"hamburger.edu", dns.AXFR)
        protocol.dataReceived(struct.pack("!H", len(data)) + data)
        records = [r for m in framed(transport) for r in m.message.answers]
        self.assertEqual(records[0].type, dns.SOA)
        self.assertEqual(records[-1].type, dns.SOA)
        self.assertEqual(len(records), 11)

    def test_refused(self) -> None:
        """Anyone else is REFUSED."""
        protocol, transport = Harness().tcp()
        data = query(b"hamburger.edu", dns.AXFR)
        protocol.dataReceived(struct.pack("!H", len(data)) + data)
        [reply] = framed(transport)
        self.assertEqual(reply.message.rCode, dns.EREFUSED)

    def test_notOurZone(self) -> None:
        """A zone we do not serve: NOTAUTH."""
        protocol, transport = Harness(allowTransfer=("127.0.0.1",)).tcp()
        data = query(b"example.com", dns.AXFR)
        protocol.dataReceived(struct.pack("!H", len(data)) + data)
        [reply] = framed(transport)
        self.assertEqual(reply.message.rCode, 9)

    def test_overUDP(self) -> None:
        """AXFR over UDP: FORMERR."""
        reply = Harness(allowTransfer=("127.0.0.1",)).ask(
            query(b"hamburger.edu", dns.AXFR)
        )
        self.assertEqual(reply.message.rCode, dns.EFORMAT)


class RateLimitTests(SynchronousTestCase):
    """
    The per-client UDP rate limit.
    """

    def test_dropAndSlip(self) -> None:
        """
        Over the limit, queries are dropped, every second one answered
        with an empty TC reply; other clients and TCP are not affected.
        """
        h = Harness(limiter=True)
        self.assertEqual(h.ask(query(b"www.hamburger.edu")).message.rCode, dns.OK)
        h.send(query(b"www.hamburger.edu"))
        self.assertEqual(len(h.transport.written), 1)
        slip = h.ask(query(b"www.hamburger.edu"))
        self.assertTrue(slip.message.trunc)
        self.assertEqual(slip.message.answers, [])
        self.assertEqual(h.status.counter("dns", "rate_limited"), 2)
        self.assertEqual(
            len(h.ask(query(b"www.hamburger.edu"), REMOTE).message.answers), 1
        )
        protocol, transport = h.tcp()
        data = query(b"www.hamburger.edu")
        protocol.dataReceived(struct.pack("!H", len(data)) + data)
        self.assertEqual(len(framed(transport)[0].message.answers), 1)
        h.clock.advance(1)
        self.assertEqual(len(h.ask(query(b"www.hamburger.edu")).message.answers), 1)
