"""
SMTP under hostile input, in both roles (MX and submission), on a string
transport over the in-memory store.

Oracles, for every case: no exception out of the protocol and no failure
logged; every line the server sends is a well-formed reply
(C{ddd[ -]text}, text in printable ASCII) with no Python internals in it;
and afterwards the session goes on: a reply to the pending state, then a
whole mail transaction that is stored. The server may instead have closed
the connection, but only after saying why with C{221} (QUIT) or C{421}
(too many errors), which is its documented behaviour.
"""

from __future__ import annotations

import base64
import re

from appnet.mail.smtpserver import MAX_ERRORS, SMTPServer
from tests.mail.helpers import ALICE, BOB, PASSWORD, MailWorld, Session, SlowUsers
from tests.robustness.fuzz import NUMBERS, Case, FuzzTestCase, Garbage

_REPLY = re.compile(rb"^[2-5][0-9][0-9]([ -])[\t\x20-\x7e]*$")

#: The commands a client may send, and a valid argument for each.
VALID: tuple[tuple[bytes, bytes], ...] = (
    (b"HELO", b"client.example"),
    (b"EHLO", b"client.example"),
    (b"MAIL", b"FROM:<sender@crepes.fr>"),
    (b"MAIL", b"FROM:<sender@crepes.fr> SIZE=100 BODY=8BITMIME"),
    (b"MAIL", b"FROM:<>"),
    (b"RCPT", b"TO:<bob@example.org>"),
    (b"RCPT", b"TO:<Postmaster>"),
    (b"RCPT", b'TO:<"john doe"@example.org>'),
    (b"RCPT", b"TO:<@relay.example:bob@example.org>"),
    (b"DATA", b""),
    (b"RSET", b""),
    (b"NOOP", b""),
    (b"VRFY", b"bob"),
    (b"EXPN", b"staff"),
    (b"HELP", b""),
    (b"STARTTLS", b""),
    (b"AUTH", b"PLAIN"),
    (b"AUTH", b"LOGIN"),
    (b"AUTH", b"PLAIN " + base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())),
    (b"AUTH", b"PLAIN " + base64.b64encode(b"\0alice\0wrong")),
    (b"BDAT", b"10 LAST"),
    (b"ETRN", b"example.org"),
)


