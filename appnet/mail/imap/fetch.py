"""
FETCH (RFC 3501 6.4.5): what a client asks for, and rendering it.

L{parseFetch} reads the data items (macros, C{BODY.PEEK[1.2.MIME]<0.100>}
...). L{render} builds one message's response in a worker thread: it
reads nothing when the items need only index data, the header section
for ENVELOPE and header sections, and the whole message only for
structure and part contents; content larger than a limit is left as a
L{Range} for the server to stream from the file in chunks, so a large
message never sits in memory whole for BODY[] or RFC822.

Twisted's FETCH (C{IMAP4Server.do_FETCH} and C{spew_*}) asks the backend
for every message object up front, spends a reactor iteration on every
item of every message, renders ENVELOPE and BODYSTRUCTURE with the
helpers L{appnet.mail.imap.mime} replaces, and writes without waiting
for the transport to drain; it is replaced.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, BinaryIO

from attrs import frozen

from appnet.errors import NoSuchMessage
from appnet.mail.imap import mime
from appnet.mail.imap.errors import BadCommand
from appnet.mail.imap.parse import Arguments
from appnet.mail.imap.search import readHeader
from appnet.mail.imap.wire import atoms, encode, formatDateTime
from appnet.store.interfaces import MessageBody, MessageInfo

__all__ = [
    "FetchItem",
    "HeaderCache",
    "Range",
    "Section",
    "parseFetch",
    "render",
    "renderHeader",
]

#: What an item needs to be answered.
INDEX, HEADER, STRUCTURE, CONTENT = 0, 1, 2, 3

_SECTION_CHARS = frozenset(
    b"0123456789.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_NAME_CHARS = frozenset(
    b"0123456789.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_TEXT_KINDS = {"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"}


@frozen
class Section:
    """
    A BODY section: part numbers, then C{HEADER}, C{HEADER.FIELDS},
    C{HEADER.FIELDS.NOT}, C{TEXT}, C{MIME} or nothing.
    """

    parts: tuple[int, ...] = ()
    kind: str = ""
    fields: tuple[bytes, ...] = ()

    def label(self) -> bytes:
        spec = ".".join(str(p) for p in self.parts)
        if self.kind:
            spec = f"{spec}.{self.kind}" if spec else self.kind
        out = spec.encode("ascii")
        if self.fields:
            out += b" (" + b" ".join(self.fields) + b")"
        return b"[" + out + b"]"


@frozen
class FetchItem:
    """
    One data item.

    @ivar name: C{FLAGS}, C{UID}, C{INTERNALDATE}, C{RFC822.SIZE},
        C{ENVELOPE}, C{BODYSTRUCTURE}, C{BODY} (structure without
        extensions), C{BODY[]} (a section), C{RFC822}, C{RFC822.HEADER},
        C{RFC822.TEXT}.
    """

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    @property
    def needs(self) -> int:
        if self.name in ("FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE"):
            return INDEX
        if self.name in ("ENVELOPE", "RFC822.HEADER"):
            return HEADER
        if self.name in ("BODYSTRUCTURE", "BODY"):
            return STRUCTURE
        if self.name in ("RFC822", "RFC822.TEXT"):
            return CONTENT
        section = self.section
        assert section is not None
        if section.parts:
            return STRUCTURE
        if section.kind.startswith("HEADER"):
            return HEADER
        return CONTENT

    @property
    def setsSeen(self) -> bool:
        """Does fetching it mark the message read?"""
        if self.name in ("RFC822", "RFC822.TEXT"):
            return True
        return self.name == "BODY[]" and not self.peek

    def label(self) -> bytes:
        if self.name != "BODY[]":
            return self.name.encode("ascii")
        assert self.section is not None
        label = b"BODY" + self.section.label()
        if self.partial is not None:
            label += b"<%d>" % self.partial[0]
        return label


_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SIMPLE = {
    "FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE",
    "BODYSTRUCTURE", "BODY", "RFC822", "RFC822.HEADER", "RFC822.TEXT",
}  # fmt: skip


def _section(args: Arguments) -> Section:
    spec = ""
    if args.peek() != ord("]"):
        spec = args.atom("a section", _SECTION_CHARS).decode("ascii").upper()
    parts: list[int] = []
    words = spec.split(".") if spec else []
    while words and words[0].isdigit():
        word = words.pop(0)
        number = int(word) if len(word) <= 6 else 0
        if number == 0 or number > 100000:
            raise BadCommand(f"Invalid section part {word[:20]}")
        parts.append(number)
    kind = ".".join(words)
    if kind not in _TEXT_KINDS or (kind == "MIME" and not parts):
        raise BadCommand(f"Invalid section {spec}")
    fields: tuple[bytes, ...] = ()
    if kind.startswith("HEADER.FIELDS"):
        args.sp()
        names = args.parenthesised(lambda a: a.astring("a header field name"), False)
        fields = tuple(names)
    args.expect(b"]", "']'")
    return Section(tuple(parts), kind, fields)


def _item(args: Arguments) -> FetchItem:
    name = args.atom("a fetch item", _NAME_CHARS).decode("ascii").upper()
    if name in ("BODY", "BODY.PEEK") and args.maybe(b"["):
        section = _section(args)
        partial = None
        if args.maybe(b"<"):
            start = args.number("a partial start")
            args.expect(b".", "'.'")
            length = args.number("a partial length")
            if length == 0:
                raise BadCommand("A partial length must not be zero")
            args.expect(b">", "'>'")
            partial = (start, length)
        return FetchItem("BODY[]", section, partial, name == "BODY.PEEK")
    if name in _SIMPLE:
        return FetchItem(name)
    raise BadCommand(f"Unknown fetch item {name}")


def parseFetch(args: Arguments) -> list[FetchItem]:
    """
    The data items of a FETCH, to the end of the command.
    """
    if args.peek() == ord("("):
        items = args.parenthesised(_item, empty=False)
    else:
        word = args.peekWord().decode("ascii")
        if word in _MACROS:
            args.atom()
            items = [FetchItem(n) for n in _MACROS[word]]
        else:
            items = [_item(args)]
    args.end()
    return items


@lru_cache(maxsize=1024)
def flagList(flags: frozenset[str]) -> bytes:
    """A FLAGS value (cached: most messages share a few sets of flags)."""
    return atoms(sorted(flags))


def renderIndex(
    seq: int,
    info: MessageInfo,
    items: Sequence[FetchItem],
    uid: bool,
    flags: frozenset[str],
) -> bytes:
    """
    A FETCH response of index items only (FLAGS, UID, INTERNALDATE,
    RFC822.SIZE): the fast path for C{FETCH 1:* (FLAGS UID)}.

    @param flags: the flags to report (the session's C{\\Recent} added).
    """
    values = []
    if uid and not any(i.name == "UID" for i in items):
        values.append(b"UID %d" % info.uid)
    for item in items:
        name = item.name
        if name == "FLAGS":
            values.append(b"FLAGS " + flagList(flags))
        elif name == "UID":
            values.append(b"UID %d" % info.uid)
        elif name == "RFC822.SIZE":
            values.append(b"RFC822.SIZE %d" % info.size)
        else:
            values.append(b"INTERNALDATE " + formatDateTime(info.internalDate))
    return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(values))


@frozen
class Range:
    """
    Content to stream from a message file: C{length} bytes from
    C{start}, after a literal marker already rendered.

    @ivar file: the message, opened while rendering (so it stays readable
        if another session expunges it meanwhile); whoever streams the
        pieces closes it (L{closeFiles}).
    """

    file: BinaryIO
    start: int
    length: int


def closeFiles(pieces: Sequence[Piece]) -> None:
    """Close the files the L{Range}s among C{pieces} hold."""
    for piece in pieces:
        if isinstance(piece, Range) and not piece.file.closed:
            piece.file.close()


Piece = bytes | Range


def _partial(item: FetchItem, start: int, end: int) -> tuple[int, int]:
    """The byte range an item's partial selects from C{[start, end)}."""
    if item.partial is None:
        return start, end
    offset, length = item.partial
    first = min(end, start + offset)
    return first, min(end, first + length)


def render(
    seq: int,
    info: MessageInfo,
    body: MessageBody | None,
    items: Sequence[FetchItem],
    flags: frozenset[str],
    uid: bool,
    inline: int,
) -> list[Piece]:
    """
    One message's FETCH response, from C{* seq FETCH (} to C{)\\r\\n}
    (blocking when items need the message: run it in a thread).

    @param body: the message's bytes, or C{None} if it was expunged
        meanwhile (content items are then left out, as when its file is
        gone by the time it is opened: RFC 2180 section 4.1.2).
    @param flags: the flags to report (they may have just gained
        C{\\Seen}; the session's C{\\Recent} added).
    @param uid: add C{UID} (a UID FETCH) unless asked for.
    @param inline: content longer than this is returned as a L{Range}
        to stream, when the message is not in memory anyway.
    """
    return renderMessage(seq, info, body, items, flags, uid, inline)[0]


def renderMessage(
    seq: int,
    info: MessageInfo,
    body: MessageBody | None,
    items: Sequence[FetchItem],
    flags: frozenset[str],
    uid: bool,
    inline: int,
    headers: list[bytes | None] | None = None,
) -> tuple[list[Piece], bool]:
    """
    L{render}, and whether the message's content was wanted but gone
    (C{body} is C{None}, or its file was removed before it was opened).

    @param headers: if given, the header section read (or C{None}) is
        added to it.
    """
    needs = max((item.needs for item in items), default=INDEX)
    loaded = _Loaded()
    file: BinaryIO | None = None
    if needs > INDEX and body is not None:
        try:
            file = body.open()
        except (FileNotFoundError, NoSuchMessage):
            # Expunged by another session since it was looked up.
            body = None
    try:
        pieces = _render(seq, info, file, loaded, items, flags, uid, inline)
    except BaseException:
        if file is not None:
            file.close()
        raise
    if headers is not None:
        headers.append(loaded.header if file is not None else None)
    if file is not None and not any(isinstance(p, Range) for p in pieces):
        file.close()
    return pieces, needs > INDEX and file is None


def renderHeader(
    seq: int,
    info: MessageInfo,
    header: bytes,
    items: Sequence[FetchItem],
    flags: frozenset[str],
    uid: bool,
) -> list[Piece]:
    """
    L{render} for items that need no more than the header section, from
    the header section (not blocking: no file is read).
    """
    assert max((item.needs for item in items), default=INDEX) <= HEADER
    loaded = _Loaded()
    loaded.header = header
    return _render(seq, info, _NO_FILE, loaded, items, flags, uid, 0)


#: The file L{renderHeader} passes: the header section is loaded already.
_NO_FILE: BinaryIO = io.BytesIO()


class HeaderCache:
    """
    Header sections of messages lately fetched, by what names a message's
    content for good (L{appnet.mail.imap.mailbox.SelectedMailbox.key}):
    FETCH of headers the sessions ask for again and again needs no file
    read. At most C{budget} bytes are kept.
    """

    def __init__(self, budget: int = 8 << 20) -> None:
        self._budget = budget
        self._size = 0
        self._headers: dict[Any, bytes] = {}

    def getAll(self, keys: Sequence[Any]) -> list[bytes] | None:
        """The header sections of all these messages, if all are kept."""
        found = []
        for key in keys:
            header = self._headers.get(key)
            if header is None:
                return None
            found.append(header)
        return found

    def putAll(self, keys: Sequence[Any], headers: Sequence[bytes | None]) -> None:
        """Keep these header sections (C{None}: not read)."""
        for key, header in zip(keys, headers, strict=True):
            if header is None or len(header) > self._budget >> 6:
                continue
            if self._size + len(header) > self._budget:
                self._headers.clear()
                self._size = 0
            if key not in self._headers:
                self._headers[key] = header
                self._size += len(header)


def _render(
    seq: int,
    info: MessageInfo,
    file: BinaryIO | None,
    loaded: _Loaded,
    items: Sequence[FetchItem],
    flags: frozenset[str],
    uid: bool,
    inline: int,
) -> list[Piece]:
    needs = max((item.needs for item in items), default=INDEX)
    structure = any(item.needs == STRUCTURE for item in items)
    if file is not None and file is not _NO_FILE:
        if structure or (needs == CONTENT and info.size <= inline):
            loaded.data = file.read()
            loaded.header = loaded.data[: mime.headerEnd(loaded.data)]
            if structure:
                loaded.top = mime.parse(loaded.data)
        else:
            loaded.header = readHeader(file)
    pieces: list[Piece] = []
    text = [b"* %d FETCH (" % seq]
    added = [0]

    def add(name: bytes, value: bytes) -> None:
        text.append((b" " if added[0] else b"") + name + b" " + value)
        added[0] += 1

    if uid and not any(i.name == "UID" for i in items):
        add(b"UID", b"%d" % info.uid)
    for item in items:
        name = item.name
        if name == "FLAGS":
            add(b"FLAGS", flagList(flags))
        elif name == "UID":
            add(b"UID", b"%d" % info.uid)
        elif name == "INTERNALDATE":
            add(b"INTERNALDATE", formatDateTime(info.internalDate))
        elif name == "RFC822.SIZE":
            add(b"RFC822.SIZE", b"%d" % info.size)
        elif file is None:
            continue
        elif name == "ENVELOPE":
            add(b"ENVELOPE", encode(mime.envelope(mime.Headers(loaded.header))))
        elif name in ("BODYSTRUCTURE", "BODY"):
            assert loaded.top is not None
            tree = mime.bodyStructure(loaded.top, loaded.data, name == "BODYSTRUCTURE")
            add(name.encode("ascii"), encode(tree))
        else:
            content = _content(item, info, file, loaded, inline)
            if content is None:
                add(item.label(), b"NIL")
            elif isinstance(content, bytes):
                add(item.label(), b"{%d}\r\n%s" % (len(content), content))
            else:
                add(item.label(), b"{%d}\r\n" % content.length)
                pieces.append(b"".join(text))
                pieces.append(content)
                text = [b""]
    if not added[0]:
        # Nothing left to say of a message expunged meanwhile.
        return []
    text.append(b")\r\n")
    pieces.append(b"".join(text))
    return pieces


class _Loaded:
    """What was read of one message."""

    data: bytes = b""
    header: bytes = b""
    top: mime.Part | None = None


def _content(
    item: FetchItem, info: MessageInfo, file: BinaryIO, loaded: _Loaded, inline: int
) -> bytes | Range | None:
    """
    An item's content: bytes, a L{Range} of the file to stream, or
    C{None} (NIL) for a part the message does not have.
    """
    name = item.name
    section = item.section
    headerLength = len(loaded.header)
    if name == "RFC822.HEADER":
        return loaded.header
    if name == "RFC822" or (
        section is not None and not section.parts and not section.kind
    ):
        span = (0, info.size)
    elif name == "RFC822.TEXT" or (
        section is not None and not section.parts and section.kind == "TEXT"
    ):
        span = (headerLength, info.size)
    else:
        assert section is not None
        if not section.parts:
            if section.kind == "HEADER":
                return _slice(item, loaded.header)
            return _slice(item, _fields(loaded.header, section))
        assert loaded.top is not None
        part = mime.find(loaded.top, section.parts)
        if part is None:
            return None
        if section.kind == "":
            span = (part.bodyStart, part.end)
        elif section.kind == "MIME":
            span = (part.start, part.bodyStart)
        elif part.message is None:
            return None
        elif section.kind == "TEXT":
            span = (part.message.bodyStart, part.message.end)
        elif section.kind == "HEADER":
            span = (part.message.start, part.message.bodyStart)
        else:
            raw = loaded.data[part.message.start : part.message.bodyStart]
            return _slice(item, _fields(raw, section))
    start, end = _partial(item, *span)
    if loaded.data or info.size == 0:
        return loaded.data[start:end]
    if end - start <= inline:
        return readRange(file, start, end - start)
    return Range(file, start, end - start)


def _fields(header: bytes, section: Section) -> bytes:
    names = [f.decode("ascii", "replace") for f in section.fields]
    return mime.Headers(header).select(names, negate=section.kind.endswith(".NOT"))


def _slice(item: FetchItem, content: bytes) -> bytes:
    start, end = _partial(item, 0, len(content))
    return content[start:end]


def readRange(file: BinaryIO, start: int, length: int) -> bytes:
    """Read C{length} bytes at C{start} (blocking)."""
    file.seek(start)
    return file.read(length)
