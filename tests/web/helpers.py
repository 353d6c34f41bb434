"""
An in-memory web server for protocol tests: the real site, channel and
resources built by the real builder, over L{StringTransport}, with a
L{MemoryStore}, a L{MemoryReactorClock} and synchronous password checks.
"""

from __future__ import annotations

import http.client
import io
import os
from collections.abc import Mapping
from typing import Any

from attrs import define, field
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from zope.interface import directlyProvides

from appnet.auth import Authenticator, LoginThrottle, UserChecker, hashPassword
from appnet.config import loadConfig
from appnet.datadir import DataDir
from appnet.listen import AddressBook
from appnet.stack import StackContext
from appnet.status import Status
from appnet.store.memory import MemoryStore
from appnet.testing import TEST_HASH_COST
from appnet.web.server import WebContext, WebSite, buildWeb


@define
class Response:
    """A parsed HTTP response."""

    status: int
    reason: str
    headers: dict[str, list[str]]
    body: bytes
    version: int

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


class _Unclosable(io.BytesIO):
    def close(self) -> None:
        pass


class _Socket:
    def __init__(self, data: bytes) -> None:
        self.file = _Unclosable(data)

    def makefile(self, *args: Any, **kwargs: Any) -> io.BytesIO:
        return self.file


def parseResponses(data: bytes, methods: list[str] | None = None) -> list[Response]:
    """Parse every HTTP response in C{data} (HEAD ones named in C{methods})."""
    sock = _Socket(data)
    responses = []
    i = 0
    while sock.file.tell() < len(data):
        method = methods[i] if methods and i < len(methods) else "GET"
        r = http.client.HTTPResponse(sock, method=method)  # type: ignore[arg-type]
        r.begin()
        headers: dict[str, list[str]] = {}
        for name, value in r.getheaders():
            headers.setdefault(name.lower(), []).append(value)
        body = r.read()
        responses.append(Response(r.status, r.reason, headers, body, r.version))
        i += 1
    return responses


@define
class Harness:
    """One in-memory web server."""

    site: WebSite
    web: WebContext
    clock: MemoryReactorClock
    store: MemoryStore
    status: Status
    root: str
    connections: list[Connection] = field(factory=list)

    def connect(self, host: str = "127.0.0.1", secure: bool = False) -> Connection:
        addr = IPv4Address("TCP", host, 50000 + len(self.connections))
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080), peerAddress=addr
        )
        if secure:
            directlyProvides(transport, ISSLTransport)
            transport.setTcpNoDelay = lambda enabled: None  # type: ignore[attr-defined]
        protocol = self.site.buildProtocol(addr)
        protocol.makeConnection(transport)
        connection = Connection(protocol, transport)
        self.connections.append(connection)
        return connection

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] = {},
        body: bytes = b"",
        secure: bool = False,
        host: str = "127.0.0.1",
    ) -> Response:
        """Send one request on a new connection and return the response."""
        connection = self.connect(host, secure)
        connection.send(raw(method, path, headers, body))
        responses = connection.responses([method])
        assert len(responses) == 1, responses
        return responses[0]

    def write(self, path: str, data: bytes) -> str:
        full = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
        return full

    async def addUser(self, address: str, password: str, admin: bool = False) -> None:
        await self.store.users.addUser(
            address, hashPassword(password, log2n=TEST_HASH_COST), admin
        )


@define
class Connection:
    protocol: Any
    transport: StringTransport

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def responses(self, methods: list[str] | None = None) -> list[Response]:
        return parseResponses(self.transport.value(), methods)

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


def raw(
    method: str,
    path: str,
    headers: Mapping[str, str] = {},
    body: bytes = b"",
    version: str = "HTTP/1.1",
) -> bytes:
    """A request as bytes (Host added unless given; Content-Length for a body)."""
    lines = [f"{method} {path} {version}"]
    names = {k.lower() for k in headers}
    if "host" not in names:
        lines.append("Host: 127.0.0.1:8080")
    for name, value in headers.items():
        lines.append(f"{name}: {value}")
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def harness(
    testCase: Any,
    http: Mapping[str, Any] = {},
    inThread: Any = None,
    **overrides: Any,
) -> Harness:
    """
    Build the web component over memory for C{testCase}, with C{[http]}
    overrides, its root in a fresh temporary directory; password checks
    run through C{inThread} (default: at once).
    """
    data = testCase.mktemp()
    os.makedirs(os.path.join(data, "www"))
    raw = {"data": data, "hostname": "appnet.test", "http": dict(http)}
    raw.update(overrides)
    config = loadConfig(None, raw)
    clock = MemoryReactorClock()
    store = MemoryStore()
    checker = UserChecker(store.users, None, inThread or (lambda f, *a: succeed(f(*a))))
    throttle = LoginThrottle(
        clock,
        maxFailures=config.auth.max_failures,
        maxAccountFailures=config.auth.max_account_failures,
        window=config.auth.window,
        maxAddressFailures=config.auth.max_address_failures,
    )
    auth = Authenticator(checker, throttle, clock, config.auth.failure_delay)
    status = Status(clock)
    ctx = StackContext(
        config=config,
        dataDir=DataDir.at(data),
        reactor=clock,
        store=store,
        auth=auth,
        tls=None,
        status=status,
        addresses=AddressBook(),
    )
    component = buildWeb(ctx)
    site = component.listening[0].factory
    assert isinstance(site, WebSite) and site.web is not None
    site.startFactory()
    testCase.addCleanup(site.stopFactory)
    root = config.http.root or os.path.join(data, "www")
    return Harness(site, site.web, clock, store, status, root)


async def runCommand(
    argv: list[str], cwd: str = ".", env: dict[str, str] | None = None
) -> Any:
    """
    Run an external program (curl) without blocking the reactor; return
    its L{tests.process.Outcome}.
    """

    from twisted.internet import reactor

    from tests.interop import need
    from tests.process import Collector

    program = need(argv[0])
    collector = Collector()
    environ = dict(os.environ)
    environ.update(env or {})
    reactor.spawnProcess(  # type: ignore[attr-defined]
        collector, program, [program, *argv[1:]], env=environ, path=cwd
    )
    return await collector.ended
