"""
What goes on the wire: strict decoding, EDNS(0), and encoding within a
size limit.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from io import BytesIO

from attrs import frozen
from twisted.names import dns

from appnet.dns.errors import MalformedMessage
from appnet.dns.records import recordClass

__all__ = [
    "EDNS",
    "chunkRecords",
    "Decoded",
    "decode",
    "encode",
    "newQuery",
    "responseTo",
    "MAX_TTL",
    "STANDARD_UDP_SIZE",
]

_HEADER = struct.Struct("!H2B4H")

#: The payload size every DNS client accepts over UDP (RFC 1035).
STANDARD_UDP_SIZE = 512

#: TTLs above this are read as zero (RFC 2181 section 8).
MAX_TTL = 2**31 - 1


@frozen
class EDNS:
    """
    The EDNS(0) values of an OPT pseudo-record (RFC 6891 section 6.1).

    @ivar udpSize: the sender's largest UDP payload.
    @ivar version: the EDNS version (only 0 is defined).
    @ivar dnssecOK: the DO bit (RFC 3225).
    @ivar extendedRcode: the upper 8 bits of the response code.
    @ivar options: the raw option data.
    """

    udpSize: int = 1232
    version: int = 0
    dnssecOK: bool = False
    extendedRcode: int = 0
    options: bytes = b""

    def record(self, rcode: int = 0) -> dns.RRHeader:
        """
        The OPT pseudo-record carrying these values and the upper bits of
        C{rcode}.
        """
        ttl = ((rcode >> 4) & 0xFF) << 24 | (self.version & 0xFF) << 16
        if self.dnssecOK:
            ttl |= 0x8000
        return dns.RRHeader(
            b"",
            dns.OPT,
            max(self.udpSize, STANDARD_UDP_SIZE),
            ttl,
            dns.UnknownRecord(self.options),
        )

    @classmethod
    def fromRecord(cls, record: dns.RRHeader) -> EDNS:
        """Read an OPT pseudo-record."""
        payload = record.payload
        return cls(
            udpSize=record.cls,
            version=(record.ttl >> 16) & 0xFF,
            dnssecOK=bool(record.ttl & 0x8000),
            extendedRcode=(record.ttl >> 24) & 0xFF,
            options=getattr(payload, "data", b""),
        )


@frozen
class Decoded:
    """
    A decoded message and what C{dns.Message} does not keep.

    @ivar message: the message, its additional section without OPT.
    @ivar edns: the OPT values, if the message had exactly one OPT record.
    @ivar optCount: how many OPT records it had (more than one is a
        format error).
    @ivar size: its size in bytes.
    """

    message: dns.Message
    edns: EDNS | None
    optCount: int
    size: int

    @property
    def rcode(self) -> int:
        """The full response code, with the EDNS upper bits."""
        upper = self.edns.extendedRcode if self.edns is not None else 0
        return upper << 4 | self.message.rCode


def decode(data: bytes) -> Decoded:
    """
    Decode one DNS message strictly.

    @raise MalformedMessage: if C{data} is not a complete, well-formed
        message; its C{id} is set when the header could be read.
    """
    if len(data) < _HEADER.size:
        raise MalformedMessage(None, f"{len(data)} bytes, shorter than a header")
    id, byte3, byte4, qdCount, anCount, nsCount, arCount = _HEADER.unpack_from(data)
    message = dns.Message(
        id=id,
        answer=(byte3 >> 7) & 1,
        opCode=(byte3 >> 3) & 0xF,
        auth=bool((byte3 >> 2) & 1),
        trunc=(byte3 >> 1) & 1,
        recDes=byte3 & 1,
        recAv=(byte4 >> 7) & 1,
        rCode=byte4 & 0xF,
        authenticData=(byte4 >> 5) & 1,
        checkingDisabled=(byte4 >> 4) & 1,
        maxSize=0,
    )
    stream = BytesIO(data)
    stream.seek(_HEADER.size)
    edns: EDNS | None = None
    optCount = 0
    try:
        for _ in range(qdCount):
            query = dns.Query()
            query.decode(stream)
            if len(query.name.name) > 255:
                raise ValueError("name longer than 255 bytes")
            message.queries.append(query)
        for section, count in (
            (message.answers, anCount),
            (message.authority, nsCount),
            (message.additional, arCount),
        ):
            for _ in range(count):
                record = _decodeRecord(stream, len(data), message.auth)
                if record.type == dns.OPT:
                    if section is not message.additional or record.name.name:
                        raise ValueError("OPT record outside the additional section")
                    optCount += 1
                    edns = EDNS.fromRecord(record)
                    continue
                section.append(record)
    except (EOFError, ValueError, struct.error, IndexError) as e:
        reason = str(e) or type(e).__name__
        if isinstance(e, EOFError):
            reason = "message ends inside a record"
        raise MalformedMessage(id, reason) from None
    return Decoded(message, edns if optCount == 1 else None, optCount, len(data))


def _decodeRecord(stream: BytesIO, total: int, auth: bool) -> dns.RRHeader:
    record = dns.RRHeader(auth=auth)
    record.decode(stream)
    if len(record.name.name) > 255:
        raise ValueError("name longer than 255 bytes")
    start = stream.tell()
    length = record.rdlength or 0
    if start + length > total:
        raise EOFError()
    if record.ttl > MAX_TTL:
        record.ttl = 0
    if length == 0 and record.cls != dns.IN:
        # RFC 2136 prerequisites and deletions: no data, class ANY/NONE.
        payload = dns.UnknownRecord(b"", ttl=record.ttl)
    else:
        payload = recordClass(record.type)(ttl=record.ttl)
        payload.decode(stream, length)
    if stream.tell() != start + length:
        raise ValueError("record data does not match its length")
    record.payload = payload
    return record


class _Compression(dict[bytes, int]):
    """
    Name compression table that never keeps an offset a 14-bit pointer
    cannot hold (RFC 1035 section 4.1.4).
    """

    def __setitem__(self, name: bytes, offset: int) -> None:
        if offset < 0x4000:
            super().__setitem__(name, offset)


def _pack(
    message: dns.Message,
    answers: Sequence[dns.RRHeader],
    authority: Sequence[dns.RRHeader],
    additional: Sequence[dns.RRHeader],
    rcode: int,
    trunc: int,
    queries: Sequence[dns.Query] | None = None,
) -> bytes:
    if queries is None:
        queries = message.queries
    body = BytesIO()
    table = _Compression()
    for query in queries:
        query.encode(body, table)
    for section in (answers, authority, additional):
        for record in section:
            record.encode(body, table)
    byte3 = (
        (message.answer & 1) << 7
        | (message.opCode & 0xF) << 3
        | (int(message.auth) & 1) << 2
        | (trunc & 1) << 1
        | (message.recDes & 1)
    )
    byte4 = (
        (message.recAv & 1) << 7
        | (message.authenticData & 1) << 5
        | (message.checkingDisabled & 1) << 4
        | (rcode & 0xF)
    )
    header = _HEADER.pack(
        message.id,
        byte3,
        byte4,
        len(queries),
        len(answers),
        len(authority),
        len(additional),
    )
    return header + body.getvalue()


def encode(message: dns.Message, edns: EDNS | None = None, limit: int = 65535) -> bytes:
    """
    Encode C{message}, with an OPT record for C{edns}, in at most C{limit}
    bytes.

    What does not fit is left out whole: first the additional section (TC
    is set only if that leaves a referral without its glue), then the
    answer and authority sections, with TC set so the client retries over
    TCP (RFC 2181 section 9), and last the question section (several
    long questions). The OPT record is always kept (RFC 6891
    section 7). C{message.rCode} may be an extended code (BADVERS); its
    upper bits travel in the OPT record.
    """
    rcode = message.rCode
    opt = [edns.record(rcode)] if edns is not None else []
    trunc = message.trunc
    data = _pack(
        message,
        message.answers,
        message.authority,
        list(message.additional) + opt,
        rcode,
        trunc,
    )
    if len(data) <= limit:
        return data
    referral = not message.answers and any(r.type == dns.NS for r in message.authority)
    data = _pack(message, message.answers, message.authority, opt, rcode, referral)
    if len(data) <= limit:
        return data
    data = _pack(message, (), (), opt, rcode, 1)
    if len(data) <= limit:
        return data
    # Only the question section is left, too big only when a query asked
    # several long questions (answered FORMERR): leave it out too.
    return _pack(message, (), (), opt, rcode, 1, queries=())


def newQuery(
    id: int,
    name: bytes,
    type: int,
    cls: int = dns.IN,
    recursionDesired: bool = True,
) -> dns.Message:
    """A query message asking one question."""
    message = dns.Message(id=id, recDes=int(recursionDesired), maxSize=0)
    message.queries = [dns.Query(name, type, cls)]
    return message


def responseTo(request: dns.Message) -> dns.Message:
    """
    An empty response to C{request}: same ID, opcode, question, RD and CD
    (RFC 1035 section 4.1.1, RFC 4035 section 3.1.6).
    """
    response = dns.Message(
        id=request.id,
        answer=1,
        opCode=request.opCode,
        recDes=request.recDes,
        checkingDisabled=request.checkingDisabled,
        maxSize=0,
    )
    response.queries = list(request.queries)
    return response


def chunkRecords(
    records: Sequence[dns.RRHeader], size: int
) -> list[list[dns.RRHeader]]:
    """
    Split records into groups whose encoding stays under C{size} (the
    messages of a zone transfer over TCP).
    """
    chunks: list[list[dns.RRHeader]] = []
    current: list[dns.RRHeader] = []
    used = 0
    for record in records:
        buffer = BytesIO()
        record.encode(buffer, None)
        length = len(buffer.getvalue())
        if current and used + length > size:
            chunks.append(current)
            current, used = [], 0
        current.append(record)
        used += length
    if current:
        chunks.append(current)
    return chunks
