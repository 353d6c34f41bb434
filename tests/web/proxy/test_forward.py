"""
The forward proxy with curl (C{-x}, and C{-p} for CONNECT tunnels): an
appnet static site is the origin, another stack the proxy. Off by
default, only for allowed clients, CONNECT only to allowed ports, never to
denied networks or the proxy's own listeners.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.testing import startWeb
from appnet.web.proxy.forward import ForwardPolicy, Tunnel
from appnet.web.testing import RunningWeb
from tests.web.helpers import runCommand

BODY = b"origin text\n"


class ForwardTests(TestCase):
    """curl through the forward proxy."""

    async def setUp(self) -> None:
        self.origin: RunningWeb = await startWeb(self, files={"o.txt": BODY})
        self.originPort = urlsplit(self.origin.baseURL).port or 0

    async def proxy(self, **http: Any) -> RunningWeb:
        """A stack with the forward proxy on, and these settings."""
        settings = {"forward_proxy": True, **http}
        return await startWeb(self, config={"http": settings})

    async def curl(self, *args: str) -> tuple[int, str, str]:
        """Run curl; its exit code, output and errors."""
        outcome = await runCommand(["curl", "-sS", *args])
        return outcome.code, str(outcome.out), str(outcome.err)

    async def test_absoluteForm(self) -> None:
        """
        curl -x sends absolute-form requests; the proxy fetches them through
        the cache and says so in Cache-Status.
        """
        proxy = await self.proxy()
        url = self.origin.url("/o.txt")
        code, out, err = await self.curl("-x", proxy.baseURL, url)
        self.assertEqual((code, out), (0, BODY.decode()), err)
        code, out, err = await self.curl("-x", proxy.baseURL, "-D", "-", url)
        self.assertIn("Cache-Status: appnet;", out)
        self.assertTrue(out.endswith(BODY.decode()))

    async def test_connectTunnel(self) -> None:
        """curl -p tunnels through CONNECT to an allowed port."""
        proxy = await self.proxy(forward_connect_ports=[self.originPort])
        code, out, err = await self.curl(
            "-p", "-x", proxy.baseURL, self.origin.url("/o.txt")
        )
        self.assertEqual((code, out), (0, BODY.decode()), err)

    async def test_connectPortRefused(self) -> None:
        """CONNECT to a port not in forward_connect_ports gets 403."""
        proxy = await self.proxy()
        code, out, err = await self.curl(
            "-p", "-x", proxy.baseURL, self.origin.url("/o.txt")
        )
        self.assertNotEqual(code, 0)
        self.assertIn("403", err)

    async def test_clientNotAllowed(self) -> None:
        """A client outside forward_allow gets 403: never an open proxy."""
        proxy = await self.proxy(forward_allow=["10.0.0.0/8"])
        code, out, err = await self.curl(
            "-x",
            proxy.baseURL,
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            self.origin.url("/o.txt"),
        )
        self.assertEqual(out, "403")

    async def test_deniedNetwork(self) -> None:
        """A destination in forward_deny is refused with 403."""
        proxy = await self.proxy(forward_deny=["127.0.0.0/8"])
        code, out, err = await self.curl(
            "-x",
            proxy.baseURL,
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            self.origin.url("/o.txt"),
        )
        self.assertEqual(out, "403")

    async def test_ownListener(self) -> None:
        """The proxy never connects to its own listeners (no loops)."""
        proxy = await self.proxy()
        port = urlsplit(proxy.baseURL).port
        code, out, err = await self.curl(
            "-x",
            proxy.baseURL,
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            f"http://127.0.0.1:{port}/status",
        )
        self.assertEqual(out, "403")

    async def test_offByDefault(self) -> None:
        """Without forward_proxy the origin is never contacted."""
        plain = await startWeb(self)
        code, out, err = await self.curl(
            "-x",
            plain.baseURL,
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            self.origin.url("/o.txt"),
        )
        self.assertEqual(out, "404")


class PolicyTests(SynchronousTestCase):
    """L{ForwardPolicy}: who may use the proxy and where it may connect."""

    def policy(self) -> ForwardPolicy:
        """Loopback clients; link-local denied; listening on 8080 everywhere."""
        return ForwardPolicy(
            clients=[ipaddress.ip_network("127.0.0.0/8")],
            deny=[ipaddress.ip_network("169.254.0.0/16")],
            connectPorts=frozenset({443}),
            listeners=lambda: [("0.0.0.0", 8080), ("127.0.0.1", 2525)],
        )

    def test_clients(self) -> None:
        """Only allowed networks; v4-mapped v6 is the v4 address."""
        policy = self.policy()
        self.assertTrue(policy.clientAllowed("127.0.0.1"))
        self.assertTrue(policy.clientAllowed("::ffff:127.0.0.1"))
        self.assertFalse(policy.clientAllowed("10.0.0.1"))
        self.assertFalse(policy.clientAllowed("not-an-address"))

    def test_targets(self) -> None:
        """Denied networks, own listeners, unspecified and multicast refused."""
        policy = self.policy()
        self.assertIsNone(policy.targetProblem("127.0.0.1", 80))
        self.assertIsNotNone(policy.targetProblem("169.254.169.254", 80))
        self.assertIsNotNone(policy.targetProblem("127.0.0.1", 8080))
        self.assertIsNotNone(policy.targetProblem("127.0.0.1", 2525))
        self.assertIsNone(policy.targetProblem("127.0.0.2", 2525))
        self.assertIsNotNone(policy.targetProblem("0.0.0.0", 80))
        self.assertIsNotNone(policy.targetProblem("224.0.0.1", 80))
        self.assertIsNotNone(policy.targetProblem("example.org", 80))


class _Channel:
    """Stands in for the client's HTTP channel: just its transport."""

    def __init__(self) -> None:
        self.transport = StringTransport()


class _Request:
    """Stands in for the CONNECT request: its channel and producer slot."""

    def __init__(self) -> None:
        self.channel = _Channel()
        self.producer: object = None

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer


class TunnelTests(SynchronousTestCase):
    """L{Tunnel}: bytes both ways, early bytes kept, idle tunnels closed."""

    def test_relayAndIdle(self) -> None:
        """
        Bytes the client sends before the upstream is connected are passed
        on after the 200; traffic flows both ways; after the idle timeout
        without traffic both sides are closed.
        """
        clock = Clock()
        request = _Request()
        tunnel = Tunnel(request, clock, 30.0)  # type: ignore[arg-type]
        client = request.channel.transport
        tunnel.dataReceived(b"early")
        upstream = StringTransport()
        tunnel.connected(upstream)
        self.assertEqual(client.value(), b"HTTP/1.1 200 Connection Established\r\n\r\n")
        self.assertEqual(upstream.value(), b"early")
        self.assertIs(request.producer, upstream)
        tunnel.fromUpstream(b"reply")
        self.assertTrue(client.value().endswith(b"reply"))
        clock.advance(29)
        tunnel.dataReceived(b"more")
        clock.advance(29)
        self.assertFalse(upstream.disconnecting)
        clock.advance(2)
        self.assertTrue(upstream.disconnecting)
        self.assertTrue(client.disconnecting)

    def test_pendingLimit(self) -> None:
        """Too much early data pauses reading from the client until connected."""
        request = _Request()
        tunnel = Tunnel(request, Clock(), 30.0)  # type: ignore[arg-type]
        client = request.channel.transport
        tunnel.dataReceived(b"x" * (70 * 1024))
        self.assertEqual(client.producerState, "paused")
        tunnel.connected(StringTransport())
        self.assertEqual(client.producerState, "producing")
