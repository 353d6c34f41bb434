"""
Tests for L{appnet.mail.smtpserver}: every command and error path of both
roles, on a string transport over the in-memory store.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from appnet.auth import hashPassword
from appnet.dns.testing import StaticResolver
from appnet.mail.routing import Router
from appnet.mail.spf import SPFPolicy
from appnet.store.interfaces import INBOX, DeliveryTarget
from tests.mail.helpers import ALICE, BOB, PASSWORD, MailWorld, Session, SlowUsers


def plain(user: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class SMTPTestCase(SynchronousTestCase):
    """Helpers for talking to one server."""

    def setUp(self) -> None:
        self.world = MailWorld()

    def mx(self, **kw: Any) -> Session:
        session = self.world.connect(self.world.smtpFactory(**kw))
        session.read()
        return session

    def submission(self, peer: str = "127.0.0.1", **kw: Any) -> Session:
        factory = self.world.smtpFactory(submission=True, **kw)
        session = self.world.connect(factory, peer=peer)
        session.read()
        return session

    def stored(self, owner: str = BOB) -> list[bytes]:
        store = self.world.store.mail
        messages = self.successResultOf(store.listMessages(owner))
        result = []
        for m in messages:
            body = self.successResultOf(store.openMessage(owner, INBOX, m.uid))
            result.append(body.open().read())
        return result

    def codes(self, lines: list[str]) -> list[str]:
        return [line[:3] for line in lines if line[3:4] == " "]

    def transaction(
        self,
        session: Session,
        rcpts: list[str],
        body: str = "Subject: t\r\n\r\nhello\r\n",
        sender: str = "alice@crepes.fr",
    ) -> list[str]:
        replies = session.command(f"MAIL FROM:<{sender}>")
        for rcpt in rcpts:
            replies += session.command(f"RCPT TO:<{rcpt}>")
        replies += session.command("DATA")
        replies += session.send(body + ".\r\n")
        return replies


class GreetingTests(SMTPTestCase):
    def test_greeting(self) -> None:
        """The server greets with 220, its host name and ESMTP."""
        session = self.world.connect(self.world.smtpFactory())
        self.assertEqual(session.lines(), ["220 mx.example.org ESMTP appnet"])

    def test_ehloMX(self) -> None:
        """
        MX EHLO advertises PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES;
        no STARTTLS without a certificate and never AUTH.
        """
        session = self.mx()
        lines = session.command("EHLO client.example")
        self.assertEqual(
            lines,
            [
                "250-mx.example.org Hello client.example [192.0.2.7]",
                "250-PIPELINING",
                "250-SIZE 10000",
                "250-8BITMIME",
                "250 ENHANCEDSTATUSCODES",
            ],
        )

    def test_ehloTLS(self) -> None:
        """With a certificate, EHLO offers STARTTLS; the MX still no AUTH."""
        lines = self.mx(tls=True).command("EHLO client.example")
        self.assertIn("250 STARTTLS", lines)
        self.assertFalse([x for x in lines if "AUTH" in x])

    def test_ehloSubmissionLoopback(self) -> None:
        """Submission offers AUTH PLAIN LOGIN in the clear to loopback."""
        lines = self.submission().command("EHLO client.example")
        self.assertEqual(lines[-1], "250 AUTH PLAIN LOGIN")

    def test_ehloSubmissionRemoteNeedsTLS(self) -> None:
        """
        Submission from a non-loopback client offers AUTH only after
        STARTTLS.
        """
        session = self.submission(peer="192.0.2.7", tls=True)
        lines = session.command("EHLO client.example")
        self.assertIn("250 STARTTLS", lines)
        self.assertFalse([x for x in lines if "AUTH" in x])
        self.assertEqual(session.command("STARTTLS"), ["220 2.0.0 Ready to start TLS"])
        lines = session.command("EHLO client.example")
        self.assertEqual(lines[-1], "250 AUTH PLAIN LOGIN")
        self.assertNotIn("250-STARTTLS", lines)

    def test_helo(self) -> None:
        """HELO works and a transaction follows."""
        session = self.mx()
        self.assertEqual(
            session.command("HELO client.example"), ["250 2.0.0 mx.example.org"]
        )
        replies = self.transaction(session, [BOB])
        self.assertEqual(self.codes(replies), ["250", "250", "354", "250"])

    def test_ehloControlCharacters(self) -> None:
        """
        Control characters in the EHLO name (DEL, NUL, a bare CR) are shown
        as C{?} in the greeting, so the reply stays one printable line
        (found by tests.robustness.test_smtp).
        """
        session = self.mx()
        lines = session.send(b"EHLO a\x7fb\x00c\rd\r\n")
        self.assertEqual(lines[0], "250-mx.example.org Hello a?b?c?d [192.0.2.7]")
        self.assertEqual(len(lines), 5)

    def test_heloSyntax(self) -> None:
        """HELO and EHLO need one argument: 501."""
        session = self.mx()
        self.assertEqual(session.command("HELO"), ["501 5.5.4 Syntax: HELO hostname"])
        self.assertEqual(session.command("EHLO"), ["501 5.5.4 Syntax: EHLO hostname"])
        self.assertEqual(session.command("EHLO a b")[0][:3], "501")

    def test_sizeTooManyDigits(self) -> None:
        """
        A SIZE of more than 20 digits (RFC 1870's limit; thousands of
        digits made int() raise) is a syntax error and the session goes on
        (found by tests.robustness.test_smtp).
        """
        session = self.mx()
        session.command("EHLO client.example")
        for value in ("1" + "0" * 4400, "1" + "0" * 20):
            self.assertEqual(
                session.command(f"MAIL FROM:<a@b.org> SIZE={value}"),
                ["501 5.5.4 Bad SIZE parameter"],
            )
        self.assertEqual(
            session.command("MAIL FROM:<a@b.org> SIZE=100"), ["250 2.1.0 Ok"]
        )

    def test_paramsNeedEHLO(self) -> None:
        """MAIL parameters after HELO (not EHLO) are refused: 555."""
        session = self.mx()
        session.command("HELO client.example")
        self.assertEqual(
            session.command("MAIL FROM:<a@b.org> SIZE=10"),
            ["555 5.5.4 Error: parameters need EHLO"],
        )


class TransactionTests(SMTPTestCase):
    def test_deliver(self) -> None:
        """
        A message to a local user is stored with Return-Path and a
        Received header naming the client, and answered 250 with an id.
        """
        session = self.mx()
        session.command("EHLO crepes.fr")
        replies = self.transaction(session, [BOB])
        self.assertEqual(
            replies[:3],
            [
                "250 2.1.0 Ok",
                "250 2.1.5 Ok",
                "354 2.0.0 End data with <CR><LF>.<CR><LF>",
            ],
        )
        self.assertTrue(replies[3].startswith("250 2.0.0 Ok: queued as "))
        [message] = self.stored()
        head, _, rest = message.partition(b"\r\n")
        self.assertEqual(head, b"Return-Path: <alice@crepes.fr>")
        self.assertTrue(rest.startswith(b"Received: from crepes.fr ([192.0.2.7])\r\n"))
        self.assertIn(b"with ESMTP id ", rest)
        self.assertIn(b"\tfor <bob@example.org>; ", rest)
        self.assertTrue(rest.endswith(b"Subject: t\r\n\r\nhello\r\n"))
        self.assertEqual(self.world.status.counter("smtp", "messages"), 1)

    def test_severalMessages(self) -> None:
        """Several messages go over one connection."""
        session = self.mx()
        session.command("EHLO crepes.fr")
        for _ in range(3):
            self.assertEqual(self.codes(self.transaction(session, [BOB]))[-1], "250")
        self.assertEqual(len(self.stored()), 3)

    def test_nullSender(self) -> None:
        """The null sender is accepted (bounces) and kept as Return-Path <>."""
        session = self.mx()
        session.command("EHLO crepes.fr")
        replies = session.command("MAIL FROM:<>")
        self.assertEqual(replies, ["250 2.1.0 Ok"])
        session.command(f"RCPT TO:<{BOB}>")
        session.command("DATA")
        session.send("x\r\n.\r\n")
        self.assertTrue(self.stored()[0].startswith(b"Return-Path: <>\r\n"))

    def test_multipleRecipients(self) -> None:
        """
        One message to two local users is stored once for each; the
        Received header then names no single recipient.
        """
        session = self.mx()
        session.command("EHLO crepes.fr")
        self.transaction(session, [BOB, ALICE])
        self.assertEqual(self.stored(BOB), self.stored(ALICE))
        self.assertNotIn(b"\tfor <", self.stored(BOB)[0])

    def test_duplicateRecipient(self) -> None:
        """bob and bob+tag are one mailbox: one copy."""
        session = self.mx()
        session.command("EHLO crepes.fr")
        self.transaction(session, [BOB, "bob+lists@example.org"])
        self.assertEqual(len(self.stored(BOB)), 1)

    def test_dotStuffingAndBareLF(self) -> None:
        """
        Leading dots are unstuffed and bare LF line ends stored as CRLF.
        """
        session = self.mx()
        session.command("EHLO crepes.fr")
        session.command("MAIL FROM:<a@crepes.fr>")
        session.command(f"RCPT TO:<{BOB}>")
        session.command("DATA")
        replies = session.send(b"Subject: dots\n\n..hidden\n...\nbare\nend\r\n.\r\n")
        self.assertEqual(self.codes(replies), ["250"])
        body = self.stored()[0].split(b"\r\n\r\n", 1)[1]
        self.assertEqual(body, b".hidden\r\n..\r\nbare\r\nend\r\n")

    def test_bodyInPieces(self) -> None:
        """
        A body arriving byte by byte, terminator split too, is stored the
        same, and a command pipelined after it is answered.
        """
        session = self.mx()
        session.command("EHLO crepes.fr")
        session.command("MAIL FROM:<a@crepes.fr>")
        session.command(f"RCPT TO:<{BOB}>")
        session.command("DATA")
        replies: list[str] = []
        for byte in b"Subject: x\r\n\r\n.. a\r\nb\r\n.\r\nNOOP\r\n":
            replies += session.send(bytes([byte]))
        self.assertEqual(self.codes(replies), ["250", "250"])
        self.assertTrue(self.stored()[0].endswith(b"\r\n\r\n. a\r\nb\r\n"))

    def test_noHeaders(self) -> None:
        """A body with no header section gets an empty line before it."""
        session = self.mx()
        session.command("EHLO crepes.fr")
        self.transaction(session, [BOB], body="just text\r\n")
        self.assertIn(b"\r\n\r\njust text\r\n", self.stored()[0])

    def test_rset(self) -> None:
        """RSET forgets the transaction; a new one can start."""
        session = self.mx()
        session.command("EHLO crepes.fr")
        session.command("MAIL FROM:<a@crepes.fr>")
        session.command(f"RCPT TO:<{BOB}>")
        self.assertEqual(session.command("RSET"), ["250 2.0.0 Ok"])
        self.assertEqual(
            session.command("DATA"), ["503 5.5.1 Error: need MAIL command"]
        )
        self.assertEqual(session.command("RSET x")[0][:3], "501")
        self.assertEqual(self.codes(self.transaction(session, [BOB]))[-1], "250")

    def test_simpleCommands(self) -> None:
        """NOOP, VRFY (252, no harvesting), EXPN, HELP, BDAT answer."""
        session = self.mx()
        self.assertEqual(session.command("NOOP"), ["250 2.0.0 Ok"])
        self.assertEqual(session.command("VRFY bob")[0][:10], "252 2.5.0 ")
        self.assertEqual(session.command("VRFY")[0][:3], "501")
        self.assertEqual(session.command("EXPN staff")[0][:10], "502 5.5.1 ")
        self.assertEqual(session.command("HELP")[0][:10], "214 2.0.0 ")
        self.assertEqual(session.command("BDAT 10 LAST")[0][:10], "502 5.5.1 ")

    def test_quit(self) -> None:
        """QUIT says 221 and closes."""
        session = self.mx()
        self.assertEqual(session.command("QUIT"), ["221 2.0.0 mx.example.org Bye"])
        self.assertTrue(session.transport.disconnecting)

    def test_unknownAndBad(self) -> None:
        """Unknown commands, empty lines and non-ASCII get 500; the session goes on."""
        session = self.mx()
        self.assertEqual(
            session.command("FOO"), ["500 5.5.2 Error: command not recognized"]
        )
        self.assertEqual(session.command(""), ["500 5.5.2 Error: bad syntax"])
        self.assertEqual(session.send(b"NO\xffOP\r\n")[0][:10], "500 5.5.2 ")
        self.assertEqual(session.command("NOOP"), ["250 2.0.0 Ok"])

    def test_lineTooLong(self) -> None:
        """An over-long command line gets 500 5.5.6, once; the session goes on."""
        session = self.mx()
        replies = session.send(b"NOOP " + b"x" * 20000)
        replies += session.send(b"x" * 100 + b"\r\nNOOP\r\n")
        self.assertEqual(replies, ["500 5.5.6 Error: line too long", "250 2.0.0 Ok"])

    def test_tooManyErrors(self) -> None:
        """After 20 errors the server says 421 and closes."""
        session = self.mx()
        replies = session.send(b"BAD\r\n" * 25)
        self.assertEqual(len([r for r in replies if r.startswith("500")]), 20)
        self.assertEqual(replies[-1][:10], "421 4.7.0 ")
        self.assertTrue(session.transport.disconnecting)

    def test_idleTimeout(self) -> None:
        """An idle client is told 421 and disconnected."""
        session = self.mx()
        self.world.clock.advance(301)
        self.assertEqual(session.lines()[0][:10], "421 4.4.2 ")
        self.assertTrue(session.transport.disconnecting)

    def test_connectionLostInData(self) -> None:
        """A connection lost during DATA stores nothing."""
        session = self.mx()
        session.command("EHLO crepes.fr")
        session.command("MAIL FROM:<a@crepes.fr>")
        session.command(f"RCPT TO:<{BOB}>")
        session.command("DATA")
        session.send("Subject: half\r\n")
        session.protocol.connectionLost(None)
        self.assertEqual(self.stored(), [])


class SequenceTests(SMTPTestCase):
    def test_mailBeforeHelo(self) -> None:
        """MAIL before HELO/EHLO is 503."""
        self.assertEqual(
            self.mx().command("MAIL FROM:<a@b.org>"),
            ["503 5.5.1 Error: send HELO/EHLO first"],
        )

    def test_rcptBeforeMail(self) -> None:
        """RCPT and DATA before MAIL are 503."""
        session = self.mx()
        session.command("EHLO c.example")
        self.assertEqual(session.command(f"RCPT TO:<{BOB}>")[0][:10], "503 5.5.1 ")
        self.assertEqual(session.command("DATA")[0][:10], "503 5.5.1 ")

    def test_dataWithoutRcpt(self) -> None:
        """
        DATA with no RCPT is 503; with only refused RCPTs, 554 (RFC 2920).
        """
        session = self.mx()
        session.command("EHLO c.example")
        session.command("MAIL FROM:<a@b.org>")
        self.assertEqual(
            session.command("DATA"), ["503 5.5.1 Error: need RCPT command"]
        )
        session.command("RCPT TO:<nobody@example.org>")
        self.assertEqual(
            session.command("DATA"), ["554 5.5.1 Error: no valid recipients"]
        )

    def test_nestedMail(self) -> None:
        """A second MAIL inside a transaction is 503."""
        session = self.mx()
        session.command("EHLO c.example")
        session.command("MAIL FROM:<a@b.org>")
        self.assertEqual(
            session.command("MAIL FROM:<a@b.org>"),
            ["503 5.5.1 Error: nested MAIL command"],
        )

    def test_dataArgument(self) -> None:
        """DATA takes no argument: 501."""
        session = self.mx()
        session.command("EHLO c.example")
        session.command("MAIL FROM:<a@b.org>")
        session.command(f"RCPT TO:<{BOB}>")
        self.assertEqual(session.command("DATA now")[0][:10], "501 5.5.4 ")


class SyntaxTests(SMTPTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.session = self.mx()
        self.session.command("EHLO c.example")

    def test_mailSyntax(self) -> None:
        """Malformed MAIL commands get 501; the session goes on."""
        for bad in (
            "MAIL alice@b.org",
            "MAIL FROM:<alice@b.org",
            "MAIL FROM:<alice>",
            "MAIL FROM:<a..b@b.org>",
            "MAIL FROM:<a@-b.org>",
        ):
            self.assertEqual(self.session.command(bad)[0][:3], "501", bad)
        self.assertEqual(self.session.command("MAIL FROM: <a@b.org>"), ["250 2.1.0 Ok"])

    def test_lenientPaths(self) -> None:
        """A path without brackets, and a quoted local part, are accepted."""
        self.assertEqual(self.session.command("MAIL FROM:a@b.org"), ["250 2.1.0 Ok"])
        self.assertEqual(
            self.session.command('RCPT TO:<"bob"@example.org>'), ["250 2.1.5 Ok"]
        )

    def test_parameters(self) -> None:
        """
        SIZE and BODY are understood; SIZE over the limit is 552, unknown
        parameters 555, malformed ones 501.
        """
        self.assertEqual(
            self.session.command("MAIL FROM:<a@b.org> SIZE=20000"),
            ["552 5.3.4 Message size exceeds fixed limit"],
        )
        self.assertEqual(
            self.session.command("MAIL FROM:<a@b.org> SMTPUTF8")[0][:10], "555 5.5.4 "
        )
        self.assertEqual(
            self.session.command("MAIL FROM:<a@b.org> SIZE=x")[0][:3], "501"
        )
        self.assertEqual(
            self.session.command("MAIL FROM:<a@b.org> BODY=9BIT")[0][:3], "501"
        )
        self.assertEqual(
            self.session.command("MAIL FROM:<a@b.org> SIZE=100 BODY=8BITMIME"),
            ["250 2.1.0 Ok"],
        )
        self.assertEqual(
            self.session.command(f"RCPT TO:<{BOB}> NOTIFY=NEVER")[0][:10], "555 5.5.4 "
        )

    def test_rcptSyntax(self) -> None:
        """Malformed RCPT commands get 501."""
        self.session.command("MAIL FROM:<a@b.org>")
        for bad in ("RCPT bob@example.org", "RCPT TO:<>", "RCPT TO:<bob>"):
            self.assertEqual(self.session.command(bad)[0][:3], "501", bad)


class RecipientTests(SMTPTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.world = MailWorld(
            aliases={
                "info": (ALICE, "carol@remote.example"),
                "team@example.org": ("info@example.org", BOB),
                "loop1": ("loop2@example.org",),
                "loop2": ("loop1@example.org",),
            }
        )
        self.session = self.mx()
        self.session.command("EHLO c.example")
        self.session.command("MAIL FROM:<a@crepes.fr>")

    def rcpt(self, address: str) -> str:
        return self.session.command(f"RCPT TO:{address}")[0]

    def test_unknownUser(self) -> None:
        """An unknown local user is 550 5.1.1; the session goes on."""
        self.assertEqual(
            self.rcpt("<nobody@example.org>"),
            "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown",
        )
        self.assertEqual(self.rcpt(f"<{BOB}>"), "250 2.1.5 Ok")

    def test_relayDenied(self) -> None:
        """
        Without AUTH, mail for other domains is 554 5.7.1, whatever address
        trick is tried.
        """
        for address in (
            "<carol@remote.example>",
            "<carol@REMOTE.example.>",
            "<@example.org:carol@remote.example>",
            '<"carol@remote.example"@example.org>',
            "<carol%remote.example@example.org>",
            "<remote.example!carol@example.org>",
            "<carol@[192.0.2.1]>",
            "carol@remote.example",
        ):
            self.assertEqual(self.rcpt(address)[:10], "554 5.7.1 ", address)
        self.assertEqual(self.rcpt(f"<{BOB}>"), "250 2.1.5 Ok")

    def test_sourceRouteToLocal(self) -> None:
        """A source route ending at a local user is accepted (route ignored)."""
        self.assertEqual(self.rcpt(f"<@relay.example:{BOB}>"), "250 2.1.5 Ok")

    def test_caseAndPlus(self) -> None:
        """Addresses are case-insensitive; alice+tag@ is alice@."""
        self.assertEqual(self.rcpt("<Alice+News@EXAMPLE.org>"), "250 2.1.5 Ok")
        self.session.command("DATA")
        self.session.send("x\r\n.\r\n")
        self.assertEqual(len(self.stored(ALICE)), 1)

    def test_postmaster(self) -> None:
        """
        postmaster@ of every local domain, and <postmaster> alone, are
        always accepted, with or without an account.
        """
        self.assertEqual(self.rcpt("<postmaster@example.org>"), "250 2.1.5 Ok")
        self.assertEqual(self.rcpt("<Postmaster>"), "250 2.1.5 Ok")
        self.session.command("DATA")
        self.session.send("x\r\n.\r\n")
        self.assertEqual(len(self.stored("postmaster@example.org")), 1)

    def test_aliases(self) -> None:
        """
        Aliases expand recursively to local users and queue remote
        targets; each local mailbox gets one copy.
        """
        self.assertEqual(self.rcpt("<team@example.org>"), "250 2.1.5 Ok")
        self.session.command("DATA")
        self.assertEqual(self.codes(self.session.send("x\r\n.\r\n")), ["250"])
        self.assertEqual(len(self.stored(ALICE)), 1)
        self.assertEqual(len(self.stored(BOB)), 1)
        [queued] = self.successResultOf(self.world.store.queue.list())
        self.assertEqual(
            [r.address for r in queued.recipients], ["carol@remote.example"]
        )

    def test_aliasLoop(self) -> None:
        """An alias loop is refused, not followed forever."""
        self.assertEqual(self.rcpt("<loop1@example.org>")[:3], "550")

    def test_catchAll(self) -> None:
        """With a catch-all, unknown local users' mail goes to it."""
        self.world = MailWorld(catchAll=ALICE)
        session = self.mx()
        session.command("EHLO c.example")
        self.transaction(session, ["whoever@example.org"])
        self.assertEqual(len(self.stored(ALICE)), 1)

    def test_tooManyRecipients(self) -> None:
        """Recipients past the limit get 452 4.5.3."""
        session = self.mx(maxRecipients=2)
        session.command("EHLO c.example")
        session.command("MAIL FROM:<a@crepes.fr>")
        self.assertEqual(session.command(f"RCPT TO:<{BOB}>"), ["250 2.1.5 Ok"])
        self.assertEqual(session.command(f"RCPT TO:<{ALICE}>"), ["250 2.1.5 Ok"])
        self.assertEqual(
            session.command("RCPT TO:<postmaster@example.org>"),
            ["452 4.5.3 Error: too many recipients"],
        )
        session.command("DATA")
        self.assertEqual(self.codes(session.send("x\r\n.\r\n")), ["250"])


