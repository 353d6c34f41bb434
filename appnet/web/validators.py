"""
HTTP validators and negotiation: entity tags, conditional requests, byte
ranges and C{Accept-Encoding}, as pure functions over header values.

Twisted's C{Request.setETag} / C{setLastModified} evaluate one header each,
in the order they happen to be called, and compare entity tags as raw
bytes (so C{W/} prefixes and comma-separated lists without spaces are
misread); C{static.File} turns a suffix range longer than the file into a
negative offset. So the rules of RFC 9110 sections 8.8, 13 and 14 live here,
whole and in their precedence order, and the static resource and anything
else with validators call them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence

from attrs import frozen
from twisted.web.http import datetimeToString, stringToDatetime
from twisted.web.http_headers import Headers

__all__ = [
    "ANY",
    "Condition",
    "ETag",
    "UNSATISFIABLE",
    "acceptsEncoding",
    "evaluate",
    "httpDate",
    "ifRangeAllows",
    "parseDate",
    "parseETags",
    "parseRanges",
]


@frozen
class ETag:
    """
    An entity tag.

    @ivar opaque: the tag without quotes or C{W/}.
    @ivar weak: whether it is a weak validator.
    """

    opaque: bytes
    weak: bool = False

    def header(self) -> bytes:
        """The tag as it appears in an C{ETag} header."""
        return (b"W/" if self.weak else b"") + b'"' + self.opaque + b'"'

    def strongMatch(self, other: ETag) -> bool:
        """RFC 9110 8.8.3.2: both strong and the same."""
        return not self.weak and not other.weak and self.opaque == other.opaque

    def weakMatch(self, other: ETag) -> bool:
        """RFC 9110 8.8.3.2: the same, weak or not."""
        return self.opaque == other.opaque


class _Any(enum.Enum):
    ANY = "*"


#: C{If-Match: *} / C{If-None-Match: *}.
ANY = _Any.ANY


def parseETags(value: bytes) -> list[ETag] | _Any:
    """
    Parse an C{If-Match} / C{If-None-Match} value: C{*} or a comma-separated
    list of entity tags. Unquoted tags (sent by some old clients) are taken
    as they are; empty members are skipped.
    """
    if value.strip() == b"*":
        return ANY
    tags = []
    for part in value.split(b","):
        item = part.strip()
        if not item:
            continue
        weak = item[:2] in (b"W/", b"w/")
        if weak:
            item = item[2:]
        if len(item) >= 2 and item[:1] == b'"' and item[-1:] == b'"':
            item = item[1:-1]
        tags.append(ETag(item, weak))
    return tags


def parseDate(value: bytes) -> int | None:
    """
    An HTTP-date (any of the three formats RFC 9110 5.6.7 accepts) as
    seconds since the epoch, or C{None} if it is not one.
    """
    try:
        return int(stringToDatetime(value.split(b";", 1)[0].strip()))
    except (ValueError, IndexError, KeyError):
        return None


def httpDate(seconds: float) -> bytes:
    """Seconds since the epoch as an IMF-fixdate."""
    return datetimeToString(int(seconds))


class Condition(enum.Enum):
    """What the preconditions of a request say to do."""

    PROCEED = "proceed"
    NOT_MODIFIED = "304"
    PRECONDITION_FAILED = "412"


def _header(headers: Headers, name: bytes) -> bytes | None:
    values = headers.getRawHeaders(name)
    if not values:
        return None
    return b",".join(values)


def evaluate(
    method: bytes,
    headers: Headers,
    etag: ETag | None,
    lastModified: int | None,
    exists: bool = True,
) -> Condition:
    """
    Evaluate a request's preconditions against the selected
    representation, in the order of RFC 9110 section 13.2.2.

    @param method: the request method.
    @param headers: the request headers.
    @param etag: the representation's entity tag, if it has one.
    @param lastModified: its modification time in whole seconds, if known.
    @param exists: whether there is a current representation at all.
    """
    safe = method in (b"GET", b"HEAD")
    ifMatch = _header(headers, b"if-match")
    if ifMatch is not None:
        tags = parseETags(ifMatch)
        if tags is ANY:
            if not exists:
                return Condition.PRECONDITION_FAILED
        elif etag is None or not any(etag.strongMatch(t) for t in tags):
            return Condition.PRECONDITION_FAILED
    else:
        ifUnmodified = _header(headers, b"if-unmodified-since")
        if ifUnmodified is not None and lastModified is not None:
            since = parseDate(ifUnmodified)
            if since is not None and lastModified > since:
                return Condition.PRECONDITION_FAILED
    ifNoneMatch = _header(headers, b"if-none-match")
    if ifNoneMatch is not None:
        tags = parseETags(ifNoneMatch)
        matched = (
            exists
            if tags is ANY
            else etag is not None and any(etag.weakMatch(t) for t in tags)
        )
        if matched:
            return Condition.NOT_MODIFIED if safe else Condition.PRECONDITION_FAILED
    elif safe:
        ifModified = _header(headers, b"if-modified-since")
        if ifModified is not None and lastModified is not None:
            since = parseDate(ifModified)
            if since is not None and lastModified <= since:
                return Condition.NOT_MODIFIED
    return Condition.PROCEED


def ifRangeAllows(value: bytes, etag: ETag | None, lastModified: int | None) -> bool:
    """
    Does an C{If-Range} header let the C{Range} header apply (RFC 9110
    13.1.5)? An entity tag must match strongly; a date must equal the
    modification time exactly.
    """
    value = value.strip()
    if value[:1] == b'"' or value[:2] in (b"W/", b"w/"):
        tags = parseETags(value)
        return (
            etag is not None
            and isinstance(tags, list)
            and len(tags) == 1
            and etag.strongMatch(tags[0])
        )
    date = parseDate(value)
    return date is not None and lastModified is not None and date == lastModified


class _Unsatisfiable(enum.Enum):
    UNSATISFIABLE = "416"


#: No requested range overlaps the representation: answer 416.
UNSATISFIABLE = _Unsatisfiable.UNSATISFIABLE

_RANGE_SPEC = re.compile(rb"^\s*(\d*)\s*-\s*(\d*)\s*$")


def parseRanges(
    value: bytes, size: int, maxRanges: int = 100
) -> list[tuple[int, int]] | _Unsatisfiable | None:
    """
    Parse a C{Range} header against a representation of C{size} bytes.

    @return: C{None} to ignore the header and send the whole
        representation (a unit other than bytes, bad syntax, or more than
        C{maxRanges} ranges, which would only serve to amplify traffic);
        L{UNSATISFIABLE} when no range overlaps; else C{(offset, length)}
        pairs, in request order unless some overlap or touch, in which case
        they are sorted and merged.
    """
    unit, eq, specs = value.partition(b"=")
    if not eq or unit.strip().lower() != b"bytes":
        return None
    parts = [p for p in specs.split(b",") if p.strip()]
    if not parts or len(parts) > maxRanges:
        return None
    ranges: list[tuple[int, int]] = []
    for part in parts:
        m = _RANGE_SPEC.match(part)
        if m is None:
            return None
        first, last = m.group(1), m.group(2)
        if first:
            start = int(first)
            if last:
                end = int(last)
                if end < start:
                    return None
            else:
                end = size - 1
            if start >= size:
                continue
            end = min(end, size - 1)
        elif last:
            suffix = int(last)
            if suffix == 0 or size == 0:
                continue
            start, end = max(0, size - suffix), size - 1
        else:
            return None
        ranges.append((start, end))
    if not ranges:
        return UNSATISFIABLE
    return [(start, end - start + 1) for start, end in _coalesce(ranges)]


def _coalesce(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    ordered = sorted(ranges)
    if all(a[1] + 1 < b[0] for a, b in zip(ordered, ordered[1:], strict=False)):
        return list(ranges)
    merged = [ordered[0]]
    for start, end in ordered[1:]:
        lastStart, lastEnd = merged[-1]
        if start <= lastEnd + 1:
            merged[-1] = (lastStart, max(lastEnd, end))
        else:
            merged.append((start, end))
    return merged


def acceptsEncoding(value: bytes | None, coding: bytes) -> bool:
    """
    Does an C{Accept-Encoding} value accept C{coding} (RFC 9110 12.5.3)?
    A coding listed with C{q=0} is refused; C{*} covers codings not listed.
    """
    if value is None:
        return False
    coding = coding.lower()
    aliases = {coding, b"x-" + coding}
    star: float | None = None
    for item in value.split(b","):
        name, _, params = item.partition(b";")
        name = name.strip().lower()
        if not name:
            continue
        quality = 1.0
        for param in params.split(b";"):
            key, _, val = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    quality = float(val.strip())
                except ValueError:
                    quality = 0.0
        if name in aliases:
            return quality > 0
        if name == b"*":
            star = quality
    return star is not None and star > 0
