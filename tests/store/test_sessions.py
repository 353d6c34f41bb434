"""
Tests for the web session stores: one contract, run against the in-memory
fake and against SQLite, plus durability across a reopen.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from appnet.store.interfaces import ISessionStore, SessionRecord
from appnet.store.memory import MemorySessionStore
from appnet.store.sqlite import SQLiteStore
from tests import pgserver


def record(
    key: str, account: str = "alice@example.org", expires: float = 100.0
) -> SessionRecord:
    return SessionRecord(key, account, "csrf-" + key, 10.0, expires)


class SessionStoreContract:
    """
    What every L{ISessionStore} does. Mixed into a TestCase that provides
    C{makeStore}.
    """

    async def makeStore(self) -> ISessionStore:
        raise NotImplementedError

    async def test_interface(self) -> None:
        """The store provides ISessionStore."""
        self.assertTrue(verifyObject(ISessionStore, await self.makeStore()))  # type: ignore[attr-defined]

    async def test_addAndGet(self) -> None:
        """An added session is returned whole by its key."""
        sessions = await self.makeStore()
        await sessions.addSession(record("k1"))
        self.assertEqual(await sessions.getSession("k1"), record("k1"))  # type: ignore[attr-defined]
        self.assertIsNone(await sessions.getSession("k2"))  # type: ignore[attr-defined]

    async def test_touch(self) -> None:
        """Touching moves the expiry and says whether the session exists."""
        sessions = await self.makeStore()
        await sessions.addSession(record("k1"))
        self.assertTrue(await sessions.touchSession("k1", 500.0))  # type: ignore[attr-defined]
        found = await sessions.getSession("k1")
        assert found is not None
        self.assertEqual(found.expires, 500.0)  # type: ignore[attr-defined]
        self.assertEqual(found.csrfToken, "csrf-k1")  # type: ignore[attr-defined]
        self.assertFalse(await sessions.touchSession("nope", 500.0))  # type: ignore[attr-defined]

    async def test_delete(self) -> None:
        """A deleted session is gone; deleting twice says so."""
        sessions = await self.makeStore()
        await sessions.addSession(record("k1"))
        self.assertTrue(await sessions.deleteSession("k1"))  # type: ignore[attr-defined]
        self.assertIsNone(await sessions.getSession("k1"))  # type: ignore[attr-defined]
        self.assertFalse(await sessions.deleteSession("k1"))  # type: ignore[attr-defined]

    async def test_deleteAccount(self) -> None:
        """Every session of one account can be deleted at once."""
        sessions = await self.makeStore()
        await sessions.addSession(record("a1"))
        await sessions.addSession(record("a2"))
        await sessions.addSession(record("b1", account="bob@example.org"))
        self.assertEqual(await sessions.deleteAccountSessions("alice@example.org"), 2)  # type: ignore[attr-defined]
        self.assertIsNone(await sessions.getSession("a2"))  # type: ignore[attr-defined]
        self.assertIsNotNone(await sessions.getSession("b1"))  # type: ignore[attr-defined]

    async def test_purge(self) -> None:
        """Purging removes sessions expired at or before the given time."""
        sessions = await self.makeStore()
        await sessions.addSession(record("old", expires=50.0))
        await sessions.addSession(record("edge", expires=60.0))
        await sessions.addSession(record("new", expires=61.0))
        self.assertEqual(await sessions.purgeExpired(60.0), 2)  # type: ignore[attr-defined]
        self.assertIsNone(await sessions.getSession("edge"))  # type: ignore[attr-defined]
        self.assertIsNotNone(await sessions.getSession("new"))  # type: ignore[attr-defined]

    async def test_reprHidesSecrets(self) -> None:
        """A session's repr shows neither its key nor its CSRF token."""
        text = repr(record("secret-key"))
        self.assertNotIn("secret-key", text)  # type: ignore[attr-defined]


class MemorySessionStoreTests(SessionStoreContract, TestCase):
    """The in-memory fake keeps the contract."""

    async def makeStore(self) -> ISessionStore:
        return MemorySessionStore()


class SQLiteSessionStoreTests(SessionStoreContract, TestCase):
    """The SQLite store keeps the contract."""

    async def makeStore(self) -> ISessionStore:
        store = SQLiteStore.open(self.mktemp(), reactor)
        await store.start()
        self.addCleanup(store.stop)
        return store.sessions

    async def test_survivesReopen(self) -> None:
        """Sessions are there after the store is closed and reopened."""
        path = self.mktemp()
        store = SQLiteStore.open(path, reactor)
        await store.start()
        await store.sessions.addSession(record("k1"))
        await store.stop()
        again = SQLiteStore.open(path, reactor)
        await again.start()
        self.addCleanup(again.stop)
        self.assertEqual(await again.sessions.getSession("k1"), record("k1"))


class PostgreSQLSessionStoreTests(SessionStoreContract, TestCase):
    """The PostgreSQL store keeps the contract."""

    async def makeStore(self) -> ISessionStore:
        store = await pgserver.startStore(self)
        sessions: ISessionStore = store.sessions
        return sessions
