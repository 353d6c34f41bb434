"""
The zones we are authoritative for, and how they answer.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from attrs import define, field, frozen
from twisted.names import dns

from appnet.dns.answer import Answer
from appnet.dns.errors import ZoneError
from appnet.dns.names import ancestors, display, isSubdomain, parent
from appnet.dns.records import typeName
from appnet.dns.zonefile import ZoneRecord, parseZone, readFile

__all__ = ["Authority", "RRSet", "Zone", "loadZone", "zoneFromText"]

#: How many CNAMEs a chain through our zones may have.
MAX_CHAIN = 8


def _header(name: bytes, type: int, ttl: int, payload: Any) -> dns.RRHeader:
    return dns.RRHeader(name, type, dns.IN, ttl, payload, auth=True)


@frozen
class RRSet:
    """
    The records of one name and type, with their headers built once.

    @ivar ttl: one TTL for the set (RFC 2181 section 5.2): the first
        record's.
    """

    name: bytes
    type: int
    ttl: int
    records: tuple[Any, ...]
    headers: tuple[dns.RRHeader, ...] = field(eq=False)

    @classmethod
    def of(cls, name: bytes, type: int, ttl: int, records: Sequence[Any]) -> RRSet:
        """An RRSet with its headers."""
        return cls(
            name,
            type,
            ttl,
            tuple(records),
            tuple(_header(name, type, ttl, r) for r in records),
        )

    def headersFor(self, owner: bytes) -> list[dns.RRHeader]:
        """Headers for these records under another owner (wildcards)."""
        return [_header(owner, self.type, self.ttl, r) for r in self.records]


@define
class Zone:
    """
    One zone's data.

    @ivar origin: the apex (the SOA's owner).
    @ivar source: the file it was loaded from (for messages).
    @ivar nodes: owner name to type to RRSet.
    @ivar names: every name that exists, with the empty non-terminals
        between the apex and the owners.
    @ivar cuts: delegation points: names below the apex with NS records.
    """

    origin: bytes
    source: str
    nodes: dict[bytes, dict[int, RRSet]]
    names: frozenset[bytes]
    cuts: frozenset[bytes]
    #: A secondary's copy past its SOA's expire time: answered SERVFAIL.
    expired: bool = False

    @property
    def soa(self) -> RRSet:
        """The zone's SOA RRset."""
        return self.nodes[self.origin][dns.SOA]

    @property
    def serial(self) -> int:
        """The SOA serial."""
        serial: int = self.soa.records[0].serial
        return serial

    def negativeSOA(self) -> dns.RRHeader:
        """
        The SOA for a negative answer: its TTL the lesser of the SOA's TTL
        and its MINIMUM field (RFC 2308 section 3).
        """
        soa = self.soa
        return _header(
            self.origin, dns.SOA, min(soa.ttl, soa.records[0].minimum), soa.records[0]
        )

    def cutAbove(self, name: bytes) -> bytes | None:
        """
        The highest delegation point at or above C{name} in this zone.
        """
        if not self.cuts:
            return None
        found = None
        for up in ancestors(name):
            if up == self.origin:
                break
            if up in self.cuts:
                found = up
        return found

    def records(self) -> list[dns.RRHeader]:
        """
        Every record for a zone transfer, SOA first and last (RFC 5936
        section 2.2).
        """
        soa = list(self.soa.headers)
        out = list(soa)
        for name in sorted(self.nodes, key=lambda n: n.split(b".")[::-1]):
            for type, rrset in sorted(self.nodes[name].items()):
                if name == self.origin and type == dns.SOA:
                    continue
                out.extend(rrset.headers)
        return out + soa

    @classmethod
    def build(cls, records: Sequence[ZoneRecord], source: str) -> Zone:
        """
        Check records as one zone and index them.

        @raise ZoneError: no or several SOA records, no NS at the apex, a
            record outside the zone, a CNAME beside other data.
        """
        soas = [r for r in records if r.type == dns.SOA]
        if not soas:
            raise ZoneError(source, 0, "no SOA record")
        if len(soas) > 1:
            raise ZoneError(soas[1].filename, soas[1].line, "a second SOA record")
        origin = soas[0].name
        grouped: dict[bytes, dict[int, list[ZoneRecord]]] = {}
        for record in records:
            if not isSubdomain(record.name, origin):
                raise ZoneError(
                    record.filename,
                    record.line,
                    f"{display(record.name)} is outside the zone {display(origin)}",
                )
            byType = grouped.setdefault(record.name, {})
            if record.type == dns.CNAME and byType and dns.CNAME not in byType:
                raise ZoneError(
                    record.filename,
                    record.line,
                    f"CNAME and other data at {display(record.name)}",
                )
            if record.type != dns.CNAME and dns.CNAME in byType:
                raise ZoneError(
                    record.filename,
                    record.line,
                    f"{typeName(record.type)} beside a CNAME at {display(record.name)}",
                )
            same = byType.setdefault(record.type, [])
            if record.type == dns.CNAME and same:
                raise ZoneError(
                    record.filename,
                    record.line,
                    f"a second CNAME at {display(record.name)}",
                )
            if all(r.payload != record.payload for r in same):
                same.append(record)
        if dns.NS not in grouped[origin]:
            raise ZoneError(
                soas[0].filename, soas[0].line, "no NS records at the zone apex"
            )
        nodes: dict[bytes, dict[int, RRSet]] = {}
        names: set[bytes] = set()
        for name, byType in grouped.items():
            nodes[name] = {
                type: RRSet.of(name, type, same[0].ttl, [r.payload for r in same])
                for type, same in byType.items()
            }
            up: bytes | None = name
            while up is not None and up not in names:
                names.add(up)
                if up == origin:
                    break
                up = parent(up)
        cuts = frozenset(
            name
            for name, byType in nodes.items()
            if name != origin and dns.NS in byType
        )
        return cls(origin, source, nodes, frozenset(names), cuts)


def zoneFromText(
    text: str, filename: str, origin: bytes = b"", directory: str | None = None
) -> Zone:
    """
    Parse and check one zone from its text.

    @raise ZoneError: naming file, line and problem.
    """
    return Zone.build(parseZone(text, filename, origin, directory=directory), filename)


def loadZone(path: str, origin: bytes | None = None) -> Zone:
    """
    Load the zone file at C{path}; relative names before any C{$ORIGIN}
    are relative to C{origin}, by default the file name without C{.zone}.

    @raise ZoneError: naming file, line and problem.
    """
    if origin is None:
        base = path.rsplit("/", 1)[-1]
        if base.endswith(".zone"):
            base = base[: -len(".zone")]
        origin = base.rstrip(".").lower().encode("utf-8", "replace")
    return zoneFromText(readFile(path), path, origin)


class Authority:
    """
    Answers for every zone we serve.
    """

    def __init__(self, zones: Iterable[Zone] = ()) -> None:
        self._zones: dict[bytes, Zone] = {zone.origin: zone for zone in zones}
        self._rotation: dict[tuple[bytes, int], int] = {}
        self._listeners: list[Callable[[frozenset[bytes]], None]] = []
        #: When set, answers note C{(key, size, turn)} of every rotated
        #: RRset in it (for the wire-level answer cache).
        self.trail: list[tuple[tuple[bytes, int], int, int]] | None = None

    def watch(self, callback: Callable[[], None]) -> None:
        """
        Call C{callback} (no arguments) after any change of zone data
        (everything goes through L{apply}): whatever keeps answers derived
        from every zone (the wire-level answer cache) drops them there.
        """
        self.addListener(lambda origins: callback())

    def turn(self, key: tuple[bytes, int]) -> int:
        """How many times the RRset C{key} has been rotated."""
        return self._rotation.get(key, 0)

    def advance(self, key: tuple[bytes, int]) -> None:
        """Rotate the RRset C{key} once, as an answer holding it does."""
        self._rotation[key] = self._rotation.get(key, 0) + 1

    @property
    def zones(self) -> dict[bytes, Zone]:
        """Origin to zone."""
        return dict(self._zones)

    def get(self, origin: bytes) -> Zone | None:
        """The zone whose apex is C{origin}, if we serve it."""
        return self._zones.get(origin)

    def addListener(self, listener: Callable[[frozenset[bytes]], None]) -> None:
        """
        Call C{listener} with the origins changed, after every change made
        through L{apply} (reloads, dynamic updates, zone transfers in,
        secondary zones expiring).
        """
        self._listeners.append(listener)

    def removeListener(self, listener: Callable[[frozenset[bytes]], None]) -> None:
        """Stop calling C{listener}."""
        self._listeners.remove(listener)

    def apply(
        self,
        zones: Iterable[Zone] = (),
        removed: Iterable[bytes] = (),
        everything: bool = False,
    ) -> None:
        """
        The one way zone data changes: serve C{zones} (replacing those of
        the same origins), stop serving C{removed}, or with C{everything}
        serve exactly C{zones}; then tell the listeners which origins
        changed.
        """
        new = {zone.origin: zone for zone in zones}
        before = self._zones
        if everything:
            after = new
        else:
            after = dict(before)
            for origin in removed:
                after.pop(origin, None)
            after.update(new)
        changed = frozenset(
            origin
            for origin in set(before) | set(after)
            if before.get(origin) is not after.get(origin)
        )
        self._zones = after
        if everything:
            self._rotation.clear()
        for listener in list(self._listeners):
            listener(changed)

    def replace(self, zones: Iterable[Zone]) -> None:
        """Serve exactly these zones from now on."""
        self.apply(zones, everything=True)

    def zoneFor(self, name: bytes) -> Zone | None:
        """The most specific zone holding C{name}, if we serve one."""
        zones = self._zones
        if not zones:
            return None
        for up in ancestors(name):
            zone = zones.get(up)
            if zone is not None:
                return zone
        return None

    def answer(self, name: bytes, type: int) -> Answer | None:
        """
        Answer a question about C{name} (folded), or C{None} if it is in
        none of our zones.
        """
        zone = self.zoneFor(name)
        if zone is None:
            return None
        if zone.expired:
            return Answer(dns.ESERVER)
        answers: list[dns.RRHeader] = []
        seen = {name}
        current = name
        for hop in range(MAX_CHAIN + 1):
            step = self._lookup(zone, current, type)
            if not step.authoritative:
                # A referral. Mid-chain, the rest is for recursion.
                if hop == 0:
                    return step
                return Answer(dns.OK, answers, authoritative=True, pending=current)
            answers.extend(step.answers)
            target = step.pending
            if target is None:
                return Answer(
                    step.rcode,
                    answers,
                    step.authority,
                    self._additional(step.answers),
                    authoritative=True,
                )
            if target in seen or hop == MAX_CHAIN:
                return Answer(dns.OK, answers, authoritative=True)
            seen.add(target)
            next = self.zoneFor(target)
            if next is None:
                return Answer(dns.OK, answers, authoritative=True, pending=target)
            zone, current = next, target
        raise AssertionError("unreachable")  # pragma: no cover

    def _lookup(self, zone: Zone, name: bytes, type: int) -> Answer:
        """
        One step: the data for C{name} alone; a CNAME ends the step with
        its target in C{pending}.
        """
        cut = zone.cutAbove(name)
        if cut is not None:
            return self._referral(zone, cut)
        node = zone.nodes.get(name)
        wildcard = False
        if node is None:
            if name in zone.names:
                return Answer(dns.OK, (), [zone.negativeSOA()], authoritative=True)
            encloser = name
            while encloser not in zone.names:
                encloser = parent(encloser)  # type: ignore[assignment]
            node = zone.nodes.get(b"*." + encloser if encloser else b"*")
            if node is None:
                return Answer(dns.ENAME, (), [zone.negativeSOA()], authoritative=True)
            wildcard = True
        if type == dns.ALL_RECORDS:
            rrsets = list(node.values())
        elif type in node:
            rrsets = [node[type]]
        elif dns.CNAME in node:
            cname = node[dns.CNAME]
            headers = cname.headersFor(name) if wildcard else list(cname.headers)
            target = cname.records[0].name.name.lower()
            return Answer(dns.OK, headers, authoritative=True, pending=target)
        else:
            return Answer(dns.OK, (), [zone.negativeSOA()], authoritative=True)
        answers: list[dns.RRHeader] = []
        for rrset in rrsets:
            answers.extend(rrset.headersFor(name) if wildcard else self._rotate(rrset))
        return Answer(dns.OK, answers, authoritative=True)

    def _rotate(self, rrset: RRSet) -> Sequence[dns.RRHeader]:
        headers = rrset.headers
        if len(headers) < 2:
            return headers
        key = (rrset.name, rrset.type)
        turn = self._rotation.get(key, 0)
        self._rotation[key] = turn + 1
        if self.trail is not None:
            self.trail.append((key, len(headers), turn))
        start = turn % len(headers)
        return headers[start:] + headers[:start]

    def _referral(self, zone: Zone, cut: bytes) -> Answer:
        ns = zone.nodes[cut][dns.NS]
        glue: list[dns.RRHeader] = []
        for record in ns.records:
            target = record.name.name.lower()
            if isSubdomain(target, zone.origin):
                node = zone.nodes.get(target, {})
                for type in (dns.A, dns.AAAA):
                    if type in node:
                        glue.extend(
                            dns.RRHeader(target, type, dns.IN, node[type].ttl, r)
                            for r in node[type].records
                        )
        authority = [dns.RRHeader(cut, dns.NS, dns.IN, ns.ttl, r) for r in ns.records]
        return Answer(dns.OK, (), authority, glue, authoritative=False)

    def _additional(self, answers: Sequence[dns.RRHeader]) -> list[dns.RRHeader]:
        """
        Addresses we hold for the targets of MX, NS and SRV answers.
        """
        extra: list[dns.RRHeader] = []
        seen: set[bytes] = set()
        for record in answers:
            if record.type == dns.MX or record.type == dns.NS:
                target = record.payload.name.name.lower()  # type: ignore[union-attr]
            elif record.type == dns.SRV:
                target = record.payload.target.name.lower()  # type: ignore[union-attr]
            else:
                continue
            if target in seen:
                continue
            seen.add(target)
            zone = self.zoneFor(target)
            if zone is None:
                continue
            node = zone.nodes.get(target)
            if node is None:
                continue
            for type in (dns.A, dns.AAAA):
                if type in node:
                    extra.extend(node[type].headers)
        return extra

    def transfer(self, origin: bytes) -> list[dns.RRHeader] | None:
        """
        The records of the zone C{origin} for AXFR, or C{None} if we do
        not serve it.
        """
        zone = self._zones.get(origin)
        return None if zone is None else zone.records()
