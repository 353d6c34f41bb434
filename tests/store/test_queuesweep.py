"""
Tests for the queue's start-up sweep: files no queued message names (left
by a crash between a row's removal and its file's, or between a file's
placing and its row's commit) are removed when the store starts again.
"""

from __future__ import annotations

import os
import time

from twisted.internet import reactor
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.store._files import MessageFiles
from appnet.store.sqlite import SQLiteStore


class SweepTests(TestCase):
    async def test_strays(self) -> None:
        """
        At start-up, only files nothing names and unchanged for a day go
        (here, none: all are new); a sweep with no grace takes the stray
        and keeps the queued message's file.
        """
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        path = os.path.join(root, "store.sqlite")
        store = SQLiteStore.open(path, reactor)
        await store.start()
        staged = store.mail.stage()
        staged.write(b"Subject: queued\r\n\r\nkept\r\n")
        id = await store.queue.enqueue(staged, "a@b.org", ["x@remote.example"])
        staged.discard()
        await store.stop()

        queue = os.path.join(root, "mail", "queue")
        [queued] = os.listdir(queue)
        with open(os.path.join(queue, "stray"), "wb") as f:
            f.write(b"left by a crash\r\n")

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        store = SQLiteStore.open(path, reactor)
        await store.start()
        self.addCleanup(store.stop)
        self.assertEqual(sorted(os.listdir(queue)), sorted([queued, "stray"]))
        self.assertEqual(await store.queue.sweep(staleAfter=-60), ["queue/stray"])
        self.assertEqual(os.listdir(queue), [queued])
        body = await store.queue.openMessage(id)
        with body.open() as f:
            self.assertIn(b"kept", f.read())
        [line] = [e for e in logged if "queue files" in e.get("log_format", "")]
        self.assertEqual(line["count"], 1)


class ChangeTimeTests(SynchronousTestCase):
    """
    Whether a file counts as left behind goes by its inode's change time:
    a new hard link to an old file (a message copied or moved while the
    files are looked at, its row not yet committed) is not taken for one.
    """

    def test_newLinkToOldFile(self) -> None:
        files = MessageFiles(self.mktemp())
        files.prepare()
        old = os.path.join(files.queue, "old")
        with open(old, "wb") as f:
            f.write(b"written long ago\r\n")
        long = time.time() - 10 * 86400
        os.utime(old, (long, long))
        os.link(old, os.path.join(files.queue, "linked"))
        os.unlink(old)
        self.assertEqual(files.strays("queue", set(), time.time() - 86400), [])
        self.assertEqual(files.audit(set(), time.time() - 86400), (1, [], []))
