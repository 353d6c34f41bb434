"""
Tests for L{appnet.store.watching}: folder watchers and the poller.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from appnet.store.interfaces import Changes, FolderInfo
from appnet.store.watching import Delta, FolderWatcher, Key

ALICE = "alice@example.org"


def info(modseq: int) -> FolderInfo:
    return FolderInfo(ALICE, "INBOX", 1, 1, modseq, 0, 0, 0, True, 0, 1)


class PollerTests(SynchronousTestCase):
    """The poller notices other processes' changes and survives failures."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.modseq = 1
        self.failNext = 0
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def read(self, keys: Sequence[Key]) -> Deferred[Sequence[FolderInfo | None]]:
        if self.failNext:
            self.failNext -= 1
            return fail(OSError("database is locked"))
        return succeed([info(self.modseq) for _ in keys])

    def test_pollingSurvivesFailure(self) -> None:
        """
        A poll whose read fails is logged, and the next polls still run
        and report changes to the watcher.
        """
        watcher = FolderWatcher(self.read, self.clock, interval=2.0)
        heard: list[int] = []
        cancel = watcher.watch((ALICE, "INBOX"), lambda i: heard.append(i.modseq))
        self.addCleanup(cancel)
        self.failNext = 2
        self.modseq = 2
        self.clock.advance(2.0)
        self.clock.advance(2.0)
        self.assertEqual(heard, [])
        failures = [e for e in self.events if "log_failure" in e]
        self.assertEqual(len(failures), 2)
        for event in failures:
            event["log_failure"].trap(OSError)  # type: ignore[attr-defined]
        self.flushLoggedErrors(OSError)
        self.clock.advance(2.0)
        self.assertEqual(heard, [2])
        self.modseq = 3
        self.clock.advance(2.0)
        self.assertEqual(heard, [2, 3])

    def test_watchLearnsCurrentState(self) -> None:
        """
        The first poll after a watch begins reports nothing that happened
        before it; a later change is reported once.
        """
        watcher = FolderWatcher(self.read, self.clock, interval=1.0)
        heard: list[int] = []
        cancel = watcher.watch((ALICE, "INBOX"), lambda i: heard.append(i.modseq))
        self.clock.advance(1.0)
        self.assertEqual(heard, [])
        self.modseq = 5
        self.clock.advance(1.0)
        self.clock.advance(1.0)
        self.assertEqual(heard, [5])
        cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class FeedTests(SynchronousTestCase):
    """Feeds get this process's changes as they are, others as reads."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.modseq = 1
        self.reads = 0

    def read(self, keys: Sequence[Key]) -> Deferred[Sequence[FolderInfo | None]]:
        self.reads += 1
        return succeed([info(self.modseq) for _ in keys])

    def test_pushed(self) -> None:
        """
        A pushed change reaches feeds as it is, with no read; watchers
        of the folder get its state as after L{FolderWatcher.changed};
        the next poll does not report it again.
        """
        watcher = FolderWatcher(self.read, self.clock, interval=1.0)
        told: list[Delta] = []
        heard: list[int] = []
        key = (ALICE, "INBOX")
        stopFeed = watcher.feed(key, told.append)
        self.assertEqual(self.reads, 1)
        step = Delta(Changes(2, (), (7,)))
        self.modseq = 2
        watcher.pushed(key, step)
        self.assertEqual((told, self.reads), ([step], 1))
        stopWatch = watcher.watch(key, lambda i: heard.append(i.modseq))
        self.modseq = 3
        watcher.pushed(key, Delta(Changes(3)))
        self.assertEqual(heard, [3])
        self.clock.advance(1.0)
        self.assertEqual(len(told), 2)
        stopWatch()
        stopFeed()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_polledAsRead(self) -> None:
        """
        A change another process made (seen by polling) reaches feeds as
        a delta without changes: read them.
        """
        watcher = FolderWatcher(self.read, self.clock, interval=1.0)
        told: list[Delta] = []
        cancel = watcher.feed((ALICE, "INBOX"), told.append)
        self.addCleanup(cancel)
        self.modseq = 4
        self.clock.advance(1.0)
        self.assertEqual(told, [Delta()])
        watcher.changed({(ALICE, "INBOX")})
        self.assertEqual(told, [Delta()])
        self.modseq = 5
        watcher.changed({(ALICE, "INBOX")})
        self.assertEqual(told, [Delta(), Delta()])
