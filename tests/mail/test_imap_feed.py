"""
Tests for how IMAP sessions learn of changes: the store's feed
(L{appnet.store.watching.IFolderFeed}) tells each session of the others'
changes as they are, so none reads what changed after each command; and
for the shortcuts of the hot path (APPEND to the selected folder, an ACK
sent at once after a literal, message places remembered for FETCH).
"""

from __future__ import annotations

import io
import socket
from functools import partial
from typing import Any

from appnet.mail.imap import framing
from appnet.mail.imap.fetch import HeaderCache
from appnet.mail.imap.mailbox import SelectedMailbox
from appnet.store.interfaces import Changes, FolderInfo, MessageInfo
from appnet.store.mailmemory import MemoryMailStore
from appnet.store.watching import Delta
from tests.mail.test_imap import M1, M2, M3, IMAPTestCase


def view(modseq: int = 5, uids: tuple[int, ...] = (1, 2, 3)) -> SelectedMailbox:
    info = FolderInfo("alice@example.org", "INBOX", 7, 4, modseq, 3, 0, 0, True, 0, 4)
    rows = [MessageInfo(uid, 10, frozenset(), 0.0, 1) for uid in uids]
    return SelectedMailbox.open(info, rows, readOnly=False)


def row(uid: int, modseq: int, *flags: str) -> MessageInfo:
    return MessageInfo(uid, 10, frozenset(flags), 0.0, modseq)


class ToldTests(IMAPTestCase):
    """L{SelectedMailbox.told} and L{SelectedMailbox.withTold}."""

    def test_stepsMerged(self) -> None:
        """
        Steps that follow the view's modseq one by one are merged into
        one catch-up: flags changed, a message added, one expunged; a
        message added then expunged is not added.
        """
        mailbox = view()
        mailbox.told(Delta(Changes(6, (row(2, 6, "\\Seen"),))))
        mailbox.told(Delta(Changes(7, (row(4, 7),))))
        mailbox.told(Delta(Changes(8, (row(5, 8),))))
        mailbox.told(Delta(Changes(9, (), (1, 5))))
        merged = mailbox.withTold(Changes(5))
        self.assertFalse(mailbox.dirty)
        self.assertEqual(merged.modseq, 9)
        self.assertEqual([r.uid for r in merged.changed], [2, 4])
        self.assertEqual(merged.expunged, (1, 5))
        updates = mailbox.catchUp(merged, allowExpunge=True)
        self.assertEqual(updates.expunged, (1,))
        self.assertEqual(updates.exists, 3)
        self.assertEqual([r.uid for _, r in mailbox.rows()], [2, 3, 4])
        self.assertEqual(mailbox.withTold(Changes(9)), Changes(9))

    def test_gapMakesDirty(self) -> None:
        """
        A step that does not follow (another process changed the folder
        in between) marks the view dirty: the steps before it apply, and
        the rest is read.
        """
        mailbox = view()
        mailbox.told(Delta(Changes(6, (row(2, 6, "\\Seen"),))))
        mailbox.told(Delta(Changes(8, (row(3, 8, "\\Seen"),))))
        merged = mailbox.withTold(Changes(5))
        self.assertTrue(mailbox.dirty)
        self.assertEqual(merged.modseq, 6)
        self.assertEqual([r.uid for r in merged.changed], [2])

    def test_stepsAlreadyReadSkipped(self) -> None:
        """
        Steps told while a read was under way that the read already has
        are skipped; the later ones follow it.
        """
        mailbox = view()
        mailbox.dirty = True
        mailbox.told(Delta(Changes(6, (row(2, 6, "\\Seen"),))))
        mailbox.reading()
        self.assertFalse(mailbox.dirty)
        mailbox.told(Delta(Changes(7, (row(3, 7, "\\Seen"),))))
        mailbox.told(Delta(Changes(8, (), (1,))))
        read = Changes(7, (row(2, 6, "\\Seen"), row(3, 7, "\\Seen")))
        merged = mailbox.withTold(read)
        self.assertFalse(mailbox.dirty)
        self.assertEqual(merged.modseq, 8)
        self.assertEqual([r.uid for r in merged.changed], [2, 3])
        self.assertEqual(merged.expunged, (1,))

    def test_unknownChangeMakesDirty(self) -> None:
        """
        A change told without its content, or any change to a read-only
        view (whose \\Recent needs the folder's state), marks it dirty.
        """
        mailbox = view()
        mailbox.told(Delta())
        self.assertTrue(mailbox.dirty)
        info = FolderInfo("a@example.org", "INBOX", 7, 4, 5, 0, 0, 0, True, 0, 4)
        examined = SelectedMailbox.open(info, [], readOnly=True)
        examined.told(Delta(Changes(6, (row(4, 6),))))
        self.assertTrue(examined.dirty)

    def test_claimedElsewhere(self) -> None:
        """
        Told that \\Recent was claimed up to a UID, a session does not
        try to claim the messages below it.
        """
        mailbox = view()
        mailbox.told(Delta(recentFrom=6))
        self.assertFalse(mailbox.claimDue(Changes(6, (row(5, 6),))))
        self.assertTrue(mailbox.claimDue(Changes(7, (row(6, 7),))))


