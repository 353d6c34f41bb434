"""
Tests for L{appnet.dns.recursion}: forwarding and iterative resolution,
the cache in use, coalescing and forgery resistance, on a fake UDP
network driven by a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from appnet.dns.answer import Answer
from appnet.dns.cache import Cache, Trust
from appnet.dns.errors import ResolutionFailed
from appnet.dns.exchange import Exchanger
from appnet.dns.interfaces import IRecursiveResolver
from appnet.dns.names import normalize
from appnet.dns.policy import Policy
from appnet.dns.query import DNSDatagramServer, DNSServerFactory
from appnet.dns.recursion import ForwardingResolver, IterativeResolver, parseHints
from appnet.dns.wire import Decoded, decode, encode, newQuery
from appnet.dns.zones import Authority, zoneFromText
from appnet.status import Status
from tests.dns import hierarchy
from tests.dns.fakenet import FakeNetwork, ScriptedServer, reply, rr

Address = tuple[str, int]


def serve(
    network: FakeNetwork, address: str, origin: str, text: str
) -> DNSServerFactory:
    """An authoritative appnet server for one zone on the fake network."""
    factory = DNSServerFactory(
        network,
        Authority([zoneFromText(text, origin or "root", normalize(origin))]),
        None,
        Policy([], []),
        Status(network),
    )
    network.listenUDP(53, DNSDatagramServer(factory, network), interface=address)
    return factory


def tree(network: FakeNetwork) -> None:
    for address, (origin, text) in hierarchy.ZONES.items():
        serve(network, address, origin, text)


def iterative(network: FakeNetwork, status: Status | None = None) -> IterativeResolver:
    return IterativeResolver(
        network,
        Cache(network),
        parseHints(hierarchy.HINTS, "hints"),
        53,
        exchanger=Exchanger(network),
        timeout=2.0,
        status=status or Status(network),
    )


def done(network: FakeNetwork, d: Any, seconds: float = 0.0) -> Answer:
    network.run(seconds)
    return SynchronousTestCase().successResultOf(d)  # type: ignore[no-any-return]


def sentTo(network: FakeNetwork, host: str) -> list[Decoded]:
    return [decode(data) for _, dst, data in network.sent if dst == (host, 53)]


def types(answer: Answer) -> list[tuple[bytes, int]]:
    return [(normalize(r.name), r.type) for r in answer.answers]


class IterativeTests(SynchronousTestCase):
    """
    Following referrals from the root hints down.
    """

    def setUp(self) -> None:
        self.network = FakeNetwork()
        tree(self.network)
        self.status = Status(self.network)
        self.resolver = iterative(self.network, self.status)

    def test_interface(self) -> None:
        """Both resolvers provide IRecursiveResolver."""
        self.assertTrue(verifyObject(IRecursiveResolver, self.resolver))
        forwarder = ForwardingResolver(self.network, Cache(self.network), [])
        self.assertTrue(verifyObject(IRecursiveResolver, forwarder))

    def test_resolves(self) -> None:
        """
        www.hamburger.edu is found by asking the root, then edu, then
        hamburger.edu, each without RD; the CNAME and both A records come
        back.
        """
        answer = done(self.network, self.resolver.resolve(b"www.hamburger.edu", dns.A))
        self.assertEqual(answer.rcode, dns.OK)
        self.assertEqual(
            types(answer),
            [
                (b"www.hamburger.edu", dns.CNAME),
                (b"hamburger.edu", dns.A),
                (b"hamburger.edu", dns.A),
            ],
        )
        for host in (hierarchy.ROOT_IP, hierarchy.EDU_IP, hierarchy.HAMBURGER_IP):
            [query] = sentTo(self.network, host)
            self.assertEqual(query.message.recDes, 0)
            self.assertIsNotNone(query.edns)
        self.assertEqual(self.status.counter("dns", "upstream_queries"), 3)

    def test_secondFromCache(self) -> None:
        """The second identical question sends no packet."""
        done(self.network, self.resolver.resolve(b"www.hamburger.edu", dns.A))
        sent = len(self.network.sent)
        answer = self.resolver.cached(b"www.hamburger.edu", dns.A)
        assert answer is not None
        self.assertEqual(len(answer.answers), 3)
        done(self.network, self.resolver.resolve(b"www.hamburger.edu", dns.A))
        self.assertEqual(len(self.network.sent), sent)
        self.assertEqual(self.status.counter("dns", "cache_hits"), 2)
        self.assertEqual(self.status.counter("dns", "cache_misses"), 1)

    def test_delegationCached(self) -> None:
        """
        Another name in the same zone goes straight to its server: the
        delegation was cached.
        """
        done(self.network, self.resolver.resolve(b"www.hamburger.edu", dns.A))
        done(self.network, self.resolver.resolve(b"mx1.hamburger.edu", dns.A))
        self.assertEqual(len(sentTo(self.network, hierarchy.ROOT_IP)), 1)
        self.assertEqual(len(sentTo(self.network, hierarchy.EDU_IP)), 1)
        self.assertEqual(len(sentTo(self.network, hierarchy.HAMBURGER_IP)), 2)

    def test_expiredFetchedAgain(self) -> None:
        """
        Once the records' TTL (300s) runs out they are fetched again,
        from the authoritative server only (the delegation lives longer).
        """
        done(self.network, self.resolver.resolve(b"mx1.hamburger.edu", dns.A))
        self.network.advance(299)
        cached = self.resolver.cached(b"mx1.hamburger.edu", dns.A)
        assert cached is not None
        self.assertEqual(cached.answers[0].ttl, 1)
        self.network.advance(1)
        self.assertIsNone(self.resolver.cached(b"mx1.hamburger.edu", dns.A))
        done(self.network, self.resolver.resolve(b"mx1.hamburger.edu", dns.A))
        self.assertEqual(len(sentTo(self.network, hierarchy.ROOT_IP)), 1)
        self.assertEqual(len(sentTo(self.network, hierarchy.HAMBURGER_IP)), 2)

    def test_negativeCached(self) -> None:
        """
        NXDOMAIN comes back with the SOA and is cached for the SOA's
        MINIMUM (60s), then asked again.
        """
        answer = done(
            self.network, self.resolver.resolve(b"nope.hamburger.edu", dns.MX)
        )
        self.assertEqual(answer.rcode, dns.ENAME)
        self.assertEqual([r.type for r in answer.authority], [dns.SOA])
        again = done(self.network, self.resolver.resolve(b"nope.hamburger.edu", dns.A))
        self.assertEqual(again.rcode, dns.ENAME)
        self.assertEqual(len(sentTo(self.network, hierarchy.HAMBURGER_IP)), 1)
        self.network.advance(60)
        done(self.network, self.resolver.resolve(b"nope.hamburger.edu", dns.A))
        self.assertEqual(len(sentTo(self.network, hierarchy.HAMBURGER_IP)), 2)

    def test_nodata(self) -> None:
        """NODATA: NOERROR, no answers, the SOA; cached."""
        answer = done(self.network, self.resolver.resolve(b"mx1.hamburger.edu", dns.MX))
        self.assertEqual((answer.rcode, answer.answers), (dns.OK, ()))
        self.assertEqual([r.type for r in answer.authority], [dns.SOA])
        self.assertIsNotNone(self.resolver.cached(b"mx1.hamburger.edu", dns.MX))

    def test_glueNotAnAnswer(self) -> None:
        """
        Glue learnt from a referral is used to reach servers but a client
        asking for the name gets it from the authoritative server.
        """
        done(self.network, self.resolver.resolve(b"www.hamburger.edu", dns.A))
        self.assertIsNotNone(
            self.resolver.cache.getRRSet(b"ns1.hamburger.edu", dns.A, Trust.GLUE)
        )
        self.assertIsNone(self.resolver.cached(b"ns1.hamburger.edu", dns.A))
        answer = done(self.network, self.resolver.resolve(b"ns1.hamburger.edu", dns.A))
        self.assertEqual(answer.answers[0].payload.dottedQuad(), hierarchy.HAMBURGER_IP)
        self.assertEqual(len(sentTo(self.network, hierarchy.HAMBURGER_IP)), 2)

    def test_unreachable(self) -> None:
        """No server answering: ResolutionFailed after the timeouts."""
        network = FakeNetwork()
        resolver = iterative(network)
        d = resolver.resolve(b"www.hamburger.edu", dns.A)
        network.run(1.9)
        self.assertNoResult(d)
        network.run(0.2)
        self.failureResultOf(d, ResolutionFailed)
        self.assertEqual(
            [a for a in network.ports if a[0] == "0.0.0.0"], [], "sockets left open"
        )

    def test_stopAbandons(self) -> None:
        """stop() fails queries in flight and closes their sockets."""
        network = FakeNetwork()
        resolver = iterative(network)
        d = resolver.resolve(b"www.hamburger.edu", dns.A)
        self.successResultOf(resolver.stop())
        self.failureResultOf(d, ResolutionFailed)
        self.assertEqual(network.ports, {})
        self.assertEqual(network.getDelayedCalls(), [])


class GluelessTests(SynchronousTestCase):
    """
    Name servers without glue are resolved on the way, within limits.
    """

    def test_glueless(self) -> None:
        """
        edu delegates hamburger.edu to ns.crepes.fr without glue: the
        resolver looks that name up from the root and carries on.
        """
        network = FakeNetwork()
        root = hierarchy.ROOT + "fr. NS ns.fr.\nns.fr. A 127.0.0.5\n"
        serve(network, hierarchy.ROOT_IP, "", root)
        serve(
            network,
            hierarchy.EDU_IP,
            "edu",
            hierarchy.EDU.replace(
                "hamburger      NS   ns1.hamburger", "hamburger NS ns.crepes.fr."
            ).replace(f"ns1.hamburger  A    {hierarchy.HAMBURGER_IP}", ""),
        )
        serve(
            network,
            "127.0.0.5",
            "fr",
            "$TTL 3600\n@ SOA ns h 1 1 1 1 60\n@ NS ns\nns A 127.0.0.5\n"
            "crepes NS ns.crepes\nns.crepes A 127.0.0.6\n",
        )
        serve(
            network,
            "127.0.0.6",
            "crepes.fr",
            "$TTL 3600\n@ SOA ns h 1 1 1 1 60\n@ NS ns\n"
            f"ns A {hierarchy.HAMBURGER_IP}\n",
        )
        serve(network, hierarchy.HAMBURGER_IP, "hamburger.edu", hierarchy.HAMBURGER)
        resolver = iterative(network)
        answer = done(network, resolver.resolve(b"mx2.hamburger.edu", dns.A))
        self.assertEqual(answer.answers[0].payload.dottedQuad(), "192.0.2.20")
        self.assertEqual(len(sentTo(network, "127.0.0.6")), 1)

    def test_referralLoop(self) -> None:
        """
        Servers that refer to each other forever end in a failure after a
        bounded number of queries.
        """
        network = FakeNetwork()

        def sideways(request: Decoded, source: Address) -> list[tuple[bytes, Address]]:
            # Refer deeper each time, to a server that does the same.
            name = normalize(request.message.queries[0].name)
            labels = name.split(b".")
            zone = b".".join(labels[-2:])
            return [
                (
                    reply(
                        request,
                        authority=[
                            rr(zone.decode(), dns.NS, dns.Record_NS(b"ns.loop.test"))
                        ],
                        additional=[
                            rr("ns.loop.test", dns.A, dns.Record_A("127.0.0.2"))
                        ],
                        auth=False,
                    ),
                    (hierarchy.ROOT_IP, 53),
                )
            ]

        server = ScriptedServer(network, (hierarchy.ROOT_IP, 53), sideways)
        network.listenUDP(53, server, interface=hierarchy.ROOT_IP)
        resolver = iterative(network)
        d = resolver.resolve(b"a.b.c.d.e.f.loop.test", dns.A)
        network.run()
        self.failureResultOf(d, ResolutionFailed)
        self.assertLessEqual(len(server.received), 48)

    def test_selfReferenceLoop(self) -> None:
        """
        A server delegating to a name whose resolution needs itself fails
        instead of looping.
        """
        network = FakeNetwork()
        root = hierarchy.ROOT.replace(
            "edu.                 NS   ns.edu.\n"
            f"ns.edu.              A    {hierarchy.EDU_IP}",
            "edu. NS ns.hamburger.edu.",
        )
        serve(network, hierarchy.ROOT_IP, "", root)
        resolver = iterative(network)
        d = resolver.resolve(b"www.hamburger.edu", dns.A)
        network.run(10)
        self.failureResultOf(d, ResolutionFailed)


class ForgeryTests(SynchronousTestCase):
    """
    What a server (or a spoofer) may not make us believe.
    """

    def setUp(self) -> None:
        self.network = FakeNetwork()
        serve(self.network, hierarchy.ROOT_IP, "", hierarchy.ROOT)
        serve(
            self.network, hierarchy.HAMBURGER_IP, "hamburger.edu", hierarchy.HAMBURGER
        )

    def edu(self, script: Any) -> ScriptedServer:
        server = ScriptedServer(self.network, (hierarchy.EDU_IP, 53), script)
        self.network.listenUDP(53, server, interface=hierarchy.EDU_IP)
        return server

    def test_outOfBailiwickNotCached(self) -> None:
        """
        The edu server's referral carries records for names outside edu
        (and an answer-section record that is no answer): none is cached.
        """

        def poison(request: Decoded, source: Address) -> list[tuple[bytes, Address]]:
            return [
                (
                    reply(
                        request,
                        answers=[rr("bank.edu", dns.A, dns.Record_A("203.0.113.66"))],
                        authority=[
                            rr(
                                "hamburger.edu",
                                dns.NS,
                                dns.Record_NS(b"ns1.hamburger.edu"),
                            ),
                            rr("victim.com", dns.NS, dns.Record_NS(b"ns.evil.test")),
                        ],
                        additional=[
                            rr(
                                "ns1.hamburger.edu",
                                dns.A,
                                dns.Record_A(hierarchy.HAMBURGER_IP),
                            ),
                            rr("www.victim.com", dns.A, dns.Record_A("203.0.113.66")),
                            rr("ns.evil.test", dns.A, dns.Record_A("203.0.113.66")),
                        ],
                        auth=False,
                    ),
                    (hierarchy.EDU_IP, 53),
                )
            ]

        self.edu(poison)
        resolver = iterative(self.network)
        answer = done(self.network, resolver.resolve(b"www.hamburger.edu", dns.A))
        self.assertEqual(len(answer.answers), 3)
        cache = resolver.cache
        for name, type in (
            (b"www.victim.com", dns.A),
            (b"victim.com", dns.NS),
            (b"ns.evil.test", dns.A),
            (b"bank.edu", dns.A),
        ):
            self.assertIsNone(cache.getRRSet(name, type, Trust.GLUE), name)

    def test_forgedRepliesIgnored(self) -> None:
        """
        Replies with the wrong ID, the wrong question or from the wrong
        address are ignored; the real reply, arriving after them, counts.
        """

        def forge(request: Decoded, source: Address) -> list[tuple[bytes, Address]]:
            real = reply(
                request,
                authority=[
                    rr("hamburger.edu", dns.NS, dns.Record_NS(b"ns1.hamburger.edu"))
                ],
                additional=[
                    rr("ns1.hamburger.edu", dns.A, dns.Record_A(hierarchy.HAMBURGER_IP))
                ],
                auth=False,
            )
            evil = [
                rr("hamburger.edu", dns.NS, dns.Record_NS(b"ns.evil.test")),
            ]
            evilGlue = [rr("ns.evil.test", dns.A, dns.Record_A("127.0.0.66"))]
            wrongQuestion = newQuery(request.message.id, b"other.edu", dns.A)
            wrongQuestion.answer = 1
            wrongQuestion.authority = evil
            return [
                (
                    reply(
                        request,
                        authority=evil,
                        additional=evilGlue,
                        auth=False,
                        id=(request.message.id + 1) % 65536,
                    ),
                    (hierarchy.EDU_IP, 53),
                ),
                (encode(wrongQuestion), (hierarchy.EDU_IP, 53)),
                (
                    reply(request, authority=evil, additional=evilGlue, auth=False),
                    ("127.0.0.66", 53),
                ),
                (
                    reply(request, authority=evil, additional=evilGlue, auth=False),
                    (hierarchy.EDU_IP, 5353),
                ),
                (real, (hierarchy.EDU_IP, 53)),
            ]

        self.edu(forge)
        resolver = iterative(self.network)
        answer = done(self.network, resolver.resolve(b"www.hamburger.edu", dns.A))
        self.assertEqual(answer.answers[-1].payload.dottedQuad()[:8], "192.0.2.")
        self.assertIsNone(resolver.cache.getRRSet(b"ns.evil.test", dns.A, Trust.GLUE))
        self.assertEqual(sentTo(self.network, "127.0.0.66"), [])

    def test_randomIDsAndPorts(self) -> None:
        """Each upstream query has its own ID and its own source port."""
        network = FakeNetwork()
        tree(network)
        resolver = iterative(network)
        done(network, resolver.resolve(b"www.hamburger.edu", dns.A))
        queries = [
            (src, decode(data).message.id)
            for src, dst, data in network.sent
            if dst[1] == 53
        ]
        self.assertEqual(len({src for src, _ in queries}), len(queries))
        self.assertEqual(len({id for _, id in queries}), len(queries))


class ForwardingTests(SynchronousTestCase):
    """
    Forwarding to upstream resolvers.
    """

    def setUp(self) -> None:
        self.network = FakeNetwork()
        self.status = Status(self.network)

    def forwarder(self, *upstreams: Address) -> ForwardingResolver:
        return ForwardingResolver(
            self.network,
            Cache(self.network),
            list(upstreams),
            exchanger=Exchanger(self.network),
            timeout=2.0,
            status=self.status,
        )

    def upstream(self, address: Address, script: Any) -> ScriptedServer:
        server = ScriptedServer(self.network, address, script)
        self.network.listenUDP(address[1], server, interface=address[0])
        return server

    def answering(self, address: Address, rcode: int = dns.OK) -> ScriptedServer:
        def script(request: Decoded, source: Address) -> list[tuple[bytes, Address]]:
            name = request.message.queries[0].name.name
            answers = []
            if rcode == dns.OK:
                answers = [
                    rr(name.decode(), dns.A, dns.Record_A("192.0.2.44"), ttl=120)
                ]
            return [(reply(request, answers=answers, rcode=rcode, auth=False), address)]

        return self.upstream(address, script)

    def test_forwards(self) -> None:
        """The question goes to the first upstream with RD set."""
        upstream = self.answering(("127.0.0.9", 53))
        answer = done(
            self.network,
            self.forwarder(("127.0.0.9", 53)).resolve(b"example.com", dns.A),
        )
        self.assertEqual(answer.answers[0].payload.dottedQuad(), "192.0.2.44")
        self.assertEqual(upstream.received[0].message.recDes, 1)

    def test_failoverOnTimeout(self) -> None:
        """A silent upstream is given up after the timeout; the next answers."""
        silent = self.upstream(("127.0.0.8", 53), lambda request, source: [])
        self.answering(("127.0.0.9", 53))
        d = self.forwarder(("127.0.0.8", 53), ("127.0.0.9", 53)).resolve(
            b"example.com", dns.A
        )
        self.network.run(1.9)
        self.assertNoResult(d)
        answer = done(self.network, d, 0.2)
        self.assertEqual(len(answer.answers), 1)
        self.assertEqual(len(silent.received), 1)

    def test_servfailThenNext(self) -> None:
        """SERVFAIL and REFUSED move on to the next upstream."""
        self.answering(("127.0.0.7", 53), dns.ESERVER)
        self.answering(("127.0.0.8", 53), dns.EREFUSED)
        self.answering(("127.0.0.9", 53))
        resolver = self.forwarder(
            ("127.0.0.7", 53), ("127.0.0.8", 53), ("127.0.0.9", 53)
        )
        answer = done(self.network, resolver.resolve(b"example.com", dns.A))
        self.assertEqual(len(answer.answers), 1)

    def test_unreachable(self) -> None:
        """
        An upstream the network cannot reach fails at once (its socket
        closed) and the next one answers.
        """
        self.network.unreachable.add("127.0.0.8")
        self.answering(("127.0.0.9", 53))
        resolver = self.forwarder(("127.0.0.8", 53), ("127.0.0.9", 53))
        answer = done(self.network, resolver.resolve(b"example.com", dns.A))
        self.assertEqual(len(answer.answers), 1)
        self.assertEqual([a for a in self.network.ports if a[0] == "0.0.0.0"], [])

    def test_allFail(self) -> None:
        """If every upstream fails, resolution fails (SERVFAIL, not NXDOMAIN)."""
        self.answering(("127.0.0.7", 53), dns.ESERVER)
        d = self.forwarder(("127.0.0.7", 53)).resolve(b"example.com", dns.A)
        self.network.run()
        self.failureResultOf(d, ResolutionFailed)

    def test_nxdomainPassedOn(self) -> None:
        """An upstream NXDOMAIN with SOA is the answer, and is cached."""

        def script(request: Decoded, source: Address) -> list[tuple[bytes, Address]]:
            soa = rr(
                "example.com",
                dns.SOA,
                dns.Record_SOA(b"ns.example.com", b"h.example.com", 1, 1, 1, 1, 30),
            )
            return [
                (reply(request, authority=[soa], rcode=dns.ENAME), ("127.0.0.9", 53))
            ]

        upstream = self.upstream(("127.0.0.9", 53), script)
        resolver = self.forwarder(("127.0.0.9", 53))
        answer = done(self.network, resolver.resolve(b"nope.example.com", dns.A))
        self.assertEqual(answer.rcode, dns.ENAME)
        done(self.network, resolver.resolve(b"nope.example.com", dns.AAAA))
        self.assertEqual(len(upstream.received), 1)

    def test_unrelatedAnswersNotCached(self) -> None:
        """Answer records off the question's CNAME chain are not cached."""

        def script(request: Decoded, source: Address) -> list[tuple[bytes, Address]]:
            return [
                (
                    reply(
                        request,
                        answers=[
                            rr("example.com", dns.A, dns.Record_A("192.0.2.44")),
                            rr("www.bank.test", dns.A, dns.Record_A("203.0.113.66")),
                        ],
                        auth=False,
                    ),
                    ("127.0.0.9", 53),
                )
            ]

        self.upstream(("127.0.0.9", 53), script)
        resolver = self.forwarder(("127.0.0.9", 53))
        answer = done(self.network, resolver.resolve(b"example.com", dns.A))
        self.assertEqual(len(answer.answers), 1)
        self.assertIsNone(resolver.cache.getRRSet(b"www.bank.test", dns.A, Trust.GLUE))


