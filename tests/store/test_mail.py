"""
Tests for the mail stores and the outgoing queue: one contract, run against
the in-memory fake and against SQLite, plus SQLite's own duties (files on
disk, durability, watching across store instances).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from appnet.errors import FolderExists, NoSuchFolder, NoSuchMessage, QuotaExceeded
from appnet.store.interfaces import (
    INBOX,
    Changes,
    DeliveryTarget,
    FolderInfo,
    IMailStore,
    IQueueStore,
    IStagedMessage,
    Notice,
    RecipientState,
    RecipientUpdate,
)
from appnet.store.memory import MemoryStore
from appnet.store.sqlite import SQLiteStore, migrateFile
from appnet.store.watching import Delta, IFolderFeed
from tests import pgserver

ALICE = "alice@example.org"
BOB = "bob@example.org"


class Contract:
    """
    Shared by the mail and queue contracts: a C{makeStore} giving an
    L{IStore}, and a helper that stages bytes.
    """

    async def makeStore(self) -> Any:
        raise NotImplementedError

    def staged(self, store: Any, data: bytes) -> IStagedMessage:
        staged: IStagedMessage = store.mail.stage()
        staged.write(data)
        self.addCleanup(staged.discard)
        return staged

    async def deliver(
        self, store: Any, data: bytes, *targets: DeliveryTarget, date: float = 0
    ) -> list[int]:
        staged = self.staged(store, data)
        return list(await store.mail.deliver(staged, list(targets), date or None))

    async def body(self, store: Any, owner: str, folder: str, uid: int) -> bytes:
        message = await store.mail.openMessage(owner, folder, uid)
        with message.open() as f:
            data: bytes = f.read()
        return data


class MailStoreContract(Contract):
    """
    What every L{IMailStore} does.
    """

    async def test_newestFirst(self) -> None:
        """
        Pages of a folder come newest first (internal date, then UID),
        cut by offset and limit; an INBOX not made yet is empty.
        """
        store = await self.makeStore()
        self.assertEqual(list(await store.mail.newestFirst(ALICE, INBOX, 0, 10)), [])
        for date in (300.0, 100.0, 300.0, 200.0):
            await self.deliver(store, b"m\r\n", DeliveryTarget(ALICE), date=date)
        first = await store.mail.newestFirst(ALICE, INBOX, 0, 3)
        self.assertEqual([i.uid for i in first], [3, 1, 4])
        rest = await store.mail.newestFirst(ALICE, INBOX, 3, 3)
        self.assertEqual([(i.uid, i.internalDate) for i in rest], [(2, 100.0)])

    async def test_prefix(self) -> None:
        """
        A prefix given to deliver (the Return-Path line) is read before
        the staged bytes, counted in the size, and kept by copy and move.
        """
        store = await self.makeStore()
        staged = self.staged(store, b"Subject: hi\r\n\r\nbody\r\n")
        prefix = b"Return-Path: <bob@example.org>\r\n"
        [uid] = await store.mail.deliver(
            staged, [DeliveryTarget(ALICE)], None, prefix=prefix
        )
        whole = prefix + b"Subject: hi\r\n\r\nbody\r\n"
        self.assertEqual(await self.body(store, ALICE, INBOX, uid), whole)
        [info] = await store.mail.listMessages(ALICE)
        self.assertEqual(info.size, len(whole))
        body = (await store.mail.openMessages(ALICE, INBOX, [uid]))[uid]
        self.assertEqual(body.size, len(whole))
        with body.open() as f:
            f.seek(10)
            self.assertEqual(f.read(20), whole[10:30])
            f.seek(len(prefix) + 3)
            self.assertEqual(f.read(), whole[len(prefix) + 3 :])
            f.seek(2)
            self.assertEqual(f.readline(), whole[2 : len(prefix)])
        await store.mail.createFolder(ALICE, "Kept")
        mapping = await store.mail.copy(ALICE, INBOX, [uid], "Kept")
        self.assertEqual(await self.body(store, ALICE, "Kept", mapping[uid]), whole)
        await store.mail.createFolder(ALICE, "Moved")
        moved = await store.mail.move(ALICE, INBOX, [uid], "Moved")
        self.assertEqual(await self.body(store, ALICE, "Moved", moved[uid]), whole)
        self.assertEqual((await store.mail.usage(ALICE)).bytes, 2 * len(whole))

    async def test_interface(self) -> None:
        """The mail store and its staged messages provide their interfaces."""
        store = await self.makeStore()
        self.assertTrue(verifyObject(IMailStore, store.mail))
        self.assertTrue(verifyObject(IStagedMessage, store.mail.stage()))

    async def test_inboxOnFirstUse(self) -> None:
        """Every account has an empty INBOX from its first use."""
        store = await self.makeStore()
        info = await store.mail.folder(ALICE)
        self.assertEqual(
            (info.name, info.uidNext, info.messages, info.size), (INBOX, 1, 0, 0)
        )
        self.assertGreater(info.uidValidity, 0)
        again = await store.mail.folder(ALICE, "inbox")
        self.assertEqual(again.uidValidity, info.uidValidity)

    async def test_deliverAndRead(self) -> None:
        """
        A delivered message gets the next UID in each target folder; its
        bytes, size, flags and internal date read back.
        """
        store = await self.makeStore()
        data = b"Subject: hi\r\n\r\nhello\r\n"
        uids = await self.deliver(
            store,
            data,
            DeliveryTarget(ALICE),
            DeliveryTarget(BOB, flags=frozenset({"\\Seen"})),
            date=1000.0,
        )
        self.assertEqual(uids, [1, 1])
        uids = await self.deliver(store, b"second\r\n", DeliveryTarget(ALICE))
        self.assertEqual(uids, [2])
        self.assertEqual(await self.body(store, ALICE, INBOX, 1), data)
        self.assertEqual(await self.body(store, BOB, INBOX, 1), data)
        listed = await store.mail.listMessages(ALICE)
        self.assertEqual([(m.uid, m.size) for m in listed], [(1, len(data)), (2, 8)])
        self.assertEqual(listed[0].internalDate, 1000.0)
        bob = await store.mail.listMessages(BOB)
        self.assertEqual(bob[0].flags, frozenset({"\\Seen"}))
        info = await store.mail.folder(ALICE)
        self.assertEqual(
            (info.messages, info.unseen, info.size, info.uidNext),
            (2, 2, len(data) + 8, 3),
        )
        self.assertEqual((await store.mail.folder(BOB)).unseen, 0)

    async def test_listSome(self) -> None:
        """Listing by UID returns the existing ones in order."""
        store = await self.makeStore()
        for _ in range(5):
            await self.deliver(store, b"x\r\n", DeliveryTarget(ALICE))
        listed = await store.mail.listMessages(ALICE, INBOX, [4, 2, 99, 2])
        self.assertEqual([m.uid for m in listed], [2, 4])

    async def test_missingMessage(self) -> None:
        """Opening an unknown UID fails with NoSuchMessage."""
        store = await self.makeStore()
        with self.assertRaises(NoSuchMessage):
            await store.mail.openMessage(ALICE, INBOX, 7)

    async def test_quota(self) -> None:
        """
        A delivery that would take an owner past its quota fails whole:
        no target gets the message.
        """
        store = await self.makeStore()
        await self.deliver(store, b"a" * 60, DeliveryTarget(ALICE, quota=100))
        with self.assertRaises(QuotaExceeded) as caught:
            await self.deliver(
                store,
                b"b" * 60,
                DeliveryTarget(BOB, quota=100),
                DeliveryTarget(ALICE, quota=100),
            )
        self.assertEqual(caught.exception.owner, ALICE)
        self.assertEqual(await store.mail.listMessages(BOB), [])
        usage = await store.mail.usage(ALICE)
        self.assertEqual((usage.bytes, usage.messages), (60, 1))
        await self.deliver(store, b"c" * 40, DeliveryTarget(ALICE, quota=100))
        self.assertEqual((await store.mail.usage(ALICE)).bytes, 100)

    async def test_folders(self) -> None:
        """
        Folders are made, listed INBOX first, renamed and deleted; names
        other than INBOX must exist to be used.
        """
        store = await self.makeStore()
        sent = await store.mail.createFolder(ALICE, "Sent")
        self.assertEqual(sent.uidNext, 1)
        await store.mail.createFolder(ALICE, "Archive")
        with self.assertRaises(FolderExists):
            await store.mail.createFolder(ALICE, "Sent")
        names = [f.name for f in await store.mail.listFolders(ALICE)]
        self.assertEqual(names, [INBOX, "Archive", "Sent"])
        with self.assertRaises(NoSuchFolder):
            await store.mail.folder(ALICE, "Drafts")
        with self.assertRaises(NoSuchFolder):
            await self.deliver(store, b"x", DeliveryTarget(ALICE, "Drafts"))
        await self.deliver(store, b"x\r\n", DeliveryTarget(ALICE, "Sent"))
        await store.mail.renameFolder(ALICE, "Sent", "Sent Items")
        renamed = await store.mail.folder(ALICE, "Sent Items")
        self.assertEqual((renamed.uidValidity, renamed.messages), (sent.uidValidity, 1))
        await store.mail.deleteFolder(ALICE, "Sent Items")
        self.assertEqual((await store.mail.usage(ALICE)).messages, 0)
        await store.mail.createFolder(ALICE, "Sent Items")
        recreated = await store.mail.folder(ALICE, "Sent Items")
        self.assertGreater(recreated.uidValidity, sent.uidValidity)

    async def test_renameInbox(self) -> None:
        """Renaming INBOX moves its messages and leaves it empty."""
        store = await self.makeStore()
        await self.deliver(store, b"x\r\n", DeliveryTarget(ALICE))
        await store.mail.renameFolder(ALICE, INBOX, "Old")
        self.assertEqual((await store.mail.folder(ALICE)).messages, 0)
        self.assertEqual(await self.body(store, ALICE, "Old", 1), b"x\r\n")
        uids = await self.deliver(store, b"y\r\n", DeliveryTarget(ALICE))
        self.assertEqual(uids, [2])

    async def test_flags(self) -> None:
        """Flags are added, removed and replaced; only changes are returned."""
        store = await self.makeStore()
        for _ in range(3):
            await self.deliver(store, b"x\r\n", DeliveryTarget(ALICE))
        changed = await store.mail.setFlags(
            ALICE, INBOX, [1, 2], frozenset({"\\Seen", "$Work"}), "add"
        )
        self.assertEqual([m.uid for m in changed], [1, 2])
        again = await store.mail.setFlags(
            ALICE, INBOX, [1], frozenset({"\\Seen"}), "add"
        )
        self.assertEqual(again, [])
        await store.mail.setFlags(ALICE, INBOX, [2], frozenset({"$Work"}), "remove")
        await store.mail.setFlags(
            ALICE, INBOX, [3], frozenset({"\\Flagged"}), "replace"
        )
        flags = {m.uid: m.flags for m in await store.mail.listMessages(ALICE)}
        self.assertEqual(
            flags,
            {
                1: frozenset({"\\Seen", "$Work"}),
                2: frozenset({"\\Seen"}),
                3: frozenset({"\\Flagged"}),
            },
        )

    async def test_expunge(self) -> None:
        """
        Expunge removes the given UIDs, or those flagged \\Deleted; UIDs are
        never reused and usage falls.
        """
        store = await self.makeStore()
        for _ in range(4):
            await self.deliver(store, b"xx\r\n", DeliveryTarget(ALICE))
        self.assertEqual(await store.mail.expunge(ALICE, INBOX, [1, 9]), [1])
        await store.mail.setFlags(ALICE, INBOX, [3], frozenset({"\\Deleted"}), "add")
        self.assertEqual(await store.mail.expunge(ALICE, INBOX), [3])
        self.assertEqual([m.uid for m in await store.mail.listMessages(ALICE)], [2, 4])
        self.assertEqual(await self.deliver(store, b"n", DeliveryTarget(ALICE)), [5])
        usage = await store.mail.usage(ALICE)
        self.assertEqual((usage.bytes, usage.messages), (9, 3))

    async def test_copyAndMove(self) -> None:
        """
        Copy keeps the source and adds new UIDs with the same flags and
        bytes; move takes them out of the source.
        """
        store = await self.makeStore()
        await store.mail.createFolder(ALICE, "Archive")
        for body in (b"one\r\n", b"two\r\n"):
            await self.deliver(store, body, DeliveryTarget(ALICE))
        await store.mail.setFlags(ALICE, INBOX, [2], frozenset({"\\Seen"}), "add")
        mapping = await store.mail.copy(ALICE, INBOX, [1, 2], "Archive")
        self.assertEqual(dict(mapping), {1: 1, 2: 2})
        self.assertEqual(await self.body(store, ALICE, "Archive", 2), b"two\r\n")
        archived = await store.mail.listMessages(ALICE, "Archive")
        self.assertEqual(archived[1].flags, frozenset({"\\Seen"}))
        self.assertEqual((await store.mail.usage(ALICE)).messages, 4)
        with self.assertRaises(QuotaExceeded):
            await store.mail.copy(ALICE, INBOX, [1], "Archive", quota=20)
        moved = await store.mail.move(ALICE, INBOX, [1], "Archive")
        self.assertEqual(dict(moved), {1: 3})
        self.assertEqual([m.uid for m in await store.mail.listMessages(ALICE)], [2])
        self.assertEqual(await self.body(store, ALICE, "Archive", 3), b"one\r\n")
        self.assertEqual((await store.mail.usage(ALICE)).messages, 4)

    async def test_changesSince(self) -> None:
        """
        Changes since a modseq list new and re-flagged messages and
        expunged UIDs, and the folder's modseq rises with each change.
        """
        store = await self.makeStore()
        for _ in range(3):
            await self.deliver(store, b"x\r\n", DeliveryTarget(ALICE))
        start = (await store.mail.folder(ALICE)).modseq
        await store.mail.setFlags(ALICE, INBOX, [2], frozenset({"\\Seen"}), "add")
        await self.deliver(store, b"x\r\n", DeliveryTarget(ALICE))
        await store.mail.expunge(ALICE, INBOX, [1])
        changes = await store.mail.changesSince(ALICE, INBOX, start)
        self.assertGreater(changes.modseq, start)
        self.assertEqual([m.uid for m in changes.changed], [2, 4])
        self.assertEqual(changes.expunged, (1,))
        none = await store.mail.changesSince(ALICE, INBOX, changes.modseq)
        self.assertEqual((none.changed, none.expunged), ((), ()))

    async def test_watch(self) -> None:
        """
        A watcher hears of deliveries, flag changes and expunges in its
        folder, and nothing after it stops watching.
        """
        store = await self.makeStore()
        await store.mail.folder(ALICE)
        heard: list[FolderInfo] = []
        got: list[Deferred[None]] = [Deferred() for _ in range(3)]

        def callback(info: FolderInfo) -> None:
            heard.append(info)
            got[len(heard) - 1].callback(None)

        cancel = store.mail.watch(ALICE, INBOX, callback)
        await self.deliver(store, b"x\r\n", DeliveryTarget(ALICE))
        await self.deliver(store, b"y\r\n", DeliveryTarget(BOB))
        await got[0]
        self.assertEqual(heard[0].messages, 1)
        await store.mail.setFlags(ALICE, INBOX, [1], frozenset({"\\Seen"}), "add")
        await got[1]
        self.assertEqual(heard[1].unseen, 0)
        await store.mail.expunge(ALICE, INBOX, [1])
        await got[2]
        self.assertEqual(heard[2].messages, 0)
        cancel()
        await self.deliver(store, b"z\r\n", DeliveryTarget(ALICE))
        await store.mail.folder(ALICE)
        self.assertEqual(len(heard), 3)

    async def test_openMessages(self) -> None:
        """
        Many messages open in one look-up; missing UIDs are left out and
        an unknown folder fails with NoSuchFolder.
        """
        store = await self.makeStore()
        for body in (b"one\r\n", b"two\r\n", b"three\r\n"):
            await self.deliver(store, body, DeliveryTarget(ALICE))
        bodies = await store.mail.openMessages(ALICE, INBOX, [3, 1, 9])
        self.assertEqual(sorted(bodies), [1, 3])
        self.assertEqual(bodies[3].size, 7)
        with bodies[1].open() as f:
            self.assertEqual(f.read(), b"one\r\n")
        with self.assertRaises(NoSuchFolder):
            await store.mail.openMessages(ALICE, "Nowhere", [1])

    async def test_subscriptions(self) -> None:
        """
        Folders are subscribed when made; unsubscribing and subscribing
        again is kept; an unknown folder fails with NoSuchFolder.
        """
        store = await self.makeStore()
        await store.mail.createFolder(ALICE, "Lists")
        self.assertTrue((await store.mail.folder(ALICE, "Lists")).subscribed)
        await store.mail.setSubscribed(ALICE, "Lists", False)
        listed = {f.name: f.subscribed for f in await store.mail.listFolders(ALICE)}
        self.assertEqual(listed, {INBOX: True, "Lists": False})
        await store.mail.setSubscribed(ALICE, "Lists", True)
        self.assertTrue((await store.mail.folder(ALICE, "Lists")).subscribed)
        with self.assertRaises(NoSuchFolder):
            await store.mail.setSubscribed(ALICE, "Nowhere", True)

    async def test_expungeOnlyDeleted(self) -> None:
        """
        With onlyDeleted, only the given UIDs that are flagged \\Deleted
        are removed.
        """
        store = await self.makeStore()
        for _ in range(3):
            await self.deliver(store, b"x\r\n", DeliveryTarget(ALICE))
        await store.mail.setFlags(ALICE, INBOX, [1, 3], frozenset({"\\Deleted"}), "add")
        removed = await store.mail.expunge(ALICE, INBOX, [1, 2], onlyDeleted=True)
        self.assertEqual(list(removed), [1])
        self.assertEqual([m.uid for m in await store.mail.listMessages(ALICE)], [2, 3])

    async def test_renameInferiors(self) -> None:
        """
        Renaming with a delimiter renames the folders below too, keeping
        their UIDVALIDITY; a clash with an existing name renames nothing.
        """
        store = await self.makeStore()
        for name in ("Work", "Work/2024", "Work/2024/Q1", "Workshop"):
            await store.mail.createFolder(ALICE, name)
        before = (await store.mail.folder(ALICE, "Work/2024")).uidValidity
        await store.mail.createFolder(ALICE, "Old/2024")
        with self.assertRaises(FolderExists):
            await store.mail.renameFolder(ALICE, "Work", "Old", "/")
        await store.mail.deleteFolder(ALICE, "Old/2024")
        await store.mail.renameFolder(ALICE, "Work", "Old", "/")
        names = [f.name for f in await store.mail.listFolders(ALICE)]
        self.assertEqual(names, [INBOX, "Old", "Old/2024", "Old/2024/Q1", "Workshop"])
        after = (await store.mail.folder(ALICE, "Old/2024")).uidValidity
        self.assertEqual(after, before)

    async def test_claimRecent(self) -> None:
        """
        Messages are recent from arrival until a claim: a claim takes the
        range from the first recent UID to UIDNEXT and moves the first
        recent UID up, without raising the modseq; copies, moves and later
        deliveries arrive recent; STATUS-style counts follow.
        """
        store = await self.makeStore()
        info = await store.mail.folder(ALICE)
        self.assertEqual((info.recent, info.firstRecentUid), (0, 1))
        for _ in range(3):
            await self.deliver(store, b"x\r\n", DeliveryTarget(ALICE))
        info = await store.mail.folder(ALICE)
        self.assertEqual((info.recent, info.firstRecentUid), (3, 1))
        self.assertEqual(tuple(await store.mail.claimRecent(ALICE, "inbox")), (1, 4))
        after = await store.mail.folder(ALICE)
        self.assertEqual((after.recent, after.firstRecentUid), (0, 4))
        self.assertEqual(after.modseq, info.modseq)
        self.assertEqual(tuple(await store.mail.claimRecent(ALICE, INBOX)), (4, 4))
        await self.deliver(store, b"y\r\n", DeliveryTarget(ALICE))
        await self.deliver(store, b"z\r\n", DeliveryTarget(ALICE))
        await store.mail.expunge(ALICE, INBOX, [5])
        info = await store.mail.folder(ALICE)
        self.assertEqual((info.recent, info.firstRecentUid), (1, 4))
        changes = await store.mail.changesSince(ALICE, INBOX, 0)
        self.assertEqual(changes.firstRecentUid, 4)
        self.assertEqual(tuple(await store.mail.claimRecent(ALICE, INBOX)), (4, 6))
        await store.mail.createFolder(ALICE, "Archive")
        await store.mail.claimRecent(ALICE, "Archive")
        await store.mail.copy(ALICE, INBOX, [1], "Archive")
        await store.mail.move(ALICE, INBOX, [2], "Archive")
        archive = await store.mail.folder(ALICE, "Archive")
        self.assertEqual((archive.messages, archive.recent), (2, 2))
        self.assertEqual((await store.mail.folder(ALICE)).recent, 0)
        self.assertEqual(tuple(await store.mail.claimRecent(ALICE, "Archive")), (1, 3))
        with self.assertRaises(NoSuchFolder):
            await store.mail.claimRecent(ALICE, "Nowhere")

    async def test_claimRecentConcurrent(self) -> None:
        """
        Claims made at once, interleaved with deliveries, get disjoint
        ranges that together cover every UID given out.
        """
        store = await self.makeStore()
        for _ in range(3):
            await self.deliver(store, b"x\r\n", DeliveryTarget(ALICE))
        work: list[Deferred[Any]] = []
        for i in range(6):
            work.append(store.mail.claimRecent(ALICE, INBOX))
            staged = self.staged(store, b"m%d\r\n" % i)
            work.append(store.mail.deliver(staged, [DeliveryTarget(ALICE)]))
        results = await gatherResults(work)
        ranges = [tuple(r) for r in results[::2]]
        ranges.append(tuple(await store.mail.claimRecent(ALICE, INBOX)))
        claimed = [uid for first, end in ranges for uid in range(first, end)]
        self.assertEqual(sorted(claimed), list(range(1, 10)))
        self.assertEqual(len(claimed), len(set(claimed)))

    async def test_renameInboxKeepsRecent(self) -> None:
        """
        Renaming INBOX carries its unclaimed recent messages to the new
        folder; INBOX's next messages are recent there.
        """
        store = await self.makeStore()
        for _ in range(2):
            await self.deliver(store, b"x\r\n", DeliveryTarget(ALICE))
        await store.mail.claimRecent(ALICE, INBOX)
        await self.deliver(store, b"y\r\n", DeliveryTarget(ALICE))
        await store.mail.renameFolder(ALICE, INBOX, "Old")
        old = await store.mail.folder(ALICE, "Old")
        self.assertEqual((old.recent, old.firstRecentUid), (1, 3))
        await self.deliver(store, b"z\r\n", DeliveryTarget(ALICE))
        inbox = await store.mail.folder(ALICE)
        self.assertEqual((inbox.recent, inbox.firstRecentUid), (1, 3))

    async def test_locks(self) -> None:
        """
        A named lock has one holder; others are refused until it is
        released; refresh works only for the holder.
        """
        store = await self.makeStore()
        self.assertTrue(await store.mail.lock(ALICE, "pop3", "s1", 60))
        self.assertTrue(await store.mail.lock(ALICE, "pop3", "s1", 60))
        self.assertFalse(await store.mail.lock(ALICE, "pop3", "s2", 60))
        self.assertTrue(await store.mail.lock(BOB, "pop3", "s2", 60))
        self.assertTrue(await store.mail.refreshLock(ALICE, "pop3", "s1", 60))
        self.assertFalse(await store.mail.refreshLock(ALICE, "pop3", "s2", 60))
        await store.mail.unlock(ALICE, "pop3", "s2")
        self.assertFalse(await store.mail.lock(ALICE, "pop3", "s2", 60))
        await store.mail.unlock(ALICE, "pop3", "s1")
        self.assertTrue(await store.mail.lock(ALICE, "pop3", "s2", 60))

    async def test_expiredLock(self) -> None:
        """A lock whose holder did not refresh it expires."""
        store = await self.makeStore()
        self.assertTrue(await store.mail.lock(ALICE, "pop3", "s1", -1))
        self.assertTrue(await store.mail.lock(ALICE, "pop3", "s2", 60))


class QueueStoreContract(Contract):
    """
    What every L{IQueueStore} does.
    """

    async def test_interface(self) -> None:
        """The queue store provides IQueueStore."""
        store = await self.makeStore()
        self.assertTrue(verifyObject(IQueueStore, store.queue))

    async def test_enqueue(self) -> None:
        """
        A queued message keeps its envelope (recipients deduplicated, each
        pending, due now) and its bytes minus the skipped prefix.
        """
        store = await self.makeStore()
        staged = self.staged(store, b"Return-Path: <a@b.org>\r\nbody\r\n")
        id = await store.queue.enqueue(
            staged,
            "a@b.org",
            ["x@remote.example", "y@remote.example", "x@remote.example"],
            skip=len(b"Return-Path: <a@b.org>\r\n"),
            submitter=ALICE,
        )
        queued = await store.queue.get(id)
        assert queued is not None
        self.assertEqual(
            [(r.address, r.state) for r in queued.recipients],
            [
                ("x@remote.example", RecipientState.PENDING),
                ("y@remote.example", RecipientState.PENDING),
            ],
        )
        self.assertEqual(
            (queued.sender, queued.size, queued.submitter, queued.attempts),
            ("a@b.org", 6, ALICE, 0),
        )
        self.assertEqual(queued.nextAttempt, queued.created)
        body = await store.queue.openMessage(id)
        with body.open() as f:
            self.assertEqual(f.read(), b"body\r\n")
        self.assertEqual([m.id for m in await store.queue.list()], [id])
        self.assertIsNone(await store.queue.get(id + 1))
        with self.assertRaises(NoSuchMessage):
            await store.queue.openMessage(id + 1)

    async def queue(self, store: Any, *recipients: str, sender: str = "a@b.org") -> Any:
        staged = self.staged(store, b"Subject: q\r\n\r\nbody\r\n")
        id = await store.queue.enqueue(staged, sender, list(recipients))
        queued = await store.queue.get(id)
        assert queued is not None
        return queued

    async def test_claimIsExclusive(self) -> None:
        """
        A due message is claimed by one owner only, earliest due first, up
        to the limit; once its lease runs out another owner may take it.
        """
        store = await self.makeStore()
        first = await self.queue(store, "x@remote.example")
        second = await self.queue(store, "y@remote.example")
        now = max(first.nextAttempt, second.nextAttempt)
        [claimed] = await store.queue.claim("n1:1", now, 60, 1)
        self.assertEqual((claimed.id, claimed.claimedBy), (first.id, "n1:1"))
        self.assertEqual(claimed.claimedUntil, now + 60)
        [other] = await store.queue.claim("n2:1", now, 60, 10)
        self.assertEqual(other.id, second.id)
        self.assertEqual(await store.queue.claim("n2:1", now + 59, 60, 10), [])
        taken = await store.queue.claim("n2:1", now + 60, 60, 10)
        self.assertEqual([m.id for m in taken], [first.id, second.id])
        self.assertEqual(await store.queue.renew("n1:1", [first.id], now + 500), 0)
        self.assertEqual(await store.queue.renew("n2:1", [first.id], now + 500), 1)
        self.assertEqual((await store.queue.get(first.id)).claimedUntil, now + 500)

    async def test_notDueOrHeld(self) -> None:
        """
        Messages not yet due and held messages are not claimed; release
        makes a held one due again.
        """
        store = await self.makeStore()
        queued = await self.queue(store, "x@remote.example")
        now = queued.nextAttempt
        self.assertTrue(await store.queue.hold(queued.id))
        self.assertEqual(await store.queue.claim("n:1", now, 60, 10), [])
        self.assertIsNone(await store.queue.nextDue())
        self.assertTrue(await store.queue.release(queued.id))
        released = await store.queue.get(queued.id)
        self.assertFalse(released.held)
        [claimed] = await store.queue.claim("n:1", released.nextAttempt, 60, 10)
        await store.queue.record(
            queued.id,
            [RecipientUpdate("x@remote.example", RecipientState.DEFERRED, "451 later")],
        )
        self.assertFalse(await store.queue.settle(queued.id, "n:1", now + 300, "slow"))
        self.assertEqual(await store.queue.claim("n:1", now + 299, 60, 10), [])
        self.assertEqual(await store.queue.nextDue(), now + 300)
        self.assertFalse(await store.queue.hold(queued.id + 100))
        self.assertFalse(await store.queue.release(queued.id + 100))

    async def test_recordAndSettle(self) -> None:
        """
        Recipients keep their own outcomes; settling counts the attempt and
        reschedules while one is left, and removes the message once every
        recipient is delivered or bounced with the sender told.
        """
        store = await self.makeStore()
        queued = await self.queue(store, "x@a.example", "y@b.example", "z@c.example")
        now = queued.nextAttempt
        await store.queue.claim("n:1", now, 60, 10)
        await store.queue.record(
            queued.id,
            [
                RecipientUpdate("x@a.example", RecipientState.DELIVERED, "250 ok"),
                RecipientUpdate("y@b.example", RecipientState.BOUNCED, "550 no"),
                RecipientUpdate("z@c.example", RecipientState.DEFERRED, "421 busy"),
            ],
        )
        self.assertFalse(await store.queue.settle(queued.id, "n:1", now + 300, "busy"))
        after = await store.queue.get(queued.id)
        self.assertEqual(
            [(r.address, r.state, r.response, r.notified) for r in after.recipients],
            [
                ("x@a.example", RecipientState.DELIVERED, "250 ok", False),
                ("y@b.example", RecipientState.BOUNCED, "550 no", False),
                ("z@c.example", RecipientState.DEFERRED, "421 busy", False),
            ],
        )
        self.assertEqual(
            (after.attempts, after.nextAttempt, after.lastError, after.claimedBy),
            (1, now + 300, "busy", None),
        )
        # A delivered recipient stays delivered.
        await store.queue.record(
            queued.id, [RecipientUpdate("x@a.example", RecipientState.DEFERRED)]
        )
        # A DSN about y marks it notified in the same step.
        dsn = self.staged(store, b"Subject: bounce\r\n\r\n")
        notice = Notice(queued.id, bounced=("y@b.example",))
        dsnId = await store.queue.enqueue(dsn, "", ["a@b.org"], notice=notice)
        await store.queue.record(
            queued.id,
            [RecipientUpdate("z@c.example", RecipientState.DELIVERED, "250 ok")],
        )
        self.assertTrue(await store.queue.settle(queued.id, "n:1", now + 600, None))
        self.assertIsNone(await store.queue.get(queued.id))
        self.assertEqual([m.id for m in await store.queue.list()], [dsnId])
        with self.assertRaises(NoSuchMessage):
            await store.queue.openMessage(queued.id)
        # Settling what is gone is harmless.
        self.assertTrue(await store.queue.settle(queued.id, "n:1", now, None))
        await store.queue.record(queued.id, [])

    async def test_settleWithOutcomes(self) -> None:
        """
        Outcomes given to settle are recorded in its own transaction:
        with every recipient delivered the message leaves the queue; a
        claimed message opens without asking the database again.
        """
        store = await self.makeStore()
        queued = await self.queue(store, "x@a.example", "y@b.example")
        now = queued.nextAttempt
        await store.queue.claim("n:1", now, 60, 10)
        body = await store.queue.openMessage(queued.id)
        self.assertEqual(body.size, queued.size)
        delivered = [
            RecipientUpdate("x@a.example", RecipientState.DELIVERED, "250 ok"),
            RecipientUpdate("y@b.example", RecipientState.DEFERRED, "451 later"),
        ]
        gone = await store.queue.settle(queued.id, "n:1", now + 60, "451", delivered)
        self.assertFalse(gone)
        after = await store.queue.get(queued.id)
        self.assertEqual(
            [(r.address, r.state) for r in after.recipients],
            [
                ("x@a.example", RecipientState.DELIVERED),
                ("y@b.example", RecipientState.DEFERRED),
            ],
        )
        self.assertEqual((after.attempts, after.claimedBy), (1, None))
        await store.queue.claim("n:1", now + 60, 60, 10)
        last = [RecipientUpdate("y@b.example", RecipientState.DELIVERED, "250 ok")]
        self.assertTrue(await store.queue.settle(queued.id, "n:1", now, None, last))
        self.assertIsNone(await store.queue.get(queued.id))
        with self.assertRaises(NoSuchMessage):
            await store.queue.openMessage(queued.id)

    async def test_delayNotice(self) -> None:
        """A delay warning marks its message warned."""
        store = await self.makeStore()
        queued = await self.queue(store, "x@a.example")
        self.assertFalse(queued.warned)
        staged = self.staged(store, b"Subject: delayed\r\n\r\n")
        await store.queue.enqueue(
            staged, "", ["a@b.org"], notice=Notice(queued.id, warned=True)
        )
        self.assertTrue((await store.queue.get(queued.id)).warned)

    async def test_releaseClaims(self) -> None:
        """
        A node starting again takes back its earlier run's claims, and
        leaves other nodes' claims alone.
        """
        store = await self.makeStore()
        mine = await self.queue(store, "x@a.example")
        theirs = await self.queue(store, "y@a.example")
        now = max(mine.nextAttempt, theirs.nextAttempt)
        await store.queue.claim("a.example:111:", now, 600, 1)
        await store.queue.claim("b.example:222:", now, 600, 1)
        self.assertEqual(await store.queue.releaseClaims("a.example:"), 1)
        self.assertIsNone((await store.queue.get(mine.id)).claimedBy)
        self.assertEqual((await store.queue.get(theirs.id)).claimedBy, "b.example:222:")
        [again] = await store.queue.claim("a.example:333:", now, 600, 10)
        self.assertEqual(again.id, mine.id)

    async def test_adminOperations(self) -> None:
        """
        Retry makes one message or all due now; delete removes one
        without a trace; watchers hear of enqueues, retries and releases.
        """
        store = await self.makeStore()
        heard: list[None] = []
        cancel = store.queue.watch(lambda: heard.append(None))
        first = await self.queue(store, "x@a.example")
        second = await self.queue(store, "y@a.example")
        self.assertEqual(len(heard), 2)
        now = max(first.nextAttempt, second.nextAttempt)
        await store.queue.claim("n:1", now, 60, 10)
        for m in (first, second):
            await store.queue.settle(m.id, "n:1", now + 3600, "later")
        self.assertEqual(await store.queue.retry(first.id), 1)
        self.assertLessEqual((await store.queue.get(first.id)).nextAttempt, now + 60)
        self.assertEqual((await store.queue.get(second.id)).nextAttempt, now + 3600)
        self.assertEqual(await store.queue.retry(), 2)
        self.assertEqual(len(heard), 4)
        self.assertEqual(await store.queue.retry(second.id + 100), 0)
        self.assertTrue(await store.queue.delete(first.id))
        self.assertFalse(await store.queue.delete(first.id))
        self.assertEqual([m.id for m in await store.queue.list()], [second.id])
        cancel()
        await self.queue(store, "z@a.example")
        self.assertEqual(len(heard), 4)


class FeedContract(Contract):
    """L{IFolderFeed}: a store that tells of its own changes as they are."""

    async def test_feed(self) -> None:
        """
        A delivery, a flag change, an expunge and a \\Recent claim are
        told to the folder's feeds as they are, each a step of one
        modseq; a copy into the folder is told as "read what changed".
        """
        store = await self.makeStore()
        mail = store.mail
        self.assertTrue(verifyObject(IFolderFeed, mail))
        await self.deliver(store, b"one\r\n", DeliveryTarget(ALICE))
        start = (await mail.folder(ALICE, INBOX)).modseq
        told: list[Delta] = []
        waiting: list[Deferred[None]] = []

        def tell(delta: Delta) -> None:
            told.append(delta)
            while waiting:
                waiting.pop().callback(None)

        cancel = mail.feed(ALICE, "inbox", tell)
        self.addCleanup(cancel)
        [uid] = await self.deliver(
            store, b"two\r\n", DeliveryTarget(ALICE, INBOX, frozenset({"$A"}))
        )
        await mail.setFlags(ALICE, INBOX, [1], frozenset({"\\Deleted"}), "add")
        await mail.expunge(ALICE, INBOX, [1, uid], onlyDeleted=True)
        await mail.claimRecent(ALICE, INBOX)
        steps = [d.changes for d in told[:3]]
        self.assertEqual(
            [c.modseq for c in steps if c], [start + 1, start + 2, start + 3]
        )
        [added] = steps[0].changed if steps[0] else ()
        self.assertEqual((added.uid, added.flags), (uid, frozenset({"$A"})))
        [flagged] = steps[1].changed if steps[1] else ()
        self.assertEqual((flagged.uid, flagged.modseq), (1, start + 2))
        self.assertEqual(steps[2], Changes(start + 3, (), (1,)))
        self.assertEqual(told[3], Delta(recentFrom=uid + 1))
        await mail.createFolder(ALICE, "Other")
        await self.deliver(store, b"three\r\n", DeliveryTarget(ALICE, "Other"))
        await mail.copy(ALICE, "Other", [1], INBOX)
        if len(told) == 4:
            # (Told once the folder's new state is read.)
            waiting.append(Deferred())
            await waiting[0]
        self.assertEqual(told[4:], [Delta()])

    async def test_snapshot(self) -> None:
        """
        A folder's state and listing come together; INBOX is made if
        missing; another missing folder is L{NoSuchFolder}.
        """
        store = await self.makeStore()
        mail = store.mail
        info, rows = await mail.snapshot(ALICE, "inbox")
        self.assertEqual((info.name, info.messages, list(rows)), (INBOX, 0, []))
        await self.deliver(store, b"one\r\n", DeliveryTarget(ALICE))
        info, rows = await mail.snapshot(ALICE, INBOX)
        self.assertEqual(info.messages, 1)
        self.assertEqual(list(rows), list(await mail.listMessages(ALICE, INBOX)))
        with self.assertRaises(NoSuchFolder):
            await mail.snapshot(ALICE, "Nowhere")


class MemoryMailTests(FeedContract, MailStoreContract, TestCase):
    """The in-memory mail store keeps the contract."""

    async def makeStore(self) -> Any:
        return MemoryStore()


class MemoryQueueTests(QueueStoreContract, TestCase):
    """The in-memory queue keeps the contract."""

    async def makeStore(self) -> Any:
        return MemoryStore()


class SQLiteContract:
    #: The mail store's L{SQLiteMailStore.inlineLimit}; C{None}: its default.
    inlineLimit: int | None = None

    async def makeStore(self) -> Any:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        store = SQLiteStore.open(os.path.join(self.root, "store.sqlite"), reactor)
        if self.inlineLimit is not None:
            store.mail.inlineLimit = self.inlineLimit
        await store.start()
        self.addCleanup(store.stop)
        return store

    def bodyRows(self) -> int:
        """How many small messages' body rows the database holds."""
        conn = sqlite3.connect(os.path.join(self.root, "store.sqlite"))
        try:
            [(count,)] = conn.execute("SELECT COUNT(*) FROM mail_bodies").fetchall()
        finally:
            conn.close()
        return int(count)


