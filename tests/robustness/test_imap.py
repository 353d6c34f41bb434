"""
IMAP under hostile input, on a string transport over the in-memory store.

The IMAP server is being changed elsewhere, so this module only tests it:
what it finds is reported, not fixed here (see the report of the branch
that added it).

Oracles, for every case: no exception out of the protocol and no failure
logged; every response is untagged (C{*}), a continuation (C{+}) or tagged
with C{OK}, C{NO} or C{BAD}, in printable text apart from the literals it
carries; nothing shows Python internals; and afterwards the session goes
on: NOOP, a login if needed, SELECT, a FETCH of a message delivered just
before, and LOGOUT. The server closes the connection only after C{* BYE}
(LOGOUT, or too many BAD commands).
"""

from __future__ import annotations

import base64
import re

from appnet.mail.imap.server import IMAPServer
from tests.mail.helpers import ALICE, PASSWORD, MailWorld, Session
from tests.robustness.fuzz import NUMBERS, Case, FuzzTestCase, Garbage

_LITERAL_END = re.compile(rb"\{(\d+)\}\Z")
_CLIENT_LITERAL = re.compile(rb"\{\d+\+?\}\Z")
_STATUS = re.compile(rb"^[!#$&'*+,\-./0-9:;<=>?@A-Z\[\]^_`a-z|}~]+ (OK|NO|BAD)( |$)")
_TEXT = re.compile(rb"^[\t\x20-\x7e]*$")

MESSAGE = (
    b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: hi\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nin\r\n--b--\r\n"
)

PLAIN = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())

VALID: tuple[bytes, ...] = (
    b"CAPABILITY",
    b"NOOP",
    b'ID ("name" "fuzz" "version" "1")',
    b"ID NIL",
    b"LOGIN " + ALICE.encode() + b" " + PASSWORD.encode(),
    b'LOGIN "alice@example.org" "wrong"',
    b"AUTHENTICATE PLAIN " + PLAIN,
    b"AUTHENTICATE PLAIN",
    b"ENABLE CONDSTORE UTF8=ACCEPT",
    b"NAMESPACE",
    b"SELECT INBOX",
    b"EXAMINE INBOX",
    b"CREATE Archive",
    b"CREATE Archive/2024",
    b"DELETE Archive",
    b'RENAME Archive "Old Stuff"',
    b"SUBSCRIBE INBOX",
    b'LIST "" "*"',
    b'LIST "" %',
    b'LSUB "" "*"',
    b"STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)",
    b"CHECK",
    b"CLOSE",
    b"UNSELECT",
    b"EXPUNGE",
    b"SEARCH ALL",
    b"SEARCH OR FROM bob SUBJECT hi",
    b"SEARCH UID 1:* NOT DELETED LARGER 10",
    b"SEARCH SENTBEFORE 1-Jan-2030 HEADER X-Tag blue",
    b'SEARCH CHARSET UTF-8 BODY "hello"',
    b"FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE)",
    b"FETCH 1 BODY[]",
    b"FETCH 1 BODY.PEEK[HEADER.FIELDS (Subject Date)]",
    b"FETCH 1 BODY[2.HEADER]<0.10>",
    b"FETCH 1 (BODYSTRUCTURE ENVELOPE)",
    b"FETCH 1:2 FAST",
    b"STORE 1 +FLAGS (\\Deleted)",
    b"STORE 1:* -FLAGS.SILENT (\\Seen $Junk)",
    b"COPY 1 Archive",
    b"MOVE 1 Archive",
    b"UID FETCH 1:* (UID FLAGS)",
    b"UID STORE 1 +FLAGS (\\Flagged)",
    b"UID SEARCH 1:4294967295",
    b"UID EXPUNGE 1",
    b"UID COPY 1 INBOX",
    b"IDLE",
    b"STARTTLS",
    b"XYZZY",
)


