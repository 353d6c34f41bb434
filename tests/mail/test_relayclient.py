"""
Tests for L{appnet.mail.relay} (the SMTP client side, on a string
transport with a L{Clock}; MX selection over L{StaticResolver}) and for
the queue's L{Schedule}.
"""

from __future__ import annotations

import io
from typing import Any

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.names import dns
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from appnet.dns.client import MailExchanger
from appnet.dns.errors import TemporaryFailure
from appnet.dns.testing import StaticResolver
from appnet.files import inline
from appnet.mail.bounce import Reported, report
from appnet.mail.queue import Schedule
from appnet.mail.relay import (
    DestinationFailed,
    Hop,
    Relay,
    RelayClient,
    RelaySettings,
    Reply,
    SessionFailed,
    Transaction,
    TransactionResult,
)
from tests.mail.helpers import ManualThreads

HOP = Hop("mx.hamburger.edu", "192.0.2.25", 25)
SETTINGS = RelaySettings(hostname="mx.crepes.fr", timeout=60)


def transaction(body: bytes, *recipients: str) -> Transaction:
    return Transaction(
        "alice@crepes.fr",
        recipients or ("bob@hamburger.edu",),
        len(body),
        lambda: io.BytesIO(body),
    )


class Session:
    """A relay client on a string transport, and the server's side of it."""

    def __init__(
        self,
        extensions: bytes = b"250-SIZE 100000\r\n250 8BITMIME\r\n",
        threads: Any = inline,
    ):
        self.clock = Clock()
        self.client = RelayClient(HOP, SETTINGS, self.clock, None, False)
        # The body is read through the file threads' runner, as the
        # relay does (inline here unless a test holds the reads).
        self.client.fileThreads = threads
        self.transport = StringTransport()
        self.client.makeConnection(self.transport)
        self.extensions = extensions

    def sent(self) -> list[bytes]:
        while self.transport.producer is not None:
            self.transport.producer.resumeProducing()
        data = self.transport.value()
        self.transport.clear()
        return data.split(b"\r\n")[:-1]

    def reply(self, data: bytes) -> list[bytes]:
        self.client.dataReceived(data)
        return self.sent()

    def greet(self) -> None:
        assert self.reply(b"220 mx.hamburger.edu ESMTP\r\n") == [b"EHLO mx.crepes.fr"]
        self.reply(b"250-mx.hamburger.edu\r\n" + self.extensions)


