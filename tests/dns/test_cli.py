"""
Tests for C{appnet dig} (L{appnet.dns.cli}).
"""

from __future__ import annotations

import os

from twisted.names import dns
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.dns.cli import DigOptions, formatResponse
from appnet.dns.client import Response
from appnet.dns.wire import EDNS
from appnet.testing import startDNS
from tests.process import run

ZONE = """\
$TTL 300
@    SOA ns hostmaster 1 3600 900 604800 60
     NS  ns
     MX  10 mx
ns   A   192.0.2.53
mx   A   192.0.2.25
www  CNAME @
@    A   192.0.2.1
"""


def parse(*args: str) -> DigOptions:
    options = DigOptions()
    options.parseOptions(list(args))
    return options


class ArgumentTests(SynchronousTestCase):
    """
    dig-style arguments in any order.
    """

    def test_defaults(self) -> None:
        """A name alone: type A, RD, UDP, EDNS."""
        options = parse("www.hamburger.edu", "@127.0.0.1:5300")
        self.assertEqual(options.name, "www.hamburger.edu")
        self.assertEqual(options.type, dns.A)
        self.assertEqual(options.server, ("127.0.0.1", 5300))
        self.assertEqual(
            (options.recurse, options.tcp, options.edns), (True, False, True)
        )

    def test_everything(self) -> None:
        """Type, server (default port 53) and + options anywhere."""
        options = parse("+tcp", "@::1", "hamburger.edu", "+norecurse", "mx", "+short")
        self.assertEqual((options.name, options.type), ("hamburger.edu", dns.MX))
        self.assertEqual(options.server, ("::1", 53))
        self.assertEqual(
            (options.tcp, options.recurse, options.short), (True, False, True)
        )

    def test_reverse(self) -> None:
        """-x ADDRESS asks for the PTR of its reverse name."""
        options = parse("-x", "192.0.2.1", "@127.0.0.1")
        self.assertEqual(options.name, "1.2.0.192.in-addr.arpa")
        self.assertEqual(options.type, dns.PTR)

    def test_bad(self) -> None:
        """Unknown types and options, or no name, are usage errors."""
        for args in (("x.org", "BOGUS"), ("x.org", "+frobnicate"), ("@127.0.0.1",)):
            self.assertRaises(usage.UsageError, parse, *args)


class FormatTests(SynchronousTestCase):
    """
    The output layout follows dig's.
    """

    def response(self) -> Response:
        return Response(
            id=4242,
            opcode=0,
            rcode=0,
            authoritative=True,
            truncated=False,
            recursionDesired=True,
            recursionAvailable=True,
            authenticData=False,
            checkingDisabled=False,
            question=dns.Query(b"hamburger.edu", dns.MX),
            answers=(
                dns.RRHeader(
                    b"hamburger.edu",
                    dns.MX,
                    dns.IN,
                    300,
                    dns.Record_MX(10, b"mx.hamburger.edu"),
                ),
            ),
            authority=(),
            additional=(
                dns.RRHeader(
                    b"mx.hamburger.edu", dns.A, dns.IN, 300, dns.Record_A("192.0.2.25")
                ),
            ),
            edns=EDNS(1232),
            server=("127.0.0.1", 5300),
            transport="udp",
            elapsed=0.0123,
            size=99,
        )

    def test_full(self) -> None:
        """Header, flags, OPT, question, sections and the footer."""
        text = formatResponse(self.response(), "hamburger.edu MX", when=0)
        self.assertEqual(
            text,
            "; <<>> appnet dig 0.1.0 <<>> hamburger.edu MX\n"
            ";; Got answer:\n"
            ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242\n"
            ";; flags: qr aa rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 2\n"
            "\n"
            ";; OPT PSEUDOSECTION:\n"
            "; EDNS: version: 0, flags:; udp: 1232\n"
            ";; QUESTION SECTION:\n"
            ";hamburger.edu.\t\tIN\tMX\n"
            "\n"
            ";; ANSWER SECTION:\n"
            "hamburger.edu.\t300\tIN\tMX\t10 mx.hamburger.edu.\n"
            "\n"
            ";; ADDITIONAL SECTION:\n"
            "mx.hamburger.edu.\t300\tIN\tA\t192.0.2.25\n"
            "\n"
            ";; Query time: 12 msec\n"
            ";; SERVER: 127.0.0.1#5300(127.0.0.1) (UDP)\n"
            ";; WHEN: Thu Jan 01 00:00:00 UTC 1970\n"
            ";; MSG SIZE  rcvd: 99\n"
            "\n",
        )

    def test_short(self) -> None:
        """+short: the answer data only."""
        self.assertEqual(
            formatResponse(self.response(), "", short=True), "10 mx.hamburger.edu.\n"
        )


class CommandTests(TestCase):
    """
    C{appnet dig} as a real process against an appnet server.
    """

    timeout = 60

    async def appnet(self, *args: str):  # type: ignore[no-untyped-def]
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        return await run(
            ["-m", "appnet", "dig", *args],
            cwd,
            env={"APPNET_DATA": os.path.join(cwd, "d")},
        )

    async def test_dig(self) -> None:
        """The answer is printed dig-style; +short and +tcp work."""
        server = await startDNS(self, zones={"hamburger.edu": ZONE})
        host, port = server.address
        outcome = await self.appnet("www.hamburger.edu", f"@{host}:{port}")
        self.assertEqual(outcome.code, 0, outcome.err)
        self.assertIn(";; ->>HEADER<<- opcode: QUERY, status: NOERROR", outcome.out)
        self.assertIn(";; flags: qr aa rd; QUERY: 1, ANSWER: 2", outcome.out)
        self.assertIn(
            "www.hamburger.edu.\t300\tIN\tCNAME\thamburger.edu.\n", outcome.out
        )
        self.assertIn(f";; SERVER: {host}#{port}({host}) (UDP)", outcome.out)
        short = await self.appnet(
            "hamburger.edu", "MX", f"@{host}:{port}", "+short", "+tcp"
        )
        self.assertEqual(short.out, "10 mx.hamburger.edu.\n")
        self.assertEqual(server.queries[-1].transport, "tcp")
        norec = await self.appnet("hamburger.edu", f"@{host}:{port}", "+norecurse")
        self.assertIn(";; flags: qr aa;", norec.out)
        self.assertFalse(server.queries[-1].recursionDesired)

    async def test_noAnswer(self) -> None:
        """No server answering: one line and status 1."""
        outcome = await self.appnet("x.org", "@127.0.0.1:9", "+time=1", "+tries=1")
        self.assertEqual(outcome.code, 1)
        self.assertTrue(
            outcome.err.startswith("appnet: no answer from 127.0.0.1:9"), outcome.err
        )

    async def test_usage(self) -> None:
        """A bad type is a usage error, status 2."""
        outcome = await self.appnet("x.org", "BOGUS", "@127.0.0.1")
        self.assertEqual(outcome.code, 2)
        self.assertIn("unknown record type 'BOGUS'", outcome.err)
