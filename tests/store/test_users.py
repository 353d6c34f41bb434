"""
Tests for the user stores: one contract, run against the in-memory fake and
against SQLite, plus SQLite's own duties (migrations, durability, threads).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from appnet.errors import NoSuchUser, UserExists
from appnet.store._db import Database, Migration, SchemaTooNew, migrate
from appnet.store.interfaces import IStore, IUserStore
from appnet.store.memory import MemoryStore, MemoryUserStore
from appnet.store.schema import SCHEMAS
from appnet.store.sqlite import SQLiteStore, SQLiteUserStore, migrateFile
from tests import pgserver


class UserStoreContract:
    """
    What every L{IUserStore} does. Mixed into a TestCase that provides
    C{makeStore}.
    """

    async def makeStore(self) -> IUserStore:
        raise NotImplementedError

    async def test_interface(self) -> None:
        """The store provides IUserStore."""
        self.assertTrue(verifyObject(IUserStore, await self.makeStore()))  # type: ignore[attr-defined]

    async def test_addAndGet(self) -> None:
        """An added user can be fetched with all its fields."""
        users = await self.makeStore()
        added = await users.addUser("alice@example.org", "$scrypt$x", True, 1000)
        fetched = await users.getUser("alice@example.org")
        self.assertEqual(fetched, added)  # type: ignore[attr-defined]
        assert fetched is not None
        self.assertEqual(  # type: ignore[attr-defined]
            (fetched.passwordHash, fetched.admin, fetched.quota, fetched.domain),
            ("$scrypt$x", True, 1000, "example.org"),
        )

    async def test_missing(self) -> None:
        """Fetching an unknown user gives None."""
        users = await self.makeStore()
        self.assertIsNone(await users.getUser("nobody@example.org"))  # type: ignore[attr-defined]

    async def test_duplicate(self) -> None:
        """Adding an existing address fails with UserExists."""
        users = await self.makeStore()
        await users.addUser("alice@example.org", "h1")
        with self.assertRaises(UserExists):  # type: ignore[attr-defined]
            await users.addUser("alice@example.org", "h2")

    async def test_setPassword(self) -> None:
        """The password hash can be replaced; unknown users fail."""
        users = await self.makeStore()
        await users.addUser("alice@example.org", "h1")
        await users.setPasswordHash("alice@example.org", "h2")
        user = await users.getUser("alice@example.org")
        assert user is not None
        self.assertEqual(user.passwordHash, "h2")  # type: ignore[attr-defined]
        with self.assertRaises(NoSuchUser):  # type: ignore[attr-defined]
            await users.setPasswordHash("bob@example.org", "h")

    async def test_delete(self) -> None:
        """A deleted user is gone; deleting an unknown user fails."""
        users = await self.makeStore()
        await users.addUser("alice@example.org", "h1")
        await users.deleteUser("alice@example.org")
        self.assertIsNone(await users.getUser("alice@example.org"))  # type: ignore[attr-defined]
        with self.assertRaises(NoSuchUser):  # type: ignore[attr-defined]
            await users.deleteUser("alice@example.org")

    async def test_generation(self) -> None:
        """
        C{generation} moves on as soon as an account is added or deleted
        through the store (what caches of account facts compare).
        """
        store = await self.makeStore()
        first = store.generation
        await store.addUser("alice@example.org", "h")
        added = store.generation
        self.assertNotEqual(added, first)
        await store.deleteUser("alice@example.org")
        self.assertNotIn(store.generation, (first, added))

    async def test_listAndDomains(self) -> None:
        """Users are listed by domain then address; domains are distinct."""
        users = await self.makeStore()
        for address in ("zed@crepes.fr", "bob@hamburger.edu", "alice@crepes.fr"):
            await users.addUser(address, "h")
        listed = [u.address for u in await users.listUsers()]
        self.assertEqual(  # type: ignore[attr-defined]
            listed, ["alice@crepes.fr", "zed@crepes.fr", "bob@hamburger.edu"]
        )
        self.assertEqual(  # type: ignore[attr-defined]
            await users.domains(), frozenset({"crepes.fr", "hamburger.edu"})
        )

    async def test_apopSecretNoneByDefault(self) -> None:
        """A new account has no APOP secret; an unknown one reads as None."""
        users = await self.makeStore()
        added = await users.addUser("alice@example.org", "h1")
        self.assertFalse(added.apop)  # type: ignore[attr-defined]
        self.assertIsNone(await users.getAPOPSecret("alice@example.org"))  # type: ignore[attr-defined]
        self.assertIsNone(await users.getAPOPSecret("nobody@example.org"))  # type: ignore[attr-defined]

    async def test_apopSecretSetAndClear(self) -> None:
        """
        The APOP secret is stored as given, shows as the C{apop} flag in
        getUser and listUsers (the record never carries the secret), and
        C{None} removes it.
        """
        users = await self.makeStore()
        await users.addUser("alice@example.org", "h1")
        await users.addUser("bob@example.org", "h2")
        await users.setAPOPSecret("alice@example.org", "tanstaaf-ü")
        self.assertEqual(  # type: ignore[attr-defined]
            await users.getAPOPSecret("alice@example.org"), "tanstaaf-ü"
        )
        alice = await users.getUser("alice@example.org")
        assert alice is not None
        self.assertTrue(alice.apop)  # type: ignore[attr-defined]
        self.assertNotIn("tanstaaf", repr(alice))  # type: ignore[attr-defined]
        flags = {u.address: u.apop for u in await users.listUsers()}
        self.assertEqual(  # type: ignore[attr-defined]
            flags, {"alice@example.org": True, "bob@example.org": False}
        )
        await users.setAPOPSecret("alice@example.org", "another-1")
        self.assertEqual(  # type: ignore[attr-defined]
            await users.getAPOPSecret("alice@example.org"), "another-1"
        )
        await users.setAPOPSecret("alice@example.org", None)
        self.assertIsNone(await users.getAPOPSecret("alice@example.org"))  # type: ignore[attr-defined]
        alice = await users.getUser("alice@example.org")
        assert alice is not None
        self.assertFalse(alice.apop)  # type: ignore[attr-defined]
        # Clearing what is not there is not an error.
        await users.setAPOPSecret("alice@example.org", None)

    async def test_apopSecretUnknownUser(self) -> None:
        """Setting or clearing an unknown account's APOP secret fails."""
        users = await self.makeStore()
        for secret in ("tanstaaf", None):
            with self.assertRaises(NoSuchUser):  # type: ignore[attr-defined]
                await users.setAPOPSecret("nobody@example.org", secret)

    async def test_apopSecretSeparateFromPassword(self) -> None:
        """Changing the login password leaves the APOP secret alone."""
        users = await self.makeStore()
        await users.addUser("alice@example.org", "h1")
        await users.setAPOPSecret("alice@example.org", "tanstaaf")
        await users.setPasswordHash("alice@example.org", "h2")
        self.assertEqual(  # type: ignore[attr-defined]
            await users.getAPOPSecret("alice@example.org"), "tanstaaf"
        )
        alice = await users.getUser("alice@example.org")
        assert alice is not None
        self.assertEqual((alice.passwordHash, alice.apop), ("h2", True))  # type: ignore[attr-defined]

    async def test_apopSecretGoesWithUser(self) -> None:
        """
        Deleting an account deletes its APOP secret: an account added
        again under the same address has none.
        """
        users = await self.makeStore()
        await users.addUser("alice@example.org", "h1")
        await users.setAPOPSecret("alice@example.org", "tanstaaf")
        await users.deleteUser("alice@example.org")
        self.assertIsNone(await users.getAPOPSecret("alice@example.org"))  # type: ignore[attr-defined]
        again = await users.addUser("alice@example.org", "h2")
        self.assertFalse(again.apop)  # type: ignore[attr-defined]
        self.assertIsNone(await users.getAPOPSecret("alice@example.org"))  # type: ignore[attr-defined]

    async def test_reprHidesHash(self) -> None:
        """A user's repr never shows the password hash."""
        users = await self.makeStore()
        user = await users.addUser("alice@example.org", "$scrypt$secret")
        self.assertNotIn("secret", repr(user))  # type: ignore[attr-defined]


