"""
The DNS server's message handling under malformed packets, over a fake
datagram transport (UDP) and a string transport (TCP), with the zone and
fake recursor of L{tests.dns.test_server}.

The packets are built to reach the corners a byte-flipping fuzzer rarely
finds: truncated headers and records, section counts that lie (0, 2,
65535), compression pointers that point at themselves, forward, into the
header, past the end or round in a loop, labels of reserved types and of
64 to 255 bytes, names past 255 bytes, OPT records in the question, the
answer or the authority section, with a name, twice, of an unknown
version, with a payload size of 0, and records whose data does not match
their length.

Oracles, for every packet: nothing raises and no failure is logged; at
most one reply; none to a packet shorter than a header or with QR set (no
reply loops); a reply decodes strictly, has QR set and the query's ID,
fits in 512 bytes (or the EDNS size), and is FORMERR when the query did
not decode; and a good query afterwards gets its answer (over TCP, on
the same connection).
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.testing import StringTransport
from twisted.names import dns

from appnet.dns.errors import MalformedMessage
from appnet.dns.wire import EDNS, Decoded, decode
from tests.dns.test_server import LOCAL, REMOTE, FakeRecursor, Harness, query
from tests.robustness.fuzz import Case, FuzzTestCase, Garbage

GOOD = query(b"www.hamburger.edu", id=4242)

_TYPES = (
    dns.A, dns.NS, dns.CNAME, dns.SOA, dns.MX, dns.TXT, dns.AAAA, dns.SRV,
    dns.NAPTR, dns.OPT, dns.AXFR, dns.IXFR, dns.ANY, dns.MAILA, dns.MAILB,
    dns.TSIG, dns.TKEY, dns.PTR, dns.HINFO, dns.WKS, dns.A6, dns.DNAME,
    dns.SSHFP, 257, 0, 65535, 65280,
)  # fmt: skip
_CLASSES = (dns.IN, dns.IN, dns.IN, dns.CH, dns.HS, dns.ANY, 254, 0, 65535)


def header(
    id: int, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!6H", id, flags, qd, an, ns, ar)


def labels(*parts: bytes) -> bytes:
    """A name in wire form, ended by the root label."""
    return b"".join(bytes([len(p)]) + p for p in parts) + b"\0"


def question(name: bytes, type: int = dns.A, cls: int = dns.IN) -> bytes:
    return name + struct.pack("!2H", type, cls)


def record(
    name: bytes, type: int, cls: int, ttl: int, rdata: bytes, length: int = -1
) -> bytes:
    size = len(rdata) if length < 0 else length
    return name + struct.pack("!2HIH", type, cls, ttl, size) + rdata


def opt(
    size: int = 4096, version: int = 0, options: bytes = b"", name: bytes = b"\0"
) -> bytes:
    return record(name, dns.OPT, size, version << 16, options)


class Packets:
    """Malformed DNS messages, from one L{Garbage}."""

    def __init__(self, garbage: Garbage) -> None:
        self.g = garbage

    def id(self) -> int:
        return self.g.random.randrange(65536)

    def name(self) -> bytes:
        """A name in wire form, often hostile (no compression)."""
        g = self.g
        kind = g.random.randrange(8)
        if kind == 0:
            return labels(b"www", b"hamburger", b"edu")
        if kind == 1:
            return labels(g.printable(10) or b"x", b"hamburger", b"edu")
        if kind == 2:  # a label of 64 to 191 bytes (length byte 0x40-0xbf)
            return labels(b"a" * g.pick((63, 64, 100, 191)), b"edu")
        if kind == 3:  # past 255 bytes in total
            return labels(*[b"a" * 63] * g.count(4, 9))
        if kind == 4:  # dots, NULs, bytes that are not ASCII inside labels
            return labels(g.pick((b"a.b", b"\0", b"\xff\xfe", b"A\\.", b"*")), b"edu")
        if kind == 5:
            return b"\0"
        if kind == 6:  # no root label: runs into what follows
            return bytes([3]) + b"www"
        return labels(*[g.blob(8) or b"z" for _ in range(g.count(1, 5))])

    def pointer(self) -> tuple[bytes, bytes]:
        """
        A question whose name has a bad compression pointer, and what
        follows it; the question starts at offset 12.
        """
        g = self.g
        kind = g.random.randrange(7)
        if kind == 0:  # points at itself
            return b"\xc0\x0c", b""
        if kind == 1:  # points past the end
            return b"\xc0" + bytes([g.pick((40, 200, 255))]), b""
        if kind == 2:  # points into the header
            return b"\xc0" + bytes([g.random.randrange(12)]), b""
        if kind == 3:  # two pointers pointing at each other
            return b"\xc0\x0e\xc0\x0c", b""
        if kind == 4:  # a label, then a pointer back to the label
            return b"\x03www\xc0\x0c", b""
        if kind == 5:  # reserved label types 0x40 and 0x80
            return bytes([g.pick((0x40, 0x41, 0x80, 0xBF))]) + b"abc\0", b""
        # A long chain of pointers, each to the one before.
        chain = b"\x00"
        for i in range(g.count(10, 200)):
            chain += struct.pack("!H", 0xC000 | (12 + 2 * i - (1 if i == 0 else 2)))
        return chain[1:] + b"\0", b""

    def rdata(self, type: int) -> bytes:
        g = self.g
        return g.pick(
            (
                b"",
                b"\x01\x02\x03",  # an A record one byte short
                b"\x00" * 15,  # an AAAA one short
                b"\xff" + b"x" * 10,  # a TXT string longer than its data
                b"\x00\x0a\xc0\x0c",  # MX pointing at the question
                labels(b"ns") + b"\0" * 5,  # a truncated SOA
                g.blob(40),
                b"\xc0\xff",
            )
        )

    def packet(self) -> bytes:
        g = self.g
        kind = g.random.randrange(12)
        id = self.id()
        if kind == 0:
            return g.blob(g.pick((0, 1, 11, 12, 13, 40, 600)))
        if kind == 1:  # a good question, lying section counts
            counts = [g.pick((0, 1, 2, 3, 255, 65535)) for _ in range(4)]
            return header(id, 0x0100, *counts) + question(
                labels(b"www", b"hamburger", b"edu")
            )
        if kind == 2:
            name, rest = self.pointer()
            return header(id) + question(name) + rest
        if kind == 3:
            return header(id) + question(self.name(), g.pick(_TYPES), g.pick(_CLASSES))
        if kind == 4:  # OPT where it does not belong, or odd OPT values
            where = g.random.randrange(5)
            size = g.pick((0, 1, 511, 512, 4096, 65535))
            version = g.pick((0, 0, 1, 255))
            options = g.pick((b"", b"\x00\x0a\x00\x08" + b"x" * 8, b"\x00\x0a\xff\xff"))
            record_ = opt(size, version, options, g.pick((b"\0", b"\0", labels(b"x"))))
            q = question(labels(b"www", b"hamburger", b"edu"))
            if where == 0:
                return header(id, ar=2) + q + record_ + record_
            if where == 1:
                return header(id, an=1) + q + record_
            if where == 2:
                return header(id, ns=1) + q + record_
            if where == 3:
                return header(id) + question(b"\0", dns.OPT)
            return header(id, ar=1) + q + record_
        if kind == 5:  # records with data that does not match their length
            type = g.pick(_TYPES)
            rdata = self.rdata(type)
            length = g.pick((-1, -1, 0, len(rdata) + 1, max(0, len(rdata) - 1), 65535))
            rr = record(
                b"\xc0\x0c", type, dns.IN, g.pick((0, 2**31, 2**32 - 1)), rdata, length
            )
            counts = g.pick(((1, 0, 0), (0, 1, 0), (0, 0, 1)))
            return (
                header(id, 0x0100, 1, *counts)
                + question(labels(b"www", b"hamburger", b"edu"))
                + rr
            )
        if kind == 6:  # any opcode, flags, QR, Z, rcode
            flags = g.random.randrange(65536)
            return header(id, flags) + question(labels(b"www", b"hamburger", b"edu"))
        if kind == 7:  # a good query cut anywhere
            data = query(b"big.hamburger.edu", dns.TXT, edns=EDNS(4096), id=id)
            return data[: g.random.randrange(len(data) + 1)]
        if kind == 8:
            data = query(b"www.hamburger.edu", g.pick(_TYPES), edns=EDNS(1232), id=id)
            return g.mutate(data)
        if kind == 9:  # recursion, with every question type
            return query(g.printable(20) + b".example", g.pick(_TYPES), id=id)
        if kind == 10:  # many questions, sometimes long enough to pass 512 bytes
            long = labels(b"q" * 63, b"r" * 63, g.printable(10))
            count = g.count(2, 6)
            qs = b"".join(
                question(long if g.chance(0.7) else self.name(), g.pick(_TYPES))
                for _ in range(count)
            )
            return header(id, qd=count if g.chance(0.7) else g.count(0, 8)) + qs
        return header(id) + question(labels(b"hamburger", b"edu"), dns.AXFR)


class DNSFuzzTestCase(FuzzTestCase):
    """A server, and the checks every packet's reply gets."""

    def setUp(self) -> None:
        super().setUp()
        self.h = Harness(FakeRecursor())

    def checkReply(
        self, request: bytes, payload: bytes, limit: int, case: Case
    ) -> Decoded:
        try:
            reply = decode(payload)
        except MalformedMessage as e:
            self.fail(f"reply does not decode ({e}): {payload!r}\n{case.describe()}")
        message = reply.message
        self.assertEqual(message.answer, 1, case.describe())
        self.assertEqual(
            message.id, struct.unpack("!H", request[:2])[0], case.describe()
        )
        edns = reply.edns
        if edns is not None:
            limit = max(limit, min(edns.udpSize, self.h.factory.maxUDPSize))
        self.assertLessEqual(len(payload), limit, case.describe())
        try:
            decode(request)
        except MalformedMessage:
            self.assertEqual(message.rCode, dns.EFORMAT, case.describe())
        return reply

    def udp(self, data: bytes, case: Case, client: tuple[str, int] = LOCAL) -> None:
        """One datagram: at most one reply, checked."""
        h = self.h
        case.record(data)
        before = len(h.transport.written)
        try:
            h.send(data, client)
        except Exception:
            import traceback

            self.fail(
                f"the server raised:\n{traceback.format_exc()}\n{case.describe()}"
            )
        written = h.transport.written[before:]
        if len(data) < 12 or data[2] & 0x80:
            self.assertEqual(written, [], case.describe())
            return
        self.assertLessEqual(len(written), 1, case.describe())
        for payload, address in written:
            self.assertEqual(address, client, case.describe())
            self.checkReply(data, payload, 512, case)

    def goodAnswer(self, payload: bytes, case: Case) -> None:
        reply = decode(payload).message
        self.assertEqual((reply.id, reply.rCode, reply.auth), (4242, dns.OK, True))
        self.assertEqual(
            reply.answers[0].payload.dottedQuad(), "192.0.2.1", case.describe()
        )


