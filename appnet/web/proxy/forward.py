"""
The forward proxy (off by default): absolute-form requests
(C{GET http://host/path}) through the same cache as the reverse proxy, and
C{CONNECT} tunnels. Only clients in the allowed networks may use it,
C{CONNECT} only reaches the allowed ports, and no request reaches a denied
address or one of the stack's own listeners; names are resolved first and
the checked address is the one connected to, so DNS cannot steer the proxy
around its ACL.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
)
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from appnet.address import ipAddress
from appnet.config import parseHostPort
from appnet.listen import hostOf
from appnet.web.proxy.engine import ProxyEngine, Route
from appnet.web.proxy.upstream import Upstream

__all__ = ["ForwardPolicy", "ForwardProxy", "Tunnel"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], "Deferred[list[str]]"]

#: Bytes a client may send into a tunnel before the upstream is connected.
PENDING_LIMIT = 64 * 1024

#: Upstreams (address, port) whose connection pools are kept.
UPSTREAMS_KEPT = 64


@define
class ForwardPolicy:
    """
    Who may use the forward proxy, and where it may connect.

    @ivar clients: client networks allowed to use it.
    @ivar deny: destination networks it never connects to.
    @ivar connectPorts: the ports C{CONNECT} may reach.
    @ivar listeners: the stack's own listening C{(host, port)} pairs, read
        at each request.
    """

    clients: Sequence[Network]
    deny: Sequence[Network]
    connectPorts: frozenset[int]
    listeners: Callable[[], Iterable[tuple[str, int]]]

    def clientAllowed(self, host: str) -> bool:
        """May a client at C{host} use the proxy?"""
        address = ipAddress(host)
        return address is not None and any(address in n for n in self.clients)

    def targetProblem(self, host: str, port: int) -> str | None:
        """Why the proxy must not connect to C{host}:C{port}, or C{None}."""
        address = ipAddress(host)
        if address is None:
            return "not an address"
        if any(address in n for n in self.deny):
            return "the destination is not allowed"
        for listenHost, listenPort in self.listeners():
            if listenPort != port:
                continue
            bound = ipAddress(listenHost)
            if (
                bound is None
                or bound == address
                or bound.is_unspecified
                and (address.is_loopback or address.is_unspecified)
            ):
                return "the destination is this server"
        if address.is_unspecified or address.is_multicast:
            return "the destination is not allowed"
        return None


def systemResolver(inThread: Callable[..., Deferred[Any]]) -> Resolver:
    """Resolve names with the system's resolver, in a thread."""

    def lookup(host: str, port: int) -> list[str]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]

    def resolve(host: str, port: int) -> Deferred[list[str]]:
        if ipAddress(host) is not None:
            return Deferred.fromCoroutine(_literal(host))
        d: Deferred[list[str]] = inThread(lookup, host, port)
        return d

    return resolve


async def _literal(host: str) -> list[str]:
    return [host]


@implementer(IPushProducer)
class _ReadPacer:
    """Pauses reading from one side while the other cannot keep up."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def pauseProducing(self) -> None:
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._transport.resumeProducing()

    def stopProducing(self) -> None:
        self._transport.loseConnection()


class _UpstreamSide(Protocol):
    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel

    def dataReceived(self, data: bytes) -> None:
        self.tunnel.fromUpstream(data)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self.tunnel.upstreamLost()


class Tunnel:
    """
    A C{CONNECT} tunnel: the client's bytes to the upstream connection and
    back, paced both ways, closed after C{idleTimeout} without traffic.
    """

    _log = Logger()

    def __init__(self, request: Request, reactor: Any, idleTimeout: float) -> None:
        self.request = request
        self.client: Any = request.channel.transport
        self.upstream: Any = None
        self.pending: list[bytes] = []
        self.pendingSize = 0
        self.closed = False
        self.sent = 0
        self.received = 0
        self._reactor = reactor
        self._idleTimeout = idleTimeout
        self._timer: IDelayedCall | None = None

    def _touch(self) -> None:
        if not self._idleTimeout:
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(self._idleTimeout)
        else:
            self._timer = self._reactor.callLater(self._idleTimeout, self.close)

    # From the client (through the channel's hook).

    def dataReceived(self, data: bytes) -> None:
        """Bytes from the client."""
        self.sent += len(data)
        self._touch()
        if self.upstream is not None:
            self.upstream.write(data)
            return
        self.pending.append(data)
        self.pendingSize += len(data)
        if self.pendingSize > PENDING_LIMIT:
            self.client.pauseProducing()

    def connectionLost(self, reason: Failure) -> None:
        """The client went away."""
        self.close()

    # Upstream.

    def connected(self, upstream: Any) -> None:
        """The upstream connection is up: say 200 and start relaying."""
        self.upstream = upstream
        self.client.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        self.request.registerProducer(upstream, True)
        upstream.registerProducer(_ReadPacer(self.client), True)
        pending, self.pending = self.pending, []
        for data in pending:
            upstream.write(data)
        if self.pendingSize > PENDING_LIMIT:
            self.client.resumeProducing()
        self.pendingSize = 0
        self._touch()

    def fromUpstream(self, data: bytes) -> None:
        """Bytes from the upstream."""
        self.received += len(data)
        self._touch()
        self.client.write(data)

    def upstreamLost(self) -> None:
        """The upstream closed."""
        self.close()

    def close(self) -> None:
        """Close both sides."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self.upstream is not None:
            self.upstream.loseConnection()
        self.client.loseConnection()


