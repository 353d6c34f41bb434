"""
Directory listings on the wire: writing them (server) and reading them
(client).

C{LIST} lines look like C{ls -l} (the one format every client parses):
permissions, link count, owner and group (always C{ftp}: accounts are
virtual), size, a date in the C{ls} style in UTC, and the name. C{MLSD} and
C{MLST} lines are RFC 3659 facts: C{type}, C{size}, C{modify}, C{perm} and
C{unique}, then a space and the name.

A name holding CR or LF cannot be sent on a line and cannot be named in a
command either, so listings leave such entries out.
"""

from __future__ import annotations

import calendar
import stat as statmod
import time
from collections.abc import Iterable, Mapping

from attrs import frozen

from appnet.ftp.shell import Entry

__all__ = [
    "FACTS",
    "Listed",
    "formatList",
    "formatFacts",
    "listable",
    "mdtm",
    "parseFacts",
    "parseList",
]

_MONTHS = (
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()  # not locale's %b
)
_HALF_YEAR = 182 * 86400

#: The MLSx facts served, in order (RFC 3659 section 7.5).
FACTS = ("type", "size", "modify", "perm", "unique")


def listable(name: str) -> bool:
    """Can this name be sent in a listing line?"""
    return not any(c in name for c in "\r\n\0")


def mdtm(seconds: float) -> str:
    """C{YYYYMMDDHHMMSS} in UTC (MDTM and the C{modify} fact)."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(seconds))


def _date(seconds: float, now: float) -> str:
    t = time.gmtime(seconds)
    month = _MONTHS[t.tm_mon - 1]
    if abs(now - seconds) < _HALF_YEAR:
        return f"{month} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}"
    return f"{month} {t.tm_mday:2d}  {t.tm_year}"


def formatList(entry: Entry, now: float, name: str | None = None) -> str:
    """
    One C{LIST} line (without the line end).

    @param now: the current time, which decides between showing the time of
        day and the year.
    @param name: the name to show (default: the entry's).
    """
    mode = statmod.filemode(entry.mode)
    return (
        f"{mode} {entry.links:3d} ftp      ftp      {entry.size:12d} "
        f"{_date(entry.modified, now)} {name if name is not None else entry.name}"
    )


def _perm(entry: Entry, readOnly: bool) -> str:
    if entry.kind == "dir":
        return "el" if readOnly else "flcdmpe"
    if entry.kind == "file":
        return "r" if readOnly else "adfrw"
    return "" if readOnly else "df"


def formatFacts(
    entry: Entry,
    readOnly: bool,
    facts: Iterable[str] = FACTS,
    name: str | None = None,
) -> str:
    """
    One MLSx line: C{fact=value;...} then a space and the name.

    @param facts: which facts to include (set by C{OPTS MLST}).
    """
    values = {
        "type": {"dir": "dir", "file": "file"}.get(entry.kind, "OS.unix=other"),
        "size": str(entry.size),
        "modify": mdtm(entry.modified),
        "perm": _perm(entry, readOnly),
        "unique": entry.unique,
    }
    chosen = set(facts)
    text = "".join(f"{fact}={values[fact]};" for fact in FACTS if fact in chosen)
    return f"{text} {name if name is not None else entry.name}"


@frozen
class Listed:
    """
    One entry of a listing, as a client reads it.

    @ivar kind: C{"file"}, C{"dir"}, C{"link"} or C{"other"}.
    @ivar size: in bytes, if the listing said.
    @ivar modified: seconds since the epoch (UTC), if the listing said
        precisely (MLSD does; C{LIST} does not).
    @ivar facts: every MLSx fact, lower-cased names.
    """

    name: str
    kind: str
    size: int | None = None
    modified: float | None = None
    facts: Mapping[str, str] = {}


def _mdtmSeconds(text: str) -> float | None:
    try:
        whole, _, fraction = text.partition(".")
        t = time.strptime(whole, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return calendar.timegm(t) + (float("0." + fraction) if fraction else 0.0)


def parseFacts(line: str) -> Listed | None:
    """
    Read one MLSD line (or the entry line of an MLST reply, which starts
    with a space); C{None} if it is not one.
    """
    line = line[1:] if line.startswith(" ") else line
    factText, sep, name = line.partition(" ")
    if not sep or not name:
        return None
    facts: dict[str, str] = {}
    for item in factText.split(";"):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq:
            return None
        facts[key.lower()] = value
    kind = facts.get("type", "").lower()
    if kind not in ("file", "dir", "cdir", "pdir"):
        kind = "link" if "slink" in kind else "other"
    size = facts.get("size")
    modified = facts.get("modify")
    return Listed(
        name=name,
        kind=kind,
        size=int(size) if size is not None and size.isdigit() else None,
        modified=_mdtmSeconds(modified) if modified else None,
        facts=facts,
    )


def parseList(line: str) -> Listed | None:
    """
    Read one C{ls -l} style LIST line; C{None} for lines that are not
    entries (C{total 12}).
    """
    parts = line.split(None, 8)
    if len(parts) < 9 or len(parts[0]) != 10:
        return None
    mode, size, name = parts[0], parts[4], parts[8]
    kind = {"d": "dir", "-": "file", "l": "link"}.get(mode[0], "other")
    if kind == "link" and " -> " in name:
        name = name.split(" -> ", 1)[0]
    return Listed(
        name=name,
        kind=kind,
        size=int(size) if size.isdigit() else None,
    )