class ClientTests(SynchronousTestCase):
    """
    One session, several messages, per-recipient replies.
    """

    def test_transaction(self) -> None:
        """
        The client says EHLO with the configured host name, sends MAIL
        with SIZE and BODY=8BITMIME when offered, one RCPT per
        recipient, the body dot-stuffed with CRLF line ends, and reports
        each recipient's own reply. No RSET follows a message the server
        took: its final reply ended the transaction (RFC 5321 4.1.1.4).
        """
        s = Session()
        s.greet()
        ready = self.successResultOf(s.client.ready)
        self.assertIs(ready, s.client)
        body = b"Subject: x\r\n\r\n.dot first\nbare LF\r\n..two\r\nlast"
        result = s.client.send(
            transaction(body, "nobody@hamburger.edu", "bob@hamburger.edu")
        )
        self.assertEqual(
            s.sent(),
            [b"MAIL FROM:<alice@crepes.fr> SIZE=%d BODY=8BITMIME" % len(body)],
        )
        self.assertEqual(
            s.reply(b"250 2.1.0 Ok\r\n"), [b"RCPT TO:<nobody@hamburger.edu>"]
        )
        self.assertEqual(
            s.reply(b"550 5.1.1 <nobody@hamburger.edu>: unknown\r\n"),
            [b"RCPT TO:<bob@hamburger.edu>"],
        )
        self.assertEqual(s.reply(b"250 2.1.5 Ok\r\n"), [b"DATA"])
        self.assertEqual(
            s.reply(b"354 go ahead\r\n"),
            [
                b"Subject: x",
                b"",
                b"..dot first",
                b"bare LF",
                b"...two",
                b"last",
                b".",
            ],
        )
        self.assertEqual(s.reply(b"250 2.0.0 Ok: queued as X\r\n"), [])
        outcome: TransactionResult = self.successResultOf(result)
        self.assertFalse(outcome.tryElsewhere)
        nobody = outcome.replies["nobody@hamburger.edu"]
        self.assertEqual((nobody.code, nobody.enhanced), (550, "5.1.1"))
        self.assertEqual(nobody.host, ("mx.hamburger.edu", "192.0.2.25"))
        bob = outcome.replies["bob@hamburger.edu"]
        self.assertTrue(bob.success)
        self.assertEqual(bob.text, "Ok: queued as X")

    def test_bodyReadInThreads(self) -> None:
        """
        The body is read only in the file threads, a chunk at a time
        with one read ahead, and reading stops while the connection is
        paused; what is sent is the same dot-stuffed body and final dot.
        """
        threads = ManualThreads()
        s = Session(b"250-SIZE 10000000\r\n250 8BITMIME\r\n", threads=threads)
        s.greet()
        body = b"Subject: x\r\n\r\n" + (b".dot\r\nline\r\n" * 40000)
        result = s.client.send(transaction(body))
        s.reply(b"250 2.1.0 Ok\r\n")
        self.assertEqual(s.reply(b"250 2.1.5 Ok\r\n"), [b"DATA"])
        s.client.dataReceived(b"354 go ahead\r\n")
        self.assertEqual(s.transport.value(), b"")
        self.assertEqual(len(threads.calls), 1)
        threads.runOne()
        self.assertEqual(len(threads.calls), 1)
        s.transport.producer.pauseProducing()
        threads.runOne()
        self.assertEqual(threads.calls, [])
        s.transport.producer.resumeProducing()
        threads.runAll()
        self.assertIsNone(s.transport.producer)
        sent = s.transport.value()
        s.transport.clear()
        self.assertEqual(sent, body.replace(b"\n.", b"\n..") + b".\r\n")
        self.assertEqual(s.reply(b"250 2.0.0 Ok\r\n"), [])
        self.assertTrue(
            self.successResultOf(result).replies["bob@hamburger.edu"].success
        )

    def test_smallBodyReadAhead(self) -> None:
        """
        A small message is read whole in the file threads while the
        server answers MAIL, RCPT and DATA; after the 354 it goes out,
        dot-stuffed, with its final dot.
        """
        threads = ManualThreads()
        s = Session(threads=threads)
        s.greet()
        result = s.client.send(transaction(b"Subject: x\r\n\r\n.dot\r\n"))
        self.assertEqual(len(threads.calls), 1)
        s.reply(b"250 2.1.0 Ok\r\n")
        self.assertEqual(s.reply(b"250 2.1.5 Ok\r\n"), [b"DATA"])
        self.assertEqual(s.reply(b"354 go ahead\r\n"), [])
        threads.runAll()
        self.assertEqual(s.sent(), [b"Subject: x", b"", b"..dot", b"."])
        self.assertEqual(s.reply(b"250 2.0.0 Ok\r\n"), [])
        self.assertTrue(
            self.successResultOf(result).replies["bob@hamburger.edu"].success
        )

    def test_smallBodyGiven(self) -> None:
        """
        A transaction that carries its bytes (a message the queue holds in
        memory) is sent without opening or reading its file.
        """
        threads = ManualThreads()
        s = Session(threads=threads)
        s.greet()
        body = b"Subject: x\r\n\r\n.dot\r\n"

        def unopenable() -> io.BytesIO:
            raise AssertionError("opened")

        result = s.client.send(
            Transaction("alice@crepes.fr", ("bob@hamburger.edu",), len(body),
                        unopenable, data=body)
        )  # fmt: skip
        s.reply(b"250 2.1.0 Ok\r\n")
        self.assertEqual(s.reply(b"250 2.1.5 Ok\r\n"), [b"DATA"])
        self.assertEqual(
            s.reply(b"354 go ahead\r\n"), [b"Subject: x", b"", b"..dot", b"."]
        )
        self.assertEqual(threads.calls, [])
        self.assertEqual(s.reply(b"250 2.0.0 Ok\r\n"), [])
        self.assertTrue(
            self.successResultOf(result).replies["bob@hamburger.edu"].success
        )

    def test_bodyAfterGate(self) -> None:
        """
        A transaction with C{after} sends MAIL, RCPT and DATA at once but
        its body and final dot only once C{after} fires (the previous
        message's outcome on disk, in the queue).
        """
        s = Session()
        s.greet()
        gate: Deferred[None] = Deferred()
        body = b"Subject: x\r\n\r\nhi\r\n"
        result = s.client.send(evolve(transaction(body), after=gate))
        s.reply(b"250 2.1.0 Ok\r\n")
        self.assertEqual(s.reply(b"250 2.1.5 Ok\r\n"), [b"DATA"])
        self.assertEqual(s.reply(b"354 go ahead\r\n"), [])
        gate.callback(None)
        self.assertEqual(s.sent(), [b"Subject: x", b"", b"hi", b"."])
        self.assertEqual(s.reply(b"250 2.0.0 Ok\r\n"), [])
        self.assertTrue(
            self.successResultOf(result).replies["bob@hamburger.edu"].success
        )

    def test_reuse(self) -> None:
        """
        A second message goes out at once after the first was taken, on
        the same connection, without a new EHLO or an RSET; QUIT ends the
        session.
        """
        s = Session()
        s.greet()
        first = s.client.send(transaction(b"one\r\n"))
        s.reply(b"250 ok\r\n")
        s.reply(b"250 ok\r\n")
        s.reply(b"354 go\r\n")
        self.assertEqual(s.reply(b"250 ok\r\n"), [])
        self.assertTrue(
            self.successResultOf(first).replies["bob@hamburger.edu"].success
        )
        second = s.client.send(transaction(b"two\r\n"))
        self.assertEqual(s.sent()[0][:10], b"MAIL FROM:")
        s.reply(b"250 ok\r\n")
        s.reply(b"250 ok\r\n")
        self.assertEqual(s.reply(b"354 go\r\n"), [b"two", b"."])
        s.reply(b"250 ok\r\n")
        self.assertEqual(s.client.sent, 2)
        self.successResultOf(second)
        s.client.quit()
        self.assertEqual(s.sent(), [b"QUIT"])

    def test_tooBigForServer(self) -> None:
        """A message above the server's SIZE fails at once: 552 5.3.4."""
        s = Session(extensions=b"250 SIZE 10\r\n")
        s.greet()
        result = self.successResultOf(s.client.send(transaction(b"x" * 11)))
        reply = result.replies["bob@hamburger.edu"]
        self.assertEqual((reply.code, reply.enhanced), (552, "5.3.4"))
        self.assertEqual(s.sent(), [])

    def test_temporaryMailTriesElsewhere(self) -> None:
        """A 4xx to MAIL defers every recipient and asks for another host."""
        s = Session()
        s.greet()
        result = s.client.send(transaction(b"x\r\n", "a@h.example", "b@h.example"))
        s.reply(b"451 4.3.0 try later\r\n")
        outcome = self.successResultOf(result)
        self.assertTrue(outcome.tryElsewhere)
        self.assertEqual({r.code for r in outcome.replies.values()}, {451})

    def test_lostAfterDot(self) -> None:
        """
        A connection lost after the final dot, before the reply, defers
        the message (the server may have it: never another host at once).
        """
        s = Session()
        s.greet()
        result = s.client.send(transaction(b"x\r\n"))
        s.reply(b"250 ok\r\n")
        s.reply(b"250 ok\r\n")
        s.reply(b"354 go\r\n")
        s.client.connectionLost(Failure(ConnectionLost()))
        outcome = self.successResultOf(result)
        self.assertFalse(outcome.tryElsewhere)
        reply = outcome.replies["bob@hamburger.edu"]
        self.assertEqual(reply.code, 451)
        self.assertIn("during DOT", reply.text)

    def test_refusedGreeting(self) -> None:
        """
        A server refusing the session (554 greeting) fails the set-up
        temporarily: the next server is tried, nothing bounces.
        """
        s = Session()
        s.reply(b"554 5.7.1 go away\r\n")
        failure = self.failureResultOf(s.client.ready, SessionFailed)
        reply = failure.value.reply
        self.assertEqual((reply.code, reply.enhanced), (451, "4.7.1"))
        self.assertIn("go away", reply.text)

    def test_timeout(self) -> None:
        """A silent server times out on the clock given."""
        s = Session()
        s.clock.advance(59)
        self.assertNoResult(s.client.ready)
        s.clock.advance(1)
        self.failureResultOf(s.client.ready, SessionFailed)


