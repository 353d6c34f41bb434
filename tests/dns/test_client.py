"""
Tests for L{appnet.dns.client} against a real appnet DNS server on
127.0.0.1 (ephemeral port), and for the L{StaticResolver} fake.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from appnet.config import loadConfig
from appnet.dns import (
    DNSClient,
    IDNSResolver,
    MailExchanger,
    NameNotFound,
    NoRecords,
    NullMX,
    TemporaryFailure,
    resolverFor,
)
from appnet.dns.client import SystemResolvers, systemResolvers
from appnet.testing import StaticResolver, startDNS, startStack
from tests.dns.fakenet import FakeNetwork, ScriptedServer, reply, rr

ZONE = """\
$TTL 300
@       SOA   ns hostmaster 1 3600 900 604800 60
        NS    ns
        MX    20 mx2
        MX    10 mx1
        MX    20 mx3
ns      A     192.0.2.53
mx1     A     192.0.2.10
mx2     A     192.0.2.20
mx3     A     192.0.2.30
www     A     192.0.2.1
www     AAAA  2001:db8::1
v6only  AAAA  2001:db8::6
alias   CNAME www
nomail  A     192.0.2.5
nullmx  MX    0 .
big     TXT   "{a}"
big     TXT   "{b}"
big     TXT   "{c}"
spf     TXT   "v=spf1 " "ip4:192.0.2.0/24 -all"
spf     TXT   "other text"
""".format(a="a" * 250, b="b" * 250, c="c" * 250)


class ClientTests(TestCase):
    """
    Lookups over the network.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.server = await startDNS(self, zones={"hamburger.edu": ZONE})
        self.client = self.server.client()

    def test_interface(self) -> None:
        """DNSClient provides IDNSResolver."""
        self.assertTrue(verifyObject(IDNSResolver, self.client))

    async def test_query(self) -> None:
        """A query returns the whole response: rcode, flags, sections."""
        response = await self.client.query("alias.hamburger.edu", "A")
        self.assertEqual(response.rcodeName, "NOERROR")
        self.assertTrue(response.authoritative)
        self.assertTrue(response.recursionDesired)
        self.assertEqual([r.type for r in response.answers], [dns.CNAME, dns.A])
        self.assertEqual(response.server, self.server.address)
        self.assertEqual(response.transport, "udp")
        self.assertIsNotNone(response.edns)
        self.assertEqual(self.server.queries[-1].name, "alias.hamburger.edu")

    async def test_tcpFallback(self) -> None:
        """A truncated UDP reply is retried over TCP and comes back whole."""
        response = await self.client.query("big.hamburger.edu", "TXT", edns=False)
        self.assertEqual(response.transport, "tcp")
        self.assertEqual(len(response.answers), 3)
        self.assertEqual(
            [q.transport for q in self.server.queries[-2:]], ["udp", "tcp"]
        )

    async def test_tcpOnly(self) -> None:
        """C{tcp=True} asks over TCP."""
        response = await self.client.query("www.hamburger.edu", tcp=True)
        self.assertEqual(response.transport, "tcp")

    async def test_lookupMX(self) -> None:
        """MX records sorted by preference, with additional addresses."""
        exchangers = await self.client.lookupMX("hamburger.edu")
        self.assertEqual(
            exchangers[0], MailExchanger(10, "mx1.hamburger.edu", ("192.0.2.10",))
        )
        self.assertEqual([mx.preference for mx in exchangers], [10, 20, 20])
        self.assertEqual(
            sorted(mx.host for mx in exchangers[1:]),
            ["mx2.hamburger.edu", "mx3.hamburger.edu"],
        )

    async def test_nullMX(self) -> None:
        """A single C{MX 0 .} is a null MX (RFC 7505)."""
        with self.assertRaises(NullMX):
            await self.client.lookupMX("nullmx.hamburger.edu")

    async def test_noMX(self) -> None:
        """A name without MX: NoRecords (use its address, RFC 5321 5.1)."""
        with self.assertRaises(NoRecords):
            await self.client.lookupMX("nomail.hamburger.edu")

    async def test_nxdomain(self) -> None:
        """A name that does not exist: NameNotFound."""
        with self.assertRaises(NameNotFound):
            await self.client.lookupMX("nowhere.hamburger.edu")
        with self.assertRaises(NameNotFound):
            await self.client.lookupAddresses("nowhere.hamburger.edu")

    async def test_lookupText(self) -> None:
        """
        TXT records come back one per record, their strings joined; a
        name without TXT records and a missing name are told apart.
        """
        texts = await self.client.lookupText("spf.hamburger.edu")
        self.assertEqual(
            sorted(texts), [b"other text", b"v=spf1 ip4:192.0.2.0/24 -all"]
        )
        with self.assertRaises(NoRecords):
            await self.client.lookupText("www.hamburger.edu")
        with self.assertRaises(NameNotFound):
            await self.client.lookupText("nowhere.hamburger.edu")

    async def test_refusedIsTemporary(self) -> None:
        """REFUSED (a name the server will not resolve) is temporary."""
        with self.assertRaises(TemporaryFailure) as caught:
            await self.client.lookupMX("example.com")
        self.assertIn("REFUSED", caught.exception.reason)

    async def test_addresses(self) -> None:
        """IPv4 then IPv6 addresses, through CNAMEs."""
        self.assertEqual(
            await self.client.lookupAddresses("alias.hamburger.edu"),
            ["192.0.2.1", "2001:db8::1"],
        )
        self.assertEqual(
            await self.client.lookupAddresses("v6only.hamburger.edu"), ["2001:db8::6"]
        )
        self.assertEqual(await self.client.lookupAddresses("192.0.2.9"), ["192.0.2.9"])
        with self.assertRaises(NoRecords):
            await self.client.lookupAddresses("hamburger.edu")

    async def test_timeout(self) -> None:
        """A server that never answers: TemporaryFailure after the timeout."""
        silent = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(silent.stopListening)
        client = DNSClient(
            reactor, [("127.0.0.1", silent.getHost().port)], timeout=0.2, attempts=1
        )
        with self.assertRaises(TemporaryFailure) as caught:
            await client.lookupMX("hamburger.edu")
        self.assertIn("no reply within 0.2s", caught.exception.reason)

    async def test_failover(self) -> None:
        """With a silent server first, the next server answers."""
        silent = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(silent.stopListening)
        client = DNSClient(
            reactor,
            [("127.0.0.1", silent.getHost().port), self.server.address],
            timeout=0.2,
        )
        exchangers = await client.lookupMX("hamburger.edu")
        self.assertEqual(exchangers[0].host, "mx1.hamburger.edu")


