"""
POP3 under hostile input, on a string transport over the in-memory store.

Oracles, for every case: no exception out of the protocol and no failure
logged; every line the server sends is a status line (C{+OK}, C{-ERR} or
the SASL continuation C{+ }) or belongs to a multi-line response that ends
with C{.} and is dot-stuffed; nothing shows Python internals; and
afterwards the session goes on: alice can log in (or is logged in), list,
retrieve a message and quit. The server closes the connection only after
C{QUIT}, which is the protocol's rule.
"""

from __future__ import annotations

import base64
import re

from appnet.auth import apopDigest
from appnet.mail.pop3 import POP3Server
from tests.mail.helpers import ALICE, PASSWORD, MailWorld, Session
from tests.robustness.fuzz import NUMBERS, Case, FuzzTestCase, Garbage

_STATUS = re.compile(rb"^(\+OK|-ERR|\+)( [\t\x20-\x7e]*)?$")
_MULTI = re.compile(
    rb"^\+OK( (Capability list follows|Mechanisms follow|\d+ messages \(\d+ octets\)"
    rb"|\d+ octets|Top of message follows))?$"
)

APOP_SECRET = "tanstaaf-alice"

MESSAGES = (
    b"Subject: one\r\n\r\nfirst\r\n",
    b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nend\r\n",
    b"Subject: no final line end\r\n\r\nlast line",
)

VALID: tuple[tuple[bytes, bytes], ...] = (
    (b"CAPA", b""),
    (b"USER", ALICE.encode()),
    (b"PASS", PASSWORD.encode()),
    (b"PASS", b"wrong"),
    (b"APOP", b"alice 0123456789abcdef0123456789abcdef"),
    (b"AUTH", b""),
    (b"AUTH", b"PLAIN"),
    (b"AUTH", b"LOGIN"),
    (b"AUTH", b"PLAIN " + base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())),
    (b"STLS", b""),
    (b"STAT", b""),
    (b"LIST", b""),
    (b"LIST", b"2"),
    (b"UIDL", b""),
    (b"UIDL", b"1"),
    (b"RETR", b"2"),
    (b"TOP", b"1 0"),
    (b"TOP", b"2 1"),
    (b"DELE", b"1"),
    (b"NOOP", b""),
    (b"RSET", b""),
    (b"XTND", b"XMIT"),
)