class SQLiteFileMailTests(SQLiteContract, MailStoreContract, TestCase):
    """
    The SQLite mail store keeps the contract with every message in a file
    (as large ones are).
    """

    inlineLimit = 0


class SQLiteMailTests(SQLiteContract, FeedContract, MailStoreContract, TestCase):
    """The SQLite mail store keeps the contract, and its own promises."""

    async def test_smallInDatabase(self) -> None:
        """
        A message of at most C{inlineLimit} bytes is kept in the database,
        one body row per recipient and no file; a longer one is a file.
        Expunging or deleting the folder removes the body rows; a copy has
        a body row of its own, a moved message keeps its.
        """
        store = await self.makeStore()
        limit = store.mail.inlineLimit
        small = b"Subject: small\r\n\r\n".ljust(limit, b"s")
        await self.deliver(store, small, DeliveryTarget(ALICE), DeliveryTarget(BOB))
        self.assertEqual(self.bodyRows(), 2)
        mail = os.path.join(self.root, "mail", "store")
        self.assertEqual([f for _, _, files in os.walk(mail) for f in files], [])
        self.assertEqual(await self.body(store, BOB, INBOX, 1), small)
        body = await store.mail.openMessage(ALICE, INBOX, 1)
        self.assertEqual((body.size, body.memory), (limit, small))

        await self.deliver(store, small + b"!", DeliveryTarget(ALICE))
        self.assertEqual(self.bodyRows(), 2)
        self.assertEqual(len(os.listdir(os.path.join(mail, ALICE))), 1)
        bodies = await store.mail.openMessages(ALICE, INBOX, [1, 2])
        with bodies[2].open() as f:
            self.assertEqual(f.read(), small + b"!")
        self.assertIsNone(bodies[2].memory)

        await store.mail.createFolder(ALICE, "Kept")
        self.assertEqual(dict(await store.mail.copy(ALICE, INBOX, [1], "Kept")), {1: 1})
        self.assertEqual(self.bodyRows(), 3)
        await store.mail.expunge(ALICE, INBOX, [1])
        self.assertEqual(self.bodyRows(), 2)
        self.assertEqual(await self.body(store, ALICE, "Kept", 1), small)
        await store.mail.createFolder(ALICE, "Moved")
        await store.mail.move(ALICE, "Kept", [1], "Moved")
        self.assertEqual(self.bodyRows(), 2)
        self.assertEqual(await self.body(store, ALICE, "Moved", 1), small)
        await store.mail.deleteFolder(ALICE, "Moved")
        self.assertEqual(self.bodyRows(), 1)

    async def test_returnPathBeforeSmallBody(self) -> None:
        """A small message reads with its Return-Path line before it."""
        store = await self.makeStore()
        staged = self.staged(store, b"Subject: s\r\n\r\nx\r\n")
        prefix = b"Return-Path: <bob@example.org>\r\n"
        await store.mail.deliver(staged, [DeliveryTarget(ALICE)], None, prefix=prefix)
        self.assertEqual(
            await self.body(store, ALICE, INBOX, 1), prefix + b"Subject: s\r\n\r\nx\r\n"
        )
        [info] = await store.mail.listMessages(ALICE, INBOX)
        self.assertEqual(info.size, len(prefix) + 17)

    async def test_smallRefusedLeavesNoRow(self) -> None:
        """A small delivery refused for quota leaves no body row."""
        store = await self.makeStore()
        with self.assertRaises(QuotaExceeded):
            await self.deliver(store, b"x" * 10, DeliveryTarget(ALICE, quota=5))
        self.assertEqual(self.bodyRows(), 0)

    async def test_files(self) -> None:
        """
        Message files are private, under mail/store/<owner>/, shared by
        hard links between recipients of one delivery, and gone after
        expunge; the staged file is gone after discard.
        """
        store = await self.makeStore()
        store.mail.inlineLimit = 0
        staged = store.mail.stage()
        staged.write(b"data\r\n")
        await store.mail.deliver(staged, [DeliveryTarget(ALICE), DeliveryTarget(BOB)])
        staged.discard()
        self.assertEqual(os.listdir(os.path.join(self.root, "mail", "tmp")), [])
        directory = os.path.join(self.root, "mail", "store", ALICE)
        [name] = os.listdir(directory)
        info = os.stat(os.path.join(directory, name))
        self.assertEqual(stat.S_IMODE(info.st_mode), 0o600)
        self.assertEqual(info.st_nlink, 2)
        await store.mail.expunge(ALICE, INBOX, [1])
        self.assertEqual(os.listdir(directory), [])
        self.assertEqual(await self.body(store, BOB, INBOX, 1), b"data\r\n")

    async def test_queueSharesReceivedFile(self) -> None:
        """
        A message both queued and delivered is one file on disk: the queue
        entry is a hard link of the received file, which the mailbox
        reads with its Return-Path line before it.
        """
        store = await self.makeStore()
        staged = self.staged(store, b"Subject: both\r\n\r\nx\r\n")
        id = await store.queue.enqueue(staged, "bob@example.org", ["x@remote.example"])
        prefix = b"Return-Path: <bob@example.org>\r\n"
        await store.mail.deliver(staged, [DeliveryTarget(ALICE)], None, prefix=prefix)
        [name] = os.listdir(os.path.join(self.root, "mail", "queue"))
        queued = os.stat(os.path.join(self.root, "mail", "queue", name))
        directory = os.path.join(self.root, "mail", "store", ALICE)
        [stored] = os.listdir(directory)
        self.assertEqual(queued.st_ino, os.stat(os.path.join(directory, stored)).st_ino)
        self.assertEqual(queued.st_nlink, 2)
        body = await store.queue.openMessage(id)
        with body.open() as f:
            self.assertEqual(f.read(), b"Subject: both\r\n\r\nx\r\n")
        self.assertEqual(
            await self.body(store, ALICE, INBOX, 1),
            prefix + b"Subject: both\r\n\r\nx\r\n",
        )

    async def test_failedDeliveryLeavesNoFile(self) -> None:
        """A delivery refused for quota leaves no message file behind."""
        store = await self.makeStore()
        store.mail.inlineLimit = 0
        with self.assertRaises(QuotaExceeded):
            await self.deliver(store, b"x" * 10, DeliveryTarget(ALICE, quota=5))
        directory = os.path.join(self.root, "mail", "store", ALICE)
        self.assertEqual(os.listdir(directory), [])

    async def test_openSurvivesExpunge(self) -> None:
        """A message opened before an expunge can still be read whole."""
        store = await self.makeStore()
        await self.deliver(store, b"still here\r\n", DeliveryTarget(ALICE))
        body = await store.mail.openMessage(ALICE, INBOX, 1)
        with body.open() as f:
            await store.mail.expunge(ALICE, INBOX, [1])
            self.assertEqual(f.read(), b"still here\r\n")

    async def test_survivesReopen(self) -> None:
        """Messages and flags are there after the store is reopened."""
        store = await self.makeStore()
        await self.deliver(store, b"kept\r\n", DeliveryTarget(ALICE))
        await store.stop()
        again = SQLiteStore.open(os.path.join(self.root, "store.sqlite"), reactor)
        await again.start()
        self.addCleanup(again.stop)
        self.assertEqual(await self.body(again, ALICE, INBOX, 1), b"kept\r\n")

    async def test_snapshotFollowsChanges(self) -> None:
        """
        A folder selected again is its kept listing brought up to date:
        after deliveries, flag changes, expunges, copies and moves made
        here or through another store instance (as another process
        would), it is what a store reading the folder whole sees; a
        folder deleted and made again is read whole.
        """
        store = await self.makeStore()
        path = os.path.join(self.root, "store.sqlite")
        other = SQLiteStore.open(path, reactor)
        await other.start()
        self.addCleanup(other.stop)
        await store.mail.createFolder(ALICE, "Work")

        async def check(name: str = INBOX) -> None:
            fresh = SQLiteStore.open(path, reactor)
            await fresh.start()
            try:
                expected = await fresh.mail.snapshot(ALICE, name)
            finally:
                await fresh.stop()
            self.assertEqual(await store.mail.snapshot(ALICE, name), expected)

        for i in range(6):
            each = (store, other)[i % 2]
            await self.deliver(each, b"m%d\r\n" % i, DeliveryTarget(ALICE))
        await check()
        await other.mail.setFlags(ALICE, INBOX, [2, 3], frozenset({"\\Seen"}), "add")
        await store.mail.setFlags(ALICE, INBOX, [4], frozenset({"$Work"}), "add")
        await other.mail.expunge(ALICE, INBOX, [1, 5])
        await self.deliver(other, b"late\r\n", DeliveryTarget(ALICE))
        await check()
        await other.mail.copy(ALICE, INBOX, [2], "Work")
        await store.mail.move(ALICE, INBOX, [3], "Work")
        await check()
        await check("Work")
        await store.mail.claimRecent(ALICE, INBOX)
        await check()
        await other.mail.deleteFolder(ALICE, "Work")
        await other.mail.createFolder(ALICE, "Work")
        await self.deliver(other, b"new\r\n", DeliveryTarget(ALICE, "Work"))
        await check("Work")
        [row] = (await store.mail.snapshot(ALICE, "Work"))[1]
        self.assertEqual(row.uid, 1)

    async def test_watchOtherProcess(self) -> None:
        """
        A change committed through another store instance on the same
        files (as another process would) reaches a watcher by polling.
        """
        store = await self.makeStore()
        store.mail.pollInterval = 0.05
        other = SQLiteStore.open(os.path.join(self.root, "store.sqlite"), reactor)
        await other.start()
        self.addCleanup(other.stop)
        await store.mail.folder(ALICE)
        heard: Deferred[FolderInfo] = Deferred()
        cancel = store.mail.watch(ALICE, INBOX, heard.callback)
        self.addCleanup(cancel)
        # Let the watch learn the current modseq first.
        await store.mail.usage(ALICE)
        await self.deliver(other, b"from afar\r\n", DeliveryTarget(ALICE))
        info = await heard
        self.assertEqual(info.messages, 1)

    async def test_concurrentDeliveries(self) -> None:
        """
        Deliveries started together to one folder get distinct UIDs and
        all their rows.
        """
        store = await self.makeStore()
        staged = [self.staged(store, b"m%d\r\n" % i) for i in range(20)]
        results = await gatherResults(
            [store.mail.deliver(s, [DeliveryTarget(ALICE)]) for s in staged]
        )
        self.assertEqual(sorted(r[0] for r in results), list(range(1, 21)))
        conn = sqlite3.connect(os.path.join(self.root, "store.sqlite"))
        self.addCleanup(conn.close)
        self.assertEqual(
            conn.execute("SELECT COUNT(*) FROM mail_messages").fetchone()[0], 20
        )

    async def test_claimRecentOtherProcess(self) -> None:
        """
        Two store instances on one database (as two processes would)
        claiming at once, while mail arrives through both, get disjoint
        ranges covering every UID.
        """
        store = await self.makeStore()
        other = SQLiteStore.open(os.path.join(self.root, "store.sqlite"), reactor)
        await other.start()
        self.addCleanup(other.stop)
        await store.mail.folder(ALICE)
        work: list[Deferred[Any]] = []
        for i in range(8):
            each = (store, other)[i % 2]
            work.append(each.mail.claimRecent(ALICE, INBOX))
            staged = self.staged(each, b"m%d\r\n" % i)
            work.append(each.mail.deliver(staged, [DeliveryTarget(ALICE)]))
        results = await gatherResults(work)
        ranges = [tuple(r) for r in results[::2]]
        ranges.append(tuple(await other.mail.claimRecent(ALICE, INBOX)))
        claimed = [uid for first, end in ranges for uid in range(first, end)]
        self.assertEqual(sorted(claimed), list(range(1, 9)))
        self.assertEqual(len(claimed), len(set(claimed)))

    async def test_migratesRecent(self) -> None:
        """
        Folders written by the first mail schema have nothing recent after
        the upgrade; mail delivered after it is recent. Their messages
        still read from their files.
        """
        from appnet.store.schema import SCHEMAS

        first = {**SCHEMAS, "mail": SCHEMAS["mail"][:1]}
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        path = os.path.join(self.root, "store.sqlite")
        migrateFile(path, first)
        conn = sqlite3.connect(path)
        with conn:
            # Only what the first schema's columns allow.
            conn.execute(
                "INSERT INTO mail_folders (owner, name, uidvalidity, uidnext, modseq)"
                " VALUES (?, 'INBOX', 1, 3, 3)",
                (ALICE,),
            )
            conn.executemany(
                "INSERT INTO mail_messages"
                " (folder, uid, file, size, internaldate, modseq)"
                " VALUES (1, ?, 'store/old', 5, 0, ?)",
                [(1, 2), (2, 3)],
            )
        conn.close()
        os.makedirs(os.path.join(self.root, "mail", "store"))
        with open(os.path.join(self.root, "mail", "store", "old"), "wb") as f:
            f.write(b"old\r\n")
        store = SQLiteStore.open(path, reactor)
        await store.start()
        self.addCleanup(store.stop)
        info = await store.mail.folder(ALICE)
        self.assertEqual((info.messages, info.recent, info.firstRecentUid), (2, 0, 3))
        # Rows from before small bodies went into the database keep their
        # files.
        self.assertEqual(await self.body(store, ALICE, INBOX, 1), b"old\r\n")
        await self.deliver(store, b"new\r\n", DeliveryTarget(ALICE))
        self.assertEqual((await store.mail.folder(ALICE)).recent, 1)
        self.assertEqual(tuple(await store.mail.claimRecent(ALICE, INBOX)), (3, 4))

    async def test_staleStagedFilesRemoved(self) -> None:
        """Staged files a crash left behind are removed at start."""
        store = await self.makeStore()
        await store.stop()
        stale = os.path.join(self.root, "mail", "tmp", "left-behind")
        with open(stale, "wb") as f:
            f.write(b"partial")
        os.utime(stale, (0, 0))
        again = SQLiteStore.open(os.path.join(self.root, "store.sqlite"), reactor)
        await again.start()
        self.addCleanup(again.stop)
        self.assertFalse(os.path.exists(stale))


