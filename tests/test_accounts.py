"""
Integration tests for shared accounts: one account in the user store logs
into SMTP submission, FTP, POP3 and IMAP with the same password, and
C{appnet user passwd} changes it for all of them at once.

Real sockets on 127.0.0.1 and ephemeral ports; the blocking standard
library clients (smtplib, ftplib, poplib, imaplib) run in threads, the
C{appnet} command as a real process on the running stack's data directory.
"""

from __future__ import annotations

import ftplib
import imaplib
import io
import poplib
import smtplib
from collections.abc import Callable
from email.message import EmailMessage

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from appnet.testing import RunningStack, startStack
from tests.process import run

ALICE = "alice@example.org"
FIRST = "first-password-1"
SECOND = "second-password-2"


def _smtp(host: str, port: int, user: str, password: str) -> None:
    """AUTH on the submission port, then send one message to the user."""
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.login(user, password)
        message = EmailMessage()
        message["From"] = user
        message["To"] = user
        message["Subject"] = "to myself"
        message.set_content("sent with the shared password\n")
        client.send_message(message)


def _ftp(host: str, port: int, user: str, password: str) -> None:
    """Log in to FTP and store a file in the home."""
    with ftplib.FTP(timeout=30) as client:
        client.connect(host, port)
        client.login(user, password)
        client.storbinary("STOR note.txt", io.BytesIO(b"shared account\n"))


def _pop3(host: str, port: int, user: str, password: str) -> int:
    """Log in to POP3; return the number of messages in the maildrop."""
    client = poplib.POP3(host, port, timeout=30)
    try:
        client.user(user)
        client.pass_(password)
        count, _ = client.stat()
        return count
    finally:
        client.quit()


def _imap(host: str, port: int, user: str, password: str) -> int:
    """Log in to IMAP; return the number of messages in INBOX."""
    client = imaplib.IMAP4(host, port, timeout=30)
    try:
        client.login(user, password)
        typ, data = client.select("INBOX", readonly=True)
        assert typ == "OK", data
        return int(data[0] or b"0")
    finally:
        client.logout()


#: The error each client raises when the server refuses the login.
_REFUSED: dict[str, type[Exception] | tuple[type[Exception], ...]] = {
    "submission": smtplib.SMTPAuthenticationError,
    "ftp": ftplib.error_perm,
    "pop3": poplib.error_proto,
    "imap": imaplib.IMAP4.error,
}

_CLIENTS: dict[str, Callable[[str, int, str, str], object]] = {
    "submission": _smtp,
    "ftp": _ftp,
    "pop3": _pop3,
    "imap": _imap,
}


class SharedAccountTests(TestCase):
    """
    One account, one password, every protocol (DESIGN: "users are
    shared").
    """

    timeout = 120

    async def startStack(self) -> RunningStack:
        # No delay after a failed login: this test fails some on purpose.
        return await startStack(self, config={"auth": {"failure_delay": "0s"}})

    async def appnet(self, stack: RunningStack, *args: str, password: str) -> None:
        """Run C{appnet ARGS --password-stdin} on the stack's data directory."""
        root = stack.dataDir.root.path
        outcome = await run(
            ["-m", "appnet", *args, "--password-stdin"],
            root,
            env={"APPNET_DATA": root},
            stdin=password.encode() + b"\n",
        )
        self.assertEqual(outcome.code, 0, outcome.err)

    async def login(self, stack: RunningStack, service: str, password: str) -> object:
        host, port = stack.address(service)
        return await deferToThread(_CLIENTS[service], host, port, ALICE, password)

    async def assertRefused(
        self, stack: RunningStack, service: str, password: str
    ) -> None:
        try:
            await self.login(stack, service, password)
        except _REFUSED[service]:
            return
        self.fail(f"{service} accepted the old password")

    async def test_onePasswordEverywhere(self) -> None:
        """
        An account made with C{appnet user add} logs into SMTP submission
        (smtplib AUTH), FTP (ftplib), POP3 (poplib) and IMAP (imaplib) with
        its one password; the message it sends itself through submission
        is in the mailbox POP3 and IMAP read, and its FTP upload is in its
        home. After C{appnet user passwd}, run while the stack is up, the
        old password fails on every protocol and the new one works.
        """
        stack = await self.startStack()
        await self.appnet(stack, "user", "add", ALICE, password=FIRST)

        await self.login(stack, "submission", FIRST)
        await self.login(stack, "ftp", FIRST)
        self.assertEqual(await self.login(stack, "pop3", FIRST), 1)
        self.assertEqual(await self.login(stack, "imap", FIRST), 1)
        home = stack.dataDir.ftp.child(ALICE)
        self.assertEqual(home.child("note.txt").getContent(), b"shared account\n")

        await self.appnet(stack, "user", "passwd", ALICE, password=SECOND)

        # Each refusal is followed by a success, which clears the
        # address's failure count (smtplib alone tries two mechanisms).
        await self.assertRefused(stack, "ftp", FIRST)
        await self.login(stack, "ftp", SECOND)
        await self.assertRefused(stack, "submission", FIRST)
        await self.login(stack, "submission", SECOND)
        await self.assertRefused(stack, "pop3", FIRST)
        self.assertEqual(await self.login(stack, "pop3", SECOND), 2)
        await self.assertRefused(stack, "imap", FIRST)
        self.assertEqual(await self.login(stack, "imap", SECOND), 2)
