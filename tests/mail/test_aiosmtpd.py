"""
Interop: appnet's SMTP clients (L{appnet.mail.client.send} and the
relay's smarthost session) against a real aiosmtpd server that requires
STARTTLS and AUTH and refuses one recipient.
"""

from __future__ import annotations

import email
import io
import json
import os
from email import policy
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from appnet.mail.client import MailClientError, send
from appnet.mail.compose import Attachment, compose
from appnet.mail.relay import Hop, Relay, RelaySettings, Transaction
from appnet.tls import makeSelfSigned
from tests.interop import unavailable
from tests.peers import startPythonServer

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "aiosmtpd_server.py")
USER = "alice"
PASSWORD = "pw-alice-1"
REFUSED = "nobody@example.net"
PDF = os.urandom(40_000) + b"\r\n.\r\n..\n.end"


class AiosmtpdTests(TestCase):
    """
    One aiosmtpd per test; STARTTLS with a certificate made here, trusted
    by the client; AUTH required after it.
    """

    async def setUp(self) -> None:
        try:
            import aiosmtpd  # noqa: F401
        except ImportError:
            unavailable("aiosmtpd is not installed (the test extra)")
        self.base = os.path.abspath(self.mktemp())
        self.spool = os.path.join(self.base, "spool")
        os.makedirs(self.spool)
        key, self.cert = makeSelfSigned("localhost")
        for name, data in [("key.pem", key), ("cert.pem", self.cert)]:
            with open(os.path.join(self.base, name), "wb") as f:
                f.write(data)
        _, self.port = await startPythonServer(
            self,
            SERVER,
            [
                self.spool,
                USER,
                PASSWORD,
                os.path.join(self.base, "cert.pem"),
                os.path.join(self.base, "key.pem"),
                REFUSED,
            ],
            self.base,
        )

    def stored(self, n: int) -> tuple[bytes, dict[str, Any]]:
        """Message C{n} as aiosmtpd received it, and its envelope."""
        with open(os.path.join(self.spool, f"{n}.eml"), "rb") as f:
            data = f.read()
        with open(os.path.join(self.spool, f"{n}.json")) as f:
            return data, json.load(f)

    def send(self, message: bytes, recipients: list[str], **kwargs: Any) -> Any:
        options: dict[str, Any] = dict(
            sender="alice@example.org",
            recipients=recipients,
            message=message,
            username=USER,
            password=PASSWORD,
            tls="require",
            trustRoot=self.cert,
        )
        options.update(kwargs)
        return send(reactor, "localhost", self.port, **options)

    async def test_mimeMessage(self) -> None:
        """
        A composed message with a binary attachment arrives byte for byte
        over STARTTLS after AUTH; each recipient gets its own reply.
        """
        message = compose(
            sender="Alice <alice@example.org>",
            to=["bob@example.net", REFUSED],
            subject="Grüße, report attached",
            text="Hallo Bob,\n.\nsee the attachment.\n",
            attachments=[Attachment("report.pdf", PDF)],
        )
        raw = bytes(message)
        result = await self.send(raw, ["bob@example.net", REFUSED])
        self.assertEqual(result.accepted, ["bob@example.net"])
        [refused] = result.refused
        self.assertEqual((refused.address, refused.code), (REFUSED, 550))
        self.assertIn("no such user", refused.response)

        data, envelope = self.stored(1)
        self.assertEqual(data, raw)
        self.assertEqual(
            envelope,
            {
                "mail_from": "alice@example.org",
                "rcpt_tos": ["bob@example.net"],
                "tls": True,
                "login": USER,
                "peer": envelope["peer"],
            },
        )
        parsed = email.message_from_bytes(data, policy=policy.default)
        self.assertEqual(parsed["Subject"], "Grüße, report attached")
        body = parsed.get_body(("plain",))
        assert body is not None
        self.assertEqual(
            body.get_content().splitlines(), ["Hallo Bob,", ".", "see the attachment."]
        )
        [attachment] = list(parsed.iter_attachments())
        self.assertEqual(attachment.get_filename(), "report.pdf")
        self.assertEqual(attachment.get_content(), PDF)

    async def test_lfMessage(self) -> None:
        """A message with bare LF line ends arrives with CRLF, dots intact."""
        await self.send(b"Subject: dots\n\n.\n..leading\nlast\n", ["bob@example.net"])
        data, _ = self.stored(1)
        self.assertEqual(data, b"Subject: dots\r\n\r\n.\r\n..leading\r\nlast\r\n")

    async def test_allRefused(self) -> None:
        """With every recipient refused, the send fails carrying the 550."""
        with self.assertRaises(MailClientError) as caught:
            await self.send(b"Subject: x\r\n\r\nx\r\n", [REFUSED])
        [only] = caught.exception.results
        self.assertEqual((only.address, only.code), (REFUSED, 550))
        self.assertEqual(os.listdir(self.spool), [])

    async def test_authFailure(self) -> None:
        """A wrong password fails with aiosmtpd's 535, said plainly."""
        with self.assertRaises(MailClientError) as caught:
            await self.send(
                b"Subject: x\r\n\r\nx\r\n", ["bob@example.net"], password="wrong"
            )
        self.assertEqual(caught.exception.code, 535)
        self.assertEqual(
            str(caught.exception), "535 5.7.8 Authentication credentials invalid"
        )
        self.assertEqual(os.listdir(self.spool), [])

    async def test_untrusted(self) -> None:
        """STARTTLS to a certificate not trusted fails; nothing is sent."""
        _, other = makeSelfSigned("localhost")
        with self.assertRaises(MailClientError) as caught:
            await self.send(
                b"Subject: x\r\n\r\nx\r\n", ["bob@example.net"], trustRoot=other
            )
        self.assertIn("certificate verify failed", str(caught.exception))
        self.assertEqual(os.listdir(self.spool), [])

    async def test_relaySmarthost(self) -> None:
        """
        The relay's smarthost session (STARTTLS verified, AUTH) sends two
        messages over one connection, with per-recipient replies.
        """
        settings = RelaySettings(
            hostname="relay.example.org",
            smarthost=("localhost", self.port),
            smarthostUser=USER,
            smarthostPassword=PASSWORD,
            smarthostTLS="verify",
            smarthostTrust=self.cert,
        )
        # connect() is given the hop, so the resolver is never asked.
        relay = Relay(reactor, None, settings)  # type: ignore[arg-type]
        client = await relay.connect(Hop("localhost", "127.0.0.1", self.port))
        self.assertTrue(client.tlsActive)
        bodies = [b"Subject: one\r\n\r\nfirst\r\n", b"Subject: two\r\n\r\n.second\r\n"]
        results = []
        for body in bodies:
            results.append(
                await client.send(
                    Transaction(
                        "bounce@example.org",
                        ("carol@example.net", REFUSED),
                        len(body),
                        lambda body=body: io.BytesIO(body),  # type: ignore[misc]
                    )
                )
            )
        client.quit()
        await client.closed
        peers = set()
        for n, (body, result) in enumerate(zip(bodies, results, strict=True), 1):
            self.assertEqual(result.replies["carol@example.net"].code, 250)
            self.assertEqual(result.replies[REFUSED].code, 550)
            data, envelope = self.stored(n)
            self.assertEqual(data, body)
            self.assertEqual(
                (envelope["rcpt_tos"], envelope["tls"], envelope["login"]),
                (["carol@example.net"], True, USER),
            )
            peers.add(tuple(envelope["peer"]))
        self.assertEqual(len(peers), 1, "both messages on one connection")
