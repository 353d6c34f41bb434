"""
Streaming a file into a consumer without blocking the reactor: every read
runs in a thread (an L{InThread} runner), one chunk is read ahead, and
reading stops while the consumer is full (back-pressure). FTP transfers,
POP3 RETR/TOP and the mail relay's DATA all send files with
L{ThreadedFileSender}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from appnet.errors import AppnetError

__all__ = [
    "CHUNK",
    "InThread",
    "SendingStopped",
    "ThreadedFileSender",
    "inline",
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
    pauses us.

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
    ) -> None:
        self._run = run
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
            self._reading = True
            size = self._chunkSize
            if self._remaining is not None:
                size = min(size, self._remaining)
            self._run(self._readChunk, size).addCallbacks(self._read, self._failed)

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
