"""
A stored message's MIME structure with byte offsets, for FETCH's
ENVELOPE, BODY, BODYSTRUCTURE and BODY[section], and SEARCH's header
and text keys.

IMAP hands out parts of a message byte for byte as stored (RFC 3501
6.4.5): C{BODY[2.1]}, C{BODY[HEADER.FIELDS (From)]}, C{BODY[1.MIME]}.
The C{email} package parses headers and parameters well but keeps no
offsets, and regenerating a part changes its bytes; so this module
finds header ends and multipart boundaries itself and leaves header
fields, parameters (RFC 2231 included), address lists and encoded words
to C{email}. Twisted's helpers are not used: C{getEnvelope} splits
addresses on C{@} (a group or an address without a domain breaks it),
C{_getContentType} fails on a quoted C{;} or a parameter without C{=},
and C{_formatHeaders} rebuilds header lines instead of returning them.

Everything here works on bytes in memory and runs in a worker thread.
"""

from __future__ import annotations

import email.errors
import email.header
import email.utils
import re
from collections.abc import Iterable, Sequence
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.policy import default as defaultPolicy
from typing import Any

from attrs import define, field

__all__ = ["Headers", "Part", "contentType", "decodeHeader", "headerEnd", "parse"]

#: Deeper nesting than this is treated as opaque content.
MAX_DEPTH = 32
#: At most this many parts are recognised in one message.
MAX_PARTS = 2000


def headerEnd(data: bytes, start: int = 0, end: int | None = None) -> int:
    """
    Where the body of the entity at C{data[start:end]} begins: just after
    the empty line ending its header section, or C{end} if there is none.
    """
    if end is None:
        end = len(data)
    if data.startswith(b"\r\n", start, end):
        return start + 2
    if data.startswith(b"\n", start, end):
        return start + 1
    crlf = data.find(b"\n\r\n", start, end)
    lf = data.find(b"\n\n", start, end)
    found = [i for i in (crlf, lf) if i != -1]
    if not found:
        return end
    first = min(found)
    return first + (3 if first == crlf else 2)


_LINES = re.compile(rb"[^\n]*\n|[^\n]+\Z")


def _unfold(value: bytes) -> bytes:
    """A field value without its line breaks (RFC 5322 2.2.3)."""
    return value.replace(b"\r\n", b"").replace(b"\n", b"").strip()


def lineCount(data: bytes, start: int, end: int) -> int:
    """Lines in C{data[start:end]}, a last line without its end counted."""
    lines = data.count(b"\n", start, end)
    if end > start and data[end - 1] != 0x0A:
        lines += 1
    return lines


class Headers:
    """
    A header section: its fields as received (name and raw lines, folding
    kept), in order.
    """

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.fields: list[tuple[str, bytes]] = []
        for line in _LINES.findall(raw):
            if line[:1] in (b" ", b"\t") and self.fields:
                name, lines = self.fields[-1]
                self.fields[-1] = (name, lines + line)
                continue
            field_, colon, _ = line.partition(b":")
            if colon and field_ and b" " not in field_.strip(b" \t"):
                self.fields.append(
                    (field_.strip().decode("ascii", "replace").lower(), line)
                )
        self._parsed: Message | None = None

    def get(self, name: str) -> bytes | None:
        """
        The first field's value, unfolded and stripped, as raw bytes.
        """
        name = name.lower()
        for field_, lines in self.fields:
            if field_ == name:
                value = lines.partition(b":")[2]
                return _unfold(value)
        return None

    def getAll(self, name: str) -> list[bytes]:
        """Every value of a field (unfolded)."""
        name = name.lower()
        values = []
        for field_, lines in self.fields:
            if field_ == name:
                value = lines.partition(b":")[2]
                values.append(_unfold(value))
        return values

    def select(self, names: Iterable[str], negate: bool = False) -> bytes:
        """
        The raw lines of the named fields (or of every other field), then
        the empty line: C{HEADER.FIELDS} and C{HEADER.FIELDS.NOT}.
        """
        wanted = {n.lower() for n in names}
        kept = [lines for name, lines in self.fields if (name in wanted) != negate]
        return b"".join(kept) + b"\r\n"

    @property
    def parsed(self) -> Message:
        """The section parsed by C{email} (for parameters)."""
        if self._parsed is None:
            self._parsed = BytesHeaderParser(policy=compat32).parsebytes(self.raw)
        return self._parsed


