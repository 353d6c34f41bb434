"""
Dynamic update (RFC 2136): prerequisites, the update section applied to
a zone, and the differences between two versions of a zone.

A change to a zone is a L{Diff}, in the shape IXFR sends (RFC 1995
section 4): the old SOA and the records deleted, the new SOA and the
records added. L{prepare} turns an UPDATE message into one (or an
RCODE); L{applyDiff} makes the next L{Zone} from a zone and a diff, for
updates, for the journal's roll-forward and for incremental transfers
in alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from io import BytesIO
from typing import Any

from attrs import frozen
from twisted.names import dns

from appnet.dns.errors import ZoneError
from appnet.dns.names import isSubdomain, normalize, parent
from appnet.dns.zones import RRSet, Zone

__all__ = [
    "NOTZONE",
    "NXRRSET",
    "YXDOMAIN",
    "YXRRSET",
    "Diff",
    "applyDiff",
    "applyDiffs",
    "nextSerial",
    "prepare",
    "rdataKey",
    "serialGreater",
]

YXDOMAIN, YXRRSET, NXRRSET, NOTZONE = 6, 7, 8, 10
_NONE = 254
_META = (dns.AXFR, dns.IXFR, dns.MAILA, dns.MAILB, dns.ALL_RECORDS, dns.OPT, dns.TSIG)


def serialGreater(a: int, b: int) -> bool:
    """Is serial C{a} greater than C{b} (RFC 1982 section 3.2)?"""
    return (a > b and a - b < 2**31) or (a < b and b - a > 2**31)


def nextSerial(serial: int) -> int:
    """The serial after C{serial} (RFC 1982 addition; 0 is skipped)."""
    return (serial + 1) % 2**32 or 1


def rdataKey(payload: Any) -> Any:
    """
    What makes two records' data the same: their fields without the TTL,
    names compared without case.
    """
    attributes = getattr(payload, "compareAttributes", None)
    if attributes is None:
        out = BytesIO()
        payload.encode(out, None)
        return (type(payload).__name__, out.getvalue())
    key: list[Any] = [type(payload).__name__]
    for attribute in attributes:
        if attribute == "ttl":
            continue
        value = getattr(payload, attribute)
        if isinstance(value, dns.Name):
            value = value.name.lower().rstrip(b".")
        elif isinstance(value, list):
            value = tuple(value)
        key.append(value)
    return tuple(key)


def _rr(name: bytes, type: int, ttl: int, payload: Any) -> dns.RRHeader:
    return dns.RRHeader(name, type, dns.IN, ttl, payload, auth=True)


@frozen
class Diff:
    """
    One change of a zone: from C{oldSOA}, delete C{deleted}, then add
    C{added}, giving C{newSOA} (neither list holds the SOA).
    """

    oldSOA: dns.RRHeader
    deleted: tuple[dns.RRHeader, ...]
    newSOA: dns.RRHeader
    added: tuple[dns.RRHeader, ...]

    @property
    def oldSerial(self) -> int:
        """The serial before."""
        serial: int = self.oldSOA.payload.serial  # type: ignore[union-attr]
        return serial

    @property
    def newSerial(self) -> int:
        """The serial after."""
        serial: int = self.newSOA.payload.serial  # type: ignore[union-attr]
        return serial

    def records(self) -> list[dns.RRHeader]:
        """The diff as an IXFR sequence: old SOA, deletions, new SOA, additions."""
        return [self.oldSOA, *self.deleted, self.newSOA, *self.added]


def _index(origin: bytes, nodes: dict[bytes, dict[int, RRSet]]) -> Zone:
    names: set[bytes] = set()
    for name in nodes:
        up: bytes | None = name
        while up is not None and up not in names:
            names.add(up)
            if up == origin:
                break
            up = parent(up)
    cuts = frozenset(
        name for name, byType in nodes.items() if name != origin and dns.NS in byType
    )
    return Zone(origin, "", nodes, frozenset(names), cuts)


class _Editor:
    """The zone's RRsets, copied where they change."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.origin = zone.origin
        self.sets: dict[tuple[bytes, int], tuple[int, list[Any]]] = {}
        self.deleted: list[dns.RRHeader] = []
        self.added: list[dns.RRHeader] = []

    def rrset(self, name: bytes, type: int) -> tuple[int, list[Any]]:
        key = (name, type)
        if key not in self.sets:
            found = self.zone.nodes.get(name, {}).get(type)
            self.sets[key] = (
                (found.ttl, list(found.records)) if found is not None else (0, [])
            )
        return self.sets[key]

    def types(self, name: bytes) -> set[int]:
        present = set(self.zone.nodes.get(name, {}))
        for (n, t), (_, records) in self.sets.items():
            if n == name:
                if records:
                    present.add(t)
                else:
                    present.discard(t)
        return present

    def add(self, name: bytes, type: int, ttl: int, payload: Any) -> bool:
        oldTTL, records = self.rrset(name, type)
        key = rdataKey(payload)
        for existing in records:
            if rdataKey(existing) == key:
                if oldTTL == ttl:
                    return False
                # A new TTL for the set: every record is deleted and
                # added again in the diff, with the new TTL.
                for record in records:
                    self.deleted.append(_rr(name, type, oldTTL, record))
                    self.added.append(_rr(name, type, ttl, record))
                self.sets[(name, type)] = (ttl, records)
                return True
        if records and oldTTL != ttl:
            for record in records:
                self.deleted.append(_rr(name, type, oldTTL, record))
                self.added.append(_rr(name, type, ttl, record))
        records.append(payload)
        self.added.append(_rr(name, type, ttl, payload))
        self.sets[(name, type)] = (ttl, records)
        return True

    def delete(self, name: bytes, type: int, payload: Any = None) -> bool:
        ttl, records = self.rrset(name, type)
        if payload is None:
            gone, kept = records, []
        else:
            key = rdataKey(payload)
            gone = [r for r in records if rdataKey(r) == key]
            kept = [r for r in records if rdataKey(r) != key]
        if not gone:
            return False
        for record in gone:
            self.deleted.append(_rr(name, type, ttl, record))
        self.sets[(name, type)] = (ttl, kept)
        return True

    def zoneWith(self, soa: tuple[int, Any]) -> Zone:
        nodes = dict(self.zone.nodes)
        changed: dict[bytes, dict[int, RRSet]] = {}
        self.sets[(self.origin, dns.SOA)] = (soa[0], [soa[1]])
        for (name, type), (ttl, records) in self.sets.items():
            if name not in changed:
                changed[name] = dict(nodes.get(name, {}))
            if records:
                changed[name][type] = RRSet.of(name, type, ttl, records)
            else:
                changed[name].pop(type, None)
        for name, byType in changed.items():
            if byType:
                nodes[name] = byType
            else:
                nodes.pop(name, None)
        old = self.zone
        if any(not byType and name in old.nodes for name, byType in changed.items()):
            # A name went away: which empty non-terminals remain is found
            # by indexing again.
            zone = _index(self.origin, nodes)
        else:
            added: set[bytes] = set()
            for name in changed:
                up: bytes | None = name
                while up is not None and up not in old.names and up not in added:
                    added.add(up)
                    if up == self.origin:
                        break
                    up = parent(up)
            cuts = set(old.cuts)
            for name, byType in changed.items():
                if name != self.origin and dns.NS in byType:
                    cuts.add(name)
                else:
                    cuts.discard(name)
            names = old.names | added if added else old.names
            zone = Zone(self.origin, "", nodes, names, frozenset(cuts))
        zone.source = old.source
        return zone