class CountingReads:
    """Counts the memory store's calls of some methods."""

    def __init__(
        self, test: IMAPTestCase, names: tuple[str, ...] = ("changesSince", "folder")
    ) -> None:
        self.calls: dict[str, int] = dict.fromkeys(names, 0)
        for name in names:
            real = getattr(MemoryMailStore, name)
            test.patch(MemoryMailStore, name, self.counting(name, real))

    def counting(self, name: str, real: Any) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            self.calls[name] += 1
            return real(*args, **kw)

        return call


class FeedTests(IMAPTestCase):
    """
    Sessions on one folder learn of each other's changes from the feed,
    without reading them from the store.
    """

    def setUp(self) -> None:
        super().setUp()
        self.fill(M1, M2, M3)
        self.a = self.selected()
        self.b = self.selected()

    def test_noReads(self) -> None:
        """
        A's flag change, APPEND and EXPUNGE reach B as untagged
        responses with no C{changesSince} read, and the flags changed
        by another session are those B reports.
        """
        reads = CountingReads(self)
        self.a.command("t STORE 1 +FLAGS.SILENT (\\Flagged)")
        self.a.send(b"p APPEND INBOX {%d+}\r\n%s\r\n" % (len(M1), M1))
        self.a.command("t STORE 2 +FLAGS.SILENT (\\Deleted)")
        self.a.command("x EXPUNGE")
        self.assertEqual(
            self.b.command("u UID FETCH 1 FLAGS"),
            [
                "* 2 EXPUNGE",
                "* 3 EXISTS",
                "* 1 FETCH (UID 1 FLAGS (\\Flagged))",
                "* 1 FETCH (UID 1 FLAGS (\\Flagged))",
                "u OK FETCH completed",
            ],
        )
        self.assertEqual(reads.calls["changesSince"], 0)
        self.assertEqual(self.b.command("n NOOP"), ["n OK NOOP completed"])

    def test_idleTold(self) -> None:
        """A session in IDLE is told of another's change at once."""
        self.b.send(b"i IDLE\r\n")
        self.a.send(b"p APPEND INBOX {%d+}\r\n%s\r\n" % (len(M3), M3))
        self.assertEqual(self.b.lines(), ["* 4 EXISTS", "* 1 RECENT"])

    def test_selectReadsOnce(self) -> None:
        """SELECT reads the folder's state and listing in one call."""
        reads = CountingReads(self)
        self.b.command("s SELECT INBOX")
        self.assertEqual(reads.calls, {"changesSince": 0, "folder": 0})
        self.assertEqual(
            self.b.command("f FETCH 3 UID"),
            ["* 3 FETCH (UID 3)", "f OK FETCH completed"],
        )


