"""
Tests for L{appnet.dns.update}: RFC 2136 prerequisites and updates, RFC
1982 serial arithmetic, and diffs between versions of a zone.
"""

from __future__ import annotations

from typing import Any

from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from appnet.dns.errors import ZoneError
from appnet.dns.update import (
    NOTZONE,
    NXRRSET,
    YXDOMAIN,
    YXRRSET,
    applyDiff,
    diffZones,
    nextSerial,
    prepare,
    serialGreater,
)
from appnet.dns.zones import Authority, Zone, zoneFromText

ZONE = """\
$TTL 300
@      SOA   ns hostmaster 10 3600 900 604800 60
       NS    ns
       NS    ns2
ns     A     192.0.2.53
ns2    A     192.0.2.54
www    A     192.0.2.1
www    A     192.0.2.2
mail   MX    10 mx
alias  CNAME www
"""
NONE = 254


def zone(text: str = ZONE) -> Zone:
    return zoneFromText(text, "example.org", b"example.org")


def rr(
    name: str, type: int, payload: Any = None, cls: int = dns.IN, ttl: int = 300
) -> dns.RRHeader:
    """A record of the update or prerequisite section."""
    if payload is None:
        payload = dns.UnknownRecord(b"")
    record = dns.RRHeader(name.encode(), type, cls, ttl, payload)
    if isinstance(payload, dns.UnknownRecord) and not payload.data:
        record.rdlength = 0
    return record


def a(address: str) -> dns.Record_A:
    return dns.Record_A(address)


def addresses(z: Zone, name: bytes) -> list[str]:
    rrset = z.nodes.get(name, {}).get(dns.A)
    return sorted(r.dottedQuad() for r in rrset.records) if rrset else []


class SerialTests(SynchronousTestCase):
    """RFC 1982 serial number arithmetic."""

    def test_greater(self) -> None:
        """Comparison wraps around 2**32 (section 3.2)."""
        self.assertTrue(serialGreater(2, 1))
        self.assertFalse(serialGreater(1, 2))
        self.assertTrue(serialGreater(0, 2**32 - 1))
        self.assertTrue(serialGreater(5, 2**32 - 5))
        self.assertFalse(serialGreater(7, 7))

    def test_next(self) -> None:
        """The serial goes up by one, wrapping past 2**32 - 1 (to 1, not 0)."""
        self.assertEqual(nextSerial(41), 42)
        self.assertEqual(nextSerial(2**32 - 1), 1)


class PrerequisiteTests(SynchronousTestCase):
    """RFC 2136 section 2.4 and 3.2."""

    def check(self, prerequisites: list[dns.RRHeader]) -> int:
        return prepare(zone(), prerequisites, [])[0]

    def test_nameInUse(self) -> None:
        """Class ANY, type ANY: the name has records, else NXDOMAIN (2.4.4)."""
        self.assertEqual(
            self.check([rr("www.example.org", dns.ALL_RECORDS, cls=dns.ANY, ttl=0)]),
            dns.OK,
        )
        self.assertEqual(
            self.check([rr("no.example.org", dns.ALL_RECORDS, cls=dns.ANY, ttl=0)]),
            dns.ENAME,
        )

    def test_nameNotInUse(self) -> None:
        """Class NONE, type ANY: the name has no records, else YXDOMAIN (2.4.5)."""
        self.assertEqual(
            self.check([rr("no.example.org", dns.ALL_RECORDS, cls=NONE, ttl=0)]), dns.OK
        )
        self.assertEqual(
            self.check([rr("www.example.org", dns.ALL_RECORDS, cls=NONE, ttl=0)]),
            YXDOMAIN,
        )

    def test_rrsetExists(self) -> None:
        """Class ANY: the RRset exists, else NXRRSET (2.4.1)."""
        self.assertEqual(
            self.check([rr("www.example.org", dns.A, cls=dns.ANY, ttl=0)]), dns.OK
        )
        self.assertEqual(
            self.check([rr("www.example.org", dns.MX, cls=dns.ANY, ttl=0)]), NXRRSET
        )

    def test_rrsetDoesNotExist(self) -> None:
        """Class NONE: the RRset does not exist, else YXRRSET (2.4.3)."""
        self.assertEqual(
            self.check([rr("www.example.org", dns.MX, cls=NONE, ttl=0)]), dns.OK
        )
        self.assertEqual(
            self.check([rr("www.example.org", dns.A, cls=NONE, ttl=0)]), YXRRSET
        )

    def test_valueDependent(self) -> None:
        """
        Class IN: the RRset is exactly the records given, in any order,
        else NXRRSET (2.4.2).
        """
        both = [
            rr("www.example.org", dns.A, a("192.0.2.2"), ttl=0),
            rr("www.example.org", dns.A, a("192.0.2.1"), ttl=0),
        ]
        self.assertEqual(self.check(both), dns.OK)
        self.assertEqual(self.check(both[:1]), NXRRSET)
        self.assertEqual(
            self.check(both + [rr("www.example.org", dns.A, a("192.0.2.3"), ttl=0)]),
            NXRRSET,
        )

    def test_formatErrors(self) -> None:
        """A TTL other than 0, or data with class ANY, is FORMERR (3.2.1)."""
        self.assertEqual(
            self.check([rr("www.example.org", dns.A, cls=dns.ANY, ttl=5)]), dns.EFORMAT
        )
        bad = rr("www.example.org", dns.A, a("192.0.2.1"), cls=dns.ANY, ttl=0)
        bad.rdlength = 4
        self.assertEqual(self.check([bad]), dns.EFORMAT)

    def test_notZone(self) -> None:
        """A prerequisite outside the zone is NOTZONE (3.2.1)."""
        self.assertEqual(
            self.check([rr("www.example.net", dns.A, cls=dns.ANY, ttl=0)]), NOTZONE
        )

    def test_failedPrerequisiteChangesNothing(self) -> None:
        """When a prerequisite fails the update section is not applied."""
        rcode, diff = prepare(
            zone(),
            [rr("no.example.org", dns.ALL_RECORDS, cls=dns.ANY, ttl=0)],
            [rr("new.example.org", dns.A, a("192.0.2.9"))],
        )
        self.assertEqual((rcode, diff), (dns.ENAME, None))