class ResolverForTests(TestCase):
    """
    The resolver appnet's own lookups use.
    """

    def test_configured(self) -> None:
        """C{dns.resolver} wins."""

        class Context:
            config = loadConfig(None, {"dns": {"resolver": "127.0.0.9:5300"}}, env={})
            reactor: Any = None
            addresses: Any = None

        client = resolverFor(Context())
        self.assertEqual(client.servers(), [("127.0.0.9", 5300)])  # type: ignore[operator]
        self.assertEqual(
            self.successResultOf(client.describe()),
            "the configured resolver 127.0.0.9:5300 (dns.resolver)",
        )

    async def test_ownService(self) -> None:
        """
        Without one, the stack's own DNS service answers when it recurses
        (here: forwards), zones included.
        """
        data = self.mktemp()
        import os

        os.makedirs(os.path.join(data, "zones"))
        with open(os.path.join(data, "zones", "hamburger.edu.zone"), "w") as f:
            f.write(ZONE)
        stack = await startStack(
            self, dataDir=data, config={"dns": {"forward": ["127.0.0.1:9"]}}
        )
        resolver = resolverFor(stack.stack.context)
        exchangers = await resolver.lookupMX("hamburger.edu")
        self.assertEqual(exchangers[0].host, "mx1.hamburger.edu")
        host, port = stack.address("dns", "udp")
        self.assertEqual(
            await resolver.describe(),
            f"this stack's own DNS recursion {host}:{port} (dns.forward)",
        )

    async def test_systemWithoutRecursion(self) -> None:
        """
        When the stack's DNS service does not recurse (the default) or
        does not recurse for its own address, the system's resolvers are
        used, from C{dns.resolv_conf}.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("nameserver 192.0.2.53\n")
        for dns_ in (
            {"resolv_conf": path},
            {
                "resolv_conf": path,
                "forward": ["127.0.0.1:9"],
                "allow_recursion": ["192.0.2.0/24"],
            },
            {"resolv_conf": path, "root_hints": "hints", "enabled": False},
        ):

            class Context:
                config = loadConfig(None, {"dns": dns_}, env={})
                reactor: Any = reactor
                addresses: Any = None

            client = resolverFor(Context())
            self.assertIsInstance(client.servers, SystemResolvers)
            self.assertEqual(
                await client.describe(),
                f"the system's resolvers 192.0.2.53:53 (from {path})",
            )

    async def test_noSystemResolver(self) -> None:
        """
        Without any nameserver, lookups fail at once as temporary
        failures that say where none was found.
        """
        path = self.mktemp()
        client = DNSClient(reactor, SystemResolvers(reactor, path))
        failure = await self.assertFailure(
            client.lookupMX("example.com"), TemporaryFailure
        )
        self.assertEqual(failure.reason, f"no nameserver in {path}")
        self.assertEqual(
            await client.describe(),
            f"no DNS server (no nameserver in {path}): remote mail will wait",
        )

    def test_systemResolvers(self) -> None:
        """nameserver lines of resolv.conf, port 53."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                "search example.org\nnameserver 192.0.2.53\nnameserver ::1\n"
                "nameserver bogus\n"
            )
        self.assertEqual(systemResolvers(path), [("192.0.2.53", 53), ("::1", 53)])
        self.assertEqual(systemResolvers(path + ".missing"), [])

    def test_systemResolversPort(self) -> None:
        """
        C{[ADDRESS]:PORT} (OpenBSD's syntax) gives a port; a bad one is
        skipped.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                "nameserver [127.0.0.1]:5353\nnameserver [::1]:53000\n"
                "nameserver [::1]\nnameserver [127.0.0.1]:99999\n"
                "nameserver [127.0.0.1]x\n"
            )
        self.assertEqual(
            systemResolvers(path),
            [("127.0.0.1", 5353), ("::1", 53000), ("::1", 53)],
        )


class SystemResolversTests(SynchronousTestCase):
    """
    The system's resolvers are read off the reactor, once for every
    caller at the time, and read again when old.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.path = self.mktemp()
        with open(self.path, "w") as f:
            f.write("nameserver 192.0.2.1\n")
        self.reads: list[Deferred[list[Any]]] = []
        self.functions: list[Any] = []

        def blocking(fn: Any) -> Deferred[list[Any]]:
            d: Deferred[list[Any]] = Deferred()
            self.functions.append(fn)
            self.reads.append(d)
            return d

        self.servers = SystemResolvers(self.clock, self.path, blocking)

    def finishRead(self) -> None:
        self.reads.pop(0).callback(self.functions.pop(0)())

    def test_readInThread(self) -> None:
        """
        The file is read through the blocking runner (never on the
        reactor); callers waiting meanwhile share that one read.
        """
        first, second = self.servers(), self.servers()
        self.assertNoResult(first)
        self.assertEqual(len(self.reads), 1)
        self.finishRead()
        self.assertEqual(self.successResultOf(first), [("192.0.2.1", 53)])
        self.assertEqual(self.successResultOf(second), [("192.0.2.1", 53)])

    def test_cachedThenReread(self) -> None:
        """
        Within C{maxAge} the list is answered at once; after it, the file
        is read again and changes are seen.
        """
        self.servers()
        self.finishRead()
        self.assertEqual(self.successResultOf(self.servers()), [("192.0.2.1", 53)])
        self.assertEqual(self.reads, [])
        with open(self.path, "w") as f:
            f.write("nameserver 192.0.2.2\n")
        self.clock.advance(self.servers.maxAge)
        later = self.servers()
        self.finishRead()
        self.assertEqual(self.successResultOf(later), [("192.0.2.2", 53)])

    def test_readFails(self) -> None:
        """A failed read counts as no servers, not as an error."""
        waiting = self.servers()
        self.reads.pop(0).errback(OSError("gone"))
        self.assertEqual(self.successResultOf(waiting), [])


