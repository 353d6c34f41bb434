"""
SEARCH (RFC 3501 6.4.4): search keys parsed into a tree of criteria,
then evaluated message by message.

Each criterion says what it needs: the index row only (flags, UID,
sequence number, size, internal date), the header section, or the
decoded text. A search whose keys need only index rows never opens a
message file; one on headers reads only each message's header section;
only BODY and TEXT read whole messages, streaming
(L{appnet.mail.imap.textsearch}). Evaluation runs in a worker thread over
a batch of messages at a time (see L{appnet.mail.imap.server}), so memory
holds a few chunks and headers, never a message's or a mailbox's bodies.

Twisted's search (C{IMAP4Server.search_*}) fetches every message of the
mailbox with its headers and body loaded before matching, and answers
every C{NOT}, C{OR} and sequence-set key by re-scanning the query; it is
replaced.
"""

from __future__ import annotations

import email
import email.utils
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import BinaryIO

from attrs import define, field, frozen

from appnet.mail.imap import mime
from appnet.mail.imap.errors import BadCommand, CommandFailed
from appnet.mail.imap.parse import Arguments, SequenceSet
from appnet.mail.imap.textsearch import containsText
from appnet.mail.imap.wire import parseDate
from appnet.store.interfaces import MessageBody, MessageInfo

__all__ = ["Candidate", "Criterion", "evaluate", "parseSearch", "INDEX", "HEADER"]

#: What a criterion needs to be decided.
INDEX, HEADER, TEXT = 0, 1, 2

#: Header sections longer than this are searched only this far.
MAX_HEADER = 1 << 20

#: Charsets a client may name (search strings are decoded with them).
CHARSETS = {"US-ASCII": "ascii", "UTF-8": "utf-8"}


@define
class Candidate:
    """
    One message being searched, loading what criteria ask for once.

    @ivar seq: its sequence number in the session.
    @ivar info: its index row, with the flags the session knows.
    @ivar body: its bytes, or C{None} if it has been expunged meanwhile.
    @ivar recent: it is C{\\Recent} in the session.
    """

    seq: int
    info: MessageInfo
    body: MessageBody | None
    recent: bool = False
    _headers: mime.Headers | None = field(default=None, init=False)

    def headers(self) -> mime.Headers:
        """The header section (blocking: a file read)."""
        if self._headers is None:
            raw = b""
            if self.body is not None:
                with self.body.open() as f:
                    raw = readHeader(f)
            self._headers = mime.Headers(raw)
        return self._headers

    def rawVerdict(self, value: str, withHeaders: bool) -> bool | None:
        """
        Whether the message's text holds C{value}, if its raw bytes tell
        (L{rawContains}); C{None} if it takes decoding (blocking).
        """
        if self.body is None or self.body.size > MAX_RAW:
            return None
        with self.body.open() as f:
            raw = f.read(MAX_RAW + 1)
        if len(raw) > MAX_RAW:
            return None
        return rawContains(raw, value, withHeaders)

    def bodyContains(self, value: str) -> bool:
        """
        Whether the decoded text of a text part contains C{value}
        (case-folded): the file streamed, never loaded (blocking).
        """
        if self.body is None:
            return not value
        with self.body.open() as f:
            return containsText(f, value)

    def release(self) -> None:
        """Forget what was loaded (the search is done with it)."""
        self._headers = None


#: Messages up to this size are first looked at raw (L{rawContains}).
MAX_RAW = 1 << 20
#: What in a message's raw bytes may decode to text not in them: encoded
#: words, transfer encodings, 8-bit bytes (checked apart), charsets.
_ENCODED = (b"=?", b"base64", b"quoted-printable")
#: The main type of a Content-Type field (lowercased); anything else
#: there (folded, malformed) is left to the MIME parser.
_CONTENT_TYPE = re.compile(rb"(?m)^content-type[ \t]*:[ \t]*([a-z0-9!#$&^_.+-]*)")
_CHARSET = re.compile(rb'charset[^=\n]*=\s*"?([^\s";]*)')
#: Charsets that read 7-bit bytes as the same ASCII text.
_PLAIN_CHARSETS = frozenset(
    [b"us-ascii", b"ascii", b"utf-8", b"utf8", b"latin1", b"latin-1"]
    + [b"iso-8859-%d" % n for n in range(1, 17)]
    + [b"windows-%d" % n for n in range(1250, 1259)]
)


