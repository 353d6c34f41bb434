"""
Tests for L{appnet.store._files}: staged message files.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.internet.threads import deferToThread
from twisted.python import threadable
from twisted.trial.unittest import TestCase

from appnet.store._files import MessageFiles


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
