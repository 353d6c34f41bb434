"""
Copy an SQLite data directory's store into PostgreSQL, keeping UIDs and
UIDVALIDITY (IMAP clients keep their caches), flags, dates, the queue and
web sessions; and check either store's consistency.

The source is read through the store interfaces (so the SQLite store's
internal layout may change), except the list of mail owners and the web
sessions, which the interfaces do not enumerate. Every message is copied
in its own transaction and skipped when already there, so an interrupted
copy, run again, finishes the job.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.internet.threads import deferToThread

from appnet.store.interfaces import MessageBody, QueuedMessage
from appnet.store.mailcommon import formatFlags
from appnet.store.pg.bodies import CHUNK
from appnet.store.pg.database import Connection
from appnet.store.pg.store import PostgreSQLStore

__all__ = ["checkPostgreSQL", "checkSQLite", "copyStore"]

Say = Callable[[str], None]


def _readSQLite(path: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        owners = [r[0] for r in conn.execute("SELECT DISTINCT owner FROM mail_folders")]
        sessions = conn.execute(
            "SELECT key, account, csrf, created, expires FROM web_sessions"
        ).fetchall()
    finally:
        conn.close()
    return sorted(owners), sessions


def _copyBody(conn: Connection, body: MessageBody) -> int:
    """Store a body read from a local file (blocking)."""
    row = conn.execute(
        "INSERT INTO bodies (size) VALUES (%s) RETURNING id", (body.size,)
    ).fetchone()
    assert row is not None
    id = int(row[0])
    with (
        body.open() as f,
        conn.cursor().copy("COPY body_chunks (body, seq, data) FROM STDIN") as copy,
    ):
        seq = 0
        while chunk := f.read(CHUNK):
            copy.write_row((id, seq, chunk))
            seq += 1
    return id


async def copyStore(
    source: Any, sqlitePath: str, target: PostgreSQLStore, say: Say
) -> dict[str, int]:
    """
    Copy everything from C{source} (a started SQLite store whose file is
    C{sqlitePath}) into C{target} (a started PostgreSQL store).

    @return: how many of each kind were copied (not counting those
        already there).
    """
    db = target.database
    counts = {"users": 0, "folders": 0, "messages": 0, "queued": 0, "sessions": 0}
    for user in await source.users.listUsers():
        secret = await source.users.getAPOPSecret(user.address)

        def addUser(conn: Connection, user: Any = user, secret: Any = secret) -> int:
            return conn.execute(
                "INSERT INTO users (address, domain, password, admin, quota,"
                " created, apop_secret) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (address) DO NOTHING",
                (
                    user.address,
                    user.domain,
                    user.passwordHash,
                    user.admin,
                    user.quota,
                    user.created,
                    secret,
                ),
            ).rowcount

        counts["users"] += await db.run(addUser)
    owners, sessions = await deferToThread(_readSQLite, sqlitePath)
    for owner in owners:
        for info in await source.mail.listFolders(owner):

            def addFolder(conn: Connection, info: Any = info) -> tuple[int, bool]:
                conn.execute(
                    "INSERT INTO mail_accounts (owner) VALUES (%s)"
                    " ON CONFLICT DO NOTHING",
                    (info.owner,),
                )
                row = conn.execute(
                    "INSERT INTO mail_folders (owner, name, uidvalidity, uidnext,"
                    " modseq, subscribed, first_recent_uid)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (owner, name) DO NOTHING RETURNING id",
                    (
                        info.owner,
                        info.name,
                        info.uidValidity,
                        info.uidNext,
                        info.modseq,
                        info.subscribed,
                        info.firstRecentUid,
                    ),
                ).fetchone()
                if row is not None:
                    return int(row[0]), True
                row = conn.execute(
                    "SELECT id, uidvalidity FROM mail_folders"
                    " WHERE owner = %s AND name = %s",
                    (info.owner, info.name),
                ).fetchone()
                assert row is not None
                if int(row[1]) != info.uidValidity:
                    raise ValueError(
                        f"{info.owner} {info.name}: the target folder has another"
                        " UIDVALIDITY; migrate into an empty database"
                    )
                return int(row[0]), False

            fid, made = await db.run(addFolder)
            counts["folders"] += made

            def present(conn: Connection, fid: int = fid) -> set[int]:
                rows = conn.execute(
                    "SELECT uid FROM mail_messages WHERE folder = %s", (fid,)
                ).fetchall()
                return {int(r[0]) for r in rows}

            have = await db.run(present)
            rows = [
                m
                for m in await source.mail.listMessages(owner, info.name)
                if m.uid not in have
            ]
            for start in range(0, len(rows), 100):
                batch = rows[start : start + 100]
                bodies = await source.mail.openMessages(
                    owner, info.name, [m.uid for m in batch]
                )
                for message in batch:
                    body = bodies.get(message.uid)
                    if body is None:
                        continue  # expunged meanwhile

                    def addMessage(
                        conn: Connection,
                        m: Any = message,
                        body: Any = body,
                        fid: int = fid,
                    ) -> None:
                        id = _copyBody(conn, body)
                        conn.execute(
                            "INSERT INTO mail_messages (folder, uid, body, size,"
                            " flags, internaldate, modseq)"
                            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            (
                                fid,
                                m.uid,
                                id,
                                body.size,
                                formatFlags(m.flags),
                                m.internalDate,
                                m.modseq,
                            ),
                        )

                    await db.run(addMessage)
                    counts["messages"] += 1
            say(f"{owner} {info.name}: {len(rows)} messages copied")

            def counters(conn: Connection, info: Any = info, fid: int = fid) -> None:
                # UIDNEXT and modseq never go back, whatever arrived since.
                conn.execute(
                    "UPDATE mail_folders SET uidnext = GREATEST(uidnext, %s),"
                    " modseq = GREATEST(modseq, %s) WHERE id = %s",
                    (info.uidNext, info.modseq, fid),
                )

            await db.run(counters)

    def usage(conn: Connection) -> None:
        conn.execute(
            "UPDATE mail_accounts a SET bytes = s.bytes, messages = s.messages,"
            " last_uidvalidity = GREATEST(a.last_uidvalidity, s.validity)"
            " FROM (SELECT f.owner, COALESCE(SUM(m.size), 0) AS bytes,"
            " COUNT(m.uid) AS messages, MAX(f.uidvalidity) AS validity"
            " FROM mail_folders f LEFT JOIN mail_messages m ON m.folder = f.id"
            " GROUP BY f.owner) s WHERE a.owner = s.owner"
        )

    await db.run(usage)
    for queued in await source.queue.list():
        copied = await _copyQueued(source, target, queued)
        counts["queued"] += copied

    def addSessions(conn: Connection) -> int:
        count = 0
        for row in sessions:
            count += conn.execute(
                "INSERT INTO web_sessions (key, account, csrf, created, expires)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
                row,
            ).rowcount
        return count

    counts["sessions"] = await db.run(addSessions)

    def sequences(conn: Connection) -> None:
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('queue_messages', 'id'),"
            " GREATEST((SELECT COALESCE(MAX(id), 0) FROM queue_messages), 1))"
        )

    await db.run(sequences)
    return counts


async def _copyQueued(source: Any, target: PostgreSQLStore, m: QueuedMessage) -> int:
    try:
        body = await source.queue.openMessage(m.id)
    except Exception:
        return 0  # delivered meanwhile

    def add(conn: Connection) -> int:
        if conn.execute(
            "SELECT 1 FROM queue_messages WHERE id = %s", (m.id,)
        ).fetchone():
            return 0
        id = _copyBody(conn, body)
        conn.execute(
            "INSERT INTO queue_messages (id, sender, submitter, body, size, created,"
            " next_attempt, attempts, held, last_error, warned)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                m.id,
                m.sender,
                m.submitter,
                id,
                body.size,
                m.created,
                m.nextAttempt,
                m.attempts,
                m.held,
                m.lastError,
                m.warned,
            ),
        )
        for position, r in enumerate(m.recipients):
            conn.execute(
                "INSERT INTO queue_recipients (message, position, address, state,"
                " response, updated, notified) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (m.id, position, r.address, r.state, r.response, r.updated, r.notified),
            )
        return 1

    return await target.database.run(add)


#: Each check: a name and a query giving the number of problems.
_PG_CHECKS = [
    (
        "message bodies nothing refers to",
        "SELECT COUNT(*) FROM bodies b"
        " WHERE NOT EXISTS (SELECT 1 FROM mail_messages m WHERE m.body = b.id)"
        " AND NOT EXISTS (SELECT 1 FROM queue_messages q WHERE q.body = b.id)",
    ),
    (
        "bodies whose chunks do not add up to their size",
        "SELECT COUNT(*) FROM bodies b WHERE b.size != (SELECT"
        " COALESCE(SUM(octet_length(c.data)), 0) FROM body_chunks c"
        " WHERE c.body = b.id)",
    ),
    (
        "messages at or above their folder's UIDNEXT",
        "SELECT COUNT(*) FROM mail_messages m JOIN mail_folders f"
        " ON f.id = m.folder WHERE m.uid >= f.uidnext",
    ),
    (
        "accounts whose usage differs from their messages",
        "SELECT COUNT(*) FROM mail_accounts a WHERE (a.bytes, a.messages) !="
        " (SELECT COALESCE(SUM(m.size), 0), COUNT(m.uid) FROM mail_folders f"
        " JOIN mail_messages m ON m.folder = f.id WHERE f.owner = a.owner)",
    ),
    (
        "queued messages without recipients",
        "SELECT COUNT(*) FROM queue_messages q WHERE NOT EXISTS"
        " (SELECT 1 FROM queue_recipients r WHERE r.message = q.id)",
    ),
]

_COUNTS = [
    ("users", "SELECT COUNT(*) FROM users"),
    ("folders", "SELECT COUNT(*) FROM mail_folders"),
    ("messages", "SELECT COUNT(*) FROM mail_messages"),
    ("queued", "SELECT COUNT(*) FROM queue_messages"),
    ("sessions", "SELECT COUNT(*) FROM web_sessions"),
]


def checkPostgreSQL(conn: Connection) -> tuple[dict[str, int], dict[str, int]]:
    """
    Counts and problems of a PostgreSQL store (blocking).

    @return: C{(counts, problems)}; each problem's value is how many rows
        have it.
    """
    counts = {name: int(conn.execute(sql).fetchone()[0]) for name, sql in _COUNTS}  # type: ignore[index]
    problems = {}
    for name, sql in _PG_CHECKS:
        found = int(conn.execute(sql).fetchone()[0])  # type: ignore[index]
        if found:
            problems[name] = found
    return counts, problems


_SQLITE_CHECKS = [
    (
        "messages at or above their folder's UIDNEXT",
        "SELECT COUNT(*) FROM mail_messages m JOIN mail_folders f"
        " ON f.id = m.folder WHERE m.uid >= f.uidnext",
    ),
    (
        "messages whose folder is gone",
        "SELECT COUNT(*) FROM mail_messages m WHERE NOT EXISTS"
        " (SELECT 1 FROM mail_folders f WHERE f.id = m.folder)",
    ),
    (
        "accounts whose usage differs from their messages",
        "SELECT COUNT(*) FROM mail_accounts a WHERE a.bytes != (SELECT"
        " COALESCE(SUM(m.size), 0) FROM mail_folders f JOIN mail_messages m"
        " ON m.folder = f.id WHERE f.owner = a.owner) OR a.messages != (SELECT"
        " COUNT(*) FROM mail_folders f JOIN mail_messages m ON m.folder = f.id"
        " WHERE f.owner = a.owner)",
    ),
    (
        "queued messages without recipients",
        "SELECT COUNT(*) FROM queue_messages q WHERE NOT EXISTS"
        " (SELECT 1 FROM queue_recipients r WHERE r.message = q.id)",
    ),
]


#: Checks of small messages' body rows (a store whose schema has them).
_SQLITE_BODY_CHECKS = [
    (
        "messages whose body row is gone (mail lost)",
        "SELECT COUNT(*) FROM mail_messages WHERE body IS NOT NULL"
        " AND body NOT IN (SELECT id FROM mail_bodies)",
    ),
    (
        "message bodies nothing refers to",
        "SELECT COUNT(*) FROM mail_bodies WHERE id NOT IN"
        " (SELECT body FROM mail_messages WHERE body IS NOT NULL)",
    ),
]


def checkSQLite(path: str) -> tuple[dict[str, int], dict[str, int]]:
    """
    Counts and problems of an SQLite store file (blocking). A store not
    yet upgraded to body rows (the daemon not started since) is checked
    without them.
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        counts = {name: int(conn.execute(sql).fetchone()[0]) for name, sql in _COUNTS}
        checks = list(_SQLITE_CHECKS)
        if conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'mail_bodies'"
        ).fetchone():
            [(bodies,)] = conn.execute("SELECT COUNT(*) FROM mail_bodies").fetchall()
            counts["message bodies in the database"] = int(bodies)
            checks += _SQLITE_BODY_CHECKS
        problems = {}
        for name, sql in checks:
            found = int(conn.execute(sql).fetchone()[0])
            if found:
                problems[name] = found
    finally:
        conn.close()
    return counts, problems
