"""
Tests for L{appnet.dns.wire}: strict decoding, EDNS and encoding within a
size limit.
"""

from __future__ import annotations

import random
import struct

from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from appnet.dns.errors import MalformedMessage
from appnet.dns.records import CAA, Record_CAA, recordText
from appnet.dns.wire import EDNS, decode, encode, newQuery, responseTo


def bigResponse(count: int, size: int = 200) -> dns.Message:
    request = newQuery(7, b"big.example", dns.TXT)
    response = responseTo(request)
    response.answers = [
        dns.RRHeader(b"big.example", dns.TXT, dns.IN, 60, dns.Record_TXT(b"x" * size))
        for _ in range(count)
    ]
    return response


class DecodeTests(SynchronousTestCase):
    """
    Decoding refuses what is not a whole, well-formed message.
    """

    def test_roundTrip(self) -> None:
        """A query encodes and decodes to the same question and flags."""
        query = newQuery(4242, b"www.example.org", dns.MX, recursionDesired=False)
        decoded = decode(encode(query, EDNS(4096)))
        self.assertEqual(decoded.message.id, 4242)
        self.assertEqual(decoded.message.recDes, 0)
        self.assertEqual(
            decoded.message.queries, [dns.Query(b"www.example.org", dns.MX)]
        )
        self.assertEqual(decoded.edns, EDNS(4096))
        self.assertEqual(decoded.message.additional, [])

    def test_shortHeader(self) -> None:
        """Fewer than 12 bytes: no ID to answer."""
        with self.assertRaises(MalformedMessage) as caught:
            decode(b"\x12\x34\x01")
        self.assertIsNone(caught.exception.id)

    def test_truncatedQuestion(self) -> None:
        """
        A packet ending inside its question fails, with the ID, where
        C{dns.Message.decode} would return a message without questions.
        """
        data = encode(newQuery(99, b"www.example.org", dns.A))[:-3]
        with self.assertRaises(MalformedMessage) as caught:
            decode(data)
        self.assertEqual(caught.exception.id, 99)

    def test_countsLie(self) -> None:
        """A header counting more records than the packet holds fails."""
        data = bytearray(encode(newQuery(5, b"example.org", dns.A)))
        data[7] = 3  # three answers that are not there
        with self.assertRaises(MalformedMessage):
            decode(bytes(data))

    def test_rdlengthMismatch(self) -> None:
        """An A record whose RDLENGTH is not 4 fails."""
        response = responseTo(newQuery(5, b"example.org", dns.A))
        response.answers = [
            dns.RRHeader(b"example.org", dns.A, dns.IN, 60, dns.Record_A("192.0.2.1"))
        ]
        data = bytearray(encode(response))
        # The RDLENGTH field is the two bytes before the 4 address bytes.
        struct.pack_into("!H", data, len(data) - 6, 5)
        data += b"\x00"
        with self.assertRaises(MalformedMessage):
            decode(bytes(data))

    def test_compressionLoop(self) -> None:
        """A name pointing at itself fails instead of looping."""
        header = struct.pack("!H2B4H", 1, 0, 0, 1, 0, 0, 0)
        with self.assertRaises(MalformedMessage):
            decode(header + b"\xc0\x0c\x00\x01\x00\x01")

    def test_damagedReplies(self) -> None:
        """
        Randomly damaged replies holding every record type (a fixed seed)
        either decode or raise L{MalformedMessage}, nothing else.
        """
        rnd = random.Random(7)
        response = bigResponse(2, 20)
        response.answers += [
            dns.RRHeader(
                b"x.example", dns.SOA, dns.IN, 60, dns.Record_SOA(b"ns", b"h")
            ),
            dns.RRHeader(b"x.example", dns.MX, dns.IN, 60, dns.Record_MX(10, b"mx")),
            dns.RRHeader(
                b"x.example", dns.SRV, dns.IN, 60, dns.Record_SRV(1, 2, 3, b"t")
            ),
            dns.RRHeader(b"x.example", dns.AAAA, dns.IN, 60, dns.Record_AAAA("::1")),
            dns.RRHeader(b"x.example", CAA, dns.IN, 60, Record_CAA(0, b"issue", b"x")),
        ]
        seed = encode(response, EDNS())
        for _ in range(5000):
            data = bytearray(seed)
            for _ in range(rnd.randint(1, 4)):
                if rnd.random() < 0.7:
                    data[rnd.randrange(len(data))] = rnd.randrange(256)
                else:
                    data = data[: rnd.randrange(12, len(data) + 1)]
            try:
                decode(bytes(data))
            except MalformedMessage:
                pass

    def test_severalOPT(self) -> None:
        """Several OPT records are counted (the server says FORMERR)."""
        query = newQuery(1, b"example.org", dns.A)
        query.additional = [EDNS().record(), EDNS().record()]
        decoded = decode(encode(query))
        self.assertEqual(decoded.optCount, 2)
        self.assertIsNone(decoded.edns)

    def test_ednsFields(self) -> None:
        """OPT's version, DO bit and extended rcode are read."""
        query = newQuery(1, b"example.org", dns.A)
        decoded = decode(encode(query, EDNS(1400, version=1, dnssecOK=True)))
        self.assertEqual(decoded.edns, EDNS(1400, 1, True))
        response = responseTo(query)
        response.rCode = dns.EBADVERSION
        decoded = decode(encode(response, EDNS(1232)))
        self.assertEqual(decoded.rcode, dns.EBADVERSION)
        self.assertEqual(decoded.message.rCode, 0)

    def test_caa(self) -> None:
        """CAA records, which Twisted lacks, decode and print."""
        response = responseTo(newQuery(1, b"example.org", CAA))
        response.answers = [
            dns.RRHeader(
                b"example.org", CAA, dns.IN, 60, Record_CAA(0, b"issue", b"ca.example")
            )
        ]
        [record] = decode(encode(response)).message.answers
        self.assertEqual(record.payload, Record_CAA(0, b"issue", b"ca.example"))
        self.assertEqual(
            recordText(record), 'example.org.\t60\tIN\tCAA\t0 issue "ca.example"'
        )


