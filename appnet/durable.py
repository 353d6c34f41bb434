"""
Files written so that a crash leaves the old content or the new, never a
mix: write aside, fsync, rename over, fsync the directory. Everything here
blocks; call it from a thread.
"""

from __future__ import annotations

import os
import secrets

__all__ = ["fsyncDirectory", "writeDurably"]


def fsyncDirectory(path: str) -> None:
    """Make a directory's entries (new names, renames) durable."""
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def writeDurably(
    path: str, data: bytes, *, mode: int = 0o666, syncDirectory: bool = True
) -> None:
    """
    Replace C{path} with C{data}: written to a new file beside it, fsynced,
    renamed over it.

    @param mode: the new file's permissions (less the umask).
    @param syncDirectory: also fsync the directory, so that the rename
        is durable; C{False} for a caller writing several files that
        syncs the directory once afterwards with L{fsyncDirectory}.
    """
    temporary = f"{path}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(temporary)
        raise
    os.close(fd)
    os.replace(temporary, path)
    if syncDirectory:
        fsyncDirectory(os.path.dirname(path))