class POP3FuzzTestCase(FuzzTestCase):
    """Sessions over a fresh maildrop, and the checks every case ends with."""

    def setUp(self) -> None:
        super().setUp()
        self.continued = 0

    def open(self, peer: str = "127.0.0.1", apop: bool = False) -> Session:
        self.world = MailWorld(apop=apop)
        self.world.store.users.setAPOPSecret(ALICE, APOP_SECRET)
        self.world.auth.throttle.maxFailures = 10**6
        self.world.auth.throttle.maxAccountFailures = 10**6
        for message in MESSAGES:
            self.world.deliver(ALICE, message)
        session = self.world.connect(self.world.pop3Factory(tls=True), peer=peer)
        session.read()
        return session

    def command(self, garbage: Garbage) -> bytes:
        """One command line: valid, mutated, or made up."""

        def numbers(verb: bytes, argument: bytes) -> bytes:
            count = garbage.count(1, 3)
            return verb + b" " + b" ".join(garbage.number() for _ in range(count))

        return garbage.commandLine(VALID, numbers)

    def replies(self, session: Session, case: Case) -> list[bytes]:
        """
        The status lines sent since the last call; multi-line responses
        are checked (dot-stuffed, terminated) and left out.
        """
        data = session.read()
        self.assertNoLeak(data, case)
        if data and not data.endswith(b"\r\n"):
            self.fail(f"unterminated reply {data[-80:]!r}\n{case.describe()}")
        statuses = []
        inBlock = False
        for line in data.split(b"\r\n")[:-1]:
            if inBlock:
                if line == b".":
                    inBlock = False
                elif line.startswith(b".") and not line.startswith(b".."):
                    self.fail(f"line not dot-stuffed: {line!r}\n{case.describe()}")
                continue
            if not _STATUS.match(line):
                self.fail(f"malformed status line {line!r}\n{case.describe()}")
            statuses.append(line)
            inBlock = bool(_MULTI.match(line))
        if inBlock:
            self.fail(f"multi-line response not terminated\n{case.describe()}")
        return statuses

    def say(self, session: Session, line: bytes, case: Case) -> list[bytes]:
        return self.raw(session, line + b"\r\n", case)

    def raw(self, session: Session, data: bytes, case: Case) -> list[bytes]:
        case.record(data)
        session.protocol.dataReceived(data)
        session.pump()
        return self.replies(session, case)

    def expect(self, session: Session, line: bytes, start: bytes, case: Case) -> None:
        lines = self.say(session, line, case)
        if len(lines) != 1 or not lines[0].startswith(start):
            self.fail(f"{line!r} got {lines!r}, not {start!r}\n{case.describe()}")

    def goesOn(self, session: Session, last: bytes, case: Case) -> None:
        """
        After the garbage the session still works: end a partial line or a
        SASL exchange, log in if needed, list, retrieve, quit.
        """
        ending = b"\r\n"
        for _ in range(3):
            lines = self.raw(session, ending, case)
            last = lines[-1] if lines else last
            if session.transport.disconnecting or not last.startswith(b"+ "):
                break
            ending = b"*\r\n"
        if session.transport.disconnecting:
            if not last.startswith(b"+OK Bye"):
                self.fail(f"closed after {last!r}\n{case.describe()}")
            return
        self.continued += 1
        noop = self.say(session, b"NOOP", case)
        if noop != [b"+OK "]:
            self.assertEqual(
                noop, [b"-ERR NOOP not allowed before login"], case.describe()
            )
            self.expect(session, b"USER " + ALICE.encode(), b"+OK", case)
            self.expect(session, b"PASS " + PASSWORD.encode(), b"+OK Logged in", case)
        self.expect(session, b"RSET", b"+OK Maildrop has", case)
        self.expect(session, b"LIST", b"+OK 3 messages", case)
        self.expect(session, b"RETR 2", b"+OK", case)
        self.expect(session, b"QUIT", b"+OK Bye, 0 messages deleted", case)
        self.assertTrue(session.transport.disconnecting, case.describe())
        self.disconnect(session.protocol, case)

    def finish(self, session: Session, case: Case) -> None:
        session.pump()
        lines = self.replies(session, case)
        self.goesOn(session, lines[-1] if lines else b"", case)


class CommandTests(POP3FuzzTestCase):
    """Commands with mutated arguments, in any order, in any chunks."""

    def test_commands(self) -> None:
        """
        Mutated and made-up commands in both states get C{+OK} or C{-ERR}
        and the session goes on to log in, list, retrieve and quit.
        """
        for garbage, case in self.cases("pop3-commands", 400):
            session = self.open()
            data = b"".join(self.command(garbage) for _ in range(garbage.count(1, 10)))
            self.deliver(session.protocol, data, garbage, case)
            self.finish(session, case)
        self.assertGreater(self.continued, 300)

    def test_afterLogin(self) -> None:
        """
        The same, with alice logged in first: message numbers that are
        out of range, negative, huge or not ASCII digits get C{-ERR}.
        """
        for garbage, case in self.cases("pop3-transaction", 400):
            session = self.open()
            self.say(session, b"USER " + ALICE.encode(), case)
            self.say(session, b"PASS " + PASSWORD.encode(), case)
            data = b"".join(self.command(garbage) for _ in range(garbage.count(1, 10)))
            self.deliver(session.protocol, data, garbage, case)
            self.finish(session, case)

    def test_numbers(self) -> None:
        """
        Every hostile number as a message number or line count of LIST,
        UIDL, RETR, TOP and DELE gets C{-ERR}, never an exception.
        """
        for garbage, case in self.cases("pop3-numbers", 1):
            for number in NUMBERS:
                session = self.open()
                self.say(session, b"USER " + ALICE.encode(), case)
                self.say(session, b"PASS " + PASSWORD.encode(), case)
                data = b"".join(
                    verb + b" " + number + b"\r\n"
                    for verb in (b"LIST", b"UIDL", b"RETR", b"DELE", b"TOP 1", b"TOP")
                )
                self.deliver(session.protocol, data, garbage, case)
                self.finish(session, case)

    def test_randomBytes(self) -> None:
        """Streams of random bytes are survived in either state."""
        for garbage, case in self.cases("pop3-bytes", 150):
            session = self.open()
            if garbage.chance(0.5):
                self.say(session, b"USER " + ALICE.encode(), case)
                self.say(session, b"PASS " + PASSWORD.encode(), case)
            self.deliver(session.protocol, garbage.blob(600), garbage, case)
            self.finish(session, case)

    def test_overlongLines(self) -> None:
        """
        Lines around and past the 4096-byte limit get one C{-ERR Line too
        long} each, also in the middle of AUTH, and the session goes on.
        """
        limit = POP3Server.maxLineLength
        for garbage, case in self.cases("pop3-long", 60):
            session = self.open()
            if garbage.chance(0.5):
                self.say(session, b"AUTH LOGIN", case)
            prefix = garbage.pick((b"", b"USER ", b"PASS ", b"LIST ", b"AUTH PLAIN "))
            data = prefix + garbage.long(limit) + garbage.ending()
            self.deliver(session.protocol, data, garbage, case)
            self.finish(session, case)

    def test_remoteClient(self) -> None:
        """
        A client that is not on loopback gets C{-ERR [AUTH]} for every
        plain-text login until STLS, whatever it sends.
        """
        for garbage, case in self.cases("pop3-remote", 150):
            session = self.open(peer="192.0.2.7")
            data = b"".join(self.command(garbage) for _ in range(garbage.count(1, 8)))
            data = data.replace(b"STLS", b"NOOP").replace(b"stls", b"NOOP")
            self.deliver(session.protocol, data, garbage, case)
            for line in self.replies(session, case):
                self.assertFalse(line.startswith(b"+OK Logged in"), case.describe())
            self.say(session, b"", case)
            self.expect(session, b"STLS", b"+OK Begin TLS", case)
            self.goesOn(session, b"", case)


