"""
The wire-level answer cache: response bytes the full query path built,
handed out again with the query's ID, without decoding or encoding.

An entry is keyed by what can change a response (L{WireCache.keyOf}):
the question section as sent, RD, CD, DO, EDNS, the size limit the reply
must fit, and whether the client may recurse. Only answers given at once
are kept (zone data, referrals, refusals, recursive cache hits), with the
counters, observers and rotations they cause, repeated on a hit. Zone
entries live until a zone changes; entries built from the recursive cache
while every cache entry they read does, their TTLs restamped to the
seconds left. A repeated UDP query is found by its bytes after the ID in
a table of its client's access class (L{WireCache.hosts}), by the UDP
protocol alone; its counters are added when read (L{WireCache.settle}).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime

from appnet.dns.cache import Cache, CacheTrail
from appnet.dns.zones import Authority
from appnet.status import Status

__all__ = ["WireCache", "ttlOffsets"]

_TTL = struct.Struct("!I")
_MAX_VARIANTS = 64
#: Queries up to this size have their keys remembered.
_KEPT_QUERY = 300

Key = tuple[bytes, int, int]
Increments = tuple[tuple[tuple[str, str], int], ...]


class _Entry:
    """
    One cached response (or a set of rotations of it).

    @ivar hot: what the UDP hit path (L{WireCache.hosts}) sends after the
        query's ID: the fixed body, or for an entry built from the
        recursive cache the body restamped at C{until}'s second;
        C{None} when the entry needs L{WireCache.answer} (rotations) or
        was dropped.
    @ivar used: hit since the recursive cache last evicted, so the cache
        entries it read are to be marked used first (L{WireCache.use}).
    @ivar hits: UDP hits not yet added to the counters (L{WireCache.settle}).
    @ivar received: the sizes of those hits' queries, summed.
    """

    __slots__ = (
        "body",
        "hot",
        "used",
        "hits",
        "received",
        "counters",
        "seen",
        "rotations",
        "variants",
        "generation",
        "expires",
        "stamps",
        "touched",
        "restamped",
        "until",
    )

    def __init__(self, counters: Increments, seen: tuple[str, int, bool]) -> None:
        self.body: bytes | None = None
        self.hot: bytes | None = None
        self.used = False
        self.hits = 0
        self.received = 0
        self.counters = counters
        self.seen = seen
        self.rotations: tuple[tuple[tuple[bytes, int], int], ...] = ()
        self.variants: dict[tuple[int, ...], bytes] = {}
        self.generation = -1
        self.expires = 0.0
        self.stamps: tuple[tuple[int, float], ...] = ()
        self.touched: tuple[tuple[bytes, int], ...] = ()
        self.restamped = b""
        self.until = 0.0


def _skipName(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length >= 0xC0:
            return offset + 2
        offset += length + 1


def ttlOffsets(data: bytes) -> list[int]:
    """
    The offsets of the TTL fields of every record of a response, in
    order, the OPT pseudo-record left out.
    """
    qd, an, ns, ar = struct.unpack_from("!4H", data, 4)
    offset = 12
    for _ in range(qd):
        offset = _skipName(data, offset) + 4
    found = []
    for _ in range(an + ns + ar):
        offset = _skipName(data, offset)
        type, _, _, length = struct.unpack_from("!HHIH", data, offset)
        if type != 41:
            found.append(offset + 4)
        offset += 10 + length
    return found


class WireCache:
    """
    Response bytes by query key (see the module docstring).

    @ivar maxEntries: how many keys are held; the oldest go first.
    """

    def __init__(
        self,
        authority: Authority,
        cache: Cache | None,
        status: Status,
        maxUDPSize: int = 1232,
        maxEntries: int = 10000,
    ) -> None:
        self.authority = authority
        self.cache = cache
        self.status = status
        self.maxUDPSize = maxUDPSize
        self.maxEntries = maxEntries
        self._entries: dict[Key, _Entry] = {}
        self._keys: dict[tuple[bytes, bool, bool], Key] = {}
        #: The UDP hit path's tables: a query's bytes after the ID to its
        #: entry, one table per access class (may recurse or not).
        self.tables: tuple[dict[bytes, _Entry], dict[bytes, _Entry]] = ({}, {})
        #: A client address to the table of its access class, for
        #: addresses whose queries may take the hit path (see
        #: L{appnet.dns.query.DNSDatagramServer}).
        self.hosts: dict[str, dict[bytes, _Entry]] = {}
        self._clock = cache.clock if cache is not None else None
        self._used: list[_Entry] = []
        if cache is not None:
            cache.beforeEvicting = self._markUsed
        authority.watch(self.clear)
        status.settleWith(self.settle)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every response (the zones changed)."""
        for entry in self._entries.values():
            self._drop(entry)
        self._entries.clear()
        for table in self.tables:
            table.clear()

    def _drop(self, entry: _Entry) -> None:
        """An entry leaves the cache: count its hits, stop serving it."""
        entry.hot = None
        if entry.hits:
            self._settle(entry)

    def _settle(self, entry: _Entry) -> None:
        hits = entry.hits
        self.status.incrementAll(
            [(key, amount * hits) for key, amount in entry.counters]
            + [(("dns", "bytes_in"), entry.received)]
        )
        entry.hits = entry.received = 0

    def settle(self) -> None:
        """Add the hits the UDP hit path counted in its entries."""
        for entry in self._entries.values():
            if entry.hits:
                self._settle(entry)

    def remember(self, host: str, mayRecurse: bool, data: bytes, key: Key) -> None:
        """
        Let later UDP queries from C{host} with C{data}'s bytes (apart
        from the ID) find C{key}'s entry by those bytes alone.
        """
        entry = self._entries.get(key)
        if entry is None or len(data) > _KEPT_QUERY:
            return
        table = self.tables[mayRecurse]
        if len(table) >= 2 * self.maxEntries:
            table.clear()
        table[data[2:]] = entry
        hosts = self.hosts
        if host not in hosts:
            if len(hosts) >= 4096:
                hosts.clear()
            hosts[host] = table

    @property
    def clock(self) -> IReactorTime | None:
        """
        The recursive cache's clock (C{None} without a recursive cache).
        The restamped body of an entry built from that cache (one with
        cache entries C{touched}) is exact while C{clock.seconds()} is
        below its C{until} and the cache's C{generation} is its own; the
        UDP hit path checks that inline, and calls L{use} on a hit of an
        entry not yet C{used}.
        """
        return self._clock

    def use(self, entry: _Entry) -> bool:
        """
        An entry built from the recursive cache was hit, so the cache
        entries it read count as used: a lookup moves them to the
        recently-used end at once; a hit notes them, and they are moved
        before the cache next evicts (moving them on every hit cost about
        as much as the rest of the hit). Only for an entry not already
        noted (C{entry.used} false).

        @return: C{True} (the check of a hit reads C{entry.used or
            use(entry)}).
        """
        entry.used = True
        used = self._used
        used.append(entry)
        if len(used) > self.maxEntries:
            self._markUsed()
        return True

    def _markUsed(self) -> None:
        assert self.cache is not None
        for entry in self._used:
            entry.used = False
            self.cache.touch(entry.touched)
        self._used.clear()

    def keyOf(self, data: bytes, mayRecurse: bool, tcp: bool) -> Key | None:
        """
        The key of a query, or C{None} if it is not a plain query the
        cache can hold (several questions, compression, EDNS options the
        full path must judge, a response ...).
        """
        # Clients repeat the same bytes but the ID: remember their keys.
        raw = (data[2:], mayRecurse, tcp)
        key = self._keys.get(raw)
        if key is None:
            key = self._keyOf(data, mayRecurse, tcp)
            if key is not None and len(data) <= _KEPT_QUERY:
                if len(self._keys) >= 2 * self.maxEntries:
                    self._keys.clear()
                self._keys[raw] = key
        return key

    def _keyOf(self, data: bytes, mayRecurse: bool, tcp: bool) -> Key | None:
        size = len(data)
        if size < 17 or data[2] & 0xF8 or data[4:10] != b"\x00\x01\x00\x00\x00\x00":
            return None
        offset = 12
        try:
            length = data[offset]
            while length:
                if length > 63:
                    return None
                offset += length + 1
                length = data[offset]
        except IndexError:
            return None
        if offset > 266:
            return None
        end = offset + 5
        flags = (data[2] & 0x01) | (data[3] & 0x10) | (mayRecurse << 1)
        additional = data[10:12]
        if additional == b"\x00\x00":
            if end != size:
                return None
            return data[12:end], flags, 65535 if tcp else 512
        if additional != b"\x00\x01" or size < end + 11:
            return None
        if data[end] or data[end + 1 : end + 3] != b"\x00\x29":
            return None
        if data[end + 5] & 0x80 or data[end + 6]:
            # An extended rcode the decoder reads as a zero TTL, or an
            # EDNS version other than 0 (BADVERS): the full path decides.
            return None
        if end + 11 + (data[end + 9] << 8 | data[end + 10]) != size:
            return None
        flags |= 0x04 | (data[end + 7] & 0x80)
        if tcp:
            limit = 65535
        else:
            limit = max(512, min(data[end + 3] << 8 | data[end + 4], self.maxUDPSize))
        return data[12:end], flags, limit

    def answer(self, key: Key, data: bytes) -> tuple[bytes, _Entry] | None:
        """
        The response to C{data} (whose key is C{key}) with its counters
        counted, or C{None} if the full path must answer it.
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        body = entry.body
        if body is None:
            if entry.rotations:
                authority = self.authority
                turns = tuple(
                    authority.turn(rotated) % size for rotated, size in entry.rotations
                )
                body = entry.variants.get(turns)
                if body is None:
                    return None
                for rotated, _ in entry.rotations:
                    authority.advance(rotated)
            else:
                body = self._restamp(entry)
                if body is None:
                    self._drop(self._entries.pop(key))
                    return None
        self.status.incrementAll(entry.counters)
        return data[:2] + body, entry

    def _restamp(self, entry: _Entry) -> bytes | None:
        cache = self.cache
        clock = self._clock
        assert cache is not None and clock is not None
        now = clock.seconds()
        if cache.generation != entry.generation or now >= entry.expires:
            return None
        cache.touch(entry.touched)
        if now < entry.until:
            return entry.restamped
        buffer = bytearray(entry.variants[()])
        pack = _TTL.pack_into
        until = entry.expires
        for offset, expires in entry.stamps:
            left = expires - now
            pack(buffer, offset, max(0, int(left)))
            # The TTL written stays right until the fraction runs out.
            until = min(until, now + left % 1)
        entry.restamped = entry.hot = bytes(buffer)
        entry.until = until
        return entry.restamped

    def capture(self) -> Callable[[], tuple[Increments, Any, Any]]:
        """
        Start noting what the full path does; the returned callable stops
        and gives the counters, rotations and cache reads it saw.
        """
        self.status.record()
        self.authority.trail = []
        if self.cache is not None:
            self.cache.trail = CacheTrail()

        def done() -> tuple[Increments, Any, Any]:
            rotations = self.authority.trail
            self.authority.trail = None
            trail = None
            if self.cache is not None:
                trail = self.cache.trail
                self.cache.trail = None
            return self.status.recorded(), rotations, trail

        return done

    def store(
        self,
        key: Key,
        response: bytes,
        kind: str,
        noted: tuple[Increments, Any, Any],
        seen: tuple[str, int, bool],
    ) -> None:
        """
        Keep a response the full path sent: C{kind} is C{"zones"} (it
        depends on zone data only) or C{"cache"} (on the recursive cache).
        """
        counters, rotations, trail = noted
        body = response[2:]
        entry = _Entry(counters, seen)
        if kind == "cache":
            if rotations or trail is None or self.cache is None:
                return
            if not self._stamps(entry, response, trail):
                return
            entry.variants[()] = body
        elif rotations:
            if trail is not None and (trail.touched or trail.returned):
                return
            entry.rotations = tuple((k, size) for k, size, _ in rotations)
            held = self._entries.get(key)
            if held is not None and held.rotations == entry.rotations:
                entry = held
            if len(entry.variants) >= _MAX_VARIANTS:
                return
            entry.variants[tuple(turn % size for _, size, turn in rotations)] = body
        else:
            if trail is not None and (trail.touched or trail.returned):
                return
            entry.body = entry.hot = body
        entries = self._entries
        held = entries.get(key)
        if held is None:
            if len(entries) >= self.maxEntries:
                self._drop(entries.pop(next(iter(entries))))
        elif held is not entry:
            self._drop(held)
        entries[key] = entry

    def _stamps(self, entry: _Entry, response: bytes, trail: CacheTrail) -> bool:
        assert self.cache is not None
        expiries: list[float] = []
        for expires, count in trail.returned:
            expiries.extend([expires] * count)
        try:
            offsets = ttlOffsets(response)
        except (struct.error, IndexError):
            return False
        if len(offsets) > len(expiries):
            return False
        entry.stamps = tuple(
            (o - 2, e) for o, e in zip(offsets, expiries, strict=False)
        )
        entry.touched = tuple(k for k, _ in trail.touched)
        every = [e for _, e in trail.touched]
        if not every:
            return False
        entry.expires = min(every)
        entry.generation = self.cache.generation
        return True
