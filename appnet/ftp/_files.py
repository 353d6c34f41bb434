"""
File I/O for transfers that never blocks the reactor and never holds more
than a few chunks of a file in memory, whatever its size.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IConsumer,
    IPushProducer,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from appnet.files import InThread, ThreadedFileSender, fire, inline, whenQuiet
from appnet.ftp.errors import (
    DiskFull,
    FTPCommandError,
    LocalError,
    NameTooLong,
    QuotaExceeded,
    TransferAborted,
)
from appnet.ratelimit import TokenBucket
from appnet.threads import PoolService

__all__ = [
    "AsciiDecoder",
    "AsciiEncoder",
    "FileReceiver",
    "FileSender",
    "FileThreads",
    "InThread",
    "TokenBucket",
    "inline",
    "writeAll",
]

T = TypeVar("T")


class FileThreads(PoolService):
    """
    The threads every blocking file operation of the FTP service runs in;
    work submitted after the service stopped fails with L{LocalError}.
    """

    def __init__(self, reactor: Any, maxThreads: int = 8) -> None:
        super().__init__(reactor, "appnet-ftp", maxThreads)

    def stoppedError(self) -> Exception:
        return LocalError()


def writeAll(fd: int, data: bytes) -> None:
    """
    Write all of C{data} to C{fd} (in a thread), however many calls it takes.
    """
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def errorFor(e: OSError) -> FTPCommandError:
    """
    The reply-carrying error for a failed read or write.
    """
    if e.errno == errno.ENOSPC:
        return DiskFull()
    if e.errno == errno.EDQUOT:
        return QuotaExceeded(0)
    if e.errno == errno.ENAMETOOLONG:
        return NameTooLong()
    return LocalError()


class AsciiEncoder:
    """
    C{TYPE A} for sending: line ends become CRLF. A LF already preceded by
    CR is left alone, so files with CRLF line ends are not doubled.
    """

    def __init__(self) -> None:
        self._lastCR = False

    def __call__(self, data: bytes) -> bytes:
        if not data:
            return data
        out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if self._lastCR and data[:1] == b"\n":
            out = out[1:]
        self._lastCR = data[-1:] == b"\r"
        return out


class AsciiDecoder:
    """
    C{TYPE A} for receiving: CRLF becomes LF; a CR at the end of one chunk
    is held back until the next shows whether a LF follows.
    """

    def __init__(self) -> None:
        self._held = b""

    def __call__(self, data: bytes) -> bytes:
        data = self._held + data
        self._held = b""
        if data.endswith(b"\r"):
            data, self._held = data[:-1], b"\r"
        return data.replace(b"\r\n", b"\n")

    def flush(self) -> bytes:
        """What is still held at the end of the data."""
        held, self._held = self._held, b""
        return held


_whenQuiet = whenQuiet
_fire = fire


class FileSender(ThreadedFileSender):
    """
    Streams a file descriptor's contents, from its current position to the
    end, into a consumer (L{appnet.files.ThreadedFileSender} reading with
    C{os.read}), failing with FTP's reply-carrying errors.
    """

    def __init__(
        self,
        run: InThread,
        fd: int,
        consumer: IConsumer,
        clock: IReactorTime,
        **kwargs: Any,
    ) -> None:
        def read(size: int) -> bytes:
            return os.read(fd, size)

        super().__init__(run, read, consumer, clock, **kwargs)

    def stopped(self) -> Exception:
        return TransferAborted()

    def readFailed(self, failure: Failure) -> Failure:
        if failure.check(OSError):
            return Failure(errorFor(failure.value))
        return Failure(LocalError())


Limit = Callable[[int], FTPCommandError | None]


@implementer(IConsumer)
class FileReceiver:
    """
    Writes what it is given to a file descriptor, in a thread, pausing its
    producer while too much waits for the disk.

    Data is written once at least C{lazy} bytes wait (at once by default),
    and whatever is left at the end is written together with the C{fsync}
    and the caller's final step in one trip to a thread.

    @ivar received: bytes accepted so far (after any transform).
    @ivar written: bytes on disk so far.
    @ivar error: why the receiver refused more data, if it did.
    """

    _log = Logger()

    def __init__(
        self,
        run: InThread,
        fd: int,
        *,
        limit: Limit | None = None,
        high: int = 4 * 1024 * 1024,
        low: int = 1024 * 1024,
        batch: int = 1024 * 1024,
        lazy: int = 0,
        fsync: bool = True,
    ) -> None:
        self._run = run
        self._fd = fd
        self._limit = limit
        self._high = high
        self._low = low
        self._batch = batch
        self._lazy = lazy
        self._fsync = fsync
        self._producer: IPushProducer | None = None
        self._paused = False
        self._pending: list[bytes] = []
        self._pendingBytes = 0
        self._writing = False
        self._finishing: Deferred[int] | None = None
        self._then: Callable[[], object] | None = None
        self.received = 0
        self.written = 0
        self.error: FTPCommandError | None = None
        self._quiet: list[Deferred[None]] = []

    def quiet(self) -> Deferred[None]:
        """
        Fires once no write or fsync is in flight, so the descriptor may be
        closed.
        """
        return _whenQuiet(self._writing, self._quiet)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._producer = producer

    def unregisterProducer(self) -> None:
        self._producer = None

    def write(self, data: bytes) -> None:
        if self.error is not None or not data:
            return
        if self._limit is not None:
            problem = self._limit(self.received + len(data))
            if problem is not None:
                self.fail(problem)
                return
        self.received += len(data)
        self._pending.append(data)
        self._pendingBytes += len(data)
        if self._pendingBytes > self._high and not self._paused:
            if self._producer is not None:
                self._paused = True
                self._producer.pauseProducing()
        self._flush()

    def fail(self, error: FTPCommandError) -> None:
        """
        Refuse further data: drop what is pending and stop the producer.
        """
        if self.error is not None:
            return
        self.error = error
        self._pending.clear()
        self._pendingBytes = 0
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stopProducing()
        self._maybeDone()

    def _flush(self) -> None:
        if (
            self._writing
            or not self._pending
            or self.error is not None
            or self._finishing is not None
            or self._pendingBytes < self._lazy
        ):
            return
        batch: list[bytes] = []
        size = 0
        while self._pending and size < self._batch:
            chunk = self._pending.pop(0)
            batch.append(chunk)
            size += len(chunk)
        self._pendingBytes -= size
        self._writing = True
        data = b"".join(batch) if len(batch) > 1 else batch[0]
        self._run(writeAll, self._fd, data).addCallbacks(
            self._wrote, self._writeFailed, callbackArgs=(size,)
        )

    def _wrote(self, _: None, size: int) -> None:
        self._writing = False
        _fire(self._quiet)
        self.written += size
        if self._paused and self._pendingBytes <= self._low:
            self._paused = False
            if self._producer is not None:
                self._producer.resumeProducing()
        self._flush()
        self._maybeDone()

    def _writeFailed(self, failure: Failure) -> None:
        self._writing = False
        _fire(self._quiet)
        self.fail(self._errorFor(failure))

    def _errorFor(self, failure: Failure) -> FTPCommandError:
        if failure.check(FTPCommandError):
            return failure.value
        error = errorFor(failure.value) if failure.check(OSError) else LocalError()
        if isinstance(error, LocalError):
            self._log.failure("Writing an upload failed", failure)
        return error

    def finish(self, then: Callable[[], object] | None = None) -> Deferred[int]:
        """
        The data is complete: write what is pending, C{fsync} (unless told
        not to) and call C{then}, all in one trip to a thread.

        @param then: a final blocking step (closing and renaming an
            upload); its L{FTPCommandError} fails the result.
        @return: fires with the byte count once it is on disk, or fails with
            the reason the receiver refused the data.
        """
        assert self._finishing is None, "finish() called twice"
        self._finishing = Deferred()
        self._then = then
        d = self._finishing
        self._maybeDone()
        return d

    def _maybeDone(self) -> None:
        d = self._finishing
        if d is None or d.called:
            return
        if self.error is not None:
            if not self._writing:
                d.errback(self.error)
            return
        if self._writing:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pendingBytes = 0
        self._writing = True
        self._run(_final, self._fd, data, self._fsync, self._then).addBoth(
            self._finalDone, len(data)
        )

    def _finalDone(self, result: object, size: int) -> None:
        self._writing = False
        _fire(self._quiet)
        d = self._finishing
        assert d is not None
        if isinstance(result, Failure):
            self.error = self._errorFor(result)
            d.errback(self.error)
        else:
            self.written += size
            d.callback(self.written)


def _final(
    fd: int, data: bytes, fsync: bool, then: Callable[[], object] | None
) -> None:
    """The last write, the fsync and the caller's final step (in a thread)."""
    if data:
        writeAll(fd, data)
    if fsync:
        os.fsync(fd)
    if then is not None:
        then()
