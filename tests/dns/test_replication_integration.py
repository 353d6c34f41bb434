"""
Integration: dynamic update, transfers and NOTIFY over real sockets on
loopback: two appnet nodes (127.0.0.2 primary, 127.0.0.3 secondary), the
client APIs, and C{kill -9} of C{twistd appnet} after a NOERROR.
"""

from __future__ import annotations

import os
import re
import signal
import time

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.names import dns
from twisted.trial.unittest import TestCase

from appnet.dns import tsig
from appnet.dns.client import DNSClient, transfer, update
from appnet.dns.testing import RunningDNS, startDNS
from tests.peers import freePort
from tests.process import TWISTD, spawn, stop
from tests.test_tap import ephemeralArgs

ZONE = """\
$TTL 300
@    SOA ns hostmaster 1 3600 900 604800 60
     NS  ns
ns   A   192.0.2.53
www  A   192.0.2.1
"""

KEY = tsig.Key(b"update.key", b"hmac-sha256", b"s" * 32)


def writeKey(directory: str, key: tsig.Key = KEY) -> str:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "update.key"), "w") as f:
        f.write(tsig.formatKey(key))
    return directory


def add(name: bytes, address: str) -> dns.RRHeader:
    return dns.RRHeader(name, dns.A, dns.IN, 300, dns.Record_A(address))


async def addresses(server: tuple[str, int], name: str) -> list[str]:
    client = DNSClient(reactor, [server], timeout=2, attempts=1)
    try:
        response = await client.query(name, dns.A, recursionDesired=False)
    finally:
        await client.stop()
    if response.rcode != dns.OK:
        return [f"rcode {response.rcode}"]
    return sorted(r.payload.dottedQuad() for r in response.answers)  # type: ignore[union-attr]


class TwoNodesTests(TestCase):
    """A primary and a secondary appnet, kept in step by NOTIFY and IXFR."""

    timeout = 30

    async def test_updateReachesSecondary(self) -> None:
        """
        An UPDATE on the primary (127.0.0.2) is served by the secondary
        (127.0.0.3) within a second: NOTIFY, then IXFR signed with the
        key; the secondary's copy is on disk.
        """
        keys = writeKey(os.path.abspath(self.mktemp()))
        copies = os.path.abspath(self.mktemp())
        port = freePort("127.0.0.2", udp=True)
        secondary = await startDNS(
            self,
            listen="127.0.0.3:0",
            keyDirectory=keys,
            secondaryDirectory=copies,
            config={
                "secondary": [
                    {
                        "zone": "example.org",
                        "primaries": [f"127.0.0.2:{port}"],
                        "key": "update.key",
                    }
                ]
            },
        )
        primary = await startDNS(
            self,
            listen=f"127.0.0.2:{port}",
            zones={"example.org": ZONE},
            keyDirectory=keys,
            config={
                "update": {"example.org": ["update.key"]},
                "transfer_keys": ["update.key"],
                "notify": [f"127.0.0.3:{secondary.address[1]}"],
            },
        )
        # The primary's start-up NOTIFY brings the first copy (AXFR).
        await self.eventually(secondary, "www.example.org", ["192.0.2.1"])
        for i in range(3):
            response = await update(
                reactor,
                primary.address,
                b"example.org",
                [add(b"new.example.org", f"192.0.2.{10 + i}")],
                key=KEY,
            )
            self.assertEqual(response.rcode, dns.OK)
            started = time.monotonic()
            wanted = [f"192.0.2.{10 + j}" for j in range(i + 1)]
            await self.eventually(secondary, "new.example.org", wanted)
            self.assertLess(time.monotonic() - started, 1.0)
        with open(os.path.join(copies, "example.org.zone")) as f:
            self.assertIn("192.0.2.12", f.read())
        assert secondary.service.factory is not None
        self.assertEqual(
            secondary.service.factory.authority.get(b"example.org").serial,  # type: ignore[union-attr]
            4,
        )

    async def eventually(
        self, server: RunningDNS, name: str, wanted: list[str]
    ) -> None:
        deadline = time.monotonic() + 5
        while True:
            got = await addresses(server.address, name)
            if got == wanted or time.monotonic() > deadline:
                self.assertEqual(got, wanted)
                return
            await deferLater(reactor, 0.02, lambda: None)


