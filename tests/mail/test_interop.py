"""
Interop: real third-party clients against appnet's mail servers over
127.0.0.1 — Python's smtplib and poplib (in threads) and curl (in a
subprocess), with STARTTLS and STLS verified against the stack's
certificate.
"""

from __future__ import annotations

import email
import poplib
import random
import smtplib
import ssl
import subprocess
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import formatdate, make_msgid
from typing import Any

from twisted.trial.unittest import TestCase

from appnet.mail.testing import MailStack
from tests.interop import need
from tests.mail.sockets import inThread, tlsMailStack

USERS = {"alice@example.org": "pw-alice-1", "bob@example.org": "pw-bob-12"}


def context(cert: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cert)


#: Every byte value, then random bytes (seeded, so a failure can be
#: reproduced): a few hundred KiB that no text transform leaves alone.
PAYLOAD = bytes(range(256)) + random.Random(4).randbytes(300 * 1024)


def withAttachment(sender: str, recipient: str, subject: str) -> bytes:
    """
    A message built with Python's C{email} package: a text part (with a
    line holding only a dot, which SMTP and POP3 must stuff and unstuff)
    and L{PAYLOAD} as an C{application/octet-stream} attachment; CRLF
    line ends, as it travels. It has a C{Date} and C{Message-ID}, as a
    user agent's would, so submission has none to add.
    """
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(1704182400, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    message.set_content("The file is attached.\n.\nThe line above is a dot.\n")
    message.add_attachment(
        PAYLOAD, maintype="application", subtype="octet-stream", filename="data.bin"
    )
    return message.as_bytes()


def attachmentOf(data: bytes) -> bytes:
    """The decoded bytes of the one attachment of a retrieved message."""
    parsed = email.message_from_bytes(data, policy=default)
    [part] = list(parsed.iter_attachments())  # type: ignore[attr-defined]
    content: bytes = part.get_content()
    return content


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


async def curlSubmit(
    mail: Any, cert: str, message: bytes
) -> subprocess.CompletedProcess[bytes]:
    """curl uploads C{message} from alice to bob by submission (TLS, AUTH)."""
    host, port = mail.address("submission")
    return await inThread(
        lambda *a: curl(*a, stdin=message),
        f"smtp://{host}:{port}",
        "--ssl-reqd", "--cacert", cert,
        "--user", "alice@example.org:pw-alice-1",
        "--mail-from", "alice@example.org",
        "--mail-rcpt", "bob@example.org",
        "--upload-file", "-",
    )  # fmt: skip


class BinaryRoundTripTests(InteropTestCase):
    """
    A message with a binary attachment, built with Python's C{email}
    package, sent and retrieved by third-party clients, comes back byte
    for byte: the server only adds its trace headers at the top.
    """

    async def test_smtplibAndPoplib(self) -> None:
        """
        smtplib submits the message (STARTTLS, AUTH) and hands another
        copy to the MX (STARTTLS); poplib (STLS) retrieves both with
        RETR: each is the stored message, ends with exactly the bytes
        sent, and its attachment decodes to the original bytes.
        """
        mail, cert = await self.stack()
        submitted = withAttachment(
            "alice@example.org", "bob@example.org", "submitted binary"
        )
        relayed = withAttachment("carol@crepes.fr", "bob@example.org", "MX binary")
        submission = mail.address("submission")
        mx = mail.address("smtp")

        def smtp() -> tuple[Any, Any]:
            with smtplib.SMTP(*submission, timeout=30) as s:
                s.starttls(context=context(cert))
                s.login("alice@example.org", "pw-alice-1")
                first = s.sendmail("alice@example.org", ["bob@example.org"], submitted)
            with smtplib.SMTP(*mx, timeout=30) as s:
                s.starttls(context=context(cert))
                second = s.sendmail("carol@crepes.fr", ["bob@example.org"], relayed)
            return first, second

        self.assertEqual(await inThread(smtp), ({}, {}))
        stored = await mail.deliveredTo("bob@example.org")
        host, port = mail.address("pop3")

        def pop() -> list[tuple[bytes, list[bytes], int]]:
            p = poplib.POP3(host, port, timeout=30)
            p.stls(context=context(cert))
            p.user("bob@example.org")
            p.pass_("pw-bob-12")
            retrieved = [p.retr(1), p.retr(2)]
            p.quit()
            return retrieved

        retrieved = await inThread(pop)
        for sent, message, (response, lines, octets) in zip(
            (submitted, relayed), stored, retrieved, strict=True
        ):
            data = b"\r\n".join(lines) + b"\r\n"
            self.assertTrue(response.startswith(b"+OK"))
            self.assertEqual((data, octets), (message.data, len(message.data)))
            self.assertTrue(data.endswith(sent))
            self.assertEqual(attachmentOf(data), PAYLOAD)
        self.assertIn(b"with ESMTPSA", stored[0].data[: -len(submitted)])
        self.assertIn(b"with ESMTPS ", stored[1].data[: -len(relayed)])

    async def test_curl(self) -> None:
        """
        curl uploads the message over smtp:// (submission, STARTTLS
        required, AUTH) and retrieves it over pop3:// (STLS required):
        what comes back is the stored message, ending with exactly the
        bytes uploaded, and its attachment decodes to the original bytes.
        """
        need("curl", "curl")
        mail, cert = await self.stack()
        sent = withAttachment("alice@example.org", "bob@example.org", "curl binary")
        uploaded = await curlSubmit(mail, cert, sent)
        self.assertEqual(uploaded.returncode, 0, uploaded.stderr)
        [stored] = await mail.deliveredTo("bob@example.org")
        host, port = mail.address("pop3")
        fetched = await inThread(
            curl,
            "--ssl-reqd", "--cacert", cert,
            "--user", "bob@example.org:pw-bob-12",
            f"pop3://{host}:{port}/1",
        )  # fmt: skip
        self.assertEqual(fetched.returncode, 0, fetched.stderr)
        self.assertEqual(fetched.stdout, stored.data)
        self.assertTrue(fetched.stdout.endswith(sent))
        self.assertEqual(attachmentOf(fetched.stdout), PAYLOAD)


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
        done = await curlSubmit(mail, cert, message)
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


class APOPTests(InteropTestCase):
    """
    APOP (C{[pop3] apop = true}) with real clients: poplib's C{apop()} and
    curl's C{AUTH=+APOP}, over plain TCP (APOP never sends the secret).
    """

    async def apopStack(self) -> tuple[MailStack, tuple[str, int], bytes]:
        """
        A stack offering APOP, bob with the APOP secret C{tanstaaf-bob}
        and one message in his INBOX.

        @return: the stack, the POP3 address and the message.
        """
        mail, _ = await tlsMailStack(
            self, USERS, config={"pop3": {"apop": True}, "auth": {"failure_delay": 0}}
        )
        await mail.store.users.setAPOPSecret("bob@example.org", "tanstaaf-bob")
        body = b"Subject: by APOP\r\n\r\nfetched with APOP\r\n.dot\r\n"
        staged = mail.store.mail.stage()
        staged.write(body)
        from appnet.store.interfaces import DeliveryTarget

        await mail.store.mail.deliver(staged, [DeliveryTarget("bob@example.org")])
        staged.discard()
        return mail, mail.address("pop3"), body

    async def test_poplib(self) -> None:
        """
        poplib reads the greeting's timestamp, logs in with C{apop()} and
        retrieves the message; the login password and a wrong secret are
        refused with C{-ERR [AUTH]}.
        """
        mail, (host, port), body = await self.apopStack()

        def client() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for secret in ("pw-bob-12", "wrong-secret"):
                p = poplib.POP3(host, port, timeout=10)
                try:
                    p.apop("bob@example.org", secret)
                except poplib.error_proto as e:
                    out.setdefault("refused", []).append(e.args[0])
                p.quit()
            p = poplib.POP3(host, port, timeout=10)
            out["welcome"] = p.getwelcome()
            out["apop"] = p.apop("bob@example.org", "tanstaaf-bob")
            out["retr"] = p.retr(1)[1]
            out["quit"] = p.quit()
            return out

        out = await inThread(client)
        self.assertRegex(out["welcome"], rb"^\+OK .* <\d+\.\d+\.[0-9a-f]+@[^>]+>$")
        self.assertEqual(out["refused"], [b"-ERR [AUTH] Authentication failed"] * 2)
        self.assertTrue(out["apop"].startswith(b"+OK Logged in, 1 messages"))
        self.assertEqual(b"\r\n".join(out["retr"]) + b"\r\n", body)
        self.assertTrue(out["quit"].startswith(b"+OK"))

    async def test_offByDefault(self) -> None:
        """
        A stack with the default config greets without a timestamp (so
        poplib's C{apop()} will not try) and refuses APOP, even for an
        account that has an APOP secret.
        """
        mail, _ = await self.stack()
        await mail.store.users.setAPOPSecret("bob@example.org", "tanstaaf-bob")
        host, port = mail.address("pop3")

        def client() -> dict[str, Any]:
            out: dict[str, Any] = {}
            p = poplib.POP3(host, port, timeout=10)
            out["welcome"] = p.getwelcome()
            for attempt in (
                lambda: p.apop("bob@example.org", "tanstaaf-bob"),
                lambda: p._shortcmd("APOP bob@example.org " + "0" * 32),
            ):
                try:
                    attempt()
                except poplib.error_proto as e:
                    out.setdefault("refused", []).append(e.args[0])
            p.quit()
            return out

        out = await inThread(client)
        self.assertNotIn(b"<", out["welcome"])
        self.assertEqual(
            out["refused"],
            [
                "-ERR APOP not supported by server",
                b"-ERR [AUTH] APOP is off on this server;"
                b" use STLS then USER/PASS or AUTH PLAIN",
            ],
        )

    async def test_curl(self) -> None:
        """
        curl logs in with APOP (C{--login-options AUTH=+APOP}, used when
        the greeting has a timestamp) and retrieves the message; a wrong
        secret fails the transfer.
        """
        need("curl", "curl")
        mail, (host, port), body = await self.apopStack()
        url = f"pop3://{host}:{port}/1"
        apop = ["--verbose", "--login-options", "AUTH=+APOP"]
        fetched = await inThread(
            curl, *apop, "--user", "bob@example.org:tanstaaf-bob", url
        )
        self.assertEqual(fetched.returncode, 0, fetched.stderr)
        self.assertEqual(fetched.stdout, body)
        self.assertIn(b"> APOP bob@example.org ", fetched.stderr)
        self.assertNotIn(b"> USER", fetched.stderr)
        self.assertNotIn(b"> AUTH", fetched.stderr)
        wrong = await inThread(curl, *apop, "--user", "bob@example.org:pw-bob-12", url)
        self.assertNotEqual(wrong.returncode, 0)
        self.assertEqual(wrong.stdout, b"")
