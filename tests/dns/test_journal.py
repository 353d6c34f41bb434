"""
Tests for L{appnet.dns.journal}: durable diffs, roll-forward at load
time as BIND does it, and group commit.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.dns.errors import ZoneError
from appnet.dns.journal import Journal, JournalWriter, rollForward
from appnet.dns.records import recordText
from appnet.dns.update import Diff, applyDiff, applyDiffs, prepare
from appnet.dns.zones import Zone
from tests.dns.test_update import ZONE, a, rr, zone


def changes(base: Zone, count: int) -> tuple[Zone, list[Diff]]:
    diffs = []
    for i in range(count):
        _, diff = prepare(base, [], [rr(f"n{i}.example.org", dns.A, a("192.0.2.9"))])
        assert diff is not None
        diffs.append(diff)
        base = applyDiff(base, diff)
    return base, diffs


class JournalFileTests(SynchronousTestCase):
    """The journal file."""

    def setUp(self) -> None:
        os.makedirs(self.mktemp())
        self.path = os.path.join(self.mktemp(), "example.org.zone.jnl")
        os.makedirs(os.path.dirname(self.path))

    def test_roundTrip(self) -> None:
        """Diffs written are read back equal, in order, across appends."""
        _, diffs = changes(zone(), 3)
        journal = Journal(self.path)
        journal.write(diffs[:1])
        journal.write(diffs[1:])
        again = Journal(self.path).read()
        self.assertEqual(
            [
                (d.oldSerial, d.newSerial, [recordText(r) for r in d.added])
                for d in again
            ],
            [
                (d.oldSerial, d.newSerial, [recordText(r) for r in d.added])
                for d in diffs
            ],
        )

    def test_tornTail(self) -> None:
        """
        A last entry cut short (a crash mid-write: it was never
        acknowledged) is dropped and cut off the file, so the next
        append follows the last whole entry.
        """
        _, diffs = changes(zone(), 3)
        journal = Journal(self.path)
        journal.write(diffs[:2])
        size = os.path.getsize(self.path)
        journal.write(diffs[2:])
        with open(self.path, "r+b") as f:
            f.truncate(size + 7)
        self.assertEqual(len(Journal(self.path).read()), 2)
        self.assertEqual(os.path.getsize(self.path), size)
        Journal(self.path).write(diffs[2:])
        self.assertEqual(len(Journal(self.path).read()), 3)

    def test_notAJournal(self) -> None:
        """A file that is not a journal is a ZoneError naming it."""
        with open(self.path, "wb") as f:
            f.write(b"hello")
        with self.assertRaises(ZoneError) as caught:
            Journal(self.path).read()
        self.assertIn(self.path, str(caught.exception))


class RollForwardTests(SynchronousTestCase):
    """Loading a zone file with a journal, as BIND does."""

    def journal(self, diffs: list[Diff]) -> Journal:
        journal = Journal("example.org.zone.jnl")
        journal.history = list(diffs)
        return journal

    def test_fromFileSerial(self) -> None:
        """The diffs from the file's serial on are applied."""
        new, diffs = changes(zone(), 3)
        self.assertEqual(
            rollForward(zone(), self.journal(diffs)).records(), new.records()
        )

    def test_partly(self) -> None:
        """
        A file already holding some of the changes (written out at serial
        11) gets only the later ones.
        """
        new, diffs = changes(zone(), 3)
        middle = applyDiff(zone(), diffs[0])
        self.assertEqual(
            rollForward(middle, self.journal(diffs)).records(), new.records()
        )

    def test_upToDate(self) -> None:
        """A file at the journal's last serial is used as it is."""
        new, diffs = changes(zone(), 2)
        self.assertIs(rollForward(new, self.journal(diffs)), new)

    def test_editedByHand(self) -> None:
        """
        A file edited by hand with its serial raised is out of sync with
        the journal: the zone is not loaded, with one line naming the
        journal (BIND's "journal out of sync with zone"), so no update is
        lost silently.
        """
        _, diffs = changes(zone(), 2)
        edited = zone(ZONE.replace(" 10 3600", " 20 3600"))
        with self.assertRaises(ZoneError) as caught:
            rollForward(edited, self.journal(diffs))
        text = str(caught.exception)
        self.assertIn("example.org.zone.jnl", text)
        self.assertIn("out of sync", text)
        self.assertNotIn("\n", text)

    def test_editedWithoutSerial(self) -> None:
        """
        A hand edit that kept the serial but removed a record a journal
        entry deletes fails the roll-forward, naming the journal.
        """
        _, diffs = changes(zone(), 1)
        _, delete = prepare(
            zone(), [], [rr("www.example.org", dns.A, cls=dns.ANY, ttl=0)]
        )
        assert delete is not None
        edited = zone(ZONE.replace("www    A     192.0.2.1\n", ""))
        with self.assertRaises(ZoneError) as caught:
            rollForward(edited, self.journal([delete]))
        self.assertIn("rollforward failed", str(caught.exception))


class GroupCommitTests(TestCase):
    """L{JournalWriter}: one fsync for every diff ready at that moment."""

    async def test_batches(self) -> None:
        """
        Diffs appended while a write runs go together in the next write;
        each Deferred fires only once its diff is in the file.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        journal = Journal(os.path.join(directory, "z.jnl"))
        writes: list[int] = []
        original = journal.write

        def counting(diffs: list[Diff]) -> None:
            writes.append(len(diffs))
            original(diffs)

        journal.write = counting  # type: ignore[method-assign]
        writer = JournalWriter(reactor, journal)
        _, diffs = changes(zone(), 20)
        results = [writer.append(d) for d in diffs]
        await DeferredList(results, fireOnOneErrback=True)
        self.assertEqual(sum(writes), 20)
        self.assertLess(len(writes), 20)
        self.assertEqual(writes[0], 1)
        self.assertEqual(len(Journal(journal.path).read()), 20)
        self.assertEqual(len(journal.history), 20)

    async def test_compaction(self) -> None:
        """
        Compaction writes the zone as served to the zone file and keeps
        only the newest entries; the pair loads as the same zone, and
        appends after it follow on.
        """
        from appnet.dns.zones import loadZone

        directory = self.mktemp()
        os.makedirs(directory)
        zonePath = os.path.join(directory, "example.org.zone")
        with open(zonePath, "w") as f:
            f.write(ZONE)
        journal = Journal(zonePath + ".jnl")
        writer = JournalWriter(reactor, journal)
        final, diffs = changes(zone(), 12)
        middle = applyDiffs(zone(), diffs[:10])
        for diff in diffs[:10]:
            writer.append(diff)
        compacted = writer.compact(middle, 4)
        self.assertTrue(writer.compacting)
        await DeferredList([*(writer.append(d) for d in diffs[10:]), compacted])
        self.assertFalse(writer.compacting)
        self.assertEqual(
            [d.newSerial for d in journal.history], [17, 18, 19, 20, 21, 22]
        )
        loaded = loadZone(zonePath)
        self.assertEqual(loaded.serial, 20)
        again = Journal(journal.path)
        again.read()
        self.assertEqual(
            [recordText(r) for r in rollForward(loaded, again).records()],
            [recordText(r) for r in final.records()],
        )
