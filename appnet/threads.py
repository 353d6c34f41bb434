"""
A sized pool of threads as a service of the stack: the one shape the
password hashing threads and the FTP file threads share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads

from appnet.store.threads import Threads

__all__ = ["PoolService"]

T = TypeVar("T")


class PoolService(Service):
    """
    L{Threads} that start with the stack and stop (joined off the reactor
    thread) when it stops. Work submitted before the service starts waits
    for it; work submitted after it stopped fails with L{stoppedError}.
    """

    def __init__(self, reactor: IReactorFromThreads, name: str, size: int) -> None:
        self._reactor = reactor
        self._name = name
        self._size = size
        self._threads = Threads(reactor, name, size)
        self._stopped = False

    def stoppedError(self) -> Exception:
        """What L{run} fails with once the service has stopped."""
        return RuntimeError(f"the {self._name} threads have stopped")

    def run(self, f: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run C{f(*args, **kwargs)} in one of the threads."""
        if self._stopped:
            return fail(self.stoppedError())
        return self._threads.run(f, *args, **kwargs)

    def startService(self) -> None:
        super().startService()
        if self._stopped:
            # A stopped pool is not restarted: start a fresh one.
            self._threads = Threads(self._reactor, self._name, self._size)
        self._stopped = False
        self._threads.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._stopped = True
        return self._threads.stop()
