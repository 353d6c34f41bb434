"""
The PostgreSQL store's own promises, beyond the shared contract: several
nodes (store instances) on one database, bodies in chunks, schema
versions, and a database that goes away and comes back.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from appnet.store._db import Migration, SchemaTooNew
from appnet.store.interfaces import INBOX, DeliveryTarget, FolderInfo, IStore
from appnet.store.pg import PostgreSQLStore, StoreUnavailable
from appnet.store.pg.bodies import CHUNK
from appnet.store.pg.schema import SCHEMAS
from tests import pgserver

ALICE = "alice@example.org"


async def deliver(store: Any, data: bytes, owner: str = ALICE) -> int:
    staged = store.mail.stage()
    try:
        staged.write(data)
        uids = await store.mail.deliver(staged, [DeliveryTarget(owner)])
    finally:
        staged.discard()
    return int(uids[0])


class NodesTests(TestCase):
    """
    Two store instances on one database, as two nodes would have.
    """

    async def nodes(self) -> tuple[Any, Any]:
        url = await pgserver.freshDatabase(self)
        stores = []
        for _ in range(2):
            store = PostgreSQLStore.open(url, reactor)
            await store.start()
            self.addCleanup(store.stop)
            stores.append(store)
        return stores[0], stores[1]

    async def test_concurrentDelivery(self) -> None:
        """
        Deliveries to one mailbox through both nodes at once get
        distinct UIDs, increasing in each node's order of completion.
        """
        a, b = await self.nodes()
        count = 15
        results: dict[str, list[int]] = {"a": [], "b": []}

        async def run(store: Any, name: str) -> None:
            for i in range(count):
                results[name].append(
                    await deliver(store, b"%s %d\r\n" % (name.encode(), i))
                )

        await gatherResults(
            [Deferred.fromCoroutine(run(a, "a")), Deferred.fromCoroutine(run(b, "b"))]
        )
        uids = results["a"] + results["b"]
        self.assertEqual(sorted(uids), list(range(1, 2 * count + 1)))
        for name in results:
            self.assertEqual(results[name], sorted(results[name]))
        info = await b.mail.folder(ALICE)
        self.assertEqual((info.messages, info.uidNext), (2 * count, 2 * count + 1))

    async def test_watchAcrossNodes(self) -> None:
        """
        A watcher on one node hears of a delivery made through the other
        (LISTEN/NOTIFY, no polling).
        """
        a, b = await self.nodes()
        await b.mail.folder(ALICE)
        heard: Deferred[FolderInfo] = Deferred()
        cancel = b.mail.watch(ALICE, INBOX, heard.callback)
        self.addCleanup(cancel)
        await b.mail.usage(ALICE)
        await deliver(a, b"from node a\r\n")
        info = await heard.addTimeout(30, reactor)
        self.assertEqual(info.messages, 1)

    async def test_accountsAcrossNodes(self) -> None:
        """
        An account added or deleted through one node moves the other
        node's user C{generation} on (NOTIFY), and its cached domains
        follow.
        """
        a, b = await self.nodes()
        self.assertEqual(await b.users.domains(), frozenset())

        async def heard() -> None:
            # Notifications arrive in commit order: once the mail one
            # sent after the change is heard, the accounts one was too.
            await b.mail.folder(ALICE)
            changed: Deferred[FolderInfo] = Deferred()
            cancel = b.mail.watch(ALICE, INBOX, changed.callback)
            await b.mail.usage(ALICE)
            await deliver(a, b"after\r\n")
            await changed.addTimeout(30, reactor)
            cancel()

        before = b.users.generation
        await a.users.addUser("bob@crepes.fr", "h")
        await heard()
        added = b.users.generation
        self.assertNotEqual(added, before)
        self.assertEqual(await b.users.domains(), frozenset({"crepes.fr"}))
        await a.users.deleteUser("bob@crepes.fr")
        await heard()
        self.assertNotEqual(b.users.generation, added)
        self.assertEqual(await b.users.domains(), frozenset())

    async def test_queueClaimsAcrossNodes(self) -> None:
        """
        A message claimed by one node is not given to the other until
        the lease runs out; then it is, once.
        """
        a, b = await self.nodes()
        staged = a.mail.stage()
        staged.write(b"Subject: out\r\n\r\nbody\r\n")
        id = await a.queue.enqueue(staged, "s@example.org", ["r@remote.example"])
        staged.discard()
        now = (await a.queue.get(id)).nextAttempt
        got = await a.queue.claim("a:1", now, 30, 10)
        self.assertEqual([m.id for m in got], [id])
        self.assertEqual(await b.queue.claim("b:1", now + 1, 30, 10), [])
        later = await b.queue.claim("b:1", now + 31, 30, 10)
        self.assertEqual([m.id for m in later], [id])
        self.assertEqual(await a.queue.claim("a:1", now + 32, 30, 10), [])

    async def test_queueWakesOtherNode(self) -> None:
        """An enqueue on one node wakes the other node's queue watchers."""
        a, b = await self.nodes()
        woken: Deferred[None] = Deferred()
        cancel = b.queue.watch(lambda: woken.called or woken.callback(None))
        self.addCleanup(cancel)
        staged = a.mail.stage()
        staged.write(b"x\r\n")
        await a.queue.enqueue(staged, "s@example.org", ["r@remote.example"])
        staged.discard()
        await woken.addTimeout(30, reactor)

    async def test_lockAcrossNodes(self) -> None:
        """POP3's maildrop lock taken on one node holds on the other."""
        a, b = await self.nodes()
        self.assertTrue(await a.mail.lock(ALICE, "pop3", "a:1", 60))
        self.assertFalse(await b.mail.lock(ALICE, "pop3", "b:1", 60))
        await a.mail.unlock(ALICE, "pop3", "a:1")
        self.assertTrue(await b.mail.lock(ALICE, "pop3", "b:1", 60))

    async def test_recentAcrossNodes(self) -> None:
        """\\Recent is claimed by one session across nodes."""
        a, b = await self.nodes()
        await deliver(a, b"one\r\n")
        await deliver(b, b"two\r\n")
        first, second = await gatherResults(
            [a.mail.claimRecent(ALICE, INBOX), b.mail.claimRecent(ALICE, INBOX)]
        )
        full, empty = sorted([first, second], key=lambda r: r[0] == r[1])
        self.assertEqual(full, (1, 3))
        self.assertEqual(empty[0], empty[1])


