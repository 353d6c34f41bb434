"""
Protocol transcripts (C{--trace}) under hostile input. A L{Transcript}
reads every byte of a traced connection in both directions, inside the
listener's protocol wrapper: an exception there ends the connection, and a
line it logs that cannot be written ends up lost.

Oracles, for every case: feeding the client's and the server's bytes, in
any chunks and interleaved, raises nothing; every logged line formats and
encodes as strict UTF-8 (as twistd's log file is written) and holds no
line break.
"""

from __future__ import annotations

import traceback

from twisted.logger import formatEvent

from appnet.mail.imap.server import IMAP_MASK
from appnet.mail.pop3 import POP3_MASK
from appnet.mail.smtpserver import SMTP_MASK
from appnet.trace import MaskRule, Transcript
from appnet.web.server import HTTP_MASK
from tests.robustness.fuzz import Case, FuzzTestCase, Garbage

#: The FTP component builds its mask inline (appnet.ftp.server.build).
FTP_MASK = MaskRule(secretCommands={b"PASS": 0})

RULES = {
    "smtp": SMTP_MASK,
    "pop3": POP3_MASK,
    "imap": IMAP_MASK,
    "ftp": FTP_MASK,
    "http": HTTP_MASK,
}

CLIENT = (
    b"AUTH PLAIN AHNlY3JldA==\r\n",
    b"PASS secret\r\n",
    b"a LOGIN alice secret\r\n",
    b"a APPEND INBOX {5}\r\n",
    b"a APPEND INBOX {5+}\r\n",
    b"a LOGIN {" + b"9" * 30 + b"}\r\n",
    b"a SEARCH {" + b"1" + b"0" * 4400 + b"}\r\n",
    b"DATA\r\n",
    b".\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 5\r\nCookie: a=b\r\n\r\n",
    b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n",
    b"Content-Length: -5\r\n\r\n",
    b"\xff\xfe\x00\r\n",
    b"\x1b[2Jclear\r\n",
    b"x" * 70000,
)
SERVER = (
    b"334 VXNlcm5hbWU6\r\n",
    b"354 go ahead\r\n",
    b"+ Ready for literal data\r\n",
    b"+ \r\n",
    b"250 ok\r\n",
    b"Set-Cookie: appnet_session=secret\r\n",
    b"\xff\xfe\r\n",
    b"line\r\n" * 30,
)


class TranscriptTests(FuzzTestCase):
    """Every protocol's mask, fed hostile dialogues."""

    def check(
        self, transcript: Transcript, fromClient: bool, data: bytes, case: Case
    ) -> None:
        case.record(data if fromClient else b"S:" + data)
        try:
            if fromClient:
                transcript.fromClient(data)
            else:
                transcript.fromServer(data)
        except Exception:
            self.fail(
                f"the transcript raised:\n{traceback.format_exc()}\n{case.describe()}"
            )

    def piece(self, garbage: Garbage, table: tuple[bytes, ...]) -> bytes:
        kind = garbage.random.randrange(4)
        if kind == 0:
            return garbage.blob(200)
        if kind == 1:
            return garbage.mutate(garbage.pick(table))
        return bytes(garbage.pick(table))

    def test_dialogues(self) -> None:
        """
        Hostile dialogues through every mask raise nothing and log only
        lines that can be written.
        """
        for garbage, case in self.cases("trace", 600):
            service = garbage.pick(sorted(RULES))
            mark = len(self.logged)
            transcript = Transcript(service, "192.0.2.7:4000", RULES[service])
            for _ in range(garbage.count(1, 10)):
                fromClient = garbage.chance(0.6)
                data = self.piece(garbage, CLIENT if fromClient else SERVER)
                for chunk in garbage.chunks(data):
                    self.check(transcript, fromClient, chunk, case)
            for i in range(mark, len(self.logged)):
                text = formatEvent(self.logged[i])
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    self.fail(f"log line not UTF-8: {text!r}\n{case.describe()}")
                self.assertNotIn("\n", text, case.describe())
