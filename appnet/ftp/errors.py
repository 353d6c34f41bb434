"""
What can go wrong in an FTP session, as typed errors that know their reply.

The shell raises these with the I{virtual} path the client named (never a
real path on the server's disk), and the protocol turns a failure into its
RFC 959 reply with L{FTPCommandError.reply}. Nothing here formats a Python
object with C{repr}: names are shown as the client spelled them, with control
characters replaced, so a reply is always one clean line.
"""

from __future__ import annotations

from attrs import frozen

from appnet.errors import AppnetError

__all__ = [
    "BadName",
    "BadRestart",
    "CannotOpenData",
    "DirectoryNotEmpty",
    "DiskFull",
    "FTPCommandError",
    "FTPClientError",
    "FTPError",
    "FileBusy",
    "FileExists",
    "IsADirectory",
    "LocalError",
    "NameTooLong",
    "NotADirectory",
    "NotFound",
    "OutsideHome",
    "PermissionDenied",
    "QuotaExceeded",
    "ReadOnly",
    "TransferAborted",
    "UploadTooLarge",
    "logName",
    "showName",
]


def showName(name: str) -> str:
    """
    A name as it may appear in a reply or listing: control characters (which
    could end the reply line or confuse a terminal) become C{?}.
    """
    return "".join("?" if ord(c) < 32 or ord(c) == 127 else c for c in name)


def logName(name: str) -> str:
    """
    A name as it may appear in the log: bytes that were not UTF-8 (kept as
    surrogate escapes, see L{appnet.ftp.server}) as C{\\xNN}. Log files
    are written as strict UTF-8; a lone surrogate would make the observer
    raise and the event be lost.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class FTPError(AppnetError):
    """
    The root of the FTP package's errors.
    """


class FTPCommandError(FTPError):
    """
    A command failed in a way with a reply code of its own.

    @cvar code: the RFC 959 reply code.
    """

    code = 550

    def text(self) -> str:
        """The reply text, without the code."""
        return str(self)

    def reply(self) -> tuple[int, str]:
        """C{(code, text)} to send to the client."""
        return self.code, self.text()


@frozen(eq=False)
class _PathError(FTPCommandError):
    """
    A failure about one path.

    @ivar path: the virtual path, as the client sees it.
    """

    path: str
    problem = "failed"

    def __str__(self) -> str:
        return f"{showName(self.path)}: {self.problem}"


class NotFound(_PathError):
    """No such file or directory."""

    problem = "no such file or directory"


class NotADirectory(_PathError):
    """The path names something that is not a directory."""

    problem = "not a directory"


class IsADirectory(_PathError):
    """The path names a directory where a file was wanted."""

    problem = "is a directory"


class FileExists(_PathError):
    """Something already has that name."""

    problem = "already exists"


class FileBusy(_PathError):
    """
    Another transfer is writing the file in place right now (RFC 959's
    450, "file busy": a transient refusal, the client may try again).
    """

    code = 450
    problem = "file busy: an upload is changing it; try again later"


class DirectoryNotEmpty(_PathError):
    """RMD of a directory that still has entries."""

    problem = "directory not empty"


class PermissionDenied(_PathError):
    """The server will not do this to that path."""

    problem = "permission denied"


class OutsideHome(PermissionDenied):
    """
    The path (by C{..} or a symbolic link) leads out of the user's home.
    """

    problem = "permission denied: outside your home directory"


class ReadOnly(PermissionDenied):
    """A write in a read-only (anonymous) session."""

    problem = "permission denied: this login is read-only"


@frozen(eq=False)
class BadName(FTPCommandError):
    """
    A name no file may have: it holds NUL, CR or LF, or is empty.
    """

    path: str
    code = 553

    def __str__(self) -> str:
        return f"{showName(self.path)}: file name not allowed"


class NameTooLong(FTPCommandError):
    """
    A path, or a name in it, longer than the file system takes: the
    client's mistake (553), not the server's.
    """

    code = 553

    def __str__(self) -> str:
        return "file name too long"


@frozen(eq=False)
class BadRestart(FTPCommandError):
    """
    A REST offset that does not fit the file (RFC 3659 section 5.5: 554).
    """

    offset: int
    size: int
    code = 554

    def __str__(self) -> str:
        return (
            f"restart offset {self.offset} is beyond the end of the file"
            f" ({self.size} bytes)"
        )


@frozen(eq=False)
class QuotaExceeded(FTPCommandError):
    """
    The upload would take the user over their quota.
    """

    quota: int
    code = 552

    def __str__(self) -> str:
        return f"quota of {self.quota} bytes exceeded; upload discarded"


@frozen(eq=False)
class UploadTooLarge(FTPCommandError):
    """
    The upload is larger than the server's per-file limit.
    """

    limit: int
    code = 552

    def __str__(self) -> str:
        return f"file larger than the {self.limit} byte upload limit; discarded"


class DiskFull(FTPCommandError):
    """The server's disk is full."""

    code = 452

    def __str__(self) -> str:
        return "insufficient storage space on the server"


class LocalError(FTPCommandError):
    """An unexpected failure on the server; the details are in its log."""

    code = 451

    def __str__(self) -> str:
        return "local error in processing"


@frozen(eq=False)
class TransferAborted(FTPCommandError):
    """
    The data connection closed before the transfer was complete, or made no
    progress for too long, or the client sent ABOR.
    """

    why: str = "data connection closed"
    code = 426

    def __str__(self) -> str:
        return f"transfer aborted: {self.why}"


@frozen(eq=False)
class CannotOpenData(FTPCommandError):
    """
    The data connection could not be established.
    """

    why: str = "no data connection"
    code = 425

    def __str__(self) -> str:
        return f"cannot open data connection: {self.why}"


@frozen(eq=False)
class FTPClientError(FTPError):
    """
    The server answered a client's command with an error reply.

    @ivar code: the reply code.
    @ivar lines: the reply's text lines (without codes).
    @ivar command: the command that failed (C{PASS} arguments masked).
    """

    code: int
    lines: tuple[str, ...]
    command: str = ""

    def __str__(self) -> str:
        text = " ".join(self.lines)
        prefix = f"{self.command}: " if self.command else ""
        return f"{prefix}{self.code} {showName(text)}"
