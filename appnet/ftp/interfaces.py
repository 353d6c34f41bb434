"""
The seam between the FTP protocol and the files it serves.

L{IFTPFilesystem} extends Twisted's L{IFTPShell} (so Twisted's own FTP
code could drive it) with what Twisted's interface cannot express: typed
directory entries for C{LIST}, C{MLSD} and C{MLST}, opening a file at an
offset (C{REST}), the four ways of writing (C{STOR}, C{APPE}, C{STOU},
C{REST}+C{STOR}) and rate limits. Paths are sequences of segments below the
session's root, already checked by L{appnet.ftp.paths.resolve}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from twisted.protocols.ftp import IFTPShell, IReadFile, IWriteFile
from zope.interface import Attribute

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IConsumer

    from appnet.ftp.shell import Entry

__all__ = ["IFTPFilesystem", "IReadHandle", "IWriteHandle", "WriteMode"]

#: How an upload writes: C{replace} (STOR: a temporary file renamed over
#: the target on success), C{append} (APPE), C{resume} (REST then STOR:
#: in place from the offset), C{unique} (STOU: a new name).
WriteMode = Literal["replace", "append", "resume", "unique"]


class IReadHandle(IReadFile):
    """
    A file opened for a download.
    """

    size = Attribute("The file's size in bytes when it was opened.")
    offset = Attribute("Where sending starts (the REST offset).")

    def sendTo(
        consumer: IConsumer,
        transform: Callable[[bytes], bytes] | None = None,
        throttle: Callable[[int], float] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Deferred[int]:
        """
        Stream the file from L{offset} into C{consumer}.

        @param transform: applied to each chunk (C{TYPE A} line ends).
        @param throttle: called with each chunk's size; returns seconds to
            wait before the next (a rate limit).
        @param progress: called with each chunk's size.
        @return: fires with the bytes sent.
        """

    def close() -> Deferred[None]:
        """Close the file."""


class IWriteHandle(IWriteFile):
    """
    A file opened for an upload. Exactly one of L{commit} and L{discard}
    ends it.
    """

    path = Attribute("The virtual path written, as a string (STOU picks it).")

    def receiver() -> object:
        """
        The L{appnet.ftp._files.FileReceiver} to feed the upload into. It
        refuses data beyond the quota or upload limit.
        """

    def commit() -> Deferred[int]:
        """
        Finish: write out and fsync what was received, then put the file in
        place (renaming a temporary file over the target).

        @return: fires with the bytes written once they are durable.
        """

    def discard() -> Deferred[None]:
        """
        Give up: a replacing upload leaves the old file untouched.
        """


class IFTPFilesystem(IFTPShell):
    """
    What one logged-in session may do to its files.
    """

    readOnly = Attribute("Whether every change is refused (anonymous).")
    account = Attribute("The account name, for logs and STAT.")

    def entries(path: Sequence[str]) -> Deferred[list[Entry]]:
        """
        A directory's entries (never C{.} or C{..}), or a one-entry list for
        a file.
        """

    def listing(path: Sequence[str]) -> Deferred[tuple[Entry, list[Entry]]]:
        """
        The entry for C{path} and its entries (itself, for a file), in one
        go.
        """

    def info(path: Sequence[str]) -> Deferred[Entry]:
        """
        The entry for one path (named by its last segment, or C{/}).
        """

    def movable(path: Sequence[str]) -> Deferred[Entry]:
        """
        The entry C{RNFR} names, if it may be renamed now: fails with
        L{appnet.ftp.errors.FileBusy} while an upload changes it (or a file
        in it) in place, L{appnet.ftp.errors.ReadOnly} in a read-only
        session.
        """

    def openRead(path: Sequence[str], offset: int = 0) -> Deferred[IReadHandle]:
        """
        Open a regular file for a download starting at C{offset}.
        """

    def openWrite(
        path: Sequence[str], mode: WriteMode = "replace", offset: int = 0
    ) -> Deferred[IWriteHandle]:
        """
        Open a file for an upload (see L{WriteMode}).
        """

    def throttle(amount: int) -> float:
        """
        Account for C{amount} bytes transferred; return how many seconds to
        wait before the next (0 without a rate limit).
        """

    def logout() -> None:
        """
        The session ended.
        """
