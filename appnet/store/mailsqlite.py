"""
The SQLite mail store.

Index rows live in the store's database (tables in L{appnet.store.schema}
C{MAIL}). A message's bytes live in an immutable file (L{appnet.store._files})
or, when it is small (L{SQLiteMailStore.inlineLimit}), in a body row of
the database beside its index row (why: HACKING.rst, "Store"). A delivery
first makes its files durable, then commits every index row (and small
body) in one write transaction (L{appnet.store.groupcommit}); only then
does its Deferred fire.

Nothing here assumes it is the only process using the database: UIDs,
modseqs, quota and locks are decided inside write transactions, and
watched folders are polled (L{appnet.store.watching}) so a change
committed by another process is noticed too.
"""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from attrs import define, field
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from appnet.errors import FolderExists, NoSuchFolder, NoSuchMessage, QuotaExceeded
from appnet.store._db import Database, batches
from appnet.store._files import MessageFiles, StagedFile
from appnet.store.groupcommit import Direct, GroupCommit
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
from appnet.store.listings import Listing, Listings
from appnet.store.mailcommon import (
    canonicalFolder,
    changeFlags,
    formatFlags,
    openPrefixed,
    parseFlags,
    uidValidityFor,
)
from appnet.store.threads import Threads
from appnet.store.watching import Delta, FolderWatcher, IFolderFeed, Key

__all__ = ["SQLiteMailStore"]

T = TypeVar("T")


def _account(conn: sqlite3.Connection, owner: str) -> tuple[int, int, int]:
    conn.execute("INSERT OR IGNORE INTO mail_accounts (owner) VALUES (?)", (owner,))
    row = conn.execute(
        "SELECT bytes, messages, last_uidvalidity FROM mail_accounts WHERE owner = ?",
        (owner,),
    ).fetchone()
    return row[0], row[1], row[2]


def _newFolder(conn: sqlite3.Connection, owner: str, name: str, now: float) -> int:
    _, _, last = _account(conn, owner)
    validity = uidValidityFor(now, last)
    conn.execute(
        "UPDATE mail_accounts SET last_uidvalidity = ? WHERE owner = ?",
        (validity, owner),
    )
    cursor = conn.execute(
        "INSERT INTO mail_folders (owner, name, uidvalidity) VALUES (?, ?, ?)",
        (owner, name, validity),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _existingFolderId(conn: sqlite3.Connection, owner: str, name: str) -> int | None:
    """
    The id of a folder, or C{None} for an INBOX not made yet (readers see
    it empty); any other folder must exist.
    """
    row = conn.execute(
        "SELECT id FROM mail_folders WHERE owner = ? AND name = ?", (owner, name)
    ).fetchone()
    if row is not None:
        return int(row[0])
    if name == INBOX:
        return None
    raise NoSuchFolder(owner, name)


def _folderId(
    conn: sqlite3.Connection, owner: str, name: str, now: float, create: bool
) -> int:
    """
    The id of a folder; INBOX is made on first use (only by writers:
    C{create}), other folders must exist.
    """
    fid = _existingFolderId(conn, owner, name)
    if fid is not None:
        return fid
    if create:
        return _newFolder(conn, owner, name, now)
    raise NoSuchFolder(owner, name)


def _folderInfo(conn: sqlite3.Connection, owner: str, name: str) -> FolderInfo | None:
    row = conn.execute(
        "SELECT id, uidvalidity, uidnext, modseq, subscribed, first_recent_uid"
        " FROM mail_folders WHERE owner = ? AND name = ?",
        (owner, name),
    ).fetchone()
    if row is None:
        return None
    fid, validity, uidnext, modseq, subscribed, firstRecent = row
    count, size, unseen, recent = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0),"
        " COALESCE(SUM(CASE WHEN instr(' ' || flags || ' ', ' \\Seen ') = 0"
        " THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN uid >= ? THEN 1 ELSE 0 END), 0)"
        " FROM mail_messages WHERE folder = ?",
        (firstRecent, fid),
    ).fetchone()
    return FolderInfo(
        owner,
        name,
        validity,
        uidnext,
        modseq,
        count,
        unseen,
        size,
        bool(subscribed),
        recent,
        firstRecent,
    )


def _bump(conn: sqlite3.Connection, fid: int) -> int:
    """Raise a folder's modseq; return the new value."""
    conn.execute("UPDATE mail_folders SET modseq = modseq + 1 WHERE id = ?", (fid,))
    return int(
        conn.execute("SELECT modseq FROM mail_folders WHERE id = ?", (fid,)).fetchone()[
            0
        ]
    )