class AdoptionContract:
    """
    A store that adopts new mail for its own process's runner (the
    SQLite and PostgreSQL queues; the memory queue declines).
    """

    async def test_adopt(self) -> None:
        """
        A message queued while a runner adopts new mail is claimed for it
        in the same transaction and handed over, not reported to
        watchers; no other owner can claim it.
        """
        store = await self.makeStore()
        adopted: list[Any] = []
        woken: list[None] = []
        store.queue.watch(lambda: woken.append(None))
        stop = store.queue.adopt("n:1", 60, adopted.append)
        id = await store.queue.enqueue(
            self.staged(store, b"body\r\n"), "a@b.org", ["x@remote.example"] * 2
        )
        [message] = adopted
        self.assertEqual(
            (message.id, message.sender, message.claimedBy, message.attempts),
            (id, "a@b.org", "n:1", 0),
        )
        self.assertEqual([r.address for r in message.recipients], ["x@remote.example"])
        self.assertEqual(message.claimedUntil, message.created + 60)
        self.assertEqual(woken, [])
        stored = await store.queue.get(id)
        self.assertEqual(
            (stored.claimedBy, stored.claimedUntil), ("n:1", message.claimedUntil)
        )
        self.assertEqual(await store.queue.claim("n:2", message.created, 60, 10), [])
        body = await store.queue.openMessage(id)
        self.assertEqual(body.memory, b"body\r\n")
        with body.open() as f:
            self.assertEqual(f.read(), b"body\r\n")
        await store.queue.settle(id, "n:1", 0, None)
        stop()
        queued = await self.queue(store, "y@remote.example")
        self.assertIsNone((await store.queue.openMessage(queued.id)).memory)

    async def test_adoptStopped(self) -> None:
        """
        Once adoption stops, new mail is unclaimed and reported to
        watchers; a message whose enqueue was under way when it stopped
        is released again.
        """
        store = await self.makeStore()
        adopted: list[Any] = []
        woken: list[None] = []
        store.queue.watch(lambda: woken.append(None))
        stop = store.queue.adopt("n:1", 60, adopted.append)
        pending = store.queue.enqueue(
            self.staged(store, b"one\r\n"), "", ["x@remote.example"]
        )
        stop()
        first = await pending
        second = await store.queue.enqueue(
            self.staged(store, b"two\r\n"), "", ["x@remote.example"]
        )
        self.assertEqual((adopted, len(woken)), ([], 2))
        for id in (first, second):
            queued = await store.queue.get(id)
            self.assertIsNone(queued.claimedBy)


