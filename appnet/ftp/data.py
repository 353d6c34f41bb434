"""
FTP data connections, for the server: passive (PASV/EPSV) and active
(PORT/EPRT), plain or under TLS (C{PROT P}).

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import functools
import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IHandshakeListener,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
)
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from appnet.address import ipAddress
from appnet.ftp.errors import CannotOpenData, TransferAborted

__all__ = [
    "ActiveChannel",
    "noDelay",
    "DataConnection",
    "PassiveChannel",
    "normalHost",
]

#: Bytes a data connection buffers before a transfer takes them, before it
#: pauses the socket.
EARLY_BUFFER = 1024 * 1024


@functools.lru_cache(maxsize=1024)
def normalHost(host: str) -> str:
    """
    A host address in one spelling: IPv4-mapped IPv6 (C{::ffff:1.2.3.4}, as
    dual-stack sockets report IPv4 peers) becomes plain IPv4, IPv6 is
    compressed.
    """
    address = ipAddress(host)
    return host if address is None else str(address)


@implementer(IHandshakeListener)
class DataConnection(Protocol):
    """
    One data connection.

    @ivar ready: fires with this connection once it is open (TCP); the
        preliminary reply goes out then, because clients such as Python's
        ftplib start the TLS handshake only after reading it.
    @ivar secured: fires once it can carry data: at once without TLS, after
        the handshake under TLS; fails with L{CannotOpenData} if the
        connection closes first.
    @ivar closed: fires (with C{None}) once the connection has closed; the
        reason is then in L{reason}.
    @ivar activity: called whenever bytes move, so stalls can be detected.
    """

    _log = Logger()

    def __init__(self, tls: bool) -> None:
        self._tls = tls
        self.ready: Deferred[DataConnection] = Deferred()
        self.secured: Deferred[None] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self.activity: Any = None
        self._sink: IConsumer | None = None
        self._early: list[bytes] = []
        self._earlyBytes = 0
        self._pausedEarly = False

    def connectionMade(self) -> None:
        noDelay(self.transport)
        self.ready.callback(self)
        if not self._tls:
            self.secured.callback(None)

    def handshakeCompleted(self) -> None:
        if not self.secured.called:
            self.secured.callback(None)

    def whenSecured(self) -> Deferred[None]:
        """A Deferred with L{secured}'s result, leaving L{secured} alone."""
        d: Deferred[None] = Deferred()

        def forward(result: object) -> object:
            if isinstance(result, Failure):
                d.errback(result)
                return None
            d.callback(None)
            return result

        self.secured.addBoth(forward)
        return d

    def dataReceived(self, data: bytes) -> None:
        if self.activity is not None:
            self.activity()
        if self._sink is not None:
            self._sink.write(data)
            return
        self._early.append(data)
        self._earlyBytes += len(data)
        if self._earlyBytes > EARLY_BUFFER and not self._pausedEarly:
            self._pausedEarly = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.reason = reason
        if not self.ready.called:
            self.ready.errback(CannotOpenData("closed at once"))
        if not self.secured.called:
            self.secured.errback(CannotOpenData("the TLS handshake failed"))
            self.secured.addErrback(lambda _: None)
        if self._sink is not None:
            self._sink.unregisterProducer()
        self.closed.callback(None)

    def write(self, data: bytes) -> None:
        """Send bytes (used for listings)."""
        if self.activity is not None:
            self.activity()
        self.transport.write(data)  # type: ignore[union-attr]

    def receiveInto(self, consumer: IConsumer) -> Deferred[None]:
        """
        Deliver everything received, early bytes first, to C{consumer}
        (which may pause this connection) until the client closes it.

        @return: fires when the client has closed the connection cleanly
            (the end of the upload); fails with L{TransferAborted} if it
            was reset, aborted, or a TLS connection ended without its close
            alert (a possibly truncated upload).
        """
        self._sink = consumer
        early, self._early = self._early, []
        self._earlyBytes = 0
        if self.reason is None:
            consumer.registerProducer(self.transport, True)  # type: ignore[arg-type]
        for chunk in early:
            consumer.write(chunk)
        if self._pausedEarly:
            self._pausedEarly = False
            if self.reason is None:
                self.transport.resumeProducing()  # type: ignore[union-attr]
        d: Deferred[None] = Deferred()

        def ended(_: object = None) -> None:
            assert self.reason is not None
            if self.reason.check(ConnectionDone):
                d.callback(None)
            else:
                d.errback(TransferAborted("data connection lost"))

        if self.reason is not None:
            ended()
        else:
            self.closed.addCallback(ended)
        return d

    def finish(self) -> Deferred[None]:
        """
        Close after everything written has been sent (under TLS, once the
        handshake is done: closing before it would abort); fires once
        closed.
        """

        def close(_: object) -> None:
            if self.reason is None and self.transport is not None:
                self.transport.loseConnection()

        self.whenSecured().addBoth(close)
        return _after(self.closed)

    def abort(self) -> None:
        """Drop the connection now."""
        if self.reason is None and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]


