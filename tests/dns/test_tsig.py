"""
Tests for L{appnet.dns.tsig}: transaction signatures, RFC 8945.
"""

from __future__ import annotations

import struct

from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from appnet.dns import tsig
from appnet.dns.wire import encode, newQuery

KEY = tsig.Key(b"update.key", b"hmac-sha256", b"k" * 32)
RING = tsig.Keyring([KEY])


def query(id: int = 77) -> bytes:
    return encode(newQuery(id, b"example.org", dns.SOA))


class KeyFileTests(SynchronousTestCase):
    """Keys in BIND's C{key} statement format."""

    def test_roundTrip(self) -> None:
        """A key formatted for nsupdate parses back to itself."""
        for algorithm in ("hmac-sha256", "hmac-sha512", "hmac-md5"):
            key = tsig.newKey("Some.Key.", algorithm)
            self.assertEqual(tsig.parseKeys(tsig.formatKey(key), "k"), [key])
            self.assertEqual(key.name, b"some.key")
            self.assertEqual(len(key.secret), key.size)

    def test_slashesInSecret(self) -> None:
        """
        A secret whose base64 holds C{//} is not cut there as if it began
        a comment (one random key in a few dozen has one).
        """
        key = tsig.Key(b"k", b"hmac-sha256", bytes([0xFF, 0xFF, 0xFF]) * 11)
        self.assertIn("//", tsig.formatKey(key))
        self.assertEqual(tsig.parseKeys(tsig.formatKey(key), "k"), [key])

    def test_bindFile(self) -> None:
        """A file as tsig-keygen writes it, comments and all, is read."""
        text = (
            "# made by tsig-keygen\n"
            'key "a" {\n algorithm hmac-sha512;\n secret "c2VjcmV0";\n};\n'
            'key b { algorithm HMAC-SHA256; secret "YWJj"; };\n'
        )
        a, b = tsig.parseKeys(text, "f")
        self.assertEqual(
            (a.name, a.algorithm, a.secret), (b"a", b"hmac-sha512", b"secret")
        )
        self.assertEqual(
            (b.name, b.algorithm, b.secret), (b"b", b"hmac-sha256", b"abc")
        )

    def test_badFiles(self) -> None:
        """Errors name the file and the key."""
        for text, fragment in [
            ("nonsense", "no key statement"),
            ('key "a" { secret "YWJj"; };', "needs an algorithm"),
            ('key "a" { algorithm hmac-foo; secret "YWJj"; };', "unknown TSIG"),
            ('key "a" { algorithm hmac-sha256; secret "!!"; };', "key a"),
        ]:
            with self.assertRaises(ValueError) as caught:
                tsig.parseKeys(text, "keys/a.key")
            self.assertIn("keys/a.key", str(caught.exception))
            self.assertIn(fragment, str(caught.exception))