class SMTPFuzzTestCase(FuzzTestCase):
    """Sessions of either role, and the checks every case ends with."""

    def setUp(self) -> None:
        super().setUp()
        self.world = MailWorld()
        # Wrong passwords are part of the input; the throttle is tested
        # elsewhere and would otherwise refuse the final login.
        self.world.auth.throttle.maxFailures = 10**6
        self.world.auth.throttle.maxAccountFailures = 10**6
        self.mx = self.world.smtpFactory(tls=True)
        self.submission = self.world.smtpFactory(submission=True, tls=True)
        self.continued = 0
        self.closed = 0

    def open(self, submission: bool) -> Session:
        factory = self.submission if submission else self.mx
        peer = "127.0.0.1" if submission else "192.0.2.7"
        session = self.world.connect(factory, peer=peer)
        session.read()
        return session

    def command(self, garbage: Garbage) -> bytes:
        """One command line: valid, mutated, or made up."""
        return garbage.commandLine(
            VALID,
            lambda verb, argument: (
                garbage.pick((verb.lower(), verb.title())) + b" " + argument
            ),
        )

    def replies(self, session: Session, case: Case) -> list[bytes]:
        """Every line sent since the last call, each checked."""
        data = session.read()
        self.assertNoLeak(data, case)
        if data and not data.endswith(b"\r\n"):
            self.fail(f"unterminated reply {data[-80:]!r}\n{case.describe()}")
        lines = data.split(b"\r\n")[:-1]
        for line in lines:
            if not _REPLY.match(line):
                self.fail(f"malformed reply line {line!r}\n{case.describe()}")
        return lines

    def say(self, session: Session, line: bytes, case: Case) -> list[bytes]:
        case.record(line + b"\r\n")
        session.protocol.dataReceived(line + b"\r\n")
        return self.replies(session, case)

    def expect(self, session: Session, line: bytes, code: bytes, case: Case) -> None:
        lines = self.say(session, line, case)
        last = lines[-1] if lines else b""
        if not last.startswith(code + b" "):
            self.fail(f"{line!r} got {lines!r}, not {code!r}\n{case.describe()}")

    def goesOn(
        self, session: Session, submission: bool, last: bytes, case: Case
    ) -> None:
        """
        After the garbage, the session still works: end what is pending
        (a body after 354, a partial line), then run a whole transaction.
        """
        ending = b"\r\n.\r\n" if last[:4] == b"354 " else b"\r\n"
        for _ in range(3):
            case.record(ending)
            session.protocol.dataReceived(ending)
            lines = self.replies(session, case)
            last = lines[-1] if lines else last
            if session.transport.disconnecting or last[:4] not in (b"334 ", b"354 "):
                break
            # A SASL exchange is cancelled; a body is ended.
            ending = b"*\r\n" if last[:4] == b"334 " else b".\r\n"
        if session.transport.disconnecting:
            if last[:4] not in (b"221 ", b"421 "):
                self.fail(f"closed after {last!r}\n{case.describe()}")
            self.closed += 1
            return
        self.continued += 1
        stored = self.storedCount()
        self.expect(session, b"RSET", b"250", case)
        self.expect(session, b"NOOP", b"250", case)
        ehlo = self.say(session, b"EHLO probe.example", case)
        self.assertEqual(ehlo[-1][:4], b"250 ", case.describe())
        sender = b"sender@crepes.fr"
        if submission:
            sender = ALICE.encode()
        if any(line[4:9] == b"AUTH " for line in ehlo):
            token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
            self.expect(session, b"AUTH PLAIN " + token, b"235", case)
        self.expect(session, b"MAIL FROM:<" + sender + b">", b"250", case)
        self.expect(session, b"RCPT TO:<" + BOB.encode() + b">", b"250", case)
        self.expect(session, b"DATA", b"354", case)
        self.expect(session, b"Subject: probe\r\n\r\nstill here\r\n.", b"250", case)
        self.assertEqual(self.storedCount(), stored + 1, case.describe())

    def storedCount(self) -> int:
        store = self.world.store.mail
        return len(self.successResultOf(store.listMessages(BOB)))

    def soup(self, name: str, submission: bool, count: int) -> None:
        for garbage, case in self.cases(name, count):
            session = self.open(submission)
            data = b"".join(self.command(garbage) for _ in range(garbage.count(1, 9)))
            self.deliver(session.protocol, data, garbage, case)
            lines = self.replies(session, case)
            self.goesOn(session, submission, lines[-1] if lines else b"", case)
        self.assertGreater(self.continued, self.closed)


