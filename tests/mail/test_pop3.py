"""
Tests for L{appnet.mail.pop3}: every command and error path, on a string
transport over the in-memory store.
"""

from __future__ import annotations

import base64
import os
import re

from twisted.internet.error import ConnectionLost
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.mail.interfaces import IMailboxPOP3
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from appnet.auth import apopDigest
from appnet.mail.pop3 import POP3_MASK, READ_CHUNK, Maildrop
from appnet.trace import Transcript
from tests.mail.helpers import (
    ALICE,
    PASSWORD,
    MailWorld,
    ManualThreads,
    Session,
    SlowUsers,
)

M1 = b"Subject: one\r\n\r\nfirst message\r\n"
M2 = b"Subject: two\r\nX-Long: yes\r\n\r\nline 1\r\n.starts with dot\r\nline 3\r\n"


class POP3TestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = MailWorld()
        self.uids = [self.world.deliver(ALICE, m) for m in (M1, M2)]

    def connect(self, peer: str = "127.0.0.1", tls: bool = False) -> Session:
        session = self.world.connect(self.world.pop3Factory(tls=tls), peer=peer)
        session.read()
        return session

    def login(self, session: Session | None = None) -> Session:
        session = session or self.connect()
        session.command(f"USER {ALICE}")
        self.assertEqual(session.command(f"PASS {PASSWORD}")[0][:3], "+OK")
        return session

    def inbox(self) -> list[int]:
        messages = self.successResultOf(self.world.store.mail.listMessages(ALICE))
        return [m.uid for m in messages]