class SignVerifyTests(SynchronousTestCase):
    """RFC 8945 sections 4 and 5: signing and checking one message."""

    def test_roundTrip(self) -> None:
        """
        A signed request verifies: ARCOUNT counts the TSIG record, the
        MAC has the algorithm's length (section 4.3).
        """
        for algorithm in ("hmac-sha256", "hmac-sha512", "hmac-md5", "hmac-sha1"):
            key = tsig.newKey("k", algorithm)
            signed, mac = tsig.sign(query(), key, 1000.0)
            self.assertEqual(struct.unpack_from("!H", signed, 10)[0], 1)
            self.assertEqual(len(mac), key.size)
            verified = tsig.verify(signed, tsig.Keyring([key]), 1000.0)
            assert verified is not None
            self.assertEqual(verified.key, key)
            self.assertEqual(verified.mac, mac)

    def test_unsigned(self) -> None:
        """An unsigned message verifies as C{None}."""
        self.assertIsNone(tsig.verify(query(), RING, 0))

    def test_badKey(self) -> None:
        """
        An unknown key, or a known key with another algorithm, is BADKEY
        (section 5.2.1).
        """
        other = tsig.Key(b"other", b"hmac-sha256", b"x" * 32)
        wrongAlgorithm = tsig.Key(b"update.key", b"hmac-sha512", b"k" * 64)
        for key in (other, wrongAlgorithm):
            signed, _ = tsig.sign(query(), key, 0)
            with self.assertRaises(tsig.TSIGRejected) as caught:
                tsig.verify(signed, RING, 0)
            self.assertEqual(caught.exception.error, tsig.BADKEY)

    def test_badSig(self) -> None:
        """
        A MAC made with another secret, a message changed after signing,
        or a truncated MAC, is BADSIG (section 5.2.2).
        """
        forged = tsig.Key(b"update.key", b"hmac-sha256", b"z" * 32)
        signed, _ = tsig.sign(query(), forged, 0)
        cases = [signed]
        good, _ = tsig.sign(query(), KEY, 0)
        changed = bytearray(good)
        changed[3] ^= 0x01  # a header flag
        cases.append(bytes(changed))
        for data in cases:
            with self.assertRaises(tsig.TSIGRejected) as caught:
                tsig.verify(data, RING, 0)
            self.assertEqual(caught.exception.error, tsig.BADSIG)

    def test_badTime(self) -> None:
        """
        A good MAC signed outside the fudge is BADTIME (section 5.2.3); at
        the fudge's edge it is accepted.
        """
        signed, _ = tsig.sign(query(), KEY, 1000.0)
        self.assertIsNotNone(tsig.verify(signed, RING, 1300.0))
        self.assertIsNotNone(tsig.verify(signed, RING, 700.0))
        for now in (1301.0, 699.0):
            with self.assertRaises(tsig.TSIGRejected) as caught:
                tsig.verify(signed, RING, now)
            self.assertEqual(caught.exception.error, tsig.BADTIME)

    def test_originalID(self) -> None:
        """
        The MAC covers the original ID (section 4.3.3): a forwarder may
        change the header's ID and the signature still verifies.
        """
        signed, _ = tsig.sign(query(5), KEY, 0)
        moved = struct.pack("!H", 6) + signed[2:]
        self.assertIsNotNone(tsig.verify(moved, RING, 0))

    def test_response(self) -> None:
        """
        A response is signed over the request's MAC (section 4.3.1): it
        verifies with that MAC and not with another.
        """
        request, requestMAC = tsig.sign(query(), KEY, 0)
        response, _ = tsig.sign(query(), KEY, 0, requestMAC)
        self.assertIsNotNone(tsig.verify(response, RING, 0, requestMAC))
        with self.assertRaises(tsig.TSIGRejected):
            tsig.verify(response, RING, 0, b"x" * 32)

    def test_unsignedError(self) -> None:
        """
        A BADKEY/BADSIG answer carries the error in a TSIG record with an
        empty MAC (section 5.2.1).
        """
        signed, _ = tsig.sign(query(), KEY, 0)
        found = tsig.find(signed)
        assert found is not None
        _, name, record = found
        answer = tsig.unsignedError(query(), name, record, tsig.BADSIG)
        again = tsig.find(answer)
        assert again is not None
        self.assertEqual(again[2].error, tsig.BADSIG)
        self.assertEqual(again[2].MAC, b"")

    def test_badTimeAnswer(self) -> None:
        """
        A BADTIME answer is signed, keeps the request's time and carries
        the server's time in Other Data (section 5.2.3).
        """
        signed, mac = tsig.sign(query(), KEY, 1000.0)
        try:
            tsig.verify(signed, RING, 5000.0)
        except tsig.TSIGRejected as e:
            answer = tsig.badTime(query(), e, KEY, 5000.0)
        found = tsig.find(answer)
        assert found is not None
        record = found[2]
        self.assertEqual(record.error, tsig.BADTIME)
        self.assertEqual(record.timeSigned, 1000)
        self.assertEqual(record.otherData, struct.pack("!Q", 5000)[2:])
        self.assertIsNotNone(tsig.verify(answer, RING, 1000.0, mac))


class StreamTests(SynchronousTestCase):
    """RFC 8945 section 5.3.1: the messages of a TCP transfer."""

    def test_everyMessageSigned(self) -> None:
        """Each message signed over the previous MAC verifies in order."""
        _, requestMAC = tsig.sign(query(), KEY, 0)
        signer = tsig.StreamSigner(KEY, requestMAC, 0)
        verifier = tsig.StreamVerifier(KEY, requestMAC)
        for id in range(5):
            verifier.check(signer.sign(query(id)), 0)
        self.assertTrue(verifier.complete)

    def test_unsignedBetween(self) -> None:
        """
        Messages without TSIG between signed ones are covered by the next
        signature; the stream is complete only after a signed message.
        """
        _, requestMAC = tsig.sign(query(), KEY, 0)
        signer = tsig.StreamSigner(KEY, requestMAC, 0)
        verifier = tsig.StreamVerifier(KEY, requestMAC)
        verifier.check(signer.sign(query(1)), 0)
        verifier.check(query(2), 0)
        self.assertFalse(verifier.complete)

    def test_reordered(self) -> None:
        """A message out of its place in the stream is BADSIG."""
        _, requestMAC = tsig.sign(query(), KEY, 0)
        signer = tsig.StreamSigner(KEY, requestMAC, 0)
        messages = [signer.sign(query(id)) for id in range(3)]
        verifier = tsig.StreamVerifier(KEY, requestMAC)
        verifier.check(messages[0], 0)
        with self.assertRaises(tsig.TSIGRejected):
            verifier.check(messages[2], 0)

    def test_firstUnsigned(self) -> None:
        """The first message of a signed stream must be signed."""
        verifier = tsig.StreamVerifier(KEY, b"")
        with self.assertRaises(tsig.TSIGFormatError):
            verifier.check(query(), 0)
