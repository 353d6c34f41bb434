"""
Interop: BIND's C{dig} (Debian bind9-dnsutils) against an appnet DNS
server, for every record type, over UDP and TCP, with and without EDNS,
for truncated answers and zone transfers.
"""

from __future__ import annotations

import os
import re
import shutil

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.trial.unittest import TestCase

from appnet.testing import RunningDNS, startDNS
from tests.interop import unavailable
from tests.process import Collector, Outcome

DIG = shutil.which("dig")

ZONE = """\
$TTL 300
@          SOA    ns hostmaster 2024010101 3600 900 604800 60
           NS     ns
           MX     10 mx
           TXT    "v=spf1 -all" "with; semicolon"
           CAA    0 issue "ca.example.net"
ns         A      192.0.2.53
mx         A      192.0.2.25
www        A      192.0.2.1
www        AAAA   2001:db8::1
alias      CNAME  www
_imap._tcp SRV    0 1 143 mx
ptr        PTR    www
big        TXT    "{a}"
big        TXT    "{b}"
big        TXT    "{c}"
huge       TXT    "{a}" "{b}" "{c}"
huge       TXT    "{d}" "{e}" "{f}"
""".format(**{k: k * 200 for k in "abcdef"})

#: (name, type, what dig prints as the record data)
EXPECTED = [
    (
        "hamburger.edu",
        "SOA",
        "ns.hamburger.edu. hostmaster.hamburger.edu. 2024010101 3600 900 604800 60",
    ),
    ("hamburger.edu", "NS", "ns.hamburger.edu."),
    ("hamburger.edu", "MX", "10 mx.hamburger.edu."),
    ("hamburger.edu", "TXT", '"v=spf1 -all" "with; semicolon"'),
    ("hamburger.edu", "CAA", '0 issue "ca.example.net"'),
    ("www.hamburger.edu", "A", "192.0.2.1"),
    ("www.hamburger.edu", "AAAA", "2001:db8::1"),
    ("alias.hamburger.edu", "CNAME", "www.hamburger.edu."),
    ("_imap._tcp.hamburger.edu", "SRV", "0 1 143 mx.hamburger.edu."),
    ("ptr.hamburger.edu", "PTR", "www.hamburger.edu."),
]


async def dig(server: RunningDNS, *args: str) -> Outcome:
    """Run dig against C{server} without blocking the reactor."""
    assert DIG is not None
    host, port = server.address
    collector = Collector()
    reactor.spawnProcess(  # type: ignore[attr-defined]
        collector,
        DIG,
        [DIG, f"@{host}", "-p", str(port), "+time=5", "+tries=1", *args],
        env=dict(os.environ),
    )
    return await collector.ended


def section(output: str, name: str) -> list[list[str]]:
    """
    The records of one section of dig's output: name, TTL, class, type
    and the record data.
    """
    match = re.search(rf";; {name} SECTION:\n(.*?)(?:\n\n|\Z)", output, re.S)
    if match is None:
        return []
    return [re.split(r"\s+", line, maxsplit=4) for line in match.group(1).splitlines()]


def header(output: str) -> tuple[str, set[str]]:
    status = re.search(r"status: (\w+)", output)
    flags = re.search(r"flags: ([a-z ]*);", output)
    assert status and flags, output
    return status.group(1), set(flags.group(1).split())


