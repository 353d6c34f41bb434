"""
L{Answer}: what the authority, the cache and the recursive resolver hand
the server for one question: a response code, the three record sections
and whether the data is authoritative.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from attrs import field, frozen
from twisted.names import dns

from appnet.dns.names import normalize

__all__ = ["Answer", "followChain"]


def _records(records: Iterable[dns.RRHeader]) -> tuple[dns.RRHeader, ...]:
    if type(records) is tuple:
        return records
    return tuple(records)


@frozen
class Answer:
    """
    The outcome of looking up one question.

    @ivar rcode: C{dns.OK}, C{dns.ENAME} (NXDOMAIN) ...; a NODATA answer is
        C{dns.OK} with no answers and the zone's SOA in C{authority}.
    @ivar answers: the answer section: a CNAME chain, then the records.
    @ivar authority: the SOA of a negative answer, or the NS records of a
        referral.
    @ivar additional: addresses of names the other sections mention.
    @ivar authoritative: the AA bit: we are the authority for the name.
    @ivar pending: the end of a CNAME chain that leaves our zones and is
        still to be resolved (recursively, if the client may recurse).
    """

    rcode: int = dns.OK
    answers: tuple[dns.RRHeader, ...] = field(default=(), converter=_records)
    authority: tuple[dns.RRHeader, ...] = field(default=(), converter=_records)
    additional: tuple[dns.RRHeader, ...] = field(default=(), converter=_records)
    authoritative: bool = False
    pending: bytes | None = None

    @property
    def negative(self) -> bool:
        """
        NXDOMAIN, or NODATA: a success code and nothing in the answer.
        """
        return self.rcode == dns.ENAME or (self.rcode == dns.OK and not self.answers)


def followChain(
    name: bytes, type: int, records: Sequence[dns.RRHeader]
) -> tuple[bytes, bool]:
    """
    Follow the CNAME chain that starts at C{name} through C{records}.

    @return: the name the chain ends at, and whether C{records} hold
        records of C{type} there (for C{type} CNAME or ANY: whether
        anything was found at C{name}).
    """
    byOwner: dict[bytes, list[dns.RRHeader]] = {}
    for record in records:
        byOwner.setdefault(normalize(record.name), []).append(record)
    current = name
    seen = {name}
    while True:
        here = byOwner.get(current, [])
        if type in (dns.CNAME, dns.ALL_RECORDS):
            return current, bool(here)
        if any(r.type == type for r in here):
            return current, True
        cnames = [r for r in here if r.type == dns.CNAME]
        if not cnames:
            return current, False
        target = normalize(cnames[0].payload.name)  # type: ignore[union-attr]
        if target in seen:
            return current, False
        seen.add(target)
        current = target