def noDelay(transport: Any) -> None:
    """
    Send small writes at once: a listing's last line or a TLS close alert
    must not wait for the peer's delayed ACK (Nagle).
    """
    try:
        transport.setTcpNoDelay(True)
    except (AttributeError, OSError):
        pass


def _after(d: Deferred[None]) -> Deferred[None]:
    """A Deferred firing after C{d}, leaving C{d}'s chain alone."""
    out: Deferred[None] = Deferred()

    def forward(result: None) -> None:
        out.callback(None)
        return result

    d.addCallback(forward)
    return out


class _DataFactory(Factory):
    """Builds the one L{DataConnection} a channel accepts or makes."""

    noisy = False

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        return self._channel._build(addr)


class _Guard(Factory):
    """
    Lets L{_Channel._allowed} refuse a connection before TLS or anything
    else sees it.
    """

    noisy = False

    def __init__(self, channel: _Channel, wrapped: IProtocolFactory) -> None:
        self._channel = channel
        self._wrapped = wrapped

    def doStart(self) -> None:
        self._wrapped.doStart()

    def doStop(self) -> None:
        self._wrapped.doStop()

    def buildProtocol(  # type: ignore[override]
        self, addr: IAddress | None
    ) -> IProtocol | None:
        if not self._channel._allowed(addr):
            return None
        return self._wrapped.buildProtocol(addr)  # type: ignore[arg-type]


class _Channel:
    """
    What both kinds of data channel share: one connection, a timeout, TLS.
    """

    _log = Logger()

    def __init__(self, reactor: Any, tls: Any, timeout: float) -> None:
        self._reactor = reactor
        self._tlsOptions = tls
        self._timeout = timeout
        self._connection: DataConnection | None = None
        self._error: CannotOpenData | None = None
        self._waiters: list[Deferred[DataConnection]] = []
        self._timer: IDelayedCall | None = None
        self._closed = False

    @property
    def established(self) -> bool:
        """Is the data connection already open (so a transfer gets 125)?"""
        c = self._connection
        return c is not None and c.ready.called and c.reason is None

    def _wrap(self, factory: IProtocolFactory) -> IProtocolFactory:
        if self._tlsOptions is None:
            return factory
        return TLSMemoryBIOFactory(self._tlsOptions, False, factory, self._reactor)

    def _startTimer(self) -> None:
        if self._timer is None and self._timeout > 0:
            self._timer = self._reactor.callLater(self._timeout, self._timedOut)

    def _stopTimer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _timedOut(self) -> None:
        self._timer = None
        if self._connection is not None:
            self._connection.abort()
        self._failed(CannotOpenData("timed out"))

    def _allowed(self, addr: IAddress | None) -> bool:
        return True

    def _build(self, addr: IAddress | None) -> DataConnection | None:
        if self._connection is not None or self._closed:
            return None
        connection = DataConnection(self._tlsOptions is not None)
        self._connection = connection
        connection.ready.addCallbacks(self._ready, self._notReady)
        return connection

    def _ready(self, connection: DataConnection) -> None:
        self._stopTimer()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(connection)

    def _notReady(self, failure: Failure) -> None:
        self._failed(failure.value)

    def _failed(self, error: CannotOpenData) -> None:
        self._stopTimer()
        if self._error is None:
            self._error = error
        self._stopListening()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(self._error)

    def _stopListening(self) -> None:
        pass

    def connection(self) -> Deferred[DataConnection]:
        """
        The data connection, once it can carry data.

        @return: fails with L{CannotOpenData} if it never comes.
        """
        d: Deferred[DataConnection] = Deferred()
        if self._error is not None:
            d.errback(self._error)
        elif self._connection is not None and self._connection.ready.called:
            # Possibly closed already: an upload may have been sent whole
            # before its command was processed.
            d.callback(self._connection)
        else:
            self._waiters.append(d)
            self._begin()
        return d

    def _begin(self) -> None:
        self._startTimer()

    def close(self) -> None:
        """
        Forget this channel: stop listening or connecting, drop any
        connection that no transfer took, fail anyone waiting.
        """
        if self._closed:
            return
        self._failed(CannotOpenData("cancelled"))
        self._closed = True
        self._stopListening()
        if self._connection is not None:
            self._connection.abort()


