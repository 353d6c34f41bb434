"""
Every seam of the store over one PostgreSQL database, shared by any number
of appnet nodes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import psycopg
from attrs import define
from psycopg.conninfo import make_conninfo
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThread
from zope.interface import implementer

from appnet.errors import StoreError
from appnet.store._db import Migration
from appnet.store.interfaces import IStore
from appnet.store.pg.bodies import SPOOL_PREFIX
from appnet.store.pg.database import PGDatabase, StoreUnavailable, migrate, oneLine
from appnet.store.pg.mail import MAIL_CHANNEL, PGMailStore
from appnet.store.pg.notify import Listener
from appnet.store.pg.queue import QUEUE_CHANNEL, PGQueueStore
from appnet.store.pg.schema import SCHEMAS
from appnet.store.pg.users import USERS_CHANNEL, PGSessionStore, PGUserStore

__all__ = ["PostgreSQLStore", "conninfoFor", "migrateDatabase"]


@implementer(IStore)
@define
class PostgreSQLStore:
    """
    Accounts, sessions, mail and the queue in PostgreSQL.
    """

    _db: PGDatabase
    users: PGUserStore
    sessions: PGSessionStore
    mail: PGMailStore
    queue: PGQueueStore
    _listener: Listener
    _reactor: IReactorFromThreads

    @classmethod
    def open(
        cls,
        conninfo: str,
        reactor: IReactorFromThreads,
        schemas: Mapping[str, Sequence[Migration]] = SCHEMAS,
        spoolDir: str | None = None,
        now: Callable[[], float] | None = None,
        connections: int = 8,
        timeout: float = 5.0,
    ) -> PostgreSQLStore:
        """
        A store over the database named by C{conninfo} (a
        C{postgresql://} URL or a libpq connection string; the password
        comes from C{PGPASSFILE} or C{~/.pgpass}, C{sslmode} and the
        other libpq parameters pass through). Nothing is opened until
        L{start}.

        @param spoolDir: local directory for staged and opened message
            bodies; default: the system's temporary directory.
        @param now: the queue's time (see L{appnet.store.sqlite.SQLiteStore}).
        @param connections: database connections (and threads) this node
            uses at most.
        @param timeout: how long a call waits for a connection (the
            server down or every connection busy) before it fails.
        """
        db = PGDatabase(conninfo, reactor, schemas, connections, timeout)
        clock = now or time.time
        mail = PGMailStore(db, reactor, spoolDir=spoolDir)
        queue = PGQueueStore(db, reactor, clock, spoolDir=spoolDir)
        users = PGUserStore(db)

        def reconnected(again: bool) -> None:
            mail.catchUp()
            users.heard()
            if again:
                queue.heard()

        listener = Listener(
            conninfo,
            reactor,
            {
                MAIL_CHANNEL: mail.heard,
                QUEUE_CHANNEL: queue.remote,
                USERS_CHANNEL: users.heard,
            },
            reconnected,
        )
        return cls(db, users, PGSessionStore(db), mail, queue, listener, reactor)

    @property
    def database(self) -> PGDatabase:
        """The underlying L{PGDatabase}."""
        return self._db

    def start(self) -> Deferred[None]:
        async def run() -> None:
            spool = self.mail.spoolDir
            if spool is not None:
                await deferToThread(_clearSpool, spool)
            await self._db.start()
            # Watchers must not miss a change made right after start.
            await self._listener.start().addTimeout(30, self._reactor)  # type: ignore[arg-type]

        return Deferred.fromCoroutine(run())

    def stop(self) -> Deferred[None]:
        self.mail.stop()
        listener = self._listener
        done: Deferred[None] = Deferred()
        reactor = self._reactor

        def stopListening() -> None:
            listener.stop()
            reactor.callFromThread(done.callback, None)

        thread = threading.Thread(target=stopListening, daemon=True)
        thread.start()

        async def run() -> None:
            await done
            thread.join()
            await self._db.stop()

        return Deferred.fromCoroutine(run())


def _clearSpool(directory: str) -> None:
    """Remove bodies a previous run spooled and left behind (it crashed)."""
    for name in os.listdir(directory):
        if name.startswith(SPOOL_PREFIX):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def conninfoFor(url: str, passwordFile: str | None = None) -> str:
    """
    The connection string for C{url}, with the password read from
    C{passwordFile} when one is given (else libpq finds it in
    C{PGPASSFILE} or C{~/.pgpass}).

    @raise OSError: if the password file cannot be read.
    """
    if passwordFile is None:
        return url
    with open(passwordFile, encoding="utf-8") as f:
        password = f.readline().rstrip("\r\n")
    return make_conninfo(url, password=password)


def migrateDatabase(
    conninfo: str, schemas: Mapping[str, Sequence[Migration]] = SCHEMAS
) -> None:
    """
    Connect, apply pending migrations and disconnect, synchronously: only
    for start-up before the reactor runs, where a database that is
    unreachable or newer than this appnet stops the daemon with one line.

    @raise StoreUnavailable: if the database cannot be reached.
    @raise appnet.store._db.SchemaTooNew: if it is newer.
    """
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            migrate(conn, schemas)
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"cannot reach the database: {oneLine(e)}") from e
    except psycopg.Error as e:
        raise StoreError(f"database: {oneLine(e)}") from e