class ClientTests(TestCase):
    """L{appnet.dns.client.update} and L{appnet.dns.client.transfer}."""

    async def test_updateAndTransfer(self) -> None:
        """
        An update made with the client API is seen in an AXFR and in an
        IXFR from the serial before, both signed and checked.
        """
        keys = writeKey(os.path.abspath(self.mktemp()))
        server = await startDNS(
            self,
            zones={"example.org": ZONE},
            keyDirectory=keys,
            config={
                "update": {"example.org": ["update.key"]},
                "transfer_keys": ["update.key"],
            },
        )
        response = await update(
            reactor,
            server.address,
            b"example.org",
            [add(b"a.example.org", "192.0.2.7")],
            key=KEY,
        )
        self.assertEqual(response.rcode, dns.OK)
        whole = await transfer(reactor, server.address, b"example.org", key=KEY)
        self.assertEqual(whole.kind, "AXFR")
        self.assertIn(b"a.example.org", [r.name.name for r in whole.records])
        changes = await transfer(reactor, server.address, b"example.org", 1, key=KEY)
        self.assertEqual(changes.kind, "IXFR")
        self.assertEqual([d.newSerial for d in changes.diffs], [2])
        current = await transfer(reactor, server.address, b"example.org", 2, key=KEY)
        self.assertEqual(current.kind, "UPTODATE")

    async def test_unsignedRefused(self) -> None:
        """An unsigned update through the API is REFUSED."""
        server = await startDNS(self, zones={"example.org": ZONE})
        response = await update(
            reactor,
            server.address,
            b"example.org",
            [add(b"a.example.org", "192.0.2.7")],
        )
        self.assertEqual(response.rcode, dns.EREFUSED)


class DurabilityTests(TestCase):
    """C{kill -9} after NOERROR loses nothing."""

    timeout = 60

    async def test_killAfterUpdates(self) -> None:
        """
        Updates acknowledged by C{twistd appnet} survive C{kill -9}: the
        restarted server serves them from the zone file and its journal
        (compacted on the way: the zone file rewritten every few changes).
        """
        cwd = os.path.abspath(self.mktemp())
        data = os.path.join(cwd, "data")
        os.makedirs(os.path.join(data, "zones"))
        writeKey(os.path.join(data, "keys"))
        with open(os.path.join(data, "zones", "example.org.zone"), "w") as f:
            f.write(ZONE)
        config = os.path.join(cwd, "appnet.toml")
        with open(config, "w") as f:
            f.write(
                '[dns]\nupdate = { "example.org" = ["update.key"] }\n'
                "journal_limit = 8\n"
            )
        args = ["-c", TWISTD, "-n", "--pidfile=", "appnet", "--config", config]
        args += ephemeralArgs("data")
        collector, pid = spawn(args, cwd)
        await collector.waitFor(b"appnet ready")
        port = re.search(
            r"dns listening on tcp 127\.0\.0\.1:(\d+)", collector.out.decode()
        )
        assert port is not None
        server = ("127.0.0.1", int(port.group(1)))
        for i in range(20):
            response = await update(
                reactor,
                server,
                b"example.org",
                [add(b"n.example.org", f"192.0.2.{i + 1}")],
                key=KEY,
            )
            self.assertEqual(response.rcode, dns.OK)
        os.kill(pid, signal.SIGKILL)
        await collector.ended
        collector, pid = spawn(args, cwd)
        self.addCleanup(stop, collector, pid)
        await collector.waitFor(b"appnet ready")
        port = re.search(
            r"dns listening on tcp 127\.0\.0\.1:(\d+)", collector.out.decode()
        )
        assert port is not None
        got = await addresses(("127.0.0.1", int(port.group(1))), "n.example.org")
        self.assertEqual(got, sorted(f"192.0.2.{i + 1}" for i in range(20)))
        with open(os.path.join(data, "zones", "example.org.zone")) as f:
            self.assertIn("n.example.org.", f.read())

    async def test_badKeyFile(self) -> None:
        """A key file that does not parse stops start-up, naming the file."""
        from appnet.dns.errors import ZoneError

        keys = os.path.abspath(self.mktemp())
        os.makedirs(keys)
        with open(os.path.join(keys, "x.key"), "w") as f:
            f.write('key "x" { algorithm hmac-foo; secret "YWJj"; };\n')
        with self.assertRaises(ZoneError) as caught:
            await startDNS(self, keyDirectory=keys)
        self.assertEqual(
            str(caught.exception),
            f"{keys}/x.key: key x: unknown TSIG algorithm hmac-foo",
        )