class IMAPFuzzTestCase(FuzzTestCase):
    """Sessions over a mailbox with messages, and the checks every case ends with."""

    def setUp(self) -> None:
        super().setUp()
        self.continued = 0

    def open(self) -> Session:
        self.world = MailWorld()
        self.world.auth.throttle.maxFailures = 10**6
        self.world.auth.throttle.maxAccountFailures = 10**6
        for _ in range(3):
            self.world.deliver(ALICE, MESSAGE)
        factory = self.world.imapFactory(tls=True)
        session = self.world.connect(factory, peer="127.0.0.1")
        session.read()
        return session

    def command(self, garbage: Garbage, tag: bytes) -> bytes:
        """One command, its literals included; never an unfinished literal."""
        line = garbage.pick(VALID)
        kind = garbage.random.randrange(7)
        if kind == 1:
            line = garbage.mutate(line)
        elif kind == 2:
            line = garbage.renumber(line) if garbage.chance(0.7) else line
            line += b" " + garbage.argument()
        elif kind == 3:
            return self.withLiteral(garbage, tag)
        elif kind == 4:
            line = garbage.blob(30)
            return line.replace(b"{", b"(") + garbage.ending()
        if garbage.chance(0.1):
            tag = garbage.mutate(tag)
        line = tag + b" " + line
        # A mutation may have announced a literal; its bytes would then be
        # missing, which the framing test covers.
        lines = [_CLIENT_LITERAL.sub(b"", part) for part in line.split(b"\n")]
        return b"\n".join(lines) + garbage.pick((b"\r\n", b"\r\n", b"\n"))

    def withLiteral(self, garbage: Garbage, tag: bytes) -> bytes:
        """A command carrying complete literals (synchronising or not)."""
        plus = b"+" if garbage.chance(0.5) else b""
        kind = garbage.random.randrange(4)
        if kind == 0:
            message = garbage.pick((MESSAGE, garbage.blob(200), b"x", MESSAGE * 3))
            flags = garbage.pick(
                (b"", b"(\\Seen) ", b'(\\Seen) "01-Jan-2024 10:00:00 +0000" ')
            )
            box = garbage.pick((b"INBOX", b"Archive", b"Nope", b'"a\\"b"'))
            head = b"APPEND " + box + b" " + flags
            return (
                tag
                + b" "
                + head
                + b"{%d%s}\r\n" % (len(message), plus)
                + message
                + b"\r\n"
            )
        if kind == 1:
            name = garbage.pick((ALICE.encode(), garbage.blob(12)))
            return (
                tag + b" LOGIN {%d%s}\r\n" % (len(name), plus) + name
                + b" {%d%s}\r\n" % (len(PASSWORD), plus) + PASSWORD.encode() + b"\r\n"
            )  # fmt: skip
        if kind == 2:
            text = garbage.blob(40)
            return (
                tag
                + b" SEARCH CHARSET UTF-8 TEXT {%d%s}\r\n" % (len(text), plus)
                + text
                + b"\r\n"
            )
        box = garbage.blob(20)
        return tag + b" CREATE {%d%s}\r\n" % (len(box), plus) + box + b"\r\n"

    def responses(self, session: Session, case: Case) -> list[bytes]:
        """
        The responses sent since the last call (literals taken out), each
        checked.
        """
        data = session.read()
        self.assertNoLeak(data, case)
        out = []
        current = b""
        while data:
            end = data.find(b"\r\n")
            if end == -1:
                self.fail(f"unterminated response {data[:120]!r}\n{case.describe()}")
            line, data = data[:end], data[end + 2 :]
            literal = _LITERAL_END.search(line)
            if literal is not None:
                size = int(literal.group(1))
                if len(data) < size:
                    self.fail(f"literal cut short in {line!r}\n{case.describe()}")
                current += line[: literal.start()] + b"{...}"
                data = data[size:]
                continue
            current += line
            if not _TEXT.match(current):
                self.fail(f"unprintable response {current[:300]!r}\n{case.describe()}")
            first = current.split(b" ", 1)[0]
            if first not in (b"*", b"+") and not _STATUS.match(current):
                self.fail(f"malformed response {current[:300]!r}\n{case.describe()}")
            out.append(current)
            current = b""
        return out

    def say(self, session: Session, line: bytes, case: Case) -> list[bytes]:
        case.record(line + b"\r\n")
        session.protocol.dataReceived(line + b"\r\n")
        session.pump()
        return self.responses(session, case)

    def expect(
        self, session: Session, line: bytes, case: Case, *ok: bytes
    ) -> list[bytes]:
        lines = self.say(session, line, case)
        tag = line.split(b" ", 1)[0]
        final = [x for x in lines if x.startswith(tag + b" ")]
        if len(final) != 1 or not final[0].startswith(ok or (tag + b" OK",)):
            self.fail(f"{line!r} got {lines!r}\n{case.describe()}")
        return lines

    def goesOn(self, session: Session, last: bytes, case: Case) -> None:
        """
        After the garbage the session still works: end IDLE or a SASL
        exchange, then NOOP, log in, SELECT, FETCH, LOGOUT.
        """
        # End a partial line first (an empty command is a BAD), then IDLE
        # or a SASL exchange.
        ending = b"" if last.startswith(b"+ ") else b"\r\n"
        for _ in range(3):
            if ending:
                case.record(ending)
                session.protocol.dataReceived(ending)
                session.pump()
                lines = self.responses(session, case)
                last = lines[-1] if lines else last
            if session.transport.disconnecting or not last.startswith(b"+ "):
                break
            ending = b"DONE\r\n" if last == b"+ idling" else b"*\r\n"
        if session.transport.disconnecting:
            if not last.startswith(b"* BYE") and b" OK LOGOUT" not in last:
                self.fail(f"closed after {last!r}\n{case.describe()}")
            self.disconnect(session.protocol, case)
            return
        self.continued += 1
        self.world.deliver(ALICE, MESSAGE)
        self.expect(session, b"p1 NOOP", case)
        login = b"p2 LOGIN " + ALICE.encode() + b" " + PASSWORD.encode()
        self.expect(session, login, case, b"p2 OK", b"p2 BAD LOGIN is not allowed now")
        self.expect(session, b"p3 SELECT INBOX", case)
        lines = self.expect(session, b"p4 FETCH 1 (FLAGS BODY.PEEK[])", case)
        self.assertTrue(
            any(x.startswith(b"* 1 FETCH ") for x in lines), case.describe()
        )
        lines = self.expect(session, b"p5 LOGOUT", case)
        self.assertTrue(session.transport.disconnecting, case.describe())
        self.disconnect(session.protocol, case)

    def finish(self, session: Session, case: Case) -> None:
        session.pump()
        lines = self.responses(session, case)
        self.goesOn(session, lines[-1] if lines else b"", case)

    def login(self, session: Session, case: Case, select: bool) -> None:
        self.say(session, b"a LOGIN " + ALICE.encode() + b" " + PASSWORD.encode(), case)
        if select:
            self.say(session, b"b SELECT INBOX", case)


