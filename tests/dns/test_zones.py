"""
Tests for L{appnet.dns.zones}: checking a zone and answering from it.
"""

from __future__ import annotations

from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from appnet.dns.errors import ZoneError
from appnet.dns.names import normalize
from appnet.dns.zones import Authority, zoneFromText

HAMBURGER = """\
$TTL 3600
@       SOA   ns1 hostmaster 1 3600 900 604800 300
        NS    ns1
        MX    10 mx1
        MX    20 mx2
        A     192.0.2.1
        A     192.0.2.2
        A     192.0.2.3
ns1     A     127.0.0.4
mx1     A     192.0.2.10
mx2     A     192.0.2.20
mx2     AAAA  2001:db8::20
www     CNAME @
alias   CNAME www
away    CNAME www.crepes.fr.
loop1   CNAME loop2
loop2   CNAME loop1
*.wild  A     192.0.2.99
*.wild  MX    10 mx1
*.star  CNAME www
host.wild A   192.0.2.50
deep.empty A  192.0.2.7
sub     NS    ns.sub
sub     NS    ns.example.net.
ns.sub  A     192.0.2.53
_xmpp._tcp SRV 5 0 5269 mx1
"""

CREPES = """\
$TTL 300
@ SOA ns hostmaster 7 3600 900 604800 60
  NS ns
ns A 192.0.2.80
www A 192.0.2.81
"""


def names(records: object) -> list[bytes]:
    return [normalize(r.name) for r in records]  # type: ignore[attr-defined]


class CheckTests(SynchronousTestCase):
    """
    A zone must be a zone.
    """

    def test_noSOA(self) -> None:
        """A zone without SOA is refused, naming the file."""
        with self.assertRaises(ZoneError) as caught:
            zoneFromText("$TTL 1\n@ NS ns\n", "z.zone", b"example.org")
        self.assertEqual(str(caught.exception), "z.zone: no SOA record")

    def test_noNS(self) -> None:
        """The apex needs NS records."""
        with self.assertRaises(ZoneError) as caught:
            zoneFromText("$TTL 1\n@ SOA ns h 1 1 1 1 1\n", "z.zone", b"example.org")
        self.assertIn("no NS records", str(caught.exception))

    def test_outOfZone(self) -> None:
        """A record outside the zone names its line."""
        with self.assertRaises(ZoneError) as caught:
            zoneFromText(
                "$TTL 1\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nwww.crepes.fr. A 192.0.2.1\n",
                "z.zone",
                b"example.org",
            )
        self.assertEqual(caught.exception.line, 4)
        self.assertIn("outside the zone example.org.", caught.exception.problem)

    def test_cnameAndOtherData(self) -> None:
        """A CNAME cannot share its name with other data (RFC 1034 3.6.2)."""
        with self.assertRaises(ZoneError) as caught:
            zoneFromText(
                "$TTL 1\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nwww A 192.0.2.1\nwww CNAME @\n",
                "z.zone",
                b"example.org",
            )
        self.assertEqual(caught.exception.line, 5)
        self.assertIn("CNAME and other data", caught.exception.problem)

    def test_secondSOA(self) -> None:
        """Only one SOA."""
        with self.assertRaises(ZoneError) as caught:
            zoneFromText(
                "$TTL 1\n@ SOA ns h 1 1 1 1 1\n@ NS ns\n@ SOA ns h 2 1 1 1 1\n",
                "z.zone",
                b"example.org",
            )
        self.assertEqual(caught.exception.line, 4)


