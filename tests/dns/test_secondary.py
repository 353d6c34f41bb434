"""
Tests for L{appnet.dns.secondary}: SOA timers (RFC 1034 section 4.3.5)
on a C{Clock}, NOTIFY (RFC 1996 section 3), IXFR with its fallback, and
the saved copy.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.config import SecondaryZone
from appnet.dns import tsig
from appnet.dns.secondary import SecondaryCopy
from appnet.dns.transfer import Transfer, TransferFailed
from appnet.dns.update import prepare
from appnet.dns.zones import Authority, Zone
from tests.dns.test_update import ZONE, a, rr, zone

#: refresh 100s, retry 20s, expire 300s
TIMED = ZONE.replace("10 3600 900 604800 60", "10 100 20 300 60")
PRIMARY = ("127.0.0.2", 53)


def axfr(z: Zone) -> Transfer:
    records = z.records()
    return Transfer("AXFR", records[0], tuple(records[:-1]))


class FakePrimary:
    """Answers transfers from a queue; records each request."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.asked: list[int | None] = []

    def __call__(
        self,
        reactor: Any,
        server: Any,
        origin: bytes,
        serial: int | None,
        key: Any,
        timeout: float,
        bindAddress: Any = None,
    ) -> Deferred[Transfer]:
        self.asked.append(serial)
        result = self.results.pop(0)
        if isinstance(result, Exception):
            return fail(result)
        return succeed(result)


