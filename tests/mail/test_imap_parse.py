"""
Tests for the IMAP pieces below the protocol: argument parsing
(L{appnet.mail.imap.parse}), wire values (L{appnet.mail.imap.wire}),
MIME structure (L{appnet.mail.imap.mime}), search keys
(L{appnet.mail.imap.search}), FETCH items (L{appnet.mail.imap.fetch}),
the session view (L{appnet.mail.imap.mailbox}) and LIST matching
(L{appnet.mail.imap.account}).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from appnet.mail.imap import fetch, mime, search
from appnet.mail.imap.account import checkName, listFolders
from appnet.mail.imap.errors import BadCommand, CommandFailed
from appnet.mail.imap.mailbox import SelectedMailbox
from appnet.mail.imap.parse import Arguments, Literal, SequenceSet
from appnet.mail.imap.wire import (
    NIL,
    Atom,
    BadMailboxName,
    decodeMailbox,
    encode,
    formatDateTime,
    parseDate,
    parseDateTime,
    string,
    uidSet,
)
from appnet.store.interfaces import Changes, FolderInfo, MessageInfo


def literal(data: bytes) -> Literal:
    value = Literal(len(data))
    value.write(data)
    return value


class ArgumentsTests(SynchronousTestCase):
    def test_strings(self) -> None:
        """Atoms, quoted strings with escapes, literals and NIL."""
        args = Arguments([b'atom "q \\"x\\" \\\\" ', literal(b"lit\r\n"), b" NIL"])
        self.assertEqual(args.astring(), b"atom")
        args.sp()
        self.assertEqual(args.astring(), b'q "x" \\')
        args.sp()
        self.assertEqual(args.string(), b"lit\r\n")
        args.sp()
        self.assertIsNone(args.nstring())
        args.end()

    def test_badQuoted(self) -> None:
        """Bad escapes and unterminated strings are BAD."""
        for text in (b'"a\\b"', b'"open'):
            with self.assertRaises(BadCommand):
                Arguments([text]).quoted()

    def test_mailbox(self) -> None:
        """Mailbox names: INBOX in any case, strict modified UTF-7."""
        self.assertEqual(Arguments([b"inbox"]).mailbox(), "INBOX")
        self.assertEqual(Arguments([b"Inbox/Sub"]).mailbox(), "INBOX/Sub")
        self.assertEqual(Arguments([b'"&AOk-t&AOk-"']).mailbox(), "été")
        with self.assertRaises(BadCommand):
            Arguments([b"&AGE-"]).mailbox()

    def test_flags(self) -> None:
        """System flags are canonical; unknown ones and \\Recent are BAD."""
        args = Arguments([b"(\\seen $Work \\DRAFT)"])
        self.assertEqual(args.flagList(), ["\\Seen", "$Work", "\\Draft"])
        for bad in (b"(\\Recent)", b"(\\Bogus)", b"(a"):
            with self.assertRaises(BadCommand):
                Arguments([bad]).flagList()

    def test_storeFlags(self) -> None:
        """
        STORE's flags, listed or bare, may hold \\Recent in any case: it
        is left out; unknown system flags are still BAD.
        """
        listed = Arguments([b"(\\Recent \\seen $Work)"]).storeFlags()
        self.assertEqual(listed, ["\\Seen", "$Work"])
        self.assertEqual(Arguments([b"\\RECENT"]).storeFlags(), [])
        self.assertEqual(Arguments([b"$a \\recent"]).storeFlags(), ["$a"])
        with self.assertRaises(BadCommand):
            Arguments([b"(\\Recent \\Bogus)"]).storeFlags()

    def test_sequenceSet(self) -> None:
        """Sequence sets: ranges either way round, '*', and errors."""
        numbers = SequenceSet.parse(b"1:3,7,9:*,*:5")
        self.assertEqual(numbers.bounds(10), [(1, 3), (7, 7), (9, 10), (5, 10)])
        for bad in (b"0", b"1:", b",1", b"1,,2", b"01", b"4294967296", b"a"):
            with self.assertRaises(BadCommand):
                SequenceSet.parse(bad)


class WireTests(SynchronousTestCase):
    def test_encode(self) -> None:
        """Nested values: NIL, numbers, atoms, quoted and literal strings."""
        self.assertEqual(
            encode([None, 3, Atom(b"\\Seen"), 'a"b', b"x\r\ny", NIL, []]),
            b'(NIL 3 \\Seen "a\\"b" {4}\r\nx\r\ny NIL ())',
        )
        self.assertEqual(string("é".encode()), b"{2}\r\n\xc3\xa9")

    def test_dates(self) -> None:
        """INTERNALDATE out, APPEND date-time and SEARCH dates in."""
        self.assertEqual(formatDateTime(0), b'"01-Jan-1970 00:00:00 +0000"')
        self.assertEqual(parseDateTime(" 1-Feb-2024 10:00:00 -0130"), 1706787000.0)
        self.assertEqual(str(parseDate("9-mar-2024")), "2024-03-09")
        for bad in ("1-Foo-2024 10:00:00 +0000", "1-Feb-2024 25:00:00 +0000", "x"):
            with self.assertRaises(ValueError):
                parseDateTime(bad)

    def test_mailboxNames(self) -> None:
        """Only canonical modified UTF-7 is accepted."""
        self.assertEqual(decodeMailbox(b"&-x"), "&x")
        for bad in (b"&AGE-", b"a&", b"\xc3\xa9"):
            with self.assertRaises(BadMailboxName):
                decodeMailbox(bad)


NESTED = (
    b"Subject: outer\r\n"
    b'Content-Type: multipart/mixed; boundary="a"\r\n'
    b"\r\n"
    b"--a\r\n"
    b'Content-Type: multipart/alternative; boundary="b"\r\n'
    b"\r\n"
    b"--b\r\n"
    b"\r\n"
    b"plain\r\n"
    b"--b\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<b>html</b>\r\n"
    b"--b--\r\n"
    b"--a\r\n"
    b"Content-Type: application/octet-stream; name*=utf-8''r%C3%A9sum%C3%A9.bin\r\n"
    b"Content-Disposition: attachment; filename=x.bin\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAEC\r\n"
    b"--a--\r\n"
)


class MIMETests(SynchronousTestCase):
    def test_nested(self) -> None:
        """Nested multiparts are found with exact byte ranges."""
        top = mime.parse(NESTED)
        self.assertEqual((top.mainType, top.subType), ("multipart", "mixed"))
        plain = mime.find(top, [1, 1])
        assert plain is not None
        self.assertEqual(NESTED[plain.bodyStart : plain.end], b"plain")
        html = mime.find(top, [1, 2])
        assert html is not None
        self.assertEqual(
            NESTED[html.start : html.end], b"Content-Type: text/html\r\n\r\n<b>html</b>"
        )
        self.assertIsNone(mime.find(top, [3]))

    def test_bodystructure(self) -> None:
        """Parameters (RFC 2231 too), disposition and encodings."""
        top = mime.parse(NESTED)
        structure = encode(mime.bodyStructure(top, NESTED, True))
        self.assertIn(b'("NAME" {12}\r\nr\xc3\xa9sum\xc3\xa9.bin)', structure)
        self.assertIn(b'("ATTACHMENT" ("FILENAME" "x.bin"))', structure)
        self.assertIn(b'"BASE64" 4 NIL', structure)
        self.assertIn(b'"ALTERNATIVE" ("BOUNDARY" "b")', structure)

    def test_noHeader(self) -> None:
        """A message without a blank line is all header."""
        top = mime.parse(b"Subject: only\r\n")
        self.assertEqual((top.bodyStart, top.end), (15, 15))
        self.assertEqual(mime.headerEnd(b"\r\nbody"), 2)

    def test_brokenMultipart(self) -> None:
        """A multipart without its boundary is described as text."""
        data = b"Content-Type: multipart/mixed\r\n\r\nno parts here\r\n"
        top = mime.parse(data)
        self.assertEqual(
            (top.mainType, top.subType, top.children), ("text", "plain", [])
        )

    def test_headersSelect(self) -> None:
        """Field selection keeps folded lines and ends with a blank line."""
        headers = mime.Headers(b"A: 1\r\nB: 2\r\n continued\r\nC: 3\r\n\r\n")
        self.assertEqual(headers.select(["b"]), b"B: 2\r\n continued\r\n\r\n")
        self.assertEqual(headers.select(["b"], negate=True), b"A: 1\r\nC: 3\r\n\r\n")
        self.assertEqual(headers.get("B"), b"2 continued")

    def test_decodeHeader(self) -> None:
        """Encoded words are decoded for searching."""
        self.assertEqual(mime.decodeHeader(b"=?utf-8?q?caf=C3=A9?= ok"), "café ok")
        self.assertEqual(mime.decodeHeader(b"=?bogus?q?x?="), "=?bogus?q?x?=")


class SearchParseTests(SynchronousTestCase):
    def parse(self, text: bytes) -> search.Criterion:
        return search.parseSearch(Arguments([text]))

    def test_needs(self) -> None:
        """Each criterion says whether it needs headers or text."""
        self.assertEqual(self.parse(b"SEEN UID 1:*").needs, search.INDEX)
        self.assertEqual(self.parse(b"OR SEEN FROM x").needs, search.HEADER)
        self.assertEqual(self.parse(b"NOT (BODY x)").needs, search.TEXT)

    def test_errors(self) -> None:
        """Malformed keys are BAD; unknown charsets NO [BADCHARSET]."""
        for bad in (b"", b"FROM", b"OR SEEN", b"LARGER x", b"(SEEN", b"BEFORE 1-2-3"):
            with self.assertRaises(BadCommand):
                self.parse(bad)
        with self.assertRaises(CommandFailed):
            self.parse(b"CHARSET ISO-8859-1 SEEN")

    def test_nesting(self) -> None:
        """Deep nesting is refused rather than recursing without end."""
        with self.assertRaises(BadCommand):
            self.parse(b"NOT " * 100 + b"SEEN")


class FetchParseTests(SynchronousTestCase):
    def test_items(self) -> None:
        """Sections, partials, PEEK and labels."""
        items = fetch.parseFetch(
            Arguments([b"(UID BODY.PEEK[1.2.HEADER.FIELDS (From To)]<10.20> BODY[])"])
        )
        self.assertEqual([i.name for i in items], ["UID", "BODY[]", "BODY[]"])
        self.assertEqual(items[1].label(), b"BODY[1.2.HEADER.FIELDS (From To)]<10>")
        self.assertTrue(items[1].peek and not items[1].setsSeen)
        self.assertTrue(items[2].setsSeen)
        self.assertEqual(items[1].needs, fetch.STRUCTURE)

    def test_errors(self) -> None:
        """Unknown items, bad sections and empty lists are BAD."""
        for bad in (b"()", b"FROB", b"BODY[0]", b"BODY[HEADER.FIELDS ()]",
                    b"BODY[TEXT]<1>", b"(FLAGS UID"):  # fmt: skip
            with self.assertRaises(BadCommand):
                fetch.parseFetch(Arguments([bad]))


class MailboxViewTests(SynchronousTestCase):
    def view(self) -> SelectedMailbox:
        info = FolderInfo("a@b.c", "INBOX", 7, 4, 5)
        rows = [MessageInfo(u, 10, frozenset(), 0.0, u) for u in (1, 2, 3)]
        return SelectedMailbox.open(info, rows, readOnly=False)

    def test_catchUp(self) -> None:
        """
        New messages, flag changes and expunges; expunges wait until
        allowed, then go highest first.
        """
        view = self.view()
        changes = Changes(
            9,
            (MessageInfo(2, 10, frozenset({"\\Seen"}), 0.0, 6),
             MessageInfo(4, 10, frozenset(), 0.0, 7)),
            (1, 3),
        )  # fmt: skip
        updates = view.catchUp(changes, allowExpunge=False)
        self.assertEqual((updates.expunged, updates.exists), ((), 4))
        self.assertEqual([seq for seq, _ in updates.flags], [2])
        self.assertTrue(view.isGone(1))
        updates = view.catchUp(Changes(9), allowExpunge=True)
        self.assertEqual(updates.expunged, (3, 1))
        self.assertEqual([row.uid for _, row in view.rows()], [2, 4])

    def test_recent(self) -> None:
        """
        A read-write view claims when it holds, or learns of, a message at
        or past the folder's first recent UID (or its own last claim) that
        no other session had claimed when the changes were read; only
        claimed UIDs in the view are \\Recent, and a change in their count
        is reported once.
        """
        info = FolderInfo("a@b.c", "INBOX", 7, 4, 5, firstRecentUid=2)
        rows = [MessageInfo(u, 10, frozenset(), 0.0, u) for u in (1, 2, 3)]
        view = SelectedMailbox.open(info, rows, readOnly=False)
        self.assertTrue(view.claimDue())
        view.claimed(2, 6)
        self.assertEqual((view.recentCount, view.isRecent(1)), (2, False))
        self.assertEqual(view.flagsOf(rows[1]), frozenset({"\\Recent"}))
        self.assertFalse(view.claimDue())
        view.reportedRecent = view.recentCount
        new = Changes(9, (MessageInfo(5, 10, frozenset(), 0.0, 8),))
        self.assertFalse(view.claimDue(new))
        self.assertEqual(view.catchUp(new, allowExpunge=True).recent, 3)
        later = Changes(10, (MessageInfo(6, 10, frozenset(), 0.0, 9),))
        self.assertTrue(view.claimDue(later))
        taken = Changes(10, later.changed, firstRecentUid=7)
        self.assertFalse(view.claimDue(taken))
        view.claimed(7, 7)
        updates = view.catchUp(later, allowExpunge=True)
        self.assertEqual((updates.exists, updates.recent), (5, None))
        self.assertFalse(view.isRecent(6))
        updates = view.catchUp(Changes(11, (), (2,)), allowExpunge=True)
        self.assertEqual((updates.expunged, updates.recent), ((2,), 2))

    def test_recentReadOnly(self) -> None:
        """
        A read-only view never claims; it shows as recent what was
        unclaimed when it listed or learned of the messages.
        """
        info = FolderInfo("a@b.c", "INBOX", 7, 4, 5, recent=1, firstRecentUid=3)
        rows = [MessageInfo(u, 10, frozenset(), 0.0, u) for u in (1, 2, 3)]
        view = SelectedMailbox.open(info, rows, readOnly=True)
        self.assertFalse(view.claimDue())
        self.assertEqual(view.recentCount, 1)
        changes = Changes(
            9,
            (MessageInfo(4, 10, frozenset(), 0.0, 8),
             MessageInfo(5, 10, frozenset(), 0.0, 8)),
            firstRecentUid=5,
        )  # fmt: skip
        self.assertFalse(view.claimDue(changes))
        view.catchUp(changes, allowExpunge=True)
        self.assertEqual(
            [view.isRecent(u) for u in (1, 2, 3, 4, 5)],
            [False, False, True, False, True],
        )

    def test_select(self) -> None:
        """UID sets skip missing UIDs; sequence numbers must exist."""
        view = self.view()
        uids = [row.uid for _, row in view.select(SequenceSet.parse(b"2:*,9"), True)]
        self.assertEqual(uids, [2, 3])
        with self.assertRaises(BadCommand):
            view.select(SequenceSet.parse(b"4"), False)


class ListTests(SynchronousTestCase):
    def folders(self, *names: str) -> list[FolderInfo]:
        return [FolderInfo("a@b.c", n, 1, 1, 1) for n in names]

    def test_patterns(self) -> None:
        """% stays in one level, * crosses levels, INBOX in any case."""
        folders = self.folders("INBOX", "a", "a/b", "a/b/c", "ab")

        def names(reference: str, pattern: str) -> list[str]:
            return [f.name for f in listFolders(folders, reference, pattern, False)]

        self.assertEqual(names("", "%"), ["INBOX", "a", "ab"])
        self.assertEqual(names("", "a*"), ["a", "a/b", "a/b/c", "ab"])
        self.assertEqual(names("a/", "%"), ["a/b"])
        self.assertEqual(names("", "inbox"), ["INBOX"])

    def test_names(self) -> None:
        """Folder names are checked."""
        self.assertEqual(checkName("inbox/Sub"), "INBOX/Sub")
        for bad in ("", "a//b", "/a", "a/", "a\x01", "x" * 300, "a%"):
            with self.assertRaises(CommandFailed):
                checkName(bad)


class UidSetTests(SynchronousTestCase):
    """
    L{uidSet} writes the sequence sets both the server and the client send.
    """

    def test_ranges(self) -> None:
        """Runs become ranges; the input is sorted and each number kept once."""
        self.assertEqual(uidSet([9, 1, 2, 3, 7, 10, 2]), b"1:3,7,9:10")

    def test_one(self) -> None:
        """A single number stays a number."""
        self.assertEqual(uidSet([5]), b"5")