def rawContains(raw: bytes, value: str, withHeaders: bool) -> bool | None:
    """
    Whether the text of a message (C{raw}) holds C{value} (case-folded)
    as SEARCH TEXT (C{withHeaders}) or BODY sees it, decided from its
    bytes alone, or C{None} if that takes decoding.

    A message of 7-bit bytes with no encoded words, no base64 or
    quoted-printable and only ASCII-compatible charsets reads as itself:
    if its bytes, ASCII-lowercased, lack C{value}, its text does too.
    If they have it and the message is one text part, its header section
    and body are that text; otherwise (it may be in a part that is not
    text) it takes decoding.
    """
    if not raw.isascii() or "\n" in value:
        return None
    lowered = raw.lower()
    if any(marker in lowered for marker in _ENCODED):
        return None
    for charset in _CHARSET.findall(lowered):
        if charset not in _PLAIN_CHARSETS:
            return None
    if not value.isascii():
        # ASCII text case-folds to ASCII: a non-ASCII value is not in it.
        return False
    needle = value.encode("ascii")
    if needle not in lowered:
        return False
    end = mime.headerEnd(lowered)
    types = _CONTENT_TYPE.findall(lowered, 0, end)
    if len(types) > 1 or (types and types[0] != b"text"):
        return None
    if withHeaders:
        return True
    return lowered.find(needle, end) != -1


def readHeader(f: BinaryIO) -> bytes:
    """
    Read a message's header section (up to L{MAX_HEADER} bytes), reading
    little past its end.
    """
    data = b""
    want = 4096
    while len(data) < MAX_HEADER:
        chunk = f.read(want)
        want = min(want * 2, 65536)
        if not chunk:
            return data
        searchFrom = max(0, len(data) - 3)
        data += chunk
        if data.startswith((b"\r\n", b"\n")):
            return data[: 2 if data.startswith(b"\r\n") else 1]
        for marker in (b"\n\r\n", b"\n\n"):
            i = data.find(marker, searchFrom)
            if i != -1:
                return data[: mime.headerEnd(data)]
    return data[:MAX_HEADER]


@frozen
class Limits:
    """What C{*} means in the session: the last sequence number and UID."""

    lastSeq: int
    lastUID: int


class Criterion:
    """A search key."""

    needs = INDEX

    def match(self, m: Candidate, limits: Limits) -> bool:
        raise NotImplementedError


@frozen
class All(Criterion):
    def match(self, m: Candidate, limits: Limits) -> bool:
        return True


@frozen
class Recent(Criterion):
    """RECENT, or OLD (not C{present}): C{\\Recent} in this session."""

    present: bool

    def match(self, m: Candidate, limits: Limits) -> bool:
        return m.recent == self.present


@frozen
class Flag(Criterion):
    flag: str
    present: bool

    def match(self, m: Candidate, limits: Limits) -> bool:
        return (self.flag in m.info.flags) == self.present


@frozen
class Numbers(Criterion):
    numbers: SequenceSet
    uid: bool

    def match(self, m: Candidate, limits: Limits) -> bool:
        value = m.info.uid if self.uid else m.seq
        largest = limits.lastUID if self.uid else limits.lastSeq
        return any(lo <= value <= hi for lo, hi in self.numbers.bounds(largest))


@frozen
class Size(Criterion):
    bound: int
    larger: bool

    def match(self, m: Candidate, limits: Limits) -> bool:
        size = m.info.size
        return size > self.bound if self.larger else size < self.bound