class CommandTests(IMAPFuzzTestCase):
    """Commands with mutated arguments, in any state, in any chunks."""

    def soup(self, name: str, count: int, state: int) -> None:
        for garbage, case in self.cases(name, count):
            session = self.open()
            if state:
                self.login(session, case, state == 2)
            data = b"".join(
                self.command(garbage, b"t%d" % i) for i in range(garbage.count(1, 8))
            )
            self.deliver(session.protocol, data, garbage, case)
            self.finish(session, case)

    def test_notAuthenticated(self) -> None:
        """Before login: mutated commands get OK, NO or BAD; a login follows."""
        self.soup("imap-unauth", 150, 0)
        self.assertGreater(self.continued, 100)

    def test_authenticated(self) -> None:
        """Logged in, nothing selected: the same."""
        self.soup("imap-auth", 200, 1)

    def test_selected(self) -> None:
        """
        With INBOX selected: mutated sequence sets, FETCH items, SEARCH
        keys, flags and mailbox names get OK, NO or BAD; the session goes
        on.
        """
        self.soup("imap-selected", 300, 2)

    def test_numbers(self) -> None:
        """
        Every hostile number in sequence sets, partial ranges, SEARCH
        sizes and UIDs gets a response, never an exception.
        """
        templates = (
            b"FETCH N FLAGS",
            b"FETCH 1:N UID",
            b"FETCH 1 BODY[N]",
            b"FETCH 1 BODY[]<N.N>",
            b"FETCH 1 BODY[1.N.MIME]",
            b"UID FETCH N:* FLAGS",
            b"SEARCH LARGER N",
            b"SEARCH UID N",
            b"STORE N +FLAGS (\\Seen)",
            b"COPY N INBOX",
        )
        for garbage, case in self.cases("imap-numbers", 1):
            for number in NUMBERS:
                session = self.open()
                self.login(session, case, True)
                data = b"".join(
                    b"n%d " % i + t.replace(b"N", number) + b"\r\n"
                    for i, t in enumerate(templates)
                )
                self.deliver(session.protocol, data, garbage, case)
                self.finish(session, case)

    def test_randomBytes(self) -> None:
        """Random bytes (without announcing literals) are survived."""
        for garbage, case in self.cases("imap-bytes", 100):
            session = self.open()
            if garbage.chance(0.5):
                self.login(session, case, garbage.chance(0.5))
            data = garbage.blob(600).replace(b"{", b"(") + b"\r\n"
            self.deliver(session.protocol, data, garbage, case)
            self.finish(session, case)