class AuthorizationTests(POP3TestCase):
    def test_greeting(self) -> None:
        """The greeting is +OK with no APOP timestamp."""
        session = self.world.connect(self.world.pop3Factory(), peer="127.0.0.1")
        self.assertEqual(session.lines(), ["+OK pop.example.org POP3 server ready"])

    def test_capa(self) -> None:
        """CAPA lists what this server does, before and after login."""
        session = self.connect(tls=True)
        self.assertEqual(
            session.command("CAPA"),
            [
                "+OK Capability list follows",
                "TOP",
                "UIDL",
                "PIPELINING",
                "RESP-CODES",
                "AUTH-RESP-CODE",
                "USER",
                "SASL PLAIN LOGIN",
                "STLS",
                "EXPIRE NEVER",
                "IMPLEMENTATION appnet",
                ".",
            ],
        )
        self.login(session)
        capa = session.command("CAPA")
        self.assertNotIn("USER", capa)
        self.assertNotIn("STLS", capa)

    def test_userPass(self) -> None:
        """USER then PASS logs in and reports the maildrop."""
        session = self.connect()
        self.assertEqual(session.command("USER alice"), ["+OK Send PASS"])
        self.assertEqual(
            session.command(f"PASS {PASSWORD}"),
            [f"+OK Logged in, 2 messages ({len(M1) + len(M2)} octets)"],
        )

    def test_badPassword(self) -> None:
        """A wrong password is -ERR [AUTH]; the session can try again."""
        session = self.connect()
        session.command("USER alice")
        self.assertEqual(
            session.command("PASS nope"), ["-ERR [AUTH] Authentication failed"]
        )
        self.login(session)

    def test_passWithoutUser(self) -> None:
        """PASS needs USER first; USER needs a name."""
        session = self.connect()
        self.assertEqual(session.command("PASS x"), ["-ERR USER first"])
        self.assertEqual(session.command("USER"), ["-ERR Syntax: USER name"])

    def test_throttled(self) -> None:
        """Too many failures: -ERR [SYS/TEMP]."""
        session = self.connect()
        for _ in range(3):
            session.command("USER alice")
            session.command("PASS nope")
        session.command("USER alice")
        self.assertEqual(
            session.command(f"PASS {PASSWORD}")[0][:16], "-ERR [SYS/TEMP] "
        )

    def test_plainNeedsTLS(self) -> None:
        """
        From a non-loopback client, USER and AUTH need STLS first; CAPA
        does not offer them.
        """
        session = self.connect(peer="192.0.2.7", tls=True)
        self.assertNotIn("USER", session.command("CAPA"))
        self.assertEqual(session.command("USER alice")[0][:11], "-ERR [AUTH]")
        self.assertEqual(session.command("AUTH PLAIN")[0][:11], "-ERR [AUTH]")
        self.assertEqual(session.command("STLS"), ["+OK Begin TLS negotiation"])
        self.login(session)

    def test_authPlain(self) -> None:
        """AUTH PLAIN, with or without an initial response, logs in."""
        token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
        session = self.connect()
        self.assertEqual(
            session.command(f"AUTH PLAIN {token}")[0][:13], "+OK Logged in"
        )
        session.command("QUIT")
        session.protocol.connectionLost(None)
        session = self.connect()
        self.assertEqual(session.command("AUTH PLAIN"), ["+ "])
        self.assertEqual(session.command(token)[0][:3], "+OK")

    def test_authLogin(self) -> None:
        """AUTH LOGIN prompts for the user name and password."""
        session = self.connect()
        self.assertEqual(session.command("AUTH LOGIN"), ["+ VXNlcm5hbWU6"])
        self.assertEqual(
            session.command(base64.b64encode(ALICE.encode()).decode()),
            ["+ UGFzc3dvcmQ6"],
        )
        self.assertEqual(
            session.command(base64.b64encode(PASSWORD.encode()).decode())[0][:3], "+OK"
        )

    def test_authErrors(self) -> None:
        """AUTH lists mechanisms; bad ones, garbage and '*' get -ERR."""
        session = self.connect()
        self.assertEqual(
            session.command("AUTH"), ["+OK Mechanisms follow", "PLAIN", "LOGIN", "."]
        )
        self.assertEqual(
            session.command("AUTH CRAM-MD5"), ["-ERR Unsupported SASL mechanism"]
        )
        session.command("AUTH PLAIN")
        self.assertEqual(session.command("*"), ["-ERR Authentication cancelled"])
        self.assertEqual(session.command("AUTH PLAIN !!!")[0][:11], "-ERR [AUTH]")
        self.assertEqual(session.command("CAPA")[0], "+OK Capability list follows")

    def test_apopOff(self) -> None:
        """
        With APOP off (the default) APOP is refused, saying so and naming
        the alternatives, whatever the digest.
        """
        session = self.connect()
        self.world.store.users.setAPOPSecret(ALICE, "tanstaaf-alice")
        digest = apopDigest(session.protocol.magic, "tanstaaf-alice").decode()
        for line in ("APOP alice 0123456789abcdef", f"APOP alice {digest}"):
            self.assertEqual(
                session.command(line),
                [
                    "-ERR [AUTH] APOP is off on this server;"
                    " use STLS then USER/PASS or AUTH PLAIN"
                ],
            )
        self.assertIsNone(session.protocol.mbox)

    def test_stateRules(self) -> None:
        """
        Transaction commands before login, and login commands after, are
        refused; unknown commands too.
        """
        session = self.connect()
        self.assertEqual(
            session.command("STAT"), ["-ERR STAT not allowed before login"]
        )
        self.assertEqual(session.command("XYZZY"), ["-ERR Unknown command"])
        self.login(session)
        self.assertEqual(
            session.command("USER bob"), ["-ERR USER not allowed after login"]
        )

    def test_inUse(self) -> None:
        """A second session on the same maildrop gets -ERR [IN-USE]."""
        first = self.login()
        second = self.connect()
        second.command("USER alice")
        self.assertEqual(
            second.command(f"PASS {PASSWORD}"),
            ["-ERR [IN-USE] Mailbox is in use by another session"],
        )
        first.command("QUIT")
        first.protocol.connectionLost(None)
        self.login(second)

    def test_lockReleasedOnDrop(self) -> None:
        """A dropped session releases its lock."""
        first = self.login()
        first.protocol.connectionLost(None)
        self.login()

    def test_lockRefreshed(self) -> None:
        """
        A long session keeps its lock: the store lock is refreshed before
        it would expire.
        """
        self.login()
        self.world.clock.advance(1000)
        self.world.clock.advance(1000)
        other = self.connect()
        other.command("USER alice")
        self.assertEqual(other.command(f"PASS {PASSWORD}")[0][:14], "-ERR [IN-USE] ")

    def test_pipelinedLogin(self) -> None:
        """
        Commands pipelined after PASS wait for the login (the password
        check is asynchronous) and are answered in order.
        """
        slow = SlowUsers(self.world.store.users)
        self.world.auth.checker._users = slow  # type: ignore[misc]
        session = self.connect()
        replies = session.send(f"USER alice\r\nPASS {PASSWORD}\r\nSTAT\r\nQUIT\r\n")
        self.assertEqual(replies, ["+OK Send PASS"])
        slow.release()
        session.pump()
        replies = session.lines()
        self.assertEqual(replies[0][:13], "+OK Logged in")
        self.assertEqual(replies[1], f"+OK 2 {len(M1) + len(M2)}")
        self.assertEqual(replies[2][:7], "+OK Bye")

    def test_stlsInjection(self) -> None:
        """
        Commands pipelined after STLS are discarded; the USER given before
        is forgotten.
        """
        session = self.connect(tls=True)
        session.command("USER alice")
        replies = session.send(f"STLS\r\nPASS {PASSWORD}\r\n")
        self.assertEqual(replies, ["+OK Begin TLS negotiation"])
        self.assertIsNotNone(session.transport.tlsStarted)  # type: ignore[attr-defined]
        self.assertEqual(session.command(f"PASS {PASSWORD}"), ["-ERR USER first"])
        self.assertEqual(session.command("STLS"), ["-ERR Already using TLS"])

    def test_stlsUnavailable(self) -> None:
        """Without a certificate STLS is refused."""
        self.assertEqual(self.connect().command("STLS"), ["-ERR STLS not available"])

    def test_passwordMasked(self) -> None:
        """The transcript rule masks PASS and AUTH's initial response."""
        transcript = Transcript("pop3", "peer", POP3_MASK)
        self.assertEqual(transcript._mask(b"PASS secret words"), "PASS ********")
        self.assertEqual(
            transcript._mask(b"AUTH PLAIN AGEAYg=="), "AUTH PLAIN ********"
        )
        self.assertEqual(transcript._mask(b"APOP alice d1g3st"), "APOP alice ********")