def applyDiff(zone: Zone, diff: Diff) -> Zone:
    """
    The zone after C{diff}, which must apply exactly: its old serial is
    the zone's, each deleted record exists, no added record does.

    @raise ZoneError: if it does not.
    """
    return applyDiffs(zone, [diff])


def applyDiffs(zone: Zone, diffs: Sequence[Diff]) -> Zone:
    """
    The zone after a chain of diffs (see L{applyDiff}), built once: an
    IXFR of many changes, a journal's roll-forward.

    @raise ZoneError: if one does not apply.
    """
    if not diffs:
        return zone
    editor = _Editor(zone)
    serial = zone.serial
    for diff in diffs:
        if diff.oldSerial != serial:
            raise ZoneError(
                zone.source,
                0,
                f"a change from serial {diff.oldSerial} does not apply to serial "
                f"{serial}",
            )
        for record in diff.deleted:
            name = record.name.name.lower()
            if not editor.delete(name, record.type, record.payload):
                raise ZoneError(
                    zone.source,
                    0,
                    f"serial {diff.newSerial} deletes a record the zone does not hold",
                )
        for record in diff.added:
            editor.add(
                record.name.name.lower(), record.type, record.ttl, record.payload
            )
        serial = diff.newSerial
    last = diffs[-1].newSOA
    return editor.zoneWith((last.ttl, last.payload))


