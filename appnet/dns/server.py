"""
The DNS service: loads the zones, binds UDP and TCP on one address,
reloads on demand or SIGHUP, and builds the query path of
L{appnet.dns.query} for them.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import glob
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.base import ReactorBase
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from appnet.config import DNSConfig
from appnet.dns.cache import Cache
from appnet.dns.errors import ZoneError
from appnet.dns.exchange import Exchanger
from appnet.dns.fastpath import WireCache
from appnet.dns.journal import Journal, rollForward
from appnet.dns.names import display, normalize
from appnet.dns.policy import Policy, RateLimiter
from appnet.dns.primary import Primary
from appnet.dns.query import (
    DNSDatagramServer,
    DNSServerFactory,
    DNSStreamServer,
    SeenQuery,
)
from appnet.dns.recursion import (
    ForwardingResolver,
    IterativeResolver,
    Recursor,
    parseHints,
)
from appnet.dns.secondary import Secondaries
from appnet.dns.zonefile import readFile
from appnet.dns.zones import Authority, Zone, loadZone, zoneFromText
from appnet.errors import ListenError
from appnet.faults import NO_FAULTS, Faults
from appnet.listen import AddressBook, GuardedFactory, socketFamily
from appnet.status import Status

__all__ = [
    "DNSDatagramServer",
    "DNSServerFactory",
    "DNSService",
    "DNSStreamServer",
    "ReloadResult",
    "SeenQuery",
    "buildDNS",
]


@frozen
class ReloadResult:
    """
    What a zone (re)load did.

    @ivar loaded: the origins now served, folded.
    @ivar failed: the problems; a zone that failed to reload keeps
        serving its previous version.
    """

    loaded: tuple[str, ...]
    failed: tuple[ZoneError, ...]


@frozen
class _Source:
    """A zone to load: a file, or text given directly (fixtures)."""

    name: str
    path: str | None = None
    text: str | None = None
    origin: bytes | None = None


def _loadSources(
    sources: Sequence[_Source],
    previous: Mapping[str, Zone],
    journals: dict[str, Journal] | None = None,
) -> tuple[dict[str, Zone], list[ZoneError]]:
    """
    Load every source; a source that fails keeps its previous zone (if
    any). A zone file's journal (C{FILE.jnl}) is rolled forward and put
    in C{journals}. Runs in a thread on reload: nothing here touches the
    reactor.
    """
    loaded: dict[str, Zone] = {}
    failed: list[ZoneError] = []
    origins: dict[bytes, str] = {}
    for source in sources:
        try:
            if source.text is not None:
                zone = zoneFromText(source.text, source.name, source.origin or b"")
            else:
                assert source.path is not None
                zone = loadZone(source.path, source.origin)
                journal = Journal(source.path + ".jnl")
                journal.read()
                zone = rollForward(zone, journal)
                if journals is not None:
                    journals[source.name] = journal
        except ZoneError as e:
            failed.append(e)
            if source.name in previous:
                zone = previous[source.name]
            else:
                continue
        if zone.origin in origins:
            failed.append(
                ZoneError(
                    source.name,
                    0,
                    f"zone {display(zone.origin)} is already loaded from "
                    f"{origins[zone.origin]}",
                )
            )
            continue
        origins[zone.origin] = source.name
        loaded[source.name] = zone
    return loaded, failed


class DNSService(Service):
    """
    Binds UDP and TCP on C{config.listen}, serves the zones and, if
    configured, recursion.

    Zones are read and ports bound in L{privilegedStartService}, like every
    appnet listener (so port 53 binds before twistd drops privileges).
    L{reload} re-reads the zone files (in a thread) without dropping the
    cache; SIGHUP calls it when running under a real reactor.

    @ivar factory: the server factory, once started.
    @ivar cache: the recursive resolver's cache, once started; its time
        comes from C{cacheClock} (default: the reactor), so tests can age
        it.
    """

    _log = Logger()
    #: Scripted faults, handed to the factory when it is made.
    faults: Faults = NO_FAULTS

    def __init__(
        self,
        reactor: Any,
        config: DNSConfig,
        status: Status,
        addresses: AddressBook,
        zoneDirectory: str | None = None,
        zoneTexts: Mapping[str, str] = {},
        hintsText: str | None = None,
        traced: bool = False,
        connectionsPerAddress: int = 32,
        cacheClock: Any = None,
        keyDirectory: str | None = None,
        secondaryDirectory: str | None = None,
        inherited: tuple[int, int] | None = None,
    ) -> None:
        self._reactor = reactor
        self._inherited = inherited
        self._cacheClock = cacheClock if cacheClock is not None else reactor
        self.config = config
        self._status = status
        self._addresses = addresses
        self._zoneDirectory = zoneDirectory
        self._zoneTexts = dict(zoneTexts)
        self._hintsText = hintsText
        self._traced = traced
        self._connectionsPerAddress = connectionsPerAddress
        self.factory: DNSServerFactory | None = None
        self.cache: Cache | None = None
        self.recursor: Recursor | None = None
        self._guarded: GuardedFactory | None = None
        self._udp: IListeningPort | None = None
        self._tcp: IListeningPort | None = None
        self._zones: dict[str, Zone] = {}
        self._previousHandler: Any = None
        self._signalInstalled = False
        self._keyDirectory = keyDirectory
        self._secondaryDirectory = secondaryDirectory
        #: Dynamic update, transfers and NOTIFY, once built.
        self.primary: Primary | None = None
        #: The zones copied from primaries, once built.
        self.secondaries: Secondaries | None = None

    # Zones.

    def _sources(self) -> list[_Source]:
        sources = [
            _Source(name, text=text, origin=normalize(name))
            for name, text in sorted(self._zoneTexts.items())
        ]
        if self._zoneDirectory is not None:
            for path in sorted(glob.glob(os.path.join(self._zoneDirectory, "*.zone"))):
                sources.append(_Source(path, path=path))
        for path in self.config.zones:
            sources.append(_Source(path, path=path))
        return sources

    def _apply(
        self,
        loaded: dict[str, Zone],
        failed: list[ZoneError],
        journals: Mapping[str, Journal] | None = None,
    ) -> ReloadResult:
        for error in failed:
            self._log.error("dns: zone not loaded: {error}", error=str(error))
        assert self.factory is not None
        if self.primary is not None:
            loaded = self.primary.adopt(loaded, journals or {})
        self._zones = loaded
        extra = self.secondaries.zones() if self.secondaries is not None else []
        self.factory.authority.apply([*loaded.values(), *extra], everything=True)
        origins = tuple(sorted(display(z.origin) for z in loaded.values()))
        self._log.info(
            "dns: serving {count} zones: {zones}",
            count=len(origins),
            zones=" ".join(origins) or "none",
        )
        return ReloadResult(origins, tuple(failed))

    def reload(self) -> Deferred[ReloadResult]:
        """
        Re-read every zone file (in the reactor's thread pool) and serve
        the result; zones that fail to load keep their previous version.
        The cache is kept.
        """
        from twisted.internet.threads import deferToThreadPool

        sources = self._sources()
        previous = dict(self._zones)
        journals: dict[str, Journal] = {}
        d: Deferred[tuple[dict[str, Zone], list[ZoneError]]] = deferToThreadPool(
            self._reactor,
            self._reactor.getThreadPool(),
            _loadSources,
            sources,
            previous,
            journals,
        )
        return d.addCallback(lambda result: self._apply(result[0], result[1], journals))

    # Start and stop.

    def _build(self) -> None:
        config = self.config
        reactor = self._reactor
        cache = Cache(
            self._cacheClock,
            maxEntries=config.cache_size,
            maxTTL=config.cache_max_ttl,
            maxNegativeTTL=config.cache_max_negative_ttl,
        )
        recursor: Recursor | None = None
        options = dict(
            exchanger=Exchanger(reactor),
            timeout=config.upstream_timeout,
            status=self._status,
            udpSize=config.max_udp_size,
        )
        if config.forward:
            recursor = ForwardingResolver(reactor, cache, config.forward, **options)
        elif config.root_hints is not None or self._hintsText is not None:
            if self._hintsText is not None:
                hints = parseHints(self._hintsText, "root hints")
            else:
                assert config.root_hints is not None
                hints = parseHints(readFile(config.root_hints), config.root_hints)
            recursor = IterativeResolver(
                reactor, cache, hints, config.upstream_port, **options
            )
        limiter = RateLimiter(reactor, config.rate_limit) if config.rate_limit else None
        self.cache = cache
        self.recursor = recursor
        authority = Authority()
        wire = None
        if config.answer_cache_size:
            wire = WireCache(
                authority,
                cache if recursor is not None else None,
                self._status,
                maxUDPSize=config.max_udp_size,
                maxEntries=config.answer_cache_size,
            )
        self.factory = DNSServerFactory(
            reactor,
            authority,
            recursor,
            Policy(config.allow_recursion, config.allow_transfer),
            self._status,
            limiter,
            maxUDPSize=config.max_udp_size,
            idleTimeout=config.idle_timeout,
            recursionTimeout=config.recursion_timeout,
            traced=self._traced,
            wireCache=wire,
        )
        self.factory.faults = self.faults
        self.primary = Primary(
            reactor,
            self.factory,
            config,
            self._keyDirectory,
            self._status,
        )
        self.secondaries = self.primary.secondaries(self._secondaryDirectory)
        journals: dict[str, Journal] = {}
        self._apply(*_loadSources(self._sources(), {}, journals), journals)
        status = self._status
        status.gauge("dns", "cache_entries", lambda: float(len(cache)))
        status.gauge("dns", "zones", lambda: float(len(self._zones)))
        if wire is not None:
            status.gauge("dns", "answer_cache_entries", lambda: float(len(wire)))

        def hitRatio() -> float:
            hits = status.counter("dns", "cache_hits")
            looked = hits + status.counter("dns", "cache_misses")
            return hits / looked if looked else 0.0

        status.gauge("dns", "cache_hit_ratio", hitRatio)

    def _bind(self) -> None:
        assert self.factory is not None
        host, port = self.config.listen
        reactor = self._reactor
        self._guarded = GuardedFactory(
            self.factory, "dns", self._status, self._connectionsPerAddress
        )
        udpProtocol = DNSDatagramServer(self.factory, reactor)
        shown = f"[{host}]" if ":" in host else host
        if self._inherited is not None:
            # A worker process: serve the sockets the parent bound.
            udpFd, tcpFd = self._inherited
            tcp = reactor.adoptStreamPort(tcpFd, socketFamily(tcpFd), self._guarded)
            udp = reactor.adoptDatagramPort(
                udpFd, socketFamily(udpFd), udpProtocol, 65535
            )
            self._tcp, self._udp = tcp, udp
            self._addresses.record("dns", udp.getHost(), tls=False, transport="udp")
            self._addresses.record("dns", tcp.getHost(), tls=False, transport="tcp")
            return
        for _ in range(20 if port == 0 else 1):
            try:
                tcp = reactor.listenTCP(port, self._guarded, interface=host)
            except CannotListenError as e:
                raise ListenError("dns", f"tcp {shown}:{port}", _why(e)) from None
            bound = tcp.getHost().port
            try:
                udp = reactor.listenUDP(bound, udpProtocol, interface=host)
            except CannotListenError as e:
                tcp.stopListening()
                if port == 0:
                    continue
                raise ListenError("dns", f"udp {shown}:{port}", _why(e)) from None
            break
        else:
            raise ListenError(
                "dns", f"{shown}:0", "no port number was free for both UDP and TCP"
            )
        self._tcp, self._udp = tcp, udp
        self._addresses.record("dns", udp.getHost(), tls=False, transport="udp")
        self._addresses.record("dns", tcp.getHost(), tls=False, transport="tcp")

    def privilegedStartService(self) -> None:
        """
        Load the zones and bind UDP and TCP.

        @raise ListenError: naming the service and address that failed.
        @raise ZoneError: for unreadable root hints.
        """
        super().privilegedStartService()
        if self.factory is None:
            self._build()
        if self._udp is None:
            self._bind()

    def startService(self) -> None:
        if self._udp is None:
            self.privilegedStartService()
        super().startService()
        self._installSignal()
        if self.primary is not None:
            self.primary.start(self.config.listen[0])

    def _installSignal(self) -> None:
        """
        Reload zones on SIGHUP, under a real reactor in the main thread.
        """
        if not (
            isinstance(self._reactor, ReactorBase)
            and hasattr(signal, "SIGHUP")
            and threading.current_thread() is threading.main_thread()
        ):
            return
        self._previousHandler = signal.signal(signal.SIGHUP, self._sighup)
        self._signalInstalled = True

    def _sighup(self, signum: int, frame: Any) -> None:
        self._log.info("dns: SIGHUP: reloading zones")
        self._reactor.callFromThread(self.reload)

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, close TCP connections, abandon upstream queries.
        """
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        super().stopService()
        if self._signalInstalled:
            signal.signal(signal.SIGHUP, self._previousHandler)
            self._signalInstalled = False
        waits: list[Deferred[Any]] = []
        for port in (self._udp, self._tcp):
            if port is not None:
                self._addresses.forget("dns", port.getHost())
                closing = port.stopListening()
                if closing is not None:
                    waits.append(closing)
        self._udp = self._tcp = None
        if self._guarded is not None:
            waits.append(self._guarded.closeAll(self._reactor))
        if self.recursor is not None:
            waits.append(self.recursor.stop())
        if self.primary is not None:
            waits.append(self.primary.stop())
        if waits:
            await DeferredList(waits)

    @property
    def udpAddress(self) -> tuple[str, int]:
        """C{(host, port)} of the UDP listener."""
        assert self._udp is not None, "not listening"
        address = self._udp.getHost()
        return address.host, address.port  # type: ignore[attr-defined]

    @property
    def tcpAddress(self) -> tuple[str, int]:
        """C{(host, port)} of the TCP listener."""
        assert self._tcp is not None, "not listening"
        address = self._tcp.getHost()
        return address.host, address.port  # type: ignore[attr-defined]


def _why(error: CannotListenError) -> str:
    reason = error.socketError
    return str(getattr(reason, "strerror", None) or reason)


def buildDNS(ctx: Any) -> Any:
    """
    The stack's DNS component (listed in L{appnet.stack.BUILDERS}).
    """
    from appnet.stack import Component

    config = ctx.config.dns
    if not config.enabled:
        return Component()
    service = DNSService(
        ctx.reactor,
        config,
        ctx.status,
        ctx.addresses,
        cacheClock=ctx.clock,
        zoneDirectory=ctx.dataDir.zones.path,
        keyDirectory=config.keys or ctx.dataDir.root.child("keys").path,
        secondaryDirectory=ctx.dataDir.root.child("secondary").path,
        traced=ctx.traced("dns"),
        connectionsPerAddress=ctx.config.limits.connections_per_ip,
        inherited=ctx.worker.dnsSockets() if ctx.worker is not None else None,
    )
    service.faults = ctx.faults
    return Component(services=[service], serves=("dns",))
