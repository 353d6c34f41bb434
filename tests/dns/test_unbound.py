"""
Interop: appnet's DNS client and C{appnet dig} against a real Unbound
(Debian package unbound), serving a static local zone on 127.0.0.1.

Unbound is configured to answer only for C{example.test.} and to refuse
everything else (C{local-zone: "." refuse}), so nothing a test asks can
send it past loopback. It truncates a UDP answer that does not fit (512
bytes without EDNS, 1232 with), local data included, which is what the
TCP fallback tests rely on.
"""

from __future__ import annotations

import os
import re

from twisted.internet import reactor
from twisted.names import dns
from twisted.trial.unittest import TestCase

from appnet.dns.client import DNSClient
from appnet.dns.errors import NameNotFound, NoRecords, NullMX, TemporaryFailure
from tests.interop import need
from tests.peers import freePort, runProgram, startServer, waitForPort
from tests.process import Outcome, run

HOST = "127.0.0.1"

#: Ten TXT records of 200 bytes: over 2 KB, more than fits in a UDP
#: answer with or without EDNS.
BIG = [c * 200 for c in "abcdefghij"]

RECORDS = [
    "example.test. 300 IN SOA ns.example.test. hostmaster.example.test. "
    "2024010101 3600 900 604800 60",
    "example.test. 300 IN MX 30 mx3.example.test.",
    "example.test. 300 IN MX 10 mx1.example.test.",
    "example.test. 300 IN MX 20 mx2.example.test.",
    'example.test. 300 IN TXT "v=spf1 " "ip4:192.0.2.0/24 -all"',
    "www.example.test. 300 IN A 192.0.2.1",
    "www.example.test. 300 IN A 192.0.2.2",
    "www.example.test. 300 IN AAAA 2001:db8::1",
    "v6.example.test. 300 IN AAAA 2001:db8::6",
    "alias.example.test. 300 IN CNAME www.example.test.",
    "nullmx.example.test. 300 IN MX 0 .",
    *(f'big.example.test. 300 IN TXT "{text}"' for text in BIG),
]


def unboundConfig(directory: str, port: int) -> str:
    """An Unbound configuration serving C{RECORDS} on 127.0.0.1:C{port}."""
    data = "".join(f"  local-data: '{record}'\n" for record in RECORDS)
    return f"""\
server:
  interface: {HOST}@{port}
  port: {port}
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{directory}"
  pidfile: "{directory}/unbound.pid"
  use-syslog: no
  logfile: "{directory}/unbound.log"
  verbosity: 1
  num-threads: 1
  do-ip6: no
  do-not-query-localhost: yes
  access-control: 127.0.0.0/8 allow
  local-zone: "." refuse
  local-zone: "example.test." static
{data}remote-control:
  control-enable: no
"""


