"""
Resource records: the CAA type Twisted lacks, type names, and the
presentation format C{dig} and zone files use.

Twisted's record classes (C{dns.Record_A} ...) are reused for the wire
format. C{twisted.names.dns} has no CAA (RFC 8659), so L{Record_CAA} adds
it; rather than registering it in Twisted's class-level table of record
types (a global change), L{recordClass} is what this package's decoder
consults. Any other unknown type travels as C{dns.UnknownRecord} and is
shown in the generic C{\\# length hex} form of RFC 3597.
"""

from __future__ import annotations

import socket
import struct
from typing import IO, Any

from twisted.names import dns
from zope.interface import implementer

from appnet.dns.names import display

__all__ = [
    "CAA",
    "NOTAUTH",
    "RCODES",
    "Record_CAA",
    "className",
    "quoteText",
    "rdataText",
    "recordClass",
    "recordText",
    "typeByName",
    "typeName",
]

#: Certification Authority Authorization, RFC 8659.
CAA = 257

#: Not authoritative for the zone (RFC 2136), answered to a transfer of
#: a zone we do not serve.
NOTAUTH = 9

#: Response codes by number, as dig names them.
RCODES = {
    dns.OK: "NOERROR",
    dns.EFORMAT: "FORMERR",
    dns.ESERVER: "SERVFAIL",
    dns.ENAME: "NXDOMAIN",
    dns.ENOTIMP: "NOTIMP",
    dns.EREFUSED: "REFUSED",
    NOTAUTH: "NOTAUTH",
    dns.EBADVERSION: "BADVERS",
}

_NAMES: dict[int, str] = {**dns.QUERY_TYPES, **dns.EXT_QUERIES, CAA: "CAA"}
_NAMES[dns.ALL_RECORDS] = "ANY"
_NUMBERS: dict[str, int] = {name: number for number, name in _NAMES.items()}
_NUMBERS["ALL_RECORDS"] = dns.ALL_RECORDS


@implementer(dns.IEncodableRecord)
class Record_CAA:
    """
    A CAA record (RFC 8659 section 4.1): flags, a property tag and its
    value.

    @ivar flags: the flags octet; 128 is the Issuer Critical flag.
    @ivar tag: the property tag (C{issue}, C{issuewild}, C{iodef}).
    @ivar value: the property value, uninterpreted.
    """

    TYPE = CAA
    fancybasename = "CAA"

    def __init__(
        self, flags: int = 0, tag: bytes = b"", value: bytes = b"", ttl: Any = None
    ) -> None:
        self.flags = flags
        self.tag = tag
        self.value = value
        self.ttl = dns.str2time(ttl)

    def encode(self, strio: IO[bytes], compDict: Any = None) -> None:
        strio.write(struct.pack("!BB", self.flags, len(self.tag)))
        strio.write(self.tag)
        strio.write(self.value)

    def decode(self, strio: IO[bytes], length: int | None = None) -> None:
        if length is None or length < 2:
            raise EOFError("CAA record too short")
        self.flags, tagLength = struct.unpack("!BB", dns.readPrecisely(strio, 2))
        if tagLength > length - 2:
            raise ValueError("CAA tag longer than the record")
        self.tag = dns.readPrecisely(strio, tagLength)
        self.value = dns.readPrecisely(strio, length - 2 - tagLength)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record_CAA):
            return NotImplemented
        return (self.flags, self.tag, self.value) == (
            other.flags,
            other.tag,
            other.value,
        )

    def __hash__(self) -> int:
        return hash((self.flags, self.tag, self.value))

    def __repr__(self) -> str:
        return f"<CAA {self.flags} {self.tag!r} {self.value!r} ttl={self.ttl}>"


_DECODER = dns.Message()


def recordClass(type: int) -> Any:
    """
    The class that decodes records of C{type} (C{dns.UnknownRecord} for
    types without one).
    """
    if type == CAA:
        return Record_CAA
    return _DECODER.lookupRecordType(type)


def typeName(type: int) -> str:
    """
    C{"MX"} for 15; C{"TYPE65534"} (RFC 3597) for types without a name.
    """
    return _NAMES.get(type, f"TYPE{type}")


def typeByName(text: str) -> int:
    """
    The number of a type named in text: C{"mx"}, C{"AAAA"}, C{"TYPE99"}.

    @raise ValueError: for an unknown name.
    """
    upper = text.upper()
    if upper in _NUMBERS:
        return _NUMBERS[upper]
    if upper.startswith("TYPE") and upper[4:].isdigit():
        number = int(upper[4:])
        if 0 < number < 65536:
            return number
    raise ValueError(f"unknown record type {text!r}")


def className(cls: int) -> str:
    """C{"IN"} for 1, C{"CLASS42"} for classes without a name."""
    return dns.QUERY_CLASSES.get(cls, f"CLASS{cls}")


def quoteText(data: bytes) -> str:
    """
    One character-string in presentation format: quoted, with C{"} and
    C{\\} escaped and non-printable bytes as C{\\DDD}.
    """
    out = []
    for b in data:
        if b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return '"' + "".join(out) + '"'


def _wire(payload: Any) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    payload.encode(buffer, None)
    return buffer.getvalue()


def rdataText(type: int, payload: Any) -> str:
    """
    The data of one record in presentation format, as C{dig} prints it
    (C{10 mx1.example.org.} for an MX).
    """
    if isinstance(payload, dns.Record_A):
        return payload.dottedQuad()
    if isinstance(payload, dns.Record_AAAA):
        return socket.inet_ntop(socket.AF_INET6, payload.address)
    if isinstance(payload, dns.SimpleRecord):
        name: Any = payload.name
        return display(name)
    if isinstance(payload, dns.Record_MX):
        return f"{payload.preference} {display(payload.name)}"
    if isinstance(payload, dns.Record_SOA):
        return (
            f"{display(payload.mname)} {display(payload.rname)} {payload.serial} "
            f"{payload.refresh} {payload.retry} {payload.expire} {payload.minimum}"
        )
    if isinstance(payload, dns.Record_TXT):
        return " ".join(quoteText(part) for part in payload.data)
    if isinstance(payload, dns.Record_SRV):
        return (
            f"{payload.priority} {payload.weight} {payload.port} "
            f"{display(payload.target)}"
        )
    if isinstance(payload, Record_CAA):
        return (
            f"{payload.flags} {payload.tag.decode('ascii', 'replace')} "
            f"{quoteText(payload.value)}"
        )
    data = _wire(payload)
    if not data:
        return "\\# 0"
    return f"\\# {len(data)} {data.hex().upper()}"


def recordText(record: dns.RRHeader) -> str:
    """
    One record as a line of a zone file or of C{dig}'s sections:
    C{www.example.org.<tab>300<tab>IN<tab>A<tab>192.0.2.1}.
    """
    return "\t".join(
        (
            display(record.name),
            str(record.ttl),
            className(record.cls),
            typeName(record.type),
            rdataText(record.type, record.payload),
        )
    )
