"""
Tests for sending from the webmail through the submission path, over the
in-memory store.
"""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from appnet.mail.compose import Attachment, compose
from appnet.mail.delivery import Delivery
from appnet.store.interfaces import INBOX, DeliveryTarget
from appnet.webmail.errors import SendRefused
from appnet.webmail.reading import Address, parseMessage
from appnet.webmail.sending import (
    SENT,
    Draft,
    MessageRef,
    Sent,
    Submitter,
    forwardSubject,
    quote,
    replyRecipients,
    replySubject,
)
from appnet.webmail.service import threadRunner
from tests.mail.helpers import ALICE, BOB, MailWorld

CAROL = "carol@example.org"


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


class SubmitterTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = MailWorld(
            aliases={"team@example.org": ("alice@example.org", "bob@example.org")}
        )
        self.clock = self.world.clock
        self.clock.advance(1_800_000_000)
        self.submitter = self.makeSubmitter()

    def makeSubmitter(self, **kw: Any) -> Submitter:
        world = self.world
        options: dict[str, Any] = {
            "hostname": "mx.example.org",
            "maxMessageSize": 100_000,
            "maxRecipients": 10,
        }
        options.update(kw)
        return Submitter(
            world.store,
            world.router,
            Delivery(world.store, self.clock.seconds),
            world.status,
            threadRunner(self.clock),
            **options,
        )

    def send(self, draft: Draft, account: str = ALICE) -> Sent:
        d = self.submitter.send(
            account, draft, client="192.0.2.9", secure=False, now=self.clock.seconds()
        )
        return self.successResultOf(d)

    def refused(self, draft: Draft) -> SendRefused:
        d = self.submitter.send(
            ALICE, draft, client="192.0.2.9", secure=True, now=self.clock.seconds()
        )
        error = self.failureResultOf(d, SendRefused).value
        assert isinstance(error, SendRefused)
        return error

    def messages(self, owner: str, folder: str = INBOX) -> list[tuple[Any, bytes]]:
        mail = self.world.store.mail
        found = []
        for info in self.successResultOf(mail.listMessages(owner, folder)):
            body = self.successResultOf(mail.openMessage(owner, folder, info.uid))
            with body.open() as f:
                found.append((info, f.read()))
        return found

    def queued(self) -> list[Any]:
        return list(self.successResultOf(self.world.store.queue.list()))


