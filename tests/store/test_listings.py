"""
Tests for L{appnet.store.listings}: a kept folder listing brought up to
date with the changes after it equals the folder read whole.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from appnet.store.interfaces import MessageInfo
from appnet.store.listings import Listing, Listings


def row(uid: int, size: int = 10, *flags: str, modseq: int = 1) -> MessageInfo:
    return MessageInfo(uid, size, frozenset(flags), 0.0, modseq)


class ListingTests(SynchronousTestCase):
    def test_updated(self) -> None:
        """
        Expunged UIDs go, changed rows replace theirs, new ones take
        their places by UID; size, unseen and recent follow.
        """
        before = Listing.of(7, 1, 5, [row(1), row(2, 20, "\\Seen"), row(4), row(6)])
        self.assertEqual((before.size, before.unseen), (50, 3))
        after = before.updated(
            9,
            [row(2, 20, modseq=8), row(5, 30, "\\Seen", modseq=9), row(8, modseq=9)],
            [4, 3, 6],
        )
        whole = Listing.of(
            7, 1, 9, [row(1), row(2, 20, modseq=8), row(5, 30, "\\Seen", modseq=9),
                      row(8, modseq=9)]
        )  # fmt: skip
        self.assertEqual(after, whole)
        self.assertEqual((after.size, after.unseen), (70, 3))
        self.assertEqual(before.uids, (1, 2, 4, 6))
        info = after.info("a@example.org", "INBOX", 9, True, 5)
        self.assertEqual(
            (info.messages, info.unseen, info.size, info.recent), (4, 3, 70, 2)
        )
        self.assertEqual((info.uidNext, info.modseq, info.firstRecentUid), (9, 9, 5))

    def test_follows(self) -> None:
        """Only the same folder, at the same or a later modseq."""
        listing = Listing.of(7, 1, 5, [row(1)])
        self.assertTrue(listing.follows(7, 1, 5))
        self.assertTrue(listing.follows(7, 1, 6))
        self.assertFalse(listing.follows(7, 1, 4))
        self.assertFalse(listing.follows(8, 1, 6))
        self.assertFalse(listing.follows(7, 2, 6))


class ListingsTests(SynchronousTestCase):
    def test_rowBudget(self) -> None:
        """
        At most C{maxRows} rows are kept, the least recently used
        forgotten first; a listing larger than that is not kept.
        """
        listings = Listings(maxRows=5)
        a, b, c = (Listing.of(n, 1, 1, [row(1), row(2)]) for n in (1, 2, 3))
        listings.put(("o", "a"), a)
        listings.put(("o", "b"), b)
        self.assertIs(listings.get(("o", "a")), a)
        listings.put(("o", "c"), c)
        self.assertIsNone(listings.get(("o", "b")))
        self.assertIs(listings.get(("o", "a")), a)
        self.assertIs(listings.get(("o", "c")), c)
        listings.put(("o", "big"), Listing.of(4, 1, 1, [row(n) for n in range(1, 7)]))
        self.assertIsNone(listings.get(("o", "big")))
        self.assertIs(listings.get(("o", "a")), a)

    def test_laterKept(self) -> None:
        """
        A listing read before the one kept (two reads that crossed) does
        not replace it; one of a folder made again does.
        """
        listings = Listings()
        later = Listing.of(1, 1, 9, [row(1)])
        listings.put(("o", "a"), later)
        listings.put(("o", "a"), Listing.of(1, 1, 8, []))
        self.assertIs(listings.get(("o", "a")), later)
        again = Listing.of(2, 5, 1, [])
        listings.put(("o", "a"), again)
        self.assertIs(listings.get(("o", "a")), again)