class UpdateTests(SynchronousTestCase):
    """RFC 2136 sections 2.5 and 3.4."""

    def apply(self, *updates: dns.RRHeader, base: Zone | None = None) -> Zone:
        old = base or zone()
        rcode, diff = prepare(old, [], list(updates))
        self.assertEqual(rcode, dns.OK)
        if diff is None:
            return old
        return applyDiff(old, diff)

    def test_add(self) -> None:
        """Adding a record adds it and raises the serial by one (3.4.2.2)."""
        new = self.apply(rr("new.example.org", dns.A, a("192.0.2.9"), ttl=60))
        self.assertEqual(addresses(new, b"new.example.org"), ["192.0.2.9"])
        self.assertEqual(new.nodes[b"new.example.org"][dns.A].ttl, 60)
        self.assertEqual(new.serial, 11)
        answer = Authority([new]).answer(b"new.example.org", dns.A)
        assert answer is not None
        self.assertEqual(len(answer.answers), 1)

    def test_addDuplicate(self) -> None:
        """Adding a record the RRset holds changes nothing, nor the serial."""
        new = self.apply(rr("www.example.org", dns.A, a("192.0.2.1")))
        self.assertEqual(new.serial, 10)

    def test_deleteRecord(self) -> None:
        """Class NONE deletes one record (2.5.4)."""
        new = self.apply(rr("www.example.org", dns.A, a("192.0.2.1"), cls=NONE, ttl=0))
        self.assertEqual(addresses(new, b"www.example.org"), ["192.0.2.2"])

    def test_deleteRRset(self) -> None:
        """Class ANY with a type deletes the RRset (2.5.2)."""
        new = self.apply(rr("www.example.org", dns.A, cls=dns.ANY, ttl=0))
        self.assertNotIn(b"www.example.org", new.nodes)
        self.assertNotIn(b"www.example.org", new.names)

    def test_deleteName(self) -> None:
        """Class ANY, type ANY deletes every RRset of the name (2.5.3)."""
        new = self.apply(rr("mail.example.org", dns.ALL_RECORDS, cls=dns.ANY, ttl=0))
        self.assertNotIn(b"mail.example.org", new.nodes)

    def test_apexKeepsSOAAndNS(self) -> None:
        """
        Deleting everything at the apex leaves its SOA and NS; deleting
        its SOA or NS RRsets is ignored (3.4.2.3).
        """
        new = self.apply(
            rr("example.org", dns.ALL_RECORDS, cls=dns.ANY, ttl=0),
            rr("example.org", dns.SOA, cls=dns.ANY, ttl=0),
            rr("example.org", dns.NS, cls=dns.ANY, ttl=0),
        )
        self.assertEqual(set(new.nodes[b"example.org"]), {dns.SOA, dns.NS})
        self.assertEqual(new.serial, 10)

    def test_lastNS(self) -> None:
        """The apex's last NS record is never deleted (3.4.2.4)."""
        new = self.apply(
            rr(
                "example.org", dns.NS, dns.Record_NS(b"ns.example.org"), cls=NONE, ttl=0
            ),
            rr(
                "example.org",
                dns.NS,
                dns.Record_NS(b"ns2.example.org"),
                cls=NONE,
                ttl=0,
            ),
        )
        self.assertEqual(
            [r.name.name for r in new.nodes[b"example.org"][dns.NS].records],
            [b"ns2.example.org"],
        )

    def test_cnameConflicts(self) -> None:
        """
        A CNAME added beside other data, or other data beside a CNAME, is
        ignored; a CNAME replaces a CNAME (3.4.2.2).
        """
        new = self.apply(
            rr("www.example.org", dns.CNAME, dns.Record_CNAME(b"ns.example.org")),
            rr("alias.example.org", dns.A, a("192.0.2.7")),
        )
        self.assertEqual(new.serial, 10)
        new = self.apply(
            rr("alias.example.org", dns.CNAME, dns.Record_CNAME(b"ns.example.org"))
        )
        self.assertEqual(
            new.nodes[b"alias.example.org"][dns.CNAME].records[0].name.name,
            b"ns.example.org",
        )

    def test_soa(self) -> None:
        """
        An SOA with a greater serial replaces the SOA; with a smaller one
        it is ignored (3.4.2.2).
        """
        soa = dns.Record_SOA(
            b"ns.example.org", b"h.example.org", serial=500, minimum=30
        )
        self.assertEqual(self.apply(rr("example.org", dns.SOA, soa)).serial, 500)
        soa = dns.Record_SOA(b"ns.example.org", b"h.example.org", serial=5)
        self.assertEqual(self.apply(rr("example.org", dns.SOA, soa)).serial, 10)

    def test_serialWraps(self) -> None:
        """An update after serial 2**32 - 1 gives serial 1 (RFC 1982)."""
        base = zone(ZONE.replace(" 10 3600", f" {2**32 - 1} 3600"))
        new = self.apply(rr("new.example.org", dns.A, a("192.0.2.9")), base=base)
        self.assertEqual(new.serial, 1)

    def test_prescan(self) -> None:
        """
        The update section is checked before anything is applied (3.4.1):
        a record outside the zone is NOTZONE, a meta type or an unknown
        class FORMERR.
        """
        for record, rcode in [
            (rr("x.example.net", dns.A, a("192.0.2.1")), NOTZONE),
            (rr("x.example.org", dns.AXFR, cls=dns.ANY, ttl=0), dns.EFORMAT),
            (rr("x.example.org", dns.A, a("192.0.2.1"), cls=dns.CH), dns.EFORMAT),
            (rr("x.example.org", dns.A, cls=dns.ANY, ttl=3), dns.EFORMAT),
        ]:
            result = prepare(
                zone(), [], [rr("ok.example.org", dns.A, a("192.0.2.1")), record]
            )
            self.assertEqual(result, (rcode, None))

    def test_delegation(self) -> None:
        """NS records added below the apex make a delegation."""
        new = self.apply(
            rr("sub.example.org", dns.NS, dns.Record_NS(b"ns.sub.example.org"))
        )
        self.assertIn(b"sub.example.org", new.cuts)


