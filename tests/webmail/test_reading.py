"""
Tests for reading stored messages: summaries, parsing for display, parts,
safe file names.
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime

from twisted.trial.unittest import SynchronousTestCase

from appnet.mail.compose import Attachment, compose
from appnet.store.interfaces import MessageBody
from appnet.webmail.reading import (
    contentDisposition,
    extractPart,
    parseHeadersOnly,
    parseMessage,
    readAll,
    safeFilename,
    summarize,
)


def body(data: bytes) -> MessageBody:
    return MessageBody(len(data), opener=lambda: io.BytesIO(data))


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

RELATED = (
    b"From: =?utf-8?q?Zo=C3=AB?= <zoe@example.org>\r\n"
    b"To: alice@example.org, Bob <bob@example.org>\r\n"
    b"Cc: carol@example.org\r\n"
    b"Subject: =?utf-8?b?Q2Fmw6k=?=\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <orig@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="M"\r\n'
    b"\r\n"
    b"--M\r\n"
    b'Content-Type: multipart/alternative; boundary="A"\r\n'
    b"\r\n"
    b"--A\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    b"Plain caf\xc3\xa9\r\n"
    b"--A\r\n"
    b'Content-Type: multipart/related; boundary="R"\r\n\r\n'
    b"--R\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    b'<p onclick="x()">Hi <img src="cid:logo@x" alt="logo">'
    b'<img src="http://tracker.example/p.gif"><script>alert(1)</script></p>\r\n'
    b"--R\r\n"
    b"Content-Type: image/png\r\n"
    b"Content-ID: <logo@x>\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(PNG).replace(b"\n", b"\r\n")
    + b"--R--\r\n"
    b"--A--\r\n"
    b"--M\r\n"
    b"Content-Type: application/pdf\r\n"
    b"Content-Disposition: attachment;"
    b" filename*=utf-8''..%2F..%2Fr%C3%A9sum%C3%A9.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--M--\r\n"
)


class SummaryTests(SynchronousTestCase):
    def test_summary(self) -> None:
        """A summary comes from the header section: decoded words and all."""
        found = summarize(body(RELATED))
        self.assertEqual(found.subject, "Café")
        self.assertEqual(
            [(a.name, a.address) for a in found.sender], [("Zoë", "zoe@example.org")]
        )
        self.assertEqual(
            [a.address for a in found.to], ["alice@example.org", "bob@example.org"]
        )
        self.assertEqual(found.date, datetime(2026, 12, 1, 10, tzinfo=UTC).timestamp())
        self.assertTrue(found.hasAttachments)

    def test_headerSectionOnly(self) -> None:
        """Only the header section is read: a huge body costs nothing."""
        reads = []

        class Counting(io.BytesIO):
            def read(self, size: int | None = -1) -> bytes:
                reads.append(size)
                return super().read(size)

        data = b"Subject: big\r\n\r\n" + b"x" * 10_000_000
        found = summarize(MessageBody(len(data), opener=lambda: Counting(data)))
        self.assertEqual(found.subject, "big")
        self.assertEqual(reads, [64 * 1024])

    def test_brokenHeaders(self) -> None:
        """Garbage headers give empty or raw values, never an exception."""
        found = summarize(
            body(b"From: <<<@>>>\r\nDate: yesterday-ish\r\nSubject: \xff\xfe\r\n\r\nx")
        )
        self.assertIsNone(found.date)
        self.assertIsInstance(found.subject, str)


class ParseTests(SynchronousTestCase):
    def test_bodiesAndAttachments(self) -> None:
        """
        The text and the sanitised HTML are found inside nested
        multiparts; every other part is an attachment with a safe name.
        """
        parsed = parseMessage(RELATED)
        self.assertEqual(parsed.text, "Plain café")
        self.assertEqual(parsed.html, "<p>Hi [logo]</p>")
        self.assertEqual((parsed.blockedRemote, parsed.blockedInline), (1, 0))
        self.assertEqual(parsed.headers["subject"], "Café")
        self.assertEqual(parsed.headers["messageId"], "<orig@example.org>")
        self.assertEqual(
            [a.address for a in parsed.addresses["cc"]], ["carol@example.org"]
        )
        [image, pdf] = parsed.attachments
        self.assertEqual(
            (image.part, image.contentType, image.size, image.contentId),
            (3, "image/png", len(PNG), "logo@x"),
        )
        self.assertEqual((pdf.part, pdf.filename, pdf.size), (4, "résumé.pdf", 9))

    def test_inlineImages(self) -> None:
        """With a part URL, cid: images are counted, then shown on request."""

        def url(n: int) -> str:
            return f"/part/{n}"

        hidden = parseMessage(RELATED, partURL=url)
        self.assertEqual(hidden.blockedInline, 1)
        self.assertTrue(hidden.attachments[0].inline)
        self.assertFalse(hidden.attachments[1].inline)
        shown = parseMessage(RELATED, images=True, partURL=url)
        self.assertEqual(shown.html, '<p>Hi <img src="/part/3" alt="logo"></p>')
        self.assertTrue(shown.attachments[0].inline)

    def test_plainOnly(self) -> None:
        """A message without MIME is its text."""
        parsed = parseMessage(b"Subject: s\r\n\r\nline one\r\nline two\r\n")
        self.assertEqual(parsed.text, "line one\nline two\n")
        self.assertIsNone(parsed.html)
        self.assertEqual(parsed.attachments, ())

    def test_unknownCharset(self) -> None:
        """A text part in an unknown charset is shown anyway."""
        parsed = parseMessage(
            b"Content-Type: text/plain; charset=x-martian\r\n\r\nhello \xc3\xa9\r\n"
        )
        self.assertEqual(parsed.text, "hello é\n")

    def test_brokenBase64(self) -> None:
        """A damaged part decodes as far as it can."""
        parsed = parseMessage(
            b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"aGVsbG8=!!!\r\n"
        )
        self.assertIn("hello", parsed.text or "")

    def test_forwardedMessage(self) -> None:
        """An attached message is one part, downloadable as .eml."""
        inner = compose(sender="a@x.org", to=["b@x.org"], subject="In", text="inner")
        outer = compose(sender="c@x.org", to=["d@x.org"], subject="Out", text="outer")
        outer.add_attachment(inner)
        parsed = parseMessage(bytes(outer))
        self.assertEqual(parsed.text, "outer\n")
        [attached] = parsed.attachments
        self.assertEqual(
            (attached.contentType, attached.filename), ("message/rfc822", "part-2.eml")
        )
        info, data = extractPart(bytes(outer), 2) or (None, b"")
        self.assertIn(b"Subject: In", data)

    def test_extractPart(self) -> None:
        """A part is extracted decoded; a missing part is None."""
        message = compose(
            sender="a@x.org",
            to=["b@x.org"],
            subject="s",
            text="t",
            attachments=[Attachment("data.bin", bytes(range(256)))],
        )
        found = extractPart(bytes(message), 2)
        assert found is not None
        info, data = found
        self.assertEqual(
            (info.filename, info.contentType, data),
            ("data.bin", "application/octet-stream", bytes(range(256))),
        )
        self.assertIsNone(extractPart(bytes(message), 3))
        self.assertIsNone(extractPart(bytes(message), 0))

    def test_headersOnly(self) -> None:
        """A message over the limit is described by its headers."""
        parsed = parseHeadersOnly(b"Subject: huge\r\nFrom: a@x.org\r\n\r\n")
        self.assertTrue(parsed.tooLarge)
        self.assertEqual(parsed.headers["subject"], "huge")
        self.assertIsNone(parsed.text)

    def test_readAll(self) -> None:
        """readAll refuses messages over its limit."""
        self.assertEqual(readAll(body(b"12345"), 5), b"12345")
        self.assertIsNone(readAll(body(b"123456"), 5))


class FilenameTests(SynchronousTestCase):
    def test_safeFilename(self) -> None:
        """No directories, no control or shell characters, no hidden files."""
        cases = {
            "../../etc/passwd": "passwd",
            "C:\\Windows\\evil.exe": "evil.exe",
            "a\x00b\r\nc.txt": "a_b_c.txt",
            ".bashrc": "bashrc",
            'we"ird<>|.doc': "we_ird_.doc",
            "  report.pdf  ": "report.pdf",
        }
        for given, expected in cases.items():
            self.assertEqual(safeFilename(given, "text/plain", 1), expected, given)

    def test_madeUpNames(self) -> None:
        """A part without a name gets part-N with an extension for its type."""
        self.assertEqual(safeFilename(None, "image/png", 3), "part-3.png")
        self.assertEqual(safeFilename("...", "application/x-unknown", 2), "part-2.bin")

    def test_longNames(self) -> None:
        """Long names are cut to 120 characters, keeping the extension."""
        name = safeFilename("x" * 300 + ".pdf", "application/pdf", 1)
        self.assertEqual(len(name), 120)
        self.assertTrue(name.endswith(".pdf"))

    def test_contentDisposition(self) -> None:
        """Non-ASCII names get an ASCII fallback and a UTF-8 filename*."""
        self.assertEqual(
            contentDisposition("attachment", "a.txt"), b'attachment; filename="a.txt"'
        )
        self.assertEqual(
            contentDisposition("attachment", "résumé.pdf"),
            b'attachment; filename="r_sum_.pdf";'
            b" filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        )
