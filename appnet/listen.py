"""
Listeners: every endpoint-based service accepts connections through here.

L{GuardedFactory} wraps a service's protocol factory and applies what every
service needs and none should write again: a per-address connection limit
(Twisted's C{LimitConnectionsByPeer} indexes addresses as tuples and fails
on Python 3's address objects, so it is not reused), connection and byte
counters, the protocol transcript of C{--trace}, and closing every open
connection when the service stops, so a stopped stack leaks nothing.

L{ListenerService} binds one endpoint in C{privilegedStartService}, like
Twisted's L{StreamServerEndpointService} (so privileged ports work under
C{twistd --uid}), but reports failure as a L{ListenError} naming the service
and endpoint, and records the bound address in an L{AddressBook}.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

from attrs import define, field, frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IProtocolNegotiationFactory,
    IReactorTime,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer

from appnet.errors import ListenError
from appnet.files import IDirectWrites, plainSocket
from appnet.status import Status
from appnet.tls import tolerateALPN
from appnet.trace import MaskRule, Transcript

__all__ = [
    "AddressBook",
    "Bound",
    "GuardedFactory",
    "ListenerService",
    "formatAddress",
    "hostOf",
    "sslContextFactory",
]


def sslContextFactory(endpoint: object) -> Any | None:
    """
    The context factory an C{ssl:} endpoint string built, or C{None} for
    any other endpoint.

    Twisted offers no public way to reach it (it is the endpoint's private
    C{_sslContextFactory}); C{tests/test_listen.py} pins that, and a
    missing attribute fails loudly here rather than listen without TLS.
    """
    if not isinstance(endpoint, SSL4ServerEndpoint):
        return None
    return endpoint._sslContextFactory


def hostOf(address: IAddress) -> str:
    """
    The host part of a connection's address (C{"unix"} for UNIX sockets).
    """
    return str(getattr(address, "host", None) or "unix")


def formatAddress(address: IAddress) -> str:
    """
    C{127.0.0.1:2525}, C{[::1]:2525}, or a UNIX socket path.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(getattr(address, "name", address))
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


@frozen
class Bound:
    """
    One address a service is listening on.
    """

    service: str
    address: IAddress
    transport: str
    tls: bool
    #: How the listener offers TLS: C{"TLS"} from the first byte, the
    #: upgrade command (C{"STARTTLS"}, C{"STLS"}, C{"AUTH TLS"}), or
    #: C{"plain"}.
    security: str = "plain"

    def __str__(self) -> str:
        where = formatAddress(self.address)
        return f"{self.service} {self.transport} {where} ({self.security})"


@define
class AddressBook:
    """
    Where each service of a stack is listening. Services report here when
    they bind; start-up prints one line per listener from it.
    """

    _bound: list[Bound] = field(factory=list)
    _log = Logger()

    def record(
        self,
        service: str,
        address: IAddress,
        tls: bool,
        transport: str = "tcp",
        upgrade: str | None = None,
    ) -> None:
        """
        Note that C{service} listens on C{address} and log the fact.

        @param upgrade: the command that starts TLS on this listener, when
            a certificate is loaded (C{"STARTTLS"}).
        """
        security = "TLS" if tls else upgrade or "plain"
        bound = Bound(service, address, transport, tls, security)
        self._bound.append(bound)
        self._log.info(
            "{service} listening on {address} ({security})",
            service=service,
            address=f"{transport} {formatAddress(address)}",
            security=security,
        )

    def forget(self, service: str, address: IAddress) -> None:
        """
        Note that C{service} stopped listening on C{address}.
        """
        self._bound = [
            b
            for b in self._bound
            if not (b.service == service and b.address == address)
        ]

    def all(self) -> list[Bound]:
        """Every current listener, in binding order."""
        return list(self._bound)

    def of(self, service: str) -> list[Bound]:
        """The listeners of one service."""
        return [b for b in self._bound if b.service == service]


