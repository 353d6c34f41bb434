"""
Tests for L{appnet.mail.imap.textsearch}: SEARCH BODY/TEXT as a stream
finds what the C{email} package's full parse finds, in bounded memory.
"""

from __future__ import annotations

import base64
import email
import io
import tracemalloc
from email.message import EmailMessage
from email.policy import default as defaultPolicy

from twisted.trial.unittest import SynchronousTestCase

from appnet.mail.imap import mime
from appnet.mail.imap.search import rawContains
from appnet.mail.imap.textsearch import containsText


def fullText(data: bytes) -> str:
    """The decoded text of every text part, by a whole-message parse."""
    message = email.message_from_bytes(data, policy=defaultPolicy)
    assert isinstance(message, EmailMessage)
    texts = []
    for part in message.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        content = part.get_content()
        texts.append(str(content))
    return "\n".join(texts).casefold()


PLAIN = b"Subject: plain\r\n\r\nHello Wonderful World\r\nsecond line\r\n"

MULTIPART = (
    b"Subject: multi\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"preamble words\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Caf=C3=A9 cr=C3=A8me, soft=\r\nbreak joined\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
    b"--inner\r\n"
    b"Content-Type: text/html; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes("<p>Grüße aus Köln</p>".encode("latin-1")).replace(
        b"\n", b"\r\n"
    )
    + b"--inner--\r\n"
    b"--outer\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(b"binary secret payload").replace(b"\n", b"\r\n")
    + b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\n\r\nforwarded needle text\r\n"
    b"--outer--\r\n"
    b"epilogue words\r\n"
)


class ContainsTextTests(SynchronousTestCase):
    """Streaming search agrees with a full parse."""

    def check(self, data: bytes, needle: str) -> None:
        expected = needle.casefold() in fullText(data)
        found = containsText(io.BytesIO(data), needle.casefold())
        self.assertEqual(found, expected, needle)

    def test_agreesWithFullParse(self) -> None:
        """
        For words in plain and nested multipart messages, in quoted-
        printable, base64 and 8-bit charsets, in parts that are not text,
        and in preambles and epilogues, the answer is the full parse's.
        """
        for needle in ["wonderful world", "SECOND", "absent", "hello"]:
            self.check(PLAIN, needle)
        single = (
            b"Subject: b64\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes("Zwölf Boxkämpfer jagen Viktor".encode())
        )
        for needle in ["zwölf boxkämpfer", "viktor", "eva"]:
            self.check(single, needle)
        for needle in [
            "café crème",
            "soft" + "break",
            "grüße aus köln",
            "<p>",
            "secret payload",
            "preamble",
            "epilogue",
            "forwarded needle",
            "Subject: inner",
            "nothing like it",
        ]:
            self.check(MULTIPART, needle)

    def test_acrossChunks(self) -> None:
        """A match that straddles two read pieces of a long line is found."""
        line = b"a" * ((1 << 16) - 3) + b"NEEDLE" + b"b" * 10
        data = b"Subject: long\r\n\r\n" + line + b"\r\n"
        self.assertTrue(containsText(io.BytesIO(data), "needle"))
        self.assertFalse(containsText(io.BytesIO(data), "needles"))

    def test_boundedMemory(self) -> None:
        """
        Searching a few messages of several megabytes (base64 text and
        plain text) allocates at most a few hundred kilobytes at peak.
        """
        text = ("All work and no play makes Jack a dull boy. " * 20 + "\n") * 5000
        encoded = base64.encodebytes(text.encode()).replace(b"\n", b"\r\n")
        messages = [
            b"Subject: big\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded,
            b"Subject: big\r\n\r\n" + text.encode().replace(b"\n", b"\r\n"),
        ]
        self.assertGreater(min(len(m) for m in messages), 4 << 20)
        files = [io.BytesIO(m) for m in messages]
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            for f in files:
                self.assertFalse(containsText(f, "needle in the haystack"))
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        self.assertLess(peak, 512 << 10)


def slowVerdict(data: bytes, needle: str, withHeaders: bool) -> bool:
    """What SEARCH TEXT or BODY answers by parsing and decoding."""
    value = needle.casefold()
    if withHeaders:
        header = data[: mime.headerEnd(data)]
        if value in mime.decodeHeader(header).casefold():
            return True
    return containsText(io.BytesIO(data), value)


class RawContainsTests(SynchronousTestCase):
    """
    L{rawContains} decides from a message's bytes only what decoding
    would decide the same way.
    """

    MESSAGES = [
        PLAIN,
        MULTIPART,
        b"Subject: Report\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        b"The quick brown fox\r\n",
        b"Subject: =?utf-8?q?Caf=C3=A9?=\r\n\r\nplain body\r\n",
        b"Subject: utf7\r\nContent-Type: text/plain; charset=utf-7\r\n\r\n"
        b"+AGEAYgBj-\r\n",
        b"Subject: attached\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: application/pdf; name=fox.pdf\r\n\r\nfox\r\n--b--\r\n",
        b"Subject: html\r\nContent-Type: text/html\r\n\r\n<b>Fox</b>\r\n",
        b"Subject: image\r\nContent-Type: image/png\r\n\r\nfox\r\n",
        "Subject: 8bit\r\n\r\nStra\u00dfe \u212a\r\n".encode(),
        b"No header at all",
    ]
    NEEDLES = ["fox", "FOX", "report", "brown fox", "café", "abc", "subject", "ss"]

    def test_agreesWithDecoding(self) -> None:
        """
        Whenever it decides (not C{None}), it agrees with decoding, for
        TEXT and BODY, for words in headers, bodies, non-text parts,
        encoded words, UTF-7 and 8-bit text.
        """
        decided = 0
        for data in self.MESSAGES:
            for needle in self.NEEDLES:
                for withHeaders in (True, False):
                    verdict = rawContains(data, needle.casefold(), withHeaders)
                    if verdict is None:
                        continue
                    decided += 1
                    expected = slowVerdict(data, needle, withHeaders)
                    self.assertEqual(verdict, expected, (data, needle, withHeaders))
        self.assertGreater(decided, 40)

    def test_undecided(self) -> None:
        """
        What may decode to other text is left to decoding: encoded words,
        base64, quoted-printable, 8-bit bytes, unknown charsets, a hit in
        a multipart message.
        """
        self.assertIsNone(rawContains(self.MESSAGES[3], "absent", True))
        self.assertIsNone(rawContains(MULTIPART, "absent", False))
        self.assertIsNone(rawContains(self.MESSAGES[4], "absent", False))
        self.assertIsNone(rawContains(self.MESSAGES[8], "absent", False))
        self.assertIsNone(rawContains(self.MESSAGES[5], "fox", False))

    def test_decided(self) -> None:
        """
        A plain message without the word is not a match, whatever its
        size; one text part with it is; BODY does not see the header.
        """
        body = b"word " * 100000
        data = b"Subject: big\r\n\r\n" + body
        self.assertIs(rawContains(data, "needle", True), False)
        self.assertIs(rawContains(data, "word", False), True)
        self.assertIs(rawContains(data, "big", True), True)
        self.assertIs(rawContains(data, "big", False), False)
        self.assertIs(rawContains(data, "stra\u00dfe", False), False)
