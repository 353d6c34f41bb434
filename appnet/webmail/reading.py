"""
Reading stored messages for the webmail: list summaries from the header
section alone, and whole messages parsed into what a reader shows.

Everything here blocks (it reads message files and runs the C{email}
parser), so callers run it in a thread; see L{appnet.webmail.service}.
Messages are parsed with C{email.policy.default} (RFC 2047 words and
RFC 2231 parameters decoded), never trusted: a header that does not parse
is shown as its raw text, a part in an unknown charset is decoded as
UTF-8 with replacement characters, and a message larger than the parse
limit is summarised from its header section only (it can still be
downloaded whole).

Parts are numbered in document order over the leaves of the MIME tree,
a forwarded C{message/rfc822} counting as one leaf (it downloads as an
C{.eml} file), so a number names the same part every time: stored
messages never change.
"""

from __future__ import annotations

import email
import email.utils
import mimetypes
import re
import unicodedata
from collections.abc import Iterator, Sequence
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from typing import Any, BinaryIO
from urllib.parse import quote

from attrs import frozen

from appnet.store.interfaces import MessageBody
from appnet.webmail.sanitize import CidResolver, sanitize

__all__ = [
    "Address",
    "AttachmentInfo",
    "ParsedMessage",
    "Summary",
    "contentDisposition",
    "extractPart",
    "headOf",
    "headerSection",
    "parseMessage",
    "readAll",
    "safeFilename",
    "summarize",
]

#: How much of a message is read to find its header section.
HEADER_LIMIT = 64 * 1024

#: Policy for parsing: decoded headers, lenient with defects.
READ_POLICY = policy.default

_CONTENT_TYPE = re.compile(
    r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$"
)


@frozen
class Address:
    """One mailbox of an address header: display name and address."""

    name: str
    address: str

    def formatted(self) -> str:
        """C{Name <address>}, or just the address."""
        return email.utils.formataddr((self.name, self.address))

    def json(self) -> dict[str, str]:
        return {"name": self.name, "address": self.address}


@frozen
class Summary:
    """
    What the message list shows of one message, from its header section.
    """

    subject: str
    sender: tuple[Address, ...]
    to: tuple[Address, ...]
    date: float | None
    hasAttachments: bool
    #: Its C{Message-ID}, and the ids of the messages it answers (from
    #: C{References}, else C{In-Reply-To}), oldest first: for threads.
    messageId: str = ""
    references: tuple[str, ...] = ()


@frozen
class AttachmentInfo:
    """
    A part of a message other than the text shown.

    @ivar part: its number (see the module docstring).
    @ivar filename: a safe name to save it under.
    @ivar contentType: its declared media type, lower case.
    @ivar size: decoded bytes.
    @ivar contentId: its C{Content-ID} without angle brackets, if any.
    @ivar inline: an image the HTML refers to by C{cid:} (shown in the text
        when images are, so not worth listing then).
    """

    part: int
    filename: str
    contentType: str
    size: int
    contentId: str | None = None
    inline: bool = False


@frozen
class ParsedMessage:
    """
    A message as the reader sees it.

    @ivar headers: C{subject}, C{messageId}, C{inReplyTo}, C{references},
        C{date} (the header's text) as strings.
    @ivar addresses: C{from}, C{to}, C{cc}, C{replyTo} lists.
    @ivar date: the C{Date} header as a timestamp, if it parses.
    @ivar text: the plain text body, if there is one.
    @ivar html: the sanitised HTML body, if there is one.
    @ivar blockedRemote: remote images removed from the HTML.
    @ivar blockedInline: message images not shown (ask with C{images}).
    @ivar tooLarge: over the parse limit: only headers were read.
    @ivar problem: why the body is not shown, if it is not.
    """

    headers: dict[str, str]
    addresses: dict[str, tuple[Address, ...]]
    date: float | None
    text: str | None
    html: str | None
    attachments: tuple[AttachmentInfo, ...]
    blockedRemote: int = 0
    blockedInline: int = 0
    tooLarge: bool = False
    rawHTML: str | None = None
    problem: str | None = None


def headOf(data: bytes) -> bytes:
    """The header section at the start of a message's bytes."""
    for end in (b"\r\n\r\n", b"\n\n"):
        i = data.find(end)
        if i != -1:
            return data[: i + len(end)]
    return data


def headerSection(f: BinaryIO, limit: int = HEADER_LIMIT) -> bytes:
    """
    The header section at the start of a message file (at most C{limit}
    bytes of it).
    """
    return headOf(f.read(limit))


def _text(value: Any) -> str:
    """A header value as clean one-line text, whatever went wrong parsing it."""
    try:
        text = str(value)
    except Exception:
        text = repr(value)
    return " ".join(text.replace("\x00", "").split())


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:
        # A header the policy cannot parse: show its raw text.
        raw = [v for k, v in message.raw_items() if k.lower() == name]
        value = raw[0] if raw else None
    return "" if value is None else _text(value)