class DiffTests(SynchronousTestCase):
    """Diffs between versions, applied exactly."""

    def test_applyStrict(self) -> None:
        """
        A diff whose old serial is not the zone's, or that deletes a
        record the zone lacks, does not apply.
        """
        _, diff = prepare(
            zone(), [], [rr("www.example.org", dns.A, cls=dns.ANY, ttl=0)]
        )
        assert diff is not None
        new = applyDiff(zone(), diff)
        self.assertRaises(ZoneError, applyDiff, new, diff)

    def test_diffZones(self) -> None:
        """The diff of two versions turns the first into the second."""
        old = zone()
        new = zone(
            ZONE.replace(" 10 3600", " 12 3600").replace("192.0.2.2", "192.0.2.3")
        )
        diff = diffZones(old, new)
        self.assertEqual((diff.oldSerial, diff.newSerial), (10, 12))
        self.assertEqual(applyDiff(old, diff).records(), new.records())

    def test_indexKeptInStep(self) -> None:
        """
        Names, empty non-terminals and delegation points of an updated
        zone are what loading its records afresh gives, through adds,
        delegations and deletes.
        """
        from appnet.dns.update import applyDiffs, zoneFromRecords

        current = zone()
        diffs = []
        for updates in [
            [rr("a.b.c.example.org", dns.A, a("192.0.2.5"))],
            [rr("sub.example.org", dns.NS, dns.Record_NS(b"ns.example.org"))],
            [rr("a.b.c.example.org", dns.ALL_RECORDS, cls=dns.ANY, ttl=0)],
            [rr("sub.example.org", dns.NS, cls=dns.ANY, ttl=0)],
            [rr("x.y.example.org", dns.TXT, dns.Record_TXT(b"t"))],
        ]:
            _, diff = prepare(current, [], updates)
            assert diff is not None
            diffs.append(diff)
            current = applyDiff(current, diff)
            fresh = zoneFromRecords(current.records()[:-1], "fresh")
            self.assertEqual((current.names, current.cuts), (fresh.names, fresh.cuts))
        self.assertEqual(applyDiffs(zone(), diffs).records(), current.records())
