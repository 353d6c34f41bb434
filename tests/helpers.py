"""
Shared helpers for appnet's own tests.
"""

from __future__ import annotations

import threading
from typing import Any

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