@define
class ForwardProxy:
    """
    Serves absolute-form and C{CONNECT} requests for allowed clients.
    """

    engine: ProxyEngine
    policy: ForwardPolicy
    resolve: Resolver
    reactor: Any
    connectTimeout: float
    readTimeout: float
    idleTimeout: float
    cache: bool = True
    _routes: OrderedDict[tuple[str, int], Route] = field(
        factory=OrderedDict, init=False
    )
    _log = Logger()

    @staticmethod
    def handles(request: Request) -> bool:
        """Is this a forward proxy request (absolute-form or C{CONNECT})?"""
        return request.method == b"CONNECT" or request.uri[:7].lower() == b"http://"

    def render(self, request: Request) -> int:
        """Answer a forward proxy request."""
        self.engine.watch(request)
        d = Deferred.fromCoroutine(self._handle(request))
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    def _failed(self, reason: Failure, request: Request) -> None:
        self._log.failure("Forward proxying {uri} failed", reason, uri=request.uri)
        self.engine.fail(request, 502, "The proxy failed; it has been logged.")

    def close(self) -> Deferred[Any]:
        """Close the kept-alive upstream connections."""
        from twisted.internet.defer import gatherResults

        routes, self._routes = list(self._routes.values()), OrderedDict()
        return gatherResults([r.upstream.pool.closeCachedConnections() for r in routes])

    def _route(self, address: str, port: int) -> Route:
        key = (address, port)
        route = self._routes.get(key)
        if route is None:
            host = f"[{address}]" if ":" in address else address
            upstream = Upstream.create(
                self.reactor,
                f"http://{host}:{port}",
                connectTimeout=self.connectTimeout,
                readTimeout=self.readTimeout,
            )
            route = Route(b"/", None, upstream, self.cache)
            self._routes[key] = route
            while len(self._routes) > UPSTREAMS_KEPT:
                _, old = self._routes.popitem(last=False)
                old.upstream.pool.closeCachedConnections()
        self._routes.move_to_end(key)
        return route

    async def _destination(self, request: Request, host: str, port: int) -> str | None:
        """A checked address for C{host}, or C{None} after answering 403/502."""
        try:
            addresses = await self.resolve(host, port)
        except Exception:
            self.engine.fail(request, 502, f"Cannot resolve {host}.")
            return None
        problem = "no address"
        for address in addresses:
            found = self.policy.targetProblem(address, port)
            if found is None:
                return address
            problem = found
        self.engine.fail(request, 403, f"Not forwarded: {problem}.")
        return None

    async def _handle(self, request: Request) -> None:
        client = hostOf(request.getClientAddress())
        if not self.policy.clientAllowed(client):
            self.engine.fail(request, 403, "This proxy does not serve your address.")
            return
        if request.method == b"CONNECT":
            await self._connect(request)
            return
        url = urlsplit(request.uri.decode("latin-1"))
        try:
            port = url.port or 80
        except ValueError:
            port = -1
        if not url.hostname or not 0 < port < 65536:
            self.engine.fail(request, 400, "The request target is not a valid URL.")
            return
        address = await self._destination(request, url.hostname, port)
        if address is None:
            return
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        request.uri = target.encode("latin-1")
        # The Host is the URI's authority without any userinfo (RFC 9112
        # 3.2.2: a proxy replaces the client's Host with it).
        name = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
        authority = name if url.port is None else f"{name}:{url.port}"
        try:
            hostField = authority.encode("ascii")
        except UnicodeError:
            self.engine.fail(request, 400, "The host name is not ASCII.")
            return
        request.requestHeaders.setRawHeaders(b"host", [hostField])
        self.engine.render(request, self._route(address, port))

    async def _connect(self, request: Request) -> None:
        try:
            host, port = parseHostPort(request.uri.decode("latin-1"))
        except (ValueError, UnicodeDecodeError):
            self.engine.fail(request, 400, "CONNECT needs HOST:PORT.")
            return
        if port not in self.policy.connectPorts:
            self.engine.fail(request, 403, f"CONNECT to port {port} is not allowed.")
            return
        channel: Any = request.channel
        tunnel = Tunnel(request, self.reactor, self.idleTimeout)
        channel.tunnel = tunnel
        address = await self._destination(request, host, port)
        if address is None:
            channel.tunnel = None
            channel.loseConnection()
            return
        endpointType = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
        endpoint = endpointType(
            self.reactor, address, port, timeout=self.connectTimeout
        )
        try:
            side = await connectProtocol(endpoint, _UpstreamSide(tunnel))
        except Exception as e:
            channel.tunnel = None
            self.engine.fail(
                request, 502, f"Cannot connect to {host}:{port} ({type(e).__name__})."
            )
            channel.loseConnection()
            return
        if tunnel.closed:
            side.transport.loseConnection()
            return
        self._log.info(
            "Tunnel from {client} to {address}:{port}",
            client=hostOf(request.getClientAddress()),
            address=address,
            port=port,
        )
        tunnel.connected(side.transport)
