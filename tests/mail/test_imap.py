"""
Tests for L{appnet.mail.imap.server}: every command and error path, on a
string transport over the in-memory store.
"""

from __future__ import annotations

import base64
import io
import os
import weakref
from typing import Any

import attrs
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.mail.interfaces import INamespacePresenter
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from appnet.auth import hashPassword
from appnet.mail.imap import IIMAPAccount, IMAPAccount
from appnet.mail.imap import fetch as fetching
from appnet.mail.imap.server import IMAP_MASK, MAX_BAD
from appnet.store.interfaces import INBOX, DeliveryTarget, MessageBody
from appnet.trace import Transcript
from tests.mail.helpers import ALICE, BOB, PASSWORD, MailWorld, Session

LOGIN = f"a LOGIN {ALICE} {PASSWORD}"

M1 = (
    b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\n"
    b"Subject: one\r\n\r\nfirst\r\n"
)
M2 = (
    b"From: =?utf-8?q?Andr=C3=A9?= <andre@example.net>\r\n"
    b"To: Friends: a@b.example, c@d.example;\r\n"
    b"Cc: carol@example.org\r\n"
    b"Subject: =?utf-8?q?R=C3=A9union?=\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
    b"Message-ID: <m2@example.net>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + base64.b64encode("Déjeuner à midi\r\n".encode()) + b"\r\n"
    b"--b1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--b1--\r\n"
)
M3 = b"Subject: three\r\nX-Tag: blue\r\n\r\nthird message, longer than the others\r\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class IMAPTestCase(SynchronousTestCase):
    """Helpers for talking to one server."""

    def setUp(self) -> None:
        self.world = MailWorld()

    def connect(self, peer: str = "127.0.0.1", tls: bool = False, **kw: Any) -> Session:
        session = self.world.connect(self.world.imapFactory(tls=tls, **kw), peer=peer)
        session.read()
        return session

    def login(self, session: Session | None = None) -> Session:
        session = session or self.connect()
        lines = session.command(LOGIN)
        self.assertTrue(lines[-1].startswith("a OK"), lines)
        return session

    def selected(
        self, folder: str = "INBOX", session: Session | None = None
    ) -> Session:
        session = self.login(session)
        lines = session.command(f"s SELECT {folder}")
        self.assertTrue(lines[-1].startswith("s OK"), lines)
        return session

    def fill(self, *messages: bytes, owner: str = ALICE) -> list[int]:
        return [self.world.deliver(owner, m) for m in messages]

    def rows(self, folder: str = INBOX, owner: str = ALICE) -> list[Any]:
        return list(
            self.successResultOf(self.world.store.mail.listMessages(owner, folder))
        )

    def body(self, uid: int, folder: str = INBOX, owner: str = ALICE) -> bytes:
        message = self.successResultOf(
            self.world.store.mail.openMessage(owner, folder, uid)
        )
        data: bytes = message.open().read()
        return data

    def folders(self, owner: str = ALICE) -> dict[str, Any]:
        infos = self.successResultOf(self.world.store.mail.listFolders(owner))
        return {f.name: f for f in infos}


class ConnectionTests(IMAPTestCase):
    def test_greeting(self) -> None:
        """
        The greeting lists capabilities; from loopback AUTH=PLAIN and
        AUTH=LOGIN are offered.
        """
        session = self.world.connect(self.world.imapFactory(), peer="127.0.0.1")
        [greeting] = session.lines()
        self.assertTrue(greeting.startswith("* OK [CAPABILITY IMAP4rev1 "))
        caps = greeting.split("[", 1)[1].split("]")[0].split()
        expected = (
            "LITERAL+ IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE ID ENABLE SASL-IR"
            " AUTH=PLAIN AUTH=LOGIN APPENDLIMIT=10000 UNSELECT CHILDREN"
        )
        for cap in expected.split():
            self.assertIn(cap, caps)
        self.assertNotIn("LOGINDISABLED", caps)

    def test_remoteWithoutTLS(self) -> None:
        """
        Before TLS a remote client is offered STARTTLS and told
        LOGINDISABLED, with no AUTH= mechanisms; LOGIN and AUTHENTICATE
        are refused with PRIVACYREQUIRED.
        """
        session = self.connect(peer="192.0.2.7", tls=True)
        [caps, done] = session.command("c CAPABILITY")
        self.assertIn(" STARTTLS", caps)
        self.assertIn(" LOGINDISABLED", caps)
        self.assertNotIn("AUTH=", caps)
        self.assertEqual(done, "c OK CAPABILITY completed")
        self.assertEqual(
            session.command(LOGIN),
            ["a NO [PRIVACYREQUIRED] Login needs TLS: use STARTTLS first"],
        )
        self.assertEqual(
            session.command("b AUTHENTICATE PLAIN"),
            ["b NO [PRIVACYREQUIRED] Authentication needs TLS: use STARTTLS first"],
        )

    def test_starttls(self) -> None:
        """
        STARTTLS answers OK, starts TLS, and throws away what was
        pipelined after it (no injection); afterwards login is offered.
        """
        session = self.connect(peer="192.0.2.7", tls=True)
        lines = session.send(f"t STARTTLS\r\n{LOGIN}\r\n".encode())
        self.assertEqual(lines, ["t OK Begin TLS negotiation now"])
        self.assertIsNotNone(session.transport.tlsStarted)  # type: ignore[attr-defined]
        self.assertEqual(session.protocol.state, "unauth")
        [caps, _] = session.command("c CAPABILITY")
        self.assertIn("AUTH=PLAIN", caps)
        self.assertNotIn("STARTTLS", caps)
        self.assertTrue(session.command(LOGIN)[-1].startswith("a OK"))

    def test_starttlsUnavailable(self) -> None:
        """Without a certificate STARTTLS is refused, and not offered."""
        session = self.connect(peer="192.0.2.7")
        self.assertNotIn("STARTTLS", session.command("c CAPABILITY")[0])
        self.assertEqual(session.command("t STARTTLS"), ["t NO TLS is not available"])

    def test_noopAndLogout(self) -> None:
        """NOOP answers OK; LOGOUT says BYE and closes."""
        session = self.connect()
        self.assertEqual(session.command("n NOOP"), ["n OK NOOP completed"])
        self.assertEqual(
            session.command("l LOGOUT"),
            ["* BYE Nice talking to you", "l OK LOGOUT successful"],
        )
        self.assertTrue(session.transport.disconnecting)

    def test_id(self) -> None:
        """ID accepts the client's fields or NIL and names the server."""
        session = self.connect()
        lines = session.command('i ID ("name" "test client" "version" "1")')
        self.assertTrue(lines[0].startswith('* ID ("name" "appnet" "version" '))
        self.assertEqual(lines[1], "i OK ID completed")
        self.assertEqual(session.command("j ID NIL")[-1], "j OK ID completed")
        self.assertEqual(session.command('k ID ("odd")')[0][:5], "k BAD")

    def test_timeout(self) -> None:
        """An idle session is logged out after the idle timeout."""
        session = self.login()
        self.world.clock.advance(1801)
        self.assertEqual(session.lines(), ["* BYE Autologout; idle for too long"])
        self.assertTrue(session.transport.disconnecting)

    def test_loginTimeout(self) -> None:
        """Before login the timeout is a minute."""
        session = self.connect()
        self.world.clock.advance(61)
        self.assertTrue(session.transport.disconnecting)


