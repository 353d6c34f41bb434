"""
The set of local domains a user store keeps between look-ups (asked at
every RCPT), shared by the SQLite and PostgreSQL user stores.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import define, field
from twisted.internet.defer import Deferred, succeed

__all__ = ["CachedDomains"]


@define
class CachedDomains:
    """
    Local domains kept for C{ttl} seconds, forgotten at once when accounts
    change (L{changed}); C{generation} counts those changes, the user
    store's own C{generation}.
    """

    _now: Callable[[], float]
    ttl: float
    generation: int = 0
    _found: frozenset[str] | None = field(default=None, init=False)
    _at: float = field(default=0.0, init=False)

    def changed(self) -> None:
        """Accounts changed: forget the domains and move C{generation} on."""
        self.generation += 1
        self._found = None

    def get(
        self, read: Callable[[], Deferred[frozenset[str]]]
    ) -> Deferred[frozenset[str]]:
        """The domains, from memory while fresh, else from C{read}."""
        now = self._now()
        if self._found is not None and now - self._at < self.ttl:
            return succeed(self._found)
        generation = self.generation

        def remember(found: frozenset[str]) -> frozenset[str]:
            # Not if accounts changed while reading: the next call reads.
            if generation == self.generation:
                self._found, self._at = found, now
            return found

        return read().addCallback(remember)
