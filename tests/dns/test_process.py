"""
The DNS service under the real C{twistd appnet}, in a subprocess: zone
files from the data directory, a bad zone reported by file and line,
SIGHUP reloading the zones.
"""

from __future__ import annotations

import os
import re
import signal

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from appnet.dns.client import DNSClient
from tests.process import TWISTD, spawn, stop, terminate
from tests.test_tap import ephemeralArgs

ZONE = """\
$TTL 300
@    SOA ns hostmaster 1 3600 900 604800 60
     NS  ns
ns   A   192.0.2.53
www  A   {address}
"""


class TwistdTests(TestCase):
    """
    C{twistd -n appnet} serving DNS.
    """

    timeout = 60

    async def test_servesAndReloads(self) -> None:
        """
        Start-up prints a UDP and a TCP line for dns; zones in DATA/zones
        are served; a bad one is named with its line; SIGHUP reloads.
        """
        cwd = os.path.abspath(self.mktemp())
        zones = os.path.join(cwd, "data", "zones")
        os.makedirs(zones)
        with open(os.path.join(zones, "hamburger.edu.zone"), "w") as f:
            f.write(ZONE.format(address="192.0.2.1"))
        with open(os.path.join(zones, "broken.test.zone"), "w") as f:
            f.write("$TTL 300\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nwww A nonsense\n")
        collector, pid = spawn(
            ["-c", TWISTD, "-n", "--pidfile=", "appnet", *ephemeralArgs("data")], cwd
        )
        self.addCleanup(stop, collector, pid)
        await collector.waitFor(b"appnet ready")
        output = collector.out.decode()
        udp = re.search(r"dns listening on udp 127\.0\.0\.1:(\d+) \(plain\)", output)
        tcp = re.search(r"dns listening on tcp 127\.0\.0\.1:(\d+) \(plain\)", output)
        assert udp is not None and tcp is not None, output
        self.assertEqual(udp.group(1), tcp.group(1))
        self.assertIn("broken.test.zone:4: bad IPv4 address 'nonsense'", output)
        client = DNSClient(reactor, [("127.0.0.1", int(udp.group(1)))])
        response = await client.query("www.hamburger.edu")
        self.assertEqual(response.answers[0].payload.dottedQuad(), "192.0.2.1")
        with open(os.path.join(zones, "hamburger.edu.zone"), "w") as f:
            f.write(ZONE.format(address="192.0.2.2"))
        with open(os.path.join(zones, "crepes.fr.zone"), "w") as f:
            f.write(ZONE.format(address="192.0.2.3"))
        os.kill(pid, signal.SIGHUP)
        await collector.waitFor(b"serving 2 zones")
        response = await client.query("www.hamburger.edu")
        self.assertEqual(response.answers[0].payload.dottedQuad(), "192.0.2.2")
        response = await client.query("www.crepes.fr")
        self.assertEqual(response.answers[0].payload.dottedQuad(), "192.0.2.3")
        terminate(pid)
        outcome = await collector.ended
        self.assertNotIn("Traceback", outcome.out + outcome.err)
