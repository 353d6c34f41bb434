"""
The PostgreSQL mail store: folders, messages and their bodies, flags,
UIDs, quota, locks and change notification, shared by every node.

UIDs and modseqs come from the folder's row, raised by an C{UPDATE} that
holds its row lock to the end of the transaction, so deliveries from
several nodes get distinct, increasing UIDs. Every committed change sends
a C{NOTIFY appnet_mail} naming the folder; each node's listener
(L{appnet.store.pg.notify}) turns it into the watchers' callbacks.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from appnet.errors import FolderExists, NoSuchFolder, NoSuchMessage, QuotaExceeded
from appnet.store.interfaces import (
    INBOX,
    Changes,
    DeliveryTarget,
    FolderInfo,
    IMailStore,
    IStagedMessage,
    MessageBody,
    MessageInfo,
    Usage,
)
from appnet.store.mailcommon import (
    canonicalFolder,
    changeFlags,
    formatFlags,
    parseFlags,
    uidValidityFor,
)
from appnet.store.pg.bodies import (
    CHUNK,
    StagedBody,
    dropBodies,
    insertBody,
    openChunks,
    spoolBody,
)
from appnet.store.pg.database import Connection, PGDatabase

__all__ = ["MAIL_CHANNEL", "PGMailStore"]

Key = tuple[str, str]
Watcher = Callable[[FolderInfo], None]

#: The NOTIFY channel of folder changes; the payload is C{owner\\nname}.
MAIL_CHANNEL = "appnet_mail"

_SEEN = " \\Seen "

#: At most this many bytes of small bodies are loaded with an
#: L{PGMailStore.openMessages} call.
PREFETCH = 4 << 20


def _inMemory(data: bytes) -> MessageBody:
    return MessageBody(len(data), partial(io.BytesIO, data))


_INFO = "uid, size, flags, internaldate, modseq"


def _account(conn: Connection, owner: str, lock: bool = False) -> tuple[int, int, int]:
    conn.execute(
        "INSERT INTO mail_accounts (owner) VALUES (%s) ON CONFLICT DO NOTHING",
        (owner,),
    )
    row = conn.execute(
        "SELECT bytes, messages, last_uidvalidity FROM mail_accounts"
        " WHERE owner = %s" + (" FOR UPDATE" if lock else ""),
        (owner,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _newFolder(conn: Connection, owner: str, name: str, now: float) -> int | None:
    """
    Make a folder; C{None} if it exists already.
    """
    _, _, last = _account(conn, owner, lock=True)
    validity = uidValidityFor(now, last)
    row = conn.execute(
        "INSERT INTO mail_folders (owner, name, uidvalidity) VALUES (%s, %s, %s)"
        " ON CONFLICT (owner, name) DO NOTHING RETURNING id",
        (owner, name, validity),
    ).fetchone()
    if row is None:
        return None
    conn.execute(
        "UPDATE mail_accounts SET last_uidvalidity = %s WHERE owner = %s",
        (validity, owner),
    )
    return int(row[0])


def _existingFolderId(conn: Connection, owner: str, name: str) -> int | None:
    row = conn.execute(
        "SELECT id FROM mail_folders WHERE owner = %s AND name = %s", (owner, name)
    ).fetchone()
    if row is not None:
        return int(row[0])
    if name == INBOX:
        return None
    raise NoSuchFolder(owner, name)


def _folderId(conn: Connection, owner: str, name: str, now: float, create: bool) -> int:
    fid = _existingFolderId(conn, owner, name)
    if fid is not None:
        return fid
    if create:
        made = _newFolder(conn, owner, name, now)
        if made is not None:
            return made
        again = _existingFolderId(conn, owner, name)
        if again is not None:
            return again
    raise NoSuchFolder(owner, name)


def _folderInfo(conn: Connection, owner: str, name: str) -> FolderInfo | None:
    row = conn.execute(
        "SELECT f.id, f.uidvalidity, f.uidnext, f.modseq, f.subscribed,"
        " f.first_recent_uid, COUNT(m.uid), COALESCE(SUM(m.size), 0),"
        " COUNT(m.uid) FILTER (WHERE position(%s in ' ' || m.flags || ' ') = 0),"
        " COUNT(m.uid) FILTER (WHERE m.uid >= f.first_recent_uid)"
        " FROM mail_folders f LEFT JOIN mail_messages m ON m.folder = f.id"
        " WHERE f.owner = %s AND f.name = %s GROUP BY f.id",
        (_SEEN, owner, name),
    ).fetchone()
    if row is None:
        return None
    _, validity, uidnext, modseq, subscribed, first, count, size, unseen, recent = row
    return FolderInfo(
        owner,
        name,
        int(validity),
        int(uidnext),
        int(modseq),
        int(count),
        int(unseen),
        int(size),
        bool(subscribed),
        int(recent),
        int(first),
    )


def _bump(conn: Connection, fid: int) -> int:
    row = conn.execute(
        "UPDATE mail_folders SET modseq = modseq + 1 WHERE id = %s RETURNING modseq",
        (fid,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _info(row: Any) -> MessageInfo:
    return MessageInfo(
        int(row[0]), int(row[1]), parseFlags(row[2]), float(row[3]), int(row[4])
    )


def _checkQuota(conn: Connection, adding: Mapping[str, tuple[int | None, int]]) -> None:
    for owner in sorted(adding):
        quota, size = adding[owner]
        used, _, _ = _account(conn, owner, lock=True)
        if quota is not None and used + size > quota:
            raise QuotaExceeded(owner, quota, used, size)


def _insertMessage(
    conn: Connection,
    fid: int,
    body: int,
    size: int,
    flags: frozenset[str],
    internalDate: float,
) -> int:
    # The UPDATE locks the folder's row until commit: concurrent
    # deliveries, from any node, queue here and get the next UIDs.
    row = conn.execute(
        "UPDATE mail_folders SET uidnext = uidnext + 1, modseq = modseq + 1"
        " WHERE id = %s RETURNING uidnext - 1, modseq",
        (fid,),
    ).fetchone()
    assert row is not None
    uid, modseq = int(row[0]), int(row[1])
    conn.execute(
        "INSERT INTO mail_messages"
        " (folder, uid, body, size, flags, internaldate, modseq)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (fid, uid, body, size, formatFlags(flags), internalDate, modseq),
    )
    return uid


def _addUsage(conn: Connection, owner: str, size: int, count: int) -> None:
    _account(conn, owner)
    conn.execute(
        "UPDATE mail_accounts SET bytes = GREATEST(0, bytes + %s),"
        " messages = GREATEST(0, messages + %s) WHERE owner = %s",
        (size, count, owner),
    )


def _selectRows(
    conn: Connection, fid: int, uids: Sequence[int] | None, columns: str
) -> list[Any]:
    if uids is None:
        return conn.execute(
            f"SELECT {columns} FROM mail_messages WHERE folder = %s ORDER BY uid",
            (fid,),
        ).fetchall()
    return conn.execute(
        f"SELECT {columns} FROM mail_messages"
        " WHERE folder = %s AND uid = ANY(%s) ORDER BY uid",
        (fid, sorted(set(uids))),
    ).fetchall()


def _expungeRows(conn: Connection, fid: int, uids: list[int], modseq: int) -> None:
    conn.execute(
        "DELETE FROM mail_messages WHERE folder = %s AND uid = ANY(%s)", (fid, uids)
    )
    conn.execute(
        "INSERT INTO mail_expunged (folder, uid, modseq)"
        " SELECT %s, u, %s FROM unnest(%s::bigint[]) AS u"
        " ON CONFLICT (folder, uid) DO UPDATE SET modseq = EXCLUDED.modseq",
        (fid, modseq, uids),
    )


def _notify(conn: Connection, keys: set[Key]) -> None:
    """Tell every node's listener, at commit, that these folders changed."""
    for owner, name in sorted(keys):
        conn.execute("SELECT pg_notify(%s, %s)", (MAIL_CHANNEL, f"{owner}\n{name}"))