class BodiesTests(TestCase):
    """Message bytes stored as chunks."""

    async def test_largeMessage(self) -> None:
        """
        A message of several chunks reads back whole through
        openMessage (spooled) and openMessages (chunk by chunk, seekable).
        """
        store = await pgserver.startStore(self)
        data = os.urandom(3 * CHUNK + 123)
        await deliver(store, data)
        body = await store.mail.openMessage(ALICE, INBOX, 1)
        self.assertEqual(body.size, len(data))
        with body.open() as f:
            self.assertEqual(f.read(), data)
        bodies = await store.mail.openMessages(ALICE, INBOX, [1])

        def read() -> tuple[bytes, bytes]:
            with bodies[1].open() as f:
                whole = f.read()
                f.seek(CHUNK + 5)
                return whole, f.read(10)

        whole, piece = await deferToThread(read)
        self.assertEqual(whole, data)
        self.assertEqual(piece, data[CHUNK + 5 : CHUNK + 15])

    async def test_boundedMemory(self) -> None:
        """
        A large message is never whole in memory: not while it is
        delivered, nor when read back through openMessage (spooled) or
        openMessages (chunks); the peak stays far below its size.
        """
        spool = os.path.abspath(self.mktemp())
        os.makedirs(spool)
        store = await pgserver.startStore(self, spoolDir=spool)
        piece = os.urandom(1 << 16)
        size = 8 << 20
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        staged = store.mail.stage()
        for _ in range(size // len(piece)):
            staged.write(piece)
        tracemalloc.reset_peak()
        await store.mail.deliver(staged, [DeliveryTarget(ALICE)])
        staged.discard()
        delivering = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        body = await store.mail.openMessage(ALICE, INBOX, 1)

        def readAll(body: Any) -> int:
            total = 0
            with body.open() as f:
                while chunk := f.read(1 << 16):
                    total += len(chunk)
            return total

        self.assertEqual(await deferToThread(readAll, body), size)
        spooling = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        bodies = await store.mail.openMessages(ALICE, INBOX, [1])
        self.assertEqual(await deferToThread(readAll, bodies[1]), size)
        chunked = tracemalloc.get_traced_memory()[1]
        for peak in (delivering, spooling, chunked):
            self.assertLess(peak, size // 4)

    async def test_copySharesBody(self) -> None:
        """
        A copy refers to the same stored body; the body goes when the
        last message holding it is expunged.
        """
        store = await pgserver.startStore(self)
        await deliver(store, b"shared\r\n")
        await store.mail.createFolder(ALICE, "Keep")
        await store.mail.copy(ALICE, INBOX, [1], "Keep")

        def bodies(conn: Any) -> int:
            return int(conn.execute("SELECT COUNT(*) FROM bodies").fetchone()[0])

        self.assertEqual(await store.database.run(bodies), 1)
        await store.mail.expunge(ALICE, INBOX, [1])
        self.assertEqual(await store.database.run(bodies), 1)
        await store.mail.expunge(ALICE, "Keep", [1])
        self.assertEqual(await store.database.run(bodies), 0)

    async def test_spool(self) -> None:
        """
        A large body opened for reading is spooled to the store's spool
        directory and removed once no one holds it; a spooled body left
        by a crashed run is removed at start.
        """
        spool = os.path.abspath(self.mktemp())
        os.makedirs(spool)
        with open(os.path.join(spool, "appnet-body-stale"), "wb") as f:
            f.write(b"left by a crash")
        with open(os.path.join(spool, "other"), "wb") as f:
            f.write(b"not ours")
        store = await pgserver.startStore(self, spoolDir=spool)
        self.assertEqual(os.listdir(spool), ["other"])
        data = os.urandom(CHUNK + 1)
        await deliver(store, data)
        body = await store.mail.openMessage(ALICE, INBOX, 1)
        self.assertEqual(len(os.listdir(spool)), 2)
        with body.open() as f:
            self.assertEqual(f.read(), data)
        del body, f
        # The machinery that resumed this coroutine holds its last result
        # until the next wait.
        await store.mail.usage(ALICE)
        gc.collect()
        self.assertEqual(os.listdir(spool), ["other"])


class SchemaTests(TestCase):
    """The schema is versioned."""

    def test_interface(self) -> None:
        """The PostgreSQL store provides IStore (nothing opened yet)."""
        store = PostgreSQLStore.open("postgresql://nobody@/nothing", reactor)
        self.assertTrue(verifyObject(IStore, store))

    async def test_tooNew(self) -> None:
        """A database written by a newer appnet is refused at start."""
        url = await pgserver.freshDatabase(self)
        newer = dict(SCHEMAS)
        newer["users"] = [*SCHEMAS["users"], Migration(99, "SELECT 1")]
        store = PostgreSQLStore.open(url, reactor, newer)
        await store.start()
        await store.stop()
        old = PostgreSQLStore.open(url, reactor)
        self.addCleanup(old.stop)
        with self.assertRaises(SchemaTooNew) as caught:
            await old.start()
        self.assertIn("newer than this appnet knows", str(caught.exception))

    async def test_survivesReopen(self) -> None:
        """Messages are there when a node starts again."""
        url = await pgserver.freshDatabase(self)
        store = PostgreSQLStore.open(url, reactor)
        await store.start()
        await deliver(store, b"kept\r\n")
        await store.stop()
        again = PostgreSQLStore.open(url, reactor)
        await again.start()
        self.addCleanup(again.stop)
        body = await again.mail.openMessage(ALICE, INBOX, 1)
        with body.open() as f:
            self.assertEqual(f.read(), b"kept\r\n")


class RestartTests(TestCase):
    """The database goes away and comes back."""

    async def test_downAndBack(self) -> None:
        """
        With the server stopped, calls fail with StoreUnavailable (and
        no delivery is acknowledged); once it is back, calls succeed
        again, and a watcher on another node hears deliveries again.
        """
        server = pgserver.newServer()
        self.addCleanup(deferToThread, server.remove)
        await deferToThread(server.start)
        await deferToThread(pgserver.createDatabase, server, "appnet")
        url = server.url("appnet")
        a = PostgreSQLStore.open(url, reactor, timeout=1)
        b = PostgreSQLStore.open(url, reactor, timeout=1)
        for store in (a, b):
            await store.start()
            self.addCleanup(store.stop)
        await deliver(a, b"before\r\n")
        await deferToThread(server.stop)
        with self.assertRaises(StoreUnavailable):
            await deliver(a, b"while down\r\n")
        await deferToThread(server.start)
        heard: list[FolderInfo] = []
        got: Deferred[None] = Deferred()

        def callback(info: FolderInfo) -> None:
            heard.append(info)
            if info.messages == 2 and not got.called:
                got.callback(None)

        b.mail.watch(ALICE, INBOX, callback)
        self.assertEqual(await deliver(a, b"after\r\n"), 2)
        await got.addTimeout(60, reactor)
        self.assertEqual([m.uid for m in await b.mail.listMessages(ALICE)], [1, 2])


class ConnInfoTests(TestCase):
    """Where the database password comes from."""

    def test_passwordFile(self) -> None:
        """
        The password is read from the file's first line and joins the
        URL's parameters (sslmode included) only in the connection
        string handed to libpq.
        """
        from psycopg.conninfo import conninfo_to_dict

        from appnet.store.pg import conninfoFor

        path = self.mktemp()
        with open(path, "w") as f:
            f.write("s3cret\n")
        url = "postgresql://appnet@db.example.org:6432/mail?sslmode=verify-full"
        info = conninfo_to_dict(conninfoFor(url, path))
        self.assertEqual(
            (info["password"], info["user"], info["host"], info["sslmode"]),
            ("s3cret", "appnet", "db.example.org", "verify-full"),
        )
        self.assertEqual(info["dbname"], "mail")

    def test_noPasswordFile(self) -> None:
        """Without a file the URL is used as it is (libpq reads PGPASSFILE)."""
        from appnet.store.pg import conninfoFor

        url = "postgresql://appnet@db.example.org/mail"
        self.assertEqual(conninfoFor(url), url)