class StaticResolverTests(SynchronousTestCase):
    """
    The fake resolver for code under test (the relay).
    """

    def setUp(self) -> None:
        self.resolver = StaticResolver(
            zones={"hamburger.edu": ZONE},
            failures={"broken.example": dns.ESERVER},
            timeouts=["slow.example"],
        )

    def test_interface(self) -> None:
        """It provides IDNSResolver."""
        self.assertTrue(verifyObject(IDNSResolver, self.resolver))

    def test_lookups(self) -> None:
        """The same lookups and errors as the real client."""
        exchangers = self.successResultOf(self.resolver.lookupMX("hamburger.edu"))
        self.assertEqual(exchangers[0].host, "mx1.hamburger.edu")
        self.failureResultOf(self.resolver.lookupMX("nullmx.hamburger.edu"), NullMX)
        self.failureResultOf(self.resolver.lookupMX("nope.hamburger.edu"), NameNotFound)
        self.failureResultOf(self.resolver.lookupMX("broken.example"), TemporaryFailure)
        self.failureResultOf(self.resolver.lookupMX("slow.example"), TemporaryFailure)
        self.failureResultOf(self.resolver.lookupMX("example.com"), TemporaryFailure)
        self.assertEqual(
            self.successResultOf(self.resolver.lookupAddresses("www.hamburger.edu")),
            ["192.0.2.1", "2001:db8::1"],
        )
        self.assertIn(("hamburger.edu", dns.MX), self.resolver.asked)
        self.assertIn(
            b"other text",
            self.successResultOf(self.resolver.lookupText("spf.hamburger.edu")),
        )
        self.failureResultOf(self.resolver.lookupText("slow.example"), TemporaryFailure)