def _compare(day: date, wanted: date, how: str) -> bool:
    if how == "BEFORE":
        return day < wanted
    if how == "ON":
        return day == wanted
    return day >= wanted


@frozen
class Arrived(Criterion):
    """BEFORE, ON, SINCE: the internal date, time and zone ignored."""

    how: str
    day: date

    def match(self, m: Candidate, limits: Limits) -> bool:
        arrived = datetime.fromtimestamp(m.info.internalDate, UTC).date()
        return _compare(arrived, self.day, self.how)


@frozen
class Sent(Criterion):
    """SENTBEFORE, SENTON, SENTSINCE: the Date field (else arrival)."""

    how: str
    day: date
    needs = HEADER

    def match(self, m: Candidate, limits: Limits) -> bool:
        raw = m.headers().get("date")
        sent = None
        if raw:
            try:
                sent = email.utils.parsedate_to_datetime(raw.decode("ascii", "replace"))
            except (TypeError, ValueError, IndexError):
                sent = None
        if sent is None:
            sent = datetime.fromtimestamp(m.info.internalDate, UTC)
        return _compare(sent.date(), self.day, self.how)


@frozen
class Header(Criterion):
    """FROM, TO, CC, BCC, SUBJECT, HEADER: substring, case-insensitive."""

    name: str
    value: str
    needs = HEADER

    def match(self, m: Candidate, limits: Limits) -> bool:
        values = m.headers().getAll(self.name)
        if not values:
            return False
        return any(self.value in mime.decodeHeader(v).casefold() for v in values)


@frozen
class Body(Criterion):
    """BODY and TEXT (TEXT also looks in the header section)."""

    value: str
    withHeaders: bool
    needs = TEXT

    def match(self, m: Candidate, limits: Limits) -> bool:
        verdict = m.rawVerdict(self.value, self.withHeaders)
        if verdict is not None:
            return verdict
        if self.withHeaders:
            headers = m.headers()
            if self.value in mime.decodeHeader(headers.raw).casefold():
                return True
        return m.bodyContains(self.value)


@frozen
class And(Criterion):
    keys: tuple[Criterion, ...]

    @property
    def needs(self) -> int:  # type: ignore[override]
        return max((k.needs for k in self.keys), default=INDEX)

    def match(self, m: Candidate, limits: Limits) -> bool:
        # Cheap keys first, so a flag test spares a file read.
        return all(k.match(m, limits) for k in sorted(self.keys, key=_cost))


@frozen
class Or(Criterion):
    left: Criterion
    right: Criterion

    @property
    def needs(self) -> int:  # type: ignore[override]
        return max(self.left.needs, self.right.needs)

    def match(self, m: Candidate, limits: Limits) -> bool:
        first, second = sorted((self.left, self.right), key=_cost)
        return first.match(m, limits) or second.match(m, limits)


@frozen
class Not(Criterion):
    key: Criterion

    @property
    def needs(self) -> int:  # type: ignore[override]
        return self.key.needs

    def match(self, m: Candidate, limits: Limits) -> bool:
        return not self.key.match(m, limits)


def _cost(key: Criterion) -> int:
    return key.needs