class MemoryUserStoreTests(UserStoreContract, TestCase):
    """The in-memory fake keeps the contract."""

    async def makeStore(self) -> IUserStore:
        return MemoryUserStore()

    def test_storeInterface(self) -> None:
        """The memory store provides IStore."""
        self.assertTrue(verifyObject(IStore, MemoryStore()))


class SQLiteUserStoreTests(UserStoreContract, TestCase):
    """The SQLite store keeps the contract."""

    async def makeStore(self) -> IUserStore:
        self.path = self.mktemp()
        store = SQLiteStore.open(self.path, reactor)
        await store.start()
        self.addCleanup(store.stop)
        return store.users

    def test_storeInterface(self) -> None:
        """The SQLite store provides IStore."""
        self.assertTrue(verifyObject(IStore, SQLiteStore.open(self.mktemp(), reactor)))

    async def test_survivesReopen(self) -> None:
        """Users written are there after the store is closed and reopened."""
        path = self.mktemp()
        store = SQLiteStore.open(path, reactor)
        await store.start()
        await store.users.addUser("alice@example.org", "h")
        await store.stop()
        again = SQLiteStore.open(path, reactor)
        await again.start()
        self.addCleanup(again.stop)
        self.assertIsNotNone(await again.users.getUser("alice@example.org"))

    async def test_apopMigration(self) -> None:
        """
        A store made before APOP secrets existed (users schema version 1)
        is migrated on open; its accounts have no APOP secret and can be
        given one.
        """
        path = self.mktemp()
        old = dict(SCHEMAS, users=SCHEMAS["users"][:1])
        migrateFile(path, old)
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(
                "INSERT INTO users (address, domain, password, created)"
                " VALUES ('alice@example.org', 'example.org', 'h', 0)"
            )
        conn.close()
        store = SQLiteStore.open(path, reactor)
        await store.start()
        self.addCleanup(store.stop)
        alice = await store.users.getUser("alice@example.org")
        assert alice is not None
        self.assertEqual((alice.passwordHash, alice.apop), ("h", False))
        self.assertIsNone(await store.users.getAPOPSecret("alice@example.org"))
        await store.users.setAPOPSecret("alice@example.org", "tanstaaf")
        self.assertEqual(
            await store.users.getAPOPSecret("alice@example.org"), "tanstaaf"
        )

    async def test_domainsCached(self) -> None:
        """
        The domains are read once and then cached: a change made by
        another process is seen only after C{domainsTTL}, a change made
        through the store at once (added or deleted accounts).
        """
        path = self.mktemp()
        store = SQLiteStore.open(path, reactor)
        await store.start()
        self.addCleanup(store.stop)
        now = [1000.0]
        users = SQLiteUserStore(store.database, lambda: now[0], domainsTTL=5.0)
        await users.addUser("alice@crepes.fr", "h")
        self.assertEqual(await users.domains(), frozenset({"crepes.fr"}))
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        with conn:
            conn.execute(
                "INSERT INTO users (address, domain, password, created)"
                " VALUES ('x@elsewhere.example', 'elsewhere.example', 'h', 0)"
            )
        self.assertEqual(await users.domains(), frozenset({"crepes.fr"}))
        await users.addUser("bob@hamburger.edu", "h")
        everything = frozenset({"crepes.fr", "hamburger.edu", "elsewhere.example"})
        self.assertEqual(await users.domains(), everything)
        await users.deleteUser("bob@hamburger.edu")
        self.assertEqual(
            await users.domains(), frozenset({"crepes.fr", "elsewhere.example"})
        )
        with conn:
            conn.execute("DELETE FROM users WHERE domain = 'elsewhere.example'")
        now[0] += 4.0
        self.assertIn("elsewhere.example", await users.domains())
        now[0] += 2.0
        self.assertEqual(await users.domains(), frozenset({"crepes.fr"}))

    async def test_privateFile(self) -> None:
        """The database file (it holds password hashes) is mode 0600."""
        await self.makeStore()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    async def test_walMode(self) -> None:
        """The database runs in WAL mode."""
        await self.makeStore()
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal")

    async def test_schemaVersioned(self) -> None:
        """Every component's schema version is recorded."""
        await self.makeStore()
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        versions = dict(conn.execute("SELECT component, version FROM schema_version"))
        self.assertEqual(
            versions, {name: steps[-1].version for name, steps in SCHEMAS.items()}
        )


