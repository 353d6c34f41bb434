"""
Shared helpers for appnet's own tests.
"""

from __future__ import annotations

import threading
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol

from appnet.stack import Component, Listening, StackContext


class Echo(Protocol):
    """Echoes what it receives."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


def echoBuilder(*services: str) -> Any:
    """
    A component builder serving an echo protocol as each named service, so
    stack plumbing can be tested without any real protocol.
    """

    def build(ctx: StackContext) -> Component:
        return Component(
            listening=[
                Listening(name, Factory.forProtocol(Echo), refusal=b"busy\r\n")
                for name in services
            ]
        )

    return build


def storeThreads() -> list[str]:
    """Names of live threads belonging to the store."""
    return [t.name for t in threading.enumerate() if "appnet-store" in t.name]


@define
class Pending:
    """
    An L{InThread} whose calls wait until the test runs them, as a real
    thread pool's would while other logins arrive.
    """

    calls: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = field(factory=list)
    ran: int = 0

    def __call__(self, f: Any, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((d, f, args))
        return d

    def runAll(self) -> None:
        calls, self.calls = self.calls, []
        for d, f, args in calls:
            self.ran += 1
            d.callback(f(*args))
