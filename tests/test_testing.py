"""
Tests for L{appnet.testing}, the fixture users' suites start stacks with.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import TestCase

from appnet.store.memory import MemoryStore
from appnet.testing import ephemeralConfig, startStack
from tests.helpers import echoBuilder, storeThreads


class FixtureTests(TestCase):
    def test_ephemeralConfig(self) -> None:
        """Every service listens on an ephemeral loopback port."""
        config = ephemeralConfig("/tmp/x")
        self.assertEqual(config.smtp.listen, ("tcp:0:interface=127.0.0.1",))
        self.assertEqual(config.dns.listen, ("127.0.0.1", 0))
        self.assertEqual(config.data, "/tmp/x")

    async def test_startAndStop(self) -> None:
        """
        A started fixture reports addresses and a temporary data directory;
        stopping it removes the directory and the store's threads.
        """
        stack = await startStack(builders=[echoBuilder("imap")])
        root = stack.dataDir.root.path
        self.assertTrue(os.path.isdir(root))
        self.assertEqual(stack.address("imap")[0], "127.0.0.1")
        self.assertRaises(KeyError, stack.address, "smtp")
        await stack.stop()
        await stack.stop()  # idempotent
        self.assertFalse(os.path.exists(root))
        self.assertEqual(storeThreads(), [])

    async def test_memoryStore(self) -> None:
        """A fixture can run on the in-memory store."""
        store = MemoryStore()
        stack = await startStack(
            self, builders=[], store=store, users={"a@b.org": "pw-a-long"}
        )
        self.assertIs(stack.store, store)
        self.assertEqual(
            [u.address for u in await store.users.listUsers()], ["a@b.org"]
        )