_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = {"FROM", "TO", "CC", "BCC", "SUBJECT"}
_DATE_KEYS = {"BEFORE", "ON", "SINCE"}
_SENT_KEYS = {"SENTBEFORE": "BEFORE", "SENTON": "ON", "SENTSINCE": "SINCE"}
_DATE_CHARS = frozenset(
    b"0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
#: How deeply search keys may nest.
MAX_NESTING = 64


class _Parser:
    def __init__(self, args: Arguments, charset: str) -> None:
        self.args = args
        self.charset = charset

    def text(self) -> str:
        raw = self.args.astring("a search string")
        try:
            return raw.decode(self.charset).casefold()
        except UnicodeDecodeError:
            raise BadCommand(f"Search string is not {self.charset}") from None

    def date(self) -> date:
        quoted = self.args.maybe(b'"')
        text = self.args.atom("a date", _DATE_CHARS)
        if quoted:
            self.args.expect(b'"', "a closing quote")
        try:
            return parseDate(text.decode("ascii"))
        except ValueError:
            raise BadCommand(f"Invalid date {text.decode('ascii')}") from None

    def keys(self, depth: int = 0) -> Criterion:
        """One or more keys separated by spaces, up to ')' or the end."""
        keys = [self.key(depth)]
        while self.args.maybe(b" "):
            keys.append(self.key(depth))
        return keys[0] if len(keys) == 1 else And(tuple(keys))

    def key(self, depth: int) -> Criterion:
        if depth > MAX_NESTING:
            raise BadCommand("Search keys nest too deeply")
        args = self.args
        if args.maybe(b"("):
            inner = self.keys(depth + 1)
            args.expect(b")", "')'")
            return inner
        first = args.peek()
        if first is not None and (chr(first).isdigit() or first == ord("*")):
            return Numbers(args.sequenceSet(), uid=False)
        word = args.atom("a search key").decode("ascii").upper()
        if word == "ALL":
            return All()
        if word in _FLAG_KEYS:
            return Flag(*_FLAG_KEYS[word])
        if word in ("RECENT", "OLD"):
            return Recent(word == "RECENT")
        if word == "NEW":
            return And((Recent(True), Flag("\\Seen", False)))
        if word in ("KEYWORD", "UNKEYWORD"):
            args.sp()
            return Flag(args.flag(), word == "KEYWORD")
        if word in _HEADER_KEYS:
            args.sp()
            return Header(word.lower(), self.text())
        if word == "HEADER":
            args.sp()
            name = args.astring("a header field name").decode("ascii", "replace")
            args.sp()
            return Header(name.lower(), self.text())
        if word in ("BODY", "TEXT"):
            args.sp()
            return Body(self.text(), withHeaders=word == "TEXT")
        if word in _DATE_KEYS:
            args.sp()
            return Arrived(word, self.date())
        if word in _SENT_KEYS:
            args.sp()
            return Sent(_SENT_KEYS[word], self.date())
        if word in ("LARGER", "SMALLER"):
            args.sp()
            return Size(args.number("a size"), larger=word == "LARGER")
        if word == "UID":
            args.sp()
            return Numbers(args.sequenceSet(), uid=True)
        if word == "NOT":
            args.sp()
            return Not(self.key(depth + 1))
        if word == "OR":
            args.sp()
            left = self.key(depth + 1)
            args.sp()
            return Or(left, self.key(depth + 1))
        raise BadCommand(f"Unknown search key {word}")


def parseSearch(args: Arguments) -> Criterion:
    """
    C{[CHARSET name] key...} (after C{SEARCH }), to the end of the
    command.

    @raise BadCommand: for malformed keys.
    @raise CommandFailed: (C{BADCHARSET}) for a charset other than
        US-ASCII and UTF-8.
    """
    charset = "utf-8"
    if args.peekWord() == b"CHARSET":
        args.atom()
        args.sp()
        name = args.astring("a charset").decode("ascii", "replace").upper()
        if name not in CHARSETS:
            raise CommandFailed(
                f"Unsupported charset {name}", "BADCHARSET (US-ASCII UTF-8)"
            )
        charset = CHARSETS[name]
        args.sp()
    criterion = _Parser(args, charset).keys()
    args.end()
    return criterion


def evaluate(
    criterion: Criterion, candidates: Sequence[Candidate], limits: Limits
) -> list[Candidate]:
    """
    The candidates that match (blocking when the criterion needs message
    contents: run it in a thread).
    """
    found = []
    for m in candidates:
        if criterion.match(m, limits):
            found.append(m)
        m.release()
    return found


#: The batch the server gives L{evaluate} at once, by what it needs.
BATCH = {INDEX: 1 << 30, HEADER: 500, TEXT: 500}
