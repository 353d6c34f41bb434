"""
PostgreSQL access that never blocks the reactor.

Queries run in a dedicated thread pool sized to the connection pool
(C{psycopg_pool}), not in psycopg's non-blocking mode: each store call is a
whole transaction (row locks, read-modify-write, message chunks streamed
with COPY), which reads plainly as blocking code in a thread, and one
setting bounds both the threads and the connections a node holds. The
reactor only ever waits on a Deferred. A lost server fails calls with
L{StoreUnavailable}; the pool checks connections before lending them and
reconnects by itself once the server is back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from attrs import define, field
from psycopg import errors as pgerrors
from psycopg_pool import ConnectionPool, PoolTimeout
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from appnet.errors import StoreUnavailable
from appnet.store._db import Migration, SchemaTooNew

__all__ = ["PGDatabase", "StoreUnavailable", "migrate", "oneLine"]

T = TypeVar("T")
Connection = psycopg.Connection[Any]

#: The advisory lock key nodes take while migrating, so that two nodes
#: starting together do not both apply a step.
_MIGRATION_LOCK = 0x61707066


def oneLine(error: BaseException) -> str:
    """A driver error's text on one line (libpq's run over several)."""
    return " ".join(str(error).split())


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


def migrate(conn: Connection, schemas: Mapping[str, Sequence[Migration]]) -> None:
    """
    Bring every component's schema up to date in one transaction, under
    an advisory lock.

    @raise SchemaTooNew: if a component's stored version is newer than
        the newest migration known here.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        for component, steps in schemas.items():
            row = conn.execute(
                "SELECT version FROM schema_version WHERE component = %s",
                (component,),
            ).fetchone()
            current = row[0] if row else 0
            newest = max((step.version for step in steps), default=0)
            if current > newest:
                raise SchemaTooNew(
                    f"store schema of {component!r} is version {current}, newer"
                    f" than this appnet knows ({newest}); upgrade appnet"
                )
            for step in sorted(steps, key=lambda s: s.version):
                if step.version <= current:
                    continue
                for statement in _statements(step.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version VALUES (%s, %s)"
                    " ON CONFLICT (component) DO UPDATE SET version = %s",
                    (component, step.version, step.version),
                )


#: Errors after which a transaction is simply run again.
_RETRY = (pgerrors.SerializationFailure, pgerrors.DeadlockDetected)


@define
class PGDatabase:
    """
    A PostgreSQL database whose every call runs, as one transaction, in a
    thread of a dedicated pool holding one connection per thread.

    Construction only assigns; L{start} opens the pool and migrates.
    """

    conninfo: str
    _reactor: IReactorFromThreads
    _schemas: Mapping[str, Sequence[Migration]]
    size: int = 8
    #: How long a call waits for a connection before failing with
    #: L{StoreUnavailable} (the server down: SMTP then answers 451).
    timeout: float = 5.0
    _threads: ThreadPool | None = field(default=None, init=False)
    _pool: ConnectionPool[Any] | None = field(default=None, init=False)
    _log = Logger()

    @property
    def pool(self) -> ConnectionPool[Any]:
        """The connection pool (for blocking readers in other threads)."""
        assert self._pool is not None, "PGDatabase.start() was not called"
        return self._pool

    def start(self) -> Deferred[None]:
        """
        Open the pool and apply pending migrations.

        @return: fires when ready; fails with L{SchemaTooNew} or
            L{StoreUnavailable}.
        """
        self._threads = ThreadPool(1, self.size, name="appnet-pg")
        self._threads.start()
        self._pool = ConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=self.size,
            open=False,
            timeout=self.timeout,
            reconnect_timeout=0,
            check=ConnectionPool.check_connection,
            name="appnet",
        )
        pool = self._pool

        def open() -> None:
            try:
                pool.open(wait=True, timeout=10)
                with pool.connection() as conn:
                    conn.autocommit = True
                    try:
                        migrate(conn, self._schemas)
                    finally:
                        conn.autocommit = False
            except (psycopg.OperationalError, PoolTimeout) as e:
                raise StoreUnavailable(
                    f"cannot reach the database: {oneLine(e)}"
                ) from e

        return deferToThreadPool(self._reactor, self._threads, open)

    def run(self, fn: Callable[[Connection], T]) -> Deferred[T]:
        """
        Run C{fn(connection)} as one transaction in a database thread:
        committed (durably) if it returns, rolled back if it raises, run
        again after a deadlock or serialisation failure.
        """
        assert self._threads is not None, "PGDatabase.start() was not called"
        return deferToThreadPool(self._reactor, self._threads, self.runBlocking, fn)

    def runBlocking(self, fn: Callable[[Connection], T]) -> T:
        """
        L{run}'s body: call only from a thread that may block.
        """
        pool = self.pool
        for attempt in range(10):
            try:
                with pool.connection() as conn:
                    return fn(conn)
            except _RETRY:
                if attempt == 9:
                    raise
            except (psycopg.OperationalError, PoolTimeout) as e:
                raise StoreUnavailable(f"database unavailable: {oneLine(e)}") from e
        raise AssertionError("unreachable")

    def stop(self) -> Deferred[None]:
        """
        Finish queued work, close the pool and stop the threads.
        """
        threads, pool = self._threads, self._pool
        self._threads = self._pool = None
        d: Deferred[None] = Deferred()
        reactor = self._reactor

        def run() -> None:
            try:
                if threads is not None:
                    threads.stop()
                if pool is not None:
                    pool.close()
            except BaseException as e:
                reactor.callFromThread(d.errback, e)
            else:
                reactor.callFromThread(d.callback, None)

        thread = threading.Thread(target=run, name="appnet-pg-stop", daemon=True)
        thread.start()

        def joined(result: object) -> object:
            thread.join()
            return result

        return d.addBoth(joined)
