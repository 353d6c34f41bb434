"""
How IMAP values look on the wire, in both directions: strings (atom,
quoted, literal), parenthesised lists, dates, and mailbox names in
modified UTF-7 (RFC 3501 5.1.3).

Twisted's C{collapseNestedLists} quotes every string (so an atom such as
a flag must be wrapped), sends a string with 8-bit bytes as a quoted
string (which RFC 3501 forbids) and raises on non-ASCII text; its
modified UTF-7 codec accepts non-canonical forms (C{&AGE-} for C{a},
a bare C{&}). L{encode} and L{decodeMailbox} here are strict; the codec
itself (registered by importing C{twisted.mail.imap4}) is reused.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable
from datetime import date

import twisted.mail.imap4  # noqa: F401  (registers the imap4-utf-7 codec)
from attrs import frozen

__all__ = [
    "Atom",
    "NIL",
    "BadMailboxName",
    "decodeMailbox",
    "encode",
    "encodeMailbox",
    "formatDateTime",
    "parseDate",
    "parseDateTime",
    "string",
    "uidSet",
]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip
_MONTH_NUMBERS = {name.lower(): i + 1 for i, name in enumerate(_MONTHS)}


@frozen
class Atom:
    """
    A value sent as is, unquoted: a flag, a keyword, C{NIL}, a number
    already formatted.
    """

    value: bytes


NIL = Atom(b"NIL")

#: Bytes that may appear in a quoted string (RFC 3501 9: QUOTED-CHAR is
#: any 7-bit TEXT-CHAR; backslash and double quote are escaped).
_QUOTABLE = re.compile(rb"^[\x01-\x09\x0b\x0c\x0e-\x7f]*$")


def string(value: bytes | str | None) -> bytes:
    """
    A string: C{NIL} for C{None}, a quoted string when the bytes allow
    it, else a literal (8-bit data, CR or LF, or very long values).
    """
    if value is None:
        return b"NIL"
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if len(value) < 1024 and _QUOTABLE.match(value):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n%s" % (len(value), value)


def encode(value: object) -> bytes:
    """
    Serialise nested values: C{None} is NIL, an C{int} a number, an
    L{Atom} itself, C{bytes} and C{str} strings, lists and tuples
    parenthesised lists.
    """
    if value is None:
        return b"NIL"
    if isinstance(value, Atom):
        return value.value
    if isinstance(value, bool):
        raise TypeError("booleans have no IMAP form")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, (bytes, str)):
        return string(value)
    if isinstance(value, (list, tuple)):
        return b"(" + b" ".join(encode(item) for item in value) + b")"
    raise TypeError(f"cannot encode {type(value).__name__} for IMAP")


def atoms(values: Iterable[str]) -> bytes:
    """A parenthesised list of atoms (flags)."""
    return b"(" + b" ".join(v.encode("ascii") for v in values) + b")"


class BadMailboxName(ValueError):
    """
    A mailbox name that is not canonical modified UTF-7.
    """


def decodeMailbox(raw: bytes) -> str:
    """
    A mailbox name from the wire, strictly: only canonical modified
    UTF-7 (what L{encodeMailbox} gives back unchanged) is accepted.

    @raise BadMailboxName: otherwise.
    """
    try:
        name = raw.decode("imap4-utf-7")
    except (UnicodeError, ValueError):
        raise BadMailboxName("mailbox name is not modified UTF-7") from None
    if encodeMailbox(name) != raw:
        raise BadMailboxName("mailbox name is not canonical modified UTF-7")
    return name


def encodeMailbox(name: str) -> bytes:
    """A mailbox name for the wire (modified UTF-7)."""
    return name.encode("imap4-utf-7")


def formatDateTime(seconds: float) -> bytes:
    """
    An INTERNALDATE value: C{"17-Jul-1996 02:44:25 +0000"} (UTC).
    """
    t = time.gmtime(seconds)
    return b'"%02d-%s-%04d %02d:%02d:%02d +0000"' % (
        t.tm_mday,
        _MONTHS[t.tm_mon - 1].encode(),
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


_DATE_TIME = re.compile(
    r"^\s?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)


def parseDateTime(text: str) -> float:
    """
    An APPEND date-time (C{"17-Jul-1996 02:44:25 -0700"}) as seconds
    since the epoch.

    @raise ValueError: if it is malformed.
    """
    m = _DATE_TIME.match(text)
    if m is None:
        raise ValueError(f"bad date-time {text!r}")
    day, month, year, hh, mm, ss, sign, zh, zm = m.groups()
    monthNumber = _MONTH_NUMBERS.get(month.lower())
    if monthNumber is None:
        raise ValueError(f"bad month in {text!r}")
    fields = (int(year), monthNumber, int(day), int(hh), int(mm), int(ss))
    # Let datetime check the ranges (day 31 of February, hour 25).
    date(fields[0], fields[1], fields[2])
    if fields[3] > 23 or fields[4] > 59 or fields[5] > 60:
        raise ValueError(f"bad time in {text!r}")
    offset = (int(zh) * 60 + int(zm)) * 60 * (-1 if sign == "-" else 1)
    return float(calendar.timegm((*fields, 0, 0, 0)) - offset)


def parseDate(text: str) -> date:
    """
    A SEARCH date (C{"1-Feb-1994"}).

    @raise ValueError: if it is malformed.
    """
    day, _, rest = text.partition("-")
    month, _, year = rest.partition("-")
    monthNumber = _MONTH_NUMBERS.get(month.lower())
    if not (day.isdigit() and year.isdigit() and len(year) == 4) or not monthNumber:
        raise ValueError(f"bad date {text!r}")
    return date(int(year), monthNumber, int(day))


def uidSet(uids: Iterable[int]) -> bytes:
    """
    Message numbers or UIDs as a compact sequence set, sorted, each once:
    C{1:3,7,9:10}. C{uids} must not be empty.
    """
    ordered = sorted(set(uids))
    out: list[bytes] = []
    start = previous = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == previous + 1:
            previous = value
            continue
        out.append(b"%d" % start if start == previous else b"%d:%d" % (start, previous))
        if value is not None:
            start = previous = value
    return b",".join(out)