@implementer(IMailStore)
@define
class PGMailStore:
    """
    Folders, messages and bodies in PostgreSQL.

    @ivar spoolDir: where bodies opened for a reader are copied (local
        temporary files); default: the system's temporary directory.
    """

    _db: PGDatabase
    _reactor: Any
    _now: Callable[[], float] = time.time
    spoolDir: str | None = None
    _watchers: dict[Key, list[Watcher]] = field(factory=dict, init=False)
    _seen: dict[Key, int] = field(factory=dict, init=False)
    _log = Logger()

    def stop(self) -> None:
        """Forget every watcher."""
        self._watchers.clear()

    def stage(self) -> IStagedMessage:
        return StagedBody(self.spoolDir)

    def deliver(
        self,
        staged: IStagedMessage,
        targets: Sequence[DeliveryTarget],
        internalDate: float | None = None,
        prefix: bytes = b"",
    ) -> Deferred[Sequence[int]]:
        return Deferred.fromCoroutine(
            self._deliver(staged, targets, internalDate, prefix)
        )

    async def _deliver(
        self,
        staged: IStagedMessage,
        targets: Sequence[DeliveryTarget],
        internalDate: float | None,
        prefix: bytes,
    ) -> Sequence[int]:
        if not isinstance(staged, StagedBody):
            raise TypeError("staged message is not from this store")
        if not targets:
            return []
        targets = [
            DeliveryTarget(t.owner, canonicalFolder(t.folder), t.flags, t.quota)
            for t in targets
        ]
        # The prefix (Return-Path) is stored with the bytes: a body is
        # shared by copies, never by the queue, so nothing is duplicated.
        size = len(prefix) + staged.size
        date = self._now() if internalDate is None else internalDate
        # A large message's bytes go in first, in their own transaction,
        # so the folder rows are locked only for the moment the index rows
        # take; a small one goes in with its rows (one commit, one fsync).
        small = size <= CHUNK
        body = (
            0
            if small
            else await self._db.run(partial(insertBody, staged=staged, prefix=prefix))
        )

        def insert(conn: Connection) -> list[int]:
            nonlocal body
            if small:
                body = insertBody(conn, staged, prefix=prefix)
            adding: dict[str, tuple[int | None, int]] = {}
            for t in targets:
                quota, total = adding.get(t.owner, (t.quota, 0))
                adding[t.owner] = (t.quota if quota is None else quota, total + size)
            _checkQuota(conn, adding)
            # Folders are locked in one order (owner, name) everywhere.
            order = sorted(
                range(len(targets)), key=lambda i: (targets[i].owner, targets[i].folder)
            )
            uids = [0] * len(targets)
            for i in order:
                t = targets[i]
                fid = _folderId(conn, t.owner, t.folder, date, create=True)
                uids[i] = _insertMessage(conn, fid, body, size, t.flags, date)
                _addUsage(conn, t.owner, size, 1)
            _notify(conn, {(t.owner, t.folder) for t in targets})
            return uids

        try:
            uids = await self._db.run(insert)
        except BaseException:
            if not small:
                await self._db.run(lambda conn: dropBodies(conn, [body]))
            raise
        self._changed({(t.owner, t.folder) for t in targets})
        return uids

    def folder(self, owner: str, name: str = INBOX) -> Deferred[FolderInfo]:
        name = canonicalFolder(name)
        now = self._now()

        def select(conn: Connection) -> FolderInfo:
            info = _folderInfo(conn, owner, name)
            if info is None and name == INBOX:
                _folderId(conn, owner, name, now, create=True)
                info = _folderInfo(conn, owner, name)
            if info is None:
                raise NoSuchFolder(owner, name)
            return info

        return self._db.run(select)

    def listFolders(self, owner: str) -> Deferred[Sequence[FolderInfo]]:
        async def run() -> Sequence[FolderInfo]:
            inbox = await self.folder(owner, INBOX)

            def select(conn: Connection) -> list[FolderInfo]:
                names = [
                    row[0]
                    for row in conn.execute(
                        "SELECT name FROM mail_folders WHERE owner = %s"
                        ' AND name != %s ORDER BY name COLLATE "C"',
                        (owner, INBOX),
                    ).fetchall()
                ]
                infos = [_folderInfo(conn, owner, n) for n in names]
                return [i for i in infos if i is not None]

            return [inbox, *await self._db.run(select)]

        return Deferred.fromCoroutine(run())

    def createFolder(self, owner: str, name: str) -> Deferred[FolderInfo]:
        name = canonicalFolder(name)

        def create(conn: Connection) -> FolderInfo:
            if _newFolder(conn, owner, name, self._now()) is None:
                raise FolderExists(owner, name)
            info = _folderInfo(conn, owner, name)
            assert info is not None
            return info

        return self._db.run(create)

    def renameFolder(
        self, owner: str, old: str, new: str, delimiter: str | None = None
    ) -> Deferred[None]:
        old, new = canonicalFolder(old), canonicalFolder(new)
        renamed: set[Key] = {(owner, old), (owner, new)}

        def rename(conn: Connection) -> None:
            now = self._now()
            _account(conn, owner, lock=True)
            fid = _folderId(conn, owner, old, now, create=True)
            moves = [(fid, old, new)]
            if delimiter and old != INBOX:
                prefix = old + delimiter
                for row in conn.execute(
                    "SELECT id, name FROM mail_folders WHERE owner = %s"
                    " AND left(name, %s) = %s",
                    (owner, len(prefix), prefix),
                ).fetchall():
                    moves.append((row[0], row[1], new + row[1][len(old) :]))
            for _, _, newName in moves:
                if conn.execute(
                    "SELECT 1 FROM mail_folders WHERE owner = %s AND name = %s",
                    (owner, newName),
                ).fetchone():
                    raise FolderExists(owner, newName)
            if old != INBOX:
                for folder, _, _ in moves:
                    conn.execute(
                        "UPDATE mail_folders SET name = chr(1) || id WHERE id = %s",
                        (folder,),
                    )
                for folder, source, newName in moves:
                    conn.execute(
                        "UPDATE mail_folders SET name = %s WHERE id = %s",
                        (newName, folder),
                    )
                    renamed.update({(owner, source), (owner, newName)})
                _notify(conn, renamed)
                return
            target = _newFolder(conn, owner, new, now)
            assert target is not None
            row = conn.execute(
                "SELECT uidnext, first_recent_uid FROM mail_folders"
                " WHERE id = %s FOR UPDATE",
                (fid,),
            ).fetchone()
            assert row is not None
            conn.execute(
                "UPDATE mail_folders SET uidnext = %s, first_recent_uid = %s,"
                " modseq = 2 WHERE id = %s",
                (row[0], row[1], target),
            )
            modseq = _bump(conn, fid)
            conn.execute(
                "INSERT INTO mail_expunged (folder, uid, modseq)"
                " SELECT %s, uid, %s FROM mail_messages WHERE folder = %s"
                " ON CONFLICT (folder, uid) DO UPDATE SET modseq = EXCLUDED.modseq",
                (fid, modseq, fid),
            )
            conn.execute(
                "UPDATE mail_messages SET folder = %s, modseq = 2 WHERE folder = %s",
                (target, fid),
            )
            _notify(conn, renamed)

        async def run() -> None:
            await self._db.run(rename)
            self._changed(renamed)

        return Deferred.fromCoroutine(run())

    def deleteFolder(self, owner: str, name: str) -> Deferred[None]:
        name = canonicalFolder(name)

        def delete(conn: Connection) -> list[int]:
            if name == INBOX:
                raise ValueError("INBOX cannot be deleted")
            fid = _folderId(conn, owner, name, self._now(), create=False)
            rows = conn.execute(
                "SELECT body, size FROM mail_messages WHERE folder = %s", (fid,)
            ).fetchall()
            _addUsage(conn, owner, -sum(r[1] for r in rows), -len(rows))
            conn.execute("DELETE FROM mail_folders WHERE id = %s", (fid,))
            _notify(conn, {(owner, name)})
            return [r[0] for r in rows]

        async def run() -> None:
            bodies = await self._db.run(delete)
            await self._dropBodies(bodies)
            self._changed({(owner, name)})

        return Deferred.fromCoroutine(run())

    async def _dropBodies(self, bodies: list[int]) -> None:
        if bodies:
            try:
                await self._db.run(lambda conn: dropBodies(conn, bodies))
            except Exception:
                # Left for "appnet store check" to find; nothing refers to it.
                self._log.failure("Removing unreferenced message bodies")

    def listMessages(
        self, owner: str, name: str = INBOX, uids: Sequence[int] | None = None
    ) -> Deferred[Sequence[MessageInfo]]:
        name = canonicalFolder(name)

        def select(conn: Connection) -> list[MessageInfo]:
            fid = _existingFolderId(conn, owner, name)
            if fid is None:
                return []
            return [_info(r) for r in _selectRows(conn, fid, uids, _INFO)]

        return self._db.run(select)

    def newestFirst(
        self, owner: str, name: str, offset: int, limit: int
    ) -> Deferred[Sequence[MessageInfo]]:
        name = canonicalFolder(name)

        def select(conn: Connection) -> list[MessageInfo]:
            fid = _existingFolderId(conn, owner, name)
            if fid is None:
                return []
            rows = conn.execute(
                f"SELECT {_INFO} FROM mail_messages WHERE folder = %s"
                " ORDER BY internaldate DESC, uid DESC LIMIT %s OFFSET %s",
                (fid, limit, offset),
            ).fetchall()
            return [_info(r) for r in rows]

        return self._db.run(select)

    def openMessage(self, owner: str, name: str, uid: int) -> Deferred[MessageBody]:
        name = canonicalFolder(name)
        spool = self.spoolDir

        def select(conn: Connection) -> MessageBody:
            row = conn.execute(
                "SELECT m.body, m.size FROM mail_messages m"
                " JOIN mail_folders f ON f.id = m.folder"
                " WHERE f.owner = %s AND f.name = %s AND m.uid = %s",
                (owner, name, uid),
            ).fetchone()
            if row is None:
                raise NoSuchMessage(f"{owner}/{name}", uid)
            return spoolBody(conn, int(row[0]), int(row[1]), spool)

        return self._db.run(select)

    def openMessages(
        self, owner: str, name: str, uids: Sequence[int]
    ) -> Deferred[Mapping[int, MessageBody]]:
        name = canonicalFolder(name)
        db = self._db

        def select(conn: Connection) -> dict[int, MessageBody]:
            fid = _existingFolderId(conn, owner, name)
            if fid is None:
                return {}
            rows = _selectRows(conn, fid, uids, "uid, body, size")
            # Small bodies come along in one query, up to a memory budget
            # (FETCH and SEARCH ask for batches); the rest are read chunk
            # by chunk when opened.
            budget, small = PREFETCH, []
            for _, body, size in rows:
                if size <= CHUNK and size <= budget:
                    small.append(int(body))
                    budget -= size
            loaded = (
                {
                    int(body): bytes(data)
                    for body, data in conn.execute(
                        "SELECT body, data FROM body_chunks WHERE body = ANY(%s)"
                        " AND seq = 0",
                        (small,),
                    ).fetchall()
                }
                if small
                else {}
            )
            result = {}
            for uid, body, size in rows:
                data = loaded.get(int(body))
                if data is not None or (int(body) in small and size == 0):
                    result[int(uid)] = _inMemory(data or b"")
                else:
                    result[int(uid)] = MessageBody(
                        int(size), partial(openChunks, db, body, size)
                    )
            return result

        return self._db.run(select)

    def setSubscribed(self, owner: str, name: str, subscribed: bool) -> Deferred[None]:
        name = canonicalFolder(name)

        def update(conn: Connection) -> None:
            fid = _folderId(conn, owner, name, self._now(), create=True)
            conn.execute(
                "UPDATE mail_folders SET subscribed = %s WHERE id = %s",
                (bool(subscribed), fid),
            )

        return self._db.run(update)

    def setFlags(
        self,
        owner: str,
        name: str,
        uids: Sequence[int],
        flags: frozenset[str],
        mode: str,
    ) -> Deferred[Sequence[MessageInfo]]:
        name = canonicalFolder(name)

        def update(conn: Connection) -> list[MessageInfo]:
            fid = _folderId(conn, owner, name, self._now(), create=True)
            conn.execute("SELECT 1 FROM mail_folders WHERE id = %s FOR UPDATE", (fid,))
            rows = _selectRows(conn, fid, uids, _INFO)
            changes = []
            for row in rows:
                old = parseFlags(row[2])
                new = changeFlags(old, flags, mode)
                if new != old:
                    changes.append((row, new))
            if not changes:
                return []
            modseq = _bump(conn, fid)
            result = []
            for row, new in changes:
                conn.execute(
                    "UPDATE mail_messages SET flags = %s, modseq = %s"
                    " WHERE folder = %s AND uid = %s",
                    (formatFlags(new), modseq, fid, row[0]),
                )
                result.append(
                    MessageInfo(int(row[0]), int(row[1]), new, float(row[3]), modseq)
                )
            _notify(conn, {(owner, name)})
            return result

        async def run() -> Sequence[MessageInfo]:
            changed = await self._db.run(update)
            if changed:
                self._changed({(owner, name)})
            return changed

        return Deferred.fromCoroutine(run())

    def expunge(
        self,
        owner: str,
        name: str,
        uids: Sequence[int] | None = None,
        onlyDeleted: bool = False,
    ) -> Deferred[Sequence[int]]:
        name = canonicalFolder(name)

        def delete(conn: Connection) -> tuple[list[int], list[int]]:
            fid = _folderId(conn, owner, name, self._now(), create=True)
            conn.execute("SELECT 1 FROM mail_folders WHERE id = %s FOR UPDATE", (fid,))
            rows = _selectRows(conn, fid, uids, "uid, body, size, flags")
            if uids is None or onlyDeleted:
                rows = [r for r in rows if "\\Deleted" in parseFlags(r[3])]
            if not rows:
                return [], []
            modseq = _bump(conn, fid)
            _expungeRows(conn, fid, [r[0] for r in rows], modseq)
            _addUsage(conn, owner, -sum(r[2] for r in rows), -len(rows))
            _notify(conn, {(owner, name)})
            return [int(r[0]) for r in rows], [int(r[1]) for r in rows]

        async def run() -> Sequence[int]:
            removed, bodies = await self._db.run(delete)
            if removed:
                await self._dropBodies(sorted(set(bodies)))
                self._changed({(owner, name)})
            return removed

        return Deferred.fromCoroutine(run())

    def copy(
        self,
        owner: str,
        name: str,
        uids: Sequence[int],
        dest: str,
        quota: int | None = None,
    ) -> Deferred[Mapping[int, int]]:
        name, dest = canonicalFolder(name), canonicalFolder(dest)

        def copy(conn: Connection) -> dict[int, int]:
            fid = _existingFolderId(conn, owner, name)
            if fid is None:
                raise NoSuchFolder(owner, name)
            rows = _selectRows(conn, fid, uids, "uid, body, size, flags, internaldate")
            if not rows:
                return {}
            total = sum(int(r[2]) for r in rows)
            _checkQuota(conn, {owner: (quota, total)})
            target = _folderId(conn, owner, dest, self._now(), create=True)
            mapping = {}
            for row in rows:
                mapping[int(row[0])] = _insertMessage(
                    conn, target, row[1], row[2], parseFlags(row[3]), row[4]
                )
            _addUsage(conn, owner, total, len(rows))
            _notify(conn, {(owner, dest)})
            return mapping

        async def run() -> Mapping[int, int]:
            mapping = await self._db.run(copy)
            if mapping:
                self._changed({(owner, dest)})
            return mapping

        return Deferred.fromCoroutine(run())

    def move(
        self, owner: str, name: str, uids: Sequence[int], dest: str
    ) -> Deferred[Mapping[int, int]]:
        name, dest = canonicalFolder(name), canonicalFolder(dest)

        def move(conn: Connection) -> dict[int, int]:
            now = self._now()
            source = _folderId(conn, owner, name, now, create=True)
            target = _folderId(conn, owner, dest, now, create=True)
            conn.execute(
                "SELECT 1 FROM mail_folders WHERE id = %s FOR UPDATE", (source,)
            )
            rows = _selectRows(
                conn, source, uids, "uid, body, size, flags, internaldate"
            )
            if not rows:
                return {}
            mapping = {}
            for row in rows:
                mapping[int(row[0])] = _insertMessage(
                    conn, target, row[1], row[2], parseFlags(row[3]), row[4]
                )
            modseq = _bump(conn, source)
            _expungeRows(conn, source, [r[0] for r in rows], modseq)
            _notify(conn, {(owner, name), (owner, dest)})
            return mapping

        async def run() -> Mapping[int, int]:
            mapping = await self._db.run(move)
            if mapping:
                self._changed({(owner, name), (owner, dest)})
            return mapping

        return Deferred.fromCoroutine(run())

    def changesSince(self, owner: str, name: str, modseq: int) -> Deferred[Changes]:
        name = canonicalFolder(name)

        def select(conn: Connection) -> Changes:
            row = conn.execute(
                "SELECT id, modseq, first_recent_uid FROM mail_folders"
                " WHERE owner = %s AND name = %s",
                (owner, name),
            ).fetchone()
            if row is None:
                if name == INBOX:
                    return Changes(0)
                raise NoSuchFolder(owner, name)
            fid, current, firstRecent = row
            changed = conn.execute(
                f"SELECT {_INFO} FROM mail_messages"
                " WHERE folder = %s AND modseq > %s ORDER BY uid",
                (fid, modseq),
            ).fetchall()
            gone = conn.execute(
                "SELECT uid FROM mail_expunged WHERE folder = %s AND modseq > %s"
                " ORDER BY uid",
                (fid, modseq),
            ).fetchall()
            return Changes(
                int(current),
                tuple(_info(r) for r in changed),
                tuple(int(r[0]) for r in gone),
                int(firstRecent),
            )

        return self._db.run(select)

    def claimRecent(self, owner: str, name: str) -> Deferred[tuple[int, int]]:
        name = canonicalFolder(name)

        def claim(conn: Connection) -> tuple[int, int]:
            fid = _folderId(conn, owner, name, self._now(), create=True)
            row = conn.execute(
                "SELECT first_recent_uid, uidnext FROM mail_folders"
                " WHERE id = %s FOR UPDATE",
                (fid,),
            ).fetchone()
            assert row is not None
            first, uidnext = int(row[0]), int(row[1])
            if first >= uidnext:
                return first, first
            conn.execute(
                "UPDATE mail_folders SET first_recent_uid = %s WHERE id = %s",
                (uidnext, fid),
            )
            return first, uidnext

        return self._db.run(claim)

    def usage(self, owner: str) -> Deferred[Usage]:
        def select(conn: Connection) -> Usage:
            row = conn.execute(
                "SELECT bytes, messages FROM mail_accounts WHERE owner = %s", (owner,)
            ).fetchone()
            return Usage() if row is None else Usage(int(row[0]), int(row[1]))

        return self._db.run(select)

    def lock(self, owner: str, name: str, holder: str, ttl: float) -> Deferred[bool]:
        def take(conn: Connection) -> bool:
            now = self._now()
            row = conn.execute(
                "INSERT INTO mail_locks (owner, name, holder, expires)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (owner, name) DO UPDATE"
                " SET holder = EXCLUDED.holder, expires = EXCLUDED.expires"
                " WHERE mail_locks.holder = EXCLUDED.holder"
                " OR mail_locks.expires <= %s RETURNING 1",
                (owner, name, holder, now + ttl, now),
            ).fetchone()
            return row is not None

        return self._db.run(take)

    def refreshLock(
        self, owner: str, name: str, holder: str, ttl: float
    ) -> Deferred[bool]:
        def refresh(conn: Connection) -> bool:
            cursor = conn.execute(
                "UPDATE mail_locks SET expires = %s"
                " WHERE owner = %s AND name = %s AND holder = %s",
                (self._now() + ttl, owner, name, holder),
            )
            return cursor.rowcount == 1

        return self._db.run(refresh)

    def unlock(self, owner: str, name: str, holder: str) -> Deferred[None]:
        def release(conn: Connection) -> None:
            conn.execute(
                "DELETE FROM mail_locks WHERE owner = %s AND name = %s AND holder = %s",
                (owner, name, holder),
            )

        return self._db.run(release)

    # Change notification.

    def watch(
        self, owner: str, name: str, callback: Callable[[FolderInfo], None]
    ) -> Callable[[], None]:
        key = (owner, canonicalFolder(name))
        self._watchers.setdefault(key, []).append(callback)
        # No baseline is read: a change made while the read was on its way
        # (the listener down, its NOTIFY lost) would be in it and never
        # reported. The first change heard or caught up is reported
        # whatever it is (at worst a needless look for the watcher); later
        # ones when their modseq is higher.

        def cancel() -> None:
            callbacks = self._watchers.get(key, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._watchers.pop(key, None)
                self._seen.pop(key, None)

        return cancel

    def heard(self, payload: str) -> None:
        """
        A NOTIFY from some node (this one included) named a folder.
        """
        owner, _, name = payload.partition("\n")
        self._changed({(owner, name)})

    def catchUp(self) -> None:
        """
        Check every watched folder: notifications may have been missed
        while the listener was disconnected.
        """
        self._changed(set(self._watchers))

    def _changed(self, keys: set[Key]) -> None:
        for key in keys:
            if key in self._watchers:
                self._readInfo(key).addCallback(self._fire, key).addErrback(
                    lambda f: self._log.failure("Notifying watchers", f)
                )

    def _readInfo(self, key: Key) -> Deferred[FolderInfo | None]:
        owner, name = key
        return self._db.run(lambda conn: _folderInfo(conn, owner, name))

    def _fire(self, info: FolderInfo | None, key: Key) -> None:
        if info is None:
            return
        seen = self._seen.get(key)
        if seen is not None and info.modseq <= seen:
            return
        self._seen[key] = info.modseq
        for callback in list(self._watchers.get(key, [])):
            try:
                callback(info)
            except Exception:
                self._log.failure("Mail folder watcher failed")
