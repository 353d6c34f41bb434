"""
Virtual paths: what FTP clients name, before it touches the disk.

A session's paths are tuples of segments below its root (C{()} is C{/}).
L{resolve} applies a client's argument to the working directory with the
rules every later check relies on: C{.} and empty segments vanish, C{..}
removes one segment and may never climb above the root (that is
L{OutsideHome}, not a silent stop at C{/}), and no segment may hold NUL, CR
or LF (L{BadName}). The shell then maps the segments to the disk and checks
what symbolic links would do (L{appnet.ftp.shell}).
"""

from __future__ import annotations

from collections.abc import Sequence

from appnet.ftp.errors import BadName, OutsideHome

__all__ = ["Segments", "quote", "render", "resolve"]

Segments = tuple[str, ...]

_FORBIDDEN = ("\0", "\r", "\n")


def resolve(cwd: Sequence[str], argument: str) -> Segments:
    """
    The path C{argument} names when the working directory is C{cwd}.

    @raise BadName: if the argument holds NUL, CR or LF.
    @raise OutsideHome: if C{..} would climb above the root.
    """
    if any(c in argument for c in _FORBIDDEN):
        raise BadName(argument)
    segments = [] if argument.startswith("/") else list(cwd)
    for part in argument.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not segments:
                raise OutsideHome(argument)
            segments.pop()
        else:
            segments.append(part)
    return tuple(segments)


def render(segments: Sequence[str]) -> str:
    """C{/a/b} for C{("a", "b")}; C{/} for the root."""
    return "/" + "/".join(segments)


def quote(path: str) -> str:
    """
    A path inside the double quotes of a 257 reply (RFC 959 appendix II:
    an embedded double quote is doubled).
    """
    return '"' + path.replace('"', '""') + '"'
