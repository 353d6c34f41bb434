"""
Tests for L{appnet.dns.server.DNSService} in a stack: binding UDP and TCP
on one port, zone files from the data directory, reload, SIGHUP, and the
zero-config default. Real sockets on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import globalLogPublisher
from twisted.names import dns
from twisted.trial.unittest import TestCase

from appnet.dns.cache import Trust
from appnet.dns.client import DNSClient
from appnet.dns.errors import ZoneError
from appnet.dns.server import DNSService
from appnet.errors import ListenError
from appnet.testing import startDNS, startStack

HAMBURGER = """\
$TTL 300
@    SOA ns hostmaster 1 3600 900 604800 60
     NS  ns
ns   A   192.0.2.53
www  A   192.0.2.1
"""

CREPES = """\
$ORIGIN crepes.fr.
$TTL 300
@    SOA ns hostmaster 1 3600 900 604800 60
     NS  ns
ns   A   192.0.2.80
"""


def write(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class Events:
    """Collects logged events while a test runs."""

    def __init__(self, test: TestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def texts(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events]


class BindTests(TestCase):
    """
    One address, UDP and TCP.
    """

    async def test_samePort(self) -> None:
        """Port 0 gives UDP and TCP the same port number."""
        server = await startDNS(self)
        self.assertEqual(server.address, server.tcpAddress)
        self.assertEqual(server.address[0], "127.0.0.1")

    async def test_portInUse(self) -> None:
        """
        A busy UDP port fails with a ListenError naming the service and the
        address; the TCP port bound first is released again.
        """
        blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", 0))
        port = blocker.getsockname()[1]
        with self.assertRaises(ListenError) as caught:
            await startDNS(self, listen=f"127.0.0.1:{port}")
        self.assertEqual(caught.exception.service, "dns")
        self.assertEqual(caught.exception.endpoint, f"udp 127.0.0.1:{port}")
        await _settle()
        probe = socket.socket()
        self.addCleanup(probe.close)
        probe.bind(("127.0.0.1", port))

    async def test_stackPortInUse(self) -> None:
        """In a stack, a busy DNS port fails start-up with a ListenError."""
        blocker = socket.socket()
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        with self.assertRaises(ListenError) as caught:
            await startStack(config={"dns": {"listen": f"127.0.0.1:{port}"}})
        self.assertEqual(str(caught.exception).split(":")[0], "dns")

    async def test_unreadableHints(self) -> None:
        """Root hints that cannot be read stop start-up, naming the file."""
        with self.assertRaises(ZoneError) as caught:
            await startStack(config={"dns": {"root_hints": "/nonexistent/root.hints"}})
        self.assertEqual(
            str(caught.exception),
            "/nonexistent/root.hints: cannot read: No such file or directory",
        )


async def _settle() -> None:
    """Let the reactor finish closing ports (one turn)."""
    d: Deferred[None] = Deferred()
    reactor.callLater(0, d.callback, None)  # type: ignore[attr-defined]
    await d


class StackTests(TestCase):
    """
    The DNS component of a stack.
    """

    async def startStack(self, **kw: Any) -> Any:
        self.data = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.data, "zones"))
        write(os.path.join(self.data, "zones"), "hamburger.edu.zone", HAMBURGER)
        stack = await startStack(self, dataDir=self.data, **kw)
        self.client = DNSClient(reactor, [stack.address("dns", transport="udp")])
        return stack

    async def test_addresses(self) -> None:
        """
        The stack reports a UDP and a TCP listener for dns, on one port,
        and answers for DATA/zones/*.zone (origin from the file name).
        """
        stack = await self.startStack()
        udp = stack.address("dns", transport="udp")
        self.assertEqual(udp, stack.address("dns", transport="tcp"))
        response = await self.client.query("www.hamburger.edu")
        self.assertEqual(response.answers[0].payload.dottedQuad(), "192.0.2.1")
        self.assertTrue(response.authoritative)
        counters = stack.stack.status.snapshot()["dns"]
        self.assertEqual(counters["queries"], 1)
        self.assertEqual(counters["zones"], 1)

    async def test_zeroConfigRefusesRecursion(self) -> None:
        """
        With neither forwarders nor root hints, other names are REFUSED,
        even for loopback clients, and RA is clear.
        """
        await self.startStack()
        response = await self.client.query("example.com")
        self.assertEqual(response.rcodeName, "REFUSED")
        self.assertFalse(response.recursionAvailable)

    async def test_configuredZoneFiles(self) -> None:
        """C{dns.zones} adds files; their origin comes from $ORIGIN."""
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(CREPES)
        await self.startStack(config={"dns": {"zones": [path]}})
        response = await self.client.query("ns.crepes.fr")
        self.assertEqual(response.answers[0].payload.dottedQuad(), "192.0.2.80")

    async def test_badZoneOthersServe(self) -> None:
        """
        A bad zone file is reported with file, line and problem; the other
        zones are served.
        """
        events = Events(self)
        self.data = os.path.abspath(self.mktemp())
        zones = os.path.join(self.data, "zones")
        os.makedirs(zones)
        write(zones, "hamburger.edu.zone", HAMBURGER)
        bad = write(zones, "bad.test.zone", HAMBURGER + "oops IN A 999.1.1.1\n")
        stack = await startStack(self, dataDir=self.data)
        client = DNSClient(reactor, [stack.address("dns", transport="udp")])
        response = await client.query("www.hamburger.edu")
        self.assertEqual(response.rcodeName, "NOERROR")
        response = await client.query("www.bad.test")
        self.assertEqual(response.rcodeName, "REFUSED")
        self.assertIn(
            f"dns: zone not loaded: {bad}:6: bad IPv4 address '999.1.1.1'",
            events.texts(),
        )

    async def test_reload(self) -> None:
        """
        reload() serves changed zone files and keeps the cache; a file
        that no longer loads keeps its previous version.
        """
        stack = await self.startStack()
        service = [s for s in stack.stack._background if isinstance(s, DNSService)][0]
        assert service.cache is not None
        service.cache.putRRSet(
            b"cached.example", dns.A, 300, [dns.Record_A("192.0.2.9")], Trust.ANSWER
        )
        zones = os.path.join(self.data, "zones")
        write(
            zones, "hamburger.edu.zone", HAMBURGER.replace("192.0.2.1", "192.0.2.111")
        )
        write(zones, "crepes.fr.zone", CREPES)
        result = await service.reload()
        self.assertEqual(result.loaded, ("crepes.fr.", "hamburger.edu."))
        response = await self.client.query("www.hamburger.edu")
        self.assertEqual(response.answers[0].payload.dottedQuad(), "192.0.2.111")
        self.assertEqual(len(service.cache), 1)
        write(zones, "hamburger.edu.zone", "garbage here\n")
        result = await service.reload()
        self.assertEqual(len(result.failed), 1)
        self.assertIn("hamburger.edu.zone:1", str(result.failed[0]))
        response = await self.client.query("www.hamburger.edu")
        self.assertEqual(response.answers[0].payload.dottedQuad(), "192.0.2.111")

    async def test_sighup(self) -> None:
        """
        Under the real reactor, SIGHUP reloads the zones; stopping the
        service puts the previous handler back.
        """
        before = signal.getsignal(signal.SIGHUP)
        server = await startDNS(zones={"hamburger.edu": HAMBURGER})
        try:
            reloaded: Deferred[None] = Deferred()
            server.service.reload = lambda: reloaded.callback(None)  # type: ignore[method-assign,assignment,return-value]
            os.kill(os.getpid(), signal.SIGHUP)
            await reloaded
        finally:
            await server.stop()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)