@implementer(IDirectWrites)
class GuardedProtocol(ProtocolWrapper):
    """
    The per-connection side of L{GuardedFactory}.

    On a plain TCP connection, what the service writes goes straight to
    the socket (C{send}) while the transport's own buffer is empty, which
    it is until a send falls short: a command's reply then leaves at once
    instead of on the reactor's next turn, with no registering the socket
    for writing and unregistering it again (two C{epoll_ctl}s) around each
    reply. Twisted's TCP transport offers no public way to know its buffer
    is empty, so this wrapper never asks: the first send that falls short
    (a full socket) or fails hands the rest, and every later write of the
    connection, to the transport, which keeps them in order, pauses
    producers and reports errors as ever. Registering a pull producer,
    starting TLS, closing and a protocol that is not plain TCP end direct
    writes the same way; a push producer (HTTP's channel) keeps them.
    """

    factory: GuardedFactory
    transcript: Transcript | None = None
    #: The socket written to directly, while nothing waits in the
    #: transport's buffer; C{None} once writes go through the transport.
    direct: socket.socket | None = None

    def connectionMade(self) -> None:
        self.factory.opened(self)
        if self.factory.directWrites:
            self.direct = plainSocket(self.transport)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        self.factory.status.increment(self.factory.service, "bytes_in", len(data))
        if self.transcript is not None:
            self.transcript.fromClient(data)
        super().dataReceived(data)

    def write(self, data: bytes) -> None:
        self.factory.status.increment(self.factory.service, "bytes_out", len(data))
        if self.transcript is not None:
            self.transcript.fromServer(data)
        direct = self.direct
        if direct is not None and data:
            try:
                sent = direct.send(data)
            except OSError:
                # Full (BlockingIOError), or the connection failed: the
                # transport takes it from here, and finds out which.
                sent = 0
            if sent == len(data):
                return
            self.direct = None
            data = data[sent:]
        super().write(data)

    def writeSequence(self, data: Sequence[bytes]) -> None:
        self.write(b"".join(data))

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        # A pull producer is asked for more when the transport's buffer
        # empties, so the buffer must see every write from now on. A push
        # producer (twisted.web's HTTPChannel registers itself) is paused
        # only once that buffer is over its limit, which it cannot be
        # before a send falls short and ends direct writes anyway.
        if not streaming:
            self.direct = None
        super().registerProducer(producer, streaming)

    def startTLS(self, *args: Any, **kwargs: Any) -> None:
        self.direct = None
        self.transport.startTLS(*args, **kwargs)  # type: ignore[union-attr]

    def loseConnection(self) -> None:
        self.direct = None
        super().loseConnection()

    def loseWriteConnection(self) -> None:
        self.direct = None
        self.transport.loseWriteConnection()  # type: ignore[union-attr]

    def abortConnection(self) -> None:
        self.direct = None
        self.transport.abortConnection()  # type: ignore[union-attr]

    def directSocket(self) -> socket.socket | None:
        # Not while a transcript records what is written. A sender that
        # asks (a file by sendfile) writes past the transport only when
        # its buffer has emptied, so from now on that buffer sees every
        # write of the connection, as with a pull producer.
        self.direct = None
        return None if self.transcript is not None else plainSocket(self.transport)

    def wroteDirectly(self, count: int) -> None:
        self.factory.status.increment(self.factory.service, "bytes_out", count)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.direct = None
        super().connectionLost(reason)
        # Only now has the protocol itself cleaned up (a POP3 session
        # releasing its lock in the store): a stack waiting for its
        # connections to close may go on to close the store.
        self.factory.closed(self)


class _Refusal(Protocol):
    """
    Says why a connection is refused, then closes it.
    """

    def __init__(self, message: bytes) -> None:
        self.message = message

    def connectionMade(self) -> None:
        if self.message:
            self.transport.write(self.message)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class GuardedFactory(WrappingFactory[GuardedProtocol]):
    """
    Wraps a service's factory with connection limits, accounting, tracing
    and shutdown of open connections.

    @ivar refusal: what to say to a client over its address's connection
        limit before closing (a protocol-appropriate temporary error such as
        SMTP's C{421}); empty to just close.
    @ivar directWrites: whether writes go straight to a plain TCP
        connection's socket while they can (see L{GuardedProtocol}).
    """

    protocol = GuardedProtocol
    noisy = False
    _log = Logger()

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        service: str,
        status: Status,
        maxPerAddress: int,
        refusal: bytes = b"",
        mask: MaskRule | None = None,
        directWrites: bool = True,
    ) -> None:
        super().__init__(wrappedFactory)
        self.directWrites = directWrites
        # One "listening on" line per listener replaces Twisted's "Starting
        # factory" and "Stopping factory" lines for both factories.
        if hasattr(wrappedFactory, "noisy"):
            wrappedFactory.noisy = False
        self.service = service
        self.status = status
        self.maxPerAddress = maxPerAddress
        self.refusal = refusal
        self.mask = mask
        self.perAddress: dict[str, int] = {}
        self._closing: list[Deferred[None]] = []
        self._closers: dict[GuardedProtocol, Deferred[None]] = {}
        if IProtocolNegotiationFactory.providedBy(wrappedFactory):
            # TLS endpoints look for ALPN protocols on the factory they
            # wrap, which is this one; without them Twisted answers any
            # client offering ALPN (curl, browsers) with a fatal alert.
            directlyProvides(self, IProtocolNegotiationFactory)

    def acceptableProtocols(self) -> list[bytes]:
        """The wrapped factory's ALPN protocols (see C{__init__})."""
        wrapped = IProtocolNegotiationFactory(self.wrappedFactory)
        return list(wrapped.acceptableProtocols())

    def buildProtocol(  # type: ignore[override]
        self, addr: IAddress
    ) -> IProtocol | None:
        host = hostOf(addr)
        if self.perAddress.get(host, 0) >= self.maxPerAddress:
            self.status.increment(self.service, "refused")
            self._log.warn(
                "{service}: refused {client}: {limit} connections already open",
                service=self.service,
                client=host,
                limit=self.maxPerAddress,
            )
            refusal = _Refusal(self.refusal)
            refusal.factory = self
            return refusal
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            # The service itself declined the connection.
            return None
        protocol = self.protocol(self, inner)
        self.perAddress[host] = self.perAddress.get(host, 0) + 1
        if self.mask is not None:
            protocol.transcript = Transcript(
                self.service, formatAddress(addr), self.mask
            )
        return protocol

    def opened(self, protocol: GuardedProtocol) -> None:
        """
        Count a connection that is now open.
        """
        self.status.increment(self.service, "connections")

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        super().unregisterProtocol(p)
        host = hostOf(p.getPeer())
        remaining = self.perAddress.get(host, 1) - 1
        if remaining > 0:
            self.perAddress[host] = remaining
        else:
            self.perAddress.pop(host, None)

    def closed(self, p: GuardedProtocol) -> None:
        """
        A connection has closed and its protocol has finished cleaning up.
        """
        closer = self._closers.pop(p, None)
        if closer is not None:
            closer.callback(None)

    def openConnections(self) -> int:
        """How many connections are open now."""
        return len(self.protocols)

    def closeAll(self, clock: IReactorTime, grace: float = 5.0) -> Deferred[Any]:
        """
        Close every open connection: politely first, then, after C{grace}
        seconds, by aborting.

        @return: fires when all are closed.
        """
        waits: list[Deferred[None]] = []
        for protocol in list(self.protocols):
            assert isinstance(protocol, GuardedProtocol)
            d: Deferred[None] = Deferred()
            self._closers[protocol] = d
            transport = protocol.transport
            if transport is None:
                continue
            transport.loseConnection()
            abort = getattr(transport, "abortConnection", None)
            if abort is not None:
                call = clock.callLater(grace, abort)
                d.addBoth(_cancelCall, call)
            waits.append(d)
        if not waits:
            return succeed(None)
        return DeferredList(waits)