class LoginTests(IMAPTestCase):
    def test_login(self) -> None:
        """LOGIN with the right password logs in and lists capabilities."""
        session = self.connect()
        [done] = session.command(LOGIN)
        self.assertTrue(done.startswith("a OK [CAPABILITY IMAP4rev1 "))
        self.assertTrue(done.endswith("] Logged in"))
        self.assertNotIn("AUTH=", done)
        self.assertEqual(session.protocol.state, "auth")
        self.assertEqual(self.world.status.counter("imap", "logins"), 1)

    def test_loginShortName(self) -> None:
        """A user name without a domain means the default domain."""
        session = self.connect()
        self.assertTrue(session.command(f'a LOGIN "alice" {PASSWORD}')[0][:4], "a OK")

    def test_loginFails(self) -> None:
        """A wrong password gets NO [AUTHENTICATIONFAILED]; then throttled."""
        session = self.connect()
        self.assertEqual(
            session.command(f"a LOGIN {ALICE} wrong"),
            ["a NO [AUTHENTICATIONFAILED] Authentication failed"],
        )
        session.command(f"a LOGIN {ALICE} wrong")
        session.command(f"a LOGIN {ALICE} wrong")
        self.assertEqual(
            session.command(LOGIN),
            ["a NO [UNAVAILABLE] Too many failed logins; try again later"],
        )

    def test_loginLiterals(self) -> None:
        """
        LOGIN's arguments may be literals: synchronising ones are invited
        with '+', LITERAL+ ones are not.
        """
        session = self.connect()
        user = ALICE.encode()
        lines = session.send(b"a LOGIN {%d}\r\n" % len(user))
        self.assertEqual(lines, ["+ Ready for literal data"])
        lines = session.send(
            user + b" {%d+}\r\n%s\r\n" % (len(PASSWORD), PASSWORD.encode())
        )
        self.assertTrue(lines[-1].startswith("a OK"), lines)

    def test_loginQuoted(self) -> None:
        """Quoted strings with escapes are understood."""
        users = self.world.store.users
        self.successResultOf(
            users.setPasswordHash(ALICE, hashPassword('p"w\\1', log2n=4))
        )
        session = self.connect()
        lines = session.command(f'a LOGIN "{ALICE}" "p\\"w\\\\1"')
        self.assertTrue(lines[-1].startswith("a OK"), lines)

    def test_authenticatePlain(self) -> None:
        """AUTHENTICATE PLAIN with a continuation."""
        session = self.connect()
        self.assertEqual(session.command("a AUTHENTICATE PLAIN"), ["+ "])
        lines = session.command(b64(f"\0{ALICE}\0{PASSWORD}".encode()))
        self.assertTrue(lines[-1].startswith("a OK [CAPABILITY"), lines)

    def test_authenticatePlainInitial(self) -> None:
        """AUTHENTICATE PLAIN with an initial response (SASL-IR)."""
        session = self.connect()
        response = b64(f"{ALICE}\0{ALICE}\0{PASSWORD}".encode())
        lines = session.command(f"a AUTHENTICATE PLAIN {response}")
        self.assertTrue(lines[-1].startswith("a OK"), lines)

    def test_authenticateLogin(self) -> None:
        """AUTHENTICATE LOGIN asks for the user name, then the password."""
        session = self.connect()
        self.assertEqual(session.command("a AUTHENTICATE LOGIN"), ["+ VXNlcm5hbWU6"])
        self.assertEqual(session.command(b64(ALICE.encode())), ["+ UGFzc3dvcmQ6"])
        self.assertTrue(session.command(b64(PASSWORD.encode()))[-1].startswith("a OK"))

    def test_authenticateCancelled(self) -> None:
        """'*' cancels; the session goes on."""
        session = self.connect()
        session.command("a AUTHENTICATE PLAIN")
        self.assertEqual(session.command("*"), ["a BAD Authentication cancelled"])
        self.assertEqual(session.command("n NOOP"), ["n OK NOOP completed"])

    def test_authenticateBad(self) -> None:
        """Bad base64, another identity, an unknown mechanism are refused."""
        session = self.connect()
        session.command("a AUTHENTICATE PLAIN")
        self.assertEqual(session.command("!!")[0][:5], "a BAD")
        other = b64(f"{BOB}\0{ALICE}\0{PASSWORD}".encode())
        self.assertEqual(
            session.command(f"b AUTHENTICATE PLAIN {other}")[0][:5], "b BAD"
        )
        self.assertEqual(
            session.command("c AUTHENTICATE CRAM-MD5"),
            ["c NO [CANNOT] Unsupported authentication mechanism"],
        )

    def test_stateRules(self) -> None:
        """Commands of a later state are refused with BAD before login."""
        session = self.connect()
        self.assertEqual(
            session.command("s SELECT INBOX"), ["s BAD SELECT is not allowed now"]
        )
        self.assertEqual(
            session.command("f FETCH 1 FLAGS"), ["f BAD FETCH is not allowed now"]
        )
        self.login(session)
        self.assertEqual(session.command(LOGIN), ["a BAD LOGIN is not allowed now"])
        self.assertEqual(
            session.command("f FETCH 1 FLAGS"), ["f BAD FETCH is not allowed now"]
        )

    def test_accountInterfaces(self) -> None:
        """The avatar provides IIMAPAccount and INamespacePresenter."""
        account = IMAPAccount(ALICE, self.world.store.mail)
        self.assertTrue(verifyObject(IIMAPAccount, account))
        self.assertTrue(verifyObject(INamespacePresenter, account))

    def test_traceMask(self) -> None:
        """--trace imap masks LOGIN's password and SASL responses."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        transcript = Transcript("imap", "peer", IMAP_MASK)
        transcript.fromClient(f"a LOGIN {ALICE} {PASSWORD}\r\n".encode())
        transcript.fromClient(b"b AUTHENTICATE PLAIN\r\n")
        transcript.fromServer(b"+ \r\n")
        transcript.fromClient(b"AGFsaWNlAHNlY3JldA==\r\n")
        transcript.fromClient(b"c APPEND INBOX {5}\r\n")
        transcript.fromServer(b"+ Ready for literal data\r\n")
        transcript.fromClient(b"hello\r\n")
        logged = [f"{e['direction']}: {e['line']}" for e in observer if "line" in e]
        self.assertEqual(
            logged,
            [
                f"C: a LOGIN {ALICE} ********",
                "C: b AUTHENTICATE PLAIN",
                "S: + ",
                "C: ********",
                "C: c APPEND INBOX {5}",
                "S: + Ready for literal data",
                "C: <literal, 5 bytes>",
                "C: ",
            ],
        )


class FramingTests(IMAPTestCase):
    def test_unknownCommand(self) -> None:
        """An unknown command gets BAD; the session goes on."""
        session = self.connect()
        self.assertEqual(session.command("x FROB"), ["x BAD Unknown command FROB"])
        self.assertEqual(session.command("n NOOP"), ["n OK NOOP completed"])

    def test_missingCommand(self) -> None:
        """A tag alone, an empty line, a bad tag get BAD."""
        session = self.connect()
        self.assertEqual(session.command("x"), ["x BAD Missing command"])
        self.assertEqual(session.command(""), ["* BAD Invalid tag"])
        self.assertEqual(session.command("+x NOOP"), ["* BAD Invalid tag"])

    def test_extraArguments(self) -> None:
        """Arguments a command does not take get BAD."""
        session = self.connect()
        self.assertEqual(
            session.command("n NOOP now"), ["n BAD Unexpected extra arguments"]
        )

    def test_malformedStrings(self) -> None:
        """Unterminated quotes and bad literal markers get BAD."""
        session = self.connect()
        self.assertEqual(
            session.command('a LOGIN "alice'), ["a BAD Unterminated quoted string"]
        )
        self.assertEqual(session.command("a LOGIN {abc}")[0][:5], "a BAD")
        self.assertEqual(session.command("a LOGIN {5")[0][:5], "a BAD")
        self.assertEqual(session.command("n NOOP"), ["n OK NOOP completed"])

    def test_hugeLiteral(self) -> None:
        """
        A synchronising literal over the limit is refused at once (the
        client sends nothing); the session goes on.
        """
        session = self.connect()
        self.assertEqual(
            session.command("a LOGIN {100000}"), ["a BAD [TOOBIG] Literal too large"]
        )
        self.assertEqual(session.command("n NOOP"), ["n OK NOOP completed"])

    def test_hugeNonSyncLiteral(self) -> None:
        """
        A LITERAL+ literal over the limit is read and thrown away, the
        rest of its command too, then refused; the session goes on.
        """
        session = self.connect()
        data = b"x" * 5000
        lines = session.send(
            b"a LOGIN {5000+}\r\n" + data + b" {3+}\r\npw!\r\nn NOOP\r\n"
        )
        self.assertEqual(
            lines, ["a BAD [TOOBIG] Literal too large", "n OK NOOP completed"]
        )

    def test_tooManyLiterals(self) -> None:
        """Literals may not add up past four times the limit."""
        session = self.login()
        chunk = b"y" * 900
        data = b"s SEARCH" + b"".join(b" TEXT {900+}\r\n" + chunk for _ in range(6))
        lines = session.send(data + b"\r\n")
        self.assertEqual(lines, ["s BAD [TOOBIG] Literal too large"])

    def test_lineTooLong(self) -> None:
        """A line over 64 KiB gets BAD; the session goes on."""
        session = self.connect()
        lines = session.send(b"a " + b"x" * 70000 + b"\r\nn NOOP\r\n")
        self.assertEqual(
            lines, ["* BAD [TOOBIG] Command line too long", "n OK NOOP completed"]
        )

    def test_pipelining(self) -> None:
        """Pipelined commands are answered in order."""
        self.fill(M1)
        session = self.connect()
        lines = session.send(f"{LOGIN}\r\ns SELECT INBOX\r\nf FETCH 1 UID\r\n".encode())
        self.assertTrue(lines[0].startswith("a OK"))
        self.assertIn("* 1 FETCH (UID 1)", lines)
        self.assertEqual(lines[-1], "f OK FETCH completed")

    def test_tooManyBad(self) -> None:
        """After many BAD commands in a row the client is disconnected."""
        session = self.connect()
        lines: list[str] = []
        for _ in range(MAX_BAD):
            lines += session.command("x FROB")
        self.assertEqual(lines[-1], "* BYE Too many invalid commands")
        self.assertTrue(session.transport.disconnecting)


class FolderTests(IMAPTestCase):
    def test_specialUse(self) -> None:
        """
        Login makes Sent, Drafts, Trash and Junk; LIST shows their
        special-use attributes and whether folders have children.
        """
        session = self.login()
        lines = session.command('l LIST "" "*"')
        self.assertEqual(
            lines,
            [
                '* LIST (\\HasNoChildren) "/" "INBOX"',
                '* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"',
                '* LIST (\\HasNoChildren \\Junk) "/" "Junk"',
                '* LIST (\\HasNoChildren \\Sent) "/" "Sent"',
                '* LIST (\\HasNoChildren \\Trash) "/" "Trash"',
                "l OK LIST completed",
            ],
        )
        self.assertTrue(self.folders()["Sent"].subscribed)

    def test_specialUseRemade(self) -> None:
        """A deleted special-use folder is made again at the next login."""
        session = self.login()
        self.assertEqual(session.command("d DELETE Junk"), ["d OK DELETE completed"])
        self.assertNotIn("Junk", self.folders())
        self.login()
        self.assertIn("Junk", self.folders())

    def test_createAndHierarchy(self) -> None:
        """
        CREATE makes missing superiors; % lists one level, * all;
        a reference is prepended.
        """
        session = self.login()
        self.assertEqual(
            session.command("c CREATE Work/2024/Q1"), ["c OK CREATE completed"]
        )
        self.assertIn("Work/2024", self.folders())
        self.assertEqual(
            session.command('l LIST "" Work/%'),
            ['* LIST (\\HasChildren) "/" "Work/2024"', "l OK LIST completed"],
        )
        self.assertEqual(
            session.command("l LIST Work/ *"),
            [
                '* LIST (\\HasChildren) "/" "Work/2024"',
                '* LIST (\\HasNoChildren) "/" "Work/2024/Q1"',
                "l OK LIST completed",
            ],
        )
        self.assertEqual(
            session.command('l LIST "" %')[:2],
            ['* LIST (\\HasNoChildren) "/" "INBOX"',
             '* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"'],
        )  # fmt: skip

    def test_listNoselectParents(self) -> None:
        """A level without a folder of its own is listed \\Noselect by %."""
        session = self.login()
        session.command("c CREATE a/b/c")
        session.command("d DELETE a")
        session.command("d DELETE a/b")
        self.assertEqual(
            session.command('l LIST "" a/%'),
            ['* LIST (\\Noselect \\HasChildren) "/" "a/b"', "l OK LIST completed"],
        )
        self.assertEqual(
            session.command('l LIST "" a*'),
            ['* LIST (\\HasNoChildren) "/" "a/b/c"', "l OK LIST completed"],
        )

    def test_listDelimiter(self) -> None:
        """An empty pattern asks for the delimiter."""
        session = self.login()
        self.assertEqual(
            session.command('l LIST "" ""'),
            ['* LIST (\\Noselect) "/" ""', "l OK LIST completed"],
        )

    def test_listInboxAnyCase(self) -> None:
        """inbox matches INBOX."""
        session = self.login()
        self.assertEqual(
            session.command('l LIST "" inbox')[0],
            '* LIST (\\HasNoChildren) "/" "INBOX"',
        )

    def test_createErrors(self) -> None:
        """Existing names, INBOX, and malformed names are refused."""
        session = self.login()
        self.assertEqual(
            session.command("c CREATE Sent"),
            ["c NO [ALREADYEXISTS] Mailbox Sent already exists"],
        )
        self.assertEqual(
            session.command("c CREATE inbox"),
            ["c NO [ALREADYEXISTS] INBOX always exists"],
        )
        self.assertEqual(session.command("c CREATE a//b")[0][:13], "c NO [CANNOT]")
        self.assertEqual(session.command('c CREATE "a*"')[0][:13], "c NO [CANNOT]")
        self.assertEqual(
            session.command("c CREATE &Jjo"),
            ["c BAD Mailbox name is not canonical modified UTF-7"],
        )

    def test_modifiedUTF7(self) -> None:
        """Names travel in modified UTF-7 and are stored as Unicode."""
        session = self.login()
        self.assertEqual(
            session.command("c CREATE &AMk-t&AOk-"), ["c OK CREATE completed"]
        )
        self.assertIn("Été", self.folders())
        self.assertEqual(
            session.command('l LIST "" &AMk-*')[0],
            '* LIST (\\HasNoChildren) "/" "&AMk-t&AOk-"',
        )

    def test_delete(self) -> None:
        """DELETE removes a folder and its messages; INBOX stays."""
        session = self.login()
        session.command("c CREATE Old")
        staged = self.world.store.mail.stage()
        staged.write(M1)
        self.world.store.mail.deliver(staged, [DeliveryTarget(ALICE, "Old")])
        self.assertEqual(session.command("d DELETE Old"), ["d OK DELETE completed"])
        self.assertNotIn("Old", self.folders())
        self.assertEqual(
            session.command("d DELETE INBOX"),
            ["d NO [CANNOT] INBOX cannot be deleted"],
        )
        self.assertEqual(
            session.command("d DELETE Nowhere"),
            ["d NO [NONEXISTENT] Mailbox Nowhere does not exist"],
        )

    def test_rename(self) -> None:
        """RENAME moves a folder with its inferiors, keeping UIDVALIDITY."""
        session = self.login()
        session.command("c CREATE Work/2024")
        validity = self.folders()["Work/2024"].uidValidity
        self.assertEqual(
            session.command("r RENAME Work Archive/Work"), ["r OK RENAME completed"]
        )
        folders = self.folders()
        self.assertIn("Archive", folders)
        self.assertEqual(folders["Archive/Work/2024"].uidValidity, validity)
        self.assertNotIn("Work", folders)
        self.assertEqual(
            session.command("r RENAME Archive Archive/Below")[0],
            "r NO [CANNOT] A mailbox cannot move below itself",
        )
        self.assertEqual(
            session.command("r RENAME Nowhere Else")[0],
            "r NO [NONEXISTENT] Mailbox Nowhere does not exist",
        )
        self.assertEqual(
            session.command("r RENAME Sent Trash")[0],
            "r NO [ALREADYEXISTS] Mailbox Trash already exists",
        )

    def test_renameInbox(self) -> None:
        """RENAME INBOX moves its messages into the new folder."""
        self.fill(M1, M3)
        session = self.login()
        self.assertEqual(
            session.command("r RENAME INBOX Saved"), ["r OK RENAME completed"]
        )
        self.assertEqual(len(self.rows("Saved")), 2)
        self.assertEqual(self.rows(), [])

    def test_subscriptions(self) -> None:
        """SUBSCRIBE and UNSUBSCRIBE are kept; LSUB lists subscribed ones."""
        session = self.login()
        session.command("c CREATE Lists")
        self.assertEqual(
            session.command("u UNSUBSCRIBE Lists"), ["u OK UNSUBSCRIBE completed"]
        )
        self.assertFalse(self.folders()["Lists"].subscribed)
        names = [line.rsplit(" ", 1)[1] for line in session.command('l LSUB "" *')[:-1]]
        self.assertNotIn('"Lists"', names)
        self.assertIn('"Sent"', names)
        session.command("s SUBSCRIBE Lists")
        self.assertTrue(self.folders()["Lists"].subscribed)
        self.assertEqual(
            session.command("s SUBSCRIBE Nowhere"),
            ["s NO [NONEXISTENT] Mailbox Nowhere does not exist"],
        )

    def test_status(self) -> None:
        """
        STATUS reports counts without selecting; RECENT counts the
        messages no SELECT has claimed.
        """
        self.fill(M1, M3)
        self.successResultOf(
            self.world.store.mail.setFlags(
                ALICE, INBOX, [1], frozenset({"\\Seen"}), "add"
            )
        )
        session = self.login()
        info = self.folders()[INBOX]
        self.assertEqual(
            session.command(
                "t STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)"
            ),
            [
                f'* STATUS "INBOX" (MESSAGES 2 RECENT 2 UIDNEXT 3 '
                f"UIDVALIDITY {info.uidValidity} UNSEEN 1)",
                "t OK STATUS completed",
            ],
        )
        self.assertEqual(session.command("t STATUS INBOX (BOGUS)")[0][:5], "t BAD")
        self.assertEqual(
            session.command("t STATUS Nowhere (MESSAGES)"),
            ["t NO [NONEXISTENT] Mailbox Nowhere does not exist"],
        )

    def test_namespace(self) -> None:
        """NAMESPACE: one personal namespace with '/'."""
        session = self.login()
        self.assertEqual(
            session.command("n NAMESPACE"),
            ['* NAMESPACE (("" "/")) NIL NIL', "n OK NAMESPACE command completed"],
        )

    def test_enable(self) -> None:
        """ENABLE enables nothing this server does not offer."""
        session = self.login()
        self.assertEqual(
            session.command("e ENABLE CONDSTORE"),
            ["* ENABLED", "e OK ENABLE completed"],
        )


class SelectTests(IMAPTestCase):
    def test_select(self) -> None:
        """
        SELECT reports flags, counts (the new messages are recent), the
        first unseen, UIDVALIDITY, UIDNEXT.
        """
        self.fill(M1, M3)
        self.successResultOf(
            self.world.store.mail.setFlags(
                ALICE, INBOX, [1], frozenset({"\\Seen", "$Work"}), "add"
            )
        )
        session = self.login()
        validity = self.folders()[INBOX].uidValidity
        self.assertEqual(
            session.command("s SELECT inbox"),
            [
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen"
                " \\Draft $Work \\*)] Flags permitted",
                "* 2 EXISTS",
                "* 2 RECENT",
                "* OK [UNSEEN 2] First unseen",
                f"* OK [UIDVALIDITY {validity}] UIDs valid",
                "* OK [UIDNEXT 3] Predicted next UID",
                "s OK [READ-WRITE] SELECT completed",
            ],
        )
        self.assertEqual(session.protocol.state, "select")

    def test_examine(self) -> None:
        """EXAMINE is read-only: STORE, EXPUNGE and MOVE are refused."""
        self.fill(M1)
        session = self.login()
        lines = session.command("e EXAMINE INBOX")
        self.assertEqual(lines[-1], "e OK [READ-ONLY] EXAMINE completed")
        self.assertIn("* OK [PERMANENTFLAGS ()] Flags permitted", lines)
        refused = "NO [READ-ONLY] The mailbox is read-only (EXAMINE)"
        self.assertEqual(session.command("s STORE 1 +FLAGS \\Seen"), [f"s {refused}"])
        self.assertEqual(session.command("x EXPUNGE"), [f"x {refused}"])
        self.assertEqual(session.command("m MOVE 1 Trash"), [f"m {refused}"])
        session.command("f FETCH 1 BODY[]")
        self.assertEqual(self.rows()[0].flags, frozenset())

    def test_selectMissing(self) -> None:
        """A failed SELECT leaves no mailbox selected."""
        session = self.selected()
        self.assertEqual(
            session.command("s SELECT Nowhere"),
            ["s NO [NONEXISTENT] Mailbox Nowhere does not exist"],
        )
        self.assertEqual(session.protocol.state, "auth")

    def test_closeAndUnselect(self) -> None:
        """
        CLOSE removes \\Deleted messages without EXPUNGE responses;
        UNSELECT removes nothing.
        """
        self.fill(M1, M3)
        session = self.selected()
        session.command("s STORE 1:2 +FLAGS.SILENT (\\Deleted)")
        self.assertEqual(session.command("u UNSELECT"), ["u OK UNSELECT completed"])
        self.assertEqual(len(self.rows()), 2)
        self.selected(session=None)
        session.command("s SELECT INBOX")
        self.assertEqual(session.command("c CLOSE"), ["c OK CLOSE completed"])
        self.assertEqual(self.rows(), [])
        self.assertEqual(session.protocol.state, "auth")

    def test_check(self) -> None:
        """
        CHECK (RFC 3501 6.4.1) is a checkpoint of the selected mailbox:
        every change is durable before its OK already, so it only answers
        OK, reporting (as NOOP would) what changed meanwhile, under SELECT
        and EXAMINE alike. It leaves the mailbox selected and changes
        nothing.
        """
        self.fill(M1)
        session = self.selected()
        self.assertEqual(session.command("c CHECK"), ["c OK CHECK completed"])
        self.world.deliver(ALICE, M3)
        self.assertEqual(
            session.command("c CHECK"),
            ["* 2 EXISTS", "* 2 RECENT", "c OK CHECK completed"],
        )
        self.assertEqual(session.protocol.state, "select")
        self.assertEqual([r.flags for r in self.rows()], [frozenset(), frozenset()])
        self.assertEqual(session.command("e EXAMINE INBOX")[-1][:4], "e OK")
        self.assertEqual(session.command("c CHECK"), ["c OK CHECK completed"])

    def test_checkNotSelected(self) -> None:
        """
        CHECK is a selected-state command: before login, and logged in
        with no mailbox selected (also after CLOSE), it gets BAD, as any
        command outside its state does; arguments get BAD; the session
        goes on.
        """
        session = self.connect()
        refused = ["c BAD CHECK is not allowed now"]
        self.assertEqual(session.command("c CHECK"), refused)
        self.login(session)
        self.assertEqual(session.command("c CHECK"), refused)
        self.assertEqual(session.command("s SELECT INBOX")[-1][:4], "s OK")
        self.assertEqual(
            session.command("c CHECK now"), ["c BAD Unexpected extra arguments"]
        )
        self.assertEqual(session.command("x CLOSE"), ["x OK CLOSE completed"])
        self.assertEqual(session.command("c CHECK"), refused)
        self.assertEqual(session.command("n NOOP"), ["n OK NOOP completed"])


class AppendTests(IMAPTestCase):
    def test_append(self) -> None:
        """
        APPEND stores the message byte for byte with its flags and date
        and answers with APPENDUID.
        """
        session = self.login()
        validity = self.folders()["Drafts"].uidValidity
        lines = session.send(
            b'p APPEND Drafts (\\Draft $Later) "05-Jan-2024 10:30:00 +0100" {%d}\r\n'
            % len(M1)
        )
        self.assertEqual(lines, ["+ Ready for literal data"])
        lines = session.send(M1 + b"\r\n")
        self.assertEqual(lines, [f"p OK [APPENDUID {validity} 1] APPEND completed"])
        [row] = self.rows("Drafts")
        self.assertEqual(row.flags, frozenset({"\\Draft", "$Later"}))
        self.assertEqual(row.internalDate, 1704447000.0)
        self.assertEqual(self.body(1, "Drafts"), M1)
        self.assertEqual(self.world.status.counter("imap", "appended"), 1)

    def test_appendLiteralPlus(self) -> None:
        """A LITERAL+ APPEND needs no invitation."""
        session = self.login()
        lines = session.send(b"p APPEND INBOX {%d+}\r\n%s\r\n" % (len(M3), M3))
        self.assertTrue(lines[0].startswith("p OK [APPENDUID "), lines)
        self.assertEqual(self.body(1), M3)

    def test_appendMailboxLiteral(self) -> None:
        """The mailbox name may itself be a literal."""
        session = self.login()
        session.send(b"p APPEND {4+}\r\nSent {%d+}\r\n%s\r\n" % (len(M1), M1))
        self.assertEqual(self.body(1, "Sent"), M1)

    def test_appendTryCreate(self) -> None:
        """APPEND to a missing folder: NO [TRYCREATE] before the literal."""
        session = self.login()
        self.assertEqual(
            session.command("p APPEND Nowhere {10}"),
            ["p NO [TRYCREATE] Mailbox Nowhere does not exist"],
        )
        self.assertEqual(session.command("n NOOP"), ["n OK NOOP completed"])

    def test_appendTooBig(self) -> None:
        """
        A message over the limit is refused before it is sent; a
        LITERAL+ one is read, thrown away and refused.
        """
        session = self.login()
        self.assertEqual(
            session.command("p APPEND INBOX {20000}"),
            ["p NO [TOOBIG] Message larger than 10000 bytes"],
        )
        lines = session.send(
            b"q APPEND INBOX {20000+}\r\n" + b"x" * 20000 + b"\r\nn NOOP\r\n"
        )
        self.assertEqual(
            lines,
            ["q NO [TOOBIG] Message larger than 10000 bytes", "n OK NOOP completed"],
        )
        self.assertEqual(self.rows(), [])

    def test_appendOverQuota(self) -> None:
        """APPEND past the quota: NO [OVERQUOTA]."""
        self.world = MailWorld(quota=100)
        session = self.login()
        self.assertEqual(
            session.command("p APPEND INBOX {200}"), ["p NO [OVERQUOTA] Quota exceeded"]
        )

    def test_appendErrors(self) -> None:
        """A bad date, an empty message, \\Recent, a quoted message are refused."""
        session = self.login()
        self.assertEqual(
            session.send(
                b'p APPEND INBOX "31-Feb-2024 10:00:00 +0000" {3+}\r\nabc\r\n'
            ),
            ["p BAD Invalid date-time '31-Feb-2024 10:00:00 +0000'"],
        )
        self.assertEqual(
            session.send(b"p APPEND INBOX {0}\r\n"),
            ["p NO [CANNOT] An empty message cannot be stored"],
        )
        self.assertEqual(
            session.send(b"p APPEND INBOX (\\Recent) {3+}\r\nabc\r\n"),
            ["p BAD Unknown system flag \\Recent"],
        )
        self.assertEqual(
            session.command("p APPEND INBOX abc"),
            ["p BAD The message must be a literal"],
        )
        self.assertEqual(self.rows(), [])

    def test_appendToSelected(self) -> None:
        """
        APPEND to the selected folder announces the new message, recent
        in this session.
        """
        session = self.selected()
        lines = session.send(b"p APPEND INBOX {%d+}\r\n%s\r\n" % (len(M1), M1))
        self.assertEqual(lines[:2], ["* 1 EXISTS", "* 1 RECENT"])
        self.assertTrue(lines[2].startswith("p OK [APPENDUID"))


class FetchTests(IMAPTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.fill(M1, M2, M3)
        self.session = self.selected()

    def fetch(self, query: str) -> list[str]:
        return self.session.command(f"f {query}")

    def test_indexItems(self) -> None:
        """FLAGS, UID, RFC822.SIZE and INTERNALDATE come from the index."""
        self.assertEqual(
            self.fetch("FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE)"),
            [
                f"* {n} FETCH (FLAGS (\\Recent) UID {n} RFC822.SIZE {len(m)}"
                f' INTERNALDATE "01-Jan-1970 00:00:00 +0000")'
                for n, m in ((1, M1), (2, M2), (3, M3))
            ]
            + [
                "f OK FETCH completed",
            ],
        )

    def test_macros(self) -> None:
        """FAST, ALL and FULL expand to their items."""
        [fast, _] = self.fetch("FETCH 1 FAST")
        self.assertTrue(fast.startswith("* 1 FETCH (FLAGS (\\Recent) INTERNALDATE "))
        [full, _] = self.fetch("FETCH 1 FULL")
        self.assertIn(" ENVELOPE (", full)
        self.assertIn(
            ' BODY ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 7 1))', full
        )

    def test_envelope(self) -> None:
        """
        ENVELOPE: encoded words left for the client, groups, sender and
        reply-to defaulting to from.
        """
        [line, _] = self.fetch("FETCH 2 ENVELOPE")
        andre = '("=?utf-8?q?Andr=C3=A9?=" NIL "andre" "example.net")'
        self.assertEqual(
            line,
            '* 2 FETCH (ENVELOPE ("Mon, 1 Jan 2024 10:00:00 +0000"'
            ' "=?utf-8?q?R=C3=A9union?="'
            f" ({andre}) ({andre}) ({andre})"
            ' ((NIL NIL "Friends" NIL) (NIL NIL "a" "b.example")'
            ' (NIL NIL "c" "d.example") (NIL NIL NIL NIL))'
            ' ((NIL NIL "carol" "example.org")) NIL NIL "<m2@example.net>"))',
        )

    def test_bodystructure(self) -> None:
        """BODYSTRUCTURE of a multipart with a message/rfc822 part."""
        [line, _] = self.fetch("FETCH 2 BODYSTRUCTURE")
        self.assertEqual(
            line,
            '* 2 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL'
            ' "BASE64" 28 1 NIL NIL NIL NIL)'
            ' ("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 28'
            ' (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL)'
            ' ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 1'
            " NIL NIL NIL NIL)"
            ' 3 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "b1") NIL NIL NIL))',
        )

    def test_sections(self) -> None:
        """Parts, their MIME headers, and a contained message's sections."""
        data = self.session.send(
            b"f FETCH 2 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2.HEADER]"
            b" BODY.PEEK[2.TEXT] BODY.PEEK[2.1] BODY.PEEK[9])\r\n"
        )
        text = "\n".join(data)
        encoded = b64("Déjeuner à midi\r\n".encode())
        self.assertIn(f"BODY[1] {{{len(encoded)}}}\n{encoded}", text)
        self.assertIn(
            "BODY[1.MIME] {78}\nContent-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: base64\n\n",
            text,
        )
        self.assertIn("BODY[2.HEADER] {18}\nSubject: inner\n", text)
        self.assertIn("BODY[2.TEXT] {10}\ninner body", text)
        self.assertIn("BODY[2.1] {10}\ninner body", text)
        self.assertIn("BODY[9] NIL", text)
        self.assertEqual(self.rows()[1].flags, frozenset())

    def test_headerFields(self) -> None:
        """HEADER.FIELDS and .NOT return the raw lines; partial slices."""
        raw = self.session.read()
        self.session.protocol.dataReceived(
            b"f FETCH 1 (BODY.PEEK[HEADER.FIELDS (subject from)]"
            b" BODY.PEEK[HEADER.FIELDS.NOT (From To)] BODY.PEEK[]<5.9>)\r\n"
        )
        raw = self.session.read()
        self.assertEqual(
            raw,
            b"* 1 FETCH (BODY[HEADER.FIELDS (subject from)] {45}\r\n"
            b"From: Bob <bob@example.org>\r\nSubject: one\r\n\r\n"
            b" BODY[HEADER.FIELDS.NOT (From To)] {16}\r\nSubject: one\r\n\r\n"
            b" BODY[]<5> {9}\r\n Bob <bob)\r\n"
            b"f OK FETCH completed\r\n",
        )

    def test_bodySetsSeen(self) -> None:
        """BODY[] marks the message \\Seen and reports the flags; PEEK does not."""
        self.session.read()
        self.session.protocol.dataReceived(b"f FETCH 1 BODY.PEEK[]\r\n")
        self.assertEqual(
            self.session.read(),
            b"* 1 FETCH (BODY[] {%d}\r\n%s)\r\nf OK FETCH completed\r\n"
            % (len(M1), M1),
        )
        self.assertEqual(self.rows()[0].flags, frozenset())
        self.session.protocol.dataReceived(b"f FETCH 1 BODY[TEXT]\r\n")
        self.assertEqual(
            self.session.read(),
            b"* 1 FETCH (BODY[TEXT] {7}\r\nfirst\r\n FLAGS (\\Recent \\Seen))\r\n"
            b"f OK FETCH completed\r\n",
        )
        self.assertEqual(self.rows()[0].flags, frozenset({"\\Seen"}))

    def test_rfc822(self) -> None:
        """RFC822, RFC822.HEADER and RFC822.TEXT."""
        self.session.read()
        self.session.protocol.dataReceived(
            b"f FETCH 3 (RFC822.HEADER RFC822.TEXT RFC822)\r\n"
        )
        header, _, text = M3.partition(b"\r\n\r\n")
        header += b"\r\n\r\n"
        self.assertEqual(
            self.session.read(),
            b"* 3 FETCH (RFC822.HEADER {%d}\r\n%s RFC822.TEXT {%d}\r\n%s"
            b" RFC822 {%d}\r\n%s FLAGS (\\Recent \\Seen))\r\n"
            b"f OK FETCH completed\r\n"
            % (len(header), header, len(text), text, len(M3), M3),
        )

    def test_uidFetch(self) -> None:
        """UID FETCH takes UIDs, skips missing ones and always gives UID."""
        self.assertEqual(
            self.fetch("UID FETCH 2:9,20 FLAGS"),
            [
                "* 2 FETCH (UID 2 FLAGS (\\Recent))",
                "* 3 FETCH (UID 3 FLAGS (\\Recent))",
                "f OK FETCH completed",
            ],
        )
        self.assertEqual(
            self.fetch("UID FETCH 7:* UID"),
            ["* 3 FETCH (UID 3)", "f OK FETCH completed"],
        )

    def test_badFetches(self) -> None:
        """Bad sequence sets and items get BAD; the session goes on."""
        self.assertEqual(
            self.fetch("FETCH 4 FLAGS"), ["f BAD Invalid message number 4"]
        )
        self.assertEqual(self.fetch("FETCH 0 FLAGS"), ["f BAD Invalid sequence set 0"])
        self.assertEqual(self.fetch("FETCH 1:x FLAGS")[0][:5], "f BAD")
        self.assertEqual(
            self.fetch("FETCH 1,,2 FLAGS"), ["f BAD Invalid sequence set 1,,2"]
        )
        self.assertEqual(self.fetch("FETCH 1 (FLAGS"), ["f BAD Expected a space"])
        self.assertEqual(self.fetch("FETCH 1 FROB"), ["f BAD Unknown fetch item FROB"])
        self.assertEqual(
            self.fetch("FETCH 1 BODY[1.FROB]"), ["f BAD Invalid section 1.FROB"]
        )
        self.assertEqual(
            self.fetch("FETCH 1 BODY[MIME]"), ["f BAD Invalid section MIME"]
        )
        self.assertEqual(self.fetch("FETCH 1 BODY[]<0.0>")[0][:5], "f BAD")
        self.assertEqual(
            self.fetch("FETCH 1 UID"), ["* 1 FETCH (UID 1)", "f OK FETCH completed"]
        )

    def test_emptyMailbox(self) -> None:
        """FETCH by number in an empty mailbox is BAD; by UID finds nothing."""
        session = self.selected("Sent")
        self.assertEqual(
            session.command("f FETCH 1:* FLAGS"), ["f BAD No messages in the mailbox"]
        )
        self.assertEqual(
            session.command("f UID FETCH 1:* FLAGS"), ["f OK FETCH completed"]
        )

    def test_largeMessageStreams(self) -> None:
        """
        A message larger than a chunk is sent from its file in pieces,
        byte for byte.
        """
        big = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * 40000
        self.fill(big)
        self.assertEqual(self.session.command("n NOOP")[0], "* 4 EXISTS")
        self.session.protocol.dataReceived(
            b"f FETCH 4 (UID BODY.PEEK[] BODY.PEEK[TEXT]<3.5>)\r\n"
        )
        expected = b"* 4 FETCH (UID 4 BODY[] {%d}\r\n%s BODY[TEXT]<3> {5}\r\n34567)\r\n"
        self.assertEqual(
            self.session.read(),
            expected % (len(big), big) + b"f OK FETCH completed\r\n",
        )


