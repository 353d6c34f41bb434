"""
The selected mailbox of one IMAP session: the session's view of a folder.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import sys
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Mapping, Sequence

from attrs import define, field, frozen

from appnet.mail.imap.errors import BadCommand
from appnet.mail.imap.parse import SequenceSet
from appnet.store.interfaces import Changes, FolderInfo, MessageBody, MessageInfo
from appnet.store.watching import Delta

__all__ = ["RECENT", "SelectedMailbox", "Updates"]

#: The session flag.
RECENT = "\\Recent"
_RECENT = frozenset({RECENT})
#: Changes kept for a view between catch-ups; past this, it reads them.
_PENDING = 256
#: Message contents' places a view remembers (L{SelectedMailbox.keepBodies}).
_BODIES = 1024
#: Of those, bytes held in memory (small messages a store keeps in its
#: database come with their bytes) a view keeps at most.
_BODY_BYTES = 1 << 20


@frozen
class Updates:
    """
    What a session must tell its client after catching up.

    @ivar expunged: sequence numbers to announce with EXPUNGE, in the
        order to send them (each valid once the previous ones are gone).
    @ivar exists: the new message count, if it changed.
    @ivar recent: the new count of C{\\Recent} messages, if it changed.
    @ivar flags: messages whose flags changed: (sequence number, row).
    """

    expunged: tuple[int, ...] = ()
    exists: int | None = None
    flags: tuple[tuple[int, MessageInfo], ...] = ()
    recent: int | None = None


@define
class SelectedMailbox:
    """
    One session's view of one folder.

    @ivar readOnly: selected with EXAMINE.
    @ivar dirty: the store said the folder changed since the last catch-up.
    @ivar reportedRecent: the C{\\Recent} count the client was last told.
    """

    owner: str
    name: str
    readOnly: bool
    uidValidity: int
    modseq: int
    uidNext: int
    _uids: list[int] = field(factory=list)
    _rows: dict[int, MessageInfo] = field(factory=dict)
    _gone: set[int] = field(factory=set)
    dirty: bool = False
    stopWatching: Callable[[], None] = lambda: None
    reportedRecent: int = 0
    #: UID ranges [first, end) that are \Recent here, sorted, disjoint.
    _recent: list[tuple[int, int]] = field(factory=list)
    #: Where the next claim starts: UIDs below it were claimed by this
    #: session, or by others before it could.
    _claimedTo: int = 0
    #: The keywords the client has been told of in a FLAGS response.
    keywords: set[str] = field(factory=set)
    #: Changes the store told of (L{Delta}), not yet caught up with.
    _pending: list[Changes] = field(factory=list)
    #: Where messages' contents are, by UID, as the store said lately (a
    #: message's content never changes; one expunged meanwhile fails to
    #: open, as it would if looked up just before).
    _bodies: dict[int, MessageBody] = field(factory=dict)

    @classmethod
    def open(
        cls,
        info: FolderInfo,
        rows: Sequence[MessageInfo],
        readOnly: bool,
    ) -> SelectedMailbox:
        mailbox = cls(
            info.owner, info.name, readOnly, info.uidValidity, info.modseq, info.uidNext
        )
        for row in rows:
            mailbox._uids.append(row.uid)
            mailbox._rows[row.uid] = row
        # The listing may be newer than the folder state read before it.
        if rows:
            mailbox.modseq = max(mailbox.modseq, max(r.modseq for r in rows))
            mailbox.uidNext = max(mailbox.uidNext, rows[-1].uid + 1)
        mailbox._claimedTo = info.firstRecentUid
        if readOnly:
            mailbox._addRecent(info.firstRecentUid, mailbox.lastUID + 1)
        return mailbox

    # What the client knows.

    @property
    def count(self) -> int:
        """Messages in the view (EXISTS)."""
        return len(self._uids)

    @property
    def lastUID(self) -> int:
        return self._uids[-1] if self._uids else 0

    def rows(self) -> list[tuple[int, MessageInfo]]:
        """Every (sequence number, row)."""
        return [(i + 1, self._rows[uid]) for i, uid in enumerate(self._uids)]

    def uids(self) -> list[int]:
        """Every UID, in order."""
        return list(self._uids)

    def row(self, uid: int) -> MessageInfo | None:
        return self._rows.get(uid)

    def seqOf(self, uid: int) -> int | None:
        """The sequence number of a UID in the view."""
        i = bisect_left(self._uids, uid)
        if i < len(self._uids) and self._uids[i] == uid:
            return i + 1
        return None

    def flagsInUse(self) -> set[str]:
        """Keywords on messages in the view (for the FLAGS response)."""
        flags: set[str] = set()
        for row in self._rows.values():
            flags |= row.flags
        return {f for f in flags if not f.startswith("\\")}

    def newKeywords(self, flagSets: Sequence[frozenset[str]]) -> set[str]:
        """
        The keywords among C{flagSets} the client has not been told of;
        from now on they count as told.
        """
        new: set[str] = set()
        for flags in flagSets:
            if flags - self.keywords:
                new |= {
                    f
                    for f in flags
                    if not f.startswith("\\") and f not in self.keywords
                }
        self.keywords |= new
        return new

    def isRecent(self, uid: int) -> bool:
        """Is this message C{\\Recent} in this session?"""
        i = bisect_right(self._recent, (uid, sys.maxsize)) - 1
        return i >= 0 and uid < self._recent[i][1]

    def flagsOf(self, row: MessageInfo) -> frozenset[str]:
        """A message's flags as this session reports them."""
        if self._recent and self.isRecent(row.uid):
            return row.flags | _RECENT
        return row.flags

    @property
    def recentCount(self) -> int:
        """Messages in the view that are C{\\Recent} (RECENT)."""
        uids = self._uids
        return sum(
            bisect_left(uids, end) - bisect_left(uids, first)
            for first, end in self._recent
        )

    def firstUnseen(self) -> int | None:
        for i, uid in enumerate(self._uids):
            if "\\Seen" not in self._rows[uid].flags:
                return i + 1
        return None

    def unseen(self) -> int:
        return sum(1 for r in self._rows.values() if "\\Seen" not in r.flags)

    def select(self, numbers: SequenceSet, uid: bool) -> list[tuple[int, MessageInfo]]:
        """
        The messages a sequence set names, in order.

        @param uid: the set holds UIDs (missing ones are skipped; C{*} is
            the highest UID); else sequence numbers, which must exist.
        @raise BadCommand: for a sequence number beyond the last message.
        """
        positions: set[int] = set()
        if uid:
            for low, high in numbers.bounds(self.lastUID):
                first = bisect_left(self._uids, low)
                last = bisect_right(self._uids, high)
                positions.update(range(first, last))
        else:
            if not self._uids:
                raise BadCommand("No messages in the mailbox")
            for low, high in numbers.bounds(len(self._uids)):
                if high > len(self._uids):
                    raise BadCommand(f"Invalid message number {high}")
                positions.update(range(low - 1, high))
        return [(i + 1, self._rows[self._uids[i]]) for i in sorted(positions)]

    # \Recent.

    def claimDue(self, changes: Changes | None = None) -> bool:
        """
        Should this session claim recent messages now: is it read-write,
        and does its view (with the new messages in C{changes}) hold one
        at or past where its last claim ended, and not yet claimed by
        another session when C{changes} was read?
        """
        if self.readOnly:
            return False
        highest = self.lastUID
        floor = self._claimedTo
        if changes is not None:
            if changes.changed:
                highest = max(highest, max(row.uid for row in changes.changed))
            if changes.firstRecentUid is not None:
                floor = max(floor, changes.firstRecentUid)
        return highest >= floor

    def claimed(self, first: int, end: int) -> None:
        """The store gave this session the UIDs in C{[first, end)}."""
        self._addRecent(first, end)
        self._claimedTo = max(self._claimedTo, end)

    def _addRecent(self, first: int, end: int) -> None:
        if first >= end:
            return
        insort(self._recent, (first, end))
        merged: list[tuple[int, int]] = []
        for low, high in self._recent:
            if merged and low <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        self._recent = merged

    # Catching up.

    def updated(self, rows: Sequence[MessageInfo]) -> None:
        """
        This session changed these rows itself (STORE, FETCH setting
        \\Seen) and has told or will tell its client.
        """
        for row in rows:
            if row.uid in self._rows:
                self._rows[row.uid] = row

    def catchUp(self, changes: Changes, allowExpunge: bool) -> Updates:
        """
        Apply what changed in the store.

        @param allowExpunge: the command in progress may announce
            expunges; otherwise expunged messages stay in the view (their
            sequence numbers unchanged) until one that may.
        """
        self.modseq = max(self.modseq, changes.modseq)
        self._gone.update(u for u in changes.expunged if u in self._rows)
        flagged: list[int] = []
        oldCount = len(self._uids)
        added: list[int] = []
        for row in changes.changed:
            known = self._rows.get(row.uid)
            if known is not None:
                if row.uid not in self._gone and known.flags != row.flags:
                    flagged.append(row.uid)
                self._rows[row.uid] = row
            elif row.uid > self.lastUID:
                self._uids.append(row.uid)
                self._rows[row.uid] = row
                self.uidNext = max(self.uidNext, row.uid + 1)
                added.append(row.uid)
        if self.readOnly and added and changes.firstRecentUid is not None:
            # What no read-write session had claimed when this was read.
            self._addRecent(max(changes.firstRecentUid, added[0]), added[-1] + 1)
        expunged: list[int] = []
        if allowExpunge and self._gone:
            # Highest first: each number stays valid as the others go.
            for uid in sorted(self._gone, reverse=True):
                seq = self.seqOf(uid)
                if seq is not None:
                    expunged.append(seq)
                    del self._uids[seq - 1]
                    del self._rows[uid]
                    self._bodies.pop(uid, None)
            self._gone.clear()
        flags = []
        for uid in flagged:
            seq = self.seqOf(uid)
            if seq is not None:
                flags.append((seq, self._rows[uid]))
        exists = (
            len(self._uids) if len(self._uids) + len(expunged) != oldCount else None
        )
        recent = self.recentCount
        if recent == self.reportedRecent:
            return Updates(tuple(expunged), exists, tuple(flags))
        self.reportedRecent = recent
        return Updates(tuple(expunged), exists, tuple(flags), recent)

    def told(self, delta: Delta) -> None:
        """
        The store told of a change (L{appnet.store.watching.IFolderFeed}):
        keep it for the next catch-up, or (not known as it is, too many
        kept, or a read-only view, whose C{\\Recent} needs the folder's
        state) mark the view L{dirty}.
        """
        if delta.recentFrom is not None:
            self._claimedTo = max(self._claimedTo, delta.recentFrom)
            return
        if delta.changes is None or self.readOnly or len(self._pending) >= _PENDING:
            self.dirty = True
            self._pending.clear()
            return
        self._pending.append(delta.changes)

    def reading(self) -> None:
        """
        A read of what changed begins: it covers every change told so far.
        """
        self.dirty = False
        self._pending.clear()

    def withTold(self, changes: Changes) -> Changes:
        """
        C{changes} (what was read, or nothing) followed by the changes the
        store told of since, as one; the view is marked L{dirty} if one is
        missing between them.
        """
        pending, self._pending = self._pending, []
        top = max(self.modseq, changes.modseq)
        rows = {row.uid: row for row in changes.changed}
        gone = set(changes.expunged)
        for step in pending:
            if step.modseq <= top:
                continue
            if step.modseq != top + 1:
                # Another process, or a change not told of: read.
                self.dirty = True
                break
            top = step.modseq
            for uid in step.expunged:
                rows.pop(uid, None)
                gone.add(uid)
            for row in step.changed:
                if row.uid not in gone:
                    rows[row.uid] = row
        if top == changes.modseq:
            return changes
        return Changes(
            top,
            tuple(rows[uid] for uid in sorted(rows)),
            tuple(sorted(gone)),
            changes.firstRecentUid,
        )

    def key(self, uid: int) -> tuple[str, str, int, int]:
        """What names a message's content for good (UIDs are not reused)."""
        return (self.owner, self.name, self.uidValidity, uid)

    def knownBodies(
        self, uids: Sequence[int]
    ) -> tuple[dict[int, MessageBody], list[int]]:
        """The contents known of these messages, and the UIDs not known."""
        known, missing = {}, []
        bodies = self._bodies
        for uid in uids:
            body = bodies.get(uid)
            if body is None:
                missing.append(uid)
            else:
                known[uid] = body
        return known, missing

    def keepBodies(self, bodies: Mapping[int, MessageBody]) -> None:
        """
        Remember where these messages' contents are: a bounded number,
        and bounded bytes of those that hold their bytes in memory.
        """
        held = _heldBytes(bodies)
        if held > _BODY_BYTES:
            return
        if (
            len(self._bodies) + len(bodies) > _BODIES
            or _heldBytes(self._bodies) + held > _BODY_BYTES
        ):
            self._bodies.clear()
        self._bodies.update(bodies)

    def isGone(self, uid: int) -> bool:
        """Was this message expunged elsewhere, not yet announced?"""
        return uid in self._gone


def _heldBytes(bodies: Mapping[int, MessageBody]) -> int:
    """The bytes these message bodies hold in memory."""
    return sum(len(b.memory) for b in bodies.values() if b.memory is not None)
