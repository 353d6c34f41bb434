"""
The SQLite outgoing queue: rows in the store's database (tables in
L{appnet.store.schema} C{QUEUE}), message bytes in C{DATA/mail/queue/}.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from appnet.errors import NoSuchMessage
from appnet.store._db import Database, batches
from appnet.store._files import MessageFiles, StagedFile
from appnet.store.adoption import Adoption
from appnet.store.groupcommit import Direct, GroupCommit
from appnet.store.interfaces import (
    IQueueStore,
    IStagedMessage,
    MessageBody,
    Notice,
    QueuedMessage,
    QueuedRecipient,
    RecipientState,
    RecipientUpdate,
)
from appnet.store.threads import Threads

__all__ = ["SQLiteQueueStore"]

T = TypeVar("T")


def _queued(row: tuple[Any, ...], recipients: list[Any]) -> QueuedMessage:
    return QueuedMessage(
        id=row[0],
        sender=row[1],
        submitter=row[2],
        size=row[3],
        created=row[4],
        nextAttempt=row[5],
        attempts=row[6],
        held=bool(row[7]),
        lastError=row[8],
        warned=bool(row[9]),
        claimedBy=row[10],
        claimedUntil=row[11],
        recipients=tuple(
            QueuedRecipient(r[0], r[1], r[2], r[3], bool(r[4])) for r in recipients
        ),
    )


_QUEUE_COLUMNS = (
    "id, sender, submitter, size, created, next_attempt, attempts, held,"
    " last_error, warned, claimed_by, claimed_until"
)


def _markNotice(conn: sqlite3.Connection, notice: Notice) -> None:
    conn.executemany(
        "UPDATE queue_recipients SET notified = 1 WHERE message = ? AND address = ?",
        [(notice.message, address) for address in notice.bounced],
    )
    if notice.warned:
        conn.execute(
            "UPDATE queue_messages SET warned = 1 WHERE id = ?", (notice.message,)
        )


@implementer(IQueueStore)
@define
class SQLiteQueueStore:
    """
    The outgoing queue in the store's database and C{DATA/mail/queue/}.

    Claims are rows' C{claimed_by}/C{claimed_until}, taken inside one
    write transaction (SQLite's writer lock does what C{SELECT ... FOR
    UPDATE SKIP LOCKED} would on a shared PostgreSQL queue). Enqueues and
    the relay's outcomes share transactions (L{GroupCommit}): a relay
    working many messages at once pays for few fsyncs. A runner of this
    process may adopt new mail (L{adopt}): each enqueue then claims its
    message for it in the insert's own transaction and hands it over
    when that commits, with no claim or look-up of its own.
    """

    _db: Database
    _files: MessageFiles
    _reactor: Any
    _threads: Threads
    _now: Callable[[], float] = time.time
    _watchers: list[Callable[[], None]] = field(factory=list, init=False)
    #: The file and size of each message claimed through this store and
    #: not settled yet (so opening it needs no query); at most a runner's
    #: batch.
    _claimed: dict[int, tuple[str, int]] = field(factory=dict, init=False)
    #: The runner new mail is handed to (see L{adopt}), if any, and the
    #: bytes of small adopted messages not settled yet.
    _adoption: Adoption = field(factory=Adoption, init=False)
    _group: GroupCommit = field(init=False)
    #: Files of messages gone from the queue, to remove (see L{_forget}).
    _doomed: list[str] = field(factory=list, init=False)
    _removing: bool = field(default=False, init=False)
    _removed: list[Deferred[None]] = field(factory=list, init=False)
    _log = Logger()

    def __attrs_post_init__(self) -> None:
        self._group = GroupCommit(Direct.of(self._db, self._threads, self._reactor))

    def _inThread(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        return self._threads.run(fn, *args)

    def _changed(self) -> None:
        for callback in list(self._watchers):
            try:
                callback()
            except Exception:
                self._log.failure("Queue watcher failed")

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._watchers.append(callback)

        def cancel() -> None:
            if callback in self._watchers:
                self._watchers.remove(callback)

        return cancel

    def adopt(
        self, owner: str, lease: float, callback: Callable[[QueuedMessage], None]
    ) -> Callable[[], None]:
        return self._adoption.adopt(owner, lease, callback)

    def enqueue(
        self,
        staged: IStagedMessage,
        sender: str,
        recipients: Sequence[str],
        skip: int = 0,
        submitter: str | None = None,
        notice: Notice | None = None,
    ) -> Deferred[int]:
        return Deferred.fromCoroutine(
            self._enqueue(staged, sender, recipients, skip, submitter, notice)
        )

    async def _enqueue(
        self,
        staged: IStagedMessage,
        sender: str,
        recipients: Sequence[str],
        skip: int,
        submitter: str | None,
        notice: Notice | None,
    ) -> int:
        if not isinstance(staged, StagedFile):
            raise TypeError("staged message is not from this store")
        if not recipients:
            raise ValueError("no recipients to queue")
        size = staged.size - skip
        now = self._now()
        unique = list(dict.fromkeys(recipients))

        # Claimed at once for this process's runner, if it adopts new mail;
        # a small message's bytes go with it while it is still in memory.
        adopter = self._adoption.current
        data = None
        keep = self._adoption.room(size)
        if keep is not None:
            data = staged.held(keep + skip)
            if data is not None and skip:
                data = data[skip:]
        owner, until = (adopter.owner, now + adopter.lease) if adopter else (None, 0.0)
        file = ""

        def insert(conn: sqlite3.Connection, name: str) -> int:
            nonlocal file
            file = name
            if owner is None:
                cursor = conn.execute(
                    "INSERT INTO queue_messages"
                    " (sender, submitter, file, size, created, next_attempt)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (sender, submitter, name, size, now, now),
                )
            else:
                cursor = conn.execute(
                    "INSERT INTO queue_messages (sender, submitter, file, size,"
                    " created, next_attempt, claimed_by, claimed_until)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (sender, submitter, name, size, now, now, owner, until),
                )
            assert cursor.lastrowid is not None
            conn.executemany(
                "INSERT INTO queue_recipients (message, address, state, updated)"
                " VALUES (?, ?, ?, ?)",
                [
                    (cursor.lastrowid, address, RecipientState.PENDING, now)
                    for address in unique
                ],
            )
            if notice is not None:
                _markNotice(conn, notice)
            return cursor.lastrowid

        if skip == 0:
            # The usual case: a hard link, synced with the batch.
            placement = self._files.placement(staged, ["queue"], consume=False)
            id = await self._group.commit(
                placement, lambda conn, names: insert(conn, names[0])
            )
        else:
            name = await self._inThread(self._files.placeQueued, staged, skip)
            try:
                id = await self._group.write(lambda conn: insert(conn, name))
            except BaseException:
                await self._inThread(self._files.remove, [name])
                raise
        if adopter is None:
            self._changed()
            return id
        self._claimed[id] = (file, size)
        if self._adoption.handOver(
            adopter, id, sender, submitter, unique, size, now, data
        ):
            return id
        self._claimed.pop(id, None)
        # The runner stopped adopting while this committed: the claim
        # goes back, for whichever runner scans next.
        await self._group.write(
            lambda conn: conn.execute(
                "UPDATE queue_messages SET claimed_by = NULL, claimed_until = 0"
                " WHERE id = ? AND claimed_by = ?",
                (id, adopter.owner),
            )
        )
        self._changed()
        return id

    @staticmethod
    def _select(
        conn: sqlite3.Connection, where: str, args: tuple[Any, ...], order: str = ""
    ) -> list[QueuedMessage]:
        rows = conn.execute(
            f"SELECT {_QUEUE_COLUMNS} FROM queue_messages {where}"
            f" ORDER BY {order or 'created, id'}",
            args,
        ).fetchall()
        result = []
        for row in rows:
            recipients = conn.execute(
                "SELECT address, state, response, updated, notified"
                " FROM queue_recipients WHERE message = ? ORDER BY rowid",
                (row[0],),
            ).fetchall()
            result.append(_queued(row, recipients))
        return result

    def get(self, id: int) -> Deferred[QueuedMessage | None]:
        def select(conn: sqlite3.Connection) -> QueuedMessage | None:
            found = self._select(conn, "WHERE id = ?", (id,))
            return found[0] if found else None

        return self._db.read(select)

    def list(self) -> Deferred[Sequence[QueuedMessage]]:
        return self._db.read(lambda conn: self._select(conn, "", ()))

    def openMessage(self, id: int) -> Deferred[MessageBody]:
        def select(conn: sqlite3.Connection) -> tuple[str, int]:
            row = conn.execute(
                "SELECT file, size FROM queue_messages WHERE id = ?", (id,)
            ).fetchone()
            if row is None:
                raise NoSuchMessage("queue", id)
            return row[0], row[1]

        async def run() -> MessageBody:
            # A message claimed through this store: its file is known.
            known = self._claimed.get(id)
            file, size = known if known is not None else await self._db.read(select)
            files = self._files
            memory = self._adoption.held(id)
            return MessageBody(size, lambda: files.opener(file), memory=memory)

        return Deferred.fromCoroutine(run())

    def claim(
        self, owner: str, now: float, lease: float, limit: int
    ) -> Deferred[Sequence[QueuedMessage]]:
        def take(conn: sqlite3.Connection) -> list[QueuedMessage]:
            rows = conn.execute(
                "SELECT id, file, size FROM queue_messages WHERE held = 0"
                " AND next_attempt <= ?"
                " AND (claimed_by IS NULL OR claimed_until <= ?)"
                " ORDER BY next_attempt, id LIMIT ?",
                (now, now, limit),
            ).fetchall()
            if not rows:
                return []
            ids = [row[0] for row in rows]
            files.update((row[0], (row[1], row[2])) for row in rows)
            marks = ",".join("?" * len(ids))
            conn.execute(
                "UPDATE queue_messages SET claimed_by = ?, claimed_until = ?"
                f" WHERE id IN ({marks})",
                (owner, now + lease, *ids),
            )
            claimed = self._select(
                conn, f"WHERE id IN ({marks})", tuple(ids), "next_attempt, id"
            )
            return claimed

        # Handed to the reactor's side once the claim has committed.
        files: dict[int, tuple[str, int]] = {}

        def taken(claimed: list[QueuedMessage]) -> list[QueuedMessage]:
            self._claimed.update(files)
            return claimed

        # Sharing the commit of the inserts and outcomes around it.
        return self._group.write(take).addCallback(taken)

    def renew(self, owner: str, ids: Sequence[int], until: float) -> Deferred[int]:
        def update(conn: sqlite3.Connection) -> int:
            count = 0
            for batch in batches(list(ids)):
                marks = ",".join("?" * len(batch))
                count += conn.execute(
                    "UPDATE queue_messages SET claimed_until = ?"
                    f" WHERE claimed_by = ? AND id IN ({marks})",
                    (until, owner, *batch),
                ).rowcount
            return count

        return self._db.write(update)

    def releaseClaims(self, prefix: str) -> Deferred[int]:
        def update(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE queue_messages SET claimed_by = NULL, claimed_until = 0"
                " WHERE substr(claimed_by, 1, ?) = ?",
                (len(prefix), prefix),
            ).rowcount

        async def run() -> int:
            count = await self._db.write(update)
            self._claimed.clear()
            self._adoption.clear()
            if count:
                self._changed()
            return count

        return Deferred.fromCoroutine(run())

    def nextDue(self) -> Deferred[float | None]:
        def select(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT MIN(CASE WHEN claimed_by IS NOT NULL"
                " AND claimed_until > next_attempt THEN claimed_until"
                " ELSE next_attempt END) FROM queue_messages WHERE held = 0"
            ).fetchone()
            return None if row[0] is None else float(row[0])

        return self._db.read(select)

    @staticmethod
    def _record(
        conn: sqlite3.Connection,
        id: int,
        updates: Sequence[RecipientUpdate],
        now: float,
    ) -> None:
        conn.executemany(
            "UPDATE queue_recipients SET state = ?, response = ?, updated = ?,"
            " notified = ? WHERE message = ? AND address = ?"
            " AND state != 'delivered'",
            [
                (u.state, u.response, now, int(u.notified), id, u.address)
                for u in updates
            ],
        )

    def record(self, id: int, updates: Sequence[RecipientUpdate]) -> Deferred[None]:
        now = self._now()
        return self._group.write(lambda conn: self._record(conn, id, updates, now))

    def settle(
        self,
        id: int,
        owner: str,
        nextAttempt: float,
        lastError: str | None,
        updates: Sequence[RecipientUpdate] = (),
    ) -> Deferred[bool]:
        now = self._now()
        self._unclaimed(id)

        def update(conn: sqlite3.Connection) -> tuple[bool, str | None]:
            if updates:
                self._record(conn, id, updates, now)
            row = conn.execute(
                "SELECT file FROM queue_messages WHERE id = ?", (id,)
            ).fetchone()
            if row is None:
                return True, None
            left = conn.execute(
                "SELECT COUNT(*) FROM queue_recipients WHERE message = ?"
                " AND state != 'delivered' AND NOT (state = 'bounced' AND notified)",
                (id,),
            ).fetchone()[0]
            if left == 0:
                conn.execute("DELETE FROM queue_messages WHERE id = ?", (id,))
                return True, row[0]
            conn.execute(
                "UPDATE queue_messages SET attempts = attempts + 1,"
                " next_attempt = ?, last_error = ?,"
                " claimed_by = NULL, claimed_until = 0"
                " WHERE id = ? AND (claimed_by = ? OR claimed_by IS NULL)",
                (nextAttempt, lastError, id, owner),
            )
            return False, None

        async def run() -> bool:
            gone, file = await self._group.write(update)
            if file is not None:
                self._forget(file)
            return gone

        return Deferred.fromCoroutine(run())

    def _unclaimed(self, id: int) -> None:
        """Forget what was kept of a message claimed through this store."""
        self._claimed.pop(id, None)
        self._adoption.forget(id)

    def _forget(self, file: str) -> None:
        """
        Remove the file of a message whose row is gone, soon: settling does
        not wait for it (the outcome is committed), and files settled
        while one removal runs go together in the next, one file-thread
        trip for many. A crash in between leaves a file no row names,
        which L{sweep} removes at the next start.
        """
        self._doomed.append(file)
        if not self._removing:
            self._removing = True
            Deferred.fromCoroutine(self._removeDoomed())

    async def _removeDoomed(self) -> None:
        try:
            while self._doomed:
                names, self._doomed = self._doomed, []
                try:
                    await self._inThread(self._files.remove, names)
                except Exception:
                    self._log.failure("Removing queue files {names}", names=names)
        finally:
            self._removing = False
            waiters, self._removed = self._removed, []
            for waiter in waiters:
                waiter.callback(None)

    async def sweep(self, staleAfter: float = 86400.0) -> Sequence[str]:
        """
        Remove queue files that no message names, unchanged for more than
        C{staleAfter} seconds (L{MessageFiles.strays}): those of messages
        settled just before a crash (their rows were gone, their files not
        yet removed; see L{_forget}) or enqueued just before one (filed,
        never committed).
        The store calls this when it starts.

        @return: the relative names removed.
        """

        def named(conn: sqlite3.Connection) -> set[str]:
            return {r[0] for r in conn.execute("SELECT file FROM queue_messages")}

        files = await self._db.read(named)
        # File times are the system clock's, whatever the queue's is.
        horizon = time.time() - staleAfter
        removed = await self._inThread(self._files.strays, "queue", files, horizon)
        if removed:
            self._log.info(
                "Removed {count} queue files no message names (left by a crash)",
                count=len(removed),
            )
        return removed

    def whenRemoved(self) -> Deferred[None]:
        """
        Fires once the files of every message settled so far are removed
        (the store waits for this before it stops).
        """
        d: Deferred[None] = Deferred()
        if self._removing:
            self._removed.append(d)
        else:
            d.callback(None)
        return d

    def retry(self, id: int | None = None) -> Deferred[int]:
        now = self._now()

        def update(conn: sqlite3.Connection) -> int:
            if id is None:
                return conn.execute(
                    "UPDATE queue_messages SET next_attempt = ?", (now,)
                ).rowcount
            return conn.execute(
                "UPDATE queue_messages SET next_attempt = ? WHERE id = ?", (now, id)
            ).rowcount

        return self._changing(update)

    def _changing(self, fn: Callable[[sqlite3.Connection], int]) -> Deferred[int]:
        async def run() -> int:
            count = await self._db.write(fn)
            if count:
                self._changed()
            return count

        return Deferred.fromCoroutine(run())

    def hold(self, id: int) -> Deferred[bool]:
        def update(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE queue_messages SET held = 1 WHERE id = ?", (id,)
                ).rowcount
                == 1
            )

        return self._db.write(update)

    def release(self, id: int) -> Deferred[bool]:
        now = self._now()

        def update(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE queue_messages SET held = 0, next_attempt = ? WHERE id = ?",
                (now, id),
            ).rowcount

        return self._changing(update).addCallback(bool)

    def delete(self, id: int) -> Deferred[bool]:
        self._unclaimed(id)

        def remove(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT file FROM queue_messages WHERE id = ?", (id,)
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM queue_messages WHERE id = ?", (id,))
            return str(row[0])

        async def run() -> bool:
            file = await self._db.write(remove)
            if file is None:
                return False
            await self._inThread(self._files.remove, [file])
            return True

        return Deferred.fromCoroutine(run())