@define
class Part:
    """
    One entity of a message: the message itself, a body part, or a
    message inside a C{message/rfc822} part.

    @ivar start: offset of its header section (a body part's MIME header).
    @ivar bodyStart: offset just after the empty line ending that section.
    @ivar end: offset just past its content.
    @ivar children: the parts of a multipart entity.
    @ivar message: the message a C{message/rfc822} part holds.
    """

    start: int
    bodyStart: int
    end: int
    headers: Headers
    mainType: str
    subType: str
    children: list[Part] = field(factory=list)
    message: Part | None = None

    @property
    def multipart(self) -> bool:
        return bool(self.children)

    def params(self, header: str = "content-type") -> list[tuple[str, str]]:
        """A field's parameters, RFC 2231 continuations joined."""
        if self.headers.get(header) is None:
            return []
        found = self.headers.parsed.get_params(header=header)
        result = []
        for name, value in (found or [])[1:]:
            if isinstance(value, tuple):
                value = email.utils.collapse_rfc2231_value(value)
            result.append((name, str(value)))
        return result


def contentType(headers: Headers, default: tuple[str, str]) -> tuple[str, str]:
    """An entity's media type and subtype, lower case, else C{default}."""
    value = headers.get("content-type")
    if value is None:
        return default
    text = value.decode("ascii", "replace").split(";", 1)[0].strip().lower()
    main, slash, sub = text.partition("/")
    if not slash or not main or not sub:
        return ("text", "plain")
    return main, sub


def parse(data: bytes) -> Part:
    """
    The structure of a whole message.
    """
    counter = [0]
    return _entity(data, 0, len(data), ("text", "plain"), 0, counter)


def _entity(
    data: bytes,
    start: int,
    end: int,
    default: tuple[str, str],
    depth: int,
    counter: list[int],
) -> Part:
    counter[0] += 1
    bodyStart = headerEnd(data, start, end)
    headers = Headers(data[start:bodyStart])
    main, sub = contentType(headers, default)
    part = Part(start, bodyStart, end, headers, main, sub)
    if depth >= MAX_DEPTH or counter[0] >= MAX_PARTS:
        return part
    if main == "multipart":
        boundary = dict(part.params()).get("boundary")
        if boundary:
            childDefault = (
                ("message", "rfc822") if sub == "digest" else ("text", "plain")
            )
            for childStart, childEnd in _split(
                data, bodyStart, end, boundary.encode("utf-8", "replace")
            ):
                part.children.append(
                    _entity(
                        data, childStart, childEnd, childDefault, depth + 1, counter
                    )
                )
                if counter[0] >= MAX_PARTS:
                    break
        if not part.children:
            # A multipart without parts cannot be described; show it as text.
            part.mainType, part.subType = "text", "plain"
    elif (main, sub) == ("message", "rfc822"):
        part.message = _entity(
            data, bodyStart, end, ("text", "plain"), depth + 1, counter
        )
    return part


def _delimiterLine(
    data: bytes, at: int, end: int, delimiter: bytes
) -> tuple[int, bool] | None:
    """
    If a delimiter line starts at C{at}: where the next line starts and
    whether it is the closing delimiter.
    """
    i = at + len(delimiter)
    closing = data.startswith(b"--", i, end)
    if closing:
        i += 2
    while i < end and data[i] in b" \t":
        i += 1
    if i >= end:
        return end, closing
    if data.startswith(b"\r\n", i, end):
        return i + 2, closing
    if data.startswith(b"\n", i, end):
        return i + 1, closing
    return None