class SendTests(SubmitterTestCase):
    def test_localDelivery(self) -> None:
        """
        A message to a local user lands in the INBOX with Return-Path, a
        Received field naming webmail, HTTP and the account, and From set
        to the account.
        """
        sent = self.send(
            Draft(to=("Bob <bob@example.org>",), subject="Hi", text="hello")
        )
        self.assertEqual((sent.local, sent.remote, sent.queueId), ((BOB,), (), None))
        [(_, data)] = self.messages(BOB)
        self.assertTrue(
            data.startswith(
                b"Return-Path: <alice@example.org>\r\nReceived: from [192.0.2.9]"
            )
        )
        self.assertIn(b"(webmail; authenticated as alice@example.org)", data)
        self.assertIn(f"with HTTP id {sent.id};".encode(), data)
        message = parse(data)
        self.assertEqual(message["From"], ALICE)
        self.assertEqual(message["To"], "Bob <bob@example.org>")
        self.assertEqual(message["Subject"], "Hi")
        self.assertEqual(message["Message-ID"], sent.messageId)
        self.assertEqual(message.get_content(), "hello\r\n")
        self.assertEqual(self.world.status.counter("webmail", "sent"), 1)

    def test_remoteQueued(self) -> None:
        """A remote recipient is queued for the relay, without Return-Path."""
        sent = self.send(Draft(to=("zoe@remote.example",), subject="s", text="t"))
        self.assertEqual(sent.remote, ("zoe@remote.example",))
        [queued] = self.queued()
        self.assertEqual(
            (queued.id, queued.sender, queued.submitter), (sent.queueId, ALICE, ALICE)
        )
        self.assertEqual([r.address for r in queued.recipients], ["zoe@remote.example"])
        body = self.successResultOf(self.world.store.queue.openMessage(queued.id))
        with body.open() as f:
            self.assertTrue(f.read().startswith(b"Received: from [192.0.2.9]"))

    def test_aliasesExpand(self) -> None:
        """Recipients are routed as submission routes them: aliases expand."""
        sent = self.send(Draft(to=("team@example.org",), text="t"))
        self.assertEqual(sorted(sent.local), [ALICE, BOB])

    def test_bcc(self) -> None:
        """
        Bcc recipients get the message, but no delivered copy names them;
        the copy in Sent does.
        """
        sent = self.send(
            Draft(to=(BOB,), bcc=("zoe@remote.example",), subject="s", text="t")
        )
        self.assertEqual(sent.remote, ("zoe@remote.example",))
        [(_, data)] = self.messages(BOB)
        self.assertNotIn(b"zoe@remote.example", data)
        self.assertNotIn(b"Bcc", data)
        [(info, copy)] = self.messages(ALICE, SENT)
        self.assertEqual(parse(copy)["Bcc"], "zoe@remote.example")

    def test_onlyBcc(self) -> None:
        """A message with only Bcc recipients has an undisclosed To."""
        self.send(Draft(bcc=(BOB,), text="t"))
        [(_, data)] = self.messages(BOB)
        self.assertEqual(parse(data)["To"], "undisclosed-recipients:;")

    def test_sentCopy(self) -> None:
        """
        A copy goes to Sent, made on first use and \\Seen; it has no
        Return-Path or Received field.
        """
        self.assertNotIn(
            SENT,
            [
                f.name
                for f in self.successResultOf(self.world.store.mail.listFolders(ALICE))
            ],
        )
        sent = self.send(Draft(to=(BOB,), subject="one", text="t"))
        again = self.send(Draft(to=(BOB,), subject="two", text="t"))
        copies = self.messages(ALICE, SENT)
        self.assertEqual([i.uid for i, _ in copies], [sent.sentUid, again.sentUid])
        info, data = copies[0]
        self.assertEqual(info.flags, frozenset({"\\Seen"}))
        self.assertTrue(data.startswith(b"From: alice@example.org"))

    def test_sentCopyOverQuota(self) -> None:
        """When the sender's mailbox is full only the copy is lost."""
        self.successResultOf(self.world.store.users.deleteUser(ALICE))
        self.successResultOf(self.world.store.users.addUser(ALICE, "x", False, 10))
        sent = self.send(Draft(to=(BOB,), subject="s", text="t"))
        self.assertIsNone(sent.sentUid)
        self.assertEqual(len(self.messages(BOB)), 1)

    def test_attachments(self) -> None:
        """Attachments travel base64-encoded with their names and types."""
        self.send(
            Draft(
                to=(BOB,),
                text="see attached",
                attachments=(
                    Attachment(
                        "résumé.pdf", b"%PDF-1.4 binary \x00\xff", "application/pdf"
                    ),
                    Attachment("x.bin", b"\x01", "not a type"),
                ),
            )
        )
        [(_, data)] = self.messages(BOB)
        self.assertLess(max(data), 128)
        parsed = parseMessage(data)
        self.assertEqual(
            [(a.filename, a.contentType, a.size) for a in parsed.attachments],
            [
                ("résumé.pdf", "application/pdf", 18),
                ("x.bin", "application/octet-stream", 1),
            ],
        )

    def test_headerInjection(self) -> None:
        """Line breaks in the subject cannot add header fields."""
        self.send(Draft(to=(BOB,), subject="hi\r\nBcc: zoe@remote.example", text="t"))
        [(_, data)] = self.messages(BOB)
        message = parse(data)
        self.assertIsNone(message["Bcc"])
        self.assertEqual(message["Subject"], "hi Bcc: zoe@remote.example")
        self.assertEqual(self.queued(), [])

    def test_addressForms(self) -> None:
        """Names (quoted or not), brackets and separators are understood."""
        self.world.deliver(BOB, b"x")
        sent = self.send(
            Draft(
                to=('"Doe, John" <bob@example.org>; Alice <alice@example.org>',),
                cc=("zoe@remote.example,",),
                text="t",
            )
        )
        self.assertEqual(sorted(sent.local), [ALICE, BOB])
        self.assertEqual(sent.remote, ("zoe@remote.example",))
        message = parse(self.messages(BOB)[-1][1])
        self.assertEqual(
            message["To"], '"Doe, John" <bob@example.org>, Alice <alice@example.org>'
        )


