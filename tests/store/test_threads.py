"""
Tests for L{appnet.store.threads} and the store's use of its own pools.
"""

from __future__ import annotations

import os
import threading

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from appnet.store import _files
from appnet.store.interfaces import DeliveryTarget
from appnet.store.sqlite import SQLiteStore
from appnet.store.threads import Threads


class ThreadsTests(TestCase):
    """A named pool of bounded size, started and stopped by its owner."""

    async def test_sizeAndName(self) -> None:
        """
        Work runs in threads named for the pool, never more at once than
        its size; stop finishes and joins them.
        """
        threads = Threads(reactor, "test-pool", 2)
        threads.start()
        self.addCleanup(threads.stop)
        lock = threading.Lock()
        running = [0, 0]  # now, most
        names: set[str] = set()
        gate = threading.Event()

        def work() -> None:
            with lock:
                running[0] += 1
                running[1] = max(running)
                names.add(threading.current_thread().name)
            gate.wait(5)
            with lock:
                running[0] -= 1

        jobs = [threads.run(work) for _ in range(5)]
        reactor.callLater(0.05, gate.set)  # type: ignore[attr-defined]
        await gatherResults(jobs)
        self.assertEqual(running[1], 2)
        self.assertTrue(all("test-pool" in n for n in names), names)
        await threads.stop()
        self.assertFalse([t for t in threading.enumerate() if "test-pool" in t.name])

    async def test_storeUsesItsPool(self) -> None:
        """
        The SQLite store has its own file threads (sized as asked), and
        files a delivered message in its own writer thread, not in the
        reactor's default pool; it stops them.
        """
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        store = SQLiteStore.open(
            os.path.join(root, "store.sqlite"), reactor, fileThreads=3
        )
        self.assertEqual(store.fileThreads.size, 3)
        store.mail.inlineLimit = 0  # A file even for a small message.
        await store.start()
        self.addCleanup(store.stop)
        seen: list[str] = []
        original = _files.Syncer.descriptor

        def spy(syncer: _files.Syncer, fd: int, path: str) -> None:
            seen.append(threading.current_thread().name)
            original(syncer, fd, path)

        # A small message is synced through the descriptor that wrote it.
        self.patch(_files.Syncer, "descriptor", spy)
        staged = store.mail.stage()
        staged.write(b"hello\r\n")
        await store.mail.deliver(staged, [DeliveryTarget("alice@example.org")])
        staged.discard()
        await store.stop()
        self.assertTrue(seen)
        # The writer thread, or file threads syncing beside it.
        self.assertTrue(
            all("appnet-store-write" in n or "appnet-store-files" in n for n in seen),
            seen,
        )
