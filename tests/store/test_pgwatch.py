"""
Watchers of the PostgreSQL mail store against reads that finish in any
order: the database is a fake whose calls the test answers one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appnet.store.interfaces import INBOX, FolderInfo
from appnet.store.pg.mail import PGMailStore

ALICE = "alice@example.org"


class HeldDatabase:
    """Each C{run} gives a Deferred the test fires."""

    def __init__(self) -> None:
        self.calls: list[Deferred[Any]] = []

    def run(self, f: Callable[..., Any]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append(d)
        return d


def info(modseq: int, messages: int) -> FolderInfo:
    return FolderInfo(ALICE, INBOX, 1, messages + 1, modseq, messages=messages)


class WatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.db = HeldDatabase()
        self.store = PGMailStore(self.db, Clock())  # type: ignore[arg-type]
        self.heard: list[FolderInfo] = []
        self.store.watch(ALICE, INBOX, self.heard.append)

    def notify(self) -> Deferred[Any]:
        """A NOTIFY naming the folder; the read it starts."""
        self.store.heard(f"{ALICE}\n{INBOX}")
        return self.db.calls[-1]

    def test_noReadToWatch(self) -> None:
        """Watching reads nothing: no baseline that could swallow a change."""
        self.assertEqual(self.db.calls, [])

    def test_changesReportedOnce(self) -> None:
        """Each change (a higher modseq) is reported once."""
        self.notify().callback(info(6, 2))
        self.notify().callback(info(6, 2))
        self.notify().callback(info(7, 3))
        self.assertEqual([i.messages for i in self.heard], [2, 3])

    def test_changeWhileNotListening(self) -> None:
        """
        Mail delivered after the watch while the listener was down (its
        NOTIFY lost) is reported by the catch-up once it listens again.
        """
        self.store.catchUp()
        self.db.calls[-1].callback(info(6, 2))
        self.assertEqual([i.messages for i in self.heard], [2])

    def test_readsOutOfOrder(self) -> None:
        """A read answering after a newer one reports nothing older."""
        first, second = self.notify(), self.notify()
        second.callback(info(7, 3))
        first.callback(info(6, 2))
        self.assertEqual([i.messages for i in self.heard], [3])

    def test_otherFolder(self) -> None:
        """A change to a folder nobody watches reads nothing."""
        self.store.heard(f"{ALICE}\nArchive")
        self.assertEqual(self.db.calls, [])