class AppendSelectedTests(IMAPTestCase):
    """APPEND to the selected folder takes the shortcuts."""

    def test_noChecks(self) -> None:
        """
        The literal is invited at once (the folder exists: it is
        selected) and APPENDUID carries the view's UIDVALIDITY, without
        reading the folder; the new message is announced.
        """
        self.fill(M1)
        session = self.selected()
        validity = self.folders()["INBOX"].uidValidity
        reads = CountingReads(self)
        lines = session.send(b"p APPEND inbox {%d}\r\n" % len(M2))
        self.assertEqual(lines, ["+ Ready for literal data"])
        lines = session.send(M2 + b"\r\n")
        self.assertEqual(
            lines,
            [
                "* 2 EXISTS",
                "* 2 RECENT",
                f"p OK [APPENDUID {validity} 2] APPEND completed",
            ],
        )
        self.assertEqual(reads.calls["folder"], 0)

    def test_otherFolderChecked(self) -> None:
        """APPEND to another folder still asks before inviting the literal."""
        session = self.selected()
        self.assertEqual(
            session.command("p APPEND Nowhere {10}"),
            ["p NO [TRYCREATE] Mailbox Nowhere does not exist"],
        )

    def test_quotaChecked(self) -> None:
        """
        With a quota, a message larger than a literal is checked first
        even for the selected folder; a small one is invited, and the
        delivery refuses it.
        """
        session = self.selected()
        assert session.protocol.account is not None
        session.protocol.account.quota = 10
        self.assertEqual(
            session.command("p APPEND INBOX {2000}"),
            ["p NO [OVERQUOTA] Quota exceeded"],
        )
        self.assertEqual(
            session.command("p APPEND INBOX {100}"), ["+ Ready for literal data"]
        )
        self.assertEqual(
            session.send(b"x" * 100 + b"\r\n"), ["p NO [OVERQUOTA] Quota exceeded"]
        )


class _Handle:
    def __init__(self) -> None:
        self.options: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))


