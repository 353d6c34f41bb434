"""
Tests for the mail catcher (L{appnet.mail.catcher}) and its JSON API
(L{appnet.testapi}), driven by the clients test suites use: smtplib,
Django's and Flask-Mail's SMTP backends, and curl.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import subprocess
from email.message import EmailMessage
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from appnet.config import loadConfig
from appnet.mail.catcher import CATCHER, CatchAuth
from appnet.mail.realm import MailRealm
from appnet.tap import Options
from appnet.testing import start
from tests.interop import need
from tests.mail.sockets import inThread
from tests.process import TWISTD, spawn, stop


def message(subject: str, to: str = "someone@anywhere.test") -> bytes:
    m = EmailMessage()
    m["From"] = "app@myapp.test"
    m["To"] = to
    m["Subject"] = subject
    m.set_content(f"body of {subject}")
    return m.as_bytes()


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need("curl", "curl"), "-s", *args], capture_output=True, text=True, timeout=30
    )


_LISTENING = re.compile(rb"(\w+) listening on tcp 127\.0\.0\.1:(\d+)")


class TwistdCatcherTests(TestCase):
    timeout = 60

    async def test_twistdCatchAll(self) -> None:
        """
        C{twistd -n appnet --catch-all}: curl uploads a message to an
        address of no local domain over smtp://, and the JSON API (read
        with curl) lists it; the queue stays empty.
        """
        need("curl", "curl")
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        ephemeral = "tcp:0:interface=127.0.0.1"
        args = ["-c", TWISTD, "-n", "--pidfile=", "appnet", "--catch-all"]
        args += ["--data", os.path.join(cwd, "data"), "--dns", "127.0.0.1:0"]
        for service in ("smtp", "submission", "http", "pop3", "imap", "ftp"):
            args += [f"--{service}", ephemeral]
        collector, pid = spawn(args, cwd)
        self.addCleanup(stop, collector, pid)
        await collector.waitFor(b"appnet ready")
        ports = {m[0].decode(): int(m[1]) for m in _LISTENING.findall(collector.out)}
        upload = os.path.join(cwd, "mail.eml")
        with open(upload, "wb") as f:
            f.write(message("from curl", "x@nowhere.example"))
        sent = await inThread(
            curl, "--url", f"smtp://127.0.0.1:{ports['smtp']}",
            "--mail-from", "app@myapp.test", "--mail-rcpt", "x@nowhere.example",
            "--upload-file", upload,
        )  # fmt: skip
        self.assertEqual(sent.returncode, 0, sent.stderr)
        base = f"http://127.0.0.1:{ports['http']}/_appnet"
        listed = json.loads((await inThread(curl, f"{base}/messages")).stdout)
        [entry] = listed["messages"]
        self.assertEqual(entry["to"], ["x@nowhere.example"])
        self.assertEqual(entry["subject"], "from curl")


class CatcherTests(TestCase):
    async def catcher(self, *more: str) -> Any:
        return await start(self, "smtp", "submission", "http", *more, catch=True)

    async def test_anyAddressBothPorts(self) -> None:
        """
        Mail to any address, of any domain, is accepted on the MX and the
        submission ports (with any AUTH, or none) and kept, with its
        envelope; nothing is queued for relay.
        """
        s = await self.catcher()

        def sendBoth() -> None:
            with smtplib.SMTP(*s.address("smtp"), timeout=10) as mx:
                mx.sendmail("a@x.test", ["b@y.test", "c@z.test"], message("mx"))
            with smtplib.SMTP(*s.address("submission"), timeout=10) as sub:
                sub.login("whoever", "whatever")
                sub.sendmail("a@x.test", ["d@far.away"], message("sub"))
            with smtplib.SMTP(*s.address("submission"), timeout=10) as sub:
                sub.sendmail("a@x.test", ["e@far.away"], message("noauth"))

        await inThread(sendBoth)
        caught = await s.caught()
        self.assertEqual([c.subject for c in caught], ["mx", "sub", "noauth"])
        self.assertEqual(caught[0].recipients, ("b@y.test", "c@z.test"))
        self.assertEqual(caught[0].sender, "a@x.test")
        self.assertEqual(await s.queued(), [])
        self.assertEqual(await s.caught(to="d@far"), [caught[1]])

    async def test_django(self) -> None:
        """Django's SMTP e-mail backend delivers into the catcher."""
        from django.conf import settings

        if not settings.configured:
            settings.configure()
        from django.core.mail import EmailMessage as DjangoMessage
        from django.core.mail.backends.smtp import EmailBackend

        s = await self.catcher()
        host, port = s.address("submission")

        def sendIt() -> int:
            backend = EmailBackend(
                host=host, port=port, username="u", password="p", timeout=10
            )
            mail = DjangoMessage(
                "Welcome", "Hi from Django", "app@myapp.test", ["new@user.test"],
                bcc=["audit@myapp.test"],
            )  # fmt: skip
            return backend.send_messages([mail])

        self.assertEqual(await inThread(sendIt), 1)
        [caught] = await s.caught(subject="welcome")
        self.assertEqual(caught.recipients, ("new@user.test", "audit@myapp.test"))
        self.assertEqual(caught.text().strip(), "Hi from Django")

    async def test_flaskMail(self) -> None:
        """Flask-Mail delivers into the catcher."""
        from flask import Flask
        from flask_mail import Mail, Message

        s = await self.catcher()
        host, port = s.address("smtp")
        app = Flask("catcher-test")
        app.config.update(
            MAIL_SERVER=host, MAIL_PORT=port, MAIL_DEFAULT_SENDER="app@myapp.test"
        )
        mail = Mail(app)

        def sendIt() -> None:
            with app.app_context():
                mail.send(
                    Message("Reset", recipients=["u@user.test"], body="reset link")
                )

        await inThread(sendIt)
        [caught] = await s.caught(text="reset link")
        self.assertEqual(caught.subject, "Reset")

    async def test_jsonAPI(self) -> None:
        """
        curl lists, searches, reads, fetches raw, and deletes caught
        messages over the JSON API; the HTML page shows them all.
        """
        s = await self.catcher()
        smtp = s.address("smtp")

        def sendTwo() -> None:
            with smtplib.SMTP(*smtp, timeout=10) as mx:
                mx.sendmail("a@x.test", ["b@y.test"], message("first", "b@y.test"))
                mx.sendmail("a@x.test", ["c@y.test"], message("second", "c@y.test"))

        await inThread(sendTwo)
        listed = json.loads((await inThread(curl, s.url("/_appnet/messages"))).stdout)
        self.assertEqual(
            [m["subject"] for m in listed["messages"]], ["first", "second"]
        )
        found = await inThread(curl, s.url("/_appnet/messages?to=c@y&subject=sec"))
        [entry] = json.loads(found.stdout)["messages"]
        detail = json.loads(
            (await inThread(curl, s.url(f"/_appnet/messages/{entry['id']}"))).stdout
        )
        self.assertEqual(detail["text"].strip(), "body of second")
        raw = await inThread(curl, s.url(f"/_appnet/messages/{entry['id']}/raw"))
        self.assertIn("Subject: second", raw.stdout)
        page = await inThread(curl, s.url("/_appnet/"))
        self.assertIn("first", page.stdout)
        self.assertIn("second", page.stdout)
        view = await inThread(curl, s.url(f"/_appnet/messages/{entry['id']}/view"))
        self.assertIn("<pre>body of second", view.stdout)
        await inThread(curl, "-X", "DELETE", s.url(f"/_appnet/messages/{entry['id']}"))
        self.assertEqual([c.subject for c in await s.caught()], ["first"])
        gone = await inThread(
            curl, "-o", "/dev/null", "-w", "%{http_code}",
            s.url(f"/_appnet/messages/{entry['id']}"),
        )  # fmt: skip
        self.assertEqual(gone.stdout, "404")
        await inThread(curl, "-X", "DELETE", s.url("/_appnet/messages"))
        self.assertEqual(await s.caught(), [])

    async def test_webmail(self) -> None:
        """
        The catcher page's "Open in webmail" (POST /_appnet/webmail) logs
        the browser into webmail on the caught mail: the webmail API then
        lists every caught message, whatever its recipients.
        """
        s = await self.catcher()

        def sendTwo() -> None:
            with smtplib.SMTP(*s.address("smtp"), timeout=10) as mx:
                mx.sendmail("a@x.test", ["b@y.test"], message("one", "b@y.test"))
                mx.sendmail("a@x.test", ["c@z.test"], message("two", "c@z.test"))

        await inThread(sendTwo)
        jar = os.path.join(os.path.abspath(self.mktemp()) + ".cookies")
        opened = await inThread(
            curl, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
            "-c", jar, "-X", "POST", s.url("/_appnet/webmail"),
        )  # fmt: skip
        self.assertEqual(opened.stdout, f"303 {s.url('/mail/')}")
        listed = await inThread(curl, "-b", jar, s.url("/api/v1/messages?folder=INBOX"))
        found = json.loads(listed.stdout)
        self.assertEqual(found["total"], 2)
        self.assertEqual(
            sorted(m["subject"] for m in found["messages"]), ["one", "two"]
        )

    async def test_longPoll(self) -> None:
        """
        GET /_appnet/wait answers when the next matching message arrives
        (not before, and not for one that does not match); with nothing
        matching it answers 408 after the timeout.
        """
        s = await self.catcher()
        waiting = inThread(curl, s.url("/_appnet/wait?to=wanted@&timeout=20"))

        def sendTwo() -> None:
            with smtplib.SMTP(*s.address("smtp"), timeout=10) as mx:
                mx.sendmail("a@x.test", ["other@y.test"], message("no"))
                mx.sendmail("a@x.test", ["wanted@y.test"], message("yes"))

        # curl's request may reach the server after a pair was delivered
        # (a wait answers only mail arriving after it began): send pairs
        # until it answers, never more than a few.
        for _ in range(20):
            await inThread(sendTwo)
            if waiting.called:
                break
        answer = json.loads((await waiting).stdout)
        self.assertEqual(answer["subject"], "yes")
        timedOut = await inThread(
            curl, "-o", "/dev/null", "-w", "%{http_code}",
            s.url("/_appnet/wait?subject=never&timeout=0.2"),
        )  # fmt: skip
        self.assertEqual(timedOut.stdout, "408")

    async def test_release(self) -> None:
        """
        A caught message is released to a real SMTP server: it arrives
        there, as sent, for its envelope recipients.
        """
        s = await self.catcher()
        real = await start(self, "smtp", users={"bob@example.org": "bob-secret"})

        def sendIt() -> None:
            with smtplib.SMTP(*s.address("smtp"), timeout=10) as mx:
                mx.sendmail("a@x.test", ["bob@example.org"], message("release"))

        await inThread(sendIt)
        [caught] = await s.caught()
        host, port = real.address("smtp")
        body = json.dumps({"host": host, "port": port, "tls": "none"})
        done = await inThread(
            curl, "-H", "Content-Type: application/json", "-d", body,
            s.url(f"/_appnet/messages/{caught.id}/release"),
        )  # fmt: skip
        self.assertEqual(json.loads(done.stdout)["accepted"], ["bob@example.org"])
        [arrived] = await real.deliveredTo("bob@example.org")
        self.assertEqual(arrived.message["Subject"], "release")
        self.assertNotIn("X-Appnet-Envelope-To", arrived.message)

    async def test_apiOffByDefault(self) -> None:
        """Without catch or test_api, /_appnet/ is not there."""
        s = await start(self, "http")
        missing = await inThread(
            curl, "-o", "/dev/null", "-w", "%{http_code}", s.url("/_appnet/messages")
        )
        self.assertEqual(missing.stdout, "404")

    def test_interfaces(self) -> None:
        """The catcher's password checker provides ICredentialsChecker."""
        portal = CatchAuth().portalFor(MailRealm(), "127.0.0.1")
        for checker in portal.checkers.values():
            verifyObject(ICredentialsChecker, checker)

    def test_catchAllOption(self) -> None:
        """C{--catch-all} sets C{[mail] catch}."""
        options = Options()
        options.parseOptions(["--catch-all"])
        raw, _ = options.overrides()
        config = loadConfig(None, raw, env={"APPNET_DATA": "unused"})
        self.assertTrue(config.mail.catch)
        self.assertEqual(CATCHER.rpartition("@")[2], "catcher.invalid")
