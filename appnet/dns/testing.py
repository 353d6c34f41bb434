"""
DNS fixtures for test suites.

L{startDNS} runs a real appnet DNS server (UDP and TCP, ephemeral port)
inside the test's reactor, serving zones given as text, and records
every query it sees::

    from appnet.testing import startDNS

    async def test_mx(self) -> None:
        server = await startDNS(self, zones={"hamburger.edu": ZONE})
        client = server.client()
        exchangers = await client.lookupMX("hamburger.edu")
        self.assertEqual(server.queries[-1].typeName, "MX")

L{StaticResolver} answers from zone text without any network, for code
that takes an L{IDNSResolver} (the mail relay): same lookups, same
errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.names import dns

from appnet.config import loadConfig
from appnet.dns.cache import Cache
from appnet.dns.client import DNSClient, Response
from appnet.dns.errors import TemporaryFailure
from appnet.dns.names import display, normalize
from appnet.dns.query import SeenQuery
from appnet.dns.server import DNSService
from appnet.dns.zones import Authority, zoneFromText
from appnet.faults import Faults
from appnet.fixtures import Address
from appnet.listen import AddressBook
from appnet.status import Status

__all__ = ["RunningDNS", "StaticResolver", "startDNS"]


@define
class RunningDNS:
    """
    A running DNS server and what a test needs from it.

    @ivar queries: every query the server received, oldest first.
    """

    service: DNSService
    status: Status
    reactor: Any
    queries: list[SeenQuery] = field(factory=list)
    _stopped: bool = False

    @property
    def faults(self) -> Faults:
        """Scripted faults of this server (C{faults.dns(name, "servfail")})."""
        faults: Faults = self.service.faults
        return faults

    @property
    def address(self) -> Address:
        """
        C{(host, port)} it listens on, UDP (TCP is the same port): call it,
        C{server.address()}, as on every fixture (the tuple form is
        deprecated).
        """
        return Address(*self.service.udpAddress)

    @property
    def tcpAddress(self) -> tuple[str, int]:
        """C{(host, port)} of its TCP listener."""
        return self.service.tcpAddress

    @property
    def cache(self) -> Cache:
        """The recursive resolver's cache."""
        assert self.service.cache is not None
        return self.service.cache

    def client(self, **kw: Any) -> DNSClient:
        """A L{DNSClient} asking this server (keyword arguments go to it)."""
        kw.setdefault("timeout", 2.0)
        return DNSClient(self.reactor, [self.address()], **kw)

    def counter(self, name: str) -> int:
        """One of the server's counters (C{"upstream_queries"} ...)."""
        return self.status.counter("dns", name)

    def stop(self) -> Deferred[None]:
        """Stop the server (idempotent)."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.service.stopService()


async def startDNS(
    testCase: Any = None,
    *,
    zones: Mapping[str, str] = {},
    listen: str = "127.0.0.1:0",
    forward: Sequence[str] = (),
    rootHints: str | None = None,
    upstreamPort: int | None = None,
    config: Mapping[str, Any] = {},
    reactor: Any = None,
    traced: bool = False,
    cacheClock: Any = None,
    zoneDirectory: str | None = None,
    keyDirectory: str | None = None,
    secondaryDirectory: str | None = None,
) -> RunningDNS:
    """
    Start a DNS server on C{listen} (UDP and TCP).

    @param testCase: a trial C{TestCase}; the server is stopped by its
        cleanup.
    @param zones: zone text by origin (C{{"hamburger.edu": "..."}});
        relative names in the text are relative to the origin.
    @param forward: C{HOST:PORT} upstreams to forward recursion to.
    @param rootHints: the text of a root hints file, to recurse
        iteratively.
    @param upstreamPort: the port iterative queries go to.
    @param config: more C{[dns]} settings, TOML-shaped (C{{"rate_limit":
        10}}); the fixture turns the rate limit off unless set here.
    @param cacheClock: the cache's clock (an C{IReactorTime}, such as a
        C{Clock} the test advances to age cached answers); default: the
        reactor.
    @param zoneDirectory: a directory of C{*.zone} files (with their
        journals) to serve as well.
    @param keyDirectory: a directory of TSIG C{*.key} files.
    @param secondaryDirectory: where copies of C{dns.secondary} zones are
        kept.
    @raise ZoneError: if a zone does not load.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    raw: dict[str, Any] = {"listen": listen, "rate_limit": 0, **config}
    if forward:
        raw["forward"] = list(forward)
    if upstreamPort is not None:
        raw["upstream_port"] = upstreamPort
    dnsConfig = loadConfig(None, {"dns": raw}, env={"APPNET_DATA": "unused"}).dns
    for origin, text in zones.items():
        zoneFromText(text, origin, normalize(origin))  # fail early, with the line
    status = Status(reactor)
    service = DNSService(
        reactor,
        dnsConfig,
        status,
        AddressBook(),
        zoneTexts=zones,
        hintsText=rootHints,
        traced=traced,
        cacheClock=cacheClock,
        zoneDirectory=zoneDirectory,
        keyDirectory=keyDirectory,
        secondaryDirectory=secondaryDirectory,
    )
    running = RunningDNS(service, status, reactor)
    service.faults = Faults(cacheClock or reactor, status, reactor=reactor)
    service.startService()
    assert service.factory is not None
    service.factory.observers.append(running.queries.append)
    if testCase is not None:
        testCase.addCleanup(running.stop)
    return running


class StaticResolver(DNSClient):
    """
    An L{IDNSResolver} answering from zone text, without a network.

    Names in the zones are answered as an authoritative server would;
    names in C{failures} get that response code (C{dns.ESERVER} for
    SERVFAIL); names in C{timeouts} time out; any other name is REFUSED.
    """

    def __init__(
        self,
        zones: Mapping[str, str] = {},
        failures: Mapping[str, int] = {},
        timeouts: Sequence[str] = (),
    ) -> None:
        super().__init__(None, [("0.0.0.0", 0)])
        loaded = []
        for origin, text in zones.items():
            loaded.append(zoneFromText(text, origin, normalize(origin)))
        self._authority = Authority(loaded)
        self._failures = {normalize(k): v for k, v in failures.items()}
        self._timeouts = {normalize(name) for name in timeouts}
        self.asked: list[tuple[str, int]] = []

    async def _query(
        self, name: bytes, type: int, recursionDesired: bool, tcp: bool, edns: bool
    ) -> Response:
        self.asked.append((name.decode("ascii", "replace"), type))
        if name in self._timeouts:
            raise TemporaryFailure(display(name), "timed out")
        answer = self._authority.answer(name, type)
        rcode = self._failures.get(name)
        if rcode is None:
            rcode = dns.EREFUSED if answer is None else answer.rcode
        sections: Any = answer if answer is not None and rcode == answer.rcode else None
        return Response(
            id=0,
            opcode=dns.OP_QUERY,
            rcode=rcode,
            authoritative=bool(sections and sections.authoritative),
            truncated=False,
            recursionDesired=recursionDesired,
            recursionAvailable=False,
            authenticData=False,
            checkingDisabled=False,
            question=dns.Query(name, type),
            answers=tuple(sections.answers) if sections else (),
            authority=tuple(sections.authority) if sections else (),
            additional=tuple(sections.additional) if sections else (),
            edns=None,
            server=("static", 0),
            transport="none",
            elapsed=0.0,
            size=0,
        )