class DigTests(TestCase):
    """
    dig and appnet agree.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        if DIG is None:
            unavailable("dig is not installed (Debian package bind9-dnsutils)")
        self.server = await startDNS(self, zones={"hamburger.edu": ZONE})

    async def test_everyTypeEveryWay(self) -> None:
        """
        Every record type, over UDP and TCP, with EDNS and without: a
        NOERROR, authoritative answer holding exactly the record.
        """
        cases = [
            (name, type, data, tcp, edns)
            for name, type, data in EXPECTED
            for tcp in (False, True)
            for edns in (True, False)
        ]
        runs = [
            Deferred.fromCoroutine(
                dig(
                    self.server,
                    name,
                    type,
                    "+tcp" if tcp else "+notcp",
                    "+edns=0" if edns else "+noedns",
                )
            )
            for name, type, data, tcp, edns in cases
        ]
        results = await DeferredList(runs, fireOnOneErrback=True)
        for (name, type, data, tcp, edns), (_, outcome) in zip(
            cases, results, strict=True
        ):
            context = f"{name} {type} tcp={tcp} edns={edns}\n{outcome.out}"
            self.assertEqual(outcome.code, 0, context)
            status, flags = header(outcome.out)
            self.assertEqual(status, "NOERROR", context)
            self.assertTrue({"qr", "aa"} <= flags, context)
            answer = section(outcome.out, "ANSWER")
            self.assertEqual(len(answer), 1, context)
            self.assertEqual(answer[0][0], name + ".", context)
            self.assertEqual(answer[0][-2:], [type, data], context)
            self.assertIn("(TCP)" if tcp else "(UDP)", outcome.out, context)
            self.assertEqual("; EDNS: version: 0" in outcome.out, edns, context)

    async def test_negative(self) -> None:
        """NXDOMAIN and NODATA come with the SOA in the authority section."""
        nx = await dig(self.server, "nope.hamburger.edu", "A")
        self.assertEqual(header(nx.out)[0], "NXDOMAIN")
        self.assertEqual(section(nx.out, "AUTHORITY")[0][3], "SOA")
        nodata = await dig(self.server, "www.hamburger.edu", "MX")
        self.assertEqual(header(nodata.out)[0], "NOERROR")
        self.assertEqual(section(nodata.out, "ANSWER"), [])
        self.assertEqual(section(nodata.out, "AUTHORITY")[0][3], "SOA")

    async def test_truncatedWithoutEDNS(self) -> None:
        """
        Without EDNS a 600-byte answer comes over UDP truncated (TC, no
        answers); dig retries over TCP and gets it whole.
        """
        ignored = await dig(
            self.server, "big.hamburger.edu", "TXT", "+noedns", "+ignore"
        )
        status, flags = header(ignored.out)
        self.assertIn("tc", flags)
        self.assertEqual(section(ignored.out, "ANSWER"), [])
        retried = await dig(self.server, "big.hamburger.edu", "TXT", "+noedns")
        self.assertIn("Truncated, retrying in TCP mode", retried.out)
        self.assertEqual(len(section(retried.out, "ANSWER")), 3)
        self.assertIn("(TCP)", retried.out)

    async def test_truncatedOverEDNSSize(self) -> None:
        """
        With EDNS, the limit is the client's size: a 1.2 KB answer fits in
        a 4096-byte buffer (our cap is 1232 bytes) only over TCP.
        """
        retried = await dig(self.server, "huge.hamburger.edu", "TXT", "+bufsize=4096")
        self.assertIn("Truncated, retrying in TCP mode", retried.out)
        self.assertEqual(len(section(retried.out, "ANSWER")), 2)
        fits = await dig(self.server, "big.hamburger.edu", "TXT", "+bufsize=1232")
        self.assertNotIn("Truncated", fits.out)
        self.assertIn("(UDP)", fits.out)

    async def test_norecurse(self) -> None:
        """+norec: RD clear in the reply; our zones still answered."""
        outcome = await dig(self.server, "www.hamburger.edu", "A", "+norec")
        status, flags = header(outcome.out)
        self.assertEqual(flags, {"qr", "aa"})

    async def test_transferRefused(self) -> None:
        """AXFR from an address not in allow_transfer fails."""
        outcome = await dig(self.server, "hamburger.edu", "AXFR")
        self.assertIn("Transfer failed", outcome.out)

    async def test_transfer(self) -> None:
        """AXFR to an allowed address: the zone, SOA first and last."""
        server = await startDNS(
            self,
            zones={"hamburger.edu": ZONE},
            config={"allow_transfer": ["127.0.0.1"]},
        )
        outcome = await dig(server, "hamburger.edu", "AXFR")
        types = [
            re.split(r"\s+", line, maxsplit=4)[3]
            for line in outcome.out.splitlines()
            if line and not line.startswith(";")
        ]
        self.assertEqual(types[0], "SOA")
        self.assertEqual(types[-1], "SOA")
        self.assertEqual(len(types), 18)
