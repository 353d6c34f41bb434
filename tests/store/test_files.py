"""
Tests for L{appnet.store._files}: staged message files, and how a
placement's data is synced.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.internet.threads import deferToThread
from twisted.python import threadable
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.store._files import MessageFiles, StagedFile, Syncer, Syncs


class DiscardTests(TestCase):
    """
    A discarded staged file is closed at once; on the reactor thread its
    unlink goes to the thread pool given, elsewhere it happens at once.
    """

    def setUp(self) -> None:
        self.later: list[Callable[[], None]] = []
        self.files = MessageFiles(self.mktemp(), self.later.append)
        self.files.prepare()

    def spilled(self) -> str:
        staged = self.files.stage()
        staged.write(b"x" * (staged.MEMORY + 1))
        self.staged = staged
        return staged.path

    def test_reactorThreadHandsOver(self) -> None:
        """On the reactor thread the unlink is handed to the pool."""
        # Trial runs tests on the reactor's thread, known as such once the
        # reactor has run (not yet when this test comes first).
        threadable.registerAsIOThread()
        path = self.spilled()
        self.staged.discard()
        self.assertTrue(os.path.exists(path))
        [unlink] = self.later
        unlink()
        self.assertFalse(os.path.exists(path))
        self.staged.discard()
        self.assertEqual(len(self.later), 1)

    async def test_otherThreadAtOnce(self) -> None:
        """In a worker thread the unlink happens in the call itself."""
        path = self.spilled()
        await deferToThread(self.staged.discard)
        self.assertFalse(os.path.exists(path))
        self.assertEqual(self.later, [])

    def test_nothingToUnlink(self) -> None:
        """A message kept in memory, or consumed, has no file to remove."""
        staged = self.files.stage()
        staged.write(b"small")
        staged.discard()
        self.assertEqual(self.later, [])
        self.assertEqual(os.listdir(self.files.tmp), [])

    def test_writtenFromMemory(self) -> None:
        """
        A message written out from memory (no file object) is one file
        with every piece, and discarding it removes that file.
        """
        files = MessageFiles(self.mktemp())
        files.prepare()
        staged = files.stage()
        for i in range(100):
            staged.write(b"%d\r\n" % i)
        self.assertTrue(staged.writeOut())
        with open(staged.path, "rb") as f:
            self.assertEqual(f.read(), b"".join(b"%d\r\n" % i for i in range(100)))
        staged.discard()
        self.assertEqual(os.listdir(files.tmp), [])

    def test_withoutPool(self) -> None:
        """Without a pool the unlink happens at once."""
        files = MessageFiles(self.mktemp())
        files.prepare()
        staged = files.stage()
        staged.write(b"x" * (staged.MEMORY + 1))
        staged.discard()
        self.assertEqual(os.listdir(files.tmp), [])


class RecordingSyncer(Syncer):
    """Records how each file's data was synced."""

    def __init__(self) -> None:
        self.synced: list[tuple[str, str]] = []

    def data(self, path: str) -> None:
        self.synced.append(("path", os.path.basename(path)))

    def descriptor(self, fd: int, path: str) -> None:
        self.assertOpen(fd, path)
        self.synced.append(("descriptor", os.path.basename(path)))

    def assertOpen(self, fd: int, path: str) -> None:
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise AssertionError("not the file's descriptor")


class SyncThroughDescriptorTests(SynchronousTestCase):
    """
    A small message written out from memory by a placement is synced
    through the descriptor that wrote it (no second open), which is
    closed afterwards whatever happens; a spilled one is synced by path.
    """

    def setUp(self) -> None:
        self.files = MessageFiles(self.mktemp())
        self.files.prepare()
        self.fds = set(os.listdir("/proc/self/fd"))

    def openDescriptors(self) -> set[str]:
        return set(os.listdir("/proc/self/fd")) - self.fds

    def place(self, data: bytes) -> tuple[RecordingSyncer, list[str]]:
        staged = self.files.stage()
        staged.write(data)
        placement = self.files.placement(
            staged, [self.files.ownerDirectory("alice@example.org")], consume=True
        )
        syncs = Syncs()
        syncer = RecordingSyncer()
        try:
            placement.prepare(syncs)
            syncs.sync(syncer)
            names = placement.place(syncs)
        finally:
            syncs.close()
        self.assertTrue(staged.durable)
        return syncer, names

    def test_fromMemory(self) -> None:
        syncer, [name] = self.place(b"small\r\n")
        self.assertEqual(syncer.synced, [("descriptor", os.path.basename(name))])
        self.assertEqual(self.openDescriptors(), set())
        with open(self.files.absolute(name), "rb") as f:
            self.assertEqual(f.read(), b"small\r\n")

    def test_spilled(self) -> None:
        syncer, [name] = self.place(b"x" * (StagedFile.MEMORY + 1))
        self.assertEqual(syncer.synced, [("path", syncer.synced[0][1])])
        self.assertEqual(self.openDescriptors(), set())

    def test_closedOnFailure(self) -> None:
        """A sync that fails still closes the descriptor."""
        staged = self.files.stage()
        staged.write(b"small\r\n")
        placement = self.files.placement(
            staged, [self.files.ownerDirectory("alice@example.org")], consume=True
        )
        syncs = Syncs()

        class Failing(Syncer):
            def descriptor(self, fd: int, path: str) -> None:
                raise OSError(5, "I/O error")

        placement.prepare(syncs)
        self.assertEqual(len(self.openDescriptors()), 1)
        try:
            self.assertRaises(OSError, syncs.sync, Failing())
        finally:
            syncs.close()
        self.assertEqual(self.openDescriptors(), set())
        self.assertFalse(staged.durable)


class DirectoryCacheTests(SynchronousTestCase):
    """
    A message directory found already there is not looked for again; one
    removed by hand meanwhile fails one delivery (no file, no name), and
    the next one makes it again.
    """

    def setUp(self) -> None:
        self.files = MessageFiles(self.mktemp())
        self.files.prepare()
        self.owner = self.files.ownerDirectory("alice@example.org")

    def place(self, data: bytes) -> list[str]:
        staged = self.files.stage()
        staged.write(data)
        self.addCleanup(staged.discard)
        placement = self.files.placement(staged, [self.owner], consume=True)
        syncs = Syncs()
        try:
            placement.prepare(syncs)
            syncs.sync(Syncer())
            return placement.place(syncs)
        finally:
            syncs.close()

    def test_lookedForOnce(self) -> None:
        self.place(b"first\r\n")  # Made here: not remembered yet.
        self.place(b"second\r\n")  # Found: remembered.
        looked: list[str] = []
        self.patch(os.path, "isdir", lambda path: looked.append(path) or True)
        self.place(b"third\r\n")
        self.assertEqual(looked, [])
        self.assertEqual(len(os.listdir(self.files.absolute(self.owner))), 3)

    def test_removedByHand(self) -> None:
        self.place(b"first\r\n")
        self.place(b"second\r\n")
        directory = self.files.absolute(self.owner)
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
        self.assertRaises(FileNotFoundError, self.place, b"lost\r\n")
        [name] = self.place(b"again\r\n")
        with open(self.files.absolute(name), "rb") as f:
            self.assertEqual(f.read(), b"again\r\n")
        self.assertEqual(os.listdir(self.files.tmp), [])