def _diff(editor: _Editor, zone: Zone, soaTTL: int, soa: Any) -> Diff:
    old = zone.soa
    return Diff(
        _rr(zone.origin, dns.SOA, old.ttl, old.records[0]),
        tuple(r for r in editor.deleted if r.type != dns.SOA),
        _rr(zone.origin, dns.SOA, soaTTL, soa),
        tuple(r for r in editor.added if r.type != dns.SOA),
    )


def _checkPrerequisites(zone: Zone, records: Sequence[dns.RRHeader]) -> int:
    """RFC 2136 section 3.2: an RCODE, OK when every prerequisite holds."""
    values: dict[tuple[bytes, int], list[Any]] = {}
    for record in records:
        name = normalize(record.name.name)
        empty = not record.rdlength
        if record.ttl != 0:
            return dns.EFORMAT
        if not isSubdomain(name, zone.origin):
            return NOTZONE
        node = zone.nodes.get(name, {})
        if record.cls == dns.ANY:
            if not empty:
                return dns.EFORMAT
            if record.type == dns.ALL_RECORDS:
                if not node:
                    return dns.ENAME
            elif record.type not in node:
                return NXRRSET
        elif record.cls == _NONE:
            if not empty:
                return dns.EFORMAT
            if record.type == dns.ALL_RECORDS:
                if node:
                    return YXDOMAIN
            elif record.type in node:
                return YXRRSET
        elif record.cls == dns.IN:
            if record.type in _META:
                return dns.EFORMAT
            values.setdefault((name, record.type), []).append(record.payload)
        else:
            return dns.EFORMAT
    for (name, type), payloads in values.items():
        found = zone.nodes.get(name, {}).get(type)
        have = sorted(repr(rdataKey(r)) for r in (found.records if found else ()))
        want = sorted({repr(rdataKey(p)) for p in payloads})
        if have != want:
            return NXRRSET
    return dns.OK


def _prescan(zone: Zone, records: Sequence[dns.RRHeader]) -> int:
    """RFC 2136 section 3.4.1."""
    for record in records:
        name = normalize(record.name.name)
        if not isSubdomain(name, zone.origin):
            return NOTZONE
        if record.cls == dns.IN:
            if record.type in _META or record.rdlength == 0:
                return dns.EFORMAT
        elif record.cls == dns.ANY:
            if record.ttl != 0 or record.rdlength:
                return dns.EFORMAT
            if record.type in _META and record.type != dns.ALL_RECORDS:
                return dns.EFORMAT
        elif record.cls == _NONE:
            if record.ttl != 0 or record.type in _META:
                return dns.EFORMAT
        else:
            return dns.EFORMAT
    return dns.OK


