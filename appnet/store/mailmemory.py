"""
In-memory mail store and queue, for tests.

Same contracts as the SQLite ones (errors, UIDs, modseqs, quota, locks),
answered through already-fired Deferreds; watchers are called at once.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from attrs import define, evolve, field
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from appnet.errors import FolderExists, NoSuchFolder, NoSuchMessage, QuotaExceeded
from appnet.store.interfaces import (
    INBOX,
    Changes,
    DeliveryTarget,
    FolderInfo,
    IMailStore,
    IQueueStore,
    IStagedMessage,
    MessageBody,
    MessageInfo,
    Notice,
    QueuedMessage,
    QueuedRecipient,
    RecipientState,
    RecipientUpdate,
    Usage,
)
from appnet.store.mailcommon import (
    canonicalFolder,
    changeFlags,
    formatFlags,
    uidValidityFor,
)
from appnet.store.watching import Delta, IFolderFeed

__all__ = ["MemoryMailStore", "MemoryQueueStore", "MemoryStaged"]

T = TypeVar("T")


@implementer(IStagedMessage)
class MemoryStaged:
    """
    A staged message in memory.
    """

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self.size = 0
        self.discarded = False

    def write(self, data: bytes) -> None:
        if self.discarded:
            raise ValueError("staged message is closed")
        self._buffer.write(data)
        self.size += len(data)

    def getvalue(self) -> bytes:
        return self._buffer.getvalue()

    def discard(self) -> None:
        self.discarded = True


@define
class _Message:
    uid: int
    data: bytes
    flags: frozenset[str]
    internalDate: float
    modseq: int

    def info(self) -> MessageInfo:
        return MessageInfo(
            self.uid, len(self.data), self.flags, self.internalDate, self.modseq
        )


@define
class _Folder:
    uidValidity: int
    uidNext: int = 1
    modseq: int = 1
    messages: dict[int, _Message] = field(factory=dict)
    expunged: dict[int, int] = field(factory=dict)
    subscribed: bool = True
    firstRecentUid: int = 1

    def add(self, data: bytes, flags: frozenset[str], date: float) -> int:
        uid = self.uidNext
        self.uidNext += 1
        self.modseq += 1
        self.messages[uid] = _Message(uid, data, flags, date, self.modseq)
        return uid


def _run(fn: Callable[[], T]) -> Deferred[T]:
    try:
        return succeed(fn())
    except Exception as e:
        return fail(e)


@implementer(IMailStore, IFolderFeed)
@define
class MemoryMailStore:
    """
    Folders in dicts.
    """

    _now: Callable[[], float] = lambda: 0.0
    _folders: dict[tuple[str, str], _Folder] = field(factory=dict)
    _lastValidity: dict[str, int] = field(factory=dict)
    _locks: dict[tuple[str, str], tuple[str, float]] = field(factory=dict)
    _watchers: dict[tuple[str, str], list[Callable[[FolderInfo], None]]] = field(
        factory=dict
    )
    _feeds: dict[tuple[str, str], list[Callable[[Delta], None]]] = field(factory=dict)

    def stage(self) -> IStagedMessage:
        return MemoryStaged()

    def _new(self, owner: str, name: str) -> _Folder:
        validity = uidValidityFor(self._now(), self._lastValidity.get(owner, 0))
        self._lastValidity[owner] = validity
        folder = self._folders[(owner, name)] = _Folder(validity)
        return folder

    def _get(self, owner: str, name: str, create: bool = True) -> _Folder:
        name = canonicalFolder(name)
        folder = self._folders.get((owner, name))
        if folder is None:
            if name == INBOX and create:
                return self._new(owner, name)
            raise NoSuchFolder(owner, name)
        return folder

    def _used(self, owner: str) -> int:
        return sum(
            len(m.data)
            for (o, _), f in self._folders.items()
            if o == owner
            for m in f.messages.values()
        )

    def _info(self, owner: str, name: str, folder: _Folder) -> FolderInfo:
        messages = folder.messages.values()
        return FolderInfo(
            owner,
            name,
            folder.uidValidity,
            folder.uidNext,
            folder.modseq,
            len(messages),
            sum(1 for m in messages if "\\Seen" not in m.flags),
            sum(len(m.data) for m in messages),
            folder.subscribed,
            sum(1 for m in messages if m.uid >= folder.firstRecentUid),
            folder.firstRecentUid,
        )

    def _changed(self, owner: str, name: str, delta: Delta | None = None) -> None:
        folder = self._folders.get((owner, name))
        if folder is None:
            return
        for callback in list(self._watchers.get((owner, name), [])):
            callback(self._info(owner, name, folder))
        for feed in list(self._feeds.get((owner, name), [])):
            # Without the change itself: the feed reads what changed.
            feed(delta or Delta())

    def deliver(
        self,
        staged: IStagedMessage,
        targets: Sequence[DeliveryTarget],
        internalDate: float | None = None,
        prefix: bytes = b"",
    ) -> Deferred[Sequence[int]]:
        def run() -> Sequence[int]:
            if not isinstance(staged, MemoryStaged):
                raise TypeError("staged message is not from this store")
            data = prefix + staged.getvalue()
            adding: dict[str, tuple[int | None, int]] = {}
            for t in targets:
                quota, total = adding.get(t.owner, (t.quota, 0))
                adding[t.owner] = (
                    t.quota if quota is None else quota,
                    total + len(data),
                )
            for t in targets:
                if t.folder != INBOX:
                    self._get(t.owner, t.folder, create=False)
            for owner, (quota, size) in adding.items():
                used = self._used(owner)
                if quota is not None and used + size > quota:
                    raise QuotaExceeded(owner, quota, used, size)
            date = self._now() if internalDate is None else internalDate
            uids, deltas = [], []
            for t in targets:
                folder = self._get(t.owner, t.folder)
                uid = folder.add(data, t.flags, date)
                uids.append(uid)
                step = Changes(folder.modseq, (folder.messages[uid].info(),))
                deltas.append(Delta(step))
            for t, delta in zip(targets, deltas, strict=True):
                self._changed(t.owner, canonicalFolder(t.folder), delta)
            return uids

        return _run(run)

    def folder(self, owner: str, name: str = INBOX) -> Deferred[FolderInfo]:
        name = canonicalFolder(name)
        return _run(lambda: self._info(owner, name, self._get(owner, name)))

    def listFolders(self, owner: str) -> Deferred[Sequence[FolderInfo]]:
        def run() -> Sequence[FolderInfo]:
            self._get(owner, INBOX)
            names = sorted(n for (o, n) in self._folders if o == owner and n != INBOX)
            return [
                self._info(owner, n, self._folders[(owner, n)]) for n in [INBOX, *names]
            ]

        return _run(run)

    def createFolder(self, owner: str, name: str) -> Deferred[FolderInfo]:
        def run() -> FolderInfo:
            canonical = canonicalFolder(name)
            if (owner, canonical) in self._folders:
                raise FolderExists(owner, canonical)
            return self._info(owner, canonical, self._new(owner, canonical))

        return _run(run)

    def renameFolder(
        self, owner: str, old: str, new: str, delimiter: str | None = None
    ) -> Deferred[None]:
        def run() -> None:
            source, target = canonicalFolder(old), canonicalFolder(new)
            folder = self._get(owner, source)
            moves = [(source, target)]
            if delimiter and source != INBOX:
                prefix = source + delimiter
                moves += [
                    (n, target + n[len(source) :])
                    for (o, n) in list(self._folders)
                    if o == owner and n.startswith(prefix)
                ]
            for _, name in moves:
                if (owner, name) in self._folders:
                    raise FolderExists(owner, name)
            if source != INBOX:
                taken = {name: self._folders.pop((owner, name)) for name, _ in moves}
                for name, renamed in moves:
                    self._folders[(owner, renamed)] = taken[name]
                return
            moved = self._new(owner, target)
            moved.uidNext = folder.uidNext
            moved.firstRecentUid = folder.firstRecentUid
            moved.modseq = 2
            folder.modseq += 1
            for uid, message in folder.messages.items():
                message.modseq = 2
                moved.messages[uid] = message
                folder.expunged[uid] = folder.modseq
            folder.messages = {}
            self._changed(owner, source)

        return _run(run)

    def deleteFolder(self, owner: str, name: str) -> Deferred[None]:
        def run() -> None:
            canonical = canonicalFolder(name)
            if canonical == INBOX:
                raise ValueError("INBOX cannot be deleted")
            self._get(owner, canonical, create=False)
            del self._folders[(owner, canonical)]

        return _run(run)

    def listMessages(
        self, owner: str, name: str = INBOX, uids: Sequence[int] | None = None
    ) -> Deferred[Sequence[MessageInfo]]:
        def run() -> Sequence[MessageInfo]:
            folder = self._get(owner, name)
            wanted = sorted(folder.messages) if uids is None else sorted(set(uids))
            return [folder.messages[u].info() for u in wanted if u in folder.messages]

        return _run(run)

    def newestFirst(
        self, owner: str, name: str, offset: int, limit: int
    ) -> Deferred[Sequence[MessageInfo]]:
        def run() -> Sequence[MessageInfo]:
            folder = self._get(owner, name)
            infos = [m.info() for m in folder.messages.values()]
            infos.sort(key=lambda i: (i.internalDate, i.uid), reverse=True)
            return infos[offset : offset + limit]

        return _run(run)

    def openMessage(self, owner: str, name: str, uid: int) -> Deferred[MessageBody]:
        def run() -> MessageBody:
            message = self._get(owner, name).messages.get(uid)
            if message is None:
                raise NoSuchMessage(f"{owner}/{canonicalFolder(name)}", uid)
            data = message.data
            return MessageBody(len(data), lambda: io.BytesIO(data))

        return _run(run)

    def openMessages(
        self, owner: str, name: str, uids: Sequence[int]
    ) -> Deferred[Mapping[int, MessageBody]]:
        def run() -> Mapping[int, MessageBody]:
            folder = self._get(owner, name)
            found = {}
            for uid in sorted(set(uids)):
                message = folder.messages.get(uid)
                if message is not None:
                    data = message.data
                    found[uid] = MessageBody(len(data), partial(io.BytesIO, data))
            return found

        return _run(run)

    def setSubscribed(self, owner: str, name: str, subscribed: bool) -> Deferred[None]:
        def run() -> None:
            self._get(owner, name).subscribed = subscribed

        return _run(run)

    def setFlags(
        self,
        owner: str,
        name: str,
        uids: Sequence[int],
        flags: frozenset[str],
        mode: str,
    ) -> Deferred[Sequence[MessageInfo]]:
        def run() -> Sequence[MessageInfo]:
            formatFlags(flags)
            folder = self._get(owner, name)
            changes = []
            for uid in sorted(set(uids)):
                message = folder.messages.get(uid)
                if message is None:
                    continue
                new = changeFlags(message.flags, flags, mode)
                if new != message.flags:
                    changes.append((message, new))
            if not changes:
                return []
            folder.modseq += 1
            for message, new in changes:
                message.flags = new
                message.modseq = folder.modseq
            changed = [message.info() for message, _ in changes]
            step = Changes(folder.modseq, tuple(changed))
            self._changed(owner, canonicalFolder(name), Delta(step))
            return changed

        return _run(run)

    def expunge(
        self,
        owner: str,
        name: str,
        uids: Sequence[int] | None = None,
        onlyDeleted: bool = False,
    ) -> Deferred[Sequence[int]]:
        def run() -> Sequence[int]:
            folder = self._get(owner, name)
            if uids is None:
                gone = [u for u, m in folder.messages.items() if "\\Deleted" in m.flags]
            else:
                gone = [
                    u
                    for u in set(uids)
                    if u in folder.messages
                    and (not onlyDeleted or "\\Deleted" in folder.messages[u].flags)
                ]
            gone.sort()
            if not gone:
                return []
            folder.modseq += 1
            for uid in gone:
                del folder.messages[uid]
                folder.expunged[uid] = folder.modseq
            step = Changes(folder.modseq, (), tuple(gone))
            self._changed(owner, canonicalFolder(name), Delta(step))
            return gone

        return _run(run)

    def copy(
        self,
        owner: str,
        name: str,
        uids: Sequence[int],
        dest: str,
        quota: int | None = None,
    ) -> Deferred[Mapping[int, int]]:
        def run() -> Mapping[int, int]:
            source = self._get(owner, name, create=False)
            messages = [
                source.messages[u] for u in sorted(set(uids)) if u in source.messages
            ]
            if not messages:
                return {}
            target = self._get(owner, dest)
            total = sum(len(m.data) for m in messages)
            used = self._used(owner)
            if quota is not None and used + total > quota:
                raise QuotaExceeded(owner, quota, used, total)
            mapping = {
                m.uid: target.add(m.data, m.flags, m.internalDate) for m in messages
            }
            self._changed(owner, canonicalFolder(dest))
            return mapping

        return _run(run)

    def move(
        self, owner: str, name: str, uids: Sequence[int], dest: str
    ) -> Deferred[Mapping[int, int]]:
        def run() -> Mapping[int, int]:
            source = self._get(owner, name)
            target = self._get(owner, dest)
            messages = [
                source.messages[u] for u in sorted(set(uids)) if u in source.messages
            ]
            if not messages:
                return {}
            mapping = {
                m.uid: target.add(m.data, m.flags, m.internalDate) for m in messages
            }
            source.modseq += 1
            for m in messages:
                del source.messages[m.uid]
                source.expunged[m.uid] = source.modseq
            self._changed(owner, canonicalFolder(name))
            self._changed(owner, canonicalFolder(dest))
            return mapping

        return _run(run)

    def changesSince(self, owner: str, name: str, modseq: int) -> Deferred[Changes]:
        def run() -> Changes:
            canonical = canonicalFolder(name)
            folder = self._folders.get((owner, canonical))
            if folder is None:
                if canonical == INBOX:
                    return Changes(0)
                raise NoSuchFolder(owner, canonical)
            changed = tuple(
                m.info()
                for _, m in sorted(folder.messages.items())
                if m.modseq > modseq
            )
            gone = tuple(sorted(u for u, s in folder.expunged.items() if s > modseq))
            return Changes(folder.modseq, changed, gone, folder.firstRecentUid)

        return _run(run)

    def claimRecent(self, owner: str, name: str) -> Deferred[tuple[int, int]]:
        def run() -> tuple[int, int]:
            folder = self._get(owner, name)
            first = folder.firstRecentUid
            folder.firstRecentUid = max(first, folder.uidNext)
            if folder.firstRecentUid > first:
                key = (owner, canonicalFolder(name))
                for feed in list(self._feeds.get(key, [])):
                    feed(Delta(recentFrom=folder.firstRecentUid))
            return first, folder.firstRecentUid

        return _run(run)

    def feed(
        self, owner: str, name: str, callback: Callable[[Delta], None]
    ) -> Callable[[], None]:
        key = (owner, canonicalFolder(name))
        self._feeds.setdefault(key, []).append(callback)

        def cancel() -> None:
            callbacks = self._feeds.get(key, [])
            if callback in callbacks:
                callbacks.remove(callback)

        return cancel

    def snapshot(
        self, owner: str, name: str
    ) -> Deferred[tuple[FolderInfo, Sequence[MessageInfo]]]:
        name = canonicalFolder(name)

        def run() -> tuple[FolderInfo, Sequence[MessageInfo]]:
            folder = self._get(owner, name)
            listing = [folder.messages[u].info() for u in sorted(folder.messages)]
            return self._info(owner, name, folder), listing

        return _run(run)

    def watch(
        self, owner: str, name: str, callback: Callable[[FolderInfo], None]
    ) -> Callable[[], None]:
        key = (owner, canonicalFolder(name))
        self._watchers.setdefault(key, []).append(callback)

        def cancel() -> None:
            callbacks = self._watchers.get(key, [])
            if callback in callbacks:
                callbacks.remove(callback)

        return cancel

    def usage(self, owner: str) -> Deferred[Usage]:
        count = sum(
            len(f.messages) for (o, _), f in self._folders.items() if o == owner
        )
        return succeed(Usage(self._used(owner), count))

    def lock(self, owner: str, name: str, holder: str, ttl: float) -> Deferred[bool]:
        now = self._now()
        current = self._locks.get((owner, name))
        if current is not None and current[0] != holder and current[1] > now:
            return succeed(False)
        self._locks[(owner, name)] = (holder, now + ttl)
        return succeed(True)

    def refreshLock(
        self, owner: str, name: str, holder: str, ttl: float
    ) -> Deferred[bool]:
        current = self._locks.get((owner, name))
        if current is None or current[0] != holder:
            return succeed(False)
        self._locks[(owner, name)] = (holder, self._now() + ttl)
        return succeed(True)

    def unlock(self, owner: str, name: str, holder: str) -> Deferred[None]:
        current = self._locks.get((owner, name))
        if current is not None and current[0] == holder:
            del self._locks[(owner, name)]
        return succeed(None)


@define
class _Queued:
    message: QueuedMessage
    data: bytes


@implementer(IQueueStore)
@define
class MemoryQueueStore:
    """
    The outgoing queue in a dict.
    """

    _now: Callable[[], float] = lambda: 0.0
    _messages: dict[int, _Queued] = field(factory=dict)
    _next: int = 1
    _watchers: list[Callable[[], None]] = field(factory=list)

    def _changed(self) -> None:
        for callback in list(self._watchers):
            callback()

    def _update(self, id: int, **changes: Any) -> None:
        entry = self._messages[id]
        entry.message = evolve(entry.message, **changes)

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
        def run() -> int:
            if not isinstance(staged, MemoryStaged):
                raise TypeError("staged message is not from this store")
            if not recipients:
                raise ValueError("no recipients to queue")
            data = staged.getvalue()[skip:]
            now = self._now()
            id = self._next
            self._next += 1
            self._messages[id] = _Queued(
                QueuedMessage(
                    id=id,
                    sender=sender,
                    recipients=tuple(
                        QueuedRecipient(a, RecipientState.PENDING, None, now)
                        for a in dict.fromkeys(recipients)
                    ),
                    size=len(data),
                    created=now,
                    nextAttempt=now,
                    submitter=submitter,
                ),
                data,
            )
            if notice is not None and notice.message in self._messages:
                about = self._messages[notice.message].message
                self._update(
                    notice.message,
                    warned=about.warned or notice.warned,
                    recipients=tuple(
                        evolve(r, notified=True) if r.address in notice.bounced else r
                        for r in about.recipients
                    ),
                )
            self._changed()
            return id

        return _run(run)

    def get(self, id: int) -> Deferred[QueuedMessage | None]:
        entry = self._messages.get(id)
        return succeed(None if entry is None else entry.message)

    def list(self) -> Deferred[Sequence[QueuedMessage]]:
        return succeed(
            [e.message for _, e in sorted(self._messages.items(), key=_byAge)]
        )

    def openMessage(self, id: int) -> Deferred[MessageBody]:
        entry = self._messages.get(id)
        if entry is None:
            return fail(NoSuchMessage("queue", id))
        data = entry.data
        return succeed(MessageBody(len(data), lambda: io.BytesIO(data)))

    def adopt(
        self, owner: str, lease: float, callback: Callable[[QueuedMessage], None]
    ) -> Callable[[], None]:
        # Declined: enqueue is synchronous here, and tests step its
        # runner through watch and claim.
        return lambda: None

    def claim(
        self, owner: str, now: float, lease: float, limit: int
    ) -> Deferred[Sequence[QueuedMessage]]:
        due = sorted(
            (
                e.message
                for e in self._messages.values()
                if not e.message.held
                and e.message.nextAttempt <= now
                and (e.message.claimedBy is None or e.message.claimedUntil <= now)
            ),
            key=lambda m: (m.nextAttempt, m.id),
        )[:limit]
        for message in due:
            self._update(message.id, claimedBy=owner, claimedUntil=now + lease)
        return succeed([self._messages[m.id].message for m in due])

    def renew(self, owner: str, ids: Sequence[int], until: float) -> Deferred[int]:
        count = 0
        for id in ids:
            entry = self._messages.get(id)
            if entry is not None and entry.message.claimedBy == owner:
                self._update(id, claimedUntil=until)
                count += 1
        return succeed(count)

    def releaseClaims(self, prefix: str) -> Deferred[int]:
        count = 0
        for id, entry in self._messages.items():
            owner = entry.message.claimedBy
            if owner is not None and owner.startswith(prefix):
                self._update(id, claimedBy=None, claimedUntil=0.0)
                count += 1
        if count:
            self._changed()
        return succeed(count)

    def nextDue(self) -> Deferred[float | None]:
        times = [
            max(m.nextAttempt, m.claimedUntil if m.claimedBy is not None else 0.0)
            for m in (e.message for e in self._messages.values())
            if not m.held
        ]
        return succeed(min(times) if times else None)

    def record(self, id: int, updates: Sequence[RecipientUpdate]) -> Deferred[None]:
        entry = self._messages.get(id)
        if entry is None:
            return succeed(None)
        now = self._now()
        byAddress = {u.address: u for u in updates}
        recipients = []
        for r in entry.message.recipients:
            u = byAddress.get(r.address)
            if u is not None and r.state != RecipientState.DELIVERED:
                r = QueuedRecipient(r.address, u.state, u.response, now, u.notified)
            recipients.append(r)
        self._update(id, recipients=tuple(recipients))
        return succeed(None)

    def settle(
        self,
        id: int,
        owner: str,
        nextAttempt: float,
        lastError: str | None,
        updates: Sequence[RecipientUpdate] = (),
    ) -> Deferred[bool]:
        if updates:
            self.record(id, updates)
        entry = self._messages.get(id)
        if entry is None:
            return succeed(True)
        message = entry.message
        if all(r.final for r in message.recipients):
            del self._messages[id]
            return succeed(True)
        if message.claimedBy in (owner, None):
            self._update(
                id,
                attempts=message.attempts + 1,
                nextAttempt=nextAttempt,
                lastError=lastError,
                claimedBy=None,
                claimedUntil=0.0,
            )
        return succeed(False)

    def retry(self, id: int | None = None) -> Deferred[int]:
        ids = list(self._messages) if id is None else [id]
        count = 0
        for each in ids:
            if each in self._messages:
                self._update(each, nextAttempt=self._now())
                count += 1
        if count:
            self._changed()
        return succeed(count)

    def hold(self, id: int) -> Deferred[bool]:
        if id not in self._messages:
            return succeed(False)
        self._update(id, held=True)
        return succeed(True)

    def release(self, id: int) -> Deferred[bool]:
        if id not in self._messages:
            return succeed(False)
        self._update(id, held=False, nextAttempt=self._now())
        self._changed()
        return succeed(True)

    def delete(self, id: int) -> Deferred[bool]:
        return succeed(self._messages.pop(id, None) is not None)


def _byAge(item: tuple[int, Any]) -> tuple[float, int]:
    return (item[1].message.created, item[0])
