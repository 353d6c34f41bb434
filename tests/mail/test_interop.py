"""
Interop: real third-party clients against appnet's mail servers over
127.0.0.1 — Python's smtplib and poplib (in threads) and curl (in a
subprocess), with STARTTLS and STLS verified against the stack's
certificate.
"""

from __future__ import annotations

import poplib
import smtplib
import ssl
import subprocess
from email.message import EmailMessage
from typing import Any

from twisted.trial.unittest import TestCase

from appnet.mail.testing import MailStack
from tests.interop import need
from tests.mail.sockets import inThread, tlsMailStack

USERS = {"alice@example.org": "pw-alice-1", "bob@example.org": "pw-bob-12"}


def context(cert: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cert)


class InteropTestCase(TestCase):
    async def stack(self) -> tuple[MailStack, str]:
        return await tlsMailStack(self, USERS)


class SMTPLibTests(InteropTestCase):
    async def test_mx(self) -> None:
        """
        smtplib delivers to a local user over the MX port with STARTTLS;
        an unknown user and a relay attempt are refused.
        """
        mail, cert = await self.stack()
        host, port = mail.address("smtp")

        def client() -> tuple[Any, Any, Any]:
            with smtplib.SMTP(host, port, timeout=10) as s:
                s.ehlo("crepes.fr")
                features = dict(s.esmtp_features)
                s.starttls(context=context(cert))
                s.ehlo("crepes.fr")
                message = EmailMessage()
                message["From"] = "alice@crepes.fr"
                message["To"] = "bob@example.org"
                message["Subject"] = "smtplib"
                message.set_content("over STARTTLS\n")
                s.send_message(message)
                try:
                    s.sendmail("alice@crepes.fr", ["nobody@example.org"], "x")
                except smtplib.SMTPRecipientsRefused as e:
                    unknown = e.recipients
                try:
                    s.sendmail("alice@crepes.fr", ["eve@remote.example"], "x")
                except smtplib.SMTPRecipientsRefused as e:
                    relay = e.recipients
            return features, unknown, relay

        features, unknown, relay = await inThread(client)
        for name in (
            "pipelining",
            "size",
            "8bitmime",
            "enhancedstatuscodes",
            "starttls",
        ):
            self.assertIn(name, features)
        self.assertNotIn("auth", features)
        self.assertEqual(unknown["nobody@example.org"][0], 550)
        self.assertEqual(relay["eve@remote.example"][0], 554)
        [stored] = await mail.deliveredTo("bob@example.org")
        self.assertEqual(stored.message["Subject"], "smtplib")
        self.assertIn(b"with ESMTPS id", stored.data)
        self.assertRegex(stored.data, rb"\(using TLSv1\.[23] with cipher \S+\)")

    async def test_submission(self) -> None:
        """
        smtplib submits with STARTTLS and AUTH: a local recipient is
        delivered, a remote one queued; a wrong password is refused.
        """
        mail, cert = await self.stack()
        host, port = mail.address("submission")

        def client() -> tuple[Any, int]:
            with smtplib.SMTP(host, port, timeout=10) as s:
                s.starttls(context=context(cert))
                try:
                    s.login("alice@example.org", "wrong-password")
                except smtplib.SMTPAuthenticationError as e:
                    code = e.smtp_code
                s.login("alice@example.org", "pw-alice-1")
                refused = s.sendmail(
                    "alice@example.org",
                    ["bob@example.org", "carol@remote.example"],
                    "Subject: submitted\r\n\r\nhello\r\n",
                )
            return refused, code

        refused, code = await inThread(client)
        self.assertEqual((refused, code), ({}, 535))
        [stored] = await mail.deliveredTo("bob@example.org")
        self.assertIn(b"\r\nMessage-ID: <", stored.data)
        [queued] = await mail.queued()
        self.assertEqual(
            [r.address for r in queued.recipients], ["carol@remote.example"]
        )