class PassiveChannel(_Channel):
    """
    A passive data channel: listens, accepts one connection from C{peer}.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        interface: str,
        peer: str,
        ports: tuple[int, int],
        tls: Any,
        timeout: float,
    ) -> None:
        super().__init__(reactor, tls, timeout)
        self._interface = interface
        self._peer = normalHost(peer)
        self._ports = ports
        self._port: IListeningPort | None = None

    def listen(self) -> int:
        """
        Start listening; return the port number to announce.

        @raise CannotOpenData: if no port in the range is free.
        """
        factory = _Guard(self, self._wrap(_DataFactory(self)))
        lo, hi = self._ports
        if lo == 0:
            candidates = [0]
        else:
            count = hi - lo + 1
            start = random.randrange(count)
            candidates = [lo + (start + i) % count for i in range(count)]
        for number in candidates:
            try:
                self._port = self._reactor.listenTCP(
                    number, factory, backlog=5, interface=self._interface
                )
            except CannotListenError:
                continue
            self._startTimer()
            return int(getattr(self._port.getHost(), "port", 0))
        self._error = CannotOpenData("no free passive port")
        raise self._error

    @property
    def listening(self) -> bool:
        """Is the listener still open?"""
        return self._port is not None

    def _allowed(self, addr: IAddress | None) -> bool:
        host = normalHost(getattr(addr, "host", ""))
        if host != self._peer:
            self._log.warn(
                "Refused a passive data connection from {host}: the control"
                " connection is from {peer}",
                host=host,
                peer=self._peer,
            )
            return False
        return self._connection is None and not self._closed

    def _build(self, addr: IAddress | None) -> DataConnection | None:
        connection = super()._build(addr)
        if connection is not None:
            self._stopListening()
        return connection

    def _stopListening(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            port.stopListening()


class ActiveChannel(_Channel):
    """
    An active data channel: connects to the client when a transfer needs it.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        host: str,
        port: int,
        bindHost: str | None,
        tls: Any,
        timeout: float,
    ) -> None:
        super().__init__(reactor, tls, timeout)
        self._host = host
        self._port = port
        self._bindHost = bindHost
        self._connector: Any = None

    def _begin(self) -> None:
        super()._begin()
        if self._connector is not None:
            return
        bind = (self._bindHost, 0) if self._bindHost else None
        self._connector = self._reactor.connectTCP(
            self._host,
            self._port,
            _GuardedClient(self, self._wrap(_DataFactory(self))),
            timeout=max(1, int(self._timeout)),
            bindAddress=bind,
        )

    def _stopListening(self) -> None:
        connector = self._connector
        if connector is not None and getattr(connector, "state", "") == "connecting":
            connector.stopConnecting()


class _GuardedClient(_Guard, ClientFactory):
    """The client factory for active connections (no address check)."""

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self._channel._failed(CannotOpenData("connection refused or unreachable"))

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        pass