def prepare(
    zone: Zone, prerequisites: Sequence[dns.RRHeader], updates: Sequence[dns.RRHeader]
) -> tuple[int, Diff | None]:
    """
    Check the prerequisites and apply the update section of an UPDATE
    to C{zone} (RFC 2136 sections 3.2 and 3.4).

    @return: the RCODE and, when the zone changes, the L{Diff}: the SOA
        serial goes up by one (RFC 1982) unless the update set a greater
        one itself.
    """
    rcode = _checkPrerequisites(zone, prerequisites)
    if rcode != dns.OK:
        return rcode, None
    rcode = _prescan(zone, updates)
    if rcode != dns.OK:
        return rcode, None
    editor = _Editor(zone)
    origin = zone.origin
    soaTTL, soa = zone.soa.ttl, zone.soa.records[0]
    soaSet = False
    for record in updates:
        name = normalize(record.name.name)
        type = record.type
        if record.cls == dns.IN:
            types = editor.types(name)
            if type == dns.CNAME and types - {dns.CNAME}:
                continue
            if type != dns.CNAME and dns.CNAME in types:
                continue
            if type == dns.SOA:
                if name != origin or not serialGreater(
                    record.payload.serial,  # type: ignore[union-attr]
                    soa.serial,
                ):
                    continue
                soaTTL, soa, soaSet = record.ttl, record.payload, True
                continue
            if type == dns.CNAME:
                editor.delete(name, dns.CNAME)
            editor.add(name, type, record.ttl, record.payload)
        elif record.cls == dns.ANY:
            if type == dns.ALL_RECORDS:
                for each in sorted(editor.types(name)):
                    if name == origin and each in (dns.SOA, dns.NS):
                        continue
                    editor.delete(name, each)
            elif name == origin and type in (dns.SOA, dns.NS):
                continue
            else:
                editor.delete(name, type)
        else:
            if type == dns.SOA:
                continue
            if name == origin and type == dns.NS:
                _, records = editor.rrset(name, dns.NS)
                key = rdataKey(record.payload)
                if [r for r in records if rdataKey(r) != key] == []:
                    continue
            editor.delete(name, type, record.payload)
    if not editor.deleted and not editor.added and not soaSet:
        return dns.OK, None
    if not soaSet:
        soa = _withSerial(soa, nextSerial(soa.serial))
    return dns.OK, _diff(editor, zone, soaTTL, soa)


def _withSerial(soa: Any, serial: int) -> dns.Record_SOA:
    return dns.Record_SOA(
        mname=soa.mname.name,
        rname=soa.rname.name,
        serial=serial,
        refresh=soa.refresh,
        retry=soa.retry,
        expire=soa.expire,
        minimum=soa.minimum,
        ttl=soa.ttl,
    )


def diffZones(old: Zone, new: Zone) -> Diff:
    """The difference between two versions of a zone (for AXFR in)."""
    deleted: list[dns.RRHeader] = []
    added: list[dns.RRHeader] = []
    for name in set(old.nodes) | set(new.nodes):
        before, after = old.nodes.get(name, {}), new.nodes.get(name, {})
        for type in set(before) | set(after):
            if type == dns.SOA:
                continue
            a, b = before.get(type), after.get(type)
            aKeys = {rdataKey(r): r for r in a.records} if a else {}
            bKeys = {rdataKey(r): r for r in b.records} if b else {}
            sameTTL = a is not None and b is not None and a.ttl == b.ttl
            for key, record in aKeys.items():
                if key not in bKeys or not sameTTL:
                    deleted.append(_rr(name, type, a.ttl, record))  # type: ignore[union-attr]
            for key, record in bKeys.items():
                if key not in aKeys or not sameTTL:
                    added.append(_rr(name, type, b.ttl, record))  # type: ignore[union-attr]
    return Diff(
        _rr(old.origin, dns.SOA, old.soa.ttl, old.soa.records[0]),
        tuple(deleted),
        _rr(new.origin, dns.SOA, new.soa.ttl, new.soa.records[0]),
        tuple(added),
    )


def zoneFromRecords(records: Iterable[dns.RRHeader], source: str) -> Zone:
    """
    A zone from transferred records (the SOA once).

    @raise ZoneError: if they are not a zone.
    """
    from appnet.dns.zonefile import ZoneRecord

    return Zone.build(
        [
            ZoneRecord(r.name.name.lower(), r.type, r.ttl, r.payload, source, 0)
            for r in records
        ],
        source,
    )
