"""
Reading a command's arguments (RFC 3501 9), once the whole command —
its lines and literals — has been received.

The server receives a command as text parts (each line, its literal
marker removed) alternating with literal data (L{Literal}); an
L{Arguments} cursor reads atoms, strings (quoted or literal), lists,
flags and sequence sets from it in order, raising L{BadCommand} with a
message that names what was expected. Twisted's argument parsers
(C{IMAP4Server.arg_*}) read literals as they arrive through Deferreds
and cannot be used on a command already received; they also mis-parse
quoted strings holding an escaped quote (C{"a\\"b"}), so this module
replaces them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from attrs import frozen

from appnet.mail.imap.errors import BadCommand
from appnet.mail.imap.wire import BadMailboxName, decodeMailbox

__all__ = [
    "Arguments",
    "Literal",
    "SequenceSet",
    "SYSTEM_FLAGS",
    "normaliseFlag",
]

T = TypeVar("T")

#: ATOM-CHAR: any CHAR except atom-specials (RFC 3501 9).
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]')
ATOM_CHARS = frozenset(c for c in range(0x21, 0x7F) if c not in _ATOM_SPECIALS)
#: ASTRING-CHAR adds "]".
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
#: What a tag may hold: ASTRING-CHAR except "+".
TAG_CHARS = ASTRING_CHARS - {ord("+")}
_SEQUENCE_CHARS = frozenset(b"0123456789:*,")

#: The system flags a client may set, by their lower-case spelling.
SYSTEM_FLAGS = {
    f.lower(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
}

#: The largest number an IMAP nz-number may be.
MAX_NUMBER = 4294967295


class Literal:
    """
    A literal received as part of a command (a string argument), or the
    message of an APPEND, staged in the store.

    @ivar data: the bytes, for literals kept in memory.
    @ivar staged: the L{appnet.store.interfaces.IStagedMessage} an APPEND
        message was written to.
    @ivar size: the literal's announced size.
    """

    def __init__(self, size: int, staged: Any = None) -> None:
        self.size = size
        self.staged = staged
        self._chunks: list[bytes] = []
        self.received = 0

    def write(self, data: bytes) -> None:
        self.received += len(data)
        if self.staged is not None:
            self.staged.write(data)
        else:
            self._chunks.append(data)

    @property
    def data(self) -> bytes:
        return b"".join(self._chunks)

    def discard(self) -> None:
        """Drop a staged message that will not be delivered."""
        if self.staged is not None:
            self.staged.discard()


def normaliseFlag(flag: str) -> str:
    """
    A flag as stored: system flags in their canonical spelling.

    @raise BadCommand: for C{\\Recent} or an unknown system flag.
    """
    if flag.startswith("\\"):
        known = SYSTEM_FLAGS.get(flag.lower())
        if known is None:
            raise BadCommand(f"Unknown system flag {flag}")
        return known
    return flag


def _shown(text: bytes) -> str:
    """A client's word for an error reply: ASCII, and not too long."""
    shown = text[:40].decode("ascii", "replace")
    return shown + "..." if len(text) > 40 else shown


@frozen
class SequenceSet:
    """
    A sequence set (C{1:4,7,9:*}): ranges of numbers, C{None} being
    C{*} (the largest number in use).
    """

    ranges: tuple[tuple[int | None, int | None], ...]

    @classmethod
    def parse(cls, text: bytes) -> SequenceSet:
        """
        @raise BadCommand: if malformed (empty parts, zero, too large).
        """
        ranges: list[tuple[int | None, int | None]] = []
        for part in text.split(b","):
            low, colon, high = part.partition(b":")
            first = cls._number(low, text)
            ranges.append((first, cls._number(high, text) if colon else first))
        return cls(tuple(ranges))

    @staticmethod
    def _number(text: bytes, whole: bytes) -> int | None:
        if text == b"*":
            return None
        # Ten digits hold any 32-bit number; longer is refused before
        # int(), which raises past 4,300 digits.
        if not text.isdigit() or text.startswith(b"0") or len(text) > 10:
            raise BadCommand(f"Invalid sequence set {_shown(whole)}")
        value = int(text)
        if value > MAX_NUMBER:
            raise BadCommand(f"Invalid sequence set {_shown(whole)}")
        return value

    def bounds(self, largest: int) -> list[tuple[int, int]]:
        """
        The ranges with C{*} as C{largest}, each ordered low to high.
        """
        resolved = []
        for low, high in self.ranges:
            a = largest if low is None else low
            b = largest if high is None else high
            resolved.append((min(a, b), max(a, b)))
        return resolved


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _forbidden(c: int) -> str:
    return repr(chr(c)) if 0x20 <= c < 0x7F else f"byte {c:#04x}"