class SearchTests(IMAPTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.fill(M1, M2, M3)
        mail = self.world.store.mail
        self.successResultOf(
            mail.setFlags(ALICE, INBOX, [1], frozenset({"\\Seen", "$Work"}), "add")
        )
        self.successResultOf(
            mail.setFlags(ALICE, INBOX, [3], frozenset({"\\Flagged"}), "add")
        )
        self.session = self.selected()

    def search(self, query: str | bytes) -> str:
        if isinstance(query, str):
            query = query.encode()
        lines = self.session.send(b"s " + query + b"\r\n")
        self.assertEqual(lines[-1], "s OK SEARCH completed", lines)
        [result] = [line for line in lines if line.startswith("* SEARCH")]
        return result[len("* SEARCH") :].strip()

    def test_flags(self) -> None:
        """Flag and keyword keys; all three messages are recent here."""
        self.assertEqual(self.search("SEARCH SEEN"), "1")
        self.assertEqual(self.search("SEARCH UNSEEN"), "2 3")
        self.assertEqual(self.search("SEARCH FLAGGED UNSEEN"), "3")
        self.assertEqual(self.search("SEARCH KEYWORD $Work"), "1")
        self.assertEqual(self.search("SEARCH UNKEYWORD $Work"), "2 3")
        self.assertEqual(self.search("SEARCH ALL"), "1 2 3")
        self.assertEqual(self.search("SEARCH NEW"), "2 3")
        self.assertEqual(self.search("SEARCH OLD"), "")

    def test_numbersAndSizes(self) -> None:
        """Sequence sets, UID sets, LARGER and SMALLER."""
        self.assertEqual(self.search("SEARCH 2:*"), "2 3")
        self.assertEqual(self.search("SEARCH UID 1,3"), "1 3")
        self.assertEqual(self.search(f"SEARCH LARGER {len(M3)}"), "1 2")
        self.assertEqual(self.search(f"SEARCH SMALLER {len(M1)}"), "3")
        self.assertEqual(self.search("UID SEARCH 2:3"), "2 3")

    def test_headers(self) -> None:
        """Header keys match decoded text, case-insensitively."""
        self.assertEqual(self.search("SEARCH FROM bob"), "1")
        self.assertEqual(self.search('SEARCH FROM "andré"'), "2")
        self.assertEqual(self.search('SEARCH SUBJECT "réunion"'), "2")
        self.assertEqual(self.search("SEARCH HEADER X-Tag BLUE"), "3")
        self.assertEqual(self.search('SEARCH HEADER X-Tag ""'), "3")
        self.assertEqual(self.search("SEARCH TO friends"), "2")
        self.assertEqual(self.search("SEARCH CC carol"), "2")
        self.assertEqual(self.search("SEARCH BCC carol"), "")

    def test_text(self) -> None:
        """BODY looks in decoded text parts; TEXT in headers too."""
        self.assertEqual(self.search('SEARCH BODY "déjeuner"'), "2")
        self.assertEqual(self.search("SEARCH BODY inner"), "2")
        self.assertEqual(self.search("SEARCH BODY three"), "")
        self.assertEqual(self.search("SEARCH TEXT three"), "3")
        self.assertEqual(
            self.search(
                "SEARCH CHARSET UTF-8 BODY {9+}\r\nd\xc3\xa9jeuner".encode("latin-1")
            ),
            "2",
        )

    def test_logic(self) -> None:
        """OR, NOT and parentheses."""
        self.assertEqual(self.search("SEARCH OR SEEN FLAGGED"), "1 3")
        self.assertEqual(self.search("SEARCH NOT SEEN"), "2 3")
        self.assertEqual(self.search("SEARCH (OR 1 3) NOT FLAGGED"), "1")
        self.assertEqual(self.search("SEARCH NOT (SUBJECT one)"), "2 3")

    def test_dates(self) -> None:
        """Arrival dates and sent dates (the Date field, else arrival)."""
        self.assertEqual(self.search("SEARCH ON 1-Jan-1970"), "1 2 3")
        self.assertEqual(self.search("SEARCH SINCE 2-Jan-1970"), "")
        self.assertEqual(self.search('SEARCH BEFORE "2-Jan-1970"'), "1 2 3")
        self.assertEqual(self.search("SEARCH SENTSINCE 1-Jan-2024"), "2")
        self.assertEqual(self.search("SEARCH SENTON 1-Jan-2024"), "2")
        self.assertEqual(self.search("SEARCH SENTBEFORE 1-Jan-2000"), "1 3")

    def test_uidSearch(self) -> None:
        """UID SEARCH answers with UIDs."""
        self.world.deliver(ALICE, M1)
        self.session.command("x STORE 1 +FLAGS.SILENT (\\Deleted)")
        self.session.command("x EXPUNGE")
        self.assertEqual(self.search("UID SEARCH FROM bob"), "4")
        self.assertEqual(self.search("SEARCH FROM bob"), "3")

    def test_errors(self) -> None:
        """Unknown keys and charsets, bad dates are refused."""
        self.assertEqual(
            self.session.command("s SEARCH FROBNICATE"),
            ["s BAD Unknown search key FROBNICATE"],
        )
        self.assertEqual(
            self.session.command("s SEARCH CHARSET KOI8-R FROM x"),
            ["s NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset KOI8-R"],
        )
        self.assertEqual(
            self.session.command("s SEARCH SINCE 31-Feb-2024")[0][:5], "s BAD"
        )
        self.assertEqual(self.session.command("s SEARCH (SEEN")[0][:5], "s BAD")
        self.assertEqual(self.session.command("s SEARCH")[0][:5], "s BAD")


class StoreTests(IMAPTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.fill(M1, M2, M3)
        # An earlier session took \\Recent: flags here are the stored ones.
        self.selected()
        self.session = self.selected()

    def flags(self) -> list[frozenset[str]]:
        return [row.flags for row in self.rows()]

    def test_store(self) -> None:
        """+FLAGS, -FLAGS and FLAGS answer with the new flags."""
        self.assertEqual(
            self.session.command("t STORE 1:2 +FLAGS (\\Seen $Work)"),
            [
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen"
                " \\Draft $Work \\*)] Flags permitted",
                "* 1 FETCH (FLAGS ($Work \\Seen))",
                "* 2 FETCH (FLAGS ($Work \\Seen))",
                "t OK STORE completed",
            ],
        )
        self.assertEqual(
            self.session.command("t STORE 2 -FLAGS $Work"),
            ["* 2 FETCH (FLAGS (\\Seen))", "t OK STORE completed"],
        )
        self.assertEqual(
            self.session.command("t STORE 3 FLAGS (\\flagged)"),
            ["* 3 FETCH (FLAGS (\\Flagged))", "t OK STORE completed"],
        )
        self.assertEqual(
            self.flags(),
            [
                frozenset({"\\Seen", "$Work"}),
                frozenset({"\\Seen"}),
                frozenset({"\\Flagged"}),
            ],
        )

    def test_silentAndUID(self) -> None:
        """.SILENT answers nothing; UID STORE adds the UID."""
        self.assertEqual(
            self.session.command("t STORE 1 +FLAGS.SILENT \\Seen"),
            ["t OK STORE completed"],
        )
        self.assertEqual(
            self.session.command("t UID STORE 3 +FLAGS \\Answered"),
            ["* 3 FETCH (FLAGS (\\Answered) UID 3)", "t OK STORE completed"],
        )

    def test_storeErrors(self) -> None:
        """Unknown actions and system flags are refused."""
        self.assertEqual(
            self.session.command("t STORE 1 FROB \\Seen"),
            ["t BAD Unknown STORE action FROB"],
        )
        self.assertEqual(
            self.session.command("t STORE 1 +FLAGS \\Bogus"),
            ["t BAD Unknown system flag \\Bogus"],
        )
        self.assertEqual(
            self.session.command("t STORE 9 +FLAGS \\Seen"),
            ["t BAD Invalid message number 9"],
        )


class CopyMoveTests(IMAPTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.fill(M1, M2, M3)
        self.session = self.selected()
        self.trash = self.folders()["Trash"].uidValidity

    def test_copy(self) -> None:
        """COPY answers with COPYUID and keeps the source."""
        self.assertEqual(
            self.session.command("c COPY 1,3 Trash"),
            [f"c OK [COPYUID {self.trash} 1,3 1,2] COPY completed"],
        )
        self.assertEqual(len(self.rows("Trash")), 2)
        self.assertEqual(len(self.rows()), 3)
        self.assertEqual(self.body(2, "Trash"), M3)

    def test_uidCopyRanges(self) -> None:
        """UID COPY; consecutive UIDs are given as ranges."""
        self.assertEqual(
            self.session.command("c UID COPY 1:3 Trash"),
            [f"c OK [COPYUID {self.trash} 1:3 1,2,3] COPY completed"],
        )

    def test_copyErrors(self) -> None:
        """A missing target gets TRYCREATE; nothing to copy is fine."""
        self.assertEqual(
            self.session.command("c COPY 1 Nowhere"),
            ["c NO [TRYCREATE] Mailbox Nowhere does not exist"],
        )
        self.assertEqual(
            self.session.command("c UID COPY 10:20 Trash"),
            ["c OK COPY completed (no messages)"],
        )

    def test_move(self) -> None:
        """
        MOVE: COPYUID untagged, EXPUNGE for each message, the RECENT
        count left, then OK.
        """
        self.assertEqual(
            self.session.command("m MOVE 1:2 Trash"),
            [
                f"* OK [COPYUID {self.trash} 1:2 1,2] Moved",
                "* 2 EXPUNGE",
                "* 1 EXPUNGE",
                "* 1 RECENT",
                "m OK MOVE completed",
            ],
        )
        self.assertEqual([r.uid for r in self.rows()], [3])
        self.assertEqual(
            self.session.command("f FETCH 1 UID"),
            ["* 1 FETCH (UID 3)", "f OK FETCH completed"],
        )

    def test_uidMove(self) -> None:
        """UID MOVE by UID."""
        lines = self.session.command("m UID MOVE 3 Junk")
        self.assertEqual(
            lines[1:], ["* 3 EXPUNGE", "* 2 RECENT", "m OK MOVE completed"]
        )


class ExpungeTests(IMAPTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.fill(M1, M2, M3, M1)
        self.session = self.selected()
        self.session.command("t STORE 2,4 +FLAGS.SILENT (\\Deleted)")

    def test_expunge(self) -> None:
        """
        EXPUNGE removes \\Deleted messages and reports each, and the
        RECENT count left.
        """
        self.assertEqual(
            self.session.command("x EXPUNGE"),
            ["* 4 EXPUNGE", "* 2 EXPUNGE", "* 2 RECENT", "x OK EXPUNGE completed"],
        )
        self.assertEqual([r.uid for r in self.rows()], [1, 3])

    def test_uidExpunge(self) -> None:
        """UID EXPUNGE removes only the named \\Deleted messages."""
        self.assertEqual(
            self.session.command("x UID EXPUNGE 1:3"),
            ["* 2 EXPUNGE", "* 3 RECENT", "x OK EXPUNGE completed"],
        )
        self.assertEqual([r.uid for r in self.rows()], [1, 3, 4])


class SessionsTests(IMAPTestCase):
    """
    Two sessions on one folder see each other's changes (the first, C{a},
    has the messages as \\Recent).
    """

    def setUp(self) -> None:
        super().setUp()
        self.fill(M1, M2, M3)
        self.a = self.selected()
        self.b = self.selected()

    def test_flags(self) -> None:
        """A flag change by one session shows in the other as FETCH FLAGS."""
        self.b.command("t STORE 1 +FLAGS.SILENT (\\Seen)")
        self.assertEqual(
            self.a.command("n NOOP"),
            ["* 1 FETCH (UID 1 FLAGS (\\Recent \\Seen))", "n OK NOOP completed"],
        )
        self.assertEqual(self.a.command("n NOOP"), ["n OK NOOP completed"])

    def test_expungeWaitsForAllowedCommand(self) -> None:
        """
        Another session's expunge is not announced during FETCH, STORE or
        SEARCH (sequence numbers must not shift); a FETCH of the gone
        message's body gets NO [EXPUNGEISSUED]; NOOP announces it.
        """
        self.b.command("t STORE 2 +FLAGS.SILENT (\\Deleted)")
        self.b.command("x EXPUNGE")
        lines = self.a.command("f FETCH 1:3 UID")
        self.assertEqual(
            lines,
            [
                "* 1 FETCH (UID 1)",
                "* 2 FETCH (UID 2)",
                "* 3 FETCH (UID 3)",
                "f OK FETCH completed",
            ],
        )
        self.assertEqual(
            self.a.command("f FETCH 2 BODY.PEEK[]"),
            ["f NO [EXPUNGEISSUED] Some messages were expunged by another session"],
        )
        self.assertEqual(
            self.a.command("s SEARCH ALL"), ["* SEARCH 1 2 3", "s OK SEARCH completed"]
        )
        self.assertEqual(
            self.a.command("n NOOP"),
            ["* 2 EXPUNGE", "* 2 RECENT", "n OK NOOP completed"],
        )
        self.assertEqual(
            self.a.command("f FETCH 2 UID"),
            ["* 2 FETCH (UID 3)", "f OK FETCH completed"],
        )

    def test_uidCommandsMayExpunge(self) -> None:
        """UID FETCH may announce an expunge (RFC 3501 7.4.1)."""
        self.b.command("t STORE 1 +FLAGS.SILENT (\\Deleted)")
        self.b.command("x EXPUNGE")
        self.assertEqual(
            self.a.command("f UID FETCH 1:* UID"),
            [
                "* 1 EXPUNGE",
                "* 2 RECENT",
                "* 1 FETCH (UID 2)",
                "* 2 FETCH (UID 3)",
                "f OK FETCH completed",
            ],
        )

    def test_delivery(self) -> None:
        """
        A delivery shows as EXISTS at the next command, recent in the
        session that learns of it first.
        """
        self.world.deliver(ALICE, M1)
        self.assertEqual(
            self.a.command("n NOOP"),
            ["* 4 EXISTS", "* 4 RECENT", "n OK NOOP completed"],
        )
        self.assertEqual(
            self.b.command("n NOOP"), ["* 4 EXISTS", "n OK NOOP completed"]
        )

    def test_persistence(self) -> None:
        """UIDVALIDITY, UIDs and flags are the same in a new session."""
        first = [
            line for line in self.a.command("s SELECT INBOX") if "UIDVALIDITY" in line
        ]
        self.a.command("t STORE 3 +FLAGS.SILENT ($Later)")
        self.a.command("l LOGOUT")
        c = self.selected()
        again = [line for line in c.command("s SELECT INBOX") if "UIDVALIDITY" in line]
        self.assertEqual(first, again)
        self.assertEqual(
            c.command("f FETCH 3 (UID FLAGS)")[0], "* 3 FETCH (UID 3 FLAGS ($Later))"
        )

    def test_mailboxDeleted(self) -> None:
        """When another session deletes the selected folder: BYE."""
        a = self.selected("Trash")
        self.a.command("d DELETE Trash")
        lines = a.command("n NOOP")
        self.assertEqual(lines, ["* BYE Selected mailbox was deleted or renamed"])
        self.assertTrue(a.transport.disconnecting)


class RecentTests(IMAPTestCase):
    """
    \\Recent (RFC 3501 2.3.2): a message is recent in the first
    read-write session to have its folder selected after it arrived, and
    in no other.
    """

    def flags(self, session: Session, numbers: str = "1:*") -> list[str]:
        lines = session.command(f"f FETCH {numbers} FLAGS")
        self.assertEqual(lines[-1], "f OK FETCH completed")
        return lines[:-1]

    def search(self, session: Session, query: str) -> str:
        lines = session.command(f"s {query}")
        self.assertEqual(lines[-1], "s OK SEARCH completed", lines)
        return lines[0][len("* SEARCH") :].strip()

    def test_firstSelectOnly(self) -> None:
        """
        The first SELECT reports the new messages as RECENT and shows them
        \\Recent; a session selecting after it gets none, while the first
        keeps them until it selects again.
        """
        self.fill(M1, M2)
        a = self.login()
        self.assertIn("* 2 RECENT", a.command("s SELECT INBOX"))
        b = self.login()
        self.assertIn("* 0 RECENT", b.command("s SELECT INBOX"))
        recent = ["* 1 FETCH (FLAGS (\\Recent))", "* 2 FETCH (FLAGS (\\Recent))"]
        self.assertEqual(self.flags(a), recent)
        self.assertEqual(
            self.flags(b), ["* 1 FETCH (FLAGS ())", "* 2 FETCH (FLAGS ())"]
        )
        self.assertEqual(self.rows()[0].flags, frozenset())
        self.assertIn("* 0 RECENT", a.command("s SELECT INBOX"))
        self.assertEqual(self.flags(a, "1"), ["* 1 FETCH (FLAGS ())"])

    def test_examineClaimsNothing(self) -> None:
        """
        EXAMINE shows unclaimed messages as RECENT and \\Recent without
        claiming them: the next SELECT still gets them, and an EXAMINE
        after that sees none.
        """
        self.fill(M1, M2)
        e = self.login()
        self.assertIn("* 2 RECENT", e.command("e EXAMINE INBOX"))
        self.assertEqual(self.flags(e, "2"), ["* 2 FETCH (FLAGS (\\Recent))"])
        s = self.login()
        self.assertIn("* 2 RECENT", s.command("s SELECT INBOX"))
        again = self.login()
        self.assertIn("* 0 RECENT", again.command("e EXAMINE INBOX"))
        self.assertEqual(self.flags(again, "2"), ["* 2 FETCH (FLAGS ())"])

    def test_newMessages(self) -> None:
        """
        A message delivered while a read-write session has the folder
        selected is announced there with EXISTS and RECENT and is
        \\Recent there alone; a read-only session shows it as recent only
        if it looked before the read-write session claimed it.
        """
        self.fill(M1)
        a = self.selected()
        e = self.login()
        self.assertIn("* 0 RECENT", e.command("e EXAMINE INBOX"))
        self.world.deliver(ALICE, M2)
        self.assertEqual(
            e.command("n NOOP"), ["* 2 EXISTS", "* 1 RECENT", "n OK NOOP completed"]
        )
        self.assertEqual(
            a.command("n NOOP"), ["* 2 EXISTS", "* 2 RECENT", "n OK NOOP completed"]
        )
        self.world.deliver(ALICE, M3)
        self.assertEqual(
            a.command("n NOOP"), ["* 3 EXISTS", "* 3 RECENT", "n OK NOOP completed"]
        )
        self.assertEqual(e.command("n NOOP"), ["* 3 EXISTS", "n OK NOOP completed"])
        b = self.selected()
        self.assertEqual(self.flags(b, "3"), ["* 3 FETCH (FLAGS ())"])
        self.assertEqual(
            self.flags(a, "2:3"),
            ["* 2 FETCH (FLAGS (\\Recent))", "* 3 FETCH (FLAGS (\\Recent))"],
        )
        self.assertEqual(
            self.flags(e, "2:3"),
            ["* 2 FETCH (FLAGS (\\Recent))", "* 3 FETCH (FLAGS ())"],
        )

    def test_search(self) -> None:
        """
        SEARCH RECENT, NEW (recent and unseen) and OLD follow the
        session's \\Recent, also combined with keys that read headers.
        """
        self.fill(M1, M2)
        self.selected()
        self.fill(M3, M1)
        self.successResultOf(
            self.world.store.mail.setFlags(
                ALICE, INBOX, [3], frozenset({"\\Seen"}), "add"
            )
        )
        session = self.selected()
        self.assertEqual(self.search(session, "SEARCH RECENT"), "3 4")
        self.assertEqual(self.search(session, "SEARCH NEW"), "4")
        self.assertEqual(self.search(session, "SEARCH OLD"), "1 2")
        self.assertEqual(self.search(session, "SEARCH NOT RECENT"), "1 2")
        self.assertEqual(self.search(session, "SEARCH OR NEW SEEN"), "3 4")
        self.assertEqual(self.search(session, "UID SEARCH RECENT"), "3 4")
        self.assertEqual(self.search(session, "SEARCH RECENT SUBJECT one"), "4")
        self.assertEqual(self.search(session, "SEARCH OLD SUBJECT one"), "1")

    def test_storeIgnoresRecent(self) -> None:
        """
        STORE accepts \\Recent and ignores it: it is not stored, not
        added to a message without it, not removed from one with it, and
        FLAGS replacing the others keeps it.
        """
        self.fill(M1)
        self.selected()
        self.fill(M2)
        session = self.selected()
        self.assertEqual(
            session.command("t STORE 1 +FLAGS (\\Recent)"),
            ["* 1 FETCH (FLAGS ())", "t OK STORE completed"],
        )
        self.assertEqual(
            session.command("t STORE 2 -FLAGS \\Recent"),
            ["* 2 FETCH (FLAGS (\\Recent))", "t OK STORE completed"],
        )
        self.assertEqual(
            session.command("t STORE 2 FLAGS (\\Seen \\RECENT)"),
            ["* 2 FETCH (FLAGS (\\Recent \\Seen))", "t OK STORE completed"],
        )
        self.assertEqual(
            session.command("t UID STORE 1:2 FLAGS ()"),
            [
                "* 1 FETCH (FLAGS () UID 1)",
                "* 2 FETCH (FLAGS (\\Recent) UID 2)",
                "t OK STORE completed",
            ],
        )
        self.assertEqual([row.flags for row in self.rows()], [frozenset()] * 2)
        self.assertEqual(self.search(session, "SEARCH RECENT"), "2")

    def test_status(self) -> None:
        """
        STATUS RECENT counts what no SELECT has claimed; STATUS and
        EXAMINE claim nothing, SELECT does.
        """
        self.fill(M1, M2)
        session = self.login()
        query = "t STATUS INBOX (RECENT)"
        self.assertEqual(session.command(query)[0], '* STATUS "INBOX" (RECENT 2)')
        self.assertEqual(session.command(query)[0], '* STATUS "INBOX" (RECENT 2)')
        self.login().command("e EXAMINE INBOX")
        self.assertEqual(session.command(query)[0], '* STATUS "INBOX" (RECENT 2)')
        self.selected()
        self.assertEqual(session.command(query)[0], '* STATUS "INBOX" (RECENT 0)')
        self.fill(M3)
        self.assertEqual(session.command(query)[0], '* STATUS "INBOX" (RECENT 1)')

    def test_copyMoveAppendArriveRecent(self) -> None:
        """
        Messages copied, moved or appended into a folder are recent for
        the next session to select it; copied into the selected folder,
        they are recent in the session itself.
        """
        self.fill(M1, M2, M3)
        session = self.selected()
        session.command("c CREATE Archive")
        session.command("c COPY 1 Archive")
        session.command("m MOVE 2 Archive")
        session.send(b"p APPEND Archive {%d+}\r\n%s\r\n" % (len(M3), M3))
        self.assertEqual(
            session.command("t STATUS Archive (MESSAGES RECENT)")[0],
            '* STATUS "Archive" (MESSAGES 3 RECENT 3)',
        )
        other = self.login()
        self.assertIn("* 3 RECENT", other.command("s SELECT Archive"))
        validity = self.folders()[INBOX].uidValidity
        self.assertEqual(
            session.command("c COPY 1 INBOX"),
            [
                "* 3 EXISTS",
                "* 3 RECENT",
                f"c OK [COPYUID {validity} 1 4] COPY completed",
            ],
        )
        self.assertEqual(self.flags(session, "3"), ["* 3 FETCH (FLAGS (\\Recent))"])

    def test_pop3ClaimsNothing(self) -> None:
        """Reading mail over POP3 leaves it recent for IMAP."""
        self.fill(M1)
        pop = self.world.connect(self.world.pop3Factory(), peer="127.0.0.1")
        pop.read()
        pop.command(f"USER {ALICE}")
        pop.command(f"PASS {PASSWORD}")
        self.assertEqual(pop.command("RETR 1")[0][:3], "+OK")
        pop.command("QUIT")
        self.assertIn("* 1 RECENT", self.login().command("s SELECT INBOX"))


class IdleTests(IMAPTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.fill(M1)
        self.session = self.selected()

    def test_idle(self) -> None:
        """
        During IDLE deliveries (recent in this session), flag changes and
        expunges are reported at once; DONE ends it.
        """
        self.assertEqual(self.session.command("i IDLE"), ["+ idling"])
        self.world.deliver(ALICE, M3)
        self.assertEqual(self.session.lines(), ["* 2 EXISTS", "* 2 RECENT"])
        other = self.selected()
        other.command("t STORE 1 +FLAGS.SILENT (\\Flagged)")
        self.assertEqual(
            self.session.lines(), ["* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"]
        )
        other.command("t STORE 1 +FLAGS.SILENT (\\Deleted)")
        other.command("x EXPUNGE")
        self.assertEqual(
            self.session.lines(),
            [
                "* 1 FETCH (UID 1 FLAGS (\\Deleted \\Flagged \\Recent))",
                "* 1 EXPUNGE",
                "* 1 RECENT",
            ],
        )
        self.assertEqual(self.session.command("DONE"), ["i OK IDLE terminated"])
        self.assertEqual(
            self.session.command("f FETCH 1 UID"),
            ["* 1 FETCH (UID 2)", "f OK FETCH completed"],
        )

    def test_keepalive(self) -> None:
        """IDLE sends '* OK Still here' every two minutes."""
        self.session.command("i IDLE")
        self.world.clock.advance(120)
        self.assertEqual(self.session.lines(), ["* OK Still here"])
        self.world.clock.advance(120)
        self.assertEqual(self.session.lines(), ["* OK Still here"])
        self.session.command("DONE")
        self.world.clock.advance(120)
        self.assertEqual(self.session.lines(), [])

    def test_notDone(self) -> None:
        """Anything but DONE ends IDLE with BAD; the session goes on."""
        self.session.command("i IDLE")
        self.assertEqual(
            self.session.command("n NOOP"), ["i BAD Expected DONE to end IDLE"]
        )
        self.assertEqual(self.session.command("n NOOP"), ["n OK NOOP completed"])

    def test_idleAuthenticated(self) -> None:
        """IDLE works without a selected mailbox."""
        session = self.login()
        self.assertEqual(session.command("i IDLE"), ["+ idling"])
        self.world.deliver(ALICE, M3)
        self.assertEqual(session.command("DONE"), ["i OK IDLE terminated"])

    def test_idleTimeout(self) -> None:
        """IDLE does not outlive the idle timeout."""
        self.session.command("i IDLE")
        self.world.clock.advance(1801)
        self.assertIn("* BYE Autologout; idle for too long", self.session.lines())


class _CountingFile:
    def __init__(self, data: bytes, counter: list[int]) -> None:
        self._file = io.BytesIO(data)
        self._counter = counter

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._counter[0] += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self._file.readline(size)
        self._counter[0] += len(data)
        return data

    def seek(self, offset: int) -> int:
        return self._file.seek(offset)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> _CountingFile:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


class CountingStore:
    """A mail store that records which message bodies are opened and read."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.batches: list[int] = []
        self.bytesRead = [0]
        #: At each call, how many bodies handed out before are still alive.
        self.alive: list[int] = []
        self._handed: list[weakref.ref[MessageBody]] = []

    def openMessages(self, owner: str, name: str, uids: Any) -> Any:
        self.batches.append(len(uids))
        self.alive.append(sum(1 for ref in self._handed if ref() is not None))

        def wrap(bodies: Any) -> Any:
            wrapped = {
                uid: MessageBody(
                    body.size,
                    lambda body=body: _CountingFile(body.open().read(), self.bytesRead),
                )
                for uid, body in bodies.items()
            }
            self._handed += [weakref.ref(body) for body in wrapped.values()]
            return wrapped

        return self.real.openMessages(owner, name, uids).addCallback(wrap)

    def openMessage(self, owner: str, name: str, uid: int) -> Any:
        raise AssertionError("messages are opened in batches")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class LargeMailboxTests(IMAPTestCase):
    """10,000 messages: index data never opens a file, SEARCH reads headers."""

    COUNT = 10000

    def setUp(self) -> None:
        super().setUp()
        mail = self.world.store.mail
        folder = mail._get(ALICE, INBOX)
        for i in range(self.COUNT):
            subject = b"needle" if i % 1000 == 7 else b"hay %d" % i
            data = b"Subject: " + subject + b"\r\n\r\n" + b"body text\r\n" * 50
            folder.add(data, frozenset(), float(i))
        self.store = CountingStore(mail)
        session = self.connect(store=self.store)
        self.session = self.selected(session=session)

    def test_fetchFlagsUID(self) -> None:
        """FETCH 1:* (FLAGS UID) answers every message without opening one."""
        lines = self.session.command("f FETCH 1:* (FLAGS UID)")
        self.assertEqual(len(lines), self.COUNT + 1)
        self.assertEqual(
            lines[-2], f"* {self.COUNT} FETCH (FLAGS (\\Recent) UID {self.COUNT})"
        )
        self.assertEqual(self.store.batches, [])

    def test_searchHeaders(self) -> None:
        """
        SEARCH SUBJECT reads header sections only, a batch at a time.
        """
        lines = self.session.command("s SEARCH SUBJECT needle")
        self.assertEqual(
            lines[0],
            "* SEARCH " + " ".join(str(i + 1) for i in range(7, self.COUNT, 1000)),
        )
        self.assertEqual(sum(self.store.batches), self.COUNT)
        self.assertLessEqual(max(self.store.batches), 500)

    def test_searchKeepsNoBodies(self) -> None:
        """
        SEARCH lets go of a batch's message bodies before it opens the
        next (a body may hold its message's bytes): what it keeps of a
        match is its number.
        """
        lines = self.session.command("s SEARCH BODY text")
        self.assertEqual(len(lines[0].split()), 2 + self.COUNT)
        self.assertGreater(len(self.store.batches), 10)
        self.assertEqual(max(self.store.alive), 0)

    def test_searchReadsHeadersOnly(self) -> None:
        """A header search reads little beyond each header section."""
        big = b"Subject: big\r\n\r\n" + b"x" * 100000
        for _ in range(3):
            self.world.deliver(ALICE, big)
        self.session.command("n NOOP")
        self.session.command(f"s SEARCH {self.COUNT + 1}:* SUBJECT big")
        self.assertLessEqual(self.store.bytesRead[0], 3 * 4096)
        self.session.command(f"s SEARCH {self.COUNT + 1}:* BODY nothing")
        self.assertGreater(self.store.bytesRead[0], 3 * 100000)

    def test_fetchBodiesInBatches(self) -> None:
        """FETCH of bodies opens messages in bounded batches."""
        lines = self.session.command("f FETCH 1:200 BODY.PEEK[]")
        self.assertEqual(lines[-1], "f OK FETCH completed")
        self.assertEqual(sum(self.store.batches), 200)
        self.assertLessEqual(max(self.store.batches), 64)


class _VanishingStore:
    """
    A mail store whose message files vanish after lookup: C{openMessages}
    still finds the messages in C{gone}, but opening their files fails as
    when another session's EXPUNGE removed them in between.
    """

    def __init__(self, real: Any) -> None:
        self.real = real
        self.gone: set[int] = set()

    def openMessages(self, owner: str, name: str, uids: Any) -> Any:
        def vanish() -> Any:
            raise FileNotFoundError(2, "No such file or directory")

        def wrap(bodies: Any) -> Any:
            return {
                uid: MessageBody(body.size, vanish) if uid in self.gone else body
                for uid, body in bodies.items()
            }

        return self.real.openMessages(owner, name, uids).addCallback(wrap)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class ExpungeRaceTests(IMAPTestCase):
    """
    A FETCH racing another session's EXPUNGE (the file removed between
    lookup and open) answers the other messages and says EXPUNGEISSUED
    (RFC 2180 4.1.2, RFC 5530), never SERVERBUG or a logged traceback.
    """

    def setUp(self) -> None:
        super().setUp()
        self.fill(M1, M2, M3)
        self.store = _VanishingStore(self.world.store.mail)
        self.session = self.selected(session=self.connect(store=self.store))
        self.events = EventLoggingObserver()
        globalLogPublisher.addObserver(self.events)
        self.addCleanup(globalLogPublisher.removeObserver, self.events)

    def test_bodyGoneMeanwhile(self) -> None:
        """
        The rest of the FETCH answers; the vanished message gets only its
        index items; the tagged reply is NO [EXPUNGEISSUED]; nothing is
        logged as a failure.
        """
        self.store.gone.add(2)
        lines = self.session.command(
            "f FETCH 1:3 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
        )
        self.assertEqual(
            lines,
            [
                "* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {16}",
                "Subject: one",
                "",
                ")",
                "* 2 FETCH (UID 2)",
                "* 3 FETCH (UID 3 BODY[HEADER.FIELDS (SUBJECT)] {18}",
                "Subject: three",
                "",
                ")",
                "f NO [EXPUNGEISSUED] Some messages were expunged by another session",
            ],
        )
        self.assertEqual([e for e in self.events if e.get("log_failure")], [])

    def test_onlyContentAsked(self) -> None:
        """Asked for content only, the vanished message is left out."""
        self.store.gone.add(1)
        lines = self.session.command("f FETCH 1:2 RFC822.SIZE")
        self.assertEqual(lines[-1], "f OK FETCH completed")
        lines = self.session.command("f FETCH 1 BODY.PEEK[TEXT]")
        self.assertEqual(
            lines,
            ["f NO [EXPUNGEISSUED] Some messages were expunged by another session"],
        )
        self.assertEqual([e for e in self.events if e.get("log_failure")], [])

    def test_streamedAfterUnlink(self) -> None:
        """
        A large body is opened once while rendering, so unlinking its
        file before it is streamed changes nothing: the literal is
        complete.
        """
        path = self.mktemp()
        data = b"Subject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n"
        with open(path, "wb") as f:
            f.write(data)
        info = attrs.evolve(self.rows()[0], size=len(data))
        item = fetching.FetchItem("BODY[]", fetching.Section(), peek=True)
        pieces, gone = fetching.renderMessage(
            1,
            info,
            MessageBody(len(data), lambda: open(path, "rb")),
            [item],
            frozenset(),
            False,
            1024,
        )
        self.assertFalse(gone)
        os.unlink(path)
        [marker, content, end] = pieces
        assert isinstance(content, fetching.Range)
        self.assertEqual(fetching.readRange(content.file, 0, len(data)), data)
        fetching.closeFiles(pieces)
        self.assertTrue(content.file.closed)


class KeywordAnnouncementTests(IMAPTestCase):
    """
    A keyword is never reported in FLAGS before a FLAGS response
    announced it (RFC 3501 7.2.6).
    """

    def setUp(self) -> None:
        super().setUp()
        self.fill(M1, M2)
        self.a = self.selected()
        self.b = self.selected()

    def test_otherSessionsKeyword(self) -> None:
        """
        Another session sets C{$Label3}: before the FETCH responses that
        report it (the catch-up, then the answer), new FLAGS and
        PERMANENTFLAGS responses list it; once only.
        """
        self.b.command("t STORE 1 +FLAGS.SILENT ($Label3)")
        lines = self.a.command("f FETCH 1:2 (UID FLAGS)")
        self.assertEqual(
            lines,
            [
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label3)",
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen"
                " \\Draft $Label3 \\*)] Flags permitted",
                "* 1 FETCH (UID 1 FLAGS ($Label3 \\Recent))",
                "* 1 FETCH (UID 1 FLAGS ($Label3 \\Recent))",
                "* 2 FETCH (UID 2 FLAGS (\\Recent))",
                "f OK FETCH completed",
            ],
        )
        self.assertEqual(
            self.a.command("f FETCH 1 FLAGS"),
            ["* 1 FETCH (FLAGS ($Label3 \\Recent))", "f OK FETCH completed"],
        )

    def test_announcedBeforeUnsolicitedFetch(self) -> None:
        """NOOP's unsolicited FETCH FLAGS is preceded by the FLAGS update."""
        self.b.command("t STORE 2 +FLAGS.SILENT (work)")
        lines = self.a.command("n NOOP")
        self.assertEqual(
            lines[0], "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft work)"
        )
        self.assertTrue(lines[1].startswith("* OK [PERMANENTFLAGS ("), lines)
        self.assertEqual(
            lines[2:],
            ["* 2 FETCH (UID 2 FLAGS (\\Recent work))", "n OK NOOP completed"],
        )

    def test_ownStore(self) -> None:
        """The session's own STORE announces a new keyword before its FETCH."""
        lines = self.b.command("t STORE 1 +FLAGS ($Label3)")
        self.assertTrue(lines[0].startswith("* FLAGS ("), lines)
        self.assertIn("$Label3", lines[0])
        self.assertEqual(
            lines[2:], ["* 1 FETCH (FLAGS ($Label3))", "t OK STORE completed"]
        )
        # Known from SELECT on: no new FLAGS response.
        self.assertEqual(
            self.selected(session=self.connect()).command("f FETCH 1 FLAGS"),
            ["* 1 FETCH (FLAGS ($Label3))", "f OK FETCH completed"],
        )
