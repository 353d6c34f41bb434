"""
Integration: three appnet DNS servers on 127.0.0.2, .3 and .4 (the root,
C{edu.} and C{hamburger.edu.}) and a resolver whose hints name only the
root, all on real sockets. Linux routes all of 127.0.0.0/8 to the
loopback interface, so these addresses need no setup.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.names import dns
from twisted.trial.unittest import TestCase

from appnet.dns.client import DNSClient
from appnet.errors import ListenError
from appnet.testing import RunningDNS, startDNS
from tests.dns import hierarchy


class HierarchyTests(TestCase):
    """
    Iterative resolution through a private root.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.servers = await self.startTree()
        port = self.servers[0].address[1]
        self.clock = Clock()
        self.clock.advance(1000)
        self.resolver = await startDNS(
            self, rootHints=hierarchy.HINTS, upstreamPort=port, cacheClock=self.clock
        )
        self.client = self.resolver.client()

    async def startTree(self) -> list[RunningDNS]:
        """
        The three servers on one port number (iterative queries all go to
        C{upstream_port}); a port taken on one address means another try.
        """
        for _ in range(10):
            started: list[RunningDNS] = []
            port = 0
            try:
                for address, (origin, text) in hierarchy.ZONES.items():
                    server = await startDNS(
                        zones={origin or ".": text}, listen=f"{address}:{port}"
                    )
                    started.append(server)
                    port = server.address[1]
            except ListenError:
                for server in started:
                    await server.stop()
                continue
            for server in started:
                self.addCleanup(server.stop)
            return started
        raise AssertionError("no port free on 127.0.0.2-4")

    def seen(self) -> list[int]:
        return [len(server.queries) for server in self.servers]

    async def test_iterative(self) -> None:
        """
        www.hamburger.edu resolves by asking the root, edu and
        hamburger.edu once each, without RD; the client gets the CNAME and
        both addresses, with RA set and AA clear.
        """
        response = await self.client.query("www.hamburger.edu", "A")
        self.assertEqual(response.rcodeName, "NOERROR")
        self.assertTrue(response.recursionAvailable)
        self.assertFalse(response.authoritative)
        self.assertEqual(
            [(r.type, r.ttl) for r in response.answers],
            [(dns.CNAME, 300), (dns.A, 300), (dns.A, 300)],
        )
        self.assertEqual(
            sorted(r.payload.dottedQuad() for r in response.answers[1:]),
            ["192.0.2.1", "192.0.2.2"],
        )
        self.assertEqual(self.seen(), [1, 1, 1])
        for server in self.servers:
            self.assertFalse(server.queries[0].recursionDesired)
            self.assertEqual(server.queries[0].client[0], "127.0.0.1")

    async def test_cached(self) -> None:
        """
        The second query is answered from the cache: no packet to any
        upstream, the TTL counted down.
        """
        await self.client.query("www.hamburger.edu", "A")
        upstream = self.resolver.counter("upstream_queries")
        self.clock.advance(100)
        response = await self.client.query("www.hamburger.edu", "A")
        self.assertEqual(self.seen(), [1, 1, 1])
        self.assertEqual(self.resolver.counter("upstream_queries"), upstream)
        self.assertEqual(self.resolver.counter("cache_hits"), 1)
        self.assertEqual([r.ttl for r in response.answers], [200, 200, 200])
        hits = self.resolver.counter("cache_hits")
        misses = self.resolver.counter("cache_misses")
        self.assertEqual(
            self.resolver.status.snapshot()["dns"]["cache_hit_ratio"],
            hits / (hits + misses),
        )

    async def test_expiredFetchedAgain(self) -> None:
        """
        Once the TTL has run out the answer is fetched again, from
        hamburger.edu's server only (the delegations are still cached).
        """
        await self.client.query("www.hamburger.edu", "A")
        self.clock.advance(300)
        response = await self.client.query("www.hamburger.edu", "A")
        self.assertEqual(len(response.answers), 3)
        self.assertEqual(self.seen(), [1, 1, 2])

    async def test_mx(self) -> None:
        """MX lookups through the resolver, sorted by preference."""
        exchangers = await self.client.lookupMX("hamburger.edu")
        self.assertEqual(
            [(mx.preference, mx.host) for mx in exchangers],
            [(10, "mx1.hamburger.edu"), (20, "mx2.hamburger.edu")],
        )
        addresses = await self.client.lookupAddresses(exchangers[0].host)
        self.assertEqual(addresses, ["192.0.2.10"])

    async def test_nxdomain(self) -> None:
        """NXDOMAIN from the authority reaches the client with the SOA."""
        response = await self.client.query("nope.hamburger.edu", "A")
        self.assertEqual(response.rcodeName, "NXDOMAIN")
        self.assertEqual([r.type for r in response.authority], [dns.SOA])

    async def test_forwarding(self) -> None:
        """A forwarding resolver in front of the iterating one."""
        forwarder = await startDNS(
            self, forward=[f"{self.resolver.address[0]}:{self.resolver.address[1]}"]
        )
        client = DNSClient(self.resolver.reactor, [forwarder.address], timeout=2.0)
        response = await client.query("www.hamburger.edu", "A")
        self.assertEqual(len(response.answers), 3)
        self.assertTrue(self.resolver.queries[-1].recursionDesired)
