"""
The SQLite implementation of the store interfaces.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from zope.interface import implementer

from appnet.errors import NoSuchUser, UserExists
from appnet.store._db import Database, Migration, connect, migrate
from appnet.store._files import MessageFiles
from appnet.store.domains import CachedDomains
from appnet.store.interfaces import (
    ISessionStore,
    IStore,
    IUserStore,
    SessionRecord,
    User,
)
from appnet.store.mailsqlite import SQLiteMailStore
from appnet.store.queuesqlite import SQLiteQueueStore
from appnet.store.schema import SCHEMAS
from appnet.store.threads import Threads

__all__ = [
    "SQLiteSessionStore",
    "SQLiteStore",
    "SQLiteUserStore",
    "auditFiles",
    "migrateFile",
]

T = TypeVar("T")


def _user(row: tuple[str, str, int, int | None, float, int]) -> User:
    return User(
        address=row[0],
        passwordHash=row[1],
        admin=bool(row[2]),
        quota=row[3],
        created=row[4],
        apop=bool(row[5]),
    )


_COLUMNS = "address, password, admin, quota, created"
#: What L{_user} reads: the columns, and whether there is an APOP secret
#: (never the secret itself).
_SELECT = _COLUMNS + ", apop_secret IS NOT NULL"


@implementer(IUserStore)
@define
class SQLiteUserStore:
    """
    Accounts in the C{users} table.

    The set of domains (asked at every RCPT) is cached: changes made
    through this store clear the cache at once, changes made by another
    process (the C{appnet user} command) are seen within
    C{domainsTTL} seconds.
    """

    _db: Database
    _now: Callable[[], float] = time.time
    domainsTTL: float = 5.0
    _domains: CachedDomains = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._domains = CachedDomains(self._now, self.domainsTTL)

    @property
    def generation(self) -> int:
        return self._domains.generation

    def _accountsChanged(self, result: T) -> T:
        self._domains.changed()
        return result

    def addUser(
        self,
        address: str,
        passwordHash: str,
        admin: bool = False,
        quota: int | None = None,
    ) -> Deferred[User]:
        user = User(address, passwordHash, admin, quota, self._now())

        def insert(conn: sqlite3.Connection) -> User:
            try:
                conn.execute(
                    f"INSERT INTO users (domain, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        user.domain,
                        address,
                        passwordHash,
                        int(admin),
                        quota,
                        user.created,
                    ),
                )
            except sqlite3.IntegrityError:
                raise UserExists(address) from None
            return user

        return self._db.write(insert).addCallback(self._accountsChanged)

    def getUser(self, address: str) -> Deferred[User | None]:
        def select(conn: sqlite3.Connection) -> User | None:
            row = conn.execute(
                f"SELECT {_SELECT} FROM users WHERE address = ?", (address,)
            ).fetchone()
            return None if row is None else _user(row)

        return self._db.read(select)

    def setPasswordHash(self, address: str, passwordHash: str) -> Deferred[None]:
        def update(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "UPDATE users SET password = ? WHERE address = ?",
                (passwordHash, address),
            )
            if cursor.rowcount == 0:
                raise NoSuchUser(address)

        return self._db.write(update)

    def setAPOPSecret(self, address: str, secret: str | None) -> Deferred[None]:
        def update(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "UPDATE users SET apop_secret = ? WHERE address = ?",
                (secret, address),
            )
            if cursor.rowcount == 0:
                raise NoSuchUser(address)

        return self._db.write(update)

    def getAPOPSecret(self, address: str) -> Deferred[str | None]:
        def select(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT apop_secret FROM users WHERE address = ?", (address,)
            ).fetchone()
            return None if row is None else row[0]

        return self._db.read(select)

    def deleteUser(self, address: str) -> Deferred[None]:
        def delete(conn: sqlite3.Connection) -> None:
            cursor = conn.execute("DELETE FROM users WHERE address = ?", (address,))
            if cursor.rowcount == 0:
                raise NoSuchUser(address)

        return self._db.write(delete).addCallback(self._accountsChanged)

    def listUsers(self) -> Deferred[Sequence[User]]:
        def select(conn: sqlite3.Connection) -> Sequence[User]:
            rows = conn.execute(
                f"SELECT {_SELECT} FROM users ORDER BY domain, address"
            ).fetchall()
            return [_user(row) for row in rows]

        return self._db.read(select)

    def domains(self) -> Deferred[frozenset[str]]:
        def select(conn: sqlite3.Connection) -> frozenset[str]:
            return frozenset(
                row[0] for row in conn.execute("SELECT DISTINCT domain FROM users")
            )

        return self._domains.get(lambda: self._db.read(select))


_SESSION_COLUMNS = "key, account, csrf, created, expires"


@implementer(ISessionStore)
@define
class SQLiteSessionStore:
    """
    Web sessions in the C{web_sessions} table.
    """

    _db: Database

    def addSession(self, record: SessionRecord) -> Deferred[None]:
        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO web_sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (
                    record.key,
                    record.account,
                    record.csrfToken,
                    record.created,
                    record.expires,
                ),
            )

        return self._db.write(insert)

    def getSession(self, key: str) -> Deferred[SessionRecord | None]:
        def select(conn: sqlite3.Connection) -> SessionRecord | None:
            row = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM web_sessions WHERE key = ?", (key,)
            ).fetchone()
            return None if row is None else SessionRecord(*row)

        return self._db.read(select)

    def touchSession(self, key: str, expires: float) -> Deferred[bool]:
        def update(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE web_sessions SET expires = ? WHERE key = ?", (expires, key)
            )
            return cursor.rowcount > 0

        return self._db.write(update)

    def deleteSession(self, key: str) -> Deferred[bool]:
        def delete(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("DELETE FROM web_sessions WHERE key = ?", (key,))
            return cursor.rowcount > 0

        return self._db.write(delete)

    def deleteAccountSessions(self, account: str) -> Deferred[int]:
        def delete(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "DELETE FROM web_sessions WHERE account = ?", (account,)
            )
            return cursor.rowcount

        return self._db.write(delete)

    def purgeExpired(self, now: float) -> Deferred[int]:
        def delete(conn: sqlite3.Connection) -> int:
            cursor = conn.execute("DELETE FROM web_sessions WHERE expires <= ?", (now,))
            return cursor.rowcount

        return self._db.write(delete)


@implementer(IStore)
@define
class SQLiteStore:
    """
    Every seam of the store over one SQLite file.
    """

    _db: Database
    users: SQLiteUserStore = field()
    sessions: SQLiteSessionStore = field()
    mail: SQLiteMailStore = field()
    queue: SQLiteQueueStore = field()
    #: The message-file threads; other components may run their own
    #: message-file work (reading bodies) here.
    fileThreads: Threads = field()

    @classmethod
    def open(
        cls,
        path: str,
        reactor: IReactorFromThreads,
        schemas: Mapping[str, Sequence[Migration]] = SCHEMAS,
        mailDir: str | None = None,
        now: Callable[[], float] | None = None,
        fileThreads: int = 4,
        databaseReaders: int = 2,
    ) -> SQLiteStore:
        """
        A store over the database file at C{path}. Nothing is opened until
        L{start}.

        @param mailDir: where message files live; default: C{mail/} beside
            the database file (the data directory's layout).
        @param now: the queue's time (when messages are queued, retried,
            released), so that it agrees with the clock of the queue
            runner; default: C{time.time}.
        @param fileThreads: threads for message files (writing, syncing,
            reading); the database has its own writer thread and
            C{databaseReaders} reader threads.
        """
        db = Database(path, reactor, schemas, databaseReaders)
        if mailDir is None:
            mailDir = os.path.join(os.path.dirname(os.path.abspath(path)), "mail")
        threads = Threads(reactor, "appnet-store-files", fileThreads)
        files = MessageFiles(mailDir, threads.call)
        return cls(
            db,
            SQLiteUserStore(db),
            SQLiteSessionStore(db),
            SQLiteMailStore(db, files, reactor, threads),
            SQLiteQueueStore(db, files, reactor, threads, now or time.time),
            threads,
        )

    @property
    def database(self) -> Database:
        """The underlying L{Database}, for components adding their seams."""
        return self._db

    def start(self) -> Deferred[None]:
        async def run() -> None:
            self.fileThreads.start()
            await self._db.start()
            await self.mail.start()
            await self.queue.sweep()

        return Deferred.fromCoroutine(run())

    def stop(self) -> Deferred[None]:
        async def run() -> None:
            self.mail.stop()
            await self.queue.whenRemoved()
            try:
                await self.fileThreads.stop()
            finally:
                await self._db.stop()

        return Deferred.fromCoroutine(run())


def auditFiles(
    path: str, mailDir: str | None = None, staleAfter: float = 86400.0
) -> tuple[int, list[str], list[str]]:
    """
    The message files of the SQLite store at C{path} against its index
    (blocking; read-only): how many files; the index's names with no file
    (lost mail); the files no message or queue entry names, last written
    more than C{staleAfter} seconds ago (left by a crash between a row's
    removal and its file's). C{appnet store check} reports both.
    """
    if mailDir is None:
        mailDir = os.path.join(os.path.dirname(os.path.abspath(path)), "mail")
    conn = connect(path, readOnly=True)
    try:
        # Small messages have body rows, not files (their C{file} is empty).
        query = "SELECT file FROM mail_messages WHERE file != ''"
        named = {r[0] for r in conn.execute(query)}
        named.update(r[0] for r in conn.execute("SELECT file FROM queue_messages"))
        files = MessageFiles(mailDir)
        count, missing, strays = files.audit(named, time.time() - staleAfter)
        # A message expunged while the files were listed: its row went
        # first, then its file. Only what the index still names is lost.
        still = set()
        for name in missing:
            for table in ("mail_messages", "queue_messages"):
                query = f"SELECT 1 FROM {table} WHERE file = ? LIMIT 1"
                if conn.execute(query, (name,)).fetchone():
                    still.add(name)
        lost = [name for name in missing if name in still and not files.exists(name)]
    finally:
        conn.close()
    return count, lost, strays


def migrateFile(
    path: str, schemas: Mapping[str, Sequence[Migration]] = SCHEMAS
) -> None:
    """
    Open the database at C{path}, apply pending migrations and close it,
    synchronously. Only for start-up before the reactor runs (twistd's
    preflight), where a broken store must stop the daemon with one line.
    """
    conn = connect(path)
    try:
        migrate(conn, schemas)
    finally:
        conn.close()