class POPLibTests(InteropTestCase):
    async def test_session(self) -> None:
        """
        poplib: CAPA, STLS, USER/PASS, STAT, LIST, UIDL, TOP, RETR, DELE,
        RSET, QUIT against the server; DELE applies at QUIT.
        """
        mail, cert = await self.stack()
        for n in range(2):
            staged = mail.store.mail.stage()
            staged.write(b"Subject: m%d\r\n\r\nbody %d\r\n.dot\r\n" % (n, n))
            from appnet.store.interfaces import DeliveryTarget

            await mail.store.mail.deliver(staged, [DeliveryTarget("bob@example.org")])
            staged.discard()
        host, port = mail.address("pop3")

        def client() -> dict[str, Any]:
            p = poplib.POP3(host, port, timeout=10)
            out: dict[str, Any] = {"capa": p.capa()}
            p.stls(context=context(cert))
            p.user("bob@example.org")
            p.pass_("pw-bob-12")
            out["stat"] = p.stat()
            out["list"] = p.list()[1]
            out["uidl"] = p.uidl()[1]
            out["top"] = p.top(1, 0)[1]
            out["retr"] = p.retr(2)[1]
            p.dele(1)
            p.rset()
            p.dele(2)
            out["quit"] = p.quit()
            return out

        out = await inThread(client)
        self.assertIn("STLS", out["capa"])
        self.assertIn("UIDL", out["capa"])
        self.assertEqual(out["stat"][0], 2)
        self.assertEqual(len(out["list"]), 2)
        self.assertEqual(len(out["uidl"]), 2)
        self.assertIn(b"Subject: m0", out["top"])
        self.assertNotIn(b"body 0", out["top"])
        self.assertEqual(out["retr"][-2:], [b"body 1", b".dot"])
        self.assertTrue(out["quit"].startswith(b"+OK"))
        remaining = await mail.deliveredTo("bob@example.org")
        self.assertEqual([m.message["Subject"] for m in remaining], ["m0"])


def curl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "20", *args],
        input=stdin,
        capture_output=True,
        check=False,
    )


class CurlTests(InteropTestCase):
    def setUp(self) -> None:
        need("curl", "curl")

    async def test_smtpUpload(self) -> None:
        """
        curl uploads a message over smtp:// to the MX, and over the
        submission port with STARTTLS (--ssl-reqd) and AUTH.
        """
        mail, cert = await self.stack()
        host, port = mail.address("smtp")
        message = b"From: a@crepes.fr\r\nSubject: curl\r\n\r\nuploaded by curl\r\n"
        done = await inThread(
            lambda *a: curl(*a, stdin=message),
            f"smtp://{host}:{port}",
            "--mail-from", "a@crepes.fr",
            "--mail-rcpt", "bob@example.org",
            "--upload-file", "-",
        )  # fmt: skip
        self.assertEqual(done.returncode, 0, done.stderr)
        host, port = mail.address("submission")
        done = await inThread(
            lambda *a: curl(*a, stdin=message),
            f"smtp://{host}:{port}",
            "--ssl-reqd", "--cacert", cert,
            "--user", "alice@example.org:pw-alice-1",
            "--mail-from", "alice@example.org",
            "--mail-rcpt", "bob@example.org",
            "--upload-file", "-",
        )  # fmt: skip
        self.assertEqual(done.returncode, 0, done.stderr)
        stored = await mail.deliveredTo("bob@example.org")
        self.assertEqual(len(stored), 2)
        self.assertTrue(stored[0].data.endswith(b"\r\n\r\nuploaded by curl\r\n"))
        self.assertIn(b"with ESMTPSA", stored[1].data)

    async def test_pop3ListAndRetrieve(self) -> None:
        """
        curl lists a maildrop over pop3:// and retrieves a message, with
        STLS required.
        """
        mail, cert = await self.stack()
        body = b"Subject: for curl\r\n\r\n..stuffed? no: one dot\r\n"
        staged = mail.store.mail.stage()
        staged.write(body)
        from appnet.store.interfaces import DeliveryTarget

        await mail.store.mail.deliver(staged, [DeliveryTarget("bob@example.org")])
        staged.discard()
        host, port = mail.address("pop3")
        common = ["--ssl-reqd", "--cacert", cert, "--user", "bob@example.org:pw-bob-12"]
        listed = await inThread(curl, *common, f"pop3://{host}:{port}/")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertEqual(listed.stdout, b"1 %d\r\n" % len(body))
        fetched = await inThread(curl, *common, f"pop3://{host}:{port}/1")
        self.assertEqual(fetched.returncode, 0, fetched.stderr)
        self.assertEqual(fetched.stdout, body)