def _addresses(message: Message, name: str) -> tuple[Address, ...]:
    found: list[Address] = []
    try:
        values = message.get_all(name) or []
    except Exception:
        values = []
    for value in values:
        groups = getattr(value, "addresses", None)
        if groups is not None:
            try:
                found.extend(
                    Address(_text(a.display_name), a.addr_spec) for a in groups
                )
                continue
            except Exception:
                pass
        for display, addr in email.utils.getaddresses([_text(value)]):
            if display or addr:
                found.append(Address(_text(display), addr))
    return tuple(found)


def _date(message: Message) -> float | None:
    value = _header(message, "date")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def summarize(body: MessageBody) -> Summary:
    """
    The list entry of a stored message, from its header section only.
    Blocking.
    """
    with body.open() as f:
        head = headerSection(f)
    message = BytesHeaderParser(policy=READ_POLICY).parsebytes(head)
    contentType = _header(message, "content-type").lower()
    return Summary(
        subject=_header(message, "subject"),
        sender=_addresses(message, "from"),
        to=_addresses(message, "to"),
        date=_date(message),
        hasAttachments=contentType.startswith("multipart/mixed"),
        messageId=next(iter(_ids(_header(message, "message-id"))), ""),
        references=threadReferences(message),
    )


#: At most this many ids of a C{References} field are kept.
MAX_REFERENCES = 50

_MESSAGE_ID = re.compile(r"<[^<>\s]{1,250}>")


def _ids(value: str) -> list[str]:
    return _MESSAGE_ID.findall(value)


def threadReferences(message: Message) -> tuple[str, ...]:
    """
    The ids of the messages C{message} follows, oldest first: its
    C{References} field, else its C{In-Reply-To} (RFC 5322 3.6.4).
    """
    found = _ids(_header(message, "references"))
    if not found:
        found = _ids(_header(message, "in-reply-to"))[:1]
    return tuple(found[-MAX_REFERENCES:])


def readAll(body: MessageBody, limit: int) -> bytes | None:
    """
    A stored message's bytes, or C{None} if it is larger than C{limit}.
    Blocking.
    """
    if body.size > limit:
        return None
    with body.open() as f:
        data = f.read(limit + 1)
    return None if len(data) > limit else data


#: Multiparts nested deeper than this count as one leaf.
MAX_NESTING = 50


def leaves(part: Message, depth: int = 0) -> Iterator[Message]:
    """
    The leaf parts of a message in document order; a C{message/rfc822}
    part is a leaf.
    """
    if (
        part.get_content_maintype() == "multipart"
        and part.is_multipart()
        and depth < MAX_NESTING
    ):
        payload = part.get_payload()
        if isinstance(payload, list):
            for sub in payload:
                if isinstance(sub, Message):
                    yield from leaves(sub, depth + 1)
            return
    yield part


def _decodedText(part: Message) -> str:
    """
    A text part's content with C{\n} line ends, decoded however its
    charset label fails.
    """
    return _decode(part).replace("\r\n", "\n").replace("\x00", "")