class EncodeTests(SynchronousTestCase):
    """
    Encoding within a size limit.
    """

    def test_fits(self) -> None:
        """A message under the limit is sent whole, TC clear."""
        data = encode(bigResponse(2), None, 512)
        decoded = decode(data)
        self.assertEqual(len(decoded.message.answers), 2)
        self.assertFalse(decoded.message.trunc)

    def test_truncated(self) -> None:
        """
        Over the limit, the answer is left out whole and TC set: the
        counts still match the content (Twisted's encoder cuts bytes).
        """
        data = encode(bigResponse(5), EDNS(512), 512)
        self.assertLessEqual(len(data), 512)
        decoded = decode(data)
        self.assertTrue(decoded.message.trunc)
        self.assertEqual(decoded.message.answers, [])
        self.assertEqual(len(decoded.message.queries), 1)
        self.assertIsNotNone(decoded.edns)

    def test_questionsOverTheLimit(self) -> None:
        """
        A response to several long questions (a FORMERR) that does not fit
        even without its records leaves out the questions too: the limit
        holds whatever the query asked (found by tests.robustness.test_dns).
        """
        request = newQuery(9, b"a" * 60 + b"." + b"b" * 60 + b".example", dns.A)
        request.queries = [
            dns.Query(b"%d%s.example" % (i, b"c" * 120), dns.TXT) for i in range(6)
        ]
        response = responseTo(request)
        response.rCode = dns.EFORMAT
        data = encode(response, EDNS(512), 512)
        self.assertLessEqual(len(data), 512)
        decoded = decode(data)
        self.assertEqual(
            (decoded.message.id, decoded.message.rCode, decoded.message.queries),
            (9, dns.EFORMAT, []),
        )
        self.assertTrue(decoded.message.trunc)
        self.assertIsNotNone(decoded.edns)
        self.assertEqual(len(decode(encode(response, None, 4096)).message.queries), 6)

    def test_additionalDroppedFirst(self) -> None:
        """Extra records are dropped without TC when the answer fits."""
        response = bigResponse(2)
        response.additional = [
            dns.RRHeader(b"x.example", dns.TXT, dns.IN, 60, dns.Record_TXT(b"y" * 250))
        ]
        decoded = decode(encode(response, None, 512))
        self.assertFalse(decoded.message.trunc)
        self.assertEqual(len(decoded.message.answers), 2)
        self.assertEqual(decoded.message.additional, [])

    def test_bigTCPMessage(self) -> None:
        """
        Past 16 KiB, names are no longer compressed against offsets a
        pointer cannot hold, so a 60 KB message decodes intact.
        """
        response = responseTo(newQuery(1, b"example.org", dns.NS))
        response.answers = [
            dns.RRHeader(
                b"example.org",
                dns.NS,
                dns.IN,
                60,
                dns.Record_NS(b"ns%d.some-long-label-here.example.org" % i),
            )
            for i in range(1500)
        ]
        data = encode(response)
        self.assertGreater(len(data), 16384)
        decoded = decode(data).message
        self.assertEqual(
            [r.payload.name.name for r in decoded.answers],
            [r.payload.name.name for r in response.answers],
        )