def socketFamily(fd: int) -> int:
    """The address family of the socket C{fd}."""
    import socket

    probe = socket.socket(fileno=os.dup(fd))
    try:
        return int(probe.family)
    finally:
        probe.close()


def _cancelCall(result: object, call: Any) -> object:
    if call.active():
        call.cancel()
    return result


class ListenerService(Service):
    """
    Listens on one endpoint description for one service.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        serviceName: str,
        description: str,
        factory: GuardedFactory,
        book: AddressBook,
        inherited: int | None = None,
    ) -> None:
        self.reactor = reactor
        self.serviceName = serviceName
        self.description = description
        self.factory = factory
        self.book = book
        self.inherited = inherited
        self.port: IListeningPort | None = None

    @property
    def tls(self) -> bool:
        """Does this endpoint speak TLS from the first byte?"""
        return self.description.split(":", 1)[0].lower() in ("ssl", "tls")

    def privilegedStartService(self) -> None:
        """
        Bind now, before privileges are dropped.

        @raise ListenError: naming the service and endpoint.
        """
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        if self.port is None:
            self._listen()

    def _listen(self) -> None:
        endpoint = serverFromString(self.reactor, self.description)
        contextFactory = sslContextFactory(endpoint)
        if contextFactory is not None:
            tolerateALPN(contextFactory)
        if self.inherited is not None:
            # A worker process: accept on the socket its parent bound
            # (appnet.workers), wrapped in TLS as the endpoint would be.
            factory: Any = self.factory
            if contextFactory is not None:
                from twisted.protocols.tls import TLSMemoryBIOFactory

                factory = TLSMemoryBIOFactory(contextFactory, False, factory)
            self.port = self.reactor.adoptStreamPort(
                self.inherited, socketFamily(self.inherited), factory
            )
            self.book.record(self.serviceName, self.port.getHost(), self.tls)
            return
        result: list[Any] = []
        endpoint.listen(self.factory).addBoth(result.append)
        if not result:  # pragma: no cover - stream endpoints bind synchronously
            raise ListenError(self.serviceName, self.description, "did not bind")
        outcome = result[0]
        if isinstance(outcome, Failure):
            reason = outcome.value
            text = getattr(reason, "socketError", None) or reason
            strerror = getattr(text, "strerror", None)
            raise ListenError(self.serviceName, self.description, str(strerror or text))
        self.port = outcome
        wrapped = self.factory.wrappedFactory
        upgrade = None
        if getattr(wrapped, "tlsOptions", None) is not None:
            upgrade = getattr(wrapped, "tlsUpgrade", None)
        self.book.record(self.serviceName, outcome.getHost(), self.tls, upgrade=upgrade)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        self.book.forget(self.serviceName, port.getHost())
        return port.stopListening() or succeed(None)