class CommandTests(SMTPFuzzTestCase):
    """Commands with mutated arguments, in any order, in any chunks."""

    def test_mx(self) -> None:
        """
        The MX role answers every mutated or made-up command with a
        well-formed reply and goes on to accept mail.
        """
        self.soup("smtp-mx", False, 400)

    def test_submission(self) -> None:
        """
        The submission role does the same, and still lets alice
        authenticate and send afterwards.
        """
        self.soup("smtp-submission", True, 400)

    def test_randomBytes(self) -> None:
        """Streams of random bytes (any line ends, NULs) are survived."""
        for garbage, case in self.cases("smtp-bytes", 200):
            submission = garbage.chance(0.5)
            session = self.open(submission)
            self.deliver(session.protocol, garbage.blob(600), garbage, case)
            lines = self.replies(session, case)
            self.goesOn(session, submission, lines[-1] if lines else b"", case)

    def test_overlongLines(self) -> None:
        """
        Lines around and far past the 12288-byte limit get 500 5.5.6 (once
        per line) and the session goes on, in command and in AUTH state.
        """
        limit = SMTPServer.maxLineLength
        for garbage, case in self.cases("smtp-long", 60):
            submission = garbage.chance(0.5)
            session = self.open(submission)
            prefix = garbage.pick((b"", b"EHLO ", b"MAIL FROM:<", b"AUTH PLAIN "))
            if submission and garbage.chance(0.5):
                self.say(session, b"EHLO client.example", case)
                self.say(session, b"AUTH LOGIN", case)
            data = prefix + garbage.long(limit) + garbage.ending()
            self.deliver(session.protocol, data, garbage, case)
            lines = self.replies(session, case)
            self.goesOn(session, submission, lines[-1] if lines else b"", case)

    def test_wrongOrder(self) -> None:
        """
        The valid commands shuffled: each out-of-order one gets a 503-class
        reply, never an exception.
        """
        for garbage, case in self.cases("smtp-order", 200):
            submission = garbage.chance(0.5)
            session = self.open(submission)
            commands = [
                v + (b" " + a if a else b"") + b"\r\n"
                for v, a in VALID
                if v not in (b"STARTTLS",)
            ]
            garbage.random.shuffle(commands)
            data = b"".join(commands[: garbage.count(2, 12)])
            self.deliver(session.protocol, data, garbage, case)
            lines = self.replies(session, case)
            self.goesOn(session, submission, lines[-1] if lines else b"", case)

    def test_numbers(self) -> None:
        """
        Every hostile number (negative, huge, thousands of digits, digits
        that are not ASCII) as the SIZE of MAIL FROM and the size of BDAT
        gets an error reply, never an exception.
        """
        token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
        for garbage, case in self.cases("smtp-numbers", 2):
            submission = garbage.chance(0.5)
            for number in NUMBERS:
                session = self.open(submission)
                self.say(session, b"EHLO client.example", case)
                sender = b"sender@crepes.fr"
                if submission:
                    self.say(session, b"AUTH PLAIN " + token, case)
                    sender = ALICE.encode()
                data = (
                    b"MAIL FROM:<" + sender + b"> SIZE=" + number + b"\r\n"
                    b"RSET\r\nBDAT " + number + b" LAST\r\n"
                )
                self.deliver(session.protocol, data, garbage, case)
                lines = self.replies(session, case)
                self.goesOn(session, submission, lines[-1], case)

    def test_errorLimit(self) -> None:
        """
        After MAX_ERRORS bad commands the server says 421 and closes: the
        one case where garbage ends the session, by design.
        """
        for garbage, case in self.cases("smtp-limit", 5):
            session = self.open(garbage.chance(0.5))
            data = b"".join(b"\x01" + garbage.printable(5) + b"\r\n" for _ in range(30))
            self.deliver(session.protocol, data, garbage, case)
            lines = self.replies(session, case)
            self.assertEqual(len(lines), MAX_ERRORS + 1, case.describe())
            self.assertTrue(lines[-1].startswith(b"421 4.7.0 "), case.describe())
            self.assertTrue(session.transport.disconnecting)


class BodyTests(SMTPFuzzTestCase):
    """DATA bodies: dots, bare line ends, binary, sizes past the limit."""

    def body(self, garbage: Garbage) -> bytes:
        parts = []
        for _ in range(garbage.count(0, 12)):
            kind = garbage.random.randrange(7)
            if kind == 0:
                parts.append(garbage.blob(200))
            elif kind == 1:
                parts.append(garbage.pick((b".", b"..", b". ", b".x", b"\r.", b"\n.")))
            elif kind == 2:
                parts.append(b"Received: from x\r\n" * garbage.count(1, 8))
            elif kind == 3:
                parts.append(garbage.long(garbage.pick((998, 65536, 10000))))
            elif kind == 4:
                parts.append(garbage.printable(60) + b":" + garbage.printable(20))
            elif kind == 5:
                parts.append(garbage.special())
            else:
                parts.append(b"")
            parts.append(garbage.ending())
        return b"".join(parts)

    def test_bodies(self) -> None:
        """
        Any body, in any chunks, ends at its dot line with 250 (stored) or
        552/554 (too big, too many hops); the next transaction works.
        """
        for garbage, case in self.cases("smtp-body", 250):
            submission = garbage.chance(0.3)
            session = self.open(submission)
            if submission:
                token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
                self.say(session, b"EHLO c.example", case)
                self.say(session, b"AUTH PLAIN " + token, case)
                self.say(session, b"MAIL FROM:<" + ALICE.encode() + b">", case)
            else:
                self.say(session, b"HELO c.example", case)
                self.say(session, b"MAIL FROM:<a@crepes.fr>", case)
            self.say(session, b"RCPT TO:<bob@example.org>", case)
            self.expect(session, b"DATA", b"354", case)
            data = self.body(garbage) + b"\r\n.\r\n"
            if garbage.chance(0.3):
                data += b"NOOP\r\n"  # pipelined after the body
            self.deliver(session.protocol, data, garbage, case)
            lines = self.replies(session, case)
            codes = [line[:3] for line in lines]
            if not codes or codes[0] not in (b"250", b"552", b"554"):
                self.fail(f"end of data got {lines!r}\n{case.describe()}")
            self.goesOn(session, submission, lines[-1], case)