#: Index rows read lately, as made (a row is a value: listing a folder
#: again reuses those unchanged instead of making each anew).
_INFOS: dict[tuple[int, int, str, float, int], MessageInfo] = {}
_MAX_INFOS = 1 << 14


def _info(row: tuple[int, int, str, float, int]) -> MessageInfo:
    info = _INFOS.get(row)
    if info is None:
        if len(_INFOS) >= _MAX_INFOS:
            _INFOS.clear()
        info = _INFOS[row] = MessageInfo(
            row[0], row[1], parseFlags(row[2]), row[3], row[4]
        )
    return info


def _checkQuota(
    conn: sqlite3.Connection, adding: Mapping[str, tuple[int | None, int]]
) -> None:
    """
    @param adding: owner to (quota, bytes to add).
    @raise QuotaExceeded: for the first owner that would go over.
    """
    for owner, (quota, size) in adding.items():
        used, _, _ = _account(conn, owner)
        if quota is not None and used + size > quota:
            raise QuotaExceeded(owner, quota, used, size)


def _insertMessage(
    conn: sqlite3.Connection,
    fid: int,
    file: str,
    size: int,
    flags: frozenset[str],
    internalDate: float,
    prefix: bytes = b"",
    body: int | None = None,
) -> int:
    uid = int(
        conn.execute(
            "SELECT uidnext FROM mail_folders WHERE id = ?", (fid,)
        ).fetchone()[0]
    )
    conn.execute(
        "UPDATE mail_folders SET uidnext = uidnext + 1, modseq = modseq + 1"
        " WHERE id = ?",
        (fid,),
    )
    modseq = conn.execute(
        "SELECT modseq FROM mail_folders WHERE id = ?", (fid,)
    ).fetchone()[0]
    flagged = formatFlags(flags)
    row = (fid, uid, file, size, flagged, internalDate, modseq, prefix, body)
    conn.execute(_INSERT_MESSAGE, row)
    return uid


