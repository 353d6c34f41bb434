"""
SQLite access that never blocks the reactor.

One writer thread owns the only writing connection, so writes are serialised
in submission order and each runs in its own C{BEGIN IMMEDIATE} transaction;
a small pool of reader threads serves reads from their own connections,
which WAL mode lets run beside the writer. Commits are durable
(C{synchronous=FULL}): when a write's Deferred fires, the change is on disk.

Schemas are versioned per component (C{"users"}, C{"mail"}, ...), each a list
of migrations applied in order at start, so protocol packages own their
tables without coordinating version numbers.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from attrs import define, field, frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from appnet.errors import StoreError

T = TypeVar("T")

#: Query at most this many values per C{IN (...)} list.
BATCH = 500


def batches(items: Sequence[int]) -> list[Sequence[int]]:
    """
    C{items} cut into lists short enough for one C{IN (...)} each.
    """
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


@frozen
class Migration:
    """
    One step of a component's schema.

    @ivar version: the schema version this step produces (1, 2, ...).
    @ivar sql: statements to run, separated by semicolons.
    """

    version: int
    sql: str


class SchemaTooNew(StoreError):
    """
    The database was written by a newer appnet than this one.
    """


def migrate(
    conn: sqlite3.Connection, schemas: Mapping[str, Sequence[Migration]]
) -> None:
    """
    Bring every component's schema up to date, each migration atomically.

    @param conn: an open connection in autocommit mode.
    @raise SchemaTooNew: if a component's stored version is newer than the
        newest migration known here.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    for component, steps in schemas.items():
        row = conn.execute(
            "SELECT version FROM schema_version WHERE component = ?", (component,)
        ).fetchone()
        current = row[0] if row else 0
        newest = max((step.version for step in steps), default=0)
        if current > newest:
            raise SchemaTooNew(
                f"store schema of {component!r} is version {current}, newer than"
                f" this appnet knows ({newest}); upgrade appnet"
            )
        for step in sorted(steps, key=lambda s: s.version):
            if step.version <= current:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(step.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT OR REPLACE INTO schema_version VALUES (?, ?)",
                    (component, step.version),
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def _statements(sql: str) -> list[str]:
    """
    Split a migration script into statements (migrations hold no
    semicolons inside literals or triggers).
    """
    return [s.strip() for s in sql.split(";") if s.strip()]


def connect(path: str, *, readOnly: bool = False) -> sqlite3.Connection:
    """
    Open the database with appnet's settings: WAL, full fsync on commit,
    foreign keys, and a busy timeout so the C{appnet} command and the daemon
    can write the same file.
    """
    if not readOnly and not os.path.exists(path):
        # The store holds password hashes and mail: private from the start
        # (SQLite gives its -wal and -shm files the same mode).
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(
        path, timeout=30, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA busy_timeout = 30000")
    if not readOnly:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    if readOnly:
        conn.execute("PRAGMA query_only = ON")
    return conn


@define
class Database:
    """
    An SQLite database whose every call runs in a thread of its own pools.

    Construction only assigns; L{start} opens the database and migrates it,
    L{stop} closes it. Calls made between L{start} and the end of the
    migration wait for it.
    """

    _path: str
    _reactor: IReactorFromThreads
    _schemas: Mapping[str, Sequence[Migration]]
    _readers: int = 2
    _writePool: ThreadPool | None = field(default=None, init=False)
    _readPool: ThreadPool | None = field(default=None, init=False)
    _writer: sqlite3.Connection | None = field(default=None, init=False)
    _readConnections: list[sqlite3.Connection] = field(factory=list, init=False)
    _local: threading.local = field(factory=threading.local, init=False)
    _opened: bool | Failure = field(default=False, init=False)
    _waiters: list[Deferred[None]] = field(factory=list, init=False)
    _log = Logger()

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    def start(self) -> Deferred[None]:
        """
        Start the thread pools, open the database and apply migrations.

        @return: fires when the database is ready, or fails with the reason
            it could not be opened.
        """
        self._writePool = ThreadPool(1, 1, name="appnet-store-write")
        self._readPool = ThreadPool(1, self._readers, name="appnet-store-read")
        self._writePool.start()
        self._readPool.start()

        def open() -> None:
            conn = connect(self._path)
            try:
                migrate(conn, self._schemas)
            except BaseException:
                conn.close()
                raise
            self._writer = conn

        def opened(result: None | Failure) -> None:
            self._opened = result if isinstance(result, Failure) else True
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                self._fireWaiter(waiter)

        self._opened = False
        deferToThreadPool(self._reactor, self._writePool, open).addBoth(opened)
        return self.whenReady()

    def _fireWaiter(self, waiter: Deferred[None]) -> None:
        if isinstance(self._opened, Failure):
            waiter.errback(self._opened)
        else:
            waiter.callback(None)

    def whenReady(self) -> Deferred[None]:
        """
        A Deferred that fires once the database is open and migrated (or
        fails if it could not be).
        """
        waiter: Deferred[None] = Deferred()
        if self._opened is False:
            self._waiters.append(waiter)
        else:
            self._fireWaiter(waiter)
        return waiter

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """
        Run C{fn(connection)} in one write transaction in the writer thread;
        commit (durably) if it returns, roll back if it raises.
        """
        assert self._writePool is not None, "Database.start() was not called"
        # The writer pool has one thread and runs jobs in order, so a write
        # submitted before the database finished opening runs after it.
        return deferToThreadPool(self._reactor, self._writePool, self.transaction, fn)

    def callInWriter(self, fn: Callable[[], object]) -> None:
        """
        Call C{fn()} in the writer thread, after the writes already
        submitted, for no result: work that runs its own L{transaction}s
        there and reports back itself (a group commit's batches, each
        filed and committed in one call). Thread-safe.

        @raise StoreError: if the database is stopped.
        """
        pool = self._writePool
        if pool is None:
            raise StoreError("the store is not open")
        pool.callInThread(fn)

    def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """
        Run C{fn(connection)} in one write transaction; commit (durably)
        if it returns, roll back if it raises. Blocking: only in the
        writer thread (from L{callInWriter}).
        """
        conn = self._writer
        if conn is None:
            raise StoreError("the store is not open")
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """
        Run C{fn(connection)} in a reader thread, on a connection that sees
        every committed write.
        """
        assert self._readPool is not None, "Database.start() was not called"
        pool = self._readPool

        def run() -> T:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = connect(self._path, readOnly=True)
                self._local.conn = conn
                self._readConnections.append(conn)
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        if self._opened is True:
            # The usual case: no need to wait for the database to open.
            return deferToThreadPool(self._reactor, pool, run)

        async def afterReady() -> T:
            await self.whenReady()
            return await deferToThreadPool(self._reactor, pool, run)

        return Deferred.fromCoroutine(afterReady())

    def stop(self) -> Deferred[None]:
        """
        Finish queued work, close every connection and stop the threads.
        """
        writePool, readPool = self._writePool, self._readPool
        if writePool is None or readPool is None:
            return Deferred.fromCoroutine(_nothing())
        self._writePool = self._readPool = None

        def closeAll() -> None:
            # Runs in a fresh thread: ThreadPool.stop() waits for queued jobs
            # and joins the workers, which must not happen on the reactor.
            readPool.stop()
            writePool.stop()
            for conn in self._readConnections:
                conn.close()
            self._readConnections.clear()
            if self._writer is not None:
                self._writer.close()
                self._writer = None

        d: Deferred[None] = Deferred()

        def run() -> None:
            try:
                closeAll()
            except BaseException as e:
                self._reactor.callFromThread(d.errback, e)
            else:
                self._reactor.callFromThread(d.callback, None)

        thread = threading.Thread(target=run, name="appnet-store-stop", daemon=True)
        thread.start()

        def joined(result: object) -> object:
            # The thread fired us as its last act; wait the instant it takes
            # to end, so "stopped" means no store thread is left.
            thread.join()
            return result

        return d.addBoth(joined)


async def _nothing() -> None:
    return None


__all__ = [
    "BATCH",
    "Database",
    "Migration",
    "SchemaTooNew",
    "batches",
    "connect",
    "migrate",
]