class LimitTests(SMTPTestCase):
    def test_sizeLimit(self) -> None:
        """
        A body over the size limit is 552 5.3.4; nothing is stored; the
        session goes on.
        """
        session = self.mx(maxMessageSize=1000)
        session.command("EHLO c.example")
        replies = self.transaction(
            session, [BOB], body="x" * 600 + "\r\n" + "y" * 600 + "\r\n"
        )
        self.assertEqual(
            replies[-1], "552 5.3.4 Error: message size exceeds fixed limit"
        )
        self.assertEqual(self.stored(), [])
        self.assertEqual(self.codes(self.transaction(session, [BOB]))[-1], "250")

    def test_hopLimit(self) -> None:
        """More Received headers than the hop limit is 554 5.4.6 (a loop)."""
        session = self.mx(hopLimit=3)
        session.command("EHLO c.example")
        body = "Received: from a\r\n" * 4 + "\r\nloop\r\n"
        self.assertEqual(
            self.transaction(session, [BOB], body=body)[-1][:10], "554 5.4.6 "
        )
        body = "Received: from a\r\n" * 3 + "\r\nfine\r\n"
        self.assertEqual(
            self.codes(self.transaction(session, [BOB], body=body))[-1], "250"
        )

    def test_quotaFullAtRcpt(self) -> None:
        """A mailbox already at its quota is 452 4.2.2 at RCPT."""
        self.world = MailWorld(quota=100)
        staged = self.world.store.mail.stage()
        staged.write(b"x" * 100)
        self.world.store.mail.deliver(staged, [DeliveryTarget(BOB)])
        session = self.mx()
        session.command("EHLO c.example")
        session.command("MAIL FROM:<a@crepes.fr>")
        self.assertEqual(
            session.command(f"RCPT TO:<{BOB}>"), [f"452 4.2.2 <{BOB}>: Mailbox full"]
        )
        self.assertEqual(session.command(f"RCPT TO:<{ALICE}>"), ["250 2.1.5 Ok"])

    def test_quotaAtData(self) -> None:
        """A message that would overflow the quota is 552 5.2.2 after DATA."""
        self.world = MailWorld(quota=100)
        session = self.mx()
        session.command("EHLO c.example")
        replies = self.transaction(session, [BOB], body="x" * 200 + "\r\n")
        self.assertEqual(replies[-1], f"552 5.2.2 <{BOB}>: Mailbox full")

    def test_quotaWithSize(self) -> None:
        """With SIZE declared, an overflowing recipient is 552 5.2.2 at RCPT."""
        self.world = MailWorld(quota=100)
        session = self.mx()
        session.command("EHLO c.example")
        session.command("MAIL FROM:<a@crepes.fr> SIZE=500")
        self.assertEqual(session.command(f"RCPT TO:<{BOB}>")[0][:10], "552 5.2.2 ")

    def test_quotaUsageCached(self) -> None:
        """
        RCPT's check reads an account's usage at most once a second and
        counts this server's own deliveries meanwhile; mail stored by
        another way shows once the second is over.
        """
        factory = self.world.smtpFactory()
        session = self.world.connect(factory)
        session.read()
        session.command("EHLO c.example")
        self.assertEqual(self.successResultOf(factory.usage.used(BOB)), 0)
        self.assertEqual(self.codes(self.transaction(session, [BOB]))[-1], "250")
        counted = self.successResultOf(factory.usage.used(BOB))
        self.assertGreater(counted, 0)
        store = self.world.store.mail
        staged = store.stage()
        staged.write(b"y" * 200)
        self.successResultOf(store.deliver(staged, [DeliveryTarget(BOB)]))
        self.assertEqual(self.successResultOf(factory.usage.used(BOB)), counted)
        self.world.clock.advance(1)
        self.assertEqual(
            self.successResultOf(factory.usage.used(BOB)),
            self.successResultOf(store.usage(BOB)).bytes,
        )

    def test_userQuota(self) -> None:
        """An account's own quota overrides the default."""
        self.world.store.users.addUser(
            "tiny@example.org", hashPassword("pw-tiny-12", log2n=4), quota=10
        )
        session = self.mx()
        session.command("EHLO c.example")
        session.command("MAIL FROM:<a@crepes.fr> SIZE=500")
        self.assertEqual(
            session.command("RCPT TO:<tiny@example.org>")[0][:10], "552 5.2.2 "
        )
        self.assertEqual(session.command(f"RCPT TO:<{BOB}>"), ["250 2.1.5 Ok"])


