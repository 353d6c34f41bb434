"""
A fake UDP network on a L{Clock}: a reactor (time and UDP only) whose
datagrams are queued and delivered by L{FakeNetwork.pump}, so resolvers,
servers and upstreams run against each other in memory, deterministically.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.names import dns

from appnet.dns.wire import Decoded, decode, encode, responseTo

Address = tuple[str, int]


class FakePort:
    """One bound UDP socket."""

    def __init__(self, network: FakeNetwork, address: Address, protocol: Any) -> None:
        self.network = network
        self.address = address
        self.protocol = protocol
        self.open = True

    def write(self, data: bytes, addr: Address) -> None:
        if addr[0] in self.network.unreachable:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        source = self.address
        if source[0] in ("0.0.0.0", "::"):
            source = ("127.0.0.1", source[1])
        self.network.send(source, (addr[0], addr[1]), data)

    def getHost(self) -> Any:
        host, port = self.address
        if ":" in host:
            return IPv6Address("UDP", host, port)
        return IPv4Address("UDP", host, port)

    def stopListening(self) -> None:
        if self.open:
            self.open = False
            self.network.ports.pop(self.address, None)
            self.protocol.doStop()

    def connect(self, host: str, port: int) -> None:
        raise NotImplementedError()


class FakeNetwork(Clock):
    """
    A clock that also provides C{listenUDP}, routing datagrams between the
    ports bound on it.

    @ivar sent: every datagram sent, as (source, destination, bytes).
    """

    def __init__(self) -> None:
        super().__init__()
        self.ports: dict[Address, FakePort] = {}
        self.queue: deque[tuple[Address, Address, bytes]] = deque()
        self.sent: list[tuple[Address, Address, bytes]] = []
        self.unreachable: set[str] = set()
        self._next = 40000

    def listenUDP(
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192
    ) -> FakePort:
        host = interface or "0.0.0.0"
        if port == 0:
            self._next += 1
            port = self._next
        if (host, port) in self.ports:
            raise CannotListenError(host, port, OSError("in use"))
        bound = FakePort(self, (host, port), protocol)
        self.ports[(host, port)] = bound
        protocol.makeConnection(bound)
        return bound

    def send(self, source: Address, destination: Address, data: bytes) -> None:
        self.sent.append((source, destination, data))
        self.queue.append((source, destination, data))

    def pump(self) -> None:
        """Deliver queued datagrams (and those their delivery causes)."""
        while self.queue:
            source, destination, data = self.queue.popleft()
            port = self.ports.get(destination) or self.ports.get(
                ("0.0.0.0", destination[1])
            )
            if port is not None and port.open:
                port.protocol.datagramReceived(data, source)

    def sentTo(self, address: Address) -> list[Decoded]:
        """The messages sent to C{address}, decoded."""
        return [decode(data) for _, dst, data in self.sent if dst == address]

    def run(self, seconds: float = 0.0, step: float = 0.1) -> None:
        """Pump, advancing the clock in steps up to C{seconds}."""
        self.pump()
        elapsed = 0.0
        while elapsed < seconds:
            self.advance(step)
            elapsed += step
            self.pump()


class ScriptedServer(DatagramProtocol):
    """
    An upstream that answers each query with whatever C{script} returns:
    a list of (bytes, source address) to send, so tests can forge replies.
    """

    def __init__(
        self,
        network: FakeNetwork,
        address: Address,
        script: Callable[[Decoded, Address], list[tuple[bytes, Address]]],
    ) -> None:
        self.network = network
        self.address = address
        self.script = script
        self.received: list[Decoded] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        request = decode(data)
        self.received.append(request)
        for payload, source in self.script(request, (addr[0], addr[1])):
            self.network.send(source, (addr[0], addr[1]), payload)


def reply(
    request: Decoded,
    answers: Sequence[dns.RRHeader] = (),
    authority: Sequence[dns.RRHeader] = (),
    additional: Sequence[dns.RRHeader] = (),
    rcode: int = dns.OK,
    auth: bool = True,
    id: int | None = None,
) -> bytes:
    """An encoded reply to C{request}."""
    response = responseTo(request.message)
    if id is not None:
        response.id = id
    response.rCode = rcode
    response.auth = auth
    response.answers = list(answers)
    response.authority = list(authority)
    response.additional = list(additional)
    return encode(response)


def rr(name: str, type: int, payload: Any, ttl: int = 300) -> dns.RRHeader:
    """A record header."""
    return dns.RRHeader(name, type, dns.IN, ttl, payload)