class RefusedTests(SubmitterTestCase):
    def assertNothingSent(self) -> None:
        self.assertEqual(self.messages(BOB), [])
        self.assertEqual(self.queued(), [])
        self.assertEqual(self.messages(ALICE), [])

    def test_unknownLocalUser(self) -> None:
        """
        One refused recipient stops the whole message, with the reply the
        submission port gives for it.
        """
        error = self.refused(
            Draft(to=(BOB, "nobody@example.org", "zoe@remote.example"), text="t")
        )
        self.assertEqual(error.code, 422)
        [refused] = error.recipients
        self.assertEqual(refused["address"], "nobody@example.org")
        self.assertEqual(refused["code"], 550)
        self.assertTrue(refused["reply"].startswith("5.1.1 "))
        self.assertNothingSent()

    def test_badSyntax(self) -> None:
        """Addresses that do not parse are refused, naming them."""
        for bad in (
            "bob",
            "bob@",
            "a b@example.org",
            "bob@exa mple.org",
            "zoë@example.org",
        ):
            error = self.refused(Draft(to=(bad,), text="t"))
            self.assertEqual(error.code, 400, bad)
        self.assertNothingSent()

    def test_noRecipients(self) -> None:
        """A message needs a recipient."""
        self.assertEqual(self.refused(Draft(to=("  ",), text="t")).code, 400)

    def test_tooManyRecipients(self) -> None:
        """The submission recipient limit applies."""
        to = tuple(f"u{i}@remote.example" for i in range(11))
        error = self.refused(Draft(to=to, text="t"))
        self.assertEqual(error.code, 400)
        self.assertNothingSent()

    def test_tooLarge(self) -> None:
        """The submission size limit applies to the encoded message."""
        error = self.refused(
            Draft(to=(BOB,), text="t", attachments=(Attachment("a", b"x" * 80_000),))
        )
        self.assertEqual(error.code, 413)
        self.assertNothingSent()

    def test_quota(self) -> None:
        """A local mailbox without room refuses the message: 507, nothing sent."""
        self.world.store.users._users.pop(BOB)
        self.successResultOf(self.world.store.users.addUser(BOB, "x", False, 100))
        error = self.refused(Draft(to=(BOB, "zoe@remote.example"), text="t" * 200))
        self.assertEqual(error.code, 507)
        self.assertNothingSent()


ORIGINAL = (
    b"From: Bob <bob@example.org>\r\n"
    b"To: alice@example.org, carol@example.org\r\n"
    b"Cc: zoe@remote.example\r\n"
    b"Subject: Lunch?\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <two@example.org>\r\n"
    b"References: <zero@example.org> <one@example.org>\r\n"
    b"\r\n"
    b"Crepes at noon?\r\n\r\nBob\r\n"
)


