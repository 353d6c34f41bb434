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
        [self.baseline] = self.db.calls

    def test_changeAfterBaseline(self) -> None:
        """A change with a higher modseq than the baseline is reported once."""
        self.baseline.callback(info(5, 1))
        self.store.heard(f"{ALICE}\n{INBOX}")
        self.db.calls[-1].callback(info(6, 2))
        self.store.heard(f"{ALICE}\n{INBOX}")
        self.db.calls[-1].callback(info(6, 2))
        self.assertEqual([i.messages for i in self.heard], [2])

    def test_changeReadIntoBaseline(self) -> None:
        """
        The baseline read finishing after a change it already holds (its
        notification's read answered first, or as here last): the change
        is still reported, once.
        """
        self.store.heard(f"{ALICE}\n{INBOX}")
        notified = self.db.calls[-1]
        self.baseline.callback(info(6, 2))
        notified.callback(info(6, 2))
        self.assertEqual([i.messages for i in self.heard], [2])

    def test_notificationReadFirst(self) -> None:
        """The notification's read answering before the baseline's: reported."""
        self.store.heard(f"{ALICE}\n{INBOX}")
        self.db.calls[-1].callback(info(6, 2))
        self.baseline.callback(info(6, 2))
        self.assertEqual([i.messages for i in self.heard], [2])

    def test_catchUpDuringBaseline(self) -> None:
        """A catch-up after a reconnection counts as a change heard."""
        self.store.catchUp()
        caught = self.db.calls[-1]
        self.baseline.callback(info(6, 2))
        caught.callback(info(6, 2))
        self.assertEqual([i.messages for i in self.heard], [2])

    def test_baselineFailed(self) -> None:
        """
        Without a baseline (its read failed, logged) the next change heard
        is reported.
        """
        self.baseline.errback(RuntimeError("connection lost"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.store.heard(f"{ALICE}\n{INBOX}")
        self.db.calls[-1].callback(info(6, 2))
        self.assertEqual([i.messages for i in self.heard], [2])