_INSERT_MESSAGE = (
    "INSERT INTO mail_messages"
    " (folder, uid, file, size, flags, internaldate, modseq, prefix, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _newBody(conn: sqlite3.Connection, data: bytes) -> int:
    """A body row holding C{data}; its id."""
    body = conn.execute("INSERT INTO mail_bodies (data) VALUES (?)", (data,)).lastrowid
    assert body is not None
    return body


def _copyBody(conn: sqlite3.Connection, body: int) -> int | None:
    """A new body row with the bytes of body C{body}; C{None} if it is gone."""
    cursor = conn.execute(
        "INSERT INTO mail_bodies (data) SELECT data FROM mail_bodies WHERE id = ?",
        (body,),
    )
    return cursor.lastrowid if cursor.rowcount == 1 else None


def _deleteBodies(conn: sqlite3.Connection, bodies: Sequence[int | None]) -> None:
    """Remove the body rows of messages being removed (C{None}: a file)."""
    for batch in batches([b for b in bodies if b is not None]):
        marks = ",".join("?" * len(batch))
        conn.execute(f"DELETE FROM mail_bodies WHERE id IN ({marks})", tuple(batch))


#: Columns of L{_selectRows} for opening messages: the last is the bytes
#: of the message's body row (NULL for a message in a file).
_OPEN = (
    "uid, file, size, prefix,"
    " (SELECT data FROM mail_bodies WHERE id = mail_messages.body)"
)


def _messageBody(
    files: MessageFiles, file: str, size: int, prefix: bytes, data: bytes | None
) -> MessageBody:
    """
    A message's bytes: C{data} from its body row if it has one, else its
    file; either way after its C{prefix}.
    """
    if data is not None:
        whole = prefix + data
        return MessageBody(size, partial(io.BytesIO, whole), memory=whole)
    opener = partial(files.opener, file)
    return MessageBody(size, partial(openPrefixed, prefix, opener))


def _charge(
    conn: sqlite3.Connection, owner: str, quota: int | None, size: int, count: int
) -> None:
    """
    Add a delivery to an account's usage, in one statement (the write
    path's quota check: the caller's savepoint takes it back on refusal).

    @raise QuotaExceeded: if it would take the account past C{quota}.
    """
    [(now,)] = conn.execute(
        "INSERT INTO mail_accounts (owner, bytes, messages) VALUES (?, ?, ?)"
        " ON CONFLICT (owner) DO UPDATE SET bytes = MAX(0, bytes + excluded.bytes),"
        " messages = MAX(0, messages + excluded.messages)"
        " RETURNING bytes",
        (owner, size, count),
    ).fetchall()
    used = now - size
    if quota is not None and now > quota:
        raise QuotaExceeded(owner, quota, used, size)


_NEXT_UID = (
    "UPDATE mail_folders SET uidnext = uidnext + 1, modseq = modseq + 1"
    " WHERE owner = ? AND name = ? RETURNING id, uidnext - 1, modseq"
)


def _deliverRow(
    conn: sqlite3.Connection,
    target: DeliveryTarget,
    file: str,
    size: int,
    internalDate: float,
    prefix: bytes,
    modseqs: list[int],
    body: int | None = None,
) -> int:
    """
    A delivered message's index row: its folder's next UID and modseq
    taken in one statement (INBOX made on first use), then the row; the
    modseq is appended to C{modseqs}. The bytes are file C{file}, or
    body row C{body} (then C{file} is empty).
    """
    key = (target.owner, target.folder)
    rows = conn.execute(_NEXT_UID, key).fetchall()
    if not rows:
        if target.folder != INBOX:
            raise NoSuchFolder(*key)
        _newFolder(conn, target.owner, target.folder, internalDate)
        rows = conn.execute(_NEXT_UID, key).fetchall()
    [(fid, uid, modseq)] = rows
    flags = formatFlags(target.flags)
    row = (fid, uid, file, size, flags, internalDate, modseq, prefix, body)
    conn.execute(_INSERT_MESSAGE, row)
    modseqs.append(int(modseq))
    return int(uid)


def _addUsage(conn: sqlite3.Connection, owner: str, size: int, count: int) -> None:
    _account(conn, owner)
    conn.execute(
        "UPDATE mail_accounts SET bytes = MAX(0, bytes + ?),"
        " messages = MAX(0, messages + ?) WHERE owner = ?",
        (size, count, owner),
    )


def _selectRows(
    conn: sqlite3.Connection, fid: int, uids: Sequence[int] | None, columns: str
) -> list[Any]:
    if uids is None:
        return conn.execute(
            f"SELECT {columns} FROM mail_messages WHERE folder = ? ORDER BY uid",
            (fid,),
        ).fetchall()
    rows: list[Any] = []
    for batch in batches(sorted(set(uids))):
        marks = ",".join("?" * len(batch))
        rows += conn.execute(
            f"SELECT {columns} FROM mail_messages"
            f" WHERE folder = ? AND uid IN ({marks}) ORDER BY uid",
            (fid, *batch),
        ).fetchall()
    return rows


_INFO = "uid, size, flags, internaldate, modseq"


def _changes(
    conn: sqlite3.Connection, fid: int, modseq: int
) -> tuple[list[MessageInfo], list[int]]:
    """A folder's rows changed after C{modseq}, and the UIDs expunged since."""
    changed = conn.execute(
        f"SELECT {_INFO} FROM mail_messages WHERE folder = ? AND modseq > ?"
        " ORDER BY uid",
        (fid, modseq),
    ).fetchall()
    gone = conn.execute(
        "SELECT uid FROM mail_expunged WHERE folder = ? AND modseq > ? ORDER BY uid",
        (fid, modseq),
    ).fetchall()
    return [_info(r) for r in changed], [r[0] for r in gone]


#: Columns of L{_selectRows} for copying and moving messages.
_MOVE = "uid, file, size, flags, internaldate, prefix, body"


@implementer(IMailStore, IFolderFeed)
@define
class SQLiteMailStore:
    """
    Folders and messages in the store's database and message files.
    """

    _db: Database
    _files: MessageFiles
    _reactor: Any
    _threads: Threads
    _now: Callable[[], float] = time.time
    #: Messages at most this long (bytes, without the Return-Path line)
    #: that a delivery still holds in memory are kept in the database,
    #: not in files; 0 for none.
    inlineLimit: int = field(default=16 << 10, kw_only=True)
    _group: GroupCommit = field(init=False)
    _watcher: FolderWatcher = field(init=False)
    #: Folder listings read lately (L{snapshot} reads only what changed).
    _listings: Listings = field(factory=Listings, init=False)

    def __attrs_post_init__(self) -> None:
        self._group = GroupCommit(Direct.of(self._db, self._threads, self._reactor))
        self._watcher = FolderWatcher(self._readInfos, self._reactor)

    @property
    def pollInterval(self) -> float:
        """
        How often (seconds) watched folders are checked for changes made
        by other processes.
        """
        return self._watcher.interval

    @pollInterval.setter
    def pollInterval(self, seconds: float) -> None:
        self._watcher.interval = seconds

    def _inThread(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        return self._threads.run(fn, *args)

    def start(self) -> Deferred[None]:
        """
        Make the message directories and clear stale staged files.
        """
        return self._inThread(self._files.prepare)

    def stop(self) -> None:
        """
        Stop polling for changes.
        """
        self._watcher.stop()

    def stage(self) -> IStagedMessage:
        return self._files.stage()

    def deliver(
        self,
        staged: IStagedMessage,
        targets: Sequence[DeliveryTarget],
        internalDate: float | None = None,
        prefix: bytes = b"",
    ) -> Deferred[Sequence[int]]:
        # No coroutine: this is every delivery's path, and a Deferred
        # chain of one callback costs less than a coroutine around it.
        if not isinstance(staged, StagedFile):
            return fail(TypeError("staged message is not from this store"))
        if not targets:
            return succeed([])
        try:
            targets = [
                DeliveryTarget(t.owner, canonicalFolder(t.folder), t.flags, t.quota)
                for t in targets
            ]
        except ValueError as e:
            return fail(e)
        size = len(prefix) + staged.size
        date = self._now() if internalDate is None else internalDate
        modseqs: list[int] = []
        held = staged.held(self.inlineLimit) if self.inlineLimit > 0 else None

        def insert(conn: sqlite3.Connection, names: Sequence[str] | None) -> list[int]:
            adding: dict[str, tuple[int | None, int, int]] = {}
            for t in targets:
                quota, total, count = adding.get(t.owner, (t.quota, 0, 0))
                adding[t.owner] = (
                    t.quota if quota is None else quota,
                    total + size,
                    count + 1,
                )
            for owner, (quota, total, count) in adding.items():
                _charge(conn, owner, quota, total, count)
            del modseqs[:]
            if names is None:
                assert held is not None
                names = [""] * len(targets)
                bodies: list[int | None] = [_newBody(conn, held) for _ in targets]
            else:
                bodies = [None] * len(targets)
            return [
                _deliverRow(conn, t, name, size, date, prefix, modseqs, body)
                for t, name, body in zip(targets, names, bodies, strict=True)
            ]

        def changed(uids: list[int]) -> list[int]:
            for target, uid, modseq in zip(targets, uids, modseqs, strict=True):
                row = MessageInfo(uid, size, target.flags, date, modseq)
                self._pushed(target.owner, target.folder, modseq, changed=(row,))
            return uids

        if held is not None:
            # Small: a body row per target, committed with the rest of
            # the batch; no file at all.
            d = self._group.write(partial(insert, names=None))
        else:
            files = self._files
            placement = files.placement(
                staged, [files.ownerDirectory(t.owner) for t in targets], consume=True
            )
            d = self._group.commit(placement, insert)
        return d.addCallback(changed)

    def folder(self, owner: str, name: str = INBOX) -> Deferred[FolderInfo]:
        name = canonicalFolder(name)
        if name == INBOX:

            def ensure(conn: sqlite3.Connection) -> FolderInfo:
                _folderId(conn, owner, name, self._now(), create=True)
                info = _folderInfo(conn, owner, name)
                assert info is not None
                return info

            # Read first: INBOX usually exists, and reads run in parallel.
            async def inbox() -> FolderInfo:
                info = await self._db.read(lambda conn: _folderInfo(conn, owner, name))
                if info is None:
                    info = await self._db.write(ensure)
                return info

            return Deferred.fromCoroutine(inbox())

        def select(conn: sqlite3.Connection) -> FolderInfo:
            info = _folderInfo(conn, owner, name)
            if info is None:
                raise NoSuchFolder(owner, name)
            return info

        return self._db.read(select)

    def listFolders(self, owner: str) -> Deferred[Sequence[FolderInfo]]:
        async def run() -> Sequence[FolderInfo]:
            inbox = await self.folder(owner, INBOX)

            def select(conn: sqlite3.Connection) -> list[FolderInfo]:
                names = [
                    row[0]
                    for row in conn.execute(
                        "SELECT name FROM mail_folders WHERE owner = ? AND name != ?"
                        " ORDER BY name",
                        (owner, INBOX),
                    )
                ]
                infos = [_folderInfo(conn, owner, n) for n in names]
                return [i for i in infos if i is not None]

            return [inbox, *await self._db.read(select)]

        return Deferred.fromCoroutine(run())

    def createFolder(self, owner: str, name: str) -> Deferred[FolderInfo]:
        name = canonicalFolder(name)

        def create(conn: sqlite3.Connection) -> FolderInfo:
            try:
                _newFolder(conn, owner, name, self._now())
            except sqlite3.IntegrityError:
                raise FolderExists(owner, name) from None
            info = _folderInfo(conn, owner, name)
            assert info is not None
            return info

        return self._db.write(create)

    def renameFolder(
        self, owner: str, old: str, new: str, delimiter: str | None = None
    ) -> Deferred[None]:
        old, new = canonicalFolder(old), canonicalFolder(new)
        renamed: set[Key] = {(owner, old), (owner, new)}

        def rename(conn: sqlite3.Connection) -> None:
            now = self._now()
            fid = _folderId(conn, owner, old, now, create=True)
            moves = [(fid, old, new)]
            if delimiter and old != INBOX:
                prefix = old + delimiter
                for row in conn.execute(
                    "SELECT id, name FROM mail_folders WHERE owner = ?"
                    " AND substr(name, 1, ?) = ?",
                    (owner, len(prefix), prefix),
                ):
                    moves.append((row[0], row[1], new + row[1][len(old) :]))
            for _, _, newName in moves:
                if conn.execute(
                    "SELECT 1 FROM mail_folders WHERE owner = ? AND name = ?",
                    (owner, newName),
                ).fetchone():
                    raise FolderExists(owner, newName)
            if old != INBOX:
                # Two steps, so that names swapped within the subtree never
                # collide with the UNIQUE constraint half-way.
                for folder, _, _ in moves:
                    conn.execute(
                        "UPDATE mail_folders SET name = char(1) || id WHERE id = ?",
                        (folder,),
                    )
                for folder, source, newName in moves:
                    conn.execute(
                        "UPDATE mail_folders SET name = ? WHERE id = ?",
                        (newName, folder),
                    )
                    renamed.update({(owner, source), (owner, newName)})
                return
            # RFC 3501 6.3.5: INBOX's messages move to the new folder and
            # INBOX stays, empty, keeping its UIDVALIDITY and UIDNEXT.
            # Messages not yet claimed as \Recent stay unclaimed there.
            target = _newFolder(conn, owner, new, now)
            uidnext, firstRecent = conn.execute(
                "SELECT uidnext, first_recent_uid FROM mail_folders WHERE id = ?",
                (fid,),
            ).fetchone()
            conn.execute(
                "UPDATE mail_folders SET uidnext = ?, first_recent_uid = ?,"
                " modseq = 2 WHERE id = ?",
                (uidnext, firstRecent, target),
            )
            modseq = _bump(conn, fid)
            conn.execute(
                "INSERT OR REPLACE INTO mail_expunged (folder, uid, modseq)"
                " SELECT ?, uid, ? FROM mail_messages WHERE folder = ?",
                (fid, modseq, fid),
            )
            conn.execute(
                "UPDATE mail_messages SET folder = ?, modseq = 2 WHERE folder = ?",
                (target, fid),
            )

        async def run() -> None:
            await self._db.write(rename)
            self._watcher.changed(renamed)

        return Deferred.fromCoroutine(run())

    def deleteFolder(self, owner: str, name: str) -> Deferred[None]:
        name = canonicalFolder(name)

        def delete(conn: sqlite3.Connection) -> list[str]:
            if name == INBOX:
                raise ValueError("INBOX cannot be deleted")
            fid = _folderId(conn, owner, name, self._now(), create=False)
            rows = conn.execute(
                "SELECT file, size, body FROM mail_messages WHERE folder = ?", (fid,)
            ).fetchall()
            _addUsage(conn, owner, -sum(r[1] for r in rows), -len(rows))
            conn.execute("DELETE FROM mail_folders WHERE id = ?", (fid,))
            _deleteBodies(conn, [r[2] for r in rows])
            return [r[0] for r in rows if r[2] is None]

        async def run() -> None:
            files = await self._db.write(delete)
            await self._inThread(self._files.remove, files)
            self._watcher.changed({(owner, name)})

        return Deferred.fromCoroutine(run())

    def listMessages(
        self, owner: str, name: str = INBOX, uids: Sequence[int] | None = None
    ) -> Deferred[Sequence[MessageInfo]]:
        name = canonicalFolder(name)

        def select(conn: sqlite3.Connection) -> list[MessageInfo]:
            fid = _existingFolderId(conn, owner, name)
            if fid is None:
                return []
            return [_info(r) for r in _selectRows(conn, fid, uids, _INFO)]

        return self._db.read(select)

    def snapshot(
        self, owner: str, name: str
    ) -> Deferred[tuple[FolderInfo, Sequence[MessageInfo]]]:
        name = canonicalFolder(name)

        key = (owner, name)
        known = self._listings.get(key)

        def select(conn: sqlite3.Connection) -> tuple[FolderInfo, Listing] | None:
            row = conn.execute(
                "SELECT id, uidvalidity, uidnext, modseq, subscribed,"
                " first_recent_uid FROM mail_folders WHERE owner = ? AND name = ?",
                key,
            ).fetchone()
            if row is None:
                return None
            fid, validity, uidnext, modseq, subscribed, firstRecent = row
            if known is None or not known.follows(fid, validity, modseq):
                rows = [_info(r) for r in _selectRows(conn, fid, None, _INFO)]
                listing = Listing.of(fid, validity, modseq, rows)
            elif known.modseq < modseq:
                listing = known.updated(modseq, *_changes(conn, fid, known.modseq))
            else:
                listing = known
            info = listing.info(owner, name, uidnext, bool(subscribed), firstRecent)
            return info, listing

        async def run() -> tuple[FolderInfo, Sequence[MessageInfo]]:
            found = await self._db.read(select)
            if found is None:
                # Only INBOX is made on first use; it has no messages yet.
                return await self.folder(owner, name), []
            info, listing = found
            self._listings.put(key, listing)
            return info, listing.rows

        return Deferred.fromCoroutine(run())

    def newestFirst(
        self, owner: str, name: str, offset: int, limit: int
    ) -> Deferred[Sequence[MessageInfo]]:
        name = canonicalFolder(name)

        def select(conn: sqlite3.Connection) -> list[MessageInfo]:
            fid = _existingFolderId(conn, owner, name)
            if fid is None:
                return []
            rows = conn.execute(
                f"SELECT {_INFO} FROM mail_messages WHERE folder = ?"
                " ORDER BY internaldate DESC, uid DESC LIMIT ? OFFSET ?",
                (fid, limit, offset),
            ).fetchall()
            return [_info(r) for r in rows]

        return self._db.read(select)

    def openMessage(self, owner: str, name: str, uid: int) -> Deferred[MessageBody]:
        name = canonicalFolder(name)

        def select(conn: sqlite3.Connection) -> MessageBody:
            row = conn.execute(
                "SELECT m.file, m.size, m.prefix,"
                " (SELECT data FROM mail_bodies WHERE id = m.body)"
                " FROM mail_messages m JOIN mail_folders f ON f.id = m.folder"
                " WHERE f.owner = ? AND f.name = ? AND m.uid = ?",
                (owner, name, uid),
            ).fetchone()
            if row is None:
                raise NoSuchMessage(f"{owner}/{name}", uid)
            return _messageBody(self._files, *row)

        return self._db.read(select)

    def openMessages(
        self, owner: str, name: str, uids: Sequence[int]
    ) -> Deferred[Mapping[int, MessageBody]]:
        name = canonicalFolder(name)

        def select(conn: sqlite3.Connection) -> list[Any]:
            fid = _existingFolderId(conn, owner, name)
            if fid is None:
                return []
            return _selectRows(conn, fid, uids, _OPEN)

        async def run() -> Mapping[int, MessageBody]:
            rows = await self._db.read(select)
            files = self._files
            return {row[0]: _messageBody(files, *row[1:]) for row in rows}

        return Deferred.fromCoroutine(run())

    def setSubscribed(self, owner: str, name: str, subscribed: bool) -> Deferred[None]:
        name = canonicalFolder(name)

        def update(conn: sqlite3.Connection) -> None:
            fid = _folderId(conn, owner, name, self._now(), create=True)
            conn.execute(
                "UPDATE mail_folders SET subscribed = ? WHERE id = ?",
                (int(subscribed), fid),
            )

        return self._db.write(update)

    def setFlags(
        self,
        owner: str,
        name: str,
        uids: Sequence[int],
        flags: frozenset[str],
        mode: str,
    ) -> Deferred[Sequence[MessageInfo]]:
        name = canonicalFolder(name)

        def update(conn: sqlite3.Connection) -> list[MessageInfo]:
            fid = _folderId(conn, owner, name, self._now(), create=True)
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
                    "UPDATE mail_messages SET flags = ?, modseq = ?"
                    " WHERE folder = ? AND uid = ?",
                    (formatFlags(new), modseq, fid, row[0]),
                )
                result.append(MessageInfo(row[0], row[1], new, row[3], modseq))
            return result

        async def run() -> Sequence[MessageInfo]:
            changed = await self._group.write(update)
            if changed:
                self._pushed(owner, name, changed[0].modseq, changed=tuple(changed))
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

        def delete(conn: sqlite3.Connection) -> tuple[list[int], list[str], int]:
            fid = _folderId(conn, owner, name, self._now(), create=True)
            if uids is None or onlyDeleted:
                # Only the folder's \Deleted rows, found by SQLite (not
                # every row of the UIDs given, parsed here).
                rows = conn.execute(
                    "SELECT uid, file, size, body FROM mail_messages WHERE folder = ?"
                    " AND instr(' ' || flags || ' ', ' \\Deleted ') > 0"
                    " ORDER BY uid",
                    (fid,),
                ).fetchall()
                if uids is not None:
                    wanted = set(uids)
                    rows = [r for r in rows if r[0] in wanted]
            else:
                rows = _selectRows(conn, fid, uids, "uid, file, size, body")
            if not rows:
                return [], [], 0
            modseq = _bump(conn, fid)
            for batch in batches([r[0] for r in rows]):
                marks = ",".join("?" * len(batch))
                conn.execute(
                    f"DELETE FROM mail_messages WHERE folder = ? AND uid IN ({marks})",
                    (fid, *batch),
                )
            _deleteBodies(conn, [r[3] for r in rows])
            conn.executemany(
                "INSERT OR REPLACE INTO mail_expunged (folder, uid, modseq)"
                " VALUES (?, ?, ?)",
                [(fid, r[0], modseq) for r in rows],
            )
            _addUsage(conn, owner, -sum(r[2] for r in rows), -len(rows))
            files = [r[1] for r in rows if r[3] is None]
            return [r[0] for r in rows], files, modseq

        async def run() -> Sequence[int]:
            # Shared with the commits of other sessions' flag changes,
            # expunges and deliveries (one fsync for all).
            removed, files, modseq = await self._group.write(delete)
            if removed:
                self._pushed(owner, name, modseq, expunged=tuple(removed))
                if files:
                    await self._inThread(self._files.remove, files)
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

        def select(conn: sqlite3.Connection) -> list[Any]:
            fid = _existingFolderId(conn, owner, name)
            if fid is None:
                raise NoSuchFolder(owner, name)
            return _selectRows(conn, fid, uids, _MOVE)

        async def run() -> Mapping[int, int]:
            rows = await self._db.read(select)
            if not rows:
                return {}
            inFiles = [r[1] for r in rows if r[6] is None]
            names = await self._inThread(self._files.link, inFiles, owner)

            def insert(conn: sqlite3.Connection) -> dict[int, int]:
                total = sum(r[2] for r in rows)
                _checkQuota(conn, {owner: (quota, total)})
                fid = _folderId(conn, owner, dest, self._now(), create=True)
                mapping = {}
                linked = iter(names)
                for uid, _, size, flags, date, prefix, body in rows:
                    if body is None:
                        file, copied = next(linked), None
                    else:
                        file, copied = "", _copyBody(conn, body)
                        if copied is None:
                            # Expunged since it was read (a file's link
                            # would have failed the same way).
                            raise NoSuchMessage(f"{owner}/{name}", uid)
                    mapping[uid] = _insertMessage(
                        conn, fid, file, size, parseFlags(flags), date, prefix, copied
                    )
                _addUsage(conn, owner, total, len(rows))
                return mapping

            try:
                mapping = await self._db.write(insert)
            except BaseException:
                await self._inThread(self._files.remove, names)
                raise
            self._watcher.changed({(owner, dest)})
            return mapping

        return Deferred.fromCoroutine(run())

    def move(
        self, owner: str, name: str, uids: Sequence[int], dest: str
    ) -> Deferred[Mapping[int, int]]:
        name, dest = canonicalFolder(name), canonicalFolder(dest)

        def move(conn: sqlite3.Connection) -> dict[int, int]:
            now = self._now()
            source = _folderId(conn, owner, name, now, create=True)
            target = _folderId(conn, owner, dest, now, create=True)
            rows = _selectRows(conn, source, uids, _MOVE)
            if not rows:
                return {}
            mapping = {}
            for uid, file, size, flags, date, prefix, body in rows:
                # The row moves with its file or body row.
                mapping[uid] = _insertMessage(
                    conn, target, file, size, parseFlags(flags), date, prefix, body
                )
            modseq = _bump(conn, source)
            for batch in batches([r[0] for r in rows]):
                marks = ",".join("?" * len(batch))
                conn.execute(
                    f"DELETE FROM mail_messages WHERE folder = ? AND uid IN ({marks})",
                    (source, *batch),
                )
            conn.executemany(
                "INSERT OR REPLACE INTO mail_expunged (folder, uid, modseq)"
                " VALUES (?, ?, ?)",
                [(source, r[0], modseq) for r in rows],
            )
            return mapping

        async def run() -> Mapping[int, int]:
            mapping = await self._db.write(move)
            if mapping:
                self._watcher.changed({(owner, name), (owner, dest)})
            return mapping

        return Deferred.fromCoroutine(run())

    def changesSince(self, owner: str, name: str, modseq: int) -> Deferred[Changes]:
        name = canonicalFolder(name)

        def select(conn: sqlite3.Connection) -> Changes:
            row = conn.execute(
                "SELECT id, modseq, first_recent_uid FROM mail_folders"
                " WHERE owner = ? AND name = ?",
                (owner, name),
            ).fetchone()
            if row is None:
                if name == INBOX:
                    return Changes(0)
                raise NoSuchFolder(owner, name)
            fid, current, firstRecent = row
            changed, gone = _changes(conn, fid, modseq)
            return Changes(current, tuple(changed), tuple(gone), firstRecent)

        return self._db.read(select)

    def claimRecent(self, owner: str, name: str) -> Deferred[tuple[int, int]]:
        name = canonicalFolder(name)

        def claim(conn: sqlite3.Connection) -> tuple[int, int]:
            fid = _folderId(conn, owner, name, self._now(), create=True)
            while True:
                first, uidnext = conn.execute(
                    "SELECT first_recent_uid, uidnext FROM mail_folders WHERE id = ?",
                    (fid,),
                ).fetchone()
                if first >= uidnext:
                    return first, first
                # Compare-and-set: under SQLite's writer lock the compare
                # always holds; a store whose transactions can interleave
                # (PostgreSQL, READ COMMITTED) sees 0 rows and reads again.
                swapped = conn.execute(
                    "UPDATE mail_folders SET first_recent_uid = ?"
                    " WHERE id = ? AND first_recent_uid = ?",
                    (uidnext, fid, first),
                ).rowcount
                if swapped:
                    return first, uidnext

        async def run() -> tuple[int, int]:
            first, end = await self._group.write(claim)
            if end > first:
                self._watcher.pushed((owner, name), Delta(recentFrom=end))
            return first, end

        return Deferred.fromCoroutine(run())

    def usage(self, owner: str) -> Deferred[Usage]:
        def select(conn: sqlite3.Connection) -> Usage:
            row = conn.execute(
                "SELECT bytes, messages FROM mail_accounts WHERE owner = ?", (owner,)
            ).fetchone()
            return Usage() if row is None else Usage(row[0], row[1])

        return self._db.read(select)

    def lock(self, owner: str, name: str, holder: str, ttl: float) -> Deferred[bool]:
        def take(conn: sqlite3.Connection) -> bool:
            now = self._now()
            row = conn.execute(
                "SELECT holder, expires FROM mail_locks WHERE owner = ? AND name = ?",
                (owner, name),
            ).fetchone()
            if row is not None and row[0] != holder and row[1] > now:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO mail_locks (owner, name, holder, expires)"
                " VALUES (?, ?, ?, ?)",
                (owner, name, holder, now + ttl),
            )
            return True

        return self._db.write(take)

    def refreshLock(
        self, owner: str, name: str, holder: str, ttl: float
    ) -> Deferred[bool]:
        def refresh(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE mail_locks SET expires = ?"
                " WHERE owner = ? AND name = ? AND holder = ?",
                (self._now() + ttl, owner, name, holder),
            )
            return cursor.rowcount == 1

        return self._db.write(refresh)

    def unlock(self, owner: str, name: str, holder: str) -> Deferred[None]:
        def release(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM mail_locks WHERE owner = ? AND name = ? AND holder = ?",
                (owner, name, holder),
            )

        return self._db.write(release)

    # Change notification.

    def watch(
        self, owner: str, name: str, callback: Callable[[FolderInfo], None]
    ) -> Callable[[], None]:
        return self._watcher.watch((owner, canonicalFolder(name)), callback)

    def feed(
        self, owner: str, name: str, callback: Callable[[Delta], None]
    ) -> Callable[[], None]:
        return self._watcher.feed((owner, canonicalFolder(name)), callback)

    def _pushed(
        self,
        owner: str,
        name: str,
        modseq: int,
        changed: tuple[MessageInfo, ...] = (),
        expunged: tuple[int, ...] = (),
    ) -> None:
        """Tell watchers of one modseq step made here, as it is."""
        changes = Changes(modseq, changed, expunged)
        self._watcher.pushed((owner, name), Delta(changes))

    def _readInfos(self, keys: Sequence[Key]) -> Deferred[Sequence[FolderInfo | None]]:
        def select(conn: sqlite3.Connection) -> list[FolderInfo | None]:
            return [_folderInfo(conn, *key) for key in keys]

        return self._db.read(select)
