"""
Tests for L{appnet.mail.dmarc}: the record, the organisational domain,
and a table of evaluation cases (alignment modes, subdomain policy,
pct, none/quarantine/reject).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from appnet.dns.testing import StaticResolver
from appnet.mail.dkim import DKIMResult
from appnet.mail.dmarc import (
    DMARCRecord,
    Policy,
    aligned,
    evaluate,
    fromDomain,
    lookupPolicy,
    organisationalDomain,
    parseRecord,
)


def dkimPass(domain: str) -> DKIMResult:
    return DKIMResult("pass", domain, "s", "rsa-sha256", "@" + domain)


def dkimFail(domain: str) -> DKIMResult:
    return DKIMResult("fail", domain, "s", "rsa-sha256", "@" + domain)


def record(text: str, organisational: bool = False) -> Policy:
    parsed = parseRecord(text)
    assert parsed is not None
    return Policy("record", parsed, organisational)


#: (name, From domain, policy, SPF (result, domain), DKIM results,
#:  sample, expected (result, policy, disposition))
CASES = [
    (
        "relaxed DKIM alignment: a subdomain signature aligns",
        "example.com",
        record("v=DMARC1; p=reject"),
        None,
        [dkimPass("mail.example.com")],
        0.0,
        ("pass", "reject", "none"),
    ),
    (
        "strict DKIM alignment: a subdomain signature does not",
        "example.com",
        record("v=DMARC1; p=reject; adkim=s"),
        None,
        [dkimPass("mail.example.com")],
        0.0,
        ("fail", "reject", "reject"),
    ),
    (
        "strict DKIM alignment: the exact domain does",
        "example.com",
        record("v=DMARC1; p=reject; adkim=s"),
        None,
        [dkimPass("example.com")],
        0.0,
        ("pass", "reject", "none"),
    ),
    (
        "relaxed SPF alignment: bounce domain in the same organisation",
        "example.com",
        record("v=DMARC1; p=quarantine"),
        ("pass", "bounces.example.com"),
        [],
        0.0,
        ("pass", "quarantine", "none"),
    ),
    (
        "strict SPF alignment: bounce subdomain does not align",
        "example.com",
        record("v=DMARC1; p=quarantine; aspf=s"),
        ("pass", "bounces.example.com"),
        [],
        0.0,
        ("fail", "quarantine", "quarantine"),
    ),
    (
        "SPF pass for another organisation does not align",
        "example.com",
        record("v=DMARC1; p=reject"),
        ("pass", "esp.example.net"),
        [dkimPass("esp.example.net")],
        0.0,
        ("fail", "reject", "reject"),
    ),
    (
        "a failing aligned signature does not count",
        "example.com",
        record("v=DMARC1; p=reject"),
        ("softfail", "example.com"),
        [dkimFail("example.com")],
        0.0,
        ("fail", "reject", "reject"),
    ),
    (
        "one aligned pass among failures is enough",
        "example.com",
        record("v=DMARC1; p=reject"),
        ("fail", "example.com"),
        [dkimFail("example.com"), dkimPass("example.com")],
        0.0,
        ("pass", "reject", "none"),
    ),
    (
        "p=none only records",
        "example.com",
        record("v=DMARC1; p=none"),
        None,
        [],
        0.0,
        ("fail", "none", "none"),
    ),
    (
        "subdomain policy applies to a subdomain using the org record",
        "news.example.com",
        record("v=DMARC1; p=reject; sp=quarantine", organisational=True),
        None,
        [],
        0.0,
        ("fail", "quarantine", "quarantine"),
    ),
    (
        "without sp= the org's p= applies to subdomains",
        "news.example.com",
        record("v=DMARC1; p=reject", organisational=True),
        None,
        [],
        0.0,
        ("fail", "reject", "reject"),
    ),
    (
        "sp= does not apply to the domain's own record",
        "news.example.com",
        record("v=DMARC1; p=reject; sp=none"),
        None,
        [],
        0.0,
        ("fail", "reject", "reject"),
    ),
    (
        "pct: inside the sample the policy applies",
        "example.com",
        record("v=DMARC1; p=reject; pct=20"),
        None,
        [],
        0.10,
        ("fail", "reject", "reject"),
    ),
    (
        "pct: outside the sample reject becomes quarantine",
        "example.com",
        record("v=DMARC1; p=reject; pct=20"),
        None,
        [],
        0.50,
        ("fail", "reject", "quarantine"),
    ),
    (
        "pct: outside the sample quarantine becomes none",
        "example.com",
        record("v=DMARC1; p=quarantine; pct=0"),
        None,
        [],
        0.0,
        ("fail", "quarantine", "none"),
    ),
    (
        "no record: none",
        "example.com",
        Policy("none"),
        None,
        [],
        0.0,
        ("none", "none", "none"),
    ),
    (
        "DNS failure: temperror",
        "example.com",
        Policy("temperror"),
        None,
        [],
        0.0,
        ("temperror", "none", "none"),
    ),
    (
        "public suffix boundaries: co.uk siblings are not aligned",
        "shop.example.co.uk",
        record("v=DMARC1; p=reject"),
        None,
        [dkimPass("other.co.uk")],
        0.0,
        ("fail", "reject", "reject"),
    ),
]


class CaseTableTests(SynchronousTestCase):
    """
    L{evaluate} over the case table.
    """

    def test_cases(self) -> None:
        """
        Every case gives its expected result, policy and disposition.
        """
        for name, domain, policy, spf, dkim, sample, expected in CASES:
            got = evaluate(domain, policy, spf, dkim, lambda s=sample: s)
            self.assertEqual(
                (got.result, got.policy, got.disposition), expected, f"case: {name}"
            )


class RecordTests(SynchronousTestCase):
    """
    L{parseRecord}.
    """

    def test_full(self) -> None:
        """
        Every tag is read; unknown ones are ignored.
        """
        self.assertEqual(
            parseRecord(
                "v=DMARC1; p=quarantine; sp=reject; adkim=s; aspf=s; pct=50;"
                " rua=mailto:d@example.com; fo=1"
            ),
            DMARCRecord("quarantine", "reject", "s", "s", 50),
        )

    def test_notDMARC(self) -> None:
        """
        Records without v=DMARC1 first are not DMARC records.
        """
        self.assertIsNone(parseRecord("v=spf1 -all"))
        self.assertIsNone(parseRecord("p=reject; v=DMARC1"))

    def test_badPolicy(self) -> None:
        """
        A bad p= is no record, unless rua= is given: then p=none (6.6.3).
        """
        self.assertIsNone(parseRecord("v=DMARC1; p=block"))
        self.assertEqual(
            parseRecord("v=DMARC1; p=block; rua=mailto:x@example.com"),
            DMARCRecord("none"),
        )


class DomainTests(SynchronousTestCase):
    """
    Organisational domains and alignment from the Public Suffix List.
    """

    def test_organisational(self) -> None:
        """
        The public suffix plus one label.
        """
        self.assertEqual(organisationalDomain("a.b.example.com"), "example.com")
        self.assertEqual(organisationalDomain("mail.example.co.uk"), "example.co.uk")
        self.assertEqual(organisationalDomain("co.uk"), "co.uk")

    def test_aligned(self) -> None:
        """
        Relaxed compares organisations, strict whole names.
        """
        self.assertTrue(aligned("a.example.com", "example.com", "r"))
        self.assertFalse(aligned("a.example.com", "example.com", "s"))
        self.assertTrue(aligned("Example.COM.", "example.com", "s"))

    def test_fromDomain(self) -> None:
        """
        Exactly one From with one address gives its domain.
        """
        self.assertEqual(fromDomain(["Alice <alice@Example.org>"]), "example.org")
        self.assertIsNone(fromDomain(["a@example.org, b@example.net"]))
        self.assertIsNone(fromDomain(["a@example.org", "b@example.org"]))
        self.assertIsNone(fromDomain([]))


ZONE = """$ORIGIN example.com.
@ 300 IN SOA ns h 1 1 1 1 1
@ 300 IN NS ns
_dmarc 300 IN TXT "v=DMARC1; p=reject; sp=quarantine"
_dmarc.own 300 IN TXT "v=DMARC1; p=none"
"""


class LookupTests(SynchronousTestCase):
    """
    L{lookupPolicy} through appnet's resolver.
    """

    def lookup(self, domain: str, **kw: object) -> Policy:
        resolver = StaticResolver({"example.com": ZONE}, **kw)  # type: ignore[arg-type]
        return self.successResultOf(
            Deferred.fromCoroutine(lookupPolicy(resolver, domain))
        )

    def test_own(self) -> None:
        """
        The domain's own record wins.
        """
        policy = self.lookup("own.example.com")
        self.assertEqual(
            (policy.record, policy.organisational), (DMARCRecord("none"), False)
        )

    def test_organisational(self) -> None:
        """
        Without its own, the organisational domain's record applies.
        """
        policy = self.lookup("news.example.com")
        self.assertEqual(policy.organisational, True)
        self.assertEqual(policy.record, DMARCRecord("reject", "quarantine"))

    def test_temporaryFailure(self) -> None:
        """
        SERVFAIL is temperror.
        """
        policy = self.lookup("example.com", failures={"_dmarc.example.com": 2})
        self.assertEqual(policy.found, "temperror")