PIPELINING = b"250-PIPELINING\r\n250-SIZE 100000\r\n250 8BITMIME\r\n"


class WriteCountingTransport(StringTransport):
    """A string transport that counts its writes and can start TLS."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.tlsStarted: list[object] = []

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)

    def startTLS(self, context: object) -> None:
        self.tlsStarted.append(context)


class PipelinedSession(Session):
    """A session with a server that offers PIPELINING."""

    def __init__(self, extensions: bytes = PIPELINING, **kw: Any) -> None:
        self.clock = Clock()
        self.client = RelayClient(HOP, SETTINGS, self.clock, **kw)
        self.client.fileThreads = inline
        self.transport = WriteCountingTransport()
        self.client.makeConnection(self.transport)
        self.extensions = extensions

    def batch(self) -> tuple[int, list[bytes]]:
        """The writes since the last call, and the lines they held."""
        writes = self.transport.writes
        self.transport.writes = 0
        return writes, self.sent()


def outcome(case: SynchronousTestCase, result: Deferred[TransactionResult]) -> Any:
    """Each recipient's code, enhanced code and text, and tryElsewhere."""
    done = case.successResultOf(result)
    replies = {r: (v.code, v.enhanced, v.text) for r, v in done.replies.items()}
    return replies, done.tryElsewhere