class SQLiteQueueTests(SQLiteContract, AdoptionContract, QueueStoreContract, TestCase):
    """The SQLite queue keeps the contract."""

    async def test_queueFile(self) -> None:
        """A queued message is a private file under mail/queue/."""
        store = await self.makeStore()
        staged = self.staged(store, b"body\r\n")
        await store.queue.enqueue(staged, "", ["x@remote.example"])
        [name] = os.listdir(os.path.join(self.root, "mail", "queue"))
        path = os.path.join(self.root, "mail", "queue", name)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    async def test_settledFileRemoved(self) -> None:
        """A message leaving the queue takes its file with it."""
        store = await self.makeStore()
        queued = await self.queue(store, "x@remote.example")
        await store.queue.record(
            queued.id, [RecipientUpdate("x@remote.example", RecipientState.DELIVERED)]
        )
        self.assertTrue(await store.queue.settle(queued.id, "n:1", 0, None))
        await store.queue.whenRemoved()
        self.assertEqual(os.listdir(os.path.join(self.root, "mail", "queue")), [])

    async def test_migratesVersionOne(self) -> None:
        """
        A queue written by the first schema gains the relay's columns,
        its messages unclaimed and unwarned.
        """
        from appnet.store.schema import SCHEMAS

        first = {**SCHEMAS, "queue": SCHEMAS["queue"][:1]}
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        path = os.path.join(self.root, "store.sqlite")
        old = SQLiteStore.open(path, reactor, first)
        await old.start()
        staged = self.staged(old, b"old\r\n")
        id = await old.queue.enqueue(staged, "", ["x@remote.example"])
        await old.stop()
        store = SQLiteStore.open(path, reactor)
        await store.start()
        self.addCleanup(store.stop)
        queued = await store.queue.get(id)
        self.assertEqual((queued.warned, queued.claimedBy), (False, None))
        self.assertFalse(queued.recipients[0].notified)


class PostgreSQLContract:
    async def makeStore(self) -> Any:
        return await pgserver.startStore(self)


class PostgreSQLMailTests(PostgreSQLContract, MailStoreContract, TestCase):
    """The PostgreSQL mail store keeps the contract."""


class PostgreSQLQueueTests(
    PostgreSQLContract, AdoptionContract, QueueStoreContract, TestCase
):
    """The PostgreSQL queue keeps the contract."""
