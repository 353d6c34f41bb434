"""
Composing messages with the standard library's C{email} package.

L{compose} builds a complete RFC 5322 message: text, an optional HTML
alternative (C{multipart/alternative}), attachments (C{multipart/mixed}),
C{Date} and C{Message-ID}. Non-ASCII header text is encoded (RFC 2047) and,
because the policy is 7-bit clean, non-ASCII bodies get quoted-printable or
base64, whichever the content makes shorter; attachments are base64, so
binary files survive any transport byte for byte.

The email package picks a text part's encoding from its first ten lines
only, so a letter that opens with a few lines of English and goes on in
Russian would get quoted-printable at twice the size of base64 (and the
other way round). L{_transferEncoding} makes the same comparison, with the
email package's own encoders, over the whole text, and passes the answer
to C{set_content}, which still does the encoding.
"""

from __future__ import annotations

import mimetypes
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email import base64mime, policy, quoprimime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from attrs import frozen

__all__ = ["Attachment", "POLICY", "compose", "attachmentFromFile"]

#: CRLF line ends, 7-bit clean: the form a message travels in.
POLICY = policy.SMTP.clone(cte_type="7bit")


@frozen
class Attachment:
    """
    A file to attach.

    @ivar contentType: C{maintype/subtype}; guessed from the name if
        C{None}.
    """

    filename: str
    data: bytes
    contentType: str | None = None


def _transferEncoding(text: str) -> str | None:
    """
    The transfer encoding for a UTF-8 text part: C{None} (the email
    package then sends 7bit) for ASCII in lines short enough, else
    whichever of quoted-printable and base64 encodes the whole text
    shorter (quoted-printable on a tie: it stays readable).
    """
    lines = text.encode("utf-8").splitlines()
    limit = POLICY.max_line_length or 78  # SMTP policy: 78; never None here
    if all(line.isascii() and len(line) <= limit for line in lines):
        return None
    quoted = quoprimime.body_encode(b"\n".join(lines).decode("latin-1"), limit)
    encoded = base64mime.body_encode(b"\r\n".join(lines) + b"\r\n")
    return "base64" if len(quoted) > len(encoded) else "quoted-printable"


def attachmentFromFile(path: str) -> Attachment:
    """Read a file to attach (blocking: call in a thread for big files)."""
    with open(path, "rb") as f:
        return Attachment(os.path.basename(path), f.read())


def compose(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    attachments: Sequence[Attachment] = (),
    cc: Sequence[str] = (),
    when: float | None = None,
    messageId: str | None = None,
) -> EmailMessage:
    """
    A complete message.

    @param sender: the C{From} address, optionally with a display name
        (C{"Zoë <zoe@example.org>"}).
    @param when: the C{Date}, default now.
    """
    message = EmailMessage(policy=POLICY)
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Date"] = format_datetime(
        datetime.fromtimestamp(time.time() if when is None else when, UTC)
    )
    domain = sender.rpartition("@")[2].rstrip(">").strip() or None
    message["Message-ID"] = messageId or make_msgid(domain=domain)
    message.set_content(text, cte=_transferEncoding(text))
    if html is not None:
        message.add_alternative(html, subtype="html", cte=_transferEncoding(html))
    for attachment in attachments:
        contentType = attachment.contentType or (
            mimetypes.guess_type(attachment.filename)[0] or "application/octet-stream"
        )
        maintype, _, subtype = contentType.partition("/")
        message.add_attachment(
            attachment.data,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
        )
    return message