class PipelineTests(SMTPFuzzTestCase):
    """Whole transactions pipelined with garbage, cut anywhere."""

    def test_pipelined(self) -> None:
        """
        A burst of valid and invalid commands in one write gets one final
        reply per command line, in order.
        """
        bad = (b"NOOP", b"VRFY", b"XYZZY", b"RSET x", b"HELP", b"MAIL FROM:<a@b")
        for garbage, case in self.cases("smtp-pipeline", 200):
            session = self.open(False)
            head = [
                b"EHLO c.example",
                b"MAIL FROM:<a@crepes.fr>",
                b"RCPT TO:<bob@example.org>",
                b"RCPT TO:<nobody@example.org>",
                b"RCPT TO:<x@elsewhere.example>",
            ]
            tail = [b"NOOP"]
            for _ in range(garbage.count(0, 4)):
                head.insert(
                    garbage.random.randrange(1, len(head) + 1), garbage.pick(bad)
                )
                tail.insert(garbage.random.randrange(len(tail) + 1), garbage.pick(bad))
            body = [b"DATA", b"Subject: pipelined\r\n\r\n.body", b"."]
            data = b"".join(line + b"\r\n" for line in head + body + tail)
            self.deliver(session.protocol, data, garbage, case)
            replies = self.replies(session, case)
            finals = [r[:3] for r in replies if r[3:4] == b" "]
            # One final reply per command; the body gets none.
            self.assertEqual(
                len(finals), len(head) + 2 + len(tail), (replies, case.describe())
            )
            self.assertEqual(finals[len(head)], b"354", case.describe())
            self.assertEqual(finals[len(head) + 1], b"250", case.describe())
            self.goesOn(session, False, replies[-1], case)


class DisconnectTests(SMTPFuzzTestCase):
    """Connections that break anywhere."""

    def test_cut(self) -> None:
        """
        A connection lost at any byte of a transaction (mid-command,
        mid-body, mid-AUTH) logs no failure and leaves nothing staged; a
        new session then delivers.
        """
        for garbage, case in self.cases("smtp-cut", 300):
            submission = garbage.chance(0.5)
            session = self.open(submission)
            token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
            script = (
                b"EHLO c.example\r\nAUTH PLAIN " + token + b"\r\n"
                if submission
                else b"EHLO c.example\r\n"
            )
            sender = ALICE.encode() if submission else b"a@crepes.fr"
            script += b"MAIL FROM:<" + sender + b">\r\nRCPT TO:<bob@example.org>\r\n"
            script += b"DATA\r\nSubject: cut\r\n\r\n" + garbage.blob(300) + b"\r\n.\r\n"
            cut = garbage.random.randrange(len(script))
            self.deliver(session.protocol, script[:cut], garbage, case)
            self.replies(session, case)
            self.disconnect(session.protocol, case)
            self.assertIsNone(session.smtp._staged, case.describe())
            fresh = self.open(submission)
            self.goesOn(fresh, submission, b"", case)

    def test_cutWhileLookingUp(self) -> None:
        """
        A connection lost while pipelined recipients wait for the user
        store: the lookups finish later without errors.
        """
        world = self.world
        slow = SlowUsers(world.store.users)
        world.router._users = slow  # type: ignore[attr-defined]
        for garbage, case in self.cases("smtp-cut-pending", 50):
            session = self.open(False)
            rcpts = b"".join(
                b"RCPT TO:<"
                + garbage.pick((b"bob", b"alice", b"nobody"))
                + b"@example.org>\r\n"
                for _ in range(garbage.count(1, 5))
            )
            data = b"HELO c\r\nMAIL FROM:<a@crepes.fr>\r\n" + rcpts + b"DATA\r\n"
            self.deliver(session.protocol, data, garbage, case)
            self.replies(session, case)
            self.disconnect(session.protocol, case)
            while slow.pending:
                slow.release()
