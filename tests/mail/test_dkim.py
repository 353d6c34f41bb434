"""
Tests for L{appnet.mail.dkim}: known vectors (RFC 8463 appendix A, RFC
6376 canonical forms), our signatures, and the result of each way a
signature can go wrong.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import tempfile
import time

import dkim as dkimpy
from dkim.canonicalization import (
    CanonicalizationPolicy,
)
from dkim.canonicalization import (
    Relaxed as RelaxedCanonicalization,
)
from dkim.canonicalization import (
    Simple as SimpleCanonicalization,
)
from dkim.crypto import parse_pem_private_key
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from appnet.dns.testing import StaticResolver
from appnet.mail import dkim as dkimmod
from appnet.mail.dkim import (
    MISSING,
    TEMPFAIL,
    DKIMKey,
    DKIMKeyError,
    fetchTexts,
    generateKey,
    keyNames,
    loadKeys,
    signMessage,
    verifySignatures,
)

#: RFC 8463 appendix A.3: the message signed with Ed25519 and RSA.
RFC8463_MESSAGE = b"\r\n".join(
    [
        b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;",
        b" d=football.example.com; i=@football.example.com;",
        b" q=dns/txt; s=brisbane; t=1528637909; h=from : to :",
        b" subject : date : message-id : from : subject : date;",
        b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
        b" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus",
        b" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==",
        b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;",
        b" d=football.example.com; i=@football.example.com;",
        b" q=dns/txt; s=test; t=1528637909; h=from : to : subject :",
        b" date : message-id : from : subject : date;",
        b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
        b" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3",
        b" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz",
        b" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=",
        b"From: Joe SixPack <joe@football.example.com>",
        b"To: Suzie Q <suzie@shopping.example.net>",
        b"Subject: Is dinner ready?",
        b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)",
        b"Message-ID: <20030712040037.46341.5F8J@football.example.com>",
        b"",
        b"Hi.",
        b"",
        b"We lost the game.  Are you hungry yet?",
        b"",
        b"Joe.",
        b"",
    ]
)

#: RFC 8463 appendix A.2: the key records.
RFC8463_KEYS = {
    "brisbane._domainkey.football.example.com": [
        b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    ],
    "test._domainkey.football.example.com": [
        b"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
        b"iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
        b"DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
        b"Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
    ],
}

MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: Lunch\r\n"
    b"Date: Sun, 06 Dec 2026 12:00:00 +0000\r\n"
    b"Message-ID: <1@example.org>\r\n"
    b"\r\n"
    b"Shall we?\r\n"
)


@functools.lru_cache(maxsize=1)
def keys() -> tuple[DKIMKey, DKIMKey]:
    """An RSA and an Ed25519 key for example.org, made once."""
    with tempfile.TemporaryDirectory() as path:
        directory = FilePath(path)
        rsa = generateKey(directory, "example.org", "rsa1", "rsa")
        ed = generateKey(directory, "example.org", "ed1", "ed25519")
    return rsa, ed


def records(*ks: DKIMKey) -> dict[str, list[bytes] | str]:
    return {k.recordName: [k.record().encode()] for k in ks}


def results(message: bytes, texts: dict[str, list[bytes] | str]) -> list[str]:
    return [r.result for r in verifySignatures(message, texts)]


class KnownVectorTests(SynchronousTestCase):
    """
    Published examples verify.
    """

    def test_rfc8463(self) -> None:
        """
        Both signatures of RFC 8463's example (Ed25519 and RSA) pass with
        the appendix's key records.
        """
        found = verifySignatures(RFC8463_MESSAGE, dict(RFC8463_KEYS))
        self.assertEqual(
            [(r.result, r.algorithm, r.selector) for r in found],
            [("pass", "ed25519-sha256", "brisbane"), ("pass", "rsa-sha256", "test")],
        )

    def test_rfc8463Names(self) -> None:
        """
        L{keyNames} lists the two key records the example needs.
        """
        self.assertEqual(keyNames(RFC8463_MESSAGE, 5), list(RFC8463_KEYS))

    def test_rfc6376Canonicalisation(self) -> None:
        """
        The canonicalisation used is RFC 6376 3.4.5's example, in both
        algorithms.
        """
        headers = [(b"A", b" X\r\n"), (b"B ", b" Y\t\r\n\tZ  \r\n")]
        body = b" C \r\nD \t E\r\n\r\n\r\n"
        self.assertEqual(
            RelaxedCanonicalization.canonicalize_headers(headers),
            [(b"a", b"X\r\n"), (b"b", b"Y Z\r\n")],
        )
        self.assertEqual(
            RelaxedCanonicalization.canonicalize_body(body), b" C\r\nD E\r\n"
        )
        self.assertEqual(SimpleCanonicalization.canonicalize_headers(headers), headers)
        self.assertEqual(
            SimpleCanonicalization.canonicalize_body(body), b" C \r\nD \t E\r\n"
        )

    def test_relaxedSurvivesWhitespace(self) -> None:
        """
        Our relaxed/relaxed signature still verifies after the changes
        relaxed canonicalisation forgives: refolded and re-spaced header
        fields, header names in another case, trailing whitespace and
        empty lines at the end of the body.
        """
        rsa, ed = keys()
        signed = signMessage(MESSAGE, [rsa, ed]) + MESSAGE
        changed = (
            signed.replace(b"Subject: Lunch", b"SUBJECT:   Lunch ")
            .replace(b"To: bob@example.net", b"To:\r\n\tbob@example.net")
            .replace(b"Shall we?\r\n", b"Shall  we? \r\n\r\n\r\n")
        )
        self.assertEqual(results(changed, records(rsa, ed)), ["pass", "pass"])


class SigningTests(SynchronousTestCase):
    """
    L{signMessage} signs as RFC 6376 recommends.
    """

    def test_fields(self) -> None:
        """
        The signature is relaxed/relaxed, signs the recommended fields
        present and From twice, and carries d=, s= and t=.
        """
        rsa, _ = keys()
        header = signMessage(MESSAGE, [rsa])
        tags = dkimpy.util.parse_tag_value(
            header.split(b":", 1)[1].replace(b"\r\n", b"")
        )
        self.assertEqual(tags[b"c"], b"relaxed/relaxed")
        self.assertEqual(tags[b"a"], b"rsa-sha256")
        self.assertEqual((tags[b"d"], tags[b"s"]), (b"example.org", b"rsa1"))
        signed = [h.strip() for h in tags[b"h"].split(b":")]
        self.assertEqual(
            signed, [b"from", b"subject", b"date", b"message-id", b"to", b"from"]
        )
        self.assertApproximates(int(tags[b"t"]), time.time(), 60)

    def test_oversignedFrom(self) -> None:
        """
        A second From added after signing breaks the signature.
        """
        rsa, ed = keys()
        signed = signMessage(MESSAGE, [rsa, ed]) + MESSAGE
        forged = signed.replace(
            b"Subject: Lunch", b"From: Mallory <boss@example.org>\r\nSubject: Lunch"
        )
        self.assertEqual(results(forged, records(rsa, ed)), ["fail", "fail"])

    def test_opensslSigning(self) -> None:
        """
        RSA signing through OpenSSL gives exactly dkimpy's own signature
        (PKCS#1 v1.5 is deterministic), and dkimpy uses it.
        """
        rsa, _ = keys()
        digest = hashlib.sha256(b"a message")
        key = parse_pem_private_key(rsa.private)
        self.assertEqual(
            dkimmod._opensslSign(digest, key), dkimmod._PURE_SIGN(digest, key)
        )
        self.assertIs(dkimpy.RSASSA_PKCS1_v1_5_sign, dkimmod._opensslSign)

    def test_keySizes(self) -> None:
        """
        RSA keys are 2048 bits; Ed25519 records carry the 32-byte key.
        """
        rsa, ed = keys()
        key = parse_pem_private_key(rsa.private)
        self.assertEqual(key["modulus"].bit_length(), 2048)
        self.assertEqual(len(base64.b64decode(ed.public)), 32)
        self.assertTrue(ed.record().startswith("v=DKIM1; k=ed25519; p="))


class FailureTests(SynchronousTestCase):
    """
    Each kind of broken signature has its RFC 8601 result.
    """

    def setUp(self) -> None:
        rsa, ed = keys()
        self.keys = [rsa, ed]
        self.signed = signMessage(MESSAGE, self.keys) + MESSAGE
        self.texts = records(rsa, ed)

    def test_pass(self) -> None:
        """
        Untouched, both signatures pass.
        """
        self.assertEqual(results(self.signed, self.texts), ["pass", "pass"])

    def test_tamperedBody(self) -> None:
        """
        A changed body fails with a body hash mismatch.
        """
        found = verifySignatures(self.signed.replace(b"Shall", b"Shan't"), self.texts)
        self.assertEqual([r.result for r in found], ["fail", "fail"])
        self.assertEqual(found[0].reason, "body hash mismatch")

    def test_tamperedHeader(self) -> None:
        """
        A changed signed header field fails.
        """
        tampered = self.signed.replace(b"Subject: Lunch", b"Subject: Dinner")
        self.assertEqual(results(tampered, self.texts), ["fail", "fail"])

    def test_unsignedHeaderChange(self) -> None:
        """
        A field that is not signed may be added.
        """
        added = self.signed.replace(b"Subject:", b"X-Spam: no\r\nSubject:")
        self.assertEqual(results(added, self.texts), ["pass", "pass"])

    def test_expired(self) -> None:
        """
        A signature whose x= has passed fails as expired.
        """
        rsa = self.keys[0]
        past = int(time.time()) - 7 * 86400
        signer = dkimpy.DKIM(MESSAGE)
        canon = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
        signer.hasher = hashlib.sha256
        bh = base64.b64encode(
            hashlib.sha256(canon.canonicalize_body(signer.body)).digest()
        )
        include = [b"from", b"subject"]
        fields = [
            (b"v", b"1"),
            (b"a", b"rsa-sha256"),
            (b"c", b"relaxed/relaxed"),
            (b"d", b"example.org"),
            (b"s", b"rsa1"),
            (b"t", str(past).encode()),
            (b"x", str(past + 3600).encode()),
            (b"h", b" : ".join(include)),
            (b"bh", bh),
            (b"b", b""),
        ]
        value = signer.gen_header(
            fields,
            include,
            canon,
            b"DKIM-Signature",
            parse_pem_private_key(rsa.private),
        )
        message = b"DKIM-Signature: " + value + MESSAGE
        [found] = verifySignatures(message, self.texts)
        self.assertEqual((found.result, found.reason), ("fail", "signature expired"))

    def test_missingKey(self) -> None:
        """
        No key record is a permerror.
        """
        found = verifySignatures(self.signed, {})
        self.assertEqual([r.result for r in found], ["permerror", "permerror"])
        self.assertIn("no key record", found[0].reason)

    def test_badKeyRecord(self) -> None:
        """
        A key record that does not parse is a permerror.
        """
        texts = {k.recordName: [b"v=DKIM1; k=rsa; p=bm90IGEga2V5"] for k in self.keys}
        found = verifySignatures(self.signed, texts)
        self.assertEqual([r.result for r in found], ["permerror", "permerror"])
        self.assertIn("bad key record", found[1].reason)

    def test_wrongKey(self) -> None:
        """
        Another key at the selector fails the signature made with it.
        """
        other = generateKey(FilePath(self.mktemp()), "example.org", "ed1", "ed25519")
        texts = records(self.keys[0]) | {other.recordName: [other.record().encode()]}
        self.assertEqual(results(self.signed, texts), ["pass", "fail"])

    def test_temporaryFailure(self) -> None:
        """
        A key lookup that failed temporarily is a temperror.
        """
        texts = dict.fromkeys(self.texts, TEMPFAIL)
        self.assertEqual(results(self.signed, texts), ["temperror", "temperror"])

    def test_fromNotSigned(self) -> None:
        """
        A signature whose h= leaves out From is a permerror (RFC 6376 5.4).
        """
        changed = RFC8463_MESSAGE.replace(
            b"h=from : to :\r\n subject : date : message-id : from : subject : date;",
            b"h=to :\r\n subject : date : message-id : subject : date;",
            1,
        )
        found = verifySignatures(changed, dict(RFC8463_KEYS))
        self.assertEqual(found[0].result, "permerror")

    def test_unparseable(self) -> None:
        """
        A message dkimpy cannot parse gives permerror, not an exception.
        """
        broken = self.signed.replace(b"Subject: Lunch", b"\xff\xfe: x\r\nSubject: L")
        found = verifySignatures(broken, self.texts)
        self.assertEqual([r.result for r in found], ["permerror", "permerror"])
        self.assertIn("not parseable", found[0].reason)

    def test_limit(self) -> None:
        """
        Only the first C{limit} signatures are verified.
        """
        self.assertEqual(len(verifySignatures(self.signed, self.texts, limit=1)), 1)


class KeyFileTests(SynchronousTestCase):
    """
    Keys in the data directory.
    """

    def test_roundTrip(self) -> None:
        """
        Generated keys load back, private files are mode 0600, and a
        retired one loads as inactive.
        """
        directory = FilePath(self.mktemp())
        made = generateKey(directory, "Example.ORG", "s1", "rsa")
        path = directory.child("example.org").child("s1.pem")
        self.assertEqual(path.getPermissions().shorthand(), "rw-------")
        [loaded] = loadKeys(directory)
        self.assertEqual((loaded.public, loaded.active), (made.public, True))
        path.moveTo(FilePath(path.path + ".retired"))
        [retired] = loadKeys(directory)
        self.assertFalse(retired.active)

    def test_refused(self) -> None:
        """
        Bad names, unknown algorithms and existing selectors are refused.
        """
        directory = FilePath(self.mktemp())
        generateKey(directory, "example.org", "s1", "ed25519")
        for args in [
            ("example.org", "s1", "ed25519"),
            ("example.org", "bad_selector", "rsa"),
            ("not a domain", "s2", "rsa"),
            ("example.org", "s2", "dsa"),
        ]:
            self.assertRaises(DKIMKeyError, generateKey, directory, *args)

    def test_zoneLine(self) -> None:
        """
        The zone line splits the record into strings of at most 255
        characters.
        """
        rsa, _ = keys()
        line = rsa.zoneLine()
        self.assertTrue(line.startswith("rsa1._domainkey.example.org. 3600 IN TXT "))
        strings = line.split(" TXT ", 1)[1].split('" "')
        self.assertEqual(len(strings), 2)
        self.assertTrue(all(len(s.strip('"')) <= 255 for s in strings))


class FetchTests(SynchronousTestCase):
    """
    L{fetchTexts} looks the key records up with appnet's resolver.
    """

    def test_states(self) -> None:
        """
        A record is returned; NXDOMAIN is missing; SERVFAIL is a
        temporary failure.
        """
        zone = (
            "$ORIGIN example.org.\n@ 300 IN SOA ns h 1 1 1 1 1\n@ 300 IN NS ns\n"
            's1._domainkey 300 IN TXT "v=DKIM1; k=ed25519; p=AAAA"\n'
        )
        resolver = StaticResolver(
            {"example.org": zone}, failures={"s3._domainkey.example.org": 2}
        )
        found = self.successResultOf(
            Deferred.fromCoroutine(
                fetchTexts(
                    resolver,
                    [
                        "s1._domainkey.example.org",
                        "s2._domainkey.example.org",
                        "s3._domainkey.example.org",
                    ],
                )
            )
        )
        self.assertEqual(
            found,
            {
                "s1._domainkey.example.org": [b"v=DKIM1; k=ed25519; p=AAAA"],
                "s2._domainkey.example.org": MISSING,
                "s3._domainkey.example.org": TEMPFAIL,
            },
        )
