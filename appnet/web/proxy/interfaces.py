"""
The seam between the proxy's engine and where cached responses live.
"""

from __future__ import annotations

from typing import BinaryIO

from twisted.internet.defer import Deferred
from zope.interface import Interface

from appnet.web.proxy.policy import StoredResponse

__all__ = ["ICacheStore"]


class ICacheStore(Interface):
    """
    Stored responses by primary key, with their bodies.
    """

    def variants(key: bytes) -> list[StoredResponse]:
        """The L{StoredResponse}s under primary key C{key}."""

    def body(stored: StoredResponse) -> Deferred[bytes | BinaryIO] | None:
        """
        A C{Deferred} firing with the body of C{stored} (bytes, or an open
        file to read in chunks and close), or C{None} if it is no longer
        stored.
        """

    def put(stored: StoredResponse, body: bytes) -> Deferred[None]:
        """Store a response (a C{Deferred} firing once it is durable)."""

    def update(stored: StoredResponse) -> Deferred[None]:
        """Replace a stored response's metadata (after a 304)."""

    def remove(key: bytes) -> int:
        """Remove every response under C{key}; how many there were."""

    def clear() -> int:
        """Remove everything; how many responses there were."""

    def load() -> Deferred[None]:
        """Read what is on disk (a C{Deferred})."""

    def stats() -> dict[str, float]:
        """Entry count and bytes held."""
