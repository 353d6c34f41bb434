"""
The outgoing queue in PostgreSQL, shared by every node's queue runner.

Runners claim due messages with C{FOR UPDATE SKIP LOCKED} and a lease
(C{claimed_by}, C{claimed_until}); a node that dies leaves claims that run
out, and another node takes the messages then. Changes that make a
message due send C{NOTIFY appnet_queue}, so every node's runner wakes.
Mail a node queues while its own runner adopts new mail (L{adopt}) is
claimed for that runner in the enqueue's transaction and handed to it,
with a small message's bytes: no other node is woken, and no claim or
read follows.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from appnet.errors import NoSuchMessage
from appnet.store.adoption import Adoption
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
from appnet.store.pg.bodies import (
    CHUNK,
    StagedBody,
    dropBodies,
    insertBody,
    spoolBody,
)
from appnet.store.pg.database import Connection, PGDatabase

__all__ = ["PGQueueStore", "QUEUE_CHANNEL"]

#: The NOTIFY channel of queue changes that may make a message due.
QUEUE_CHANNEL = "appnet_queue"

_COLUMNS = (
    "id, sender, submitter, size, created, next_attempt, attempts, held,"
    " last_error, warned, claimed_by, claimed_until"
)


def _queued(row: Any, recipients: list[Any]) -> QueuedMessage:
    return QueuedMessage(
        id=int(row[0]),
        sender=row[1],
        submitter=row[2],
        size=int(row[3]),
        created=float(row[4]),
        nextAttempt=float(row[5]),
        attempts=int(row[6]),
        held=bool(row[7]),
        lastError=row[8],
        warned=bool(row[9]),
        claimedBy=row[10],
        claimedUntil=float(row[11]),
        recipients=tuple(
            QueuedRecipient(r[0], r[1], r[2], float(r[3]), bool(r[4]))
            for r in recipients
        ),
    )


def _select(
    conn: Connection, where: str, args: tuple[Any, ...], order: str = ""
) -> list[QueuedMessage]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM queue_messages {where}"
        f" ORDER BY {order or 'created, id'}",
        args,
    ).fetchall()
    if not rows:
        return []
    recipients: dict[int, list[Any]] = {int(row[0]): [] for row in rows}
    for r in conn.execute(
        "SELECT message, address, state, response, updated, notified"
        " FROM queue_recipients WHERE message = ANY(%s) ORDER BY message, position",
        (list(recipients),),
    ).fetchall():
        recipients[int(r[0])].append(r[1:])
    return [_queued(row, recipients[int(row[0])]) for row in rows]


def _markNotice(conn: Connection, notice: Notice) -> None:
    if notice.bounced:
        conn.execute(
            "UPDATE queue_recipients SET notified = TRUE"
            " WHERE message = %s AND address = ANY(%s)",
            (notice.message, list(notice.bounced)),
        )
    if notice.warned:
        conn.execute(
            "UPDATE queue_messages SET warned = TRUE WHERE id = %s", (notice.message,)
        )


def _wake(conn: Connection, node: str) -> None:
    conn.execute("SELECT pg_notify(%s, %s)", (QUEUE_CHANNEL, node))


@implementer(IQueueStore)
@define
class PGQueueStore:
    """
    Queued messages and their recipients in PostgreSQL; bodies shared
    with the mail store's C{bodies}.
    """

    _db: PGDatabase
    _reactor: Any
    _now: Callable[[], float] = time.time
    spoolDir: str | None = None
    node: str = field(factory=lambda: uuid.uuid4().hex)
    _watchers: list[Callable[[], None]] = field(factory=list, init=False)
    #: The runner new mail is handed to (see L{adopt}), if any, and the
    #: bytes of small adopted messages not settled yet.
    _adoption: Adoption = field(factory=Adoption, init=False)
    _log = Logger()

    def remote(self, payload: str) -> None:
        """
        A NOTIFY on the queue channel, naming the store that sent it:
        another node's changes wake this node's runner (this store's own
        were reported when made).
        """
        if payload != self.node:
            self.heard()

    def heard(self) -> None:
        """A NOTIFY from some node: something may have become due."""
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
        if not isinstance(staged, StagedBody):
            raise TypeError("staged message is not from this store")
        if not recipients:
            raise ValueError("no recipients to queue")
        size = staged.size - skip
        now = self._now()
        unique = list(dict.fromkeys(recipients))
        small = size <= CHUNK
        # Claimed at once for this process's runner, if it adopts new mail
        # (no other node is woken for it); a small message's bytes, still
        # in memory, go with it.
        adopter = self._adoption.current
        keep = self._adoption.room(size)
        data = b"".join(staged.chunks(skip)) if keep == size and small else None
        owner, until = (adopter.owner, now + adopter.lease) if adopter else (None, 0.0)
        body = (
            0
            if small
            else await self._db.run(partial(insertBody, staged=staged, skip=skip))
        )

        def insert(conn: Connection) -> int:
            nonlocal body
            if small:
                body = insertBody(conn, staged, skip)
            row = conn.execute(
                "INSERT INTO queue_messages (sender, submitter, body, size,"
                " created, next_attempt, claimed_by, claimed_until)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (sender, submitter, body, size, now, now, owner, until),
            ).fetchone()
            assert row is not None
            id = int(row[0])
            conn.execute(
                "INSERT INTO queue_recipients"
                " (message, position, address, state, updated)"
                " SELECT %s, n, a, %s, %s FROM unnest(%s::text[])"
                " WITH ORDINALITY AS t (a, n)",
                (id, RecipientState.PENDING, now, unique),
            )
            if notice is not None:
                _markNotice(conn, notice)
            if owner is None:
                _wake(conn, self.node)
            return id

        try:
            id = await self._db.run(insert)
        except BaseException:
            if not small:
                await self._db.run(lambda conn: dropBodies(conn, [body]))
            raise
        if adopter is None:
            self.heard()
            return id
        if self._adoption.handOver(
            adopter, id, sender, submitter, unique, size, now, data
        ):
            return id

        # The runner stopped adopting while this committed: the claim
        # goes back, for whichever runner, of any node, scans next.
        def unclaim(conn: Connection) -> None:
            conn.execute(
                "UPDATE queue_messages SET claimed_by = NULL, claimed_until = 0"
                " WHERE id = %s AND claimed_by = %s",
                (id, adopter.owner),
            )
            _wake(conn, self.node)

        await self._db.run(unclaim)
        self.heard()
        return id

    def get(self, id: int) -> Deferred[QueuedMessage | None]:
        def select(conn: Connection) -> QueuedMessage | None:
            found = _select(conn, "WHERE id = %s", (id,))
            return found[0] if found else None

        return self._db.run(select)

    def list(self) -> Deferred[Sequence[QueuedMessage]]:
        return self._db.run(lambda conn: _select(conn, "", ()))

    def openMessage(self, id: int) -> Deferred[MessageBody]:
        data = self._adoption.held(id)
        if data is not None:
            held = data
            return succeed(
                MessageBody(len(held), lambda: io.BytesIO(held), memory=held)
            )
        spool = self.spoolDir

        def select(conn: Connection) -> MessageBody:
            row = conn.execute(
                "SELECT body, size FROM queue_messages WHERE id = %s", (id,)
            ).fetchone()
            if row is None:
                raise NoSuchMessage("queue", id)
            return spoolBody(conn, int(row[0]), int(row[1]), spool)

        return self._db.run(select)

    def adopt(
        self, owner: str, lease: float, callback: Callable[[QueuedMessage], None]
    ) -> Callable[[], None]:
        return self._adoption.adopt(owner, lease, callback)

    def claim(
        self, owner: str, now: float, lease: float, limit: int
    ) -> Deferred[Sequence[QueuedMessage]]:
        def take(conn: Connection) -> list[QueuedMessage]:
            ids = [
                int(row[0])
                for row in conn.execute(
                    "UPDATE queue_messages SET claimed_by = %s, claimed_until = %s"
                    " WHERE id IN (SELECT id FROM queue_messages WHERE NOT held"
                    " AND next_attempt <= %s"
                    " AND (claimed_by IS NULL OR claimed_until <= %s)"
                    " ORDER BY next_attempt, id LIMIT %s FOR UPDATE SKIP LOCKED)"
                    " RETURNING id",
                    (owner, now + lease, now, now, limit),
                ).fetchall()
            ]
            if not ids:
                return []
            return _select(conn, "WHERE id = ANY(%s)", (ids,), "next_attempt, id")

        return self._db.run(take)

    def renew(self, owner: str, ids: Sequence[int], until: float) -> Deferred[int]:
        def update(conn: Connection) -> int:
            return conn.execute(
                "UPDATE queue_messages SET claimed_until = %s"
                " WHERE claimed_by = %s AND id = ANY(%s)",
                (until, owner, list(ids)),
            ).rowcount

        return self._db.run(update)

    def releaseClaims(self, prefix: str) -> Deferred[int]:
        def update(conn: Connection) -> int:
            count = conn.execute(
                "UPDATE queue_messages SET claimed_by = NULL, claimed_until = 0"
                " WHERE left(claimed_by, %s) = %s",
                (len(prefix), prefix),
            ).rowcount
            if count:
                _wake(conn, self.node)
            return count

        self._adoption.clear()
        return self._changing(update)

    def nextDue(self) -> Deferred[float | None]:
        def select(conn: Connection) -> float | None:
            row = conn.execute(
                "SELECT MIN(CASE WHEN claimed_by IS NOT NULL"
                " AND claimed_until > next_attempt THEN claimed_until"
                " ELSE next_attempt END) FROM queue_messages WHERE NOT held"
            ).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return self._db.run(select)

    @staticmethod
    def _record(
        conn: Connection, id: int, updates: Sequence[RecipientUpdate], now: float
    ) -> None:
        with conn.cursor() as cursor:
            cursor.executemany(
                "UPDATE queue_recipients SET state = %s, response = %s,"
                " updated = %s, notified = %s WHERE message = %s"
                " AND address = %s AND state != 'delivered'",
                [
                    (u.state, u.response, now, u.notified, id, u.address)
                    for u in updates
                ],
            )

    def record(self, id: int, updates: Sequence[RecipientUpdate]) -> Deferred[None]:
        now = self._now()
        return self._db.run(lambda conn: self._record(conn, id, updates, now))

    def settle(
        self,
        id: int,
        owner: str,
        nextAttempt: float,
        lastError: str | None,
        updates: Sequence[RecipientUpdate] = (),
    ) -> Deferred[bool]:
        now = self._now()
        self._adoption.forget(id)

        def update(conn: Connection) -> tuple[bool, int | None]:
            if updates:
                self._record(conn, id, updates, now)
            row = conn.execute(
                "SELECT body FROM queue_messages WHERE id = %s FOR UPDATE", (id,)
            ).fetchone()
            if row is None:
                return True, None
            left = conn.execute(
                "SELECT COUNT(*) FROM queue_recipients WHERE message = %s"
                " AND state != 'delivered' AND NOT (state = 'bounced' AND notified)",
                (id,),
            ).fetchone()
            assert left is not None
            if left[0] == 0:
                conn.execute("DELETE FROM queue_messages WHERE id = %s", (id,))
                return True, int(row[0])
            conn.execute(
                "UPDATE queue_messages SET attempts = attempts + 1,"
                " next_attempt = %s, last_error = %s,"
                " claimed_by = NULL, claimed_until = 0"
                " WHERE id = %s AND (claimed_by = %s OR claimed_by IS NULL)",
                (nextAttempt, lastError, id, owner),
            )
            return False, None

        async def run() -> bool:
            gone, body = await self._db.run(update)
            if body is not None:
                await self._drop(body)
            return gone

        return Deferred.fromCoroutine(run())

    async def _drop(self, body: int) -> None:
        try:
            await self._db.run(lambda conn: dropBodies(conn, [body]))
        except Exception:
            self._log.failure("Removing an unreferenced message body")

    def _changing(self, fn: Callable[[Connection], int]) -> Deferred[int]:
        async def run() -> int:
            count = await self._db.run(fn)
            if count:
                self.heard()
            return count

        return Deferred.fromCoroutine(run())

    def retry(self, id: int | None = None) -> Deferred[int]:
        now = self._now()

        def update(conn: Connection) -> int:
            if id is None:
                count = conn.execute(
                    "UPDATE queue_messages SET next_attempt = %s", (now,)
                ).rowcount
            else:
                count = conn.execute(
                    "UPDATE queue_messages SET next_attempt = %s WHERE id = %s",
                    (now, id),
                ).rowcount
            if count:
                _wake(conn, self.node)
            return count

        return self._changing(update)

    def hold(self, id: int) -> Deferred[bool]:
        def update(conn: Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE queue_messages SET held = TRUE WHERE id = %s", (id,)
                ).rowcount
                == 1
            )

        return self._db.run(update)

    def release(self, id: int) -> Deferred[bool]:
        now = self._now()

        def update(conn: Connection) -> int:
            count = conn.execute(
                "UPDATE queue_messages SET held = FALSE, next_attempt = %s"
                " WHERE id = %s",
                (now, id),
            ).rowcount
            if count:
                _wake(conn, self.node)
            return count

        return self._changing(update).addCallback(bool)

    def delete(self, id: int) -> Deferred[bool]:
        self._adoption.forget(id)

        def remove(conn: Connection) -> int | None:
            row = conn.execute(
                "DELETE FROM queue_messages WHERE id = %s RETURNING body", (id,)
            ).fetchone()
            return None if row is None else int(row[0])

        async def run() -> bool:
            body = await self._db.run(remove)
            if body is None:
                return False
            await self._drop(body)
            return True

        return Deferred.fromCoroutine(run())
