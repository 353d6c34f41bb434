"""
A web server inside a test: L{startWeb} starts the web component of a
stack on an ephemeral loopback port (plain HTTP, or HTTPS with a fresh
self-signed certificate), with the files and accounts you give, and
returns a L{RunningWeb} that builds URLs, treq clients that trust the
certificate, and logged-in sessions::

    from twisted.trial.unittest import TestCase
    from appnet.testing import startWeb

    class MyTest(TestCase):
        async def test_page(self) -> None:
            web = await startWeb(self, files={"index.html": b"<h1>hi</h1>"})
            response = await web.client().get(web.url("/"))
            self.assertEqual(response.code, 200)

Everything (ports, connection pools, threads, the data directory) is gone
after the test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import define, field, frozen
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.web.client import HTTPConnectionPool

from appnet.fixtures import Address
from appnet.stack import Builder, Component, StackContext
from appnet.status import Status
from appnet.testing import RunningStack, startStack
from appnet.tls import writeSelfSigned
from appnet.web.client import makeClient
from appnet.web.server import Mount, WebContext, webBuilder
from appnet.web.sessions import COOKIE, SECURE_COOKIE, WebSession

__all__ = ["BrowserSession", "RunningWeb", "startWeb"]


@frozen
class BrowserSession:
    """
    A logged-in session, as a browser would hold it.

    @ivar cookie: the value for a C{Cookie} request header.
    @ivar csrfToken: the token for C{X-CSRF-Token} or the C{csrf_token}
        form field.
    @ivar session: the session itself.
    """

    cookie: str
    csrfToken: str
    session: WebSession

    def headers(self) -> dict[str, str]:
        """Headers for an API request in this session (unsafe methods too)."""
        return {"Cookie": self.cookie, "X-CSRF-Token": self.csrfToken}


@define
class RunningWeb:
    """
    A running web server and what a test needs to talk to it.

    @ivar stack: the stack fixture it runs in.
    @ivar web: the web component's context (sessions, login, root).
    @ivar baseURL: C{http://127.0.0.1:PORT} (or C{https://localhost:PORT}).
    @ivar www: the web root.
    @ivar certificatePEM: the server's certificate, when it speaks TLS.
    """

    stack: RunningStack
    web: WebContext
    baseURL: str
    www: FilePath[str]
    certificatePEM: bytes | None = None
    _pools: list[HTTPConnectionPool] = field(factory=list)
    _tempDir: str | None = None

    @property
    def status(self) -> Status:
        """The stack's counters."""
        return self.stack.stack.status

    @property
    def address(self) -> Address:
        """
        C{(host, port)} of the web listener: call it, C{web.address()}
        (the tuple form is deprecated).
        """
        return Address(*self.stack.address("http"))

    def url(self, path: str = "/") -> str:
        """An absolute URL on this server."""
        return self.baseURL + (path if path.startswith("/") else "/" + path)

    def put(self, path: str, data: bytes) -> FilePath[str]:
        """Write a file under the web root (directories are created)."""
        target = self.www.preauthChild(path)
        target.parent().makedirs(ignoreExistingDirectory=True)
        target.setContent(data)
        return target

    def client(self, persistent: bool = False) -> HTTPClient:
        """
        A treq client that trusts this server's certificate; with
        C{persistent}, its connections are kept alive (and closed when the
        test ends).
        """
        from twisted.internet import reactor

        pool = None
        if persistent:
            pool = HTTPConnectionPool(reactor, persistent=True)
            self._pools.append(pool)
        return makeClient(reactor, trust=self.certificatePEM, pool=pool)

    async def session(self, account: str) -> BrowserSession:
        """
        A logged-in session for C{account}, made directly in the store (no
        password needed).
        """
        token, session = await self.web.sessions.create(account)
        name = SECURE_COOKIE if self.certificatePEM else COOKIE
        return BrowserSession(f"{name.decode()}={token}", session.csrfToken, session)

    async def addUser(self, address: str, password: str, admin: bool = False) -> None:
        """Create an account."""
        await self.stack.addUser(address, password, admin)

    def stop(self) -> Deferred[None]:
        """Close pooled connections, stop the stack, remove its data."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        pools, self._pools = self._pools, []
        for pool in pools:
            await pool.closeCachedConnections()
        await self.stack.stop()
        if self._tempDir is not None:
            shutil.rmtree(self._tempDir, ignore_errors=True)
            self._tempDir = None


async def startWeb(
    testCase: Any = None,
    *,
    files: Mapping[str, bytes] = {},
    users: Mapping[str, str] = {},
    config: Mapping[str, Any] = {},
    tls: bool = False,
    mounts: Sequence[str | Mount] | None = None,
    builders: Sequence[str | Builder] = (),
    reactor: Any = None,
) -> RunningWeb:
    """
    Start a web server on an ephemeral loopback port.

    @param testCase: a trial C{TestCase}; if given, everything is stopped
        by its cleanup.
    @param files: web root content, relative path to bytes.
    @param users: accounts to create, address to password.
    @param config: TOML-shaped overrides (C{{"http": {"hsts": 3600}}}).
    @param tls: serve HTTPS with a fresh self-signed certificate for
        C{localhost}.
    @param mounts: applications to attach (default: L{MOUNTS}).
    @param builders: more stack components to run beside the web one
        (webmail needs the mail component).
    """
    dataDir = tempfile.mkdtemp(prefix="appnet-web-")
    overrides: dict[str, Any] = {k: v for k, v in config.items()}
    pem = None
    if tls:
        cert = os.path.join(dataDir, "tls", "cert.pem")
        key = os.path.join(dataDir, "tls", "key.pem")
        writeSelfSigned(cert, key, "localhost")
        with open(cert, "rb") as f:
            pem = f.read()
        http = dict(overrides.get("http", {}))
        http["listen"] = [f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"]
        overrides["http"] = http
    contexts: list[WebContext] = []
    buildWeb = webBuilder(mounts)

    def build(ctx: StackContext) -> Component:
        component = buildWeb(ctx)
        contexts.append(component.listening[0].factory.web)  # type: ignore[attr-defined]
        return component

    try:
        stack = await startStack(
            None,
            config=overrides,
            users=users,
            builders=[build, *builders],
            reactor=reactor,
            dataDir=dataDir,
        )
    except BaseException:
        shutil.rmtree(dataDir, ignore_errors=True)
        raise
    host, port = stack.address("http")
    base = f"https://localhost:{port}" if tls else f"http://{host}:{port}"
    www = FilePath(stack.config.http.root or stack.dataDir.www.path)
    running = RunningWeb(stack, contexts[0], base, www, pem, tempDir=dataDir)
    if testCase is not None:
        testCase.addCleanup(running.stop)
    for path, data in files.items():
        running.put(path, data)
    return running
