"""
Tests for L{appnet.trace}: transcripts with secrets masked.
"""

from __future__ import annotations

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from appnet.trace import MASKED, MaskRule, Transcript

SMTP = MaskRule(secretCommands={b"AUTH": 1}, challenges=(b"334 ",), bodyStart=(b"354",))
POP3 = MaskRule(
    secretCommands={b"PASS": 0, b"APOP": 1, b"AUTH": 1}, challenges=(b"+ ",)
)
IMAP = MaskRule(
    secretCommands={b"LOGIN": 1, b"AUTHENTICATE": 1},
    tagged=True,
    challenges=(b"+",),
    literals=True,
)


class TranscriptTests(SynchronousTestCase):
    """
    Lines are logged as C:/S: with passwords masked.
    """

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def transcript(self, rule: MaskRule) -> Transcript:
        return Transcript("smtp", "127.0.0.1:5000", rule)

    def lines(self) -> list[str]:
        return [
            formatEvent(e).split(" ", 2)[2]
            for e in self.events
            if e.get("log_namespace") == "appnet.trace.Transcript"
        ]

    def test_plainDialogue(self) -> None:
        """Both directions, split into lines across chunks."""
        t = self.transcript(SMTP)
        t.fromServer(b"220 appnet ESMTP\r\n")
        t.fromClient(b"EHLO cre")
        t.fromClient(b"pes.fr\r\nMAIL FROM:<alice@crepes.fr>\r\n")
        self.assertEqual(
            self.lines(),
            [
                "S: 220 appnet ESMTP",
                "C: EHLO crepes.fr",
                "C: MAIL FROM:<alice@crepes.fr>",
            ],
        )
        self.assertIn("smtp 127.0.0.1:5000", formatEvent(self.events[0]))

    def test_authPlainInitialResponse(self) -> None:
        t = self.transcript(SMTP)
        t.fromClient(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
        self.assertEqual(self.lines(), [f"C: AUTH PLAIN {MASKED}"])

    def test_challengeResponse(self) -> None:
        """After a SASL challenge the client's next line is masked."""
        t = self.transcript(SMTP)
        t.fromClient(b"AUTH LOGIN\r\n")
        t.fromServer(b"334 VXNlcm5hbWU6\r\n")
        t.fromClient(b"YWxpY2U=\r\n")
        t.fromServer(b"334 UGFzc3dvcmQ6\r\n")
        t.fromClient(b"c2VjcmV0\r\n")
        t.fromServer(b"235 ok\r\n")
        self.assertEqual(
            self.lines(),
            [
                "C: AUTH LOGIN",
                "S: 334 VXNlcm5hbWU6",
                f"C: {MASKED}",
                "S: 334 UGFzc3dvcmQ6",
                f"C: {MASKED}",
                "S: 235 ok",
            ],
        )

    def test_messageBodySummarised(self) -> None:
        """An SMTP message body is counted, not logged."""
        t = self.transcript(SMTP)
        t.fromServer(b"354 go ahead\r\n")
        t.fromClient(b"Subject: private\r\n\r\nsecret text\r\n.\r\nQUIT\r\n")
        self.assertEqual(
            self.lines(),
            ["S: 354 go ahead", "C: <message, 3 lines, 33 bytes>", "C: .", "C: QUIT"],
        )

    def test_pop3Pass(self) -> None:
        t = self.transcript(POP3)
        t.fromClient(
            b"USER alice\r\nPASS hunter2 and more\r\nAPOP alice c4c9334bac560ecc\r\n"
        )
        self.assertEqual(
            self.lines(),
            ["C: USER alice", f"C: PASS {MASKED}", f"C: APOP alice {MASKED}"],
        )

    def test_imapTaggedLogin(self) -> None:
        t = self.transcript(IMAP)
        t.fromClient(b"a1 login alice secret\r\na2 SELECT INBOX\r\n")
        self.assertEqual(
            self.lines(), [f"C: a1 login alice {MASKED}", "C: a2 SELECT INBOX"]
        )

    def test_imapLiteral(self) -> None:
        """Literal data is summarised; its continuation is no SASL challenge."""
        t = self.transcript(IMAP)
        t.fromClient(b"a1 APPEND INBOX {12}\r\n")
        t.fromServer(b"+ Ready\r\n")
        t.fromClient(b"Hello\r\nWorld\r\n")
        t.fromServer(b"a1 OK done\r\n")
        self.assertEqual(
            self.lines(),
            [
                "C: a1 APPEND INBOX {12}",
                "S: + Ready",
                "C: <literal, 12 bytes>",
                "C: ",
                "S: a1 OK done",
            ],
        )

    def test_imapLiteralTooManyDigits(self) -> None:
        """
        A literal size of thousands of digits (no server accepts it) is
        logged as a line, not raised from int() inside the connection's
        dataReceived (found by tests.robustness.test_trace).
        """
        t = self.transcript(IMAP)
        size = b"1" + b"0" * 4400
        t.fromClient(b"a1 SEARCH TEXT {" + size + b"}\r\na2 NOOP\r\n")
        self.assertEqual(self.lines()[-1], "C: a2 NOOP")

    def test_longServerOutputCut(self) -> None:
        """A long multi-line answer is logged in part, then counted."""
        t = self.transcript(POP3)
        body = b"".join(b"line %d\r\n" % i for i in range(100))
        t.fromServer(b"+OK\r\n" + body + b".\r\n")
        lines = self.lines()
        self.assertEqual(len(lines), 13)
        self.assertTrue(lines[-1].startswith("S: <90 more lines"))

    def test_nonUTF8(self) -> None:
        """Undecodable bytes are shown escaped, never raise."""
        t = self.transcript(SMTP)
        t.fromClient(b"HELO \xff\r\n")
        self.assertEqual(self.lines(), ["C: HELO \\xff"])
