"""
Sized thread pools for the store's blocking work (message files, the
database), started and stopped with the store instead of borrowing the
reactor's default pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from attrs import define, field
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

__all__ = ["Threads"]

T = TypeVar("T")


@define
class Threads:
    """
    A named pool of at most C{size} threads for one kind of work. Work
    submitted before L{start} waits for it.
    """

    _reactor: IReactorFromThreads
    name: str
    size: int
    _pool: ThreadPool = field(init=False)
    _stopping: Deferred[None] | None = field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        # A ThreadPool starts no thread until start().
        self._pool = ThreadPool(0, self.size, name=self.name)

    def start(self) -> None:
        """Start the threads (idempotent)."""
        if not self._pool.started:
            self._pool.start()

    def run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> Deferred[T]:
        """Call C{fn} in one of these threads; fires with its result."""
        return deferToThreadPool(self._reactor, self._pool, fn, *args, **kw)

    def call(self, fn: Callable[..., object], *args: Any) -> None:
        """Call C{fn} in one of these threads, for no result."""
        self._pool.callInThread(fn, *args)

    def stop(self) -> Deferred[None]:
        """
        Finish queued work and stop the threads, joined in a thread of
        their own so the reactor never waits for them.
        """
        if self._stopping is not None:
            return self._stopping
        if not self._pool.started:
            return succeed(None)
        d: Deferred[None] = Deferred()
        pool, reactor = self._pool, self._reactor

        def join() -> None:
            pool.stop()
            reactor.callFromThread(d.callback, None)

        thread = threading.Thread(target=join, name=f"{self.name}-stop", daemon=True)
        thread.start()

        def joined(result: None) -> None:
            thread.join()

        self._stopping = d.addCallback(joined)
        return self._stopping