class FramingTests(IMAPFuzzTestCase):
    """Literals that lie, over-long lines, cut connections."""

    def test_literals(self) -> None:
        """
        Literals announced too large, of absurd sizes, with missing bytes,
        or never sent, and lines past the limit: no exception and no
        failure logged, through a disconnect; a new session works.
        """
        limit = IMAPServer.maxLineLength
        for garbage, case in self.cases("imap-literals", 150):
            session = self.open()
            self.login(session, case, garbage.chance(0.5))
            size = garbage.pick((0, 1, 999, 1001, 10001, 2**31, 2**64, 10**19))
            plus = garbage.pick((b"", b"+"))
            head = garbage.pick(
                (b"a APPEND INBOX ", b"a LOGIN ", b"a SEARCH TEXT ", b"a CREATE ",
                 b"a FETCH 1 BODY[", b"a ")
            )  # fmt: skip
            data = head + b"{%d%s}\r\n" % (size, plus) + garbage.blob(300)
            if garbage.chance(0.3):
                data = b"a NOOP " + garbage.long(limit) + b"\r\n"
            self.deliver(session.protocol, data, garbage, case)
            session.pump()
            self.responses(session, case)
            self.disconnect(session.protocol, case)
            self.goesOn(self.open(), b"", case)

    def test_cut(self) -> None:
        """
        A connection lost at any byte of a session (mid-command,
        mid-literal, mid-FETCH, during IDLE) logs no failure and loses
        nothing delivered; a new session works.
        """
        script = (
            b"a LOGIN " + ALICE.encode() + b" " + PASSWORD.encode() + b"\r\n"
            b"b SELECT INBOX\r\nc FETCH 1:* (BODY[] FLAGS)\r\n"
            b"d APPEND INBOX {%d}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n"
            b"e STORE 1 +FLAGS (\\Deleted)\r\nf IDLE\r\nDONE\r\ng EXPUNGE\r\n"
        )
        for garbage, case in self.cases("imap-cut", 200):
            session = self.open()
            cut = garbage.random.randrange(len(script))
            case.record(script[:cut])
            for chunk in garbage.chunks(script[:cut]):
                session.protocol.dataReceived(chunk)
                producer = session.transport.producer
                if producer is not None and garbage.chance(0.5):
                    producer.resumeProducing()
            session.read()
            self.disconnect(session.protocol, case)
            self.goesOn(self.open(), b"", case)


class LongNumberTests(IMAPFuzzTestCase):
    """
    What this suite found in the IMAP server: numbers of thousands of
    digits once reached int(), which raises past 4,300 digits.
    """

    def test_longNumbers(self) -> None:
        """
        A message number, UID or section part of thousands of digits is a
        BAD command (RFC 3501 numbers are 32-bit), not a logged failure
        answered NO [SERVERBUG].
        """
        big = b"1" + b"0" * 4400
        garbage = Garbage("imap-long-numbers")
        case = Case("imap-long-numbers", "imap-long-numbers")
        problems = []
        for template in (
            b"FETCH N FLAGS",
            b"UID FETCH N:* FLAGS",
            b"FETCH 1 BODY[1.N.MIME]",
            b"SEARCH UID N",
            b"STORE N +FLAGS (\\Seen)",
            b"COPY N INBOX",
        ):
            session = self.open()
            self.login(session, case, True)
            command = b"k " + template.replace(b"N", big) + b"\r\n"
            self.deliver(session.protocol, command, garbage, case)
            lines = self.responses(session, case)
            logged = self.flushLoggedErrors()
            if logged or not lines[-1].startswith(b"k BAD "):
                problems.append((template, lines[-1], len(logged)))
        self.assertEqual(problems, [])
