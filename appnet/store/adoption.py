"""
A queue store's side of L{IQueueStore.adopt}, shared by the SQLite and
PostgreSQL queues: the runner of this process that adopts new mail, and
the bytes of small adopted messages, kept so that relaying one needs no
read until it is settled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from attrs import define, field, frozen
from twisted.logger import Logger

from appnet.store.interfaces import QueuedMessage, QueuedRecipient, RecipientState

__all__ = ["Adopter", "Adoption"]


@frozen
class Adopter:
    """A runner adopting new mail: its claims' owner and lease."""

    owner: str
    lease: float
    callback: Callable[[QueuedMessage], None]


@define
class Adoption:
    """
    Who adopts a store's new mail now, and the bytes kept for it: at most
    L{HELD} in all, each message at most L{HELD_ONE}, each until the
    message is settled (L{forget}).
    """

    HELD = 8 << 20
    HELD_ONE = 64 << 10

    current: Adopter | None = None
    _held: dict[int, bytes] = field(factory=dict)
    _heldBytes: int = 0
    _log = Logger()

    def adopt(
        self, owner: str, lease: float, callback: Callable[[QueuedMessage], None]
    ) -> Callable[[], None]:
        """L{IQueueStore.adopt}."""
        adopter = Adopter(owner, lease, callback)
        self.current = adopter

        def cancel() -> None:
            if self.current is adopter:
                self.current = None

        return cancel

    def room(self, size: int) -> int | None:
        """
        How many bytes of a message of C{size} bytes to keep, if one is
        adopted now and there is room for it: at most L{HELD_ONE}; else
        C{None}.
        """
        if self.current is None or self._heldBytes + size > self.HELD:
            return None
        return min(self.HELD_ONE, size)

    def handOver(
        self,
        adopter: Adopter,
        id: int,
        sender: str,
        submitter: str | None,
        recipients: Sequence[str],
        size: int,
        now: float,
        data: bytes | None,
    ) -> bool:
        """
        A message enqueued, claimed for C{adopter} in its transaction, has
        committed: hand it to the runner, keeping C{data} (its bytes, if
        small) for it.

        @return: C{False} if C{adopter} stopped adopting meanwhile: the
            caller releases the claim and tells watchers.
        """
        if self.current is not adopter:
            return False
        if data is not None and self._heldBytes + len(data) <= self.HELD:
            self._held[id] = data
            self._heldBytes += len(data)
        message = QueuedMessage(
            id=id,
            sender=sender,
            submitter=submitter,
            recipients=tuple(
                QueuedRecipient(a, RecipientState.PENDING, None, now)
                for a in recipients
            ),
            size=size,
            created=now,
            nextAttempt=now,
            claimedBy=adopter.owner,
            claimedUntil=now + adopter.lease,
        )
        try:
            adopter.callback(message)
        except Exception:
            self._log.failure("Queue adopter failed on {id}", id=id)
        return True

    def held(self, id: int) -> bytes | None:
        """The bytes kept of an adopted message, if any."""
        return self._held.get(id)

    def forget(self, id: int) -> None:
        """Drop what was kept of a message (settled, deleted, released)."""
        data = self._held.pop(id, None)
        if data is not None:
            self._heldBytes -= len(data)

    def clear(self) -> None:
        """Drop everything kept (every claim released)."""
        self._held.clear()
        self._heldBytes = 0
