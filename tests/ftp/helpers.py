"""
A deterministic FTP server for protocol tests: the real L{FTPServer},
realm, jail and authentication, with file I/O run inline, a
L{MemoryReactorClock} for time and data connections, and L{StringTransport}s
for every connection.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from appnet.auth import Authenticator, LoginThrottle, UserChecker, hashPassword
from appnet.ftp._files import inline
from appnet.ftp.data import DataConnection
from appnet.ftp.server import FTPServer, FTPServerFactory, ServerSettings
from appnet.ftp.shell import Accounts, FTPRealm, homeName
from appnet.store.memory import MemoryUserStore

ALICE = "alice@example.org"
PASSWORD = "pw-alice-1"


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    """A StringTransport that records C{startTLS} and what was sent before."""

    tlsStarted: Any = None
    beforeTLS: bytes = b""

    def startTLS(self, contextFactory: Any, normal: bool = True) -> None:
        self.tlsStarted = contextFactory
        self.beforeTLS = self.value()


class Harness:
    """
    One FTP server with one control connection.

    @ivar replies: every reply line the server sent, decoded.
    """

    def __init__(
        self,
        root: str,
        *,
        settings: ServerSettings | None = None,
        peer: str = "127.0.0.1",
        local: str = "127.0.0.1",
        quota: int | None = None,
        defaultQuota: int = 0,
        maxUpload: int = 0,
        rateLimit: int = 0,
        anonymousRoot: str | None = None,
        tlsOptions: Any = None,
        run: Callable[..., Any] = inline,
        connect: bool = True,
    ) -> None:
        self.root = root
        self.homes = os.path.join(root, "ftp")
        self.staging = os.path.join(self.homes, ".partial")
        os.makedirs(self.homes, exist_ok=True)
        self.clock = MemoryReactorClock()
        self.clock.advance(time.time())
        self.users = MemoryUserStore()
        self.users.addUser(ALICE, hashPassword(PASSWORD, log2n=4), quota=quota)
        self.accounts = Accounts(run, self.clock, rateLimit)
        self.realm = FTPRealm(
            homes=self.homes,
            staging=self.staging,
            users=self.users,
            run=run,
            clock=self.clock,
            accounts=self.accounts,
            defaultQuota=defaultQuota,
            maxUpload=maxUpload,
            anonymousRoot=anonymousRoot,
        )
        checker = UserChecker(self.users, None, inline)
        self.throttle = LoginThrottle(self.clock, maxFailures=3)
        self.auth = Authenticator(checker, self.throttle, self.clock, 0)
        self.settings = settings or ServerSettings(
            hostname="ftp.test", passivePorts=(30000, 30000), dataTimeout=10
        )
        self.factory = FTPServerFactory(
            self.settings,
            self.realm,
            lambda host: self.auth.portalFor(self.realm, host),
            self.clock,
            tlsOptions=tlsOptions,
        )
        self.peer = peer
        self.local = local
        self.replies: list[str] = []
        self._seen = 0
        if connect:
            self.connect()

    def _address(self, host: str, port: int) -> Any:
        if ":" in host:
            return IPv6Address("TCP", host, port)
        return IPv4Address("TCP", host, port)

    def connect(self) -> None:
        self.transport = TLSStringTransport(
            hostAddress=self._address(self.local, 21),
            peerAddress=self._address(self.peer, 50000),
        )
        self.protocol: FTPServer = self.factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)

    def session(self) -> Harness:
        """
        Another control connection to the same server: it shares the
        clock, realm and accounts (so the same user's sessions see each
        other's transfers), with its own transport and replies.
        """
        other = copy.copy(self)
        other.replies = []
        other._seen = 0
        other.connect()
        return other

    @property
    def home(self) -> str:
        return os.path.join(self.homes, homeName(ALICE))

    def path(self, *parts: str) -> str:
        return os.path.join(self.home, *parts)

    def write(self, relative: str, content: bytes) -> str:
        path = self.path(relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def read(self, relative: str) -> bytes:
        with open(self.path(relative), "rb") as f:
            return f.read()

    def received(self) -> list[str]:
        """Reply lines sent since the last call."""
        data = self.transport.value()
        text = data.decode("utf-8", "surrogateescape")
        lines = text.split("\r\n")
        assert lines[-1] == "", f"unterminated reply: {lines[-1]!r}"
        lines = lines[:-1]
        new = lines[self._seen :]
        self._seen = len(lines)
        self.replies.extend(new)
        return new

    def send(self, line: str | bytes) -> list[str]:
        """Send one command line; return the reply lines it produced."""
        raw = line if isinstance(line, bytes) else line.encode("utf-8")
        self.protocol.dataReceived(raw + b"\r\n")
        # A transfer's data starts a reactor turn after its 150.
        self.clock.advance(0)
        return self.received()

    def codes(self, line: str | bytes) -> list[int]:
        """Send a command; return the codes of the final reply lines."""
        return [
            int(x[:3]) for x in self.send(line) if x[:3].isdigit() and x[3:4] == " "
        ]

    def login(self) -> None:
        self.received()
        assert self.send(f"USER {ALICE}")[0].startswith("331")
        reply = self.send(f"PASS {PASSWORD}")
        assert reply[0].startswith("230"), reply

    # -- data connections ----------------------------------------------------

    def passive(self) -> Any:
        """PASV; return the factory listening for the data connection."""
        reply = self.send("PASV")
        assert reply[0].startswith("227"), reply
        return self.clock.tcpServers[-1][1]

    def acceptData(
        self, factory: Any = None, host: str | None = None
    ) -> tuple[DataConnection, StringTransport]:
        """A client connects to the passive port (from its own host)."""
        if factory is None:
            factory = self.clock.tcpServers[-1][1]
        address = self._address(host or self.peer, 40000)
        protocol = factory.buildProtocol(address)
        assert protocol is not None, "the data connection was refused"
        transport = StringTransport(
            hostAddress=self._address(self.local, 30000), peerAddress=address
        )
        protocol.makeConnection(transport)
        return protocol, transport

    def connectActive(self) -> tuple[DataConnection, StringTransport]:
        """The server's active connection (PORT/EPRT) succeeds."""
        host, port, factory, timeout, bind = self.clock.tcpClients[-1]
        address = self._address(host, port)
        protocol = factory.buildProtocol(address)
        transport = StringTransport(
            hostAddress=self._address(self.local, 20), peerAddress=address
        )
        protocol.makeConnection(transport)
        self.clock.advance(0)
        return protocol, transport

    def close(self, protocol: DataConnection, clean: bool = True) -> None:
        """The client closes a data connection (or it breaks)."""
        reason = ConnectionDone() if clean else ConnectionLost()
        protocol.connectionLost(Failure(reason))
        self.clock.advance(0)

    def upload(self, command: str, content: bytes, clean: bool = True) -> list[str]:
        """
        Send C{content} with C{command} (STOR, APPE, STOU) over a passive
        data connection that then closes; every reply line since.
        """
        self.passive()
        data, _ = self.acceptData()
        reply = self.send(command)
        data.dataReceived(content)
        self.close(data, clean)
        return reply + self.received()

    def files(self, directory: str = "") -> Mapping[str, bytes]:
        result = {}
        base = self.path(directory)
        for here, _, names in os.walk(base):
            for name in names:
                path = os.path.join(here, name)
                with open(path, "rb") as f:
                    result[os.path.relpath(path, base)] = f.read()
        return result
