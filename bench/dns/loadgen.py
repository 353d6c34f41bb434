"""
A small DNS load generator on Twisted, for machines without dnsperf.

Keeps C{--outstanding} queries in flight over UDP for C{--seconds},
cycling through the questions of a dnsperf-style query file (C{NAME TYPE}
per line), and prints dnsperf's summary lines so bench/dns/run.py reads
either tool's output the same way::

    python bench/dns/loadgen.py -s 127.0.0.1 -p 1053 -d queries.txt -l 10
"""

from __future__ import annotations

import argparse
import itertools
import os
import struct
import sys
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.names import dns

from appnet.dns.records import typeByName
from appnet.dns.wire import encode, newQuery


class Load(DatagramProtocol):
    noisy = False

    def __init__(
        self,
        server: tuple[str, int],
        questions: list[tuple[bytes, int]],
        outstanding: int,
        seconds: float,
        clock: Any,
    ) -> None:
        self.server = server
        self.questions = itertools.cycle(questions)
        self.outstanding = outstanding
        self.seconds = seconds
        self.clock = clock
        self.pending: dict[int, float] = {}
        self.ids = itertools.cycle(range(1, 65536))
        self.answered = 0
        self.sent = 0
        self.latency = 0.0
        self.rcodes: dict[int, int] = {}
        self.done: Deferred[None] = Deferred()

    def startProtocol(self) -> None:
        self.started = self.clock.seconds()
        for _ in range(self.outstanding):
            self.send()
        self.clock.callLater(self.seconds, self.finish)

    def send(self) -> None:
        id = next(self.ids)
        while id in self.pending:
            id = next(self.ids)
        name, type = next(self.questions)
        self.pending[id] = self.clock.seconds()
        self.sent += 1
        self.transport.write(encode(newQuery(id, name, type)), self.server)  # type: ignore[union-attr]

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        id = struct.unpack("!H", data[:2])[0]
        sent = self.pending.pop(id, None)
        if sent is None:
            return
        self.answered += 1
        self.latency += self.clock.seconds() - sent
        rcode = data[3] & 0x0F
        self.rcodes[rcode] = self.rcodes.get(rcode, 0) + 1
        if not self.done.called:
            self.send()

    def finish(self) -> None:
        elapsed = self.clock.seconds() - self.started
        names = {
            dns.OK: "NOERROR",
            dns.ENAME: "NXDOMAIN",
            dns.ESERVER: "SERVFAIL",
            dns.EREFUSED: "REFUSED",
        }
        codes = ", ".join(
            f"{names.get(code, code)} {count}"
            for code, count in sorted(self.rcodes.items())
        )
        print(f"  Queries sent:         {self.sent}")
        print(f"  Queries completed:    {self.answered}")
        now = self.clock.seconds()
        lost = sum(1 for sent in self.pending.values() if now - sent > 5)
        print(f"  Queries lost:         {lost}")
        print(f"  Response codes:       {codes}")
        print(f"  Queries per second:   {self.answered / elapsed:f}")
        print(f"  Average Latency (s):  {self.latency / max(1, self.answered):f}")
        self.done.callback(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-s", default="127.0.0.1")
    parser.add_argument("-p", type=int, default=53)
    parser.add_argument("-d", required=True)
    parser.add_argument("-l", type=float, default=10)
    parser.add_argument("-q", type=int, default=100)
    args = parser.parse_args()
    questions = []
    with open(args.d) as f:
        for line in f:
            words = line.split()
            if len(words) >= 2:
                questions.append((words[0].encode(), typeByName(words[1])))

    def run(reactor: Any) -> Deferred[None]:
        load = Load((args.s, args.p), questions, args.q, args.l, reactor)
        reactor.listenUDP(0, load, interface="127.0.0.1")
        return load.done

    task.react(run)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    main()