class TimerTests(SynchronousTestCase):
    """Refresh, retry and expire from the SOA."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.authority = Authority()
        self.primary = FakePrimary()
        self.copy = SecondaryCopy(
            self.clock,
            SecondaryZone("example.org", (PRIMARY,)),
            self.authority,
            tsig.Keyring(),
            None,
            transferer=self.primary,
        )
        self.first = zone(TIMED)

    def test_firstCopyByAXFR(self) -> None:
        """
        With no copy the first transfer is an AXFR; its zone is served;
        the next check comes after the SOA's refresh time, by IXFR from
        the serial held.
        """
        self.primary.results.append(axfr(self.first))
        self.copy.start()
        self.assertEqual(self.primary.asked, [None])
        self.assertEqual(self.authority.get(b"example.org").serial, 10)  # type: ignore[union-attr]
        self.primary.results.append(Transfer("UPTODATE", self.first.soa.headers[0]))
        self.clock.advance(99)
        self.assertEqual(self.primary.asked, [None])
        self.clock.advance(1)
        self.assertEqual(self.primary.asked, [None, 10])

    def test_retryThenExpire(self) -> None:
        """
        A failed refresh is tried again after the retry time; when no
        refresh succeeds within the expire time the zone is answered
        SERVFAIL; a later success serves it again.
        """
        self.primary.results.append(axfr(self.first))
        self.copy.start()
        self.primary.results.extend([TransferFailed(PRIMARY, "refused")] * 40)
        self.clock.advance(100)
        self.assertEqual(self.primary.asked, [None, 10, None])
        self.clock.advance(20)
        self.assertEqual(len(self.primary.asked), 5)
        answer = self.authority.answer(b"www.example.org", dns.A)
        assert answer is not None
        self.assertEqual(answer.rcode, dns.OK)
        self.clock.advance(180)
        answer = self.authority.answer(b"www.example.org", dns.A)
        assert answer is not None
        self.assertEqual(answer.rcode, dns.ESERVER)
        self.primary.results[:] = [axfr(zone(TIMED.replace(" 10 100", " 11 100")))]
        self.clock.advance(20)
        answer = self.authority.answer(b"www.example.org", dns.A)
        assert answer is not None
        self.assertEqual(answer.rcode, dns.OK)

    def test_notify(self) -> None:
        """
        A NOTIFY from a primary starts a refresh at once; from another
        address it is refused and nothing is asked. A change is passed
        on (to our own secondaries' notifier).
        """
        self.primary.results.append(axfr(self.first))
        self.copy.start()
        self.assertFalse(self.copy.notifiedBy("127.0.0.9", None))
        self.assertEqual(len(self.primary.asked), 1)
        _, diff = prepare(self.first, [], [rr("n.example.org", dns.A, a("192.0.2.7"))])
        assert diff is not None
        self.primary.results.append(Transfer("IXFR", diff.newSOA, diffs=(diff,)))
        told: list[tuple[bytes, int]] = []
        self.copy.changed = lambda origin, z: told.append((origin, z.serial))
        self.assertTrue(self.copy.notifiedBy("127.0.0.2", None))
        self.assertEqual(told, [(b"example.org", 11)])
        self.assertEqual(self.primary.asked, [None, 10])
        self.assertEqual(self.authority.get(b"example.org").serial, 11)  # type: ignore[union-attr]
        self.assertEqual(self.copy.journal.history, [diff])

    def test_ixfrFallsBackToAXFR(self) -> None:
        """
        An IXFR answered with an error is followed at once by an AXFR
        from the same primary (RFC 1995 section 4's fallback).
        """
        self.primary.results.append(axfr(self.first))
        self.copy.start()
        newer = zone(TIMED.replace(" 10 100", " 12 100"))
        self.primary.results.extend(
            [TransferFailed(PRIMARY, "the transfer was answered NOTIMP"), axfr(newer)]
        )
        self.copy.refresh()
        self.assertEqual(self.primary.asked, [None, 10, None])
        self.assertEqual(self.authority.get(b"example.org").serial, 12)  # type: ignore[union-attr]
        self.assertEqual(self.copy.kinds, ["AXFR", "AXFR"])

    def test_olderAXFRIgnored(self) -> None:
        """An AXFR of a serial not greater than the copy's changes nothing."""
        self.primary.results.append(axfr(self.first))
        self.copy.start()
        older = zone(TIMED.replace(" 10 100", " 9 100"))
        self.primary.results.extend([TransferFailed(PRIMARY, "x"), axfr(older)])
        self.copy.refresh()
        self.assertEqual(self.authority.get(b"example.org").serial, 10)  # type: ignore[union-attr]

    def test_badTransferKeepsCopy(self) -> None:
        """
        A transfer that fails midway (here: an IXFR whose diff does not
        apply, then an AXFR cut short) leaves the good copy served, and is
        retried.
        """
        self.primary.results.append(axfr(self.first))
        self.copy.start()
        _, diff = prepare(
            self.first, [], [rr("www.example.org", dns.A, cls=dns.ANY, ttl=0)]
        )
        assert diff is not None
        _, stale = prepare(
            zone(TIMED.replace(" 10 100", " 5 100")),
            [],
            [rr("n.example.org", dns.A, a("192.0.2.7"))],
        )
        assert stale is not None
        self.primary.results.append(Transfer("IXFR", diff.newSOA, diffs=(stale,)))
        self.primary.results.append(
            TransferFailed(PRIMARY, "the connection closed before the end")
        )
        self.copy.refresh()
        served = self.authority.get(b"example.org")
        assert served is not None
        self.assertEqual(served.serial, 10)
        self.assertIn(b"www.example.org", served.nodes)
        self.primary.results.append(Transfer("UPTODATE", self.first.soa.headers[0]))
        self.clock.advance(20)
        self.assertEqual(self.primary.asked, [None, 10, None, 10])


class SavedCopyTests(TestCase):
    """The copy is written to disk and served at once after a restart."""

    async def test_savedAndReloaded(self) -> None:
        """
        After a transfer the zone file is written; a new copy reads it
        and serves it before asking any primary.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "example.org.zone")
        primary = FakePrimary()
        primary.results.append(axfr(zone(TIMED)))
        copy = SecondaryCopy(
            reactor,
            SecondaryZone("example.org", (PRIMARY,)),
            Authority(),
            tsig.Keyring(),
            path,
            transferer=primary,
        )
        await copy.refresh()
        await copy.stop()
        self.assertTrue(os.path.exists(path))
        again = SecondaryCopy(
            reactor,
            SecondaryZone("example.org", (PRIMARY,)),
            Authority(),
            tsig.Keyring(),
            path,
        )
        again.load()
        assert again.zone is not None
        self.assertEqual(again.zone.records(), zone(TIMED).records())
