"""
Streaming a file into a consumer without blocking the reactor: every read
runs in a thread (an L{InThread} runner), one chunk is read ahead, and
reading stops while the consumer is full (back-pressure). FTP transfers,
POP3 RETR/TOP, the mail relay's DATA and static HTTP bodies (L{FileSpans},
L{ZeroCopy}) all send files with L{ThreadedFileSender}.
"""

from __future__ import annotations

import io
import os
import select
import socket
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, TypeVar

from attrs import frozen
from twisted.internet import tcp
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ISSLTransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from appnet.errors import AppnetError

__all__ = [
    "CHUNK",
    "FileShrank",
    "FileSpans",
    "IDirectWrites",
    "InThread",
    "SendingStopped",
    "ThreadedFileSender",
    "ZeroCopy",
    "inline",
    "plainSocket",
    "zeroCopyTo",
]

T = TypeVar("T")

#: Runs a blocking callable somewhere it may block; returns its Deferred.
InThread = Callable[..., Deferred[Any]]

#: Bytes read from a file at a time.
CHUNK = 256 * 1024

Transform = Callable[[bytes], bytes]
Throttle = Callable[[int], float]


def inline(f: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
    """
    An L{InThread} that runs the call right away, for deterministic unit
    tests.
    """
    return maybeDeferred(f, *args, **kwargs)


class SendingStopped(AppnetError):
    """
    The consumer stopped the sender (the connection went away) before the
    end of the file.
    """


class FileShrank(AppnetError):
    """A file ended before the length promised for it was sent."""


#: Bytes at most sent straight to a socket in one trip to a thread.
ZERO_COPY_TRIP = 32 * 1024 * 1024

#: Seconds a trip to a thread may wait in all for a full socket to take
#: more before the sender goes back to the consumer's buffer (a slow
#: client holds no thread).
ZERO_COPY_WAIT = 0.1


class FileSpans:
    """
    A body made of literal byte strings and C{(offset, length)} spans of
    one open file (a descriptor, or a file object, in memory or not),
    read in order: L{read} for a sender's C{read} (in a
    thread), L{sendfile} for its L{ZeroCopy}. One reader at a time.

    @ivar length: the body's length in bytes.
    """

    def __init__(
        self, file: int | IO[bytes], parts: Sequence[bytes | tuple[int, int]]
    ) -> None:
        self._file = file
        self._fd: int | None = file if isinstance(file, int) else None
        if self._fd is None:
            try:
                self._fd = file.fileno()  # type: ignore[union-attr]
            except (AttributeError, OSError, io.UnsupportedOperation):
                # A file-like object (in memory): read() seeks and reads.
                pass
        self._parts = list(reversed(parts))
        self.length = sum(len(p) if isinstance(p, bytes) else p[1] for p in parts)

    def read(self, size: int) -> bytes:
        """
        The next bytes of the body: C{size} of them (more only when a
        literal part, which comes whole, passes it), C{b""} at the end.

        @raise FileShrank: a span reaches past the end of the file.
        """
        pieces: list[bytes] = []
        got = 0
        parts = self._parts
        while got < size and parts:
            part = parts[-1]
            if isinstance(part, bytes):
                parts.pop()
                pieces.append(part)
                got += len(part)
                continue
            offset, left = part
            if left == 0:
                parts.pop()
                continue
            data = self._readAt(offset, min(size - got, left))
            if not data:
                raise FileShrank()
            parts[-1] = (offset + len(data), left - len(data))
            pieces.append(data)
            got += len(data)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _readAt(self, offset: int, size: int) -> bytes:
        if self._fd is not None:
            return os.pread(self._fd, size, offset)
        assert not isinstance(self._file, int)
        self._file.seek(offset)
        return self._file.read(size)

    def sendfile(self, out: int, limit: int) -> int:
        """
        Send at most C{limit} bytes of the current file span to the socket
        C{out} with C{os.sendfile}; how many went, C{0} where the body is
        at a literal part or its end, or the file has no descriptor
        (L{read} goes on from there).

        @raise BlockingIOError: the socket is full.
        @raise FileShrank: the span reaches past the end of the file.
        """
        parts = self._parts
        while parts and not isinstance(parts[-1], bytes) and parts[-1][1] == 0:
            parts.pop()
        if not parts or isinstance(parts[-1], bytes) or self._fd is None:
            return 0
        offset, left = parts[-1]
        sent = os.sendfile(out, self._fd, offset, min(limit, left))
        if sent == 0:
            raise FileShrank()
        left -= sent
        if left:
            parts[-1] = (offset + sent, left)
        else:
            parts.pop()
        return sent


class IDirectWrites(Interface):
    """
    A transport wrapper that lets a sender write to the socket under it
    directly (L{ZeroCopy}) and counts what was written that way.
    """

    def directSocket() -> socket.socket | None:
        """
        The socket, if bytes may go to it past this transport now (plain
        TCP, nothing recording what is written), else C{None}. From then
        on the wrapper's own writes go through the transport's buffer,
        which the sender's direct writes are paced by.
        """

    def wroteDirectly(count: int) -> None:
        """C{count} bytes went to the socket past this transport."""


def plainSocket(transport: object) -> socket.socket | None:
    """
    The socket under a plain (not TLS) TCP transport, from its public
    C{getHandle}, or C{None} for any other transport (a wrapper says for
    itself, as an L{IDirectWrites}).
    """
    if IDirectWrites.providedBy(transport):
        return transport.directSocket()
    if not isinstance(transport, tcp.Connection) or ISSLTransport.providedBy(transport):
        return None
    handle = transport.getHandle()
    return handle if isinstance(handle, socket.socket) else None


@frozen
class ZeroCopy:
    """
    How a L{ThreadedFileSender} may send file bytes straight to the
    consumer's socket (C{os.sendfile}, no copy through Python) whenever
    the consumer's own buffer is empty.

    The consumer must be a connection that says so by the push-producer
    contract: it pauses its producer once its buffer is over its limit and
    resumes it only when the buffer is empty (as every Twisted TCP
    transport, and twisted.web's C{HTTPChannel} in front of one, do), and
    nothing else writes to the connection while the sender is registered.
    The sender therefore sends directly only after it was paused and
    resumed with nothing written in between, from a thread, on a duplicate
    of the socket's descriptor (so a connection closed meanwhile never
    lets the number reach another one), never changing the socket's
    (non-blocking) mode; a trip waits for a full socket at most
    L{ZERO_COPY_WAIT} seconds in all before the next chunk goes through
    the consumer's buffer instead.

    @ivar handle: the connection's socket (see L{plainSocket}).
    @ivar send: C{(descriptor, limit) -> bytes sent}, run in a thread,
        like L{FileSpans.sendfile}.
    @ivar sent: told (on the reactor thread) how many bytes went past the
        consumer, for its accounting.
    """

    handle: socket.socket
    send: Callable[[int, int], int]
    sent: Callable[[int], None]


def zeroCopyTo(
    transport: object, send: Callable[[int, int], int], sent: Callable[[int], None]
) -> ZeroCopy | None:
    """
    A L{ZeroCopy} to C{transport}'s socket, if it has one that may be
    written directly (L{plainSocket}); C{sent} and the transport (an
    L{IDirectWrites}) are both told of the bytes written past it.
    """
    handle = plainSocket(transport)
    if handle is None:
        return None
    if not IDirectWrites.providedBy(transport):
        return ZeroCopy(handle, send, sent)
    wrapper: Any = transport

    def counted(count: int) -> None:
        wrapper.wroteDirectly(count)
        sent(count)

    return ZeroCopy(handle, send, counted)


def _writable(fd: int, seconds: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(seconds * 1000))


def whenQuiet(busy: bool, waiters: list[Deferred[None]]) -> Deferred[None]:
    """A Deferred fired now if not C{busy}, else once L{fire}d."""
    d: Deferred[None] = Deferred()
    if busy:
        waiters.append(d)
    else:
        d.callback(None)
    return d


def fire(waiters: list[Deferred[None]]) -> None:
    """Fire (and forget) every waiter."""
    pending = waiters[:]
    del waiters[:]
    for d in pending:
        d.callback(None)


@implementer(IPushProducer)
class ThreadedFileSender:
    """
    Streams what C{read} returns, chunk by chunk until it returns C{b""},
    into a consumer; C{read(size)} runs in the C{run} threads.

    At most one read is in flight and one chunk waits read-ahead, so memory
    stays at a few chunks plus whatever the consumer buffers before it
    pauses us. With C{zeroCopy} (and no C{transform} or C{throttle}), file
    bytes go straight to the consumer's socket whenever its buffer is
    empty, and nothing is read ahead while it is full (see L{ZeroCopy}).

    @ivar sent: bytes read and sent so far (before C{transform}).
    @ivar last: the last byte written to the consumer (after
        C{transform}), or C{b""}.
    """

    _log = Logger()

    def __init__(
        self,
        run: InThread,
        read: Callable[[int], bytes],
        consumer: IConsumer,
        clock: IReactorTime | None = None,
        *,
        chunkSize: int = CHUNK,
        transform: Transform | None = None,
        throttle: Throttle | None = None,
        progress: Callable[[int], None] | None = None,
        length: int | None = None,
        zeroCopy: ZeroCopy | None = None,
    ) -> None:
        self._run = run
        if transform is not None or throttle is not None:
            zeroCopy = None
        self._zeroCopy = zeroCopy
        #: Paused and resumed by the consumer, nothing written since: its
        #: buffer is empty.
        self._drained = False
        self._readChunk = read
        self._remaining = length
        self._consumer = consumer
        self._clock = clock
        self._chunkSize = chunkSize
        self._transform = transform
        self._throttle = throttle
        self._progress = progress
        self._paused = False
        self._held: IDelayedCall | None = None
        self._reading = False
        self._ready: bytes | None = None
        self._eof = False
        self._finished = False
        self.sent = 0
        self.last = b""
        self._done: Deferred[int] = Deferred()
        self._quiet: list[Deferred[None]] = []

    def quiet(self) -> Deferred[None]:
        """
        Fires once no read is in flight, so the file may be closed
        (closing it under a read could let the read hit a reused number).
        """
        return whenQuiet(self._reading, self._quiet)

    def start(self) -> Deferred[int]:
        """
        Register with the consumer and start sending.

        @return: fires with the number of file bytes sent once all are
            written to the consumer (and the producer unregistered); fails
            with L{stopped}'s error if the consumer stops us first, or
            with L{readFailed}'s if the file cannot be read.
        """
        self._consumer.registerProducer(self, True)
        self._pump()
        return self._done

    def stopped(self) -> Exception:
        """The error the sender fails with when the consumer stops it."""
        return SendingStopped()

    def readFailed(self, failure: Failure) -> Failure:
        """The failure the sender fails with when a read fails."""
        return failure

    def _pump(self) -> None:
        while (
            not self._finished
            and not self._paused
            and self._held is None
            and self._ready is not None
        ):
            data, self._ready = self._ready, None
            self.sent += len(data)
            if self._progress is not None:
                self._progress(len(data))
            out = self._transform(data) if self._transform else data
            if out:
                self.last = out[-1:]
            self._drained = False
            self._consumer.write(out)
            if self._throttle is not None and self._clock is not None:
                delay = self._throttle(len(data))
                if delay > 0 and not self._finished:
                    self._held = self._clock.callLater(delay, self._release)
        if self._finished:
            return
        if self._eof and self._ready is None:
            self._finish(None)
            return
        if not self._reading and not self._eof and self._ready is None:
            if self._zeroCopy is not None:
                if self._paused:
                    # Wait for the buffer to empty rather than read ahead.
                    return
                if self._drained and self._sendDirect(self._zeroCopy):
                    return
            self._reading = True
            size = self._chunkSize
            if self._remaining is not None:
                size = min(size, self._remaining)
            self._run(self._readChunk, size).addCallbacks(self._read, self._failed)

    def _sendDirect(self, zeroCopy: ZeroCopy) -> bool:
        """Start a trip of sends straight to the socket; C{False} if not."""
        try:
            out = zeroCopy.handle.dup()
        except OSError:
            return False
        limit = ZERO_COPY_TRIP
        if self._remaining is not None:
            limit = min(limit, self._remaining)
        self._reading = True
        self._run(self._direct, zeroCopy.send, out, limit).addCallbacks(
            self._sentDirect, self._failed
        )
        return True

    def _direct(
        self, send: Callable[[int, int], int], out: socket.socket, limit: int
    ) -> tuple[int, bool]:
        """
        (In a thread.) Send up to C{limit} bytes to C{out}, a duplicate
        descriptor closed here; how many went, and whether the socket
        was full for longer than L{ZERO_COPY_WAIT} in all.
        """
        total = 0
        waited = 0.0
        try:
            fd = out.fileno()
            while total < limit and not self._finished:
                try:
                    sent = send(fd, limit - total)
                except BlockingIOError:
                    # The trip waits at most ZERO_COPY_WAIT in all, so a
                    # slow but steady reader cannot hold the thread long.
                    began = time.monotonic()
                    if waited < ZERO_COPY_WAIT and _writable(
                        fd, ZERO_COPY_WAIT - waited
                    ):
                        waited += time.monotonic() - began
                        continue
                    return total, True
                except (BrokenPipeError, ConnectionResetError):
                    # The client went away: the consumer's next write finds
                    # out and stops us the usual way.
                    return total, True
                if not sent:
                    break
                total += sent
        finally:
            out.close()
        return total, False

    def _sentDirect(self, result: tuple[int, bool]) -> None:
        self._reading = False
        fire(self._quiet)
        if self._finished:
            return
        count, full = result
        self.sent += count
        if self._progress is not None:
            self._progress(count)
        assert self._zeroCopy is not None
        self._zeroCopy.sent(count)
        if self._remaining is not None:
            self._remaining -= count
            if self._remaining <= 0:
                self._eof = True
        if full or not count:
            # A slow reader (or a part only read() sends): the next chunk
            # goes through the consumer, which resumes us once it is sent.
            self._drained = False
        self._pump()

    def _release(self) -> None:
        self._held = None
        self._pump()

    def _read(self, data: bytes) -> None:
        self._reading = False
        fire(self._quiet)
        if self._finished:
            return
        if data:
            self._ready = data
            if self._remaining is not None:
                # The length is known: no extra read just to see the end.
                self._remaining -= len(data)
                if self._remaining <= 0:
                    self._eof = True
        else:
            self._eof = True
        self._pump()

    def _failed(self, failure: Failure) -> None:
        self._reading = False
        fire(self._quiet)
        if self._finished:
            return
        if failure.check(FileShrank):
            self._log.warn("A file shrank while being sent")
        else:
            self._log.failure("Reading a file to send failed", failure)
        self._finish(self.readFailed(failure))

    def _finish(self, failure: Failure | None) -> None:
        if self._finished:
            return
        self._finished = True
        if self._held is not None:
            self._held.cancel()
            self._held = None
        self._consumer.unregisterProducer()
        if failure is None:
            self._done.callback(self.sent)
        else:
            self._done.errback(failure)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        if self._paused:
            self._drained = True
        self._paused = False
        self._pump()

    def stopProducing(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._held is not None:
            self._held.cancel()
            self._held = None
        self._done.errback(self.stopped())
