"""
Folder listings kept between reads: a folder's messages by UID as of one
modseq, brought up to date with what changed after it (the rows whose
modseq is higher, the UIDs expunged since) instead of being read whole
again. The SQLite mail store's C{snapshot} (IMAP's SELECT) uses them, so
selecting a folder of thousands of messages reads only its changes.

Every change to a folder raises its modseq inside the write transaction
that makes it, so a listing at modseq M plus the changes after M, read in
one transaction, is the folder as of that transaction.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Sequence

from attrs import frozen

from appnet.store.interfaces import FolderInfo, MessageInfo

__all__ = ["Listing", "Listings"]

_SEEN = "\\Seen"


@frozen
class Listing:
    """
    One folder's messages as of C{modseq}, by UID, with the totals its
    L{FolderInfo} needs. A value: never changed once made.

    @ivar folder: the folder's id in the store.
    """

    folder: int
    uidValidity: int
    modseq: int
    uids: tuple[int, ...]
    rows: tuple[MessageInfo, ...]
    size: int
    unseen: int

    @classmethod
    def of(
        cls, folder: int, uidValidity: int, modseq: int, rows: Sequence[MessageInfo]
    ) -> Listing:
        """The listing of C{rows} (by UID), read whole."""
        return cls(
            folder,
            uidValidity,
            modseq,
            tuple(r.uid for r in rows),
            tuple(rows),
            sum(r.size for r in rows),
            sum(1 for r in rows if _SEEN not in r.flags),
        )

    def follows(self, folder: int, uidValidity: int, modseq: int) -> bool:
        """Can the folder as it is now be had from this listing's changes?"""
        return (self.folder, self.uidValidity) == (folder, uidValidity) and (
            self.modseq <= modseq
        )

    def updated(
        self, modseq: int, changed: Sequence[MessageInfo], expunged: Sequence[int]
    ) -> Listing:
        """
        This listing with what changed after its modseq: C{expunged} gone,
        C{changed} rows (new messages, or new flags) in their places.
        """
        uids, rows = list(self.uids), list(self.rows)
        size, unseen = self.size, self.unseen
        for uid in expunged:
            i = bisect_left(uids, uid)
            if i < len(uids) and uids[i] == uid:
                old = rows[i]
                size -= old.size
                unseen -= _SEEN not in old.flags
                del uids[i], rows[i]
        for row in changed:
            i = bisect_left(uids, row.uid)
            if i < len(uids) and uids[i] == row.uid:
                old = rows[i]
                size += row.size - old.size
                unseen += (_SEEN not in row.flags) - (_SEEN not in old.flags)
                rows[i] = row
            else:
                uids.insert(i, row.uid)
                rows.insert(i, row)
                size += row.size
                unseen += _SEEN not in row.flags
        folder, validity = self.folder, self.uidValidity
        return Listing(folder, validity, modseq, tuple(uids), tuple(rows), size, unseen)

    def info(
        self,
        owner: str,
        name: str,
        uidNext: int,
        subscribed: bool,
        firstRecentUid: int,
    ) -> FolderInfo:
        """The folder's state: this listing's, and the folder row's rest."""
        return FolderInfo(
            owner,
            name,
            self.uidValidity,
            uidNext,
            self.modseq,
            len(self.uids),
            self.unseen,
            self.size,
            subscribed,
            len(self.uids) - bisect_left(self.uids, firstRecentUid),
            firstRecentUid,
        )


class Listings:
    """
    The listings of the folders read lately, by C{(owner, name)}: at most
    C{maxRows} messages in all, the least recently used forgotten first
    (a folder larger than that is not kept).
    """

    def __init__(self, maxRows: int = 100_000) -> None:
        self._maxRows = maxRows
        self._rows = 0
        self._entries: OrderedDict[tuple[str, str], Listing] = OrderedDict()

    def get(self, key: tuple[str, str]) -> Listing | None:
        """The listing kept for a folder, if any."""
        listing = self._entries.get(key)
        if listing is not None:
            self._entries.move_to_end(key)
        return listing

    def put(self, key: tuple[str, str], listing: Listing) -> None:
        """Keep C{listing}, unless a later one of the same folder is kept."""
        old = self._entries.get(key)
        if old is not None:
            if old.folder == listing.folder and old.modseq > listing.modseq:
                return
            self._forget(key)
        if len(listing.uids) > self._maxRows:
            return
        self._entries[key] = listing
        self._rows += len(listing.uids)
        while self._rows > self._maxRows:
            self._forget(next(iter(self._entries)))

    def _forget(self, key: tuple[str, str]) -> None:
        self._rows -= len(self._entries.pop(key).uids)