class QuickAckTests(IMAPTestCase):
    """
    After a literal, an ACK goes at once, so that the client's last
    small write is not held back for the delayed ACK.
    """

    def test_afterLiteral(self) -> None:
        """
        A literal that ends a packet sets TCP_QUICKACK on the socket;
        one whose command line came in the same packet needs none.
        """
        if getattr(socket, "TCP_QUICKACK", None) is None:
            self.skipTest("no TCP_QUICKACK on this platform")
        session = self.login()
        handle = _Handle()
        session.transport.getHandle = lambda: handle  # type: ignore[attr-defined]
        session.send(b"p APPEND INBOX {%d+}\r\n%s" % (len(M1), M1))
        quick = (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        self.assertEqual(handle.options, [quick])
        self.assertTrue(session.send(b"\r\n")[0].startswith("p OK [APPENDUID"))
        session.send(b"p APPEND INBOX {%d+}\r\n%s\r\n" % (len(M1), M1))
        self.assertEqual(handle.options, [quick])

    def test_notTCP(self) -> None:
        """A transport without a socket (TLS in memory) is left alone."""
        framing.quickAck(object())

        class Broken:
            def getHandle(self) -> object:
                return object()

        framing.quickAck(Broken())


class BodiesTests(IMAPTestCase):
    """FETCH remembers where messages' contents are."""

    def test_remembered(self) -> None:
        """
        A second FETCH of the same messages does not look them up again.
        One expunged by another session meanwhile, not yet announced, is
        served while its content can still be read (RFC 2180 4.1.1; the
        SQLite store removes the file, and it is reported gone).
        """
        self.fill(M1, M2, M3)
        a = self.selected()
        b = self.selected()
        reads = CountingReads(self, ("openMessages",))
        a.command("f FETCH 1:3 BODY.PEEK[HEADER]")
        a.command("f FETCH 1:3 BODY.PEEK[HEADER]")
        self.assertEqual(reads.calls, {"openMessages": 1})
        b.command("t STORE 2 +FLAGS.SILENT (\\Deleted)")
        b.command("x EXPUNGE")
        lines = a.command("f FETCH 2 BODY.PEEK[]")
        self.assertEqual(lines[0], f"* 2 FETCH (BODY[] {{{len(M2)}}}")
        self.assertEqual(lines[-1], "f OK FETCH completed")
        self.assertEqual(reads.calls, {"openMessages": 1})
        self.assertEqual(a.command("n NOOP")[0], "* 2 EXPUNGE")
        lines = a.command("f UID FETCH 3 BODY.PEEK[HEADER]")
        header = M3.index(b"third")
        self.assertEqual(lines[0], f"* 2 FETCH (UID 3 BODY[HEADER] {{{header}}}")
        self.assertEqual(reads.calls, {"openMessages": 1})


class HeaderCacheTests(IMAPTestCase):
    """FETCH answers header items from header sections read before."""

    def test_again(self) -> None:
        """
        The same header items again are the same answer, with no message
        looked up or read; items that need more read the message.
        """
        self.fill(M1, M2, M3)
        session = self.selected()
        reads = CountingReads(self, ("openMessages",))
        first = session.command("f FETCH 1:3 (ENVELOPE BODY.PEEK[HEADER.FIELDS (TO)])")
        self.assertEqual(reads.calls, {"openMessages": 1})
        again = session.command("f FETCH 1:3 (ENVELOPE BODY.PEEK[HEADER.FIELDS (TO)])")
        self.assertEqual(again, first)
        self.assertEqual(reads.calls, {"openMessages": 1})
        lines = session.command("f FETCH 1 BODY.PEEK[TEXT]")
        self.assertEqual(lines[-1], "f OK FETCH completed")
        self.assertEqual(reads.calls, {"openMessages": 1})

    def test_seen(self) -> None:
        """A FETCH from kept headers that sets \\Seen still sets it."""
        self.fill(M1)
        session = self.selected()
        session.command("f FETCH 1 BODY.PEEK[HEADER]")
        lines = session.command("f FETCH 1 BODY[HEADER]")
        self.assertIn(" FLAGS (\\Recent \\Seen))", "".join(lines))
        [row] = self.rows()
        self.assertIn("\\Seen", row.flags)

    def test_budget(self) -> None:
        """
        The cache keeps at most its budget of bytes; a section larger
        than a 64th of it is not kept.
        """
        cache = HeaderCache(budget=6400)
        cache.putAll(["a", "b", "c"], [b"x" * 100, None, b"y" * 101])
        self.assertEqual(cache.getAll(["a"]), [b"x" * 100])
        self.assertIsNone(cache.getAll(["a", "b"]))
        self.assertIsNone(cache.getAll(["c"]))
        cache.putAll([str(i) for i in range(70)], [b"z" * 100] * 70)
        self.assertIsNone(cache.getAll(["a"]))
        self.assertEqual(cache.getAll(["69"]), [b"z" * 100])

    def test_keptBodiesBytes(self) -> None:
        """
        A view remembers message places, but of bodies that hold their
        bytes in memory (a database's small messages) at most a bounded
        total: past it, it forgets those it kept; a batch larger than the
        bound is not kept at all.
        """
        from appnet.mail.imap.mailbox import _BODY_BYTES
        from appnet.store.interfaces import MessageBody

        def held(n: int) -> MessageBody:
            data = b"x" * n
            return MessageBody(n, partial(io.BytesIO, data), memory=data)

        mailbox = view()
        half = _BODY_BYTES // 2
        mailbox.keepBodies({1: held(half), 2: MessageBody(10, io.BytesIO)})
        self.assertEqual(sorted(mailbox.knownBodies([1, 2, 3])[0]), [1, 2])
        mailbox.keepBodies({3: held(half + 1)})
        self.assertEqual(sorted(mailbox.knownBodies([1, 2, 3])[0]), [3])
        mailbox.keepBodies({1: held(_BODY_BYTES + 1)})
        self.assertEqual(sorted(mailbox.knownBodies([1, 2, 3])[0]), [3])