class CoalescingTests(SynchronousTestCase):
    """
    Identical questions in flight share one upstream query.
    """

    def test_twoClientsOnePacket(self) -> None:
        """
        Two clients asking the server the same question at once cause one
        upstream packet, and both get the answer.
        """
        network = FakeNetwork()
        status = Status(network)

        def script(request: Decoded, source: Address) -> list[tuple[bytes, Address]]:
            name = request.message.queries[0].name.name.decode()
            return [
                (
                    reply(
                        request, answers=[rr(name, dns.A, dns.Record_A("192.0.2.44"))]
                    ),
                    ("127.0.0.9", 53),
                )
            ]

        upstream = ScriptedServer(network, ("127.0.0.9", 53), script)
        network.listenUDP(53, upstream, interface="127.0.0.9")
        resolver = ForwardingResolver(
            network,
            Cache(network),
            [("127.0.0.9", 53)],
            exchanger=Exchanger(network),
            status=status,
        )
        factory = DNSServerFactory(
            network, Authority(), resolver, Policy(["127.0.0.0/8"], []), status
        )
        network.listenUDP(
            53, DNSDatagramServer(factory, network), interface="127.0.0.1"
        )
        clients = []
        for port in (6001, 6002):
            client = ScriptedServer(network, ("127.0.0.1", port), lambda r, s: [])
            network.listenUDP(port, client, interface="127.0.0.10")
            clients.append(client)
            network.send(
                ("127.0.0.10", port),
                ("127.0.0.1", 53),
                encode(newQuery(port, b"example.com", dns.A)),
            )
        network.pump()
        self.assertEqual(len(upstream.received), 1)
        for client in clients:
            [answer] = client.received
            self.assertEqual(
                answer.message.answers[0].payload.dottedQuad(), "192.0.2.44"
            )
        self.assertEqual(status.counter("dns", "coalesced"), 1)


class HintsTests(SynchronousTestCase):
    """
    Root hints files.
    """

    def test_shipped(self) -> None:
        """tap/root.hints parses: thirteen root servers with addresses."""
        import os

        path = os.path.join(
            os.path.dirname(__file__), os.pardir, os.pardir, "tap", "root.hints"
        )
        with open(path) as f:
            hints = parseHints(f.read(), path)
        self.assertEqual(len(hints.servers), 13)
        self.assertEqual(hints.servers[b"a.root-servers.net"], ["198.41.0.4"])

    def test_noRootNS(self) -> None:
        """Hints without NS records for the root are refused."""
        from appnet.dns.errors import ZoneError

        with self.assertRaises(ZoneError) as caught:
            parseHints("a.example. 60 A 192.0.2.1\n", "hints")
        self.assertIn("no NS records for the root", str(caught.exception))
