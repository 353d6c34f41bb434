"""
Rules every mail store implementation shares: folder names, flags and
UIDVALIDITY.
"""

from __future__ import annotations

from appnet.store.interfaces import INBOX

__all__ = [
    "FLAG_MODES",
    "canonicalFolder",
    "changeFlags",
    "formatFlags",
    "parseFlags",
    "uidValidityFor",
]

FLAG_MODES = ("add", "remove", "replace")


def canonicalFolder(name: str) -> str:
    """
    INBOX is case-insensitive (RFC 3501 5.1); every other name is kept as
    given.

    @raise ValueError: for an empty name.
    """
    if not name:
        raise ValueError("empty folder name")
    return INBOX if name.upper() == INBOX else name


def parseFlags(text: str) -> frozenset[str]:
    """Flags as stored (space-separated) to a set."""
    return frozenset(text.split())


def formatFlags(flags: frozenset[str]) -> str:
    """
    A set of flags as stored: sorted, space-separated.

    @raise ValueError: if a flag is empty or holds white space.
    """
    for flag in flags:
        if not flag or any(c.isspace() for c in flag):
            raise ValueError(f"bad flag {flag!r}")
    return " ".join(sorted(flags))


def changeFlags(
    old: frozenset[str], flags: frozenset[str], mode: str
) -> frozenset[str]:
    """
    Apply an IMAP STORE-style change.

    @param mode: C{"add"}, C{"remove"} or C{"replace"}.
    """
    if mode == "add":
        return old | flags
    if mode == "remove":
        return old - flags
    if mode == "replace":
        return frozenset(flags)
    raise ValueError(f"flag mode must be one of {FLAG_MODES}, not {mode!r}")


def uidValidityFor(now: float, last: int) -> int:
    """
    A new folder's UIDVALIDITY: the time in seconds, but always above the
    account's last one, so a folder deleted and made again within a second
    still gets a new value (RFC 3501 2.3.1.1).
    """
    return max(int(now), last + 1)
