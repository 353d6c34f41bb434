"""
The stack: one L{MultiService} holding the store, every protocol service
and their listeners, built from a L{Config}.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import importlib
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

from attrs import define, field, frozen
from twisted.application.service import IService, MultiService
from twisted.internet.base import ReactorBase
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IProtocolFactory, IReactorThreads
from twisted.logger import Logger
from twisted.python.failure import Failure

from appnet import __version__
from appnet.auth import (
    APOPChecker,
    Authenticator,
    CredentialsCache,
    HashingThreads,
    LoginThrottle,
    UserChecker,
)
from appnet.config import Config
from appnet.datadir import DataDir
from appnet.errors import AppnetError
from appnet.faults import Faults
from appnet.listen import AddressBook, GuardedFactory, ListenerService
from appnet.status import Status
from appnet.store.interfaces import IStore
from appnet.store.sqlite import SQLiteStore
from appnet.store.threads import Threads
from appnet.tls import TLSKeeper, TLSMaterial, loadTLS
from appnet.trace import MaskRule
from appnet.workers import WorkerRole

__all__ = ["BUILDERS", "Component", "Listening", "Stack", "StackContext"]


@frozen
class Listening:
    """
    A protocol factory to put behind the endpoints of one service.

    @ivar service: the service name (C{"smtp"}); its endpoints come from
        the config table of that name.
    @ivar refusal: sent to a client over the per-address connection limit
        before the connection closes (SMTP's C{421 ...\\r\\n}).
    @ivar mask: what is secret in this protocol's transcript.
    """

    service: str
    factory: IProtocolFactory
    refusal: bytes = b""
    mask: MaskRule = field(factory=MaskRule)


@frozen
class Component:
    """
    What a protocol package adds to the stack.

    @ivar listening: factories for the endpoint-based services.
    @ivar services: background services, started once the store is open
        (a queue runner, the DNS server binding its own UDP and TCP ports).
    @ivar serves: services this component runs without an endpoint list
        (C{"dns"}), so the stack does not report them as missing.
    @ivar once: background services that must run in one process only
        when the stack runs several workers (the queue runner, purges):
        worker 0 runs them.
    """

    listening: Sequence[Listening] = ()
    services: Sequence[IService] = ()
    serves: Sequence[str] = ()
    once: Sequence[IService] = ()


@define
class StackContext:
    """
    What every component builder receives: the shared pieces of one stack.
    """

    config: Config
    dataDir: DataDir
    reactor: Any
    store: IStore
    auth: Authenticator
    tls: TLSMaterial | None
    status: Status
    addresses: AddressBook
    #: What schedules long waits (the queue's retries): the reactor, or a
    #: test's virtual clock while sockets stay on the reactor.
    clock: Any = None
    #: Scripted faults (L{appnet.faults}); protocols ask it at fixed points.
    faults: Faults = None  # type: ignore[assignment]
    #: The certificate STARTTLS, STLS and AUTH TLS offer, replaceable while
    #: running; pass it as a factory's C{tlsOptions} (see L{LiveTLS}).
    tlsKeeper: TLSKeeper = None  # type: ignore[assignment]
    #: In a worker process (C{--workers N}): its index and the listening
    #: sockets its parent bound; C{None} in a single process.
    worker: WorkerRole | None = None
    #: Threads for blocking message-file work (reading bodies): the
    #: store's own, never the reactor's default pool.
    fileThreads: Threads | None = None

    def __attrs_post_init__(self) -> None:
        if self.clock is None:
            self.clock = self.reactor
        if self.faults is None:
            self.faults = Faults(self.clock, self.status, reactor=self.reactor)
        if self.tlsKeeper is None:
            self.tlsKeeper = TLSKeeper(lambda: None, self.tls)

    def traced(self, service: str) -> bool:
        """
        Is C{--trace} on for this service? (C{smtp} covers submission.)
        """
        key = "smtp" if service == "submission" else service
        return key in self.config.trace

    async def localDomains(self) -> frozenset[str]:
        """
        The mail domains this node is final destination for: the configured
        ones and every domain that has a user.
        """
        fromUsers = await self.store.users.domains()
        return frozenset(self.config.mail.domains) | fromUsers


Builder = Callable[[StackContext], Component]

#: Component builders, C{"module:function"}, in start order. Each protocol
#: package adds its line as it lands; a builder may serve several services
#: (mail serves smtp, submission, pop3 and imap).
BUILDERS: tuple[str, ...] = (
    "appnet.dns.server:buildDNS",
    "appnet.mail.server:buildMail",
    "appnet.ftp.server:build",
    "appnet.web.server:buildWeb",
)


def _load(path: str) -> Builder:
    module, _, name = path.partition(":")
    builder: Builder = getattr(importlib.import_module(module), name)
    return builder


class Stack(MultiService):
    """
    Every service of one appnet node.

    @ivar addresses: where each service listens, once bound.
    @ivar status: the stack's counters.
    """

    _log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: Any,
        store: IStore | None = None,
        builders: Sequence[str | Builder] | None = None,
        clock: Any = None,
        worker: WorkerRole | None = None,
    ) -> None:
        super().__init__()
        self.worker = worker
        self.config = config
        self.reactor = reactor
        self.clock = reactor if clock is None else clock
        self.dataDir = DataDir.at(config.data)
        self.addresses = AddressBook()
        self.status = Status(reactor)
        self._store = store
        self._builders = BUILDERS if builders is None else builders
        self._context: StackContext | None = None
        self._factories: list[GuardedFactory] = []
        self._background = MultiService()
        self._ready: Deferred[None] | None = None
        self._waiters: list[Deferred[None]] = []
        self._readyResult: object = None
        self._bound = False
        self._released: Deferred[Any] | None = None
        self._restoreSIGHUP: Callable[[], object] | None = None
        self._ownThreads: Threads | None = None

    @property
    def context(self) -> StackContext:
        """The shared context, once the stack is prepared."""
        assert self._context is not None, "the stack has not started"
        return self._context

    @property
    def store(self) -> IStore:
        """The store, once the stack is prepared."""
        return self.context.store

    def backgroundService(self, name: str) -> IService:
        """
        A component's background service by its name (the mail queue
        runner is C{"mail-queue"}), once the stack is prepared.

        @raise KeyError: if there is none of that name.
        """
        service: IService = self._background.getServiceNamed(name)
        return service

    def _prepare(self) -> None:
        """
        Create the data directory, load TLS, build every component and the
        listener services. Start-up I/O only: a few directories and two
        small PEM files.
        """
        if self._context is not None:
            return
        config = self.config
        self.dataDir.create()
        store = self._store or openStore(
            config, self.dataDir, self.reactor, self.clock.seconds
        )
        fileThreads: Threads | None = None
        if isinstance(store, SQLiteStore):
            fileThreads = store.fileThreads
        elif IReactorThreads.providedBy(self.reactor):
            fileThreads = self._ownThreads = Threads(
                self.reactor, "appnet-files", config.store.file_threads
            )
        defaultDomain = config.mail.domains[0] if config.mail.domains else None
        hashing = HashingThreads(self.reactor, config.auth.hash_threads)
        hashing.setServiceParent(self._background)
        checker = UserChecker(
            store.users,
            defaultDomain,
            hashing.run,
            CredentialsCache(self.reactor, config.auth.cache_ttl),
        )
        throttle = LoginThrottle(
            self.reactor,
            maxFailures=config.auth.max_failures,
            maxAccountFailures=config.auth.max_account_failures,
            window=config.auth.window,
            maxAddressFailures=config.auth.max_address_failures,
        )
        auth = Authenticator(
            checker,
            throttle,
            self.reactor,
            config.auth.failure_delay,
            APOPChecker(store.users, defaultDomain) if config.pop3.apop else None,
        )
        self._context = ctx = StackContext(
            config=config,
            dataDir=self.dataDir,
            reactor=self.reactor,
            store=store,
            auth=auth,
            tls=(tls := self._loadTLS()),
            status=self.status,
            addresses=self.addresses,
            clock=self.clock,
            tlsKeeper=TLSKeeper(self._tlsPaths, tls),
            worker=self.worker,
            fileThreads=fileThreads,
        )
        served: set[str] = set()
        for builder in self._builders:
            build = _load(builder) if isinstance(builder, str) else builder
            component = build(ctx)
            for service in component.services:
                service.setServiceParent(self._background)
            if self.worker is None or self.worker.index == 0:
                for service in component.once:
                    service.setServiceParent(self._background)
            served.update(component.serves)
            for listening in component.listening:
                served.add(listening.service)
                self._addListeners(listening)
        if self.worker is not None:
            self.worker.shareStatus(ctx).setServiceParent(self._background)
            if self.worker.index == 0:
                self._log.info(
                    "worker 0 runs the once-only services: {names}",
                    names=" ".join(str(s.name) for s in self._background if s.name),
                )
        for name in config.enabled():
            if name not in served:
                self._log.warn(
                    "{service} is enabled but not part of appnet {version} yet",
                    service=name,
                    version=__version__,
                )

    def _tlsPaths(self) -> tuple[str, str, str | None] | None:
        tls = self.config.tls
        if tls.cert and tls.key:
            return tls.cert, tls.key, None
        cert, key = self.dataDir.tlsCert, self.dataDir.tlsKey
        if cert.exists() and key.exists():
            return cert.path, key.path, "data directory"
        return None

    def _loadTLS(self) -> TLSMaterial | None:
        paths = self._tlsPaths()
        return None if paths is None else loadTLS(*paths)

    def reloadTLS(self) -> None:
        """
        Load the certificate and key again (on SIGHUP, after C{appnet cert}
        or a renewal): the next STARTTLS, STLS or AUTH TLS uses them. A bad
        file is logged in one line and the current certificate stays.
        """
        try:
            self.context.tlsKeeper.reload()
        except AppnetError as e:
            self._log.error(
                "tls: not reloaded, keeping the current certificate: {problem}",
                problem=str(e),
            )

    def _installSIGHUP(self) -> None:
        """
        Reload TLS on SIGHUP, under a real reactor in the main thread. The
        handler found (the DNS service's zone reload) runs too.
        """
        if not (
            isinstance(self.reactor, ReactorBase)
            and hasattr(signal, "SIGHUP")
            and threading.current_thread() is threading.main_thread()
        ):
            return
        previous = signal.getsignal(signal.SIGHUP)

        def hangup(signum: int, frame: Any) -> None:
            self.reactor.callFromThread(self.reloadTLS)
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGHUP, hangup)
        self._restoreSIGHUP = lambda: signal.signal(signal.SIGHUP, previous)

    def _addListeners(self, listening: Listening) -> None:
        table = self.config.service(listening.service)
        if not table.enabled:
            return
        guarded = GuardedFactory(
            listening.factory,
            listening.service,
            self.status,
            self.config.limits.connections_per_ip,
            refusal=listening.refusal,
            mask=listening.mask if self.context.traced(listening.service) else None,
        )
        self._factories.append(guarded)
        for description in table.listen:
            inherited = None
            if self.worker is not None:
                inherited = self.worker.socketFor(listening.service, description)
            ListenerService(
                self.reactor,
                listening.service,
                description,
                guarded,
                self.addresses,
                inherited,
            ).setServiceParent(self)

    def privilegedStartService(self) -> None:
        """
        Prepare and bind every listener.

        @raise ListenError: if an endpoint cannot be bound; listeners bound
            before it are closed again (as after any other start-up
            failure, such as unreadable DNS root hints).
        """
        self._prepare()
        try:
            super().privilegedStartService()
            # Background services that bind their own ports (DNS) bind now,
            # too; they are started (startService) once the store is open.
            self._background.privilegedStartService()
        except AppnetError:
            closing = []
            for service in self:
                if isinstance(service, ListenerService) and service.port is not None:
                    closing.append(service.port.stopListening())
                    service.port = None
            self._released = DeferredList([d for d in closing if d is not None])
            raise
        self._bound = True

    def released(self) -> Deferred[Any]:
        """
        After a failed start, fires once the ports bound before the failure
        are closed again.
        """
        if self._released is None:
            return DeferredList([])
        return self._released

    def startService(self) -> None:
        """
        Bind (if not done yet), open the store, then start the background
        services.
        """
        if not self._bound:
            self.privilegedStartService()
        self._log.info(
            "appnet {version} starting; data directory {data}",
            version=__version__,
            data=self.dataDir.root.path,
        )
        super().startService()
        self.status.started()
        if self._ownThreads is not None:
            self._ownThreads.start()
        ready = self.context.store.start()

        def started(_: None) -> None:
            self._background.startService()
            self._installSIGHUP()
            self._log.info(
                "appnet ready: {count} listeners", count=len(self.addresses.all())
            )

        self._ready = ready.addCallback(started)
        self._ready.addBoth(self._fireWaiters)

    def _fireWaiters(self, result: object) -> None:
        self._readyResult = result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._fire(waiter)

    def _fire(self, waiter: Deferred[None]) -> None:
        if isinstance(self._readyResult, Failure):
            waiter.errback(self._readyResult)
        else:
            waiter.callback(None)

    def whenReady(self) -> Deferred[None]:
        """
        Fires when the store is open and every service has started; fails
        if the store could not be opened.
        """
        waiter: Deferred[None] = Deferred()
        if self._ready is None or not self._ready.called:
            self._waiters.append(waiter)
        else:
            self._fire(waiter)
        return waiter

    def stopService(self) -> Deferred[Any]:
        """
        Stop listening, close open connections, stop background services,
        then close the store.
        """
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        restore, self._restoreSIGHUP = self._restoreSIGHUP, None
        if restore is not None:
            restore()
        await super().stopService()
        await DeferredList([f.closeAll(self.reactor) for f in self._factories])
        if self._background.running or self._bound:
            await self._background.stopService()
        if self._context is not None and self._ready is not None:
            await self._context.store.stop()
        if self._ownThreads is not None:
            await self._ownThreads.stop()
        self._log.info("appnet stopped")


def openStore(
    config: Config, dataDir: DataDir, reactor: Any, now: Callable[[], float]
) -> IStore:
    """
    The store C{config} names, not yet started: SQLite in the data
    directory, or PostgreSQL when C{[store] url} is set (message bodies
    being read or received are then spooled under C{DATA/spool/}).

    @raise OSError: if the database password file cannot be read.
    """
    if not config.store.url:
        return SQLiteStore.open(
            dataDir.store.path,
            reactor,
            now=now,
            fileThreads=config.store.file_threads,
            databaseReaders=config.store.database_readers,
        )
    from appnet.store.pg import PostgreSQLStore, conninfoFor

    spool = dataDir.root.child("spool")
    spool.makedirs(ignoreExistingDirectory=True)
    return PostgreSQLStore.open(
        conninfoFor(config.store.url, config.store.password_file),
        reactor,
        spoolDir=spool.path,
        now=now,
        connections=config.store.connections,
        timeout=config.store.timeout,
    )