class Arguments:
    """
    A cursor over a received command's arguments.

    @param parts: text (C{bytes}) and L{Literal} parts, alternating,
        starting and ending with text.
    """

    def __init__(self, parts: Sequence[bytes | Literal]) -> None:
        self._parts = list(parts)
        self._index = 0
        self._offset = 0

    # Position.

    def _current(self) -> bytes | Literal | None:
        while self._index < len(self._parts):
            part = self._parts[self._index]
            if isinstance(part, Literal) or self._offset < len(part):
                return part
            self._index += 1
            self._offset = 0
        return None

    def _text(self) -> bytes:
        part = self._current()
        return part[self._offset :] if isinstance(part, bytes) else b""

    def peek(self) -> int | None:
        """The next byte, or C{None} at a literal or the end."""
        text = self._text()
        return text[0] if text else None

    def peekWord(self) -> bytes:
        """The atom characters that come next, upper-cased, not consumed."""
        text = self._text()
        n = 0
        while n < len(text) and text[n] in ATOM_CHARS:
            n += 1
        return text[:n].upper()

    def atEnd(self) -> bool:
        """Is everything read?"""
        return self._current() is None

    def atLiteral(self) -> bool:
        """Is a literal next?"""
        return isinstance(self._current(), Literal)

    def _take(self, count: int) -> bytes:
        text = self._text()
        taken = text[:count]
        self._offset += len(taken)
        return taken

    def _takeWhile(self, allowed: frozenset[int]) -> bytes:
        text = self._text()
        n = 0
        while n < len(text) and text[n] in allowed:
            n += 1
        return self._take(n)

    # Grammar pieces.

    def expect(self, token: bytes, what: str | None = None) -> None:
        """Consume C{token} exactly."""
        if not self._text().startswith(token):
            raise BadCommand(f"Expected {what or repr(token.decode())}")
        self._take(len(token))

    def sp(self) -> None:
        """One space between arguments."""
        self.expect(b" ", "a space")

    def end(self) -> None:
        """Nothing may follow."""
        if not self.atEnd():
            raise BadCommand("Unexpected extra arguments")

    def maybe(self, token: bytes) -> bool:
        """Consume C{token} if it is next."""
        if self._text().startswith(token):
            self._take(len(token))
            return True
        return False

    def atom(self, what: str = "an atom", chars: frozenset[int] = ATOM_CHARS) -> bytes:
        """An atom (or a word of the given characters)."""
        word = self._takeWhile(chars)
        if not word:
            found = self.peek()
            if found is None:
                raise BadCommand(f"Expected {what}")
            raise BadCommand(f"Expected {what}, found {_forbidden(found)}")
        return word

    def number(self, what: str = "a number") -> int:
        """A number (digits)."""
        digits = self._takeWhile(frozenset(b"0123456789"))
        if not digits or len(digits) > 10 or int(digits) > MAX_NUMBER:
            raise BadCommand(f"Expected {what}")
        return int(digits)

    def quoted(self) -> bytes:
        """A quoted string, with its escapes undone."""
        self.expect(b'"', "a quoted string")
        text = self._text()
        out = bytearray()
        i = 0
        while i < len(text):
            c = text[i]
            if c == 0x22:
                self._take(i + 1)
                return bytes(out)
            if c == 0x5C:
                if i + 1 >= len(text) or text[i + 1] not in (0x22, 0x5C):
                    raise BadCommand("Bad escape in quoted string")
                out.append(text[i + 1])
                i += 2
                continue
            out.append(c)
            i += 1
        raise BadCommand("Unterminated quoted string")

    def literal(self) -> Literal:
        """The literal that comes next."""
        part = self._current()
        if not isinstance(part, Literal):
            raise BadCommand("Expected a literal")
        self._index += 1
        self._offset = 0
        return part

    def string(self, what: str = "a string") -> bytes:
        """A quoted string or a literal."""
        if self.atLiteral():
            return self.literal().data
        if self.peek() == 0x22:
            return self.quoted()
        raise BadCommand(f"Expected {what}")

    def astring(self, what: str = "a string") -> bytes:
        """An atom (with "]") or a string."""
        if self.atLiteral() or self.peek() == 0x22:
            return self.string(what)
        return self.atom(what, ASTRING_CHARS)

    def nstring(self) -> bytes | None:
        """A string or NIL."""
        if self._text()[:3].upper() == b"NIL" and not self.atLiteral():
            self._take(3)
            return None
        return self.string()

    def mailbox(self) -> str:
        """A mailbox name (modified UTF-7, INBOX in any case)."""
        raw = self.astring("a mailbox name")
        try:
            name = decodeMailbox(raw)
        except BadMailboxName as e:
            raise BadCommand(_sentence(str(e))) from None
        if name.upper() == "INBOX":
            return "INBOX"
        if name[:6].upper() == "INBOX/":
            return "INBOX" + name[5:]
        return name

    def listMailbox(self) -> str:
        """A LIST pattern: a mailbox name that may hold C{%} and C{*}."""
        if self.atLiteral() or self.peek() == 0x22:
            raw = self.string()
        else:
            raw = self.atom("a mailbox pattern", ASTRING_CHARS | {ord("%"), ord("*")})
        try:
            return decodeMailbox(raw)
        except BadMailboxName as e:
            raise BadCommand(_sentence(str(e))) from None

    def parenthesised(
        self, item: Callable[[Arguments], T], empty: bool = True
    ) -> list[T]:
        """C{(item SP item ...)}."""
        self.expect(b"(", "'('")
        items: list[T] = []
        if self.maybe(b")"):
            if not empty:
                raise BadCommand("Empty list")
            return items
        while True:
            items.append(item(self))
            if self.maybe(b")"):
                return items
            self.sp()

    def flag(self) -> str:
        """A flag: C{\\Seen} or a keyword."""
        backslash = self.maybe(b"\\")
        word = self.atom("a flag").decode("ascii")
        return normaliseFlag("\\" + word) if backslash else word

    def flagList(self) -> list[str]:
        """C{(flag ...)}."""
        return self.parenthesised(Arguments.flag)

    def storeFlags(self) -> list[str]:
        """
        STORE's flags: a list, or flags separated by spaces. C{\\Recent}
        is accepted and left out: only the server sets or clears it (RFC
        3501 2.3.2), but a client may write back the flags a FETCH showed.
        """
        if self.peek() == ord("("):
            flags = self.parenthesised(Arguments._storeFlag)
        else:
            flags = [self._storeFlag()]
            while self.maybe(b" "):
                flags.append(self._storeFlag())
        return [flag for flag in flags if flag]

    def _storeFlag(self) -> str:
        """A flag, or C{""} for C{\\Recent}."""
        backslash = self.maybe(b"\\")
        word = self.atom("a flag").decode("ascii")
        if backslash and word.lower() == "recent":
            return ""
        return normaliseFlag("\\" + word) if backslash else word

    def sequenceSet(self) -> SequenceSet:
        """A sequence set."""
        text = self._takeWhile(_SEQUENCE_CHARS)
        if not text:
            raise BadCommand("Expected a sequence set")
        return SequenceSet.parse(text)