class UnboundTests(TestCase):
    """
    appnet's DNS client and C{appnet dig} read a real Unbound's answers.
    """

    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        unbound = need("unbound", "unbound")
        checkconf = need("unbound-checkconf", "unbound")
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.port = freePort(HOST, udp=True)
        config = os.path.join(self.directory, "unbound.conf")
        with open(config, "w") as f:
            f.write(unboundConfig(self.directory, self.port))
        checked = await runProgram([checkconf, config], self.directory)
        self.assertEqual(checked.code, 0, f"unbound-checkconf: {checked.err}")
        collector = startServer(
            self,
            [unbound, "-d", "-c", config],
            self.directory,
            [(HOST, self.port)],
        )
        await waitForPort(
            collector,
            HOST,
            self.port,
            "unbound",
            os.path.join(self.directory, "unbound.log"),
        )
        self.client = DNSClient(
            reactor,
            [(HOST, self.port)],
            timeout=2.0,
            attempts=2,
        )
        self.addCleanup(self.client.stop)

    async def test_addresses(self) -> None:
        """
        lookupAddresses gives the IPv4 addresses, then the IPv6 ones; a
        name with only AAAA gives those.
        """
        addresses = await self.client.lookupAddresses("www.example.test")
        self.assertEqual(addresses[2:], ["2001:db8::1"])
        self.assertEqual(sorted(addresses[:2]), ["192.0.2.1", "192.0.2.2"])
        self.assertEqual(
            await self.client.lookupAddresses("v6.example.test."), ["2001:db8::6"]
        )

    async def test_response(self) -> None:
        """
        query returns Unbound's whole response: authoritative for its
        local zone, over UDP, with EDNS, the question echoed.
        """
        response = await self.client.query("www.example.test", "AAAA")
        self.assertEqual(response.rcodeName, "NOERROR")
        self.assertTrue(response.authoritative)
        self.assertEqual(response.transport, "udp")
        self.assertEqual(response.server, (HOST, self.port))
        self.assertIsNotNone(response.edns)
        assert response.question is not None
        self.assertEqual(response.question.name.name, b"www.example.test")
        [record] = response.records(b"www.example.test", dns.AAAA)
        self.assertEqual(record.ttl, 300)

    async def test_mx(self) -> None:
        """
        lookupMX lists the exchangers most preferred first, whatever
        order the server sent them in; a null MX is NullMX.
        """
        exchangers = await self.client.lookupMX("example.test")
        self.assertEqual(
            [(mx.preference, mx.host) for mx in exchangers],
            [(10, "mx1.example.test"), (20, "mx2.example.test"),
             (30, "mx3.example.test")],
        )  # fmt: skip
        with self.assertRaises(NullMX):
            await self.client.lookupMX("nullmx.example.test")

    async def test_text(self) -> None:
        """
        lookupText joins a record's character-strings (RFC 7208 3.3).
        """
        self.assertEqual(
            await self.client.lookupText("example.test"),
            [b"v=spf1 ip4:192.0.2.0/24 -all"],
        )

    async def test_cname(self) -> None:
        """
        A CNAME question gets the alias's target; an A question for the
        alias gets the CNAME Unbound holds (it does not chase it inside
        a static local zone).
        """
        response = await self.client.query("alias.example.test", "CNAME")
        [record] = response.records(b"alias.example.test", dns.CNAME)
        self.assertEqual(record.payload.name.name, b"www.example.test")  # type: ignore[union-attr]
        response = await self.client.query("alias.example.test", "A")
        self.assertEqual(
            [(r.type, r.name.name) for r in response.answers],
            [(dns.CNAME, b"alias.example.test")],
        )

    async def test_nxdomainAndNodata(self) -> None:
        """
        A name Unbound does not have is NameNotFound (NXDOMAIN); a name
        it has without the asked type is NoRecords (NODATA), for MX, TXT
        and addresses alike.
        """
        with self.assertRaises(NameNotFound):
            await self.client.lookupAddresses("nothere.example.test")
        with self.assertRaises(NameNotFound):
            await self.client.lookupMX("nothere.example.test")
        with self.assertRaises(NoRecords):
            await self.client.lookupMX("www.example.test")
        with self.assertRaises(NoRecords):
            await self.client.lookupText("www.example.test")
        with self.assertRaises(NoRecords):
            await self.client.lookupAddresses("example.test")
        response = await self.client.query("www.example.test", "MX")
        self.assertEqual((response.rcodeName, response.answers), ("NOERROR", ()))

    async def test_refused(self) -> None:
        """
        A name outside the zone is refused by this Unbound: a
        TemporaryFailure naming the REFUSED answer.
        """
        with self.assertRaises(TemporaryFailure) as caught:
            await self.client.lookupAddresses("example.com")
        self.assertIn("REFUSED", str(caught.exception))

    async def test_tcpFallback(self) -> None:
        """
        An answer too big for UDP comes back truncated from Unbound; the
        client asks again over TCP and gets every record, with EDNS
        (1232 bytes) and without (512).
        """
        for edns in (True, False):
            response = await self.client.query("big.example.test", "TXT", edns=edns)
            self.assertEqual(response.transport, "tcp")
            self.assertFalse(response.truncated)
            texts = sorted(b"".join(r.payload.data) for r in response.answers)  # type: ignore[union-attr]
            self.assertEqual(texts, [t.encode() for t in BIG])
            self.assertGreater(response.size, 2000)
        texts = await self.client.lookupText("big.example.test")
        self.assertEqual(sorted(texts), [t.encode() for t in BIG])

    async def dig(self, *args: str) -> Outcome:
        """Run C{appnet dig ARGS @unbound} as a process."""
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        return await run(
            ["-m", "appnet", "dig", *args, f"@{HOST}:{self.port}", "+time=3"],
            cwd,
            env={"APPNET_DATA": os.path.join(cwd, "data")},
        )

    async def test_dig(self) -> None:
        """
        C{appnet dig} prints Unbound's answer dig-style: header, flags,
        records; +short prints only the data; MX and AAAA by type name.
        """
        outcome = await self.dig("www.example.test", "AAAA")
        self.assertEqual(outcome.code, 0, outcome.err)
        self.assertIn(";; ->>HEADER<<- opcode: QUERY, status: NOERROR", outcome.out)
        self.assertRegex(outcome.out, r";; flags: qr aa rd ra; QUERY: 1, ANSWER: 1,")
        self.assertIn("www.example.test.\t300\tIN\tAAAA\t2001:db8::1\n", outcome.out)
        self.assertIn(f";; SERVER: {HOST}#{self.port}({HOST}) (UDP)", outcome.out)
        outcome = await self.dig("example.test", "MX", "+short")
        self.assertEqual(outcome.code, 0, outcome.err)
        self.assertEqual(
            sorted(outcome.out.splitlines()),
            ["10 mx1.example.test.", "20 mx2.example.test.", "30 mx3.example.test."],
        )

    async def test_digStatus(self) -> None:
        """
        C{appnet dig} shows NXDOMAIN, and NOERROR with no answer for
        NODATA, and exits 0 for both (as dig does: the server answered).
        """
        outcome = await self.dig("nothere.example.test")
        self.assertEqual(outcome.code, 0, outcome.err)
        self.assertIn("status: NXDOMAIN", outcome.out)
        self.assertIn("SOA\tns.example.test. hostmaster.example.test.", outcome.out)
        outcome = await self.dig("www.example.test", "MX")
        self.assertEqual(outcome.code, 0, outcome.err)
        self.assertIn("status: NOERROR", outcome.out)
        self.assertIn("ANSWER: 0,", outcome.out)

    async def test_digTruncated(self) -> None:
        """
        C{appnet dig} falls back to TCP on Unbound's truncated UDP
        answer, as dig does, and says so; +tcp asks over TCP at once.
        """
        for extra in ("+noedns", "+tcp"):
            outcome = await self.dig("big.example.test", "TXT", extra)
            self.assertEqual(outcome.code, 0, outcome.err)
            self.assertIn(f"({HOST}) (TCP)", outcome.out)
            self.assertIn("ANSWER: 10,", outcome.out)
            found = re.findall(r'TXT\t"(\w+)"', outcome.out)
            self.assertEqual(sorted(found), BIG)