class APOPTests(POP3FuzzTestCase):
    """APOP commands, mutated, with APOP on."""

    def test_apop(self) -> None:
        """
        With APOP on, mutated APOP commands (the right one among them) from
        a client without TLS get C{+OK} or C{-ERR}, and the session goes
        on to log in, list, retrieve and quit.
        """
        for garbage, case in self.cases("pop3-apop", 200):
            session = self.open(peer="192.0.2.7", apop=True)
            digest = apopDigest(session.protocol.magic, APOP_SECRET)
            right = (b"APOP", b"alice " + digest)
            commands = []
            for _ in range(garbage.count(1, 6)):
                verb, argument = garbage.pick((right, right, (b"APOP", b"")))
                line = garbage.pick(
                    (
                        verb + b" " + argument,
                        verb + b" " + garbage.mutate(argument),
                        garbage.mutate(verb + b" " + argument),
                        verb + b" " + garbage.argument(),
                    )
                )
                commands.append(line + garbage.ending())
            self.deliver(session.protocol, b"".join(commands), garbage, case)
            self.raw(session, b"\r\n", case)
            if session.protocol.mbox is None:
                self.expect(session, b"APOP alice " + digest, b"+OK Logged in", case)
            self.goesOn(session, b"", case)


class DisconnectTests(POP3FuzzTestCase):
    """Connections that break anywhere, including in the middle of RETR."""

    def test_cut(self) -> None:
        """
        A connection lost at any byte of a session (mid-command, mid-AUTH,
        mid-RETR) logs no failure, deletes nothing and releases the
        maildrop: the next session logs in and finds every message.
        """
        script = (
            b"CAPA\r\nUSER " + ALICE.encode() + b"\r\nPASS " + PASSWORD.encode()
            + b"\r\nSTAT\r\nDELE 1\r\nRETR 2\r\nTOP 3 1\r\nLIST\r\nUIDL\r\n"
        )  # fmt: skip
        for garbage, case in self.cases("pop3-cut", 200):
            session = self.open()
            cut = garbage.random.randrange(len(script))
            case.record(script[:cut])
            for chunk in garbage.chunks(script[:cut]):
                session.protocol.dataReceived(chunk)
                # Send part of a pending message, then maybe stop reading.
                for _ in range(garbage.count(0, 2)):
                    producer = session.transport.producer
                    if producer is not None:
                        producer.resumeProducing()
            session.read()  # Possibly cut inside a response.
            self.disconnect(session.protocol, case)
            fresh = self.world.connect(self.world.pop3Factory(), peer="127.0.0.1")
            fresh.read()
            self.goesOn(fresh, b"", case)
