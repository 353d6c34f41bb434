"""
C{appnet queue}: list, show, retry, hold, release and delete, as a
process on a data directory holding a queue.
"""

from __future__ import annotations

import os
import time

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from appnet.store.interfaces import RecipientState, RecipientUpdate
from appnet.store.sqlite import SQLiteStore
from tests.process import Outcome, run


class QueueCommandTests(TestCase):
    """
    The queue commands change the store as they say, and fail in one
    line.
    """

    timeout = 60

    def setUp(self) -> None:
        self.cwd = os.path.abspath(self.mktemp())
        self.data = os.path.join(self.cwd, "data")
        os.makedirs(self.data)

    def appnet(self, *args: str) -> Outcome:
        return run(  # type: ignore[return-value]
            ["-m", "appnet", *args], self.cwd, env={"APPNET_DATA": self.data}
        )

    async def store(self) -> SQLiteStore:
        store = SQLiteStore.open(os.path.join(self.data, "store.sqlite"), reactor)
        await store.start()
        self.addCleanup(store.stop)
        return store

    async def queue(self, store: SQLiteStore, recipients: list[str]) -> int:
        staged = store.mail.stage()
        staged.write(b"Subject: queued\r\nFrom: alice@crepes.fr\r\n\r\nthe body\r\n")
        try:
            id: int = await store.queue.enqueue(staged, "alice@crepes.fr", recipients)
        finally:
            staged.discard()
        return id

    async def test_commands(self) -> None:
        """
        list shows waiting recipients with their last reply; show gives
        the envelope and header (--body the message); hold, release,
        retry and delete do what they say.
        """
        store = await self.store()
        first = await self.queue(store, ["bob@hamburger.edu", "carol@x.example"])
        second = await self.queue(store, ["dave@y.example"])
        now = (await store.queue.get(first)).nextAttempt
        await store.queue.claim("test:1", now, 60, 10)
        await store.queue.record(
            first,
            [
                RecipientUpdate(
                    "bob@hamburger.edu", RecipientState.DEFERRED, "451 4.4.1 refused"
                ),
                RecipientUpdate("carol@x.example", RecipientState.DELIVERED, "250 ok"),
            ],
        )
        await store.queue.settle(first, "test:1", now + 3600, "451 4.4.1 refused")
        await store.queue.settle(second, "test:1", now + 3600, None)

        listed = await self.appnet("queue", "list")
        self.assertEqual(listed.code, 0, listed.err)
        self.assertIn("<alice@crepes.fr>", listed.out)
        self.assertIn("deferred  <bob@hamburger.edu>  451 4.4.1 refused", listed.out)
        self.assertNotIn("carol@x.example", listed.out)
        self.assertIn("-- 2 messages, 2 recipient(s) waiting", listed.out)

        shown = await self.appnet("queue", "show", str(first))
        self.assertEqual(shown.code, 0, shown.err)
        self.assertIn("attempts:     1", shown.out)
        self.assertIn("last error:   451 4.4.1 refused", shown.out)
        self.assertIn("<carol@x.example> delivered", shown.out)
        self.assertIn("Subject: queued", shown.out)
        self.assertNotIn("the body", shown.out)
        body = await self.appnet("queue", "show", str(first), "--body")
        self.assertIn("the body", body.out)

        held = await self.appnet("queue", "hold", str(first))
        self.assertEqual(held.out.strip(), f"held {first}")
        self.assertTrue((await store.queue.get(first)).held)
        self.assertIn("[held]", (await self.appnet("queue", "list")).out)
        released = await self.appnet("queue", "release", str(first))
        self.assertEqual(released.out.strip(), f"released {first}")
        self.assertFalse((await store.queue.get(first)).held)

        retried = await self.appnet("queue", "retry")
        self.assertEqual(retried.out.strip(), "2 messages due now")
        self.assertLess((await store.queue.get(second)).nextAttempt, now + 3600)

        deleted = await self.appnet("queue", "delete", str(second))
        self.assertEqual(deleted.out.strip(), f"deleted {second}")
        self.assertIsNone(await store.queue.get(second))

    async def test_retryOne(self) -> None:
        """
        retry ID makes that deferred message due now, so the next claim
        takes it, with its attempts and recipients' states kept; the
        other deferred message keeps its schedule.
        """
        store = await self.store()
        first = await self.queue(store, ["bob@hamburger.edu"])
        second = await self.queue(store, ["carol@x.example"])
        now = (await store.queue.get(first)).nextAttempt
        later = now + 3600
        await store.queue.claim("test:1", now, 60, 10)
        for id, address in ((first, "bob@hamburger.edu"), (second, "carol@x.example")):
            refused = "451 4.4.1 refused"
            await store.queue.record(
                id, [RecipientUpdate(address, RecipientState.DEFERRED, refused)]
            )
            await store.queue.settle(id, "test:1", later, refused)
        self.assertEqual(await store.queue.claim("test:2", time.time(), 60, 10), [])

        retried = await self.appnet("queue", "retry", str(first))
        self.assertEqual(retried.code, 0, retried.err)
        self.assertEqual(retried.out.strip(), "1 message due now")

        self.assertLessEqual((await store.queue.get(first)).nextAttempt, time.time())
        self.assertEqual((await store.queue.get(second)).nextAttempt, later)
        [claimed] = await store.queue.claim("test:2", time.time(), 60, 10)
        self.assertEqual(claimed.id, first)
        self.assertEqual(claimed.attempts, 1)
        self.assertEqual(claimed.lastError, "451 4.4.1 refused")
        self.assertEqual(
            [(r.address, r.state) for r in claimed.recipients],
            [("bob@hamburger.edu", RecipientState.DEFERRED)],
        )

    async def test_errors(self) -> None:
        """Unknown or malformed ids fail with one line and status 1."""
        await self.store()
        empty = await self.appnet("queue", "list")
        self.assertEqual(empty.out.strip(), "queue is empty")
        for args in (["show", "7"], ["delete", "7"], ["hold", "x"], ["retry", "7"]):
            outcome = await self.appnet("queue", *args)
            self.assertEqual(outcome.code, 1, args)
            self.assertEqual(len(outcome.err.strip().splitlines()), 1, outcome.err)
            self.assertTrue(outcome.err.startswith("appnet: "), outcome.err)
        usage = await self.appnet("queue")
        self.assertEqual(usage.code, 2)
