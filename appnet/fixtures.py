"""
One fixture for every protocol: L{start} runs the services a test names,
in-process on ephemeral loopback ports, with the accounts, zones and files
it gives, on a virtual clock; L{Services} says where each listens, opens
client sessions it closes itself, scripts faults and shows what arrived.
Re-exported by L{appnet.testing}, whose docstring has the examples.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from attrs import define, field, fields_dict, frozen
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import Clock
from twisted.mail.pop3 import AdvancedPOP3Client as POP3Client

from appnet.config import DNSConfig
from appnet.faults import Faults
from appnet.stack import Component, StackContext

__all__ = ["Address", "SeenRequest", "Services", "start"]

T = TypeVar("T")
P = ParamSpec("P")


def _deferred(
    f: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Deferred[T]]:
    """Deferreds at the API, for Deferred-style and async tests alike."""

    @functools.wraps(f)
    def wrapper(*args: P.args, **kw: P.kwargs) -> Deferred[T]:
        return Deferred.fromCoroutine(f(*args, **kw))

    return wrapper


#: What each service name needs built; C{"mail"} is all four mail ports.
_BUILDERS = {
    "dns": "appnet.dns.server:buildDNS",
    "smtp": "appnet.mail.server:buildMail",
    "submission": "appnet.mail.server:buildMail",
    "pop3": "appnet.mail.server:buildMail",
    "imap": "appnet.mail.server:buildMail",
    "ftp": "appnet.ftp.server:build",
    "http": "appnet.web.server:buildWeb",
}
_GROUPS = {"mail": ("smtp", "submission", "pop3", "imap")}


class Address(tuple):
    """
    C{(host, port)} of a single-service fixture, as the old C{address}
    property gave it. Call it (C{fixture.address()}), as on every other
    fixture (C{services.address("smtp")}); using it as a tuple directly
    is deprecated.
    """

    def __new__(cls, host: str, port: int) -> Address:
        return super().__new__(cls, (host, port))

    def __call__(self, service: str | None = None) -> tuple[str, int]:
        """The plain C{(host, port)}."""
        return (tuple.__getitem__(self, 0), tuple.__getitem__(self, 1))

    def _deprecated(self) -> None:
        warnings.warn(
            "the address property is deprecated: call it, fixture.address()",
            DeprecationWarning,
            stacklevel=3,
        )

    def __iter__(self) -> Any:
        self._deprecated()
        return iter(self())

    def __getitem__(self, index: Any) -> Any:
        self._deprecated()
        return self()[index]


@frozen
class SeenRequest:
    """
    An HTTP request the server answered.

    @ivar method: C{"GET"} ...
    @ivar path: the path with its query.
    @ivar code: the response status.
    @ivar headers: the request headers, names in lower case.
    @ivar body: the request body.
    """

    method: str
    path: str
    code: int
    headers: Mapping[str, str]
    body: bytes = b""


def _requestSeen(request: Any) -> SeenRequest:
    headers = {
        k.decode("latin-1").lower(): b", ".join(v).decode("latin-1")
        for k, v in request.requestHeaders.getAllRawHeaders()
    }
    body = b""
    content = getattr(request, "content", None)
    if content is not None:
        try:
            content.seek(0)
            body = content.read()
        except (OSError, ValueError):
            body = b""
    return SeenRequest(
        request.method.decode("latin-1"),
        request.uri.decode("latin-1"),
        int(request.code),
        headers,
        body,
    )


@define
class Services:
    """
    Running services and what a test needs from them (see L{start}).

    @ivar running: the L{appnet.testing.RunningStack}.
    @ivar clock: the virtual clock of every long wait (queue retries,
        protocol idle timeouts, DNS TTLs, fault delays); L{advance} moves it.
    @ivar passwords: each account's password.
    @ivar dnsQueries: every DNS query the server received, oldest first.
    @ivar httpRequests: every HTTP request answered, oldest first.
    """

    running: Any
    clock: Any
    passwords: dict[str, str]
    names: tuple[str, ...]
    dnsQueries: list[Any] = field(factory=list)
    httpRequests: list[SeenRequest] = field(factory=list)
    _web: Any = None
    _dnsService: Any = None
    _sessions: list[Any] = field(factory=list)
    _root: str | None = None
    _stopped: bool = False

    # Where things are.

    @property
    def stack(self) -> Any:
        """The L{appnet.stack.Stack}."""
        return self.running.stack

    @property
    def store(self) -> Any:
        """The stack's store."""
        return self.running.store

    @property
    def faults(self) -> Faults:
        """The stack's scripted faults (L{appnet.faults.Faults})."""
        faults: Faults = self.stack.context.faults
        return faults

    def address(self, service: str, transport: str = "tcp") -> tuple[str, int]:
        """
        C{(host, port)} where C{service} listens (DNS: UDP and TCP share
        it).

        @raise KeyError: if it was not started.
        """
        if service == "dns" and transport == "tcp":
            transport = "udp"
        return self.running.address(service, transport)

    def url(self, path: str = "/") -> str:
        """An absolute C{http://} URL on the web server."""
        return self.web.url(path)

    @property
    def web(self) -> Any:
        """The web server's L{appnet.web.testing.RunningWeb}."""
        if self._web is None:
            raise KeyError("http was not started")
        return self._web

    def attach(self, dnsService: Any, web: Any) -> None:
        """
        Take the started DNS service (its queries are recorded in
        L{dnsQueries}) and web server, either C{None} if not started.
        """
        self._dnsService, self._web = dnsService, web
        if dnsService is not None and dnsService.factory is not None:
            dnsService.factory.observers.append(self.dnsQueries.append)

    @property
    def dns(self) -> Any:
        """The DNS server's L{appnet.dns.testing.RunningDNS}."""
        from appnet.dns.testing import RunningDNS

        if self._dnsService is None:
            raise KeyError("dns was not started")
        return RunningDNS(
            self._dnsService, self.stack.status, self.stack.reactor, self.dnsQueries
        )

    @property
    def ftp(self) -> Any:
        """The FTP server's L{appnet.ftp.testing.RunningFTP}."""
        from appnet.ftp.testing import RunningFTP

        return RunningFTP(self.running)

    @property
    def mail(self) -> Any:
        """The mail side as a L{appnet.mail.testing.MailStack}."""
        from appnet.mail.testing import MailStack

        return MailStack(self.running, self.passwords)

    # Accounts.

    @_deferred
    async def addUser(self, address: str, password: str) -> None:
        """Create an account with this password."""
        await self.running.addUser(address, password)
        self.passwords[address] = password

    # What arrived.

    @_deferred
    async def deliveredTo(self, address: str) -> list[Any]:
        """
        The messages in the INBOX mail for C{address} reaches, oldest first
        (L{appnet.mail.testing.StoredMessage}: C{.message["Subject"]}).
        """
        result: list[Any] = await self.mail.deliveredTo(address)
        return result

    @_deferred
    async def messages(self, address: str, folder: str = "INBOX") -> list[Any]:
        """The messages in one folder of an account, with their flags."""
        result: list[Any] = await self.mail.messages(address, folder)
        return result

    @_deferred
    async def queued(self) -> list[Any]:
        """Messages waiting in the outgoing queue."""
        return list(await self.store.queue.list())

    @_deferred
    async def caught(self, **query: str) -> list[Any]:
        """
        The mail catcher's messages (C{catch=True}) matching C{query}
        (C{to}, C{from}, C{subject}, C{text}, C{q}).
        """
        return await self._catcher().messages(query)

    @_deferred
    async def waitForMail(self, timeout: float = 10.0, **query: str) -> Any:
        """The next caught message matching C{query}, or C{None}."""
        return await self._catcher().wait(query, timeout)

    def _catcher(self) -> Any:
        from appnet.mail.catcher import Catcher

        return Catcher(self.store, self.stack.reactor)

    def files(self, user: str) -> dict[str, bytes]:
        """
        Every file in an FTP home (uploads included), relative path to
        content; C{"anonymous"} for the anonymous area.
        """
        home = self.ftp.home(user)
        found: dict[str, bytes] = {}
        for directory, dirs, names in os.walk(home):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                path = os.path.join(directory, name)
                with open(path, "rb") as f:
                    found[os.path.relpath(path, home)] = f.read()
        return found

    def uploaded(self, user: str, path: str) -> bytes:
        """One file of an FTP home."""
        return self.files(user)[path.lstrip("/")]

    # Sessions, closed by the fixture.

    @_deferred
    async def imap(self, address: str) -> Any:
        """A logged-in L{appnet.mail.imapclient.IMAPSession}."""
        session = await self.mail.imap(address)
        self._sessions.append(session.logout)
        return session

    @_deferred
    async def pop3(self, address: str) -> POP3Client:
        """A logged-in Twisted L{POP3Client}."""
        host, port = self.address("pop3")
        endpoint = TCP4ClientEndpoint(self.stack.reactor, host, port)
        client = await connectProtocol(endpoint, POP3Client())
        client.allowInsecureLogin = True
        self._sessions.append(lambda: _closeTransport(client))
        await client.login(address.encode(), self.passwords[address].encode())
        return client

    @_deferred
    async def ftpClient(self, user: str) -> Any:
        """A logged-in L{appnet.ftp.client.FTPClient}."""
        from appnet.ftp.client import connectFTP

        host, port = self.address("ftp")
        client = await connectFTP(
            self.stack.reactor,
            host,
            port,
            user=user,
            password=self.passwords.get(user, "anonymous@"),
            timeout=10,
        )
        self._sessions.append(lambda: _closeFTP(client))
        return client

    def dnsClient(self, **kw: Any) -> Any:
        """A L{appnet.dns.client.DNSClient} asking the DNS server."""
        from appnet.dns.client import DNSClient

        kw.setdefault("timeout", 2.0)
        return DNSClient(self.stack.reactor, [self.address("dns")], **kw)

    # Time.

    @_deferred
    async def advance(
        self,
        seconds: float = 0,
        *,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
    ) -> None:
        """
        Move the virtual clock forward by the sum, stopping at every
        scheduled event on the way and letting what it starts (a queue
        run's deliveries) finish first.
        """
        clock = self.clock
        target = clock.seconds() + seconds + 60 * minutes + 3600 * hours + 86400 * days
        await self.settle()
        while True:
            due = [
                c.getTime() for c in clock.getDelayedCalls() if c.getTime() <= target
            ]
            if not due:
                break
            clock.advance(max(0.0, min(due) - clock.seconds()))
            await self.settle()
        clock.advance(max(0.0, target - clock.seconds()))
        await self.settle()

    @_deferred
    async def settle(self) -> None:
        """Wait until the mail queue has nothing in hand."""
        try:
            runner = self.stack.backgroundService("mail-queue")
        except KeyError:
            return
        await runner.whenIdle()

    # The end.

    def stop(self) -> Deferred[None]:
        """Close sessions, stop everything, remove the data (idempotent)."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        sessions, self._sessions = self._sessions, []
        for close in reversed(sessions):
            try:
                await close()
            except Exception:
                pass  # The server may have gone (a scripted BYE): fine.
        if self._web is not None:
            await self._web.stop()
        await self.running.stop()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)


async def _closeTransport(client: Any) -> None:
    if client.transport is not None:
        client.transport.loseConnection()


async def _closeFTP(client: Any) -> None:
    try:
        await client.quit()
    finally:
        control = getattr(client, "control", None)
        transport = getattr(control, "transport", None)
        if transport is not None:
            transport.loseConnection()


def _expand(names: Sequence[str]) -> tuple[str, ...]:
    result: list[str] = []
    for name in names:
        for one in _GROUPS.get(name, (name,)):
            if one not in _BUILDERS:
                known = ", ".join([*_BUILDERS, *_GROUPS])
                raise ValueError(f"unknown service {one!r}; choose from {known}")
            if one not in result:
                result.append(one)
    if not result:
        raise ValueError("name the services to start: start(self, 'smtp', ...)")
    return tuple(result)


def _write(root: str, files: Mapping[str, bytes | str]) -> None:
    for relative, content in files.items():
        path = os.path.join(root, relative.lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = content.encode("utf-8") if isinstance(content, str) else content
        with open(path, "wb") as f:
            f.write(data)


@_deferred
async def start(
    testCase: Any,
    *services: str,
    users: Mapping[str, str] = {},
    zones: Mapping[str, str] = {},
    files: Mapping[str, Mapping[str, bytes | str]] = {},
    www: Mapping[str, bytes | str] = {},
    config: Mapping[str, Any] = {},
    catch: bool = False,
    tls: bool = False,
    clock: Any = None,
    reactor: Any = None,
) -> Services:
    """
    Start C{services} (C{"smtp"}, C{"submission"}, C{"pop3"}, C{"imap"},
    C{"mail"} for all four, C{"dns"}, C{"ftp"}, C{"http"}) and nothing
    else, each on an ephemeral loopback port.

    @param testCase: a trial C{TestCase} (or C{None}); its cleanup stops
        everything, sessions included.
    @param users: accounts, address to password.
    @param zones: DNS zone text by origin.
    @param files: FTP files: account (or C{"anonymous"}) to relative path
        to content.
    @param www: web root files, relative path to content.
    @param config: TOML-shaped overrides (C{{"mail": {"retry": ["1m"]}}}).
    @param catch: the mail catcher (C{[mail] catch}): accept and keep mail
        to any address.
    @param tls: a self-signed certificate for C{localhost}, so STARTTLS,
        STLS and AUTH TLS are offered.
    @param clock: the clock of long waits; default a virtual L{Clock} at
        the current time (C{services.clock}, C{services.advance}); pass the
        reactor for real time.
    """
    from appnet.config import mergeTables
    from appnet.dns.server import buildDNS
    from appnet.ftp.shell import homeName
    from appnet.testing import startStack
    from appnet.tls import writeSelfSigned
    from appnet.web.server import buildWeb

    if isinstance(users, (list, tuple, set, frozenset)):
        raise TypeError("users: give each account its password, {address: password}")
    names = _expand(services)
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    if clock is None:
        clock = Clock()
        clock.advance(time.time())
    root = tempfile.mkdtemp(prefix="appnet-test-")
    seen = Services(None, clock, dict(users), names, root=root)
    try:
        if zones:
            _write(
                os.path.join(root, "zones"), {f"{o}.zone": t for o, t in zones.items()}
            )
        for user, entries in files.items():
            home = "anonymous" if user == "anonymous" else homeName(user)
            _write(os.path.join(root, "ftp", home), entries)
        if www:
            _write(os.path.join(root, "www"), www)
        if tls:
            writeSelfSigned(
                os.path.join(root, "tls", "cert.pem"),
                os.path.join(root, "tls", "key.pem"),
                "localhost",
            )
        settings: dict[str, Any] = {
            name: {"enabled": False} for name in _BUILDERS if name not in names
        }
        settings["dns"] = {**settings.get("dns", {}), "rate_limit": 0}
        # Fast paths answer before faults and recorders see a request:
        # off in fixtures, where they exist.
        if "answer_cache_size" in fields_dict(DNSConfig):
            settings["dns"]["answer_cache_size"] = 0
        if "ftp" in names:
            settings["ftp"] = {"passive_ports": "0", "data_timeout": "10s"}
        mail: dict[str, Any] = settings.setdefault("mail", {})
        if catch:
            mail["catch"] = True
        if isinstance(clock, Clock):
            # Polling for other processes' queue changes is pointless in a
            # test, and would make advance() stop every 10 virtual seconds.
            mail["queue_poll"] = "1d"
        if files.get("anonymous"):
            settings.setdefault("ftp", {})["anonymous"] = True
        overrides = mergeTables(settings, config)
        contexts: list[Any] = []
        dnsServices: list[Any] = []

        def web(ctx: StackContext) -> Component:
            component = buildWeb(ctx)
            site: Any = component.listening[0].factory
            # Every request takes the full path, where faults and the
            # requests seen are (a static fast path, if any, is skipped).
            site.fast = None
            site.observers.append(lambda r: seen.httpRequests.append(_requestSeen(r)))
            contexts.append(site.web)
            return component

        def dns(ctx: StackContext) -> Component:
            component: Component = buildDNS(ctx)
            dnsServices.extend(component.services)
            return component

        builders: list[Any] = []
        for name in names:
            builder: Any = _BUILDERS[name]
            if name == "http":
                builder = web
            elif name == "dns":
                builder = dns
            if builder not in builders:
                builders.append(builder)
        running = await startStack(
            None,
            config=overrides,
            users=users,
            builders=builders,
            reactor=reactor,
            dataDir=root,
            clock=clock,
        )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    seen.running = running
    if testCase is not None:
        testCase.addCleanup(seen.stop)
    runningWeb = None
    if contexts:
        from twisted.python.filepath import FilePath

        from appnet.web.testing import RunningWeb

        host, port = running.address("http")
        webRoot = FilePath(running.config.http.root or running.dataDir.www.path)
        runningWeb = RunningWeb(running, contexts[0], f"http://{host}:{port}", webRoot)
    seen.attach(dnsServices[-1] if dnsServices else None, runningWeb)
    return seen
