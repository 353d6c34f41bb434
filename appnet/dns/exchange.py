"""
One query to one server and its validated reply, over UDP or TCP.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import ipaddress
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.logger import Logger
from twisted.names import dns
from twisted.protocols.basic import Int16StringReceiver
from twisted.python.failure import Failure

from appnet.dns.errors import MalformedMessage
from appnet.dns.names import normalize
from appnet.dns.wire import EDNS, Decoded, decode, encode

__all__ = ["Exchange", "Exchanger", "ExchangeFailed"]

Address = tuple[str, int]


class ExchangeFailed(Exception):
    """
    No valid reply: timeout, connection refused or lost, unreachable.

    @ivar server: where the query went.
    @ivar reason: what happened.
    """

    def __init__(self, server: Address, reason: str) -> None:
        super().__init__(server, reason)
        self.server = server
        self.reason = reason

    def __str__(self) -> str:
        return f"{_show(self.server)}: {self.reason}"


def _show(server: Address) -> str:
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@frozen
class Exchange:
    """
    A query's valid reply.

    @ivar reply: the decoded reply.
    @ivar server: the address that answered.
    @ivar transport: C{"udp"} or C{"tcp"}.
    @ivar elapsed: seconds from sending to the reply.
    """

    reply: Decoded
    server: Address
    transport: str
    elapsed: float

    @property
    def message(self) -> dns.Message:
        """The reply message."""
        return self.reply.message


def _sameHost(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def matches(query: dns.Message, reply: dns.Message) -> bool:
    """
    Is C{reply} the answer to C{query}: a response, the same ID, the same
    question?
    """
    if not reply.answer or reply.id != query.id:
        return False
    if len(reply.queries) != len(query.queries):
        # A FORMERR reply may leave out the question (RFC 6891 section 7).
        return not reply.queries and reply.rCode == dns.EFORMAT
    for asked, echoed in zip(query.queries, reply.queries, strict=True):
        if (asked.type, asked.cls) != (echoed.type, echoed.cls):
            return False
        if normalize(asked.name) != normalize(echoed.name):
            return False
    return True


class _UDPQuery(DatagramProtocol):
    """
    Sends one query from its own port and waits for the valid reply.
    """

    noisy = False

    def __init__(self, query: dns.Message, data: bytes, server: Address) -> None:
        self.query = query
        self.data = data
        self.server = server
        self.done: Deferred[Decoded] = Deferred()
        self.ignored = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if self.done.called:
            return
        host, port = addr[0], addr[1]
        if port != self.server[1] or not _sameHost(host, self.server[0]):
            self.ignored += 1
            return
        try:
            reply = decode(data)
        except MalformedMessage:
            self.ignored += 1
            return
        if not matches(self.query, reply.message):
            self.ignored += 1
            return
        self.done.callback(reply)


class _TCPQuery(Int16StringReceiver):
    """
    Sends one length-prefixed query on a fresh connection and waits for
    the valid reply (RFC 7766).
    """

    def __init__(self, query: dns.Message, data: bytes) -> None:
        self.query = query
        self.data = data
        self.done: Deferred[Decoded] = Deferred(lambda d: self._abort())
        self.lost: Deferred[None] = Deferred()
        self.connected = False

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionMade(self) -> None:
        self.connected = True
        self.sendString(self.data)

    def stringReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        try:
            reply = decode(data)
        except MalformedMessage:
            return
        if matches(self.query, reply.message):
            self.done.callback(reply)
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        if not self.done.called:
            self.done.errback(reason)
        self.lost.callback(None)


class Exchanger:
    """
    Sends queries and waits for their replies, on the given reactor
    (C{IReactorTime}, C{IReactorUDP}, C{IReactorTCP}).
    """

    _log = Logger()

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._running: set[Deferred[Exchange]] = set()
        self._closing: set[Deferred[Any]] = set()
        self._stopped = False
        self.sent = 0

    def query(
        self,
        server: Address,
        query: dns.Message,
        edns: EDNS | None,
        timeout: float,
        tcp: bool = False,
    ) -> Deferred[Exchange]:
        """
        Send C{query} (its ID already chosen) to C{server} and wait up to
        C{timeout} seconds for the valid reply.

        @raise ExchangeFailed: (as the Deferred's failure) on timeout or
            network error.
        """
        if self._stopped:
            return fail(ExchangeFailed(server, "stopped"))
        data = encode(query, edns)
        if tcp:
            d = Deferred.fromCoroutine(self._tcp(server, query, data, timeout))
        else:
            d = Deferred.fromCoroutine(self._udp(server, query, data, timeout))
        self._running.add(d)
        d.addBoth(self._finished, d)
        return d

    def _finished(self, result: Any, d: Deferred[Exchange]) -> Any:
        self._running.discard(d)
        return result

    async def _udp(
        self, server: Address, query: dns.Message, data: bytes, timeout: float
    ) -> Exchange:
        reactor = self._reactor
        protocol = _UDPQuery(query, data, server)
        interface = "::" if ":" in server[0] else "0.0.0.0"
        started = reactor.seconds()
        try:
            port: IListeningPort = reactor.listenUDP(0, protocol, interface=interface)
        except Exception as e:
            raise ExchangeFailed(server, f"cannot open a UDP socket: {e}") from None
        self.sent += 1
        try:
            port.write(data, server)  # type: ignore[attr-defined]
            protocol.done.addTimeout(timeout, reactor)
            reply = await protocol.done
        except Exception as e:
            self._track(port.stopListening())
            raise ExchangeFailed(server, _reason(e, timeout)) from None
        await self._track(port.stopListening())
        return Exchange(reply, server, "udp", reactor.seconds() - started)

    async def _tcp(
        self, server: Address, query: dns.Message, data: bytes, timeout: float
    ) -> Exchange:
        reactor = self._reactor
        host, port = server
        endpointClass = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
        endpoint = endpointClass(reactor, host, port, timeout=max(1, int(timeout)))
        started = reactor.seconds()
        protocol = _TCPQuery(query, data)
        self.sent += 1
        try:
            connecting = endpoint.connect(Factory.forProtocol(lambda: protocol))
            connecting.addTimeout(timeout, reactor)
            await connecting
            left = max(0.0, timeout - (reactor.seconds() - started))
            protocol.done.addTimeout(left, reactor)
            reply = await protocol.done
        except Exception as e:
            if protocol.connected:
                self._track(protocol.lost)
            raise ExchangeFailed(server, _reason(e, timeout)) from None
        await self._track(protocol.lost)
        return Exchange(reply, server, "tcp", reactor.seconds() - started)

    def _track(self, closing: Deferred[Any] | None) -> Deferred[Any]:
        """
        Remember a socket that is closing until it is closed; the result
        fires then.
        """
        if closing is None or closing.called:
            return succeed(None)
        waiter: Deferred[Any] = Deferred()
        self._closing.add(closing)

        def closed(result: object) -> None:
            self._closing.discard(closing)
            waiter.callback(None)

        closing.addBoth(closed)
        return waiter

    def stop(self) -> Deferred[Any]:
        """
        End every exchange still running (they fail), refuse new ones, and
        wait until their sockets are closed.
        """
        self._stopped = True
        for d in list(self._running):
            d.cancel()
        if not self._closing:
            return succeed(None)
        return DeferredList(list(self._closing))


def _reason(error: Exception, timeout: float) -> str:
    from twisted.internet.defer import CancelledError, TimeoutError

    if isinstance(error, TimeoutError):
        return f"no reply within {timeout:g}s"
    if isinstance(error, CancelledError):
        return "cancelled"
    return str(error) or type(error).__name__
