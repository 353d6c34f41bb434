"""
Tests for L{appnet.dns.cache}, on a L{Clock}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from appnet.dns.cache import Cache, Trust


def soa(ttl: int = 3600, minimum: int = 300) -> dns.RRHeader:
    return dns.RRHeader(
        b"example.org",
        dns.SOA,
        dns.IN,
        ttl,
        dns.Record_SOA(b"ns.example.org", b"h.example.org", 1, 1, 1, 1, minimum),
    )


A1 = dns.Record_A("192.0.2.1")
A2 = dns.Record_A("192.0.2.2")


class PositiveTests(SynchronousTestCase):
    """
    RRsets are kept for their TTL and handed out with what remains.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.cache = Cache(self.clock, maxEntries=3, maxTTL=1000)

    def test_ttlCountsDown(self) -> None:
        """The TTL handed out falls as time passes."""
        self.cache.putRRSet(b"www.example.org", dns.A, 300, [A1, A2], Trust.ANSWER)
        self.clock.advance(100)
        rrset = self.cache.getRRSet(b"www.example.org", dns.A)
        assert rrset is not None
        self.assertEqual(rrset.ttl, 200)
        self.assertEqual([h.ttl for h in rrset.headers()], [200, 200])
        self.assertEqual([h.payload for h in rrset.headers()], [A1, A2])

    def test_expires(self) -> None:
        """At its TTL an entry is gone."""
        self.cache.putRRSet(b"www.example.org", dns.A, 300, [A1], Trust.ANSWER)
        self.clock.advance(299.5)
        self.assertIsNotNone(self.cache.getRRSet(b"www.example.org", dns.A))
        self.clock.advance(0.5)
        self.assertIsNone(self.cache.getRRSet(b"www.example.org", dns.A))
        self.assertEqual(len(self.cache), 0)

    def test_maxTTL(self) -> None:
        """TTLs above the cap are cut to it."""
        self.cache.putRRSet(b"www.example.org", dns.A, 86400, [A1], Trust.ANSWER)
        rrset = self.cache.getRRSet(b"www.example.org", dns.A)
        assert rrset is not None
        self.assertEqual(rrset.ttl, 1000)

    def test_zeroTTL(self) -> None:
        """A zero TTL is never cached."""
        self.cache.putRRSet(b"www.example.org", dns.A, 0, [A1], Trust.ANSWER)
        self.assertIsNone(self.cache.getRRSet(b"www.example.org", dns.A))

    def test_lruBound(self) -> None:
        """
        Beyond C{maxEntries}, the least recently used entry goes; reading
        an entry makes it recent.
        """
        for name in (b"a", b"b", b"c"):
            self.cache.putRRSet(name, dns.A, 300, [A1], Trust.ANSWER)
        self.cache.getRRSet(b"a", dns.A)
        self.cache.putRRSet(b"d", dns.A, 300, [A1], Trust.ANSWER)
        self.assertEqual(len(self.cache), 3)
        self.assertIsNone(self.cache.getRRSet(b"b", dns.A))
        for name in (b"a", b"c", b"d"):
            self.assertIsNotNone(self.cache.getRRSet(name, dns.A))

    def test_trust(self) -> None:
        """
        Glue never replaces an authoritative answer and is not handed out
        as an answer; it is there for the resolver (RFC 2181 5.4.1).
        """
        self.cache.putRRSet(b"ns.example.org", dns.A, 300, [A1], Trust.AUTHORITATIVE)
        self.cache.putRRSet(b"ns.example.org", dns.A, 300, [A2], Trust.GLUE)
        rrset = self.cache.getRRSet(b"ns.example.org", dns.A)
        assert rrset is not None
        self.assertEqual(rrset.records, (A1,))
        self.cache.putRRSet(b"glue.example.org", dns.A, 300, [A2], Trust.GLUE)
        self.assertIsNone(self.cache.getRRSet(b"glue.example.org", dns.A))
        self.assertIsNotNone(
            self.cache.getRRSet(b"glue.example.org", dns.A, Trust.GLUE)
        )
        self.cache.putRRSet(b"glue.example.org", dns.A, 300, [A1], Trust.AUTHORITATIVE)
        rrset = self.cache.getRRSet(b"glue.example.org", dns.A)
        assert rrset is not None
        self.assertEqual(rrset.records, (A1,))


class NegativeTests(SynchronousTestCase):
    """
    Negative answers per RFC 2308.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.cache = Cache(self.clock, maxNegativeTTL=900)

    def test_nxdomainCoversEveryType(self) -> None:
        """NXDOMAIN is cached for the name, whatever the type asked."""
        self.cache.putNegative(b"nope.example.org", None, soa())
        for type in (dns.A, dns.MX):
            negative = self.cache.getNegative(b"nope.example.org", type)
            assert negative is not None
            self.assertEqual(negative.rcode, dns.ENAME)

    def test_nodataPerType(self) -> None:
        """NODATA is cached for one type only."""
        self.cache.putNegative(b"www.example.org", dns.MX, soa())
        negative = self.cache.getNegative(b"www.example.org", dns.MX)
        assert negative is not None
        self.assertEqual(negative.rcode, dns.OK)
        self.assertIsNone(self.cache.getNegative(b"www.example.org", dns.A))

    def test_negativeTTL(self) -> None:
        """
        The negative TTL is the lesser of the SOA's TTL and MINIMUM, and
        counts down in the SOA handed out.
        """
        self.cache.putNegative(b"nope.example.org", None, soa(ttl=3600, minimum=300))
        self.clock.advance(100)
        negative = self.cache.getNegative(b"nope.example.org", dns.A)
        assert negative is not None
        self.assertEqual(negative.soa.ttl, 200)
        self.clock.advance(200)
        self.assertIsNone(self.cache.getNegative(b"nope.example.org", dns.A))
        self.cache.putNegative(b"nope.example.org", None, soa(ttl=60, minimum=300))
        self.clock.advance(60)
        self.assertIsNone(self.cache.getNegative(b"nope.example.org", dns.A))

    def test_negativeCap(self) -> None:
        """Negative answers are kept at most C{maxNegativeTTL}."""
        self.cache.putNegative(b"nope.example.org", None, soa(86400, 86400))
        negative = self.cache.getNegative(b"nope.example.org", dns.A)
        assert negative is not None
        self.assertEqual(negative.soa.ttl, 900)

    def test_withoutSOA(self) -> None:
        """A negative answer without an SOA is not cached (RFC 2308 5)."""
        self.cache.putNegative(b"nope.example.org", None, None)
        self.assertEqual(len(self.cache), 0)

    def test_positiveReplacesNXDOMAIN(self) -> None:
        """A later answer for the name clears its NXDOMAIN."""
        self.cache.putNegative(b"new.example.org", None, soa())
        self.cache.putRRSet(b"new.example.org", dns.A, 300, [A1], Trust.AUTHORITATIVE)
        self.assertIsNone(self.cache.getNegative(b"new.example.org", dns.A))