class ReplyForwardTests(SubmitterTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.uid = self.world.deliver(ALICE, ORIGINAL)

    def test_reply(self) -> None:
        """
        A reply carries In-Reply-To and References from the stored
        original, and marks it \\Answered.
        """
        self.send(
            Draft(
                to=(BOB,),
                subject="Re: Lunch?",
                text="yes",
                reply=MessageRef(INBOX, self.uid),
            )
        )
        [(_, data)] = self.messages(BOB)
        message = parse(data)
        self.assertEqual(message["In-Reply-To"], "<two@example.org>")
        self.assertEqual(
            message["References"],
            "<zero@example.org> <one@example.org> <two@example.org>",
        )
        [info] = self.successResultOf(self.world.store.mail.listMessages(ALICE))
        self.assertIn("\\Answered", info.flags)

    def test_replyToMissing(self) -> None:
        """Replying to a message that is gone is refused: 404, nothing sent."""
        error = self.refused(Draft(to=(BOB,), text="t", reply=MessageRef(INBOX, 99)))
        self.assertEqual(error.code, 404)
        self.assertEqual(self.messages(BOB), [])

    def test_forward(self) -> None:
        """
        A forward attaches the original whole as message/rfc822 and marks
        it $Forwarded.
        """
        self.send(
            Draft(
                to=(BOB,),
                subject="Fwd: Lunch?",
                text="fyi",
                forward=MessageRef(INBOX, self.uid),
            )
        )
        [(_, data)] = self.messages(BOB)
        parsed = parseMessage(data)
        self.assertEqual(parsed.text, "fyi\n")
        [attached] = parsed.attachments
        self.assertEqual(
            (attached.contentType, attached.filename), ("message/rfc822", "Lunch_.eml")
        )
        self.assertIn(b"Crepes at noon?", data)
        [info] = self.successResultOf(self.world.store.mail.listMessages(ALICE))
        self.assertIn("$Forwarded", info.flags)

    def test_draftHelpers(self) -> None:
        """Subjects get one prefix; quotes attribute and prefix every line."""
        self.assertEqual(replySubject("Lunch?"), "Re: Lunch?")
        self.assertEqual(replySubject("RE: Lunch?"), "RE: Lunch?")
        self.assertEqual(forwardSubject("Lunch?"), "Fwd: Lunch?")
        self.assertEqual(forwardSubject("Fwd: x"), "Fwd: x")
        parsed = parseMessage(ORIGINAL)
        self.assertEqual(
            quote(parsed),
            "On Tue, 01 Dec 2026 10:00:00 +0000, Bob <bob@example.org> wrote:\n"
            "> Crepes at noon?\n>\n> Bob\n",
        )

    def test_quoteHTML(self) -> None:
        """An HTML-only original is quoted as its text."""
        parsed = parseMessage(
            b"From: a@x.org\r\nContent-Type: text/html\r\n\r\n"
            b"<p>one</p><p>two<script>x</script></p>"
        )
        self.assertEqual(quote(parsed), "a@x.org wrote:\n> one\n> two\n")

    def test_replyRecipients(self) -> None:
        """
        Reply goes to Reply-To else From; reply-all adds To and Cc minus
        the account itself, each once.
        """
        parsed = parseMessage(ORIGINAL)
        self.assertEqual(
            replyRecipients(parsed, ALICE, False), (["Bob <bob@example.org>"], [])
        )
        self.assertEqual(
            replyRecipients(parsed, ALICE, True),
            (["Bob <bob@example.org>"], [CAROL, "zoe@remote.example"]),
        )
        withReplyTo = parseMessage(
            b"From: a@x.org\r\nReply-To: list@x.org\r\nTo: a@x.org\r\n\r\n"
        )
        self.assertEqual(
            replyRecipients(withReplyTo, ALICE, False), (["list@x.org"], [])
        )
        own = parseMessage(b"From: alice@example.org\r\nTo: bob@example.org\r\n\r\n")
        self.assertEqual(replyRecipients(own, ALICE, False), ([BOB], []))

    def test_composeHelper(self) -> None:
        """The composer used is the package's MIME composer (a smoke check)."""
        message = compose(sender=ALICE, to=[BOB], subject="s", text="t")
        self.assertEqual(message["From"], ALICE)
        self.assertIsInstance(Address("", ALICE).formatted(), str)
        self.assertEqual(DeliveryTarget(ALICE).folder, INBOX)
