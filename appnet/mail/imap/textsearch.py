"""
SEARCH BODY/TEXT over a message file as a stream: MIME parts are walked
line by line, text parts decoded (transfer encoding, then charset)
incrementally and matched chunk by chunk, so one search holds a few
chunks in memory whatever the message's size.
"""

from __future__ import annotations

import binascii
import codecs
from collections.abc import Callable, Iterator
from typing import BinaryIO

from appnet.mail.imap import mime

__all__ = ["containsText"]

#: Longest line read at once; longer lines arrive in pieces.
LINE = 1 << 16
#: What a part with no boundary to watch for is read by.
CHUNK = 1 << 16
#: Header sections longer than this are cut (the rest is skipped).
MAX_HEADER = 1 << 20


class _Found(Exception):
    """The needle was seen: stop reading."""


class _Lines:
    """Lines of a file, at most L{LINE} bytes each, with one pushback."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._back: tuple[bytes, bool] | None = None
        self._atStart = True

    def next(self) -> tuple[bytes, bool]:
        """
        The next line (or piece of a long one) and whether it starts a
        line; C{b""} at the end.
        """
        if self._back is not None:
            back, self._back = self._back, None
            return back
        atStart = self._atStart
        line = self._f.readline(LINE)
        self._atStart = line.endswith(b"\n")
        return line, atStart

    def push(self, line: bytes, atStart: bool) -> None:
        self._back = (line, atStart)

    def chunks(self) -> Iterator[bytes]:
        """The rest of the file in large pieces (no boundary to watch)."""
        if self._back is not None:
            yield self._back[0]
            self._back = None
        while chunk := self._f.read(CHUNK):
            yield chunk


class _Matcher:
    """Case-folded text fed in pieces; raises L{_Found} on a match."""

    def __init__(self, needle: str) -> None:
        self._needle = needle
        self._keep = max(len(needle) - 1, 0)
        self._tail = ""

    def feed(self, text: str) -> None:
        if not text:
            return
        window = self._tail + text.casefold()
        if self._needle in window:
            raise _Found()
        self._tail = window[-self._keep :] if self._keep else ""

    def reset(self) -> None:
        self._tail = ""


def _boundaryOf(line: bytes, boundaries: list[bytes]) -> int | None:
    """
    The depth of the boundary (C{--b} or C{--b--}) this line is, if any.
    """
    if not line.startswith(b"--"):
        return None
    stripped = line.rstrip(b" \t\r\n")
    for depth in range(len(boundaries) - 1, -1, -1):
        b = boundaries[depth]
        if stripped == b"--" + b or stripped == b"--" + b + b"--":
            return depth
    return None


def _transferDecoder(encoding: str) -> Callable[[bytes], bytes]:
    if encoding == "base64":
        pending = bytearray()

        def base64(line: bytes) -> bytes:
            pending.extend(c for c in line if c not in b" \t\r\n")
            usable = len(pending) - len(pending) % 4
            chunk = bytes(pending[:usable])
            del pending[:usable]
            try:
                return binascii.a2b_base64(chunk)
            except binascii.Error:
                return b""

        return base64
    if encoding == "quoted-printable":
        return binascii.a2b_qp
    return lambda line: line


def _charsetDecoder(charset: str) -> codecs.IncrementalDecoder:
    charset = charset.strip().lower() or "utf-8"
    if charset in ("us-ascii", "ascii"):
        # Undeclared 8-bit text is nearly always UTF-8.
        charset = "utf-8"
    try:
        return codecs.getincrementaldecoder(charset)(errors="replace")
    except LookupError:
        return codecs.getincrementaldecoder("utf-8")(errors="replace")


def _readHeaders(lines: _Lines, boundaries: list[bytes]) -> mime.Headers | None:
    """
    An entity's header section, or C{None} if a boundary (or the end)
    came first (that line is pushed back).
    """
    raw = bytearray()
    while True:
        line, atStart = lines.next()
        if not line:
            return mime.Headers(bytes(raw))
        if atStart and _boundaryOf(line, boundaries) is not None:
            lines.push(line, atStart)
            return mime.Headers(bytes(raw))
        if atStart and line in (b"\r\n", b"\n"):
            return mime.Headers(bytes(raw))
        if len(raw) < MAX_HEADER:
            raw += line


def _entity(
    lines: _Lines,
    boundaries: list[bytes],
    matcher: _Matcher,
    default: tuple[str, str],
) -> None:
    """
    Walk one entity (headers, then body) up to the next boundary of an
    enclosing multipart, which is pushed back.
    """
    headers = _readHeaders(lines, boundaries)
    if headers is None:
        return
    main, sub = mime.contentType(headers, default)
    if main == "multipart":
        boundary = headers.parsed.get_param("boundary")
        if isinstance(boundary, str) and boundary:
            _multipart(lines, boundaries, matcher, boundary.encode(), sub)
            return
        main, sub = "text", "plain"
    if main == "message" and sub == "rfc822":
        _entity(lines, boundaries, matcher, ("text", "plain"))
        _skip(lines, boundaries)
        return
    if main != "text":
        _skip(lines, boundaries)
        return
    encoding = (headers.get("content-transfer-encoding") or b"").decode(
        "ascii", "replace"
    )
    charset = headers.parsed.get_param("charset", "utf-8")
    transfer = _transferDecoder(encoding.strip().lower())
    decoder = _charsetDecoder(charset if isinstance(charset, str) else "utf-8")
    matcher.reset()
    if not boundaries and encoding.strip().lower() != "quoted-printable":
        # A single-part message: no line to look at, so read it in large
        # pieces (base64 and 8-bit decoding take any piece).
        for chunk in lines.chunks():
            matcher.feed(decoder.decode(transfer(chunk)))
        matcher.feed(decoder.decode(b"", final=True))
        return
    while True:
        line, atStart = lines.next()
        if not line:
            break
        if atStart and _boundaryOf(line, boundaries) is not None:
            lines.push(line, atStart)
            break
        matcher.feed(decoder.decode(transfer(line)))
    matcher.feed(decoder.decode(b"", final=True))


def _skip(lines: _Lines, boundaries: list[bytes]) -> None:
    while True:
        line, atStart = lines.next()
        if not line:
            return
        if atStart and _boundaryOf(line, boundaries) is not None:
            lines.push(line, atStart)
            return


def _multipart(
    lines: _Lines,
    boundaries: list[bytes],
    matcher: _Matcher,
    boundary: bytes,
    sub: str,
) -> None:
    inner = [*boundaries, boundary]
    depth = len(boundaries)
    default = ("message", "rfc822") if sub == "digest" else ("text", "plain")
    _skip(lines, inner)  # the preamble
    while True:
        line, atStart = lines.next()
        if not line:
            return
        found = _boundaryOf(line, inner)
        if found is None:
            continue
        if found < depth:
            # An enclosing multipart's boundary: this one ended early.
            lines.push(line, atStart)
            return
        if (
            line.rstrip(b" \t\r\n").endswith(b"--")
            and line.rstrip(b" \t\r\n") == b"--" + boundary + b"--"
        ):
            _skip(lines, boundaries)  # the epilogue
            return
        _entity(lines, inner, matcher, default)


def containsText(f: BinaryIO, needle: str) -> bool:
    """
    Whether the decoded text of any text part of the message read from
    C{f} contains C{needle} (already case-folded), ignoring case. Reads
    the file once, in pieces (blocking).
    """
    if not needle:
        return True
    try:
        _entity(_Lines(f), [], _Matcher(needle), ("text", "plain"))
    except _Found:
        return True
    return False
