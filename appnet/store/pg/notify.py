"""
LISTEN/NOTIFY for one node: a thread holding its own connection hears
the channels and hands each notification to the reactor.

When the connection is lost (the server restarted), the thread reconnects
with a growing delay and, once listening again, asks the store to catch up
on whatever changed meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import psycopg
from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

__all__ = ["Listener"]


@define
class Listener:
    """
    @ivar handlers: channel name to a function of the payload, called on
        the reactor thread.
    @ivar reconnected: called on the reactor thread each time listening
        (re)starts, with C{True} after a lost connection.
    """

    conninfo: str
    _reactor: IReactorFromThreads
    handlers: Mapping[str, Callable[[str], None]]
    reconnected: Callable[[bool], None]
    #: How long one wait for notifications lasts (bounds how late a stop is
    #: noticed).
    tick: float = 0.25
    _stopping: threading.Event = field(factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _listening: Deferred[None] | None = field(default=None, init=False)
    _log = Logger()

    def start(self) -> Deferred[None]:
        """
        Start listening in a thread of its own.

        @return: fires once the first C{LISTEN} is in place.
        """
        listening: Deferred[None] = Deferred()
        self._listening = listening
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="appnet-pg-listen", daemon=True
        )
        self._thread.start()
        return listening

    def _connected(self, again: bool) -> None:
        listening, self._listening = self._listening, None
        if listening is not None:
            listening.callback(None)
        self.reconnected(again)

    def stop(self) -> None:
        """Stop and join the thread (blocking: call from a thread)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        delay = 0.1
        lost = False
        while not self._stopping.is_set():
            try:
                with psycopg.connect(
                    self.conninfo, autocommit=True, connect_timeout=5
                ) as conn:
                    for channel in self.handlers:
                        conn.execute(f'LISTEN "{channel}"')
                    if lost:
                        self._log.info("Listening to the database again")
                    self._reactor.callFromThread(self._connected, lost)
                    delay = 0.1
                    lost = False
                    while not self._stopping.is_set():
                        for notice in conn.notifies(timeout=self.tick):
                            handler = self.handlers.get(notice.channel)
                            if handler is not None:
                                self._reactor.callFromThread(handler, notice.payload)
            except psycopg.Error as e:
                if not lost:
                    self._log.warn(
                        "Lost the database's notifications ({error}); reconnecting",
                        error=str(e).strip(),
                    )
                lost = True
                self._stopping.wait(delay)
                delay = min(delay * 2, 2.0)
