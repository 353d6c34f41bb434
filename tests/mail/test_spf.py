"""
Tests for L{appnet.mail.spf}: RFC 7208's check_host() against test
zones (L{StaticResolver}), the limits, macros, and the MX role's policy.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from appnet.dns.testing import StaticResolver
from appnet.mail.spf import (
    FAIL,
    NEUTRAL,
    NONE,
    PASS,
    PERMERROR,
    SOFTFAIL,
    TEMPERROR,
    SPFPolicy,
    SPFResult,
    checkHost,
)

HEAD = "@ SOA ns hostmaster 1 3600 900 604800 60\n@ NS ns\nns A 192.0.2.53\n"

ZONE = (
    HEAD
    + """\
pass      TXT "v=spf1 ip4:192.0.2.0/24 -all"
fail      TXT "v=spf1 ip4:198.51.100.1 -all"
soft      TXT "v=spf1 ~all"
neutral   TXT "v=spf1 ?all"
nomatch   TXT "v=spf1 ip4:198.51.100.1"
none      TXT "just some text"
two       TXT "v=spf1 -all"
two       TXT "v=spf1 +all"
bad       TXT "v=spf1 frobnicate -all"
badip     TXT "v=spf1 ip4:300.1.1.1 -all"
split     TXT "v=spf1 " "ip4:192.0.2.7 " "-all"
a         TXT "v=spf1 a -all"
a         A   192.0.2.10
acidr     TXT "v=spf1 a:host.example.org/24 -all"
host      A   192.0.2.200
mx        TXT "v=spf1 mx -all"
mx        MX  10 mail
mail      A   192.0.2.11
v6        TXT "v=spf1 ip6:2001:db8::/32 a -all"
v6        AAAA 2001:db8:1::5
inc       TXT "v=spf1 include:pass.example.org -all"
incnone   TXT "v=spf1 include:none.example.org -all"
incfail   TXT "v=spf1 include:fail.example.org ~all"
redir     TXT "v=spf1 redirect=pass.example.org"
redirnone TXT "v=spf1 redirect=none.example.org"
exists    TXT "v=spf1 exists:%{i}.ok.example.org -all"
192.0.2.9.ok A 127.0.0.2
macro     TXT "v=spf1 exists:%{l1r+-}.%{o}.x.example.org -all"
bob.example.org.x A 127.0.0.2
exp       TXT "v=spf1 -all exp=why.example.org"
why       TXT "%{i} may not send for %{d} (see %{r})"
loop      TXT "v=spf1 include:loop.example.org -all"
void      TXT "v=spf1 a:n1.example.org a:n2.example.org a:n3.example.org +all"
ptr       TXT "v=spf1 ptr -all"
www.ptr   A   192.0.2.30
temp      TXT "v=spf1 a:slow.example -all"
"""
)

MANY = (
    HEAD
    + 'many TXT "v=spf1 '
    + " ".join(f"a:h{n}.example.org" for n in range(11))
    + ' -all"\n'
    + "".join(f"h{n} A 198.51.100.{n + 1}\n" for n in range(11))
)

REVERSE = (
    "@ SOA ns.example.org. hostmaster.example.org. 1 3600 900 604800 60\n"
    "@ NS ns.example.org.\n"
    "30 PTR www.ptr.example.org.\n"
)


class CheckHostTests(SynchronousTestCase):
    """
    check_host() against test zones.
    """

    def setUp(self) -> None:
        self.resolver = StaticResolver(
            zones={
                "example.org": ZONE,
                "limits.example": MANY.replace("example.org", "limits.example"),
                "2.0.192.in-addr.arpa": REVERSE,
            },
            timeouts=["slow.example"],
        )

    def check(self, domain: str, ip: str = "192.0.2.9", sender: str = "") -> SPFResult:
        result: SPFResult = self.successResultOf(
            checkHost(
                self.resolver,
                ip,
                domain,
                sender or f"bob@{domain}",
                "mx.client.example",
                "mx.receiver.example",
            )
        )
        return result

    def assertResult(self, domain: str, expected: str, ip: str = "192.0.2.9") -> None:
        result = self.check(domain, ip)
        self.assertEqual(result.result, expected, result.reason)

    def test_results(self) -> None:
        """
        Each of the seven results: pass, fail, softfail, neutral (by
        ?all, and when nothing matches), none, permerror, temperror.
        """
        self.assertResult("pass.example.org", PASS)
        self.assertResult("fail.example.org", FAIL)
        self.assertResult("soft.example.org", SOFTFAIL)
        self.assertResult("neutral.example.org", NEUTRAL)
        self.assertResult("nomatch.example.org", NEUTRAL)
        self.assertResult("none.example.org", NONE)
        self.assertResult("nowhere.example.org", NONE)
        self.assertResult("bad.example.org", PERMERROR)
        self.assertResult("badip.example.org", PERMERROR)
        self.assertResult("two.example.org", PERMERROR)
        self.assertResult("temp.example.org", TEMPERROR)
        self.assertResult("slow.example", TEMPERROR)

    def test_recordInStrings(self) -> None:
        """A record split into several strings is read joined."""
        self.assertResult("split.example.org", PASS, "192.0.2.7")
        self.assertResult("split.example.org", FAIL, "192.0.2.8")

    def test_aAndMx(self) -> None:
        """C{a}, C{a:domain/cidr} and C{mx} match the right addresses."""
        self.assertResult("a.example.org", PASS, "192.0.2.10")
        self.assertResult("a.example.org", FAIL, "192.0.2.11")
        self.assertResult("acidr.example.org", PASS, "192.0.2.99")
        self.assertResult("acidr.example.org", FAIL, "192.0.3.1")
        self.assertResult("mx.example.org", PASS, "192.0.2.11")
        self.assertResult("mx.example.org", FAIL, "192.0.2.10")

    def test_ipv6(self) -> None:
        """ip6 networks and AAAA lookups for an IPv6 client."""
        self.assertResult("v6.example.org", PASS, "2001:db8:ffff::1")
        self.assertResult("v6.example.org", FAIL, "2001:dead::1")
        self.assertResult("pass.example.org", PASS, "::ffff:192.0.2.9")

    def test_includeAndRedirect(self) -> None:
        """
        include matches on pass only, is a permerror when the target has
        no record; redirect hands the result over; a loop of includes
        ends at the lookup limit.
        """
        self.assertResult("inc.example.org", PASS)
        self.assertResult("inc.example.org", FAIL, "198.51.100.7")
        self.assertResult("incnone.example.org", PERMERROR)
        self.assertResult("incfail.example.org", SOFTFAIL)
        self.assertResult("incfail.example.org", PASS, "198.51.100.1")
        self.assertResult("redir.example.org", PASS)
        self.assertResult("redir.example.org", FAIL, "198.51.100.7")
        self.assertResult("redirnone.example.org", PERMERROR)
        result = self.check("loop.example.org")
        self.assertEqual(result.result, PERMERROR)
        self.assertIn("10 DNS lookups", result.reason)

    def test_lookupLimit(self) -> None:
        """An 11th DNS-querying term is a permerror (RFC 7208 4.6.4)."""
        result = self.check("many.limits.example", "198.51.100.11")
        self.assertEqual(result.result, PERMERROR)
        # The tenth still counts: an address matched by it passes.
        self.assertResult("many.limits.example", PASS, "198.51.100.10")

    def test_voidLookupLimit(self) -> None:
        """A third lookup answering nothing is a permerror."""
        result = self.check("void.example.org")
        self.assertEqual(result.result, PERMERROR)
        self.assertIn("void", result.reason)

    def test_macros(self) -> None:
        """
        Macros expand with transformers: %{i} in exists, %{l1r+-} and
        %{o}; exp= gives the explanation of a fail, with %{r}.
        """
        self.assertResult("exists.example.org", PASS, "192.0.2.9")
        self.assertResult("exists.example.org", FAIL, "192.0.2.10")
        result = self.successResultOf(
            checkHost(
                self.resolver,
                "192.0.2.1",
                "macro.example.org",
                "bob-x@example.org",
            )
        )
        self.assertEqual(result.result, PASS, result.reason)
        result = self.check("exp.example.org")
        self.assertEqual(result.result, FAIL)
        self.assertEqual(
            result.explanation,
            "192.0.2.9 may not send for exp.example.org (see mx.receiver.example)",
        )

    def test_ptr(self) -> None:
        """ptr matches a validated reverse name within the domain."""
        self.assertResult("ptr.example.org", PASS, "192.0.2.30")
        self.assertResult("ptr.example.org", FAIL, "192.0.2.31")


class PolicyTests(SynchronousTestCase):
    """
    What the MX role does with a result.
    """

    resolver = StaticResolver(zones={"example.org": ZONE})

    def test_header(self) -> None:
        """Received-SPF carries the result, client, sender and HELO."""
        policy = SPFPolicy(self.resolver, "mx.example.net")
        decision = self.successResultOf(
            policy.decide("192.0.2.9", "client.example", "bob@pass.example.org")
        )
        assert decision is not None
        self.assertIsNone(decision.refuse)
        header = decision.header.decode()
        self.assertTrue(header.startswith("Received-SPF: pass (mx.example.net:"))
        self.assertIn("client-ip=192.0.2.9;", header)
        self.assertIn("envelope-from=bob@pass.example.org;", header)
        self.assertIn("helo=client.example;", header)
        self.assertIn("identity=mailfrom;", header)

    def test_nullSenderChecksHelo(self) -> None:
        """The null sender is checked as postmaster@HELO."""
        policy = SPFPolicy(self.resolver, "mx.example.net")
        decision = self.successResultOf(
            policy.decide("192.0.2.9", "pass.example.org", "")
        )
        assert decision is not None
        self.assertEqual(decision.result.result, PASS)
        self.assertIn(b"identity=helo", decision.header)

    def test_rejectOnlyFail(self) -> None:
        """
        In reject mode a fail is refused with 550 5.7.23 and the
        explanation; softfail is only marked; mark mode never refuses.
        """
        reject = SPFPolicy(self.resolver, "mx.example.net", "reject")
        decision = self.successResultOf(
            reject.decide("192.0.2.9", "c.example", "bob@exp.example.org")
        )
        assert decision is not None
        assert decision.refuse is not None
        self.assertEqual(decision.refuse[:2], (550, "5.7.23"))
        self.assertIn("may not send", decision.refuse[2])
        soft = self.successResultOf(
            reject.decide("192.0.2.9", "c.example", "bob@soft.example.org")
        )
        assert soft is not None
        self.assertIsNone(soft.refuse)
        mark = SPFPolicy(self.resolver, "mx.example.net", "mark")
        failed = self.successResultOf(
            mark.decide("192.0.2.9", "c.example", "bob@fail.example.org")
        )
        assert failed is not None
        self.assertIsNone(failed.refuse)
        self.assertTrue(failed.header.startswith(b"Received-SPF: fail"))

    def test_skipped(self) -> None:
        """Clients in spf_skip are not checked at all."""
        policy = SPFPolicy(self.resolver, "mx", skip=["127.0.0.0/8"])
        self.assertIsNone(
            self.successResultOf(policy.decide("127.0.0.1", "h", "a@fail.example.org"))
        )
        asked = len(self.resolver.asked)
        self.assertEqual(len(self.resolver.asked), asked)

    def test_timeout(self) -> None:
        """A check that takes too long is a temperror, not a stall."""
        from twisted.internet.defer import Deferred
        from twisted.internet.task import Clock

        class Silent(StaticResolver):
            def lookupText(self, name: str) -> Deferred[list[bytes]]:
                return Deferred()

        clock = Clock()
        policy = SPFPolicy(Silent(), "mx", clock=clock, timeout=20)
        decision = policy.decide("192.0.2.9", "h", "a@pass.example.org")
        clock.advance(19)
        self.assertNoResult(decision)
        clock.advance(1)
        result = self.successResultOf(decision)
        assert result is not None
        self.assertEqual(result.result.result, TEMPERROR)
