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
from twisted.trial.unittest import TestCase

from appnet.store.sqlite import SQLiteStore


class SweepTests(TestCase):
    async def test_strays(self) -> None:
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
        day = time.time() - 2 * 86400
        for name, when in (("old-stray", day), ("new-stray", None)):
            with open(os.path.join(queue, name), "wb") as f:
                f.write(b"left by a crash\r\n")
            if when is not None:
                os.utime(os.path.join(queue, name), (when, when))
        # The queued message's own file is as old: it stays all the same.
        [queued] = [n for n in os.listdir(queue) if "stray" not in n]
        os.utime(os.path.join(queue, queued), (day, day))

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        store = SQLiteStore.open(path, reactor)
        await store.start()
        self.addCleanup(store.stop)
        self.assertEqual(sorted(os.listdir(queue)), sorted([queued, "new-stray"]))
        body = await store.queue.openMessage(id)
        with body.open() as f:
            self.assertIn(b"kept", f.read())
        [line] = [e for e in logged if "queue files" in e.get("log_format", "")]
        self.assertEqual(line["count"], 1)