class ShuffleTests(SynchronousTestCase):
    """
    Equal MX preferences are tried in random order (RFC 5321 section
    5.1), different preferences always in order; the upstream's own
    order does not matter. A scripted server on a fake network always
    answers with the same records in the same (unsorted) order.
    """

    SERVER = ("192.0.2.53", 53)
    ANSWER = [(20, "b1"), (10, "a1"), (30, "c1"), (20, "b2"), (10, "a2"), (20, "b3")]

    def setUp(self) -> None:
        self.network = FakeNetwork()

        def answer(request: Any, source: Any) -> list[tuple[bytes, Any]]:
            records = [
                rr("mail.example", dns.MX, dns.Record_MX(p, f"{h}.mail.example"))
                for p, h in self.ANSWER
            ]
            return [(reply(request, records), self.SERVER)]

        server = ScriptedServer(self.network, self.SERVER, answer)
        self.network.listenUDP(53, server, interface=self.SERVER[0])

    def orders(self, client: DNSClient, times: int) -> list[list[str]]:
        results = []
        for _ in range(times):
            d = client.lookupMX("mail.example")
            self.network.pump()
            exchangers = self.successResultOf(d)
            results.append([mx.host.split(".")[0] for mx in exchangers])
        return results

    def test_equalPreferencesShuffled(self) -> None:
        """
        Over 40 lookups, both orders of the two preference-10 hosts and
        all six of the three preference-20 hosts occur; every lookup
        lists preference 10, then 20, then 30.
        """
        client = DNSClient(self.network, [self.SERVER], rng=random.Random(5321))
        orders = self.orders(client, 40)
        for order in orders:
            self.assertEqual([h[0] for h in order], ["a", "a", "b", "b", "b", "c"])
        self.assertEqual({tuple(o[:2]) for o in orders}, {("a1", "a2"), ("a2", "a1")})
        self.assertEqual(len({tuple(o[2:5]) for o in orders}), 6)

    def test_randomSourceUsed(self) -> None:
        """
        The order comes from the client's random source: two clients
        seeded alike order alike, lookup after lookup.
        """
        first = DNSClient(self.network, [self.SERVER], rng=random.Random(7))
        second = DNSClient(self.network, [self.SERVER], rng=random.Random(7))
        self.assertEqual(self.orders(first, 10), self.orders(second, 10))
