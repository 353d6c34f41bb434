"""
The resolver's cache: RRsets and negative answers, each for its TTL.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Any

from attrs import define, field, frozen
from twisted.internet.interfaces import IReactorTime
from twisted.names import dns

__all__ = ["Cache", "CacheTrail", "CachedNegative", "CachedRRSet", "Trust"]

_NXDOMAIN = -1  # the type slot of a name's NXDOMAIN entry


class Trust(IntEnum):
    """
    How much cached data is believed (RFC 2181 section 5.4.1), lowest
    first.
    """

    GLUE = 1
    """Additional-section data: addresses of name servers."""
    REFERRAL = 2
    """Authority-section data of a referral or a negative answer."""
    ANSWER = 3
    """The answer section of a non-authoritative reply (a forwarder's)."""
    AUTHORITATIVE = 4
    """The answer section of an authoritative reply."""


@frozen
class CachedRRSet:
    """
    An RRset from the cache.

    @ivar ttl: the seconds it has left.
    """

    name: bytes
    type: int
    ttl: int
    records: tuple[Any, ...]
    trust: Trust

    def headers(self) -> list[dns.RRHeader]:
        """The records with their remaining TTL."""
        return [
            dns.RRHeader(self.name, self.type, dns.IN, self.ttl, payload)
            for payload in self.records
        ]


@frozen
class CachedNegative:
    """
    A negative answer from the cache.

    @ivar rcode: C{dns.ENAME} (NXDOMAIN) or C{dns.OK} (NODATA).
    @ivar soa: the SOA record, its TTL the seconds left.
    """

    rcode: int
    soa: dns.RRHeader


@define
class CacheTrail:
    """
    What one walk through the cache read, for the wire-level answer cache
    (L{appnet.dns.fastpath}), which repeats it without the walk.

    @ivar touched: C{(key, expires)} of every live entry looked at, in
        order (each is moved to the recently used end).
    @ivar returned: C{(expires, count)} of every RRset or negative answer
        handed out, in order: C{count} records whose TTL counts down to
        C{expires}.
    """

    touched: list[tuple[tuple[bytes, int], float]] = field(factory=list)
    returned: list[tuple[float, int]] = field(factory=list)


@frozen
class _Positive:
    records: tuple[Any, ...]
    expires: float
    trust: Trust


@frozen
class _Negative:
    soaName: bytes
    soa: Any
    expires: float


class Cache:
    """
    A bounded, TTL-respecting cache of RRsets and negative answers.
    """

    def __init__(
        self,
        clock: IReactorTime,
        maxEntries: int = 10000,
        maxTTL: float = 86400,
        maxNegativeTTL: float = 3600,
    ) -> None:
        self._clock = clock
        self.maxEntries = maxEntries
        self.maxTTL = maxTTL
        self.maxNegativeTTL = maxNegativeTTL
        self._entries: OrderedDict[tuple[bytes, int], _Positive | _Negative] = (
            OrderedDict()
        )
        #: Changes whenever an entry is stored, replaced or removed.
        self.generation = 0
        #: When set, lookups note what they read in it.
        self.trail: CacheTrail | None = None
        #: Called before entries are evicted: marks as used the entries
        #: the wire cache's hits read (L{appnet.dns.fastpath}).
        self.beforeEvicting: Callable[[], None] | None = None

    @property
    def clock(self) -> IReactorTime:
        """Where the cache's time comes from."""
        return self._clock

    def touch(self, keys: Sequence[tuple[bytes, int]]) -> None:
        """
        Mark entries as just used, as a lookup would (keys from a
        L{CacheTrail}).
        """
        entries = self._entries
        for key in keys:
            if key in entries:
                entries.move_to_end(key)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self.generation += 1

    def _store(self, key: tuple[bytes, int], entry: _Positive | _Negative) -> None:
        entries = self._entries
        self.generation += 1
        entries[key] = entry
        entries.move_to_end(key)
        if len(entries) > self.maxEntries and self.beforeEvicting is not None:
            self.beforeEvicting()
        while len(entries) > self.maxEntries:
            entries.popitem(last=False)

    def _live(self, key: tuple[bytes, int]) -> _Positive | _Negative | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock.seconds():
            del self._entries[key]
            self.generation += 1
            return None
        self._entries.move_to_end(key)
        if self.trail is not None:
            self.trail.touched.append((key, entry.expires))
        return entry

    def _remaining(self, expires: float) -> int:
        return max(0, int(expires - self._clock.seconds()))

    def putRRSet(
        self, name: bytes, type: int, ttl: int, records: Sequence[Any], trust: Trust
    ) -> None:
        """
        Cache an RRset for C{ttl} seconds (capped), unless an unexpired
        copy from a more trusted source is already held. A zero TTL means
        use once, never cache.
        """
        ttl = min(ttl, int(self.maxTTL))
        if ttl <= 0 or not records:
            return
        key = (name, type)
        held = self._live(key)
        if isinstance(held, _Positive) and held.trust > trust:
            return
        if trust >= Trust.ANSWER:
            if self._entries.pop((name, _NXDOMAIN), None) is not None:
                self.generation += 1
        self._store(key, _Positive(tuple(records), self._clock.seconds() + ttl, trust))

    def putNegative(
        self, name: bytes, type: int | None, soa: dns.RRHeader | None
    ) -> None:
        """
        Cache a negative answer: NXDOMAIN for C{name} (C{type} is C{None})
        or NODATA for C{(name, type)}, for as long as its SOA allows.
        """
        if soa is None or soa.payload is None:
            return
        payload = soa.payload
        ttl = min(soa.ttl, payload.minimum, int(self.maxNegativeTTL))  # type: ignore[attr-defined]
        if ttl <= 0:
            return
        key = (name, _NXDOMAIN if type is None else type)
        if type is not None:
            held = self._live(key)
            if isinstance(held, _Positive) and held.trust >= Trust.ANSWER:
                del self._entries[key]
                self.generation += 1
        self._store(
            key,
            _Negative(soa.name.name.lower(), payload, self._clock.seconds() + ttl),
        )

    def getRRSet(
        self, name: bytes, type: int, minimum: Trust = Trust.ANSWER
    ) -> CachedRRSet | None:
        """
        The cached RRset for C{(name, type)} if there is one at least as
        trusted as C{minimum}.
        """
        entry = self._live((name, type))
        if not isinstance(entry, _Positive) or entry.trust < minimum:
            return None
        if self.trail is not None:
            self.trail.returned.append((entry.expires, len(entry.records)))
        return CachedRRSet(
            name, type, self._remaining(entry.expires), entry.records, entry.trust
        )

    def getNegative(self, name: bytes, type: int) -> CachedNegative | None:
        """
        A cached NXDOMAIN for C{name}, or NODATA for C{(name, type)}.
        """
        for key, rcode in (((name, _NXDOMAIN), dns.ENAME), ((name, type), dns.OK)):
            entry = self._live(key)
            if isinstance(entry, _Negative):
                if self.trail is not None:
                    self.trail.returned.append((entry.expires, 1))
                soa = dns.RRHeader(
                    entry.soaName,
                    dns.SOA,
                    dns.IN,
                    self._remaining(entry.expires),
                    entry.soa,
                )
                return CachedNegative(rcode, soa)
        return None
