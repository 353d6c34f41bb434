"""
The webmail API over real loopback sockets, SQLite and the reactor's
thread pool, driven by curl as the README shows: JSON login with a cookie
jar, a multipart upload with a file, reading, downloading, and the mail
arriving where POP3 serves it; folders made and renamed through the API
as an imaplib session lists them, and the other way round.
"""

from __future__ import annotations

import imaplib
import json
import os
import poplib
from collections.abc import Callable
from typing import Any

import twisted.mail.imap4  # noqa: F401 (registers the imap4-utf-7 codec)
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from appnet.web.testing import RunningWeb, startWeb
from tests.web.helpers import runCommand

ALICE = "alice@example.org"
BOB = "bob@example.org"
PASSWORDS = {ALICE: "pw-alice-123", BOB: "pw-bob-1234"}

MENU = "".join(f"{i}. crêpe number {i}\n" for i in range(2000)).encode()


class CurlTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:
        self.web: RunningWeb = await startWeb(
            self, users=PASSWORDS, builders=["appnet.mail.server:buildMail"]
        )
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    async def curl(self, *args: str) -> str:
        outcome = await runCommand(
            ["curl", "-sS", "--fail-with-body", *args], cwd=self.dir
        )
        self.assertEqual(outcome.code, 0, (outcome.out, outcome.err))
        return str(outcome.out)

    async def login(self, account: str) -> tuple[str, str]:
        """Log in with curl; the cookie jar's path and the CSRF token."""
        jar = os.path.join(self.dir, account + ".jar")
        out = await self.curl(
            "-c",
            jar,
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps({"username": account, "password": PASSWORDS[account]}),
            self.web.url("/api/v1/login"),
        )
        token = json.loads(out)["csrfToken"]
        return jar, token

    async def api(self, jar: str, path: str, *args: str) -> Any:
        return json.loads(await self.curl("-b", jar, *args, self.web.url(path)))

    async def test_sendReadDownload(self) -> None:
        """
        curl sends a message with a file (-F), the recipient lists and
        reads it, downloads the file under the name the server gives
        (-OJ) byte for byte, and POP3 serves the same message.
        """
        jar, token = await self.login(ALICE)
        menu = os.path.join(self.dir, "menü.txt")
        with open(menu, "wb") as f:
            f.write(MENU)
        sent = await self.api(
            jar,
            "/api/v1/send",
            "-H",
            f"X-CSRF-Token: {token}",
            "-F",
            f"to=Bob <{BOB}>",
            "-F",
            "subject=Menu",
            "-F",
            "text=The menu is attached.",
            "-F",
            f"attachment=@{menu};type=text/plain",
        )
        self.assertEqual((sent["delivered"], sent["sent"]["folder"]), ([BOB], "Sent"))

        bobJar, _ = await self.login(BOB)
        listing = await self.api(bobJar, "/api/v1/messages?folder=INBOX&limit=10")
        [entry] = listing["messages"]
        self.assertEqual((entry["subject"], entry["attachments"]), ("Menu", True))
        message = await self.api(bobJar, f"/api/v1/message?uid={entry['uid']}")
        self.assertEqual(message["text"], "The menu is attached.\n")
        [attachment] = message["attachments"]
        self.assertEqual(attachment["filename"], "menü.txt")
        downloads = os.path.join(self.dir, "downloads")
        os.makedirs(downloads)
        await self.curl(
            "-b",
            bobJar,
            "--output-dir",
            downloads,
            "-OJ",
            self.web.url(attachment["url"]),
        )
        # curl -J reads only the ASCII fallback name (browsers read the
        # UTF-8 filename* beside it).
        self.assertEqual(os.listdir(downloads), ["men_.txt"])
        with open(os.path.join(downloads, "men_.txt"), "rb") as f:
            self.assertEqual(f.read(), MENU)

        raw = await self.curl("-b", bobJar, self.web.url(message["raw"]))
        host, port = self.web.stack.address("pop3")

        def pop() -> bytes:
            client = poplib.POP3(host, port, timeout=10)
            try:
                client.user(BOB)
                client.pass_(PASSWORDS[BOB])
                _, lines, _ = client.retr(1)
                return b"\r\n".join(lines) + b"\r\n"
            finally:
                client.quit()

        self.assertEqual(await deferToThread(pop), raw.encode("utf-8"))

    async def test_withoutToken(self) -> None:
        """curl without the CSRF header is refused (403) and nothing is sent."""
        jar, _ = await self.login(ALICE)
        outcome = await runCommand(
            [
                "curl",
                "-sS",
                "-b",
                jar,
                "-w",
                "%{http_code}",
                "-H",
                "Content-Type: application/json",
                "-d",
                json.dumps({"to": BOB, "text": "x"}),
                self.web.url("/api/v1/send"),
            ]
        )
        self.assertTrue(outcome.out.endswith("403"), outcome.out)
        self.assertEqual(await self.web.stack.store.mail.listMessages(BOB), [])

    async def imap(self, work: Callable[[imaplib.IMAP4], Any]) -> Any:
        """Run C{work(client)} in a thread on a logged-in imaplib session."""
        host, port = self.web.stack.address("imap")

        def run() -> Any:
            client = imaplib.IMAP4(host, port, timeout=10)
            try:
                client.login(ALICE, PASSWORDS[ALICE])
                return work(client)
            finally:
                client.logout()

        return await deferToThread(run)

    async def test_foldersSharedWithIMAP(self) -> None:
        """
        A folder curl makes through the API is in an imaplib session's
        LIST (its name in modified UTF-7); one imaplib makes is in the
        API's list; a rename through the API is what IMAP lists next.
        """
        jar, token = await self.login(ALICE)
        headers = (
            "-H",
            f"X-CSRF-Token: {token}",
            "-H",
            "Content-Type: application/json",
        )
        made = await self.api(
            jar, "/api/v1/folders", *headers, "-d", json.dumps({"name": "Pläne/Q1"})
        )
        self.assertEqual(made["folder"]["name"], "Pläne/Q1")
        wire = "Pläne/Q1".encode("imap4-utf-7")

        def listAndCreate(client: imaplib.IMAP4) -> list[Any]:
            _, lines = client.list('""', "*")
            client.create("FromIMAP")
            return lines

        lines = await self.imap(listAndCreate)
        self.assertIn(b'(\\HasNoChildren) "/" "' + wire + b'"', lines)
        folders = await self.api(jar, "/api/v1/folders")
        self.assertIn("FromIMAP", [f["name"] for f in folders["folders"]])

        await self.api(
            jar,
            "/api/v1/folders/FromIMAP",
            *headers,
            "-X",
            "PATCH",
            "-d",
            json.dumps({"name": "Pläne/Renamed"}),
        )

        def listAll(client: imaplib.IMAP4) -> list[Any]:
            _, lines = client.list('""', "*")
            return lines

        names = [line.rsplit(b" ", 1)[1] for line in await self.imap(listAll)]
        self.assertIn(b'"' + "Pläne/Renamed".encode("imap4-utf-7") + b'"', names)
        self.assertNotIn(b'"FromIMAP"', names)
