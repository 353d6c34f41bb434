"""
The SMTP server's mail authentication hooks on a string transport: DKIM
signing at the end of DATA on submission, verification and DMARC policy
at the end of DATA on the MX, trusted clients left alone.
"""

from __future__ import annotations

from typing import Any

from appnet.dns.testing import StaticResolver
from appnet.mail.dkim import verifySignatures
from appnet.mail.mailauth import MailAuth
from tests.mail.helpers import ALICE, BOB, PASSWORD, Session
from tests.mail.test_smtpserver import SMTPTestCase, plain

from .test_dkim import keys

ZONE = (
    "@ SOA ns hostmaster 1 3600 900 604800 60\n@ NS ns\nns A 192.0.2.53\n"
    '@ TXT "v=spf1 ip4:192.0.2.1 -all"\n'
    '_dmarc TXT "v=DMARC1; p=reject"\n'
)

QUARANTINED = (
    "@ SOA ns hostmaster 1 3600 900 604800 60\n@ NS ns\nns A 192.0.2.53\n"
    '_dmarc TXT "v=DMARC1; p=quarantine"\n'
)


class HookTests(SMTPTestCase):
    """
    The hooks, with a L{MailAuth} on the factory.
    """

    def setUp(self) -> None:
        super().setUp()
        resolver = StaticResolver(
            zones={"crepes.fr": ZONE, "quarantine.example": QUARANTINED}
        )
        self.auth = MailAuth(
            resolver, "mx.example.org", keys=keys(), skip=("127.0.0.0/8",)
        )

    def factory(self, **kw: Any) -> Any:
        factory = self.world.smtpFactory(**kw)
        factory.mailauth = self.auth
        return factory

    def session(self, peer: str = "192.0.2.7", **kw: Any) -> Session:
        session = self.world.connect(self.factory(**kw), peer=peer)
        session.read()
        session.command("EHLO c.example")
        return session

    def test_rejected(self) -> None:
        """
        Mail failing DMARC under p=reject gets 550 5.7.1 at the end of
        DATA, is not stored, and the session goes on.
        """
        session = self.session()
        body = "From: alice@crepes.fr\r\nSubject: t\r\n\r\nhello\r\n"
        replies = self.transaction(session, [BOB], body)
        self.assertEqual(replies[-1][:10], "550 5.7.1 ")
        self.assertEqual(self.stored(), [])
        self.assertEqual(session.command("NOOP")[0][:3], "250")

    def test_resultsOnTop(self) -> None:
        """
        A message that passes gets one Authentication-Results field right
        after Return-Path; a forged one with our authserv-id is dropped.
        """
        session = self.session()
        body = (
            "Authentication-Results: mx.example.org; dmarc=pass\r\n"
            "From: someone@elsewhere.example\r\nSubject: t\r\n\r\nhello\r\n"
        )
        replies = self.transaction(session, [BOB], body, sender="")
        self.assertEqual(replies[-1][:3], "250")
        [stored] = self.stored()
        self.assertTrue(
            stored.startswith(
                b"Return-Path: <>\r\nAuthentication-Results: mx.example.org;\r\n"
            )
        )
        self.assertEqual(stored.count(b"Authentication-Results:"), 1)
        self.assertIn(b"dmarc=temperror", stored)  # No zone: REFUSED.
        self.assertTrue(stored.endswith(b"Subject: t\r\n\r\nhello\r\n"))

    def test_quarantined(self) -> None:
        """
        Mail failing DMARC under p=quarantine goes to Junk, made for it.
        """
        session = self.session()
        body = "From: x@quarantine.example\r\nSubject: t\r\n\r\nhello\r\n"
        replies = self.transaction(session, [BOB], body)
        self.assertEqual(replies[-1][:3], "250")
        self.assertEqual(self.stored(), [])
        junk = self.successResultOf(self.world.store.mail.listMessages(BOB, "Junk"))
        self.assertEqual(len(junk), 1)

    def test_trusted(self) -> None:
        """
        A client in the skip list is not checked: no field is added and
        nothing is refused.
        """
        session = self.session(peer="127.0.0.1")
        body = "From: alice@crepes.fr\r\nSubject: t\r\n\r\nhello\r\n"
        replies = self.transaction(session, [BOB], body)
        self.assertEqual(replies[-1][:3], "250")
        [stored] = self.stored()
        self.assertNotIn(b"Authentication-Results", stored)

    def test_submissionSigned(self) -> None:
        """
        Submission from a domain with keys signs before storing: the
        stored message carries two signatures that verify, below our
        Received field.
        """
        session = self.world.connect(
            self.factory(submission=True, maxMessageSize=100_000), peer="127.0.0.1"
        )
        session.read()
        session.command("EHLO c.example")
        self.assertEqual(
            session.command("AUTH PLAIN " + plain(ALICE, PASSWORD))[0][:3], "235"
        )
        body = f"From: Alice <{ALICE}>\r\nTo: {BOB}\r\nSubject: t\r\n\r\nhello\r\n"
        replies = self.transaction(session, [BOB], body, sender=ALICE)
        self.assertEqual(replies[-1][:3], "250")
        [stored] = self.stored()
        self.assertEqual(stored.count(b"DKIM-Signature:"), 2)
        # Our Received stays on top of the signatures it does not cover.
        self.assertLess(stored.index(b"Received:"), stored.index(b"DKIM-Signature:"))
        texts = {k.recordName: [k.record().encode()] for k in keys()}
        results = [r.result for r in verifySignatures(stored, texts)]
        self.assertEqual(results, ["pass", "pass"])

    def test_submissionOtherDomain(self) -> None:
        """
        A From domain that is not the sender's own is not signed.
        """
        session = self.world.connect(self.factory(submission=True), peer="127.0.0.1")
        session.read()
        session.command("EHLO c.example")
        session.command("AUTH PLAIN " + plain(ALICE, PASSWORD))
        body = f"From: boss@crepes.fr\r\nTo: {BOB}\r\nSubject: t\r\n\r\nhello\r\n"
        replies = self.transaction(session, [BOB], body, sender=ALICE)
        self.assertEqual(replies[-1][:3], "250")
        [stored] = self.stored()
        self.assertNotIn(b"DKIM-Signature", stored)
