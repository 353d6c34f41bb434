"""
Tests for L{appnet.durable}: whole-file replacement.
"""

from __future__ import annotations

import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from appnet.durable import fsyncDirectory, writeDurably


class WriteDurablyTests(SynchronousTestCase):
    """
    L{writeDurably} replaces a file whole and leaves nothing beside it.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "f")

    def test_replaces(self) -> None:
        """The new content replaces the old; no temporary file is left."""
        writeDurably(self.path, b"old")
        writeDurably(self.path, b"new", syncDirectory=False)
        fsyncDirectory(self.directory)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"new")
        self.assertEqual(os.listdir(self.directory), ["f"])

    def test_mode(self) -> None:
        """C{mode} sets the permissions of the new file."""
        writeDurably(self.path, b"secret", mode=0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_failedWrite(self) -> None:
        """A write that fails leaves the old file and no temporary one."""
        writeDurably(self.path, b"old")
        self.assertRaises(TypeError, writeDurably, self.path, "not bytes")  # type: ignore[arg-type]
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), b"old")
        self.assertEqual(os.listdir(self.directory), ["f"])
