"""
The floor under every DNS row: a bare Twisted UDP protocol that answers
each query with pre-encoded response bytes (the ID patched in), built once
per question from a zone file by twisted.names. Nothing is decided per
query; this is what the reactor alone costs.

    python bench/dns/bare.py ZONEFILE PORT
"""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.names import authority, dns


class Bare(DatagramProtocol):
    def __init__(self, answers: dict[bytes, bytes]) -> None:
        self.answers = answers

    def datagramReceived(self, data: bytes, addr: object) -> None:
        body = self.answers.get(data[2:])
        if body is not None:
            self.transport.write(data[:2] + body, addr)  # type: ignore[union-attr]


def build(path: str) -> dict[bytes, bytes]:
    """Every A/MX question of the zone, without and with RD, pre-answered."""
    zone = authority.BindAuthority(path.encode())
    answers = {}
    for name, records in zone.records.items():
        for type in {r.TYPE for r in records}:
            for rd in (0, 1):
                query = dns.Message(id=0, recDes=rd)
                query.queries = [dns.Query(name, type, dns.IN)]
                response = dns.Message(id=0, answer=1, auth=1, recDes=rd)
                response.queries = query.queries
                response.answers = [
                    dns.RRHeader(name, r.TYPE, dns.IN, r.ttl, r, auth=True)
                    for r in records
                    if r.TYPE == type
                ]
                answers[query.toStr()[2:]] = response.toStr()[2:]
    return answers


def main() -> None:
    answers = build(sys.argv[1])
    reactor.listenUDP(int(sys.argv[2]), Bare(answers), interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