class PipeliningTests(SynchronousTestCase):
    """
    With a server that offers PIPELINING (RFC 2920), MAIL, every RCPT and
    DATA go in one write and the replies are read in order, each still
    given to its own command.
    """

    def start(self, *recipients: str) -> tuple[PipelinedSession, Any]:
        s = PipelinedSession(context=None, requireTLS=False)
        s.greet()
        s.batch()
        result = s.client.send(transaction(b"hello\r\n", *recipients))
        return s, result

    def test_oneWrite(self) -> None:
        """
        The batch (MAIL with SIZE and BODY=8BITMIME, one RCPT per
        recipient, DATA) is one write; the body follows the 354; the
        final reply goes to the recipients accepted, the refused one
        keeps its RCPT reply.
        """
        s, result = self.start("a@h.example", "b@h.example", "c@h.example")
        self.assertEqual(
            s.batch(),
            (
                1,
                [
                    b"MAIL FROM:<alice@crepes.fr> SIZE=7 BODY=8BITMIME",
                    b"RCPT TO:<a@h.example>",
                    b"RCPT TO:<b@h.example>",
                    b"RCPT TO:<c@h.example>",
                    b"DATA",
                ],
            ),
        )
        s.client.dataReceived(
            b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
            b"550 5.1.1 <b@h.example>: unknown\r\n"
            b"450 4.2.0 <c@h.example>: greylisted\r\n"
        )
        self.assertEqual(s.batch(), (0, []))
        self.assertNoResult(result)
        s.client.dataReceived(b"354 go ahead\r\n")
        # A small body and its final dot: one write.
        self.assertEqual(s.batch(), (1, [b"hello", b"."]))
        self.assertEqual(s.reply(b"250 2.0.0 Ok: queued as Q\r\n"), [])
        self.assertEqual(
            outcome(self, result),
            (
                {
                    "a@h.example": (250, "2.0.0", "Ok: queued as Q"),
                    "b@h.example": (550, "5.1.1", "<b@h.example>: unknown"),
                    "c@h.example": (450, "4.2.0", "<c@h.example>: greylisted"),
                },
                False,
            ),
        )

    def test_notOffered(self) -> None:
        """
        Without PIPELINING in the EHLO reply, MAIL goes alone and each
        command waits for the previous reply.
        """
        s = PipelinedSession(
            extensions=b"250 SIZE 100000\r\n", context=None, requireTLS=False
        )
        s.greet()
        s.batch()
        s.client.send(transaction(b"x\r\n", "a@h.example", "b@h.example"))
        self.assertEqual(s.batch(), (1, [b"MAIL FROM:<alice@crepes.fr> SIZE=3"]))
        s.client.dataReceived(b"250 ok\r\n")
        self.assertEqual(s.batch(), (1, [b"RCPT TO:<a@h.example>"]))

    def test_dataRefused(self) -> None:
        """
        A refused DATA gives its reply to the recipients accepted; the
        refused keep their own; a 4xx may go to another server.
        """
        s, result = self.start("a@h.example", "b@h.example")
        s.batch()
        written = s.reply(
            b"250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n451 4.3.0 try later\r\n"
        )
        self.assertEqual(written, [b"RSET"])
        self.assertEqual(
            outcome(self, result),
            (
                {
                    "a@h.example": (451, "4.3.0", "try later"),
                    "b@h.example": (550, "5.1.1", "no such user"),
                },
                True,
            ),
        )

    def test_allRecipientsRefused(self) -> None:
        """
        When every RCPT is refused, the DATA's refusal (RFC 2920 section
        3.1) is read and dropped, no body is sent, each recipient keeps its
        RCPT reply, and after RSET the session takes the next message.
        """
        s, result = self.start("a@h.example", "b@h.example")
        s.batch()
        written = s.reply(
            b"250 ok\r\n550 5.1.1 a unknown\r\n"
            b"551 5.1.6 b moved\r\n554 5.5.1 no valid recipients\r\n"
        )
        self.assertEqual(written, [b"RSET"])
        self.assertEqual(
            outcome(self, result),
            (
                {
                    "a@h.example": (550, "5.1.1", "a unknown"),
                    "b@h.example": (551, "5.1.6", "b moved"),
                },
                False,
            ),
        )
        self.assertTrue(s.client.usable)
        second = s.client.send(transaction(b"two\r\n", "c@h.example"))
        # RSET's reply is still owed: the next batch follows it at once.
        self.assertEqual(
            s.batch()[1][0], b"MAIL FROM:<alice@crepes.fr> SIZE=5 BODY=8BITMIME"
        )
        self.assertEqual(
            s.reply(b"250 2.0.0 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
            [b"two", b"."],
        )
        s.reply(b"250 2.0.0 queued\r\n")
        self.assertTrue(self.successResultOf(second).replies["c@h.example"].success)

    def test_allRefusedButDataTaken(self) -> None:
        """
        A server that answers DATA with 354 although it refused every
        recipient gets a lone dot, not the message; its reply is dropped
        and the recipients keep their RCPT replies.
        """
        s, result = self.start("a@h.example")
        s.batch()
        written = s.reply(b"250 ok\r\n550 5.1.1 unknown\r\n354 go\r\n")
        self.assertEqual(written, [b"."])
        self.assertNoResult(result)
        self.assertEqual(s.reply(b"250 2.0.0 queued, oddly\r\n"), [b"RSET"])
        self.assertEqual(
            outcome(self, result),
            ({"a@h.example": (550, "5.1.1", "unknown")}, False),
        )

    def test_mailRefused(self) -> None:
        """
        A refused MAIL fails every recipient with its reply at once; the
        RCPT and DATA replies after it are read without being given to
        anyone, then RSET, and the next message goes out normally.
        """
        s, result = self.start("a@h.example", "b@h.example")
        s.batch()
        self.assertEqual(s.reply(b"553 5.1.8 sender domain unknown\r\n"), [])
        expected = (553, "5.1.8", "sender domain unknown")
        self.assertEqual(
            outcome(self, result),
            ({"a@h.example": expected, "b@h.example": expected}, False),
        )
        second = s.client.send(transaction(b"two\r\n", "c@h.example"))
        self.assertEqual(s.reply(b"503 5.5.1 need MAIL\r\n"), [])
        self.assertEqual(s.reply(b"503 5.5.1 need MAIL\r\n"), [])
        written = s.reply(b"503 5.5.1 need RCPT\r\n")
        self.assertEqual(
            written,
            [
                b"RSET",
                b"MAIL FROM:<alice@crepes.fr> SIZE=5 BODY=8BITMIME",
                b"RCPT TO:<c@h.example>",
                b"DATA",
            ],
        )
        s.reply(b"250 reset\r\n250 ok\r\n250 ok\r\n354 go\r\n")
        s.reply(b"250 2.0.0 queued\r\n")
        self.assertTrue(self.successResultOf(second).replies["c@h.example"].success)

    def test_temporaryMailRefused(self) -> None:
        """A 4xx to MAIL defers every recipient and asks for another host."""
        s, result = self.start("a@h.example", "b@h.example")
        s.batch()
        s.reply(b"452 4.3.1 insufficient storage\r\n")
        replies, elsewhere = outcome(self, result)
        self.assertTrue(elsewhere)
        self.assertEqual({v[0] for v in replies.values()}, {452})

    def test_closingMidBatch(self) -> None:
        """
        A 421 in the middle of the batch: recipients refused before it
        keep their replies, the others get the 421, the message may go to
        another server, and the session closes without a body.
        """
        s, result = self.start("a@h.example", "b@h.example", "c@h.example")
        s.batch()
        written = s.reply(
            b"250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n421 4.3.2 shutting down\r\n"
        )
        self.assertEqual(written, [])
        closing = (421, "4.3.2", "shutting down")
        self.assertEqual(
            outcome(self, result),
            (
                {
                    "a@h.example": closing,
                    "b@h.example": (550, "5.1.1", "unknown"),
                    "c@h.example": closing,
                },
                True,
            ),
        )
        self.assertFalse(s.client.usable)
        self.assertTrue(s.transport.disconnecting)
        # Nothing after the 421 is read as a reply.
        self.assertEqual(s.reply(b"354 go\r\n"), [])

    def test_closingAtMail(self) -> None:
        """A 421 to MAIL gives every recipient the 421."""
        s, result = self.start("a@h.example")
        s.batch()
        s.reply(b"421 4.7.0 too many connections\r\n")
        self.assertEqual(
            outcome(self, result),
            ({"a@h.example": (421, "4.7.0", "too many connections")}, True),
        )

    def test_nextMessageAtOnce(self) -> None:
        """
        A message sent as soon as the previous one was taken goes out in
        one write at once, with no RSET before it.
        """
        s, result = self.start("a@h.example")
        s.batch()
        following: list[Deferred[TransactionResult]] = []
        result.addCallback(
            lambda _: following.append(
                s.client.send(transaction(b"two\r\n", "b@h.example"))
            )
        )
        s.reply(b"250 ok\r\n250 ok\r\n354 go\r\n")
        s.batch()
        s.client.dataReceived(b"250 queued\r\n")
        self.assertEqual(
            s.batch(),
            (
                1,
                [
                    b"MAIL FROM:<alice@crepes.fr> SIZE=5 BODY=8BITMIME",
                    b"RCPT TO:<b@h.example>",
                    b"DATA",
                ],
            ),
        )
        s.reply(b"250 ok\r\n250 ok\r\n354 go\r\n")
        s.reply(b"250 queued\r\n")
        self.assertTrue(self.successResultOf(following[0]).replies["b@h.example"])

    def test_rsetThenNextMessage(self) -> None:
        """
        After a message the server did not take, a message sent at once
        goes out right behind the RSET, without waiting for its reply; a
        refused RSET ends the session and the message may go elsewhere.
        """
        s, result = self.start("a@h.example")
        s.batch()
        following: list[Deferred[TransactionResult]] = []
        result.addCallback(
            lambda _: following.append(
                s.client.send(transaction(b"two\r\n", "b@h.example"))
            )
        )
        s.reply(b"250 ok\r\n250 ok\r\n354 go\r\n")
        written = s.reply(b"451 4.3.0 try again\r\n")
        self.assertEqual(
            written,
            [
                b"RSET",
                b"MAIL FROM:<alice@crepes.fr> SIZE=5 BODY=8BITMIME",
                b"RCPT TO:<b@h.example>",
                b"DATA",
            ],
        )
        self.assertEqual(s.reply(b"500 5.5.1 what?\r\n"), [b"QUIT"])
        replies, elsewhere = outcome(self, following[0])
        self.assertTrue(elsewhere)
        self.assertEqual(replies["b@h.example"][0], 451)
        self.assertFalse(s.client.usable)

    def test_quitWhileResetting(self) -> None:
        """
        quit() while the RSET after a message is unanswered says QUIT as
        soon as the RSET is answered; after a message the server took
        (no RSET), at once.
        """
        s, result = self.start("a@h.example")
        s.batch()
        s.reply(b"250 ok\r\n250 ok\r\n354 go\r\n")
        self.assertEqual(s.reply(b"250 queued\r\n"), [])
        self.successResultOf(result)
        second = s.client.send(transaction(b"two\r\n", "b@h.example"))
        s.batch()
        s.reply(b"250 ok\r\n250 ok\r\n354 go\r\n")
        self.assertEqual(s.reply(b"452 4.2.2 full\r\n"), [b"RSET"])
        self.successResultOf(second)
        s.client.quit()
        self.assertEqual(s.sent(), [])
        self.assertEqual(s.reply(b"250 reset\r\n"), [b"QUIT"])
        self.assertFalse(s.client.usable)

    def test_tlsAndAuthFirst(self) -> None:
        """
        STARTTLS and AUTH go one command at a time, before any
        pipelining; plain text the server sent after its 220 to STARTTLS
        is dropped, not read as the reply to the EHLO that follows; the
        PIPELINING that counts is the one offered over TLS.
        """
        context = object()
        s = PipelinedSession(
            extensions=b"250-PIPELINING\r\n250 STARTTLS\r\n",
            context=context,
            requireTLS=True,
            username="relay",
            password="secret",
        )
        s.client.dataReceived(b"220 mx.hamburger.edu ESMTP\r\n")
        self.assertEqual(s.batch(), (1, [b"EHLO mx.crepes.fr"]))
        s.client.dataReceived(b"250-mx.hamburger.edu\r\n" + s.extensions)
        self.assertEqual(s.batch(), (1, [b"STARTTLS"]))
        s.client.dataReceived(b"220 go ahead\r\n250 AUTH PLAIN\r\n")
        self.assertEqual(s.transport.tlsStarted, [context])
        self.assertEqual(s.batch(), (1, [b"EHLO mx.crepes.fr"]))
        s.client.dataReceived(
            b"250-mx.hamburger.edu\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"
        )
        writes, lines = s.batch()
        self.assertEqual((writes, lines[0][:11]), (1, b"AUTH PLAIN "))
        self.assertNoResult(s.client.ready)
        s.client.dataReceived(b"235 2.7.0 ok\r\n")
        self.successResultOf(s.client.ready)
        s.client.send(transaction(b"x\r\n", "a@h.example", "b@h.example"))
        self.assertEqual(
            s.batch(),
            (
                1,
                [
                    b"MAIL FROM:<alice@crepes.fr>",
                    b"RCPT TO:<a@h.example>",
                    b"RCPT TO:<b@h.example>",
                    b"DATA",
                ],
            ),
        )


class ReplyTests(SynchronousTestCase):
    """Replies as stored and read back."""

    def test_roundTrip(self) -> None:
        """A stored reply reads back the same, with or without a host."""
        for reply in (
            Reply(550, "5.1.1", "<x@y>: unknown (really)", ("mx.y", "192.0.2.1")),
            Reply(451, "4.4.1", "connect to mx.y[192.0.2.1]:25 failed"),
        ):
            self.assertEqual(Reply.parse(str(reply)), reply)

    def test_fromServer(self) -> None:
        """The server's enhanced code is used only if its class matches."""
        self.assertEqual(Reply.fromServer(550, b"5.7.1 no", None).enhanced, "5.7.1")
        self.assertEqual(Reply.fromServer(550, b"4.7.1 no", None).enhanced, "5.0.0")
        self.assertEqual(
            Reply.fromServer(421, b"busy\nreally", None).text, "busy really"
        )


ZONE = """\
@ SOA ns hostmaster 1 3600 900 604800 60
@ NS ns
ns A 192.0.2.53
@ MX 20 mx2
@ MX 10 mx1
mx1 A 192.0.2.10
mx2 A 192.0.2.20
mx2 AAAA 2001:db8::20
direct A 192.0.2.30
nullmx MX 0 .
self MX 10 mx1
self MX 20 me
me A 192.0.2.99
loop MX 10 me
"""


class SlowResolver:
    """MX lookups that wait until the test answers them."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Deferred[list[MailExchanger]]]] = []

    def lookupMX(self, domain: str) -> Deferred[list[MailExchanger]]:
        d: Deferred[list[MailExchanger]] = Deferred()
        self.asked.append((domain, d))
        return d


class HopsTests(SynchronousTestCase):
    """
    Where a domain's mail goes.
    """

    def test_sharedLookup(self) -> None:
        """
        Connections opened together for one domain share its lookup, a
        failure too; a later one asks again.
        """
        resolver = SlowResolver()
        settings = RelaySettings(hostname="mx.crepes.fr", port=2525)
        relay = Relay(Clock(), resolver, settings)  # type: ignore[arg-type]

        def hops(domain: str) -> Deferred[list[Hop]]:
            return Deferred.fromCoroutine(relay.hops(domain))

        first, second = hops("a.example"), hops("a.example")
        other = hops("b.example")
        self.assertEqual([d for d, _ in resolver.asked], ["a.example", "b.example"])
        resolver.asked[0][1].callback(
            [MailExchanger(10, "mx.a.example", ("192.0.2.1",))]
        )
        expected = ["mx.a.example[192.0.2.1]:2525"]
        self.assertEqual([str(h) for h in self.successResultOf(first)], expected)
        self.assertEqual([str(h) for h in self.successResultOf(second)], expected)
        third = hops("a.example")
        self.assertEqual(len(resolver.asked), 3)
        resolver.asked[1][1].errback(TemporaryFailure("b.example", "SERVFAIL"))
        self.failureResultOf(other, DestinationFailed)
        resolver.asked[2][1].callback(
            [MailExchanger(10, "mx.a.example", ("192.0.2.1",))]
        )
        self.successResultOf(third)

    def relay(self, **kw: Any) -> Relay:
        resolver = StaticResolver(
            zones={"example.org": ZONE}, failures={"broken.example": dns.ESERVER}
        )
        settings = RelaySettings(hostname="mx.crepes.fr", port=2525, **kw)
        return Relay(Clock(), resolver, settings, lambda h: h.address == "192.0.2.99")

    def hops(self, domain: str, **kw: Any) -> list[str]:
        return [str(h) for h in self.successResultOf(self.relay(**kw).hops(domain))]

    def failure(self, domain: str) -> Reply:
        error = self.failureResultOf(self.relay().hops(domain), DestinationFailed)
        return error.value.reply

    def test_preference(self) -> None:
        """MX hosts by preference, each with its addresses, on relay_port."""
        self.assertEqual(
            self.hops("example.org"),
            [
                "mx1.example.org[192.0.2.10]:2525",
                "mx2.example.org[192.0.2.20]:2525",
                "mx2.example.org[2001:db8::20]:2525",
            ],
        )
        self.assertEqual(
            self.hops("example.org", bindAddress="127.0.0.2"),
            [
                "mx1.example.org[192.0.2.10]:2525",
                "mx2.example.org[192.0.2.20]:2525",
            ],
        )

    def test_implicitMX(self) -> None:
        """Without MX records the domain's own address is used."""
        self.assertEqual(
            self.hops("direct.example.org"), ["direct.example.org[192.0.2.30]:2525"]
        )

    def test_permanentFailures(self) -> None:
        """Null MX, a missing domain and a loop back to us bounce."""
        self.assertEqual(self.failure("nullmx.example.org").enhanced, "5.1.10")
        self.assertEqual(self.failure("gone.example.org").enhanced, "5.1.2")
        self.assertEqual(self.failure("loop.example.org").enhanced, "5.4.6")
        self.assertTrue(self.failure("loop.example.org").permanent)

    def test_selfCutsOff(self) -> None:
        """Hosts as preferred as this node, or less, are dropped."""
        self.assertEqual(
            self.hops("self.example.org"), ["mx1.example.org[192.0.2.10]:2525"]
        )

    def test_temporaryFailure(self) -> None:
        """A DNS failure defers."""
        reply = self.failure("broken.example")
        self.assertEqual((reply.code, reply.enhanced), (451, "4.4.3"))

    def test_dnsFailuresSaidPlainly(self) -> None:
        """
        A reply caused by DNS says which lookup failed and how, and the
        DSN built from it carries that text.
        """
        self.assertEqual(
            self.failure("broken.example").text,
            "DNS lookup of MX for broken.example failed: SERVFAIL from static:0",
        )
        self.assertEqual(
            self.failure("gone.example.org").text,
            "DNS lookup of MX for gone.example.org failed: no such domain (NXDOMAIN)",
        )
        dsn = report(
            hostname="mx.crepes.fr",
            queueId=7,
            sender="alice@crepes.fr",
            arrived=0.0,
            now=0.0,
            failures=[
                Reported("bob@broken.example", self.failure("broken.example"), 0.0)
            ],
            header=b"Subject: x\r\n\r\n",
        )
        text = dsn.replace(b"=\r\n", b"").decode()
        self.assertIn("DNS lookup of MX for broken.example failed: SERVFAIL", text)

    def test_smarthost(self) -> None:
        """With a smarthost every domain goes there."""
        relay = self.relay(smarthost=("mx1.example.org", 587))
        self.assertEqual(relay.destination("anything.example"), "[mx1.example.org]:587")
        hops = self.successResultOf(relay.hops("anything.example"))
        self.assertEqual([str(h) for h in hops], ["mx1.example.org[192.0.2.10]:587"])


class ScheduleTests(SynchronousTestCase):
    """Backoff, expiry, delay warning."""

    def test_backoff(self) -> None:
        """Waits follow the list, the last repeats, never past expiry."""
        schedule = Schedule((60.0, 120.0), maxAge=1000.0, delayWarning=100.0)
        self.assertEqual(schedule.nextAttempt(0, 1, 0), 60)
        self.assertEqual(schedule.nextAttempt(0, 2, 60), 180)
        self.assertEqual(schedule.nextAttempt(0, 5, 500), 620)
        self.assertEqual(schedule.nextAttempt(0, 9, 950), 1000)
        self.assertTrue(schedule.expired(0, 1000))
        self.assertFalse(schedule.expired(0, 999))
        self.assertTrue(schedule.warnNow(0, 100))
        self.assertFalse(Schedule(delayWarning=0).warnNow(0, 10**9))


class PlainFallbackTests(SynchronousTestCase):
    """
    Opportunistic TLS that fails its handshake falls back to plain text
    for that host (a smarthost never does).
    """

    def relay(self, **kw: Any) -> tuple[Relay, list[bool]]:
        attempts: list[bool] = []

        class Scripted(Relay):
            async def _connect(self, hop: Hop, plain: bool) -> Any:
                attempts.append(plain)
                if not plain:
                    reply = Reply(451, "4.4.2", "handshake failed")
                    raise SessionFailed(reply, tlsBroken=True)
                return object()

        relay = Scripted(Clock(), StaticResolver(), RelaySettings(hostname="h", **kw))
        return relay, attempts

    def test_fallback(self) -> None:
        """
        After a failed handshake the host is tried again at once in plain
        text, and in plain text from then on (for an hour).
        """
        relay, attempts = self.relay()
        self.successResultOf(Deferred.fromCoroutine(relay.connect(HOP)))
        self.assertEqual(attempts, [False, True])
        self.successResultOf(Deferred.fromCoroutine(relay.connect(HOP)))
        self.assertEqual(attempts, [False, True, True])

    def test_smarthostNever(self) -> None:
        """A smarthost's TLS failure is a failure."""
        relay, attempts = self.relay(smarthost=("smtp.example", 587))
        failure = self.failureResultOf(
            Deferred.fromCoroutine(relay.connect(HOP)), SessionFailed
        )
        self.assertTrue(failure.value.tlsBroken)
        self.assertEqual(attempts, [False])