class DatabaseTests(TestCase):
    """
    L{Database}: threads, transactions, migrations.
    """

    async def start(self, schemas: dict[str, list[Migration]]) -> Database:
        db = Database(self.mktemp(), reactor, schemas)
        await db.start()
        self.addCleanup(db.stop)
        return db

    async def test_offReactorThread(self) -> None:
        """Reads and writes run in threads other than the reactor's."""
        db = await self.start({})
        main = threading.current_thread()
        wrote = await db.write(lambda conn: threading.current_thread())
        read = await db.read(lambda conn: threading.current_thread())
        self.assertIsNot(wrote, main)
        self.assertIsNot(read, main)

    async def test_rollback(self) -> None:
        """A write that raises leaves nothing behind."""
        db = await self.start({"t": [Migration(1, "CREATE TABLE t (x INTEGER)")]})

        def failing(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES (1)")
            raise ValueError("boom")

        with self.assertRaises(ValueError):
            await db.write(failing)
        count = await db.read(
            lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]
        )
        self.assertEqual(count, 0)

    async def test_writesInOrder(self) -> None:
        """Writes submitted together commit in submission order."""
        db = await self.start({"t": [Migration(1, "CREATE TABLE t (x INTEGER)")]})
        from twisted.internet.defer import gatherResults

        await gatherResults(
            [
                db.write(lambda c, i=i: c.execute("INSERT INTO t VALUES (?)", (i,)))
                for i in range(20)
            ]
        )
        rows = await db.read(lambda c: [r[0] for r in c.execute("SELECT x FROM t")])
        self.assertEqual(rows, list(range(20)))

    async def test_callsBeforeOpenWait(self) -> None:
        """A read issued right after start waits for the migrations."""
        db = Database(
            self.mktemp(), reactor, {"t": [Migration(1, "CREATE TABLE t (x)")]}
        )
        started = db.start()
        self.addCleanup(db.stop)
        count = await db.read(
            lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]
        )
        await started
        self.assertEqual(count, 0)

    async def test_openFailure(self) -> None:
        """A database that cannot be opened fails start() and later calls."""
        db = Database(os.path.join(self.mktemp(), "no", "such.sqlite"), reactor, {})
        self.addCleanup(db.stop)
        with self.assertRaises((sqlite3.Error, OSError)):
            await db.start()
        with self.assertRaises((sqlite3.Error, OSError)):
            await db.read(lambda c: None)

    async def test_stopJoinsThreads(self) -> None:
        """After stop, no store thread is left."""
        db = Database(self.mktemp(), reactor, {})
        await db.start()
        await db.write(lambda c: None)
        await db.read(lambda c: None)
        await db.stop()
        names = [t.name for t in threading.enumerate()]
        self.assertFalse([n for n in names if "appnet-store" in n], names)