class AnswerTests(SynchronousTestCase):
    """
    Answers from the zones we serve.
    """

    def setUp(self) -> None:
        self.authority = Authority(
            [
                zoneFromText(HAMBURGER, "hamburger.zone", b"hamburger.edu"),
                zoneFromText(CREPES, "crepes.zone", b"crepes.fr"),
            ]
        )

    def ask(self, name: str, type: int = dns.A):  # type: ignore[no-untyped-def]
        answer = self.authority.answer(normalize(name), type)
        assert answer is not None
        return answer

    def test_notOurs(self) -> None:
        """Names outside our zones get no answer from the authority."""
        self.assertIsNone(self.authority.answer(b"example.com", dns.A))

    def test_positiveAuthoritative(self) -> None:
        """A positive answer is authoritative and has all the RRset."""
        answer = self.ask("mx1.hamburger.edu")
        self.assertTrue(answer.authoritative)
        self.assertEqual(answer.rcode, dns.OK)
        self.assertEqual(answer.answers[0].payload.dottedQuad(), "192.0.2.10")

    def test_nxdomainWithSOA(self) -> None:
        """
        NXDOMAIN carries the SOA, its TTL the lesser of the SOA TTL and
        MINIMUM (RFC 2308 section 3).
        """
        answer = self.ask("nope.hamburger.edu")
        self.assertEqual(answer.rcode, dns.ENAME)
        self.assertTrue(answer.authoritative)
        [soa] = answer.authority
        self.assertEqual((soa.type, soa.ttl), (dns.SOA, 300))

    def test_nodataWithSOA(self) -> None:
        """A name without the type asked is NODATA: NOERROR, SOA."""
        answer = self.ask("www.crepes.fr", dns.MX)
        self.assertEqual((answer.rcode, answer.answers), (dns.OK, ()))
        self.assertEqual([r.type for r in answer.authority], [dns.SOA])
        self.assertEqual(answer.authority[0].ttl, 60)

    def test_emptyNonTerminal(self) -> None:
        """A name that exists only as a parent is NODATA, not NXDOMAIN."""
        answer = self.ask("empty.hamburger.edu")
        self.assertEqual((answer.rcode, answer.answers), (dns.OK, ()))

    def test_cnameChain(self) -> None:
        """A CNAME chain inside the zone is followed to the records."""
        answer = self.ask("alias.hamburger.edu")
        self.assertEqual(
            [(normalize(r.name), r.type) for r in answer.answers],
            [
                (b"alias.hamburger.edu", dns.CNAME),
                (b"www.hamburger.edu", dns.CNAME),
                (b"hamburger.edu", dns.A),
                (b"hamburger.edu", dns.A),
                (b"hamburger.edu", dns.A),
            ],
        )
        self.assertIsNone(answer.pending)

    def test_cnameIntoOtherZone(self) -> None:
        """A chain into another zone we serve is followed there."""
        answer = self.ask("away.hamburger.edu")
        self.assertEqual(
            names(answer.answers), [b"away.hamburger.edu", b"www.crepes.fr"]
        )
        self.assertEqual(answer.answers[-1].payload.dottedQuad(), "192.0.2.81")

    def test_cnameLeavingOurZones(self) -> None:
        """A chain leaving our zones stops with the target pending."""
        self.authority.replace(
            [zoneFromText(HAMBURGER, "hamburger.zone", b"hamburger.edu")]
        )
        answer = self.ask("away.hamburger.edu")
        self.assertEqual(answer.pending, b"www.crepes.fr")
        self.assertEqual(len(answer.answers), 1)

    def test_cnameLoop(self) -> None:
        """A CNAME loop ends the chain instead of looping."""
        answer = self.ask("loop1.hamburger.edu")
        self.assertEqual(
            names(answer.answers), [b"loop1.hamburger.edu", b"loop2.hamburger.edu"]
        )
        self.assertIsNone(answer.pending)

    def test_cnameQueried(self) -> None:
        """Asking for the CNAME itself returns just it."""
        answer = self.ask("www.hamburger.edu", dns.CNAME)
        self.assertEqual([r.type for r in answer.answers], [dns.CNAME])

    def test_roundRobin(self) -> None:
        """The records of an RRset rotate from one answer to the next."""
        firsts = [
            self.ask("hamburger.edu").answers[0].payload.dottedQuad() for _ in range(4)
        ]
        self.assertEqual(firsts, ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"])
        self.assertEqual(len(self.ask("hamburger.edu").answers), 3)

    def test_additionalForMX(self) -> None:
        """MX answers bring the exchangers' addresses along."""
        answer = self.ask("hamburger.edu", dns.MX)
        self.assertEqual(
            sorted((normalize(r.name), r.type) for r in answer.additional),
            [
                (b"mx1.hamburger.edu", dns.A),
                (b"mx2.hamburger.edu", dns.A),
                (b"mx2.hamburger.edu", dns.AAAA),
            ],
        )

    def test_additionalForSRV(self) -> None:
        """SRV answers bring the target's address along."""
        answer = self.ask("_xmpp._tcp.hamburger.edu", dns.SRV)
        self.assertEqual(names(answer.additional), [b"mx1.hamburger.edu"])

    def test_any(self) -> None:
        """ANY returns every RRset at the name."""
        answer = self.ask("mx2.hamburger.edu", dns.ALL_RECORDS)
        self.assertEqual(sorted(r.type for r in answer.answers), [dns.A, dns.AAAA])


class WildcardTests(SynchronousTestCase):
    """
    Wildcards as RFC 4592 defines them.
    """

    def setUp(self) -> None:
        self.authority = Authority(
            [zoneFromText(HAMBURGER, "hamburger.zone", b"hamburger.edu")]
        )

    def ask(self, name: str, type: int = dns.A):  # type: ignore[no-untyped-def]
        answer = self.authority.answer(normalize(name), type)
        assert answer is not None
        return answer

    def test_synthesized(self) -> None:
        """A missing name below C{*.wild} is answered with the owner asked."""
        answer = self.ask("anything.wild.hamburger.edu")
        self.assertEqual(names(answer.answers), [b"anything.wild.hamburger.edu"])
        self.assertEqual(answer.answers[0].payload.dottedQuad(), "192.0.2.99")
        self.assertTrue(answer.authoritative)

    def test_deeperName(self) -> None:
        """The wildcard also covers names several labels down."""
        answer = self.ask("a.b.wild.hamburger.edu", dns.MX)
        self.assertEqual(names(answer.answers), [b"a.b.wild.hamburger.edu"])

    def test_existingNameNotCovered(self) -> None:
        """A name that exists is never answered from the wildcard."""
        self.assertEqual(
            self.ask("host.wild.hamburger.edu").answers[0].payload.dottedQuad(),
            "192.0.2.50",
        )
        answer = self.ask("host.wild.hamburger.edu", dns.MX)
        self.assertEqual((answer.rcode, answer.answers), (dns.OK, ()))

    def test_belowExistingName(self) -> None:
        """
        Below an existing name the closest encloser changes: no wildcard
        at C{*.host.wild}, so NXDOMAIN.
        """
        self.assertEqual(self.ask("x.host.wild.hamburger.edu").rcode, dns.ENAME)

    def test_wildcardNodata(self) -> None:
        """A type the wildcard lacks is NODATA."""
        answer = self.ask("x.wild.hamburger.edu", dns.TXT)
        self.assertEqual((answer.rcode, answer.answers), (dns.OK, ()))
        self.assertEqual([r.type for r in answer.authority], [dns.SOA])

    def test_wildcardCNAME(self) -> None:
        """A wildcard CNAME is synthesized and followed."""
        answer = self.ask("x.star.hamburger.edu")
        self.assertEqual(
            names(answer.answers)[:2], [b"x.star.hamburger.edu", b"www.hamburger.edu"]
        )
        self.assertEqual(answer.answers[-1].type, dns.A)


class ReferralTests(SynchronousTestCase):
    """
    Delegations are answered with referrals.
    """

    def setUp(self) -> None:
        self.authority = Authority(
            [zoneFromText(HAMBURGER, "hamburger.zone", b"hamburger.edu")]
        )

    def test_referral(self) -> None:
        """
        A name at or below a cut gets the child's NS in authority, in-zone
        glue in additional, and no AA.
        """
        for name in (b"www.sub.hamburger.edu", b"sub.hamburger.edu"):
            answer = self.authority.answer(name, dns.A)
            assert answer is not None
            self.assertFalse(answer.authoritative)
            self.assertEqual(answer.answers, ())
            self.assertEqual(
                sorted(r.payload.name.name for r in answer.authority),
                [b"ns.example.net", b"ns.sub.hamburger.edu"],
            )
            self.assertEqual(names(answer.additional), [b"ns.sub.hamburger.edu"])

    def test_transfer(self) -> None:
        """A transfer lists the SOA first and last, and everything between."""
        records = self.authority.transfer(b"hamburger.edu")
        assert records is not None
        self.assertEqual(records[0].type, dns.SOA)
        self.assertEqual(records[-1].type, dns.SOA)
        self.assertIn(b"ns.sub.hamburger.edu", names(records))
        self.assertIsNone(self.authority.transfer(b"crepes.fr"))
