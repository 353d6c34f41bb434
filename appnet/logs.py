"""
A cheaper log observer for the daemon: C{twistd -n
--logger=appnet.logs.buffered appnet}.

twistd's own observer formats every event's time afresh and writes and
flushes each line by itself: on a busy MX, whose every message is logged
(one line, as Postfix logs it), that is a system call and a fifth of the
reactor's Python time per message. L{BufferedLogObserver} writes the same
lines, in order, but together: once a second, at once for a warning or
worse, when 64 KiB collect, and when the reactor stops and the process
exits, and one at a time once the reactor has stopped (twistd logs its
last lines then), so a cleanly stopped daemon's log is complete. A process killed
outright (C{kill -9}) loses at most the last second's informational lines.
"""

from __future__ import annotations

import atexit
import functools
import sys
import threading
from typing import TextIO

from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    formatEventAsClassicLogText,
    formatTime,
)
from zope.interface import implementer

__all__ = ["BufferedLogObserver", "buffered"]


@functools.lru_cache(maxsize=4)
def _formatSecond(second: int) -> str:
    return formatTime(float(second))


def _formatTime(when: float | None) -> str:
    # twistd's time format has whole seconds: formatted once a second.
    if when is None:
        return "-"
    return _formatSecond(int(when))


@implementer(ILogObserver)
class BufferedLogObserver:
    """
    Writes events as twistd's observer does (C{formatEventAsClassicLogText}),
    a batch of lines at a time. Thread-safe: events from other threads
    join the same buffer, in order.

    @ivar limit: characters buffered before they are written at once.
    """

    limit = 1 << 16

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._pending: list[str] = []
        self._size = 0
        # Reentrant: a signal handler (the reactor's for SIGTERM logs)
        # may log in the thread that is writing, holding it.
        self._lock = threading.RLock()
        self._writing = False
        self._timer: LoopingCall | None = None
        #: Whether the reactor has stopped: then lines are written at
        #: once (twistd ends the process by its signal, no exit hooks).
        self._stopped = False

    def __call__(self, event: LogEvent) -> None:
        text = formatEventAsClassicLogText(event, formatTime=_formatTime)
        if text is None:
            return
        level = event.get("log_level", LogLevel.info)
        with self._lock:
            self._pending.append(text)
            self._size += len(text)
            if self._writing:
                return  # Logged while this thread writes: the next write.
            if self._size < self.limit and level < LogLevel.warn and not self._stopped:
                return
            self._write()

    def flush(self) -> None:
        """Write out what is buffered."""
        with self._lock:
            self._write()

    def _write(self) -> None:
        if self._pending and not self._writing:
            text = "".join(self._pending)
            self._pending, self._size = [], 0
            self._writing = True
            try:
                self._out.write(text)
                self._out.flush()
            finally:
                self._writing = False

    def start(self, reactor: IReactorCore, interval: float = 1.0) -> None:
        """
        Flush every C{interval} seconds once C{reactor} runs, and after it
        shuts down.
        """

        def run() -> None:
            self._timer = LoopingCall(self.flush)
            assert IReactorTime.providedBy(reactor)
            self._timer.clock = reactor
            self._timer.start(interval, now=False)

        def stop() -> None:
            if self._timer is not None and self._timer.running:
                self._timer.stop()
            with self._lock:
                self._stopped = True
                self._write()

        reactor.callWhenRunning(run)
        reactor.addSystemEventTrigger("after", "shutdown", stop)


def buffered() -> BufferedLogObserver:
    """
    twistd's log observer factory (C{--logger=appnet.logs.buffered}): the
    lines go to standard output, as with C{twistd -n} (for a supervisor
    that collects it, or a redirection to a file).
    """
    from twisted.internet import reactor

    # Standard output as it is now: twistd then redirects sys.stdout
    # into the log itself.
    observer = BufferedLogObserver(sys.stdout)
    observer.start(reactor)
    atexit.register(observer.flush)
    return observer