class MigrationTests(TestCase):
    """
    L{migrate} applies each component's pending steps once, atomically.
    """

    def test_appliesPendingOnly(self) -> None:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        steps = [Migration(1, "CREATE TABLE a (x)")]
        migrate(conn, {"c": steps})
        migrate(conn, {"c": steps + [Migration(2, "ALTER TABLE a ADD COLUMN y")]})
        columns = [row[1] for row in conn.execute("PRAGMA table_info(a)")]
        self.assertEqual(columns, ["x", "y"])

    def test_failedStepRollsBack(self) -> None:
        """A failing step leaves the schema and version as they were."""
        conn = sqlite3.connect(":memory:", isolation_level=None)
        migrate(conn, {"c": [Migration(1, "CREATE TABLE a (x)")]})
        bad = [
            Migration(1, "CREATE TABLE a (x)"),
            Migration(2, "CREATE TABLE b (x); NONSENSE"),
        ]
        self.assertRaises(sqlite3.OperationalError, migrate, conn, {"c": bad})
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        self.assertNotIn("b", tables)
        version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
        self.assertEqual(version, 1)

    def test_newerSchemaRefused(self) -> None:
        """A store written by a newer appnet is refused with a clear error."""
        path = self.mktemp()
        migrateFile(
            path, {"users": [Migration(1, "CREATE TABLE u (x)"), Migration(2, "")]}
        )
        with self.assertRaises(SchemaTooNew) as caught:
            migrateFile(path, {"users": [Migration(1, "CREATE TABLE u (x)")]})
        self.assertIn("upgrade appnet", str(caught.exception))


class PostgreSQLUserStoreTests(UserStoreContract, TestCase):
    """The PostgreSQL store keeps the contract."""

    async def makeStore(self) -> IUserStore:
        store = await pgserver.startStore(self)
        users: IUserStore = store.users
        return users