class RememberedRecipientTests(SMTPTestCase):
    """
    An account's own address, once found, is answered at RCPT from memory
    (no store read, nothing held); accounts changing make it read again.
    """

    def slowRouter(self, quota: int | None = None) -> SlowUsers:
        """Route through a user store whose lookups wait for the test."""
        world = self.world = MailWorld(quota=quota)
        slow = SlowUsers(world.store.users)

        async def localDomains() -> frozenset[str]:
            return frozenset({"example.org"}) | await world.store.users.domains()

        world.router = Router(slow, localDomains, quota, now=world.clock.seconds)
        return slow

    def test_secondRecipientAtOnce(self) -> None:
        """
        The first RCPT for an account waits for its lookup; the next ones,
        in this session or another, are answered at once, in the same
        write as the MAIL before them.
        """
        slow = self.slowRouter()
        session = self.mx()
        session.command("EHLO c.example")
        session.send(f"MAIL FROM:<a@crepes.fr>\r\nRCPT TO:<{BOB}>\r\n")
        self.assertEqual(len(slow.pending), 1)
        slow.release()
        self.assertEqual(self.codes(session.lines()), ["250", "250"])
        session.command("RSET")
        other = self.mx()
        other.command("EHLO c.example")
        written: list[bytes] = []
        write = other.transport.write
        other.transport.write = lambda data: (written.append(data), write(data))
        other.send(f"MAIL FROM:<a@crepes.fr>\r\nRCPT TO:<{BOB}>\r\n")
        self.assertEqual(slow.pending, [])
        self.assertEqual(written, [b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"])
        self.assertEqual(
            self.codes(self.transaction(other, [BOB])[1:]), ["250", "354", "250"]
        )
        self.assertEqual(slow.pending, [])
        self.assertEqual(len(self.stored()), 1)

    def test_deletedAccountRefused(self) -> None:
        """
        An account deleted through the store is unknown at the next RCPT,
        however recently it was found.
        """
        slow = self.slowRouter()
        session = self.mx()
        session.command("EHLO c.example")
        session.command("MAIL FROM:<a@crepes.fr>")
        self.assertEqual(self.codes(session.send(f"RCPT TO:<{BOB}>\r\n")), [])
        slow.release()
        self.assertEqual(self.codes(session.lines()), ["250"])
        self.successResultOf(self.world.store.users.deleteUser(BOB))
        session.send(f"RCPT TO:<{BOB}>\r\n")
        slow.release()
        self.assertEqual(session.lines()[0][:10], "550 5.1.1 ")

    def test_quotaFromMemory(self) -> None:
        """
        With the account and its usage in memory, RCPT's quota check is
        made at once: a declared SIZE too large for the room left is
        552 5.2.2, a full mailbox 452 4.2.2, with no lookup.
        """
        slow = self.slowRouter(quota=1000)
        session = self.mx()
        session.command("EHLO c.example")
        session.command("MAIL FROM:<a@crepes.fr>")
        session.send(f"RCPT TO:<{BOB}>\r\n")
        slow.release()
        self.assertEqual(self.codes(session.lines()), ["250"])
        session.command("RSET")
        session.command("MAIL FROM:<a@crepes.fr> SIZE=5000")
        self.assertEqual(session.command(f"RCPT TO:<{BOB}>")[0][:10], "552 5.2.2 ")
        session.command("RSET")
        self.assertEqual(slow.pending, [])
        factory = session.protocol.factory
        factory.usage.added([BOB], 1000)
        session.command("MAIL FROM:<a@crepes.fr>")
        self.assertEqual(
            session.command(f"RCPT TO:<{BOB}>"), [f"452 4.2.2 <{BOB}>: Mailbox full"]
        )
        self.assertEqual(slow.pending, [])


class PipeliningTests(SMTPTestCase):
    def test_inOrder(self) -> None:
        """
        A pipelined transaction whose recipient checks are asynchronous is
        answered in order: nothing after a pending RCPT is answered before
        it (RFC 2920).
        """
        slow = SlowUsers(self.world.store.users)
        self.world.router._users = slow
        session = self.mx()
        replies = session.send(
            "EHLO c.example\r\nMAIL FROM:<a@crepes.fr>\r\n"
            f"RCPT TO:<{BOB}>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<{ALICE}>\r\n"
            "DATA\r\nSubject: p\r\n\r\npipelined\r\n.\r\nQUIT\r\n"
        )
        # The replies so far wait for the pending RCPT's (RFC 2920 3.1).
        self.assertEqual(replies, [])
        while slow.pending:
            slow.release()
            replies += session.lines()
        self.assertEqual(
            self.codes(replies),
            ["250", "250", "250", "550", "250", "354", "250", "221"],
        )
        self.assertEqual(len(self.stored(ALICE)), 1)

    def writes(self, session: Any) -> list[bytes]:
        """Record every write to the session's transport."""
        written: list[bytes] = []
        write = session.transport.write

        def recording(data: bytes) -> None:
            written.append(data)
            write(data)

        session.transport.write = recording
        return written

    def test_oneWrite(self) -> None:
        """
        The replies to a pipelined group, asynchronous RCPTs included, go
        out in one write once the group is answered.
        """
        slow = SlowUsers(self.world.store.users)
        self.world.router._users = slow
        session = self.mx()
        session.command("EHLO c.example")
        written = self.writes(session)
        session.send(f"MAIL FROM:<a@crepes.fr>\r\nRCPT TO:<{BOB}>\r\n")
        self.assertEqual(written, [])
        slow.release()
        self.assertEqual(written, [b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"])

    def test_unpipelinedAtOnce(self) -> None:
        """A command alone is answered at once, in its own write."""
        session = self.mx()
        written = self.writes(session)
        session.command("EHLO c.example")
        session.command("MAIL FROM:<a@crepes.fr>")
        session.command(f"RCPT TO:<{BOB}>")
        self.assertEqual(len(written), 3)
        self.assertEqual(written[1:], [b"250 2.1.0 Ok\r\n", b"250 2.1.5 Ok\r\n"])

    def test_quitFlushes(self) -> None:
        """
        A pipelined QUIT after a pending RCPT closes the connection only
        after every reply was written.
        """
        slow = SlowUsers(self.world.store.users)
        self.world.router._users = slow
        session = self.mx()
        session.command("EHLO c.example")
        written = self.writes(session)
        session.send(f"MAIL FROM:<a@crepes.fr>\r\nRCPT TO:<{BOB}>\r\nQUIT\r\n")
        self.assertFalse(session.transport.disconnecting)
        lose = session.transport.loseConnection

        def losing() -> None:
            self.assertEqual(
                self.codes(b"".join(written).decode().splitlines()),
                ["250", "250", "221"],
            )
            lose()

        session.transport.loseConnection = losing
        slow.release()
        self.assertTrue(session.transport.disconnecting)

    def test_manyRepliesBounded(self) -> None:
        """
        A long pipelined group is written in pieces of at most a dozen
        lines (what C{--trace} logs of one write).
        """
        session = self.mx()
        written = self.writes(session)
        session.send("NOOP\r\n" * 30)
        self.assertEqual([piece.count(b"\n") for piece in written], [12, 12, 6])


class STARTTLSTests(SMTPTestCase):
    def test_injectionDiscarded(self) -> None:
        """
        Commands pipelined after STARTTLS (before the handshake) are thrown
        away, not executed in the TLS session.
        """
        session = self.mx(tls=True)
        session.command("EHLO c.example")
        replies = session.send(
            "STARTTLS\r\nMAIL FROM:<evil@x.org>\r\nRCPT TO:<bob@example.org>\r\n"
        )
        self.assertEqual(replies, ["220 2.0.0 Ready to start TLS"])
        self.assertIsNotNone(session.transport.tlsStarted)  # type: ignore[attr-defined]
        self.assertEqual(session.command("RCPT TO:<bob@example.org>")[0][:3], "503")

    def test_stateReset(self) -> None:
        """After STARTTLS the client must EHLO again; the transaction is gone."""
        session = self.mx(tls=True)
        session.command("EHLO c.example")
        session.command("MAIL FROM:<a@crepes.fr>")
        session.command("STARTTLS")
        self.assertEqual(
            session.command("MAIL FROM:<a@crepes.fr>"),
            ["503 5.5.1 Error: send HELO/EHLO first"],
        )
        session.command("EHLO c.example")
        replies = self.transaction(session, [BOB])
        self.assertEqual(self.codes(replies)[-1], "250")
        self.assertIn(b"with ESMTPS id", self.stored()[0])
        self.assertIn(b"(using TLS)", self.stored()[0])

    def test_errors(self) -> None:
        """
        STARTTLS without a certificate is 502, with an argument 501, and
        a second time 503.
        """
        self.assertEqual(self.mx().command("STARTTLS")[0][:10], "502 5.5.1 ")
        session = self.mx(tls=True)
        self.assertEqual(session.command("STARTTLS now")[0][:10], "501 5.5.4 ")
        session.command("STARTTLS")
        self.assertEqual(session.command("STARTTLS")[0][:10], "503 5.5.1 ")


class AUTHTests(SMTPTestCase):
    def test_plain(self) -> None:
        """AUTH PLAIN with an initial response logs in: 235."""
        session = self.submission()
        session.command("EHLO c.example")
        self.assertEqual(
            session.command(f"AUTH PLAIN {plain(ALICE, PASSWORD)}"),
            ["235 2.7.0 Authentication successful"],
        )
        self.assertEqual(session.command("AUTH PLAIN x")[0][:10], "503 5.5.1 ")

    def test_plainChallenge(self) -> None:
        """AUTH PLAIN without initial response prompts with an empty 334."""
        session = self.submission()
        session.command("EHLO c.example")
        self.assertEqual(session.command("AUTH PLAIN"), ["334 "])
        self.assertEqual(session.command(plain("alice", PASSWORD))[0][:3], "235")

    def test_login(self) -> None:
        """AUTH LOGIN asks for user name and password in base64."""
        session = self.submission()
        session.command("EHLO c.example")
        self.assertEqual(session.command("AUTH LOGIN"), ["334 VXNlcm5hbWU6"])
        self.assertEqual(session.command(b64(ALICE)), ["334 UGFzc3dvcmQ6"])
        self.assertEqual(session.command(b64(PASSWORD))[0][:3], "235")

    def test_loginInitial(self) -> None:
        """AUTH LOGIN may carry the user name as initial response."""
        session = self.submission()
        session.command("EHLO c.example")
        self.assertEqual(
            session.command(f"AUTH LOGIN {b64(ALICE)}"), ["334 UGFzc3dvcmQ6"]
        )
        self.assertEqual(session.command(b64(PASSWORD))[0][:3], "235")

    def test_badPassword(self) -> None:
        """A wrong password is 535 5.7.8; the session goes on."""
        session = self.submission()
        session.command("EHLO c.example")
        self.assertEqual(
            session.command(f"AUTH PLAIN {plain(ALICE, 'wrong')}"),
            ["535 5.7.8 Authentication credentials invalid"],
        )
        self.assertEqual(session.command("NOOP"), ["250 2.0.0 Ok"])

    def test_throttled(self) -> None:
        """After too many failures from an address, 454 4.7.0."""
        session = self.submission()
        session.command("EHLO c.example")
        for _ in range(3):
            session.command(f"AUTH PLAIN {plain(ALICE, 'wrong')}")
        self.assertEqual(
            session.command(f"AUTH PLAIN {plain(ALICE, PASSWORD)}")[0][:10],
            "454 4.7.0 ",
        )

    def test_cancelAndGarbage(self) -> None:
        """'*' cancels (501); bad base64 is 501; unknown mechanisms 504."""
        session = self.submission()
        session.command("EHLO c.example")
        session.command("AUTH LOGIN")
        self.assertEqual(session.command("*"), ["501 5.7.0 Authentication cancelled"])
        self.assertEqual(session.command("AUTH PLAIN !!!")[0][:10], "501 5.5.2 ")
        self.assertEqual(session.command("AUTH CRAM-MD5")[0][:10], "504 5.5.4 ")
        self.assertEqual(
            session.command(f"AUTH PLAIN {plain(ALICE, PASSWORD, authzid=BOB)}")[0][:3],
            "501",
        )
        self.assertEqual(session.command("NOOP"), ["250 2.0.0 Ok"])

    def test_notOnMX(self) -> None:
        """The MX role has no AUTH: 503."""
        session = self.mx()
        session.command("EHLO c.example")
        self.assertEqual(
            session.command(f"AUTH PLAIN {plain(ALICE, PASSWORD)}"),
            ["503 5.5.1 Error: authentication not enabled"],
        )

    def test_needsTLS(self) -> None:
        """
        Submission from a non-loopback client refuses AUTH before STARTTLS
        with 538 5.7.11, and accepts it after.
        """
        session = self.submission(peer="192.0.2.7", tls=True)
        session.command("EHLO c.example")
        self.assertEqual(
            session.command(f"AUTH PLAIN {plain(ALICE, PASSWORD)}")[0][:11],
            "538 5.7.11 ",
        )
        session.command("STARTTLS")
        session.command("EHLO c.example")
        self.assertEqual(
            session.command(f"AUTH PLAIN {plain(ALICE, PASSWORD)}")[0][:3], "235"
        )

    def test_needsEHLO(self) -> None:
        """AUTH before EHLO is 503."""
        self.assertEqual(self.submission().command("AUTH PLAIN")[0][:10], "503 5.5.1 ")

    def test_authLineMasked(self) -> None:
        """The transcript rule masks AUTH's initial response and 334 answers."""
        from appnet.mail.smtpserver import SMTP_MASK
        from appnet.trace import Transcript

        transcript = Transcript("submission", "peer", SMTP_MASK)
        self.assertEqual(
            transcript._mask(b"AUTH PLAIN c2VjcmV0"), "AUTH PLAIN ********"
        )


class SubmissionTests(SMTPTestCase):
    def loggedIn(self) -> Session:
        session = self.submission()
        session.command("EHLO c.example")
        session.command(f"AUTH PLAIN {plain(ALICE, PASSWORD)}")
        return session

    def test_authRequired(self) -> None:
        """Submission refuses MAIL before AUTH: 530 5.7.0."""
        session = self.submission()
        session.command("EHLO c.example")
        self.assertEqual(
            session.command(f"MAIL FROM:<{ALICE}>"),
            ["530 5.7.0 Authentication required"],
        )

    def test_relayAfterAuth(self) -> None:
        """
        After AUTH, remote recipients are queued and local ones delivered,
        in one transaction; the Received header says ESMTPA.
        """
        session = self.loggedIn()
        replies = self.transaction(session, ["carol@remote.example", BOB], sender=ALICE)
        self.assertEqual(self.codes(replies), ["250", "250", "250", "354", "250"])
        [queued] = self.successResultOf(self.world.store.queue.list())
        self.assertEqual(queued.sender, ALICE)
        self.assertEqual(queued.submitter, ALICE)
        self.assertEqual(
            [r.address for r in queued.recipients], ["carol@remote.example"]
        )
        body = self.successResultOf(self.world.store.queue.openMessage(queued.id))
        data = body.open().read()
        self.assertTrue(data.startswith(b"Received: "), data[:40])
        self.assertIn(b"with ESMTPA id", data)
        self.assertTrue(
            self.stored(BOB)[0].startswith(b"Return-Path: <alice@example.org>\r\n")
        )
        self.assertEqual(self.world.status.counter("submission", "queued"), 1)

    def test_addsDateAndMessageId(self) -> None:
        """Submission adds a missing Date and Message-ID, before the body."""
        session = self.loggedIn()
        self.transaction(
            session, [BOB], sender=ALICE, body="Subject: s\r\n\r\nbody\r\n"
        )
        message = self.stored(BOB)[0]
        headers, _, body = message.partition(b"\r\n\r\n")
        self.assertIn(b"\r\nDate: ", headers)
        self.assertIn(b"\r\nMessage-ID: <", headers)
        self.assertEqual(body, b"body\r\n")

    def test_keepsDateAndMessageId(self) -> None:
        """Existing Date and Message-ID are left alone."""
        session = self.loggedIn()
        self.transaction(
            session,
            [BOB],
            sender=ALICE,
            body=(
                "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nb\r\n"
            ),
        )
        message = self.stored(BOB)[0]
        self.assertEqual(message.count(b"Message-ID:"), 1)
        self.assertEqual(message.count(b"\nDate:"), 1)

    def test_senderMustMatch(self) -> None:
        """
        The envelope sender must be the account, a +tag of it, or an
        alias delivering to it: else 553 5.7.1.
        """
        self.world = MailWorld(aliases={"sales": (ALICE,)})
        session = self.loggedIn()
        self.assertEqual(session.command(f"MAIL FROM:<{BOB}>")[0][:10], "553 5.7.1 ")
        self.assertEqual(
            session.command("MAIL FROM:<alice+x@example.org>"), ["250 2.1.0 Ok"]
        )
        session.command("RSET")
        self.assertEqual(
            session.command("MAIL FROM:<sales@example.org>"), ["250 2.1.0 Ok"]
        )
        session.command("RSET")
        self.assertEqual(session.command("MAIL FROM:<x@remote.example>")[0][:3], "553")
        self.assertEqual(session.command("MAIL FROM:<>"), ["250 2.1.0 Ok"])

    def test_authAfterMail(self) -> None:
        """AUTH inside a transaction is 503."""
        session = self.loggedIn()
        session.command(f"MAIL FROM:<{ALICE}>")
        self.assertEqual(session.command("AUTH PLAIN")[0][:10], "503 5.5.1 ")


class SPFTests(SMTPTestCase):
    """SPF on the MX role, and the clients it skips."""

    ZONE = (
        "@ SOA ns hostmaster 1 3600 900 604800 60\n@ NS ns\nns A 192.0.2.53\n"
        '@ TXT "v=spf1 ip4:192.0.2.1 -all"\n'
    )

    def setUp(self) -> None:
        super().setUp()
        resolver = StaticResolver(zones={"crepes.fr": self.ZONE})
        self.factory = self.world.smtpFactory()
        self.factory.spf = SPFPolicy(
            resolver, "mx.example.org", "reject", ("127.0.0.0/8",)
        )

    def test_checked(self) -> None:
        """A client outside spf_skip failing SPF is refused (reject mode)."""
        session = self.world.connect(self.factory, peer="192.0.2.7")
        session.read()
        session.command("EHLO c.example")
        [reply] = session.command("MAIL FROM:<alice@crepes.fr>")
        self.assertEqual(reply[:10], "550 5.7.23")

    def test_skipped(self) -> None:
        """
        A client in spf_skip is not checked: its MAIL is accepted at once
        and the message gets no Received-SPF field.
        """
        session = self.world.connect(self.factory, peer="127.0.0.1")
        session.read()
        session.command("EHLO c.example")
        replies = self.transaction(session, [BOB])
        self.assertEqual(self.codes(replies), ["250", "250", "354", "250"])
        [stored] = self.stored()
        self.assertNotIn(b"Received-SPF", stored)
        self.assertIn(b"Received: from c.example ([127.0.0.1])", stored)