APOP_SECRET = "tanstaaf-alice"
_GREETING = re.compile(
    r"^\+OK pop\.example\.org POP3 server ready"
    r" (<(\d+)\.(\d+)\.([0-9a-f]{16})@pop\.example\.org>)$"
)


class APOPTests(POP3TestCase):
    """
    APOP with C{[pop3] apop = true}: a timestamp in the greeting and
    logins with the account's APOP secret.
    """

    def setUp(self) -> None:
        self.world = MailWorld(apop=True)
        self.uids = [self.world.deliver(ALICE, m) for m in (M1, M2)]
        self.world.store.users.setAPOPSecret(ALICE, APOP_SECRET)

    def greet(self, peer: str = "192.0.2.7") -> tuple[Session, bytes]:
        """A session (not from loopback, no TLS) and its greeting's timestamp."""
        session = self.world.connect(self.world.pop3Factory(), peer=peer)
        [greeting] = session.lines()
        match = _GREETING.match(greeting)
        assert match is not None, greeting
        return session, match.group(1).encode()

    def apop(
        self, session: Session, timestamp: bytes, user: str = "alice", secret: str = ""
    ) -> list[str]:
        digest = apopDigest(timestamp, secret or APOP_SECRET).decode()
        return session.command(f"APOP {user} {digest}")

    def test_greetingTimestamp(self) -> None:
        """
        The greeting ends with an RFC 1939 timestamp naming this process,
        a serial number and random hex at the host name, new for every
        connection.
        """
        stamps = [self.greet()[1] for _ in range(3)]
        parts = [
            _GREETING.match(f"+OK pop.example.org POP3 server ready {s.decode()}")
            for s in stamps
        ]
        self.assertEqual({int(p.group(2)) for p in parts if p}, {os.getpid()})
        serials = [int(p.group(3)) for p in parts if p]
        self.assertEqual(serials, sorted(set(serials)))
        self.assertEqual(len(set(stamps)), 3)

    def test_login(self) -> None:
        """
        The right digest logs in without TLS from a remote address, as
        PASS does; the maildrop is usable.
        """
        session, timestamp = self.greet()
        self.assertEqual(
            self.apop(session, timestamp),
            [f"+OK Logged in, 2 messages ({len(M1) + len(M2)} octets)"],
        )
        self.assertIsInstance(session.protocol.mbox, Maildrop)
        self.assertEqual(session.command("STAT"), [f"+OK 2 {len(M1) + len(M2)}"])
        self.assertEqual(
            session.command("RETR 1")[1:-1], ["Subject: one", "", "first message"]
        )

    def test_fullAddressAndUpperCase(self) -> None:
        """The name may be the full address; an upper-case digest is taken."""
        session, timestamp = self.greet()
        digest = apopDigest(timestamp, APOP_SECRET).decode().upper()
        self.assertEqual(
            session.command(f"APOP {ALICE} {digest}")[0][:13], "+OK Logged in"
        )

    def test_wrongDigest(self) -> None:
        """
        A wrong digest is -ERR [AUTH]; the session may try again. A digest
        made for another connection's timestamp is wrong here.
        """
        session, timestamp = self.greet()
        other, otherStamp = self.greet()
        self.assertEqual(
            self.apop(session, timestamp, secret="not-the-secret"),
            ["-ERR [AUTH] Authentication failed"],
        )
        self.assertEqual(
            self.apop(session, otherStamp), ["-ERR [AUTH] Authentication failed"]
        )
        self.assertIsNone(session.protocol.mbox)
        self.assertEqual(self.apop(session, timestamp)[0][:13], "+OK Logged in")

    def test_unknownUserAndNoSecret(self) -> None:
        """
        An unknown user and a user without an APOP secret get the same
        reply as a wrong digest, even with a digest of bob's login
        password.
        """
        session, timestamp = self.greet()
        for user, secret in [
            ("carol", PASSWORD),
            ("bob", PASSWORD),
            ("bob", APOP_SECRET),
        ]:
            self.assertEqual(
                self.apop(session, timestamp, user, secret),
                ["-ERR [AUTH] Authentication failed"],
                user,
            )

    def test_throttled(self) -> None:
        """
        Wrong digests count against the address like wrong passwords:
        then even the right digest gets -ERR [SYS/TEMP], and so does PASS.
        """
        session, timestamp = self.greet(peer="127.0.0.1")
        for _ in range(3):
            self.apop(session, timestamp, secret="not-the-secret")
        self.assertEqual(
            self.apop(session, timestamp),
            ["-ERR [SYS/TEMP] Too many failed logins; try again later"],
        )
        session.command("USER alice")
        self.assertEqual(
            session.command(f"PASS {PASSWORD}")[0][:16], "-ERR [SYS/TEMP] "
        )

    def test_inUse(self) -> None:
        """
        APOP takes the maildrop lock as PASS does: -ERR [IN-USE] while a
        PASS session holds it, and a PASS login while an APOP one does.
        """
        first = self.login()
        session, timestamp = self.greet()
        self.assertEqual(
            self.apop(session, timestamp),
            ["-ERR [IN-USE] Mailbox is in use by another session"],
        )
        first.command("QUIT")
        first.protocol.connectionLost(None)
        self.assertEqual(self.apop(session, timestamp)[0][:13], "+OK Logged in")
        other = self.connect()
        other.command("USER alice")
        self.assertEqual(
            other.command(f"PASS {PASSWORD}"),
            ["-ERR [IN-USE] Mailbox is in use by another session"],
        )

    def test_afterLogin(self) -> None:
        """APOP after a successful login is refused; the session goes on."""
        session, timestamp = self.greet()
        self.apop(session, timestamp)
        self.assertEqual(
            self.apop(session, timestamp), ["-ERR APOP not allowed after login"]
        )
        self.assertEqual(session.command("STAT")[0][:5], "+OK 2")

    def test_syntax(self) -> None:
        """A missing name or a digest that is not 32 hex digits is a syntax error."""
        session, timestamp = self.greet()
        digest = apopDigest(timestamp, APOP_SECRET).decode()
        for line in (
            "APOP",
            "APOP alice",
            f"APOP {digest}",
            "APOP alice 0123456789abcdef",
            f"APOP alice {digest}0",
            "APOP alice " + "g" * 32,
        ):
            self.assertEqual(
                session.command(line), ["-ERR Syntax: APOP name digest"], line
            )
        self.assertEqual(self.apop(session, timestamp)[0][:13], "+OK Logged in")

    def test_pipelined(self) -> None:
        """Commands pipelined after APOP wait for the login."""
        session, timestamp = self.greet()
        digest = apopDigest(timestamp, APOP_SECRET).decode()
        replies = session.send(f"APOP alice {digest}\r\nSTAT\r\nQUIT\r\n")
        self.assertEqual(replies[0][:13], "+OK Logged in")
        self.assertEqual(replies[1], f"+OK 2 {len(M1) + len(M2)}")
        self.assertEqual(replies[2][:7], "+OK Bye")

    def test_capaUnchanged(self) -> None:
        """
        CAPA is the same with APOP on (RFC 2449 has no APOP capability:
        the greeting's timestamp is the sign).
        """
        session, _ = self.greet(peer="127.0.0.1")
        withAPOP = session.command("CAPA")
        self.world.apop = False
        self.assertEqual(self.connect().command("CAPA"), withAPOP)

    def test_digestMasked(self) -> None:
        """--trace pop3 masks APOP's digest, not the name."""
        transcript = Transcript("pop3", "peer", POP3_MASK)
        self.assertEqual(
            transcript._mask(b"APOP alice c4c9334bac560ecc979e58001b3e22fb"),
            "APOP alice ********",
        )