def _split(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """
    The content ranges of a multipart body's parts. The line end before
    a delimiter belongs to the delimiter (RFC 2046 5.1.1).
    """
    delimiter = b"--" + boundary
    parts: list[tuple[int, int]] = []
    partStart: int | None = None
    search = start
    while True:
        if search == start and data.startswith(delimiter, start, end):
            lineStart, contentEnd = start, start
        else:
            found = data.find(b"\n" + delimiter, search, end)
            if found == -1:
                break
            lineStart = found + 1
            contentEnd = (
                found - 1 if found > start and data[found - 1] == 0x0D else found
            )
        line = _delimiterLine(data, lineStart, end, delimiter)
        if line is None:
            search = lineStart + 1
            continue
        nextStart, closing = line
        if partStart is not None:
            parts.append((partStart, max(partStart, contentEnd)))
        if closing:
            return parts
        partStart = nextStart
        search = nextStart
        if partStart >= end:
            break
    if partStart is not None and partStart < end:
        parts.append((partStart, end))
    return parts


def find(top: Part, numbers: Sequence[int]) -> Part | None:
    """
    The part a section's part numbers name (C{1.2} is C{[1, 2]}); the
    numbers of a C{message/rfc822} part continue into its message.
    """
    node = top
    for i, n in enumerate(numbers):
        target = node if i == 0 else (node.message or node)
        if target.children:
            if not 1 <= n <= len(target.children):
                return None
            node = target.children[n - 1]
        elif n == 1:
            node = target
        else:
            return None
    return node


# Header text for SEARCH.


def decodeHeader(raw: bytes) -> str:
    """
    A header value as text: encoded words (RFC 2047) decoded, raw 8-bit
    read as UTF-8.
    """
    text = raw.decode("utf-8", "replace")
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return text


# ENVELOPE and BODYSTRUCTURE (RFC 3501 7.4.2), as values for
# appnet.mail.imap.wire.encode.


def _ascii(text: str) -> str | bytes:
    """A display name as an IMAP string: encoded words if not ASCII."""
    if text.isascii():
        return text
    return email.header.Header(text, "utf-8").encode()


def _addressList(raw: bytes | None) -> list[Any] | None:
    if raw is None or not raw.strip():
        return None
    text = raw.decode("utf-8", "replace")
    result: list[Any] = []
    if ":" not in text:
        for name, address in email.utils.getaddresses([text]):
            if not address and not name:
                continue
            local, at, domain = address.rpartition("@")
            if not at:
                local, domain = address, ""
            result.append([name or None, None, local or None, domain or None])
        return result or None
    try:
        header: Any = defaultPolicy.header_factory("to", text)
        groups = header.groups
    except Exception:
        return None
    for group in groups:
        if group.display_name is not None:
            result.append([None, None, _ascii(group.display_name), None])
        for a in group.addresses:
            result.append(
                [_ascii(a.display_name) if a.display_name else None, None,
                 a.username or None, a.domain or None]
            )  # fmt: skip
        if group.display_name is not None:
            result.append([None, None, None, None])
    return result or None


def envelope(headers: Headers) -> list[Any]:
    """
    The ENVELOPE of a message: date, subject, from, sender, reply-to,
    to, cc, bcc, in-reply-to, message-id; sender and reply-to default to
    from.
    """
    sender = _addressList(headers.get("from"))
    return [
        headers.get("date") or None,
        headers.get("subject"),
        sender,
        _addressList(headers.get("sender")) or sender,
        _addressList(headers.get("reply-to")) or sender,
        _addressList(headers.get("to")),
        _addressList(headers.get("cc")),
        _addressList(headers.get("bcc")),
        headers.get("in-reply-to") or None,
        headers.get("message-id") or None,
    ]


def _flatParams(pairs: list[tuple[str, str]]) -> list[str] | None:
    flat = [x for name, value in pairs for x in (name.upper(), value)]
    return flat or None


def _value(headers: Headers, name: str) -> bytes | None:
    return headers.get(name) or None


def _disposition(part: Part) -> list[Any] | None:
    value = part.headers.get("content-disposition")
    if not value:
        return None
    kind = value.decode("ascii", "replace").split(";", 1)[0].strip()
    if not kind:
        return None
    return [kind.upper(), _flatParams(part.params("content-disposition"))]


def bodyStructure(part: Part, data: bytes, extended: bool) -> list[Any]:
    """
    BODYSTRUCTURE (C{extended}) or BODY of a part; C{data} is the whole
    message (for line counts).
    """
    headers = part.headers
    language = _value(headers, "content-language")
    location = _value(headers, "content-location")
    if part.children:
        result: list[Any] = [bodyStructure(c, data, extended) for c in part.children]
        result.append(part.subType.upper())
        if extended:
            result += [
                _flatParams(part.params()),
                _disposition(part),
                language,
                location,
            ]
        return result
    params = part.params()
    if part.mainType == "text" and not any(n == "charset" for n, _ in params):
        params = [("charset", "us-ascii"), *params]
    encoding = headers.get("content-transfer-encoding")
    result = [
        part.mainType.upper(),
        part.subType.upper(),
        _flatParams(params),
        _value(headers, "content-id"),
        _value(headers, "content-description"),
        (encoding or b"7BIT").upper(),
        part.end - part.bodyStart,
    ]
    lines = lineCount(data, part.bodyStart, part.end)
    if part.mainType == "text":
        result.append(lines)
    elif part.message is not None:
        result += [
            envelope(part.message.headers),
            bodyStructure(part.message, data, extended),
            lines,
        ]
    if extended:
        result += [
            _value(headers, "content-md5"),
            _disposition(part),
            language,
            location,
        ]
    return result
