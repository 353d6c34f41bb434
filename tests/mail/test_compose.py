"""
Tests for L{appnet.mail.compose}: the transfer encoding each part gets
from its content, RFC 2047 headers, and that everything decodes back.
"""

from __future__ import annotations

import email
from email.message import EmailMessage, Message
from email.policy import default

from twisted.trial.unittest import SynchronousTestCase

from appnet.mail.compose import Attachment, compose

ASCII = "Dinner is at eight.\nBring the wine.\n"
#: Mostly ASCII, a few accented letters: quoted-printable stays readable.
ACCENTED = "Le café est à côté de la gare.\nRendez-vous at eight, as usual.\n"
#: Nearly every character is two bytes in UTF-8: base64 is shorter.
CYRILLIC = "Привет! Ужин в восемь, приноси вино.\nДо встречи у вокзала.\n"


def parse(message: EmailMessage) -> EmailMessage:
    """The message as a reader sees it: serialized, then parsed."""
    data = message.as_bytes()
    parsed = email.message_from_bytes(data, policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def lf(text: str) -> str:
    """Decoded text with CRLF line ends (as it travelled) read as LF."""
    return text.replace("\r\n", "\n")


def encodingOf(part: Message) -> str:
    return str(part["Content-Transfer-Encoding"])


def composeText(text: str, html: str | None = None) -> EmailMessage:
    return compose(
        sender="alice@example.org",
        to=["bob@example.org"],
        subject="s",
        text=text,
        html=html,
        when=0,
        messageId="<m@example.org>",
    )


class TransferEncodingTests(SynchronousTestCase):
    """
    Each text part gets 7bit, quoted-printable or base64 from what it
    holds, and reads back as the text composed.
    """

    def assertEncoding(self, text: str, expected: str) -> EmailMessage:
        message = composeText(text)
        self.assertEqual(encodingOf(message), expected)
        self.assertTrue(message.as_bytes().isascii())
        parsed = parse(message)
        self.assertEqual(lf(parsed.get_content()), text)
        return message

    def test_asciiIs7bit(self) -> None:
        """Pure ASCII text in short lines goes as it is, 7bit."""
        message = self.assertEncoding(ASCII, "7bit")
        self.assertTrue(
            message.as_bytes().endswith(
                b"\r\n\r\n" + ASCII.replace("\n", "\r\n").encode()
            )
        )

    def test_mostlyAsciiIsQuotedPrintable(self) -> None:
        """
        Mostly ASCII text with a few non-ASCII characters gets
        quoted-printable, which leaves the ASCII readable.
        """
        message = self.assertEncoding(ACCENTED, "quoted-printable")
        self.assertIn(b"Le caf=C3=A9 est =C3=A0 c=C3=B4t=C3=A9", message.as_bytes())

    def test_nonAsciiIsBase64(self) -> None:
        """Text that is mostly non-ASCII gets base64."""
        self.assertEncoding(CYRILLIC, "base64")

    def test_longAsciiLineIsQuotedPrintable(self) -> None:
        """
        ASCII with a line too long for the policy (78) is not sent 7bit:
        quoted-printable breaks it with soft line breaks.
        """
        line = "word " * 40 + "\n"
        message = self.assertEncoding(line, "quoted-printable")
        lines = message.as_bytes().split(b"\r\n")
        self.assertLessEqual(max(len(x) for x in lines), 78)

    def test_wholeTextDecides(self) -> None:
        """
        The whole text decides, not its first lines: a letter that opens
        with a dozen ASCII lines and goes on in Cyrillic gets base64, and
        one that opens in Cyrillic and goes on in ASCII gets
        quoted-printable.
        """
        opening = "Hello,\n" * 12
        self.assertEncoding(opening + CYRILLIC * 40, "base64")
        self.assertEncoding(CYRILLIC * 6 + ASCII * 200, "quoted-printable")

    def test_chosenEncodingIsTheShorter(self) -> None:
        """
        The encoding chosen gives the shorter body: for each text, the
        message is no longer than the same text under the other encoding.
        """
        for text in (ACCENTED, CYRILLIC, "Hello,\n" * 12 + CYRILLIC * 40):
            message = composeText(text)
            chosen = encodingOf(message)
            other = "base64" if chosen == "quoted-printable" else "quoted-printable"
            alternative = composeText("")
            alternative.set_content(text, cte=other)
            self.assertLessEqual(
                len(message.get_payload()), len(alternative.get_payload())
            )

    def test_htmlAlternative(self) -> None:
        """
        The HTML alternative gets its own encoding by its own content, in
        a multipart/alternative after the text.
        """
        html = "<p>" + CYRILLIC + "</p>\n"
        message = composeText(ASCII, html=html)
        self.assertEqual(message.get_content_type(), "multipart/alternative")
        plain, rich = message.iter_parts()  # type: ignore[attr-defined]
        self.assertEqual((encodingOf(plain), encodingOf(rich)), ("7bit", "base64"))
        parsed = parse(message)
        body = parsed.get_body(preferencelist=("html",))
        assert body is not None
        self.assertEqual(lf(body.get_content()), html)


class AttachmentTests(SynchronousTestCase):
    """Attachments are base64 and come back byte for byte."""

    def test_binaryAttachment(self) -> None:
        """
        A binary attachment is base64 (never 8bit or quoted-printable),
        in a multipart/mixed after the text, and decodes to the same
        bytes; the content type is guessed from the file name.
        """
        payload = bytes(range(256)) * 8 + b"\r\n.\r\n\x00"
        message = compose(
            sender="alice@example.org",
            to=["bob@example.org"],
            subject="s",
            text=ASCII,
            attachments=[Attachment("photo.png", payload)],
        )
        self.assertTrue(message.as_bytes().isascii())
        parsed = parse(message)
        self.assertEqual(parsed.get_content_type(), "multipart/mixed")
        [part] = list(parsed.iter_attachments())  # type: ignore[attr-defined]
        self.assertEqual(encodingOf(part), "base64")
        self.assertEqual(part.get_content_type(), "image/png")
        self.assertEqual(part.get_filename(), "photo.png")
        self.assertEqual(part.get_content(), payload)

    def test_textAndUnknownAttachments(self) -> None:
        """
        A text file is attached as base64 too (its bytes, line ends
        included, survive any transport); an unknown type is
        application/octet-stream; an explicit type is kept.
        """
        notes = "naïve notes\r\nline two\n".encode()
        message = compose(
            sender="alice@example.org",
            to=["bob@example.org"],
            subject="s",
            text=ASCII,
            attachments=[
                Attachment("notes.txt", notes),
                Attachment("blob.zzz-unknown", b"\x00\x01"),
                Attachment("data", b"{}", contentType="application/json"),
            ],
        )
        parts = list(parse(message).iter_attachments())  # type: ignore[attr-defined]
        self.assertEqual(
            [(p.get_content_type(), encodingOf(p)) for p in parts],
            [
                ("text/plain", "base64"),
                ("application/octet-stream", "base64"),
                ("application/json", "base64"),
            ],
        )
        self.assertEqual(parts[0].get_payload(decode=True), notes)
        self.assertEqual(parts[1].get_content(), b"\x00\x01")


class HeaderTests(SynchronousTestCase):
    """Non-ASCII header text is RFC 2047 encoded and decodes back."""

    def setUp(self) -> None:
        self.message = compose(
            sender="Zoë Durand <zoe@example.org>",
            to=["Jürgen Müller <juergen@example.org>", "bob@example.org"],
            cc=["Łukasz <lukasz@example.org>"],
            subject="Grüße aus Köln — дела",
            text=ASCII,
            when=1704182400,
            messageId="<m1@example.org>",
        )
        self.data = self.message.as_bytes()

    def headerLine(self, name: bytes) -> bytes:
        head = self.data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ")
        head = head.replace(b"\r\n ", b" ")
        [line] = [x for x in head.split(b"\r\n") if x.startswith(name + b": ")]
        return line

    def test_encodedOnTheWire(self) -> None:
        """
        The serialized header is pure ASCII: Subject and display names
        are encoded words, and the addresses themselves stay readable.
        """
        self.assertTrue(self.data.isascii())
        subject = self.headerLine(b"Subject")
        self.assertIn(b"=?utf-8?", subject)
        sender = self.headerLine(b"From")
        self.assertIn(b"=?utf-8?", sender)
        self.assertTrue(sender.endswith(b" <zoe@example.org>"))
        to = self.headerLine(b"To")
        self.assertIn(b"=?utf-8?", to)
        self.assertIn(b"<juergen@example.org>, bob@example.org", to)
        self.assertIn(b"=?utf-8?", self.headerLine(b"Cc"))

    def test_decodesBack(self) -> None:
        """A reader decodes every header to the text composed."""
        parsed = parse(self.message)
        self.assertEqual(parsed["Subject"], "Grüße aus Köln — дела")
        [sender] = parsed["From"].addresses
        self.assertEqual(
            (sender.display_name, sender.addr_spec), ("Zoë Durand", "zoe@example.org")
        )
        self.assertEqual(
            [(a.display_name, a.addr_spec) for a in parsed["To"].addresses],
            [("Jürgen Müller", "juergen@example.org"), ("", "bob@example.org")],
        )
        [cc] = parsed["Cc"].addresses
        self.assertEqual(cc.display_name, "Łukasz")

    def test_asciiHeadersUnencoded(self) -> None:
        """
        ASCII headers are not encoded; Date and Message-ID are the ones
        given; MIME-Version is present.
        """
        message = composeText(ASCII)
        data = message.as_bytes()
        self.assertNotIn(b"=?", data)
        self.assertIn(b"\r\nSubject: s\r\n", data)
        self.assertIn(b"\r\nDate: Thu, 01 Jan 1970 00:00:00 +0000\r\n", data)
        self.assertIn(b"\r\nMessage-ID: <m@example.org>\r\n", data)
        self.assertIn(b"\r\nMIME-Version: 1.0\r\n", data)
        parsed = parse(self.message)
        self.assertEqual(parsed["Date"], "Tue, 02 Jan 2024 08:00:00 +0000")
        self.assertEqual(parsed["Message-ID"], "<m1@example.org>")
