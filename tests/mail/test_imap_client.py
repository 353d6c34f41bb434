"""
Tests for appnet's IMAP client (L{appnet.mail.imapclient}), the
C{appnet mail imap} command and the mail fixture's IMAP helpers, against
appnet's own server over 127.0.0.1.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from appnet.mail.client import MailClientError
from appnet.mail.imapclient import IMAPMessage, connectIMAP
from appnet.mail.testing import MailStack, startMail
from appnet.store.interfaces import DeliveryTarget
from tests.mail.sockets import tlsMailStack
from tests.process import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALICE = "alice@example.org"
USERS = {ALICE: "pw-alice-1"}


async def fill(mail: MailStack, count: int = 3) -> None:
    for n in range(1, count + 1):
        staged = mail.store.mail.stage()
        staged.write(
            b"From: Bob <bob@example.org>\r\nSubject: m%d\r\n\r\nbody %d\r\n" % (n, n)
        )
        await mail.store.mail.deliver(staged, [DeliveryTarget(ALICE)])
        staged.discard()


def readCert(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class ClientTests(TestCase):
    async def test_helpers(self) -> None:
        """
        connectIMAP logs in over verified STARTTLS; the session lists
        folders, reports status, searches, summarises, fetches without
        marking read, appends and moves.
        """
        mail, cert = await tlsMailStack(self, USERS)
        await fill(mail)
        host, port = mail.address("imap")
        session = await connectIMAP(
            reactor,
            "localhost",
            port,
            username=ALICE,
            password=USERS[ALICE],
            trustRoot=readCert(cert),
        )
        self.addCleanup(session.logout)
        folders = await session.listFolders()
        self.assertEqual(
            [(f.name, f.attributes) for f in folders][:2],
            [
                ("INBOX", ("\\HasNoChildren",)),
                ("Drafts", ("\\HasNoChildren", "\\Drafts")),
            ],
        )
        status = await session.status("INBOX")
        self.assertEqual((status.messages, status.unseen, status.uidNext), (3, 3, 4))
        self.assertEqual(await session.select("INBOX"), 3)
        self.assertEqual(await session.search("SUBJECT m2"), [2])
        [summary] = await session.summaries([2])
        self.assertEqual(
            (summary.uid, summary.sender, summary.subject, summary.flags),
            (2, "Bob <bob@example.org>", "m2", ("\\Recent",)),
        )
        received: list[IMAPMessage] = []
        self.assertEqual(await session.fetch([1, 3], received.append), [])
        self.assertEqual([m.uid for m in received], [1, 3])
        self.assertTrue(received[1].data.endswith(b"body 3\r\n"))
        self.assertEqual(await session.search("UNSEEN"), [1, 2, 3])
        uid = await session.append("Drafts", b"Subject: d\r\n\r\nd\r\n", ["\\Draft"])
        self.assertEqual(uid, 1)
        await session.move([1, 2], "Trash")
        self.assertEqual(await session.search("ALL"), [3])
        trash = await mail.messages(ALICE, "Trash")
        self.assertEqual([m.message["Subject"] for m in trash], ["m1", "m2"])

    async def test_errors(self) -> None:
        """
        A wrong password, a missing folder, and a server without STARTTLS
        when TLS is required fail with MailClientError.
        """
        mail = await startMail(self, users=USERS)
        host, port = mail.address("imap")
        with self.assertRaises(MailClientError) as caught:
            await connectIMAP(reactor, host, port, username=ALICE, password="nope")
        self.assertIn("does not offer STARTTLS", str(caught.exception))
        with self.assertRaises(MailClientError) as caught:
            await connectIMAP(
                reactor, host, port, username=ALICE, password="nope", tls="auto"
            )
        self.assertIn("[AUTHENTICATIONFAILED]", str(caught.exception))
        session = await mail.imap(ALICE)
        self.addCleanup(session.logout)
        with self.assertRaises(MailClientError) as caught:
            await session.select("Nowhere")
        self.assertIn("[NONEXISTENT]", str(caught.exception))


class FixtureTests(TestCase):
    async def test_imapHelpers(self) -> None:
        """
        The mail fixture gives the IMAP address, a logged-in session, and
        folders and flags as stored.
        """
        mail = await startMail(self, users=USERS)
        await fill(mail, 1)
        host, port = mail.address("imap")
        self.assertEqual(host, "127.0.0.1")
        session = await mail.imap(ALICE)
        await session.select("INBOX")
        await session._client.setFlags("1", ["\\Flagged"], uid=True)
        await session.logout()
        folders = await mail.folders(ALICE)
        self.assertEqual(
            [f.name for f in folders], ["INBOX", "Drafts", "Junk", "Sent", "Trash"]
        )
        [message] = await mail.messages(ALICE)
        self.assertEqual(message.flags, frozenset({"\\Flagged"}))


class CommandTests(TestCase):
    """appnet mail imap, as a real process."""

    timeout = 60

    async def appnet(self, cert: str, *args: str) -> tuple[int | None, str, str]:
        outcome = await run(
            ["-m", "appnet", "mail", "imap", *args, "--user", ALICE,
             "--password-stdin", "--cafile", cert],
            ROOT,
            {"PYTHONPATH": ROOT},
            stdin=USERS[ALICE].encode() + b"\n",
        )  # fmt: skip
        return outcome.code, outcome.out, outcome.err

    async def test_lsFetchMove(self) -> None:
        """
        ls lists folders with counts and a folder's messages; fetch saves
        .eml files or prints one message; move moves by UID.
        """
        mail, cert = await tlsMailStack(self, USERS)
        await fill(mail)
        _, port = mail.address("imap")
        server = f"localhost:{port}"
        code, out, err = await self.appnet(cert, "ls", "--imap", server)
        self.assertEqual(code, 0, err)
        self.assertIn("INBOX\t3 messages, 3 unseen", out)
        self.assertIn("Sent\t0 messages, 0 unseen  \\Sent", out)
        code, out, err = await self.appnet(cert, "ls", "--imap", server, "INBOX")
        self.assertEqual(code, 0, err)
        self.assertIn("\tBob <bob@example.org>\tm2", out)
        self.assertIn("3 messages in INBOX", out)
        work = os.path.abspath(self.mktemp())
        code, out, err = await self.appnet(
            cert, "fetch", "--imap", server, "--search", "SUBJECT m3", "--out", work
        )
        self.assertEqual(code, 0, err)
        [name] = os.listdir(work)
        self.assertRegex(name, r"^INBOX-\d+-3\.eml$")
        code, out, err = await self.appnet(cert, "fetch", "--imap", server, "2")
        self.assertEqual(code, 0, err)
        self.assertEqual(
            out, "From: Bob <bob@example.org>\r\nSubject: m2\r\n\r\nbody 2\r\n"
        )
        code, out, err = await self.appnet(
            cert, "move", "--imap", server, "--to", "Trash", "1", "2"
        )
        self.assertEqual(code, 0, err)
        self.assertIn("2 messages moved from INBOX to Trash", out)
        self.assertEqual(len(await mail.messages(ALICE, "Trash")), 2)
        self.assertEqual((await mail.messages(ALICE))[0].flags, frozenset())

    async def test_failures(self) -> None:
        """A missing folder or several matches exit 1 with one line."""
        mail, cert = await tlsMailStack(self, USERS)
        await fill(mail)
        _, port = mail.address("imap")
        server = f"localhost:{port}"
        code, _, err = await self.appnet(cert, "ls", "--imap", server, "Nowhere")
        self.assertEqual(code, 1)
        self.assertEqual(
            err, "appnet: IMAP: [NONEXISTENT] Mailbox Nowhere does not exist\n"
        )
        code, _, err = await self.appnet(cert, "fetch", "--imap", server)
        self.assertEqual(code, 1)
        self.assertIn("3 messages match", err)
