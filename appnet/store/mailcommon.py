"""
Rules every mail store implementation shares: folder names, flags and
UIDVALIDITY.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import lru_cache
from typing import BinaryIO

from appnet.store.interfaces import INBOX

__all__ = [
    "FLAG_MODES",
    "canonicalFolder",
    "changeFlags",
    "formatFlags",
    "openPrefixed",
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


@lru_cache(maxsize=1024)
def parseFlags(text: str) -> frozenset[str]:
    """
    Flags as stored (space-separated) to a set. Cached: a folder's rows
    share a few combinations, and listing one parses every row's.
    """
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


class _Prefixed(io.RawIOBase):
    """
    Stored bytes, then a message file: read and seek as one stream.
    """

    def __init__(self, prefix: bytes, file: BinaryIO) -> None:
        self._prefix = prefix
        self._file = file
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        position, prefix = self._position, self._prefix
        if position < len(prefix):
            piece = prefix[position : position + len(view)]
            view[: len(piece)] = piece
            self._position += len(piece)
            return len(piece)
        n = self._file.readinto(view)  # type: ignore[attr-defined]
        self._position += n
        return int(n)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence == io.SEEK_END:
            offset += len(self._prefix) + self._file.seek(0, io.SEEK_END)
        offset = max(0, offset)
        self._file.seek(max(0, offset - len(self._prefix)))
        self._position = offset
        return offset

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def openPrefixed(prefix: bytes, opener: Callable[[], BinaryIO]) -> BinaryIO:
    """
    Open a stored message whose first bytes (C{prefix}, the Return-Path
    line) are kept beside its file rather than in it.
    """
    file = opener()
    if not prefix:
        return file
    return io.BufferedReader(_Prefixed(prefix, file), 1 << 16)