class UDPTests(DNSFuzzTestCase):
    """Malformed datagrams."""

    def test_packets(self) -> None:
        """
        Every kind of malformed packet is answered with a well-formed reply
        (FORMERR when it did not decode) or dropped (too short, or a
        response); a good query afterwards is answered.
        """
        for garbage, case in self.cases("dns-udp", 1500):
            packets = Packets(garbage)
            client = REMOTE if garbage.chance(0.2) else LOCAL
            for _ in range(garbage.count(1, 3)):
                self.udp(packets.packet(), case, client)
            self.udp(GOOD, case)
            self.goodAnswer(self.h.transport.written[-1][0], case)

    def test_rateLimited(self) -> None:
        """
        With the rate limiter on, malformed packets that are limited
        (dropped, or answered with an empty truncated reply) raise nothing.
        """
        self.h = Harness(FakeRecursor(), limiter=True)
        for garbage, case in self.cases("dns-udp-limited", 300):
            packets = Packets(garbage)
            for _ in range(garbage.count(1, 4)):
                self.udp(packets.packet(), case)


class TCPTests(DNSFuzzTestCase):
    """Malformed messages over TCP, framed and unframed."""

    def connection(self) -> tuple[Any, StringTransport]:
        return self.h.tcp(LOCAL)

    def frames(self, transport: StringTransport) -> list[bytes]:
        data = transport.value()
        transport.clear()
        out = []
        while data:
            (length,) = struct.unpack("!H", data[:2])
            out.append(data[2 : 2 + length])
            self.assertEqual(len(out[-1]), length)
            data = data[2 + length :]
        return out

    def test_frames(self) -> None:
        """
        Malformed messages in whole frames, pipelined and split at any
        byte, get one checked reply each (none for responses and runts);
        the connection stays open and answers a good query after them.
        """
        for garbage, case in self.cases("dns-tcp", 400):
            protocol, transport = self.connection()
            packets = Packets(garbage)
            messages = [packets.packet() for _ in range(garbage.count(1, 6))]
            stream = b"".join(struct.pack("!H", len(m)) + m for m in messages)
            stream += struct.pack("!H", len(GOOD)) + GOOD
            self.deliver(protocol, stream, garbage, case)
            replies = self.frames(transport)
            expected = [m for m in messages if len(m) >= 12 and not m[2] & 0x80]
            self.assertEqual(len(replies), len(expected) + 1, case.describe())
            for request, payload in zip(expected, replies[:-1], strict=True):
                self.checkReply(request, payload, 65535, case)
            self.goodAnswer(replies[-1], case)
            self.assertFalse(transport.disconnecting, case.describe())
            self.disconnect(protocol, case)

    def test_brokenFraming(self) -> None:
        """
        Streams of random bytes, empty frames, and frames cut short by a
        disconnect raise nothing and log no failure.
        """
        for garbage, case in self.cases("dns-tcp-broken", 300):
            protocol, transport = self.connection()
            kind = garbage.random.randrange(3)
            if kind == 0:
                data = garbage.blob(700)
            elif kind == 1:
                data = (
                    b"\0\0" * garbage.count(1, 5) + struct.pack("!H", len(GOOD)) + GOOD
                )
            else:
                data = struct.pack("!H", garbage.pick((12, 40, 65535))) + GOOD[:10]
            self.deliver(protocol, data, garbage, case)
            for payload in self.frames(transport) if kind == 1 else []:
                self.goodAnswer(payload, case)
            self.disconnect(protocol, case)
