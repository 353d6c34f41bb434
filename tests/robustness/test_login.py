"""
Login attacks on every protocol that logs in (SMTP AUTH, POP3, IMAP, FTP
and the webmail API), through the real protocol and the stack's
authenticator with its documented defaults.

Password checks wait in a queue (L{Pending}) until the test runs them, as
they would in the hashing threads while more attempts arrive. The attacks:
a burst of 31 wrong passwords with the right one as the 21st, all sent
before any check ends; a long sequential run; guesses spread over 25
addresses against an owner who logged in before; and a password with a
trailing space (the password is the exact bytes given).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from appnet.auth import Authenticator, LoginThrottle, UserChecker
from tests.ftp.helpers import ALICE as FTP_ALICE
from tests.ftp.helpers import PASSWORD as FTP_PASSWORD
from tests.ftp.helpers import Harness as FTPHarness
from tests.helpers import Pending
from tests.mail.helpers import ALICE, PASSWORD, MailWorld, Session
from tests.web.helpers import Connection, harness, raw

#: What an attempt has come to: logged in, refused, or still waiting.
Outcome = Callable[[], str]

#: The documented defaults ([auth] in tap/example.toml).
PER_ACCOUNT_AND_CLIENT = 5
DELAY = 2.0


class LoginAttacks:
    """
    The attacks, for a protocol that says how to start one login
    (L{attempt}) and how to let time pass (L{advance}).
    """

    pending: Pending
    attacker = "127.0.0.1"
    owner = "127.0.2.7"

    def attempt(self, password: bytes, client: str) -> Outcome:
        raise NotImplementedError()

    def advance(self, seconds: float) -> None:
        raise NotImplementedError()

    @property
    def password(self) -> bytes:
        return PASSWORD.encode()

    def settle(self) -> None:
        """Run every waiting check, then wait out the failure delay."""
        self.pending.runAll()
        self.advance(DELAY)

    def test_parallelBurst(self: Any) -> None:
        """
        31 wrong passwords and the right one (as the 21st) sent at once
        from one address: only the documented number are checked, the
        right one is refused, nobody logs in.
        """
        outcomes = [self.attempt(b"wrong-pw", self.attacker) for _ in range(20)]
        right = self.attempt(self.password, self.attacker)
        outcomes += [self.attempt(b"wrong-pw", self.attacker) for _ in range(11)]
        self.settle()
        self.assertEqual(right(), "refused")
        self.assertEqual({o() for o in outcomes}, {"refused"})
        self.assertEqual(self.pending.ran, PER_ACCOUNT_AND_CLIENT)

    def test_concurrentRight(self: Any) -> None:
        """
        Twelve logins with the right password at once from one address
        (more than the limit): none is refused by the throttle.
        """
        outcomes = [self.attempt(self.password, self.attacker) for _ in range(12)]
        for _ in range(12):
            self.pending.runAll()
        self.advance(DELAY)
        self.assertEqual([o() for o in outcomes], ["in"] * 12)

    def test_sequential(self: Any) -> None:
        """
        Wrong passwords one after another: checked up to the documented
        count, then refused without a check, the right one too.
        """
        for _ in range(30):
            outcome = self.attempt(b"wrong-pw", self.attacker)
            self.settle()
            self.assertEqual(outcome(), "refused")
        outcome = self.attempt(self.password, self.attacker)
        self.settle()
        self.assertEqual(outcome(), "refused")
        self.assertEqual(self.pending.ran, PER_ACCOUNT_AND_CLIENT)

    def test_spreadSparesOwner(self: Any) -> None:
        """
        100 wrong passwords spread over 25 addresses do not lock the owner
        out of the address they logged in from before.
        """
        outcome = self.attempt(self.password, self.owner)
        self.settle()
        self.assertEqual(outcome(), "in")
        for i in range(100):
            outcome = self.attempt(b"wrong-pw", f"127.0.1.{i % 25 + 1}")
            self.settle()
            self.assertEqual(outcome(), "refused")
        outcome = self.attempt(self.password, self.owner)
        self.settle()
        self.assertEqual(outcome(), "in")

    def test_trailingSpace(self: Any) -> None:
        """
        The password with a trailing space is not the password; the exact
        one then logs in.
        """
        outcome = self.attempt(self.password + b" ", self.attacker)
        self.settle()
        self.assertEqual(outcome(), "refused")
        outcome = self.attempt(self.password, self.attacker)
        self.settle()
        self.assertEqual(outcome(), "in")


class MailAttacks(LoginAttacks):
    """The mail protocols over one L{MailWorld}, checks held in L{Pending}."""

    def setUp(self) -> None:
        self.world = MailWorld()
        self.pending = Pending()
        self.world.auth = Authenticator(
            UserChecker(self.world.store.users, "example.org", self.pending),
            LoginThrottle(self.world.clock),
            self.world.clock,
            DELAY,
        )

    def advance(self, seconds: float) -> None:
        self.world.clock.advance(seconds)

    def connect(self, factory: Any, client: str) -> Session:
        session = self.world.connect(factory, peer=client)
        session.read()
        return session


def _reply(session: Session, ok: bytes, bad: tuple[bytes, ...]) -> Outcome:
    seen: list[bytes] = []

    def outcome() -> str:
        seen.extend(session.read().splitlines())
        if any(line.startswith(ok) for line in seen):
            return "in"
        if any(line.startswith(b) for line in seen for b in bad):
            return "refused"
        return "waiting"

    return outcome


class SMTPLoginTests(MailAttacks, SynchronousTestCase):
    """SMTP AUTH PLAIN on the submission role."""

    def attempt(self, password: bytes, client: str) -> Outcome:
        session = self.connect(self.world.smtpFactory(submission=True), client)
        session.command("EHLO client.example")
        token = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + password)
        session.send(b"AUTH PLAIN " + token + b"\r\n")
        return _reply(session, b"235", (b"535", b"454", b"4", b"5"))


class POP3LoginTests(MailAttacks, SynchronousTestCase):
    """POP3 USER and PASS."""

    def test_concurrentRight(self) -> None:
        """
        Twelve logins with the right password at once from one address:
        all are checked (none refused by the throttle; all but one then
        find the maildrop in use, which is POP3's rule).
        """
        outcomes = [self.attempt(self.password, self.attacker) for _ in range(12)]
        for _ in range(12):
            self.pending.runAll()
        self.advance(DELAY)
        self.assertEqual(self.pending.ran, 12)
        self.assertIn("in", [o() for o in outcomes])

    def attempt(self, password: bytes, client: str) -> Outcome:
        session = self.connect(self.world.pop3Factory(tls=True), client)
        session.command(f"USER {ALICE}")
        session.send(b"PASS " + password + b"\r\n")
        reply = _reply(session, b"+OK Logged in", (b"-ERR",))

        def outcome() -> str:
            # A logged-in session holds the maildrop's lock: let it go.
            result = reply()
            if result == "in" and not session.transport.disconnecting:
                session.command("QUIT")
                session.protocol.connectionLost(Failure(ConnectionDone()))
            return result

        return outcome

    def test_passArgumentExact(self) -> None:
        """
        C{PASS secret } (a trailing space) and C{PASS  secret} (two spaces
        after the verb) are other passwords than C{secret}.
        """
        for line in (b"PASS " + self.password + b" ", b"PASS  " + self.password):
            session = self.connect(self.world.pop3Factory(tls=True), self.attacker)
            session.command(f"USER {ALICE}")
            session.send(line + b"\r\n")
            outcome = _reply(session, b"+OK Logged in", (b"-ERR",))
            self.settle()
            self.assertEqual(outcome(), "refused", line)


class IMAPLoginTests(MailAttacks, SynchronousTestCase):
    """IMAP LOGIN with a quoted password."""

    def attempt(self, password: bytes, client: str) -> Outcome:
        session = self.connect(self.world.imapFactory(tls=True), client)
        quoted = password.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        session.send(b'a1 LOGIN "' + ALICE.encode() + b'" "' + quoted + b'"\r\n')
        return _reply(session, b"a1 OK", (b"a1 NO", b"a1 BAD"))


class FTPLoginTests(LoginAttacks, SynchronousTestCase):
    """FTP USER and PASS."""

    def setUp(self) -> None:
        self.ftp = FTPHarness(self.mktemp(), connect=False)
        self.pending = Pending()
        self.ftp.auth = Authenticator(
            UserChecker(self.ftp.users, None, self.pending),
            LoginThrottle(self.ftp.clock),
            self.ftp.clock,
            DELAY,
        )

    @property
    def password(self) -> bytes:
        return FTP_PASSWORD.encode()

    def advance(self, seconds: float) -> None:
        self.ftp.clock.advance(seconds)

    def attempt(self, password: bytes, client: str) -> Outcome:
        self.ftp.peer = client
        session = self.ftp.session()
        session.received()
        session.send(f"USER {FTP_ALICE}")
        session.send(b"PASS " + password)
        seen: list[str] = []

        def outcome() -> str:
            seen.extend(session.received())
            if any(line.startswith("230") for line in seen):
                return "in"
            if any(line[:1] in ("4", "5") for line in seen):
                return "refused"
            return "waiting"

        return outcome


class APILoginTests(LoginAttacks, SynchronousTestCase):
    """The webmail JSON API's C{POST /api/v1/login}."""

    def setUp(self) -> None:
        self.pending = Pending()
        self.web = harness(self, inThread=self.pending)
        self.successResultOf(self.web.addUser(ALICE, PASSWORD))

    def advance(self, seconds: float) -> None:
        self.web.clock.advance(seconds)

    def attempt(self, password: bytes, client: str) -> Outcome:
        body = (
            b'{"username": "'
            + ALICE.encode()
            + b'", "password": '
            + json.dumps(password.decode()).encode()
            + b"}"
        )
        connection: Connection = self.web.connect(client)
        connection.send(
            raw(
                "POST",
                "/api/v1/login",
                {"Content-Type": "application/json", "Origin": "http://127.0.0.1:8080"},
                body,
            )
        )

        def outcome() -> str:
            responses = connection.responses(["POST"])
            if not responses:
                return "waiting"
            return "in" if responses[0].status == 200 else "refused"

        return outcome