class TransactionTests(POP3TestCase):
    def test_maildropInterface(self) -> None:
        """The maildrop is a Twisted IMailboxPOP3."""
        session = self.login()
        self.assertTrue(verifyObject(IMailboxPOP3, session.protocol.mbox))
        self.assertIsInstance(session.protocol.mbox, Maildrop)

    def test_statListUidl(self) -> None:
        """STAT, LIST and UIDL describe the maildrop; UIDs are stable."""
        session = self.login()
        self.assertEqual(session.command("STAT"), [f"+OK 2 {len(M1) + len(M2)}"])
        self.assertEqual(
            session.command("LIST"),
            [
                f"+OK 2 messages ({len(M1) + len(M2)} octets)",
                f"1 {len(M1)}",
                f"2 {len(M2)}",
                ".",
            ],
        )
        self.assertEqual(session.command("LIST 2"), [f"+OK 2 {len(M2)}"])
        uidl = session.command("UIDL")
        validity = self.successResultOf(self.world.store.mail.folder(ALICE)).uidValidity
        self.assertEqual(uidl, ["+OK", f"1 {validity}.1", f"2 {validity}.2", "."])
        self.assertEqual(session.command("UIDL 1"), [f"+OK 1 {validity}.1"])

    def test_badNumbers(self) -> None:
        """Missing, malformed or out-of-range message numbers get -ERR."""
        session = self.login()
        self.assertEqual(session.command("LIST 3"), ["-ERR No such message 3"])
        self.assertEqual(session.command("LIST 0"), ["-ERR No such message 0"])
        self.assertEqual(session.command("RETR x")[0][:10], "-ERR Synta")
        self.assertEqual(session.command("RETR")[0][:10], "-ERR Synta")
        self.assertEqual(session.command("TOP 1")[0], "-ERR Syntax: TOP message lines")
        self.assertEqual(session.command("DELE 9"), ["-ERR No such message 9"])
        self.assertEqual(session.command("NOOP"), ["+OK "])

    def test_numbersNotASCIIDigits(self) -> None:
        """
        Digits int() refuses (superscripts, thousands of them) and digits
        that are not ASCII are syntax errors, not exceptions (found by
        tests.robustness.test_pop3).
        """
        session = self.login()
        for command in (
            "LIST \u00b2",
            "RETR \u0663",
            "TOP 1 \u00b2",
            "DELE " + "9" * 41,
        ):
            self.assertEqual(session.command(command)[0][:10], "-ERR Synta", command)
        self.assertEqual(session.command("NOOP"), ["+OK "])

    def test_disconnectDuringRetr(self) -> None:
        """
        A client that goes away in the middle of RETR (the transport stops
        the file sender) is not logged as a failure, and the message is not
        marked as retrieved (found by tests.robustness.test_pop3).
        """
        self.world.deliver(ALICE, b"Subject: big\r\n\r\n" + b"x" * 100000)
        threads = self.world.blocking = ManualThreads()
        session = self.login()
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        session.protocol.dataReceived(b"RETR 3\r\n")
        threads.runOne()
        producer = session.transport.producer
        session.transport.producer = None
        producer.stopProducing()
        threads.runAll()
        session.protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual([e for e in logged if "log_failure" in e], [])
        self.assertEqual(session.protocol.mbox.retrieved, set())

    def test_retr(self) -> None:
        """RETR sends the message, byte-stuffed, ending with '.'."""
        session = self.login()
        data = session.send("RETR 2\r\n")
        self.assertEqual(
            data,
            [f"+OK {len(M2)} octets"]
            + M2.decode().replace("\r\n.", "\r\n..").splitlines()
            + ["."],
        )

    def test_retrStuffingAcrossChunks(self) -> None:
        """
        A line starting with '.' exactly at a read-chunk boundary is still
        stuffed (Twisted's transform misses it).
        """
        body = b"x" * (READ_CHUNK - 2) + b"\r\n.hidden\r\n"
        self.world.deliver(ALICE, body)
        session = self.login()
        session.protocol.dataReceived(b"RETR 3\r\n")
        session.pump()
        raw = session.read()
        self.assertIn(b"\r\n..hidden\r\n.\r\n", raw)

    def test_retrExpungedElsewhere(self) -> None:
        """
        A message removed by another session (IMAP) after login is
        answered with -ERR, and the session goes on.
        """
        session = self.login()
        self.world.store.mail.expunge(ALICE, "INBOX", [self.uids[0]])
        self.assertEqual(
            session.command("RETR 1"),
            ["-ERR Message 1 was removed by another session"],
        )
        self.assertEqual(session.command("NOOP"), ["+OK "])

    def test_readsInThreadsWithBackPressure(self) -> None:
        """
        RETR reads the message only in the blocking runner (the file
        threads), one chunk at a time, and reads no further while the
        client's connection is paused; the output is unchanged.
        """
        body = (b"line\r\n.dot\r\n" * 20000)[: READ_CHUNK * 3]
        message = b"Subject: big\r\n\r\n" + body + b"\r\n"
        self.world.deliver(ALICE, message)
        threads = self.world.blocking = ManualThreads()
        session = self.login()
        session.protocol.dataReceived(b"RETR 3\r\n")
        self.assertEqual(session.read(), b"+OK %d octets\r\n" % len(message))
        self.assertEqual(len(threads.calls), 1)
        threads.runOne()
        # The first chunk went out and the next read was asked for.
        first = session.read()
        self.assertEqual(len(first), READ_CHUNK + message[:READ_CHUNK].count(b"\n."))
        self.assertEqual(len(threads.calls), 1)
        producer = session.transport.producer
        producer.pauseProducing()
        threads.runOne()
        # Read ahead, but neither sent nor read further while paused.
        self.assertEqual(session.read(), b"")
        self.assertEqual(threads.calls, [])
        producer.resumeProducing()
        threads.runAll()
        rest = session.read()
        self.assertEqual(first + rest, message.replace(b"\n.", b"\n..") + b".\r\n")
        self.assertIsNone(session.transport.producer)

    def test_topInThreads(self) -> None:
        """TOP's reads go through the file threads too; same output."""
        threads = self.world.blocking = ManualThreads()
        session = self.login()
        session.protocol.dataReceived(b"TOP 2 2\r\n")
        self.assertEqual(session.lines(), ["+OK Top of message follows"])
        threads.runAll()
        self.assertEqual(
            session.lines(),
            ["Subject: two", "X-Long: yes", "", "line 1", "..starts with dot", "."],
        )

    def test_top(self) -> None:
        """TOP sends the header section and the first N body lines."""
        session = self.login()
        self.assertEqual(
            session.command("TOP 2 1"),
            [
                "+OK Top of message follows",
                "Subject: two",
                "X-Long: yes",
                "",
                "line 1",
                ".",
            ],
        )
        self.assertEqual(
            session.command("TOP 2 0"),
            ["+OK Top of message follows", "Subject: two", "X-Long: yes", "", "."],
        )
        self.assertEqual(session.command("TOP 2 2")[-2], "..starts with dot")

    def test_deleAtQuit(self) -> None:
        """
        DELE hides a message in the session; it is removed only at QUIT,
        which reports how many.
        """
        session = self.login()
        self.assertEqual(session.command("DELE 1"), ["+OK Message 1 deleted"])
        self.assertEqual(session.command("DELE 1"), ["-ERR Message 1 is deleted"])
        self.assertEqual(session.command("RETR 1"), ["-ERR Message 1 is deleted"])
        self.assertEqual(session.command("STAT"), [f"+OK 1 {len(M2)}"])
        self.assertEqual(
            session.command("LIST"),
            [f"+OK 1 messages ({len(M2)} octets)", f"2 {len(M2)}", "."],
        )
        self.assertEqual(self.inbox(), self.uids)
        self.assertEqual(session.command("QUIT"), ["+OK Bye, 1 messages deleted"])
        self.assertTrue(session.transport.disconnecting)
        self.assertEqual(self.inbox(), self.uids[1:])

    def test_dropDeletesNothing(self) -> None:
        """A connection dropped after DELE deletes nothing."""
        session = self.login()
        session.command("DELE 1")
        session.command("DELE 2")
        session.protocol.connectionLost(None)
        self.assertEqual(self.inbox(), self.uids)

    def test_rset(self) -> None:
        """RSET unmarks deleted messages."""
        session = self.login()
        session.command("DELE 1")
        self.assertEqual(
            session.command("RSET"),
            [f"+OK Maildrop has 2 messages ({len(M1) + len(M2)} octets)"],
        )
        session.command("QUIT")
        self.assertEqual(self.inbox(), self.uids)

    def test_retrievedSeen(self) -> None:
        """Messages retrieved (and kept) are flagged \\Seen at QUIT."""
        session = self.login()
        session.send("RETR 1\r\n")
        session.command("QUIT")
        messages = self.successResultOf(self.world.store.mail.listMessages(ALICE))
        self.assertEqual(
            [m.flags for m in messages], [frozenset({"\\Seen"}), frozenset()]
        )

    def test_snapshot(self) -> None:
        """Mail arriving during a session appears in the next one."""
        session = self.login()
        self.world.deliver(ALICE, b"late\r\n")
        self.assertEqual(session.command("STAT")[0][:6], "+OK 2 ")
        session.command("QUIT")
        session.protocol.connectionLost(None)
        self.assertEqual(self.login().command("STAT")[0][:6], "+OK 3 ")

    def test_quitBeforeLogin(self) -> None:
        """QUIT before login says goodbye and closes."""
        session = self.connect()
        self.assertEqual(session.command("QUIT"), ["+OK Bye"])
        self.assertTrue(session.transport.disconnecting)

    def test_idleTimeout(self) -> None:
        """An idle session is closed, deleting nothing."""
        session = self.login()
        session.command("DELE 1")
        self.world.clock.advance(601)
        self.assertTrue(session.transport.disconnecting)
        session.protocol.connectionLost(None)
        self.assertEqual(self.inbox(), self.uids)

    def test_lineTooLong(self) -> None:
        """An over-long line is refused; the session goes on."""
        session = self.login()
        self.assertEqual(
            session.send(b"NOOP" + b" " * 5000 + b"\r\nNOOP\r\n"),
            ["-ERR Line too long", "+OK "],
        )