def _decode(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except Exception:
        pass
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        raw = str(part.get_payload()).encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def partBytes(part: Message) -> bytes:
    """A leaf part's decoded content (a forwarded message as its bytes)."""
    if part.get_content_type() == "message/rfc822":
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if isinstance(inner, Message):
            try:
                return inner.as_bytes(policy=READ_POLICY)
            except Exception:
                return inner.as_bytes()
        return str(payload).encode("utf-8", "surrogateescape")
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    return b""


def _contentType(part: Message) -> str:
    declared = part.get_content_type().lower()
    return declared if _CONTENT_TYPE.match(declared) else "application/octet-stream"


_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def safeFilename(name: str | None, contentType: str, number: int) -> str:
    """
    A file name to save a part under: no directories, no control or
    shell-special characters, not hidden, at most 120 characters; a
    made-up C{part-N.ext} when the message gives none.
    """
    text = unicodedata.normalize("NFC", name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = _UNSAFE_NAME.sub("_", text).strip(" .")
    if len(text) > 120:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            text = stem[: 119 - len(ext)] + "." + ext
        else:
            text = text[:120]
    if not text:
        if contentType == "message/rfc822":
            ext = ".eml"
        else:
            ext = mimetypes.guess_extension(contentType) or ".bin"
        text = f"part-{number}{ext}"
    return text


def contentDisposition(kind: str, filename: str) -> bytes:
    """
    A C{Content-Disposition} value (RFC 6266): an ASCII fallback name and
    the exact name as C{filename*} in UTF-8.
    """
    fallback = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    fallback = fallback.replace('"', "_").replace("\\", "_")
    value = f'{kind}; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value.encode("ascii")


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    if name is None:
        return None
    # Raw 8-bit names come back with surrogate escapes.
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _contentId(part: Message) -> str | None:
    value = _header(part, "content-id").strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value or None


def _isAttachment(part: Message) -> bool:
    try:
        return part.get_content_disposition() == "attachment"
    except Exception:
        return False


def _bodies(message: EmailMessage) -> tuple[Message | None, Message | None]:
    """The parts shown as the message's text and HTML."""
    text: Message | None = None
    html: Message | None = None
    try:
        html = message.get_body(preferencelist=("html",))
        text = message.get_body(preferencelist=("plain",))
    except Exception:
        pass
    if text is None and html is None:
        # Not MIME-structured as get_body expects: the first inline text leaf.
        for part in leaves(message):
            if part.get_content_maintype() == "text" and not _isAttachment(part):
                if part.get_content_subtype() == "html":
                    html = part
                else:
                    text = part
                break
    return text, html


def parseMessage(
    data: bytes,
    *,
    images: bool = False,
    partURL: Any = None,
) -> ParsedMessage:
    """
    Parse a whole message for reading. Blocking (CPU).

    @param images: show the images carried in the message.
    @param partURL: a function of a part number giving this server's URL
        for an inline image, for C{cid:} references.
    """
    message = email.message_from_bytes(data, policy=READ_POLICY)
    assert isinstance(message, EmailMessage)
    textPart, htmlPart = _bodies(message)
    byCid: dict[str, int] = {}
    attachments: list[AttachmentInfo] = []
    for number, part in enumerate(leaves(message), 1):
        if part is textPart or part is htmlPart:
            continue
        contentType = _contentType(part)
        cid = _contentId(part)
        if cid is not None:
            byCid.setdefault(cid, number)
        attachments.append(
            AttachmentInfo(
                part=number,
                filename=safeFilename(_filename(part), contentType, number),
                contentType=contentType,
                size=len(partBytes(part)),
                contentId=cid,
            )
        )
    used: set[int] = set()
    resolver: CidResolver | None = None
    if partURL is not None:

        def resolve(cid: str) -> str | None:
            number = byCid.get(cid)
            if number is None:
                return None
            info = next(a for a in attachments if a.part == number)
            if not info.contentType.startswith("image/") or info.contentType == (
                "image/svg+xml"
            ):
                return None
            used.add(number)
            url: str = partURL(number)
            return url

        resolver = resolve
    text = _decodedText(textPart) if textPart is not None else None
    rawHTML = _decodedText(htmlPart) if htmlPart is not None else None
    sanitized = sanitize(rawHTML, images=images, cid=resolver) if rawHTML else None
    attachments = [
        AttachmentInfo(
            a.part, a.filename, a.contentType, a.size, a.contentId, a.part in used
        )
        for a in attachments
    ]
    return ParsedMessage(
        **_envelope(message),
        text=text,
        html=sanitized.html if sanitized is not None else None,
        attachments=tuple(attachments),
        blockedRemote=sanitized.blockedRemote if sanitized else 0,
        blockedInline=sanitized.blockedInline if sanitized else 0,
        rawHTML=rawHTML,
    )


def _envelope(message: Message) -> dict[str, Any]:
    """The header fields a parsed message shows, from either parser."""
    return {
        "headers": {
            "subject": _header(message, "subject"),
            "messageId": _header(message, "message-id"),
            "inReplyTo": _header(message, "in-reply-to"),
            "references": _header(message, "references"),
            "date": _header(message, "date"),
        },
        "addresses": {
            "from": _addresses(message, "from"),
            "to": _addresses(message, "to"),
            "cc": _addresses(message, "cc"),
            "replyTo": _addresses(message, "reply-to"),
        },
        "date": _date(message),
    }


def parseHeadersOnly(
    head: bytes, *, tooLarge: bool = True, problem: str | None = None
) -> ParsedMessage:
    """
    A message too large (or too broken) to parse, as far as its header
    section tells.
    """
    message = BytesHeaderParser(policy=READ_POLICY).parsebytes(head)
    return ParsedMessage(
        **_envelope(message),
        text=None,
        html=None,
        attachments=(),
        tooLarge=tooLarge,
        problem=problem,
    )


def extractPart(data: bytes, number: int) -> tuple[AttachmentInfo, bytes] | None:
    """
    One leaf part of a message: its description and decoded bytes, or
    C{None} if there is no such part. Blocking (CPU).
    """
    if number < 1:
        return None
    message = email.message_from_bytes(data, policy=READ_POLICY)
    for n, part in enumerate(leaves(message), 1):
        if n == number:
            contentType = _contentType(part)
            content = partBytes(part)
            info = AttachmentInfo(
                number,
                safeFilename(_filename(part), contentType, number),
                contentType,
                len(content),
                _contentId(part),
            )
            return info, content
    return None


def addressList(values: Sequence[Address]) -> list[dict[str, str]]:
    """Addresses as JSON."""
    return [a.json() for a in values]
