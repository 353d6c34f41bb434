"""
Tests for L{appnet.listen}: the guard every listener puts in front of its
protocol.
"""

from __future__ import annotations

import socket

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.listen import (
    AddressBook,
    GuardedFactory,
    formatAddress,
    sslContextFactory,
)
from appnet.status import Status
from appnet.trace import MaskRule


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


def peer(host: str, port: int = 40000) -> IPv4Address:
    return IPv4Address("TCP", host, port)


class GuardedFactoryTests(SynchronousTestCase):
    """
    Per-address limits, counters, transcripts and closing.
    """

    def setUp(self) -> None:
        self.status = Status(Clock())
        self.factory = GuardedFactory(
            Factory.forProtocol(Echo),
            "echo",
            self.status,
            maxPerAddress=2,
            refusal=b"421 too many connections\r\n",
        )

    def connect(self, host: str) -> tuple[Protocol, StringTransport]:
        protocol = self.factory.buildProtocol(peer(host))
        assert protocol is not None
        transport = StringTransport(peerAddress=peer(host))
        protocol.makeConnection(transport)
        return protocol, transport

    def test_wrapsProtocol(self) -> None:
        """Data passes through to the wrapped protocol and back."""
        protocol, transport = self.connect("192.0.2.1")
        protocol.dataReceived(b"hello")
        self.assertEqual(transport.value(), b"hello")

    def test_limitPerAddress(self) -> None:
        """
        A third connection from one address is refused with the service's
        refusal line and closed; another address still connects.
        """
        self.connect("192.0.2.1")
        self.connect("192.0.2.1")
        protocol, transport = self.connect("192.0.2.1")
        self.assertEqual(transport.value(), b"421 too many connections\r\n")
        self.assertTrue(transport.disconnecting)
        _, other = self.connect("192.0.2.2")
        self.assertFalse(other.disconnecting)
        self.assertEqual(self.status.counter("echo", "refused"), 1)

    def test_limitReleasedOnClose(self) -> None:
        """A closed connection frees its slot."""
        first, _ = self.connect("192.0.2.1")
        self.connect("192.0.2.1")
        first.connectionLost(None)  # type: ignore[arg-type]
        _, transport = self.connect("192.0.2.1")
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.factory.perAddress, {"192.0.2.1": 2})

    def test_counters(self) -> None:
        """Connections and bytes each way are counted."""
        protocol, _ = self.connect("192.0.2.1")
        protocol.dataReceived(b"12345")
        self.assertEqual(self.status.counter("echo", "connections"), 1)
        self.assertEqual(self.status.counter("echo", "bytes_in"), 5)
        self.assertEqual(self.status.counter("echo", "bytes_out"), 5)

    def test_transcript(self) -> None:
        """With a mask rule, the dialogue is logged with secrets masked."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.factory.mask = MaskRule(secretCommands={b"PASS": 0})
        protocol, _ = self.connect("192.0.2.1")
        protocol.dataReceived(b"PASS hunter2\r\n")
        lines = [
            (e["direction"], e["line"])
            for e in events
            if e.get("log_namespace") == "appnet.trace.Transcript"
        ]
        self.assertEqual(lines[0], ("C", "PASS ********"))

    def test_closeAll(self) -> None:
        """closeAll asks every connection to close, then aborts stragglers."""
        clock = Clock()
        _, t1 = self.connect("192.0.2.1")
        protocol2, t2 = self.connect("192.0.2.2")
        d = self.factory.closeAll(clock, grace=5)
        self.assertTrue(t1.disconnecting and t2.disconnecting)
        self.assertNoResult(d)
        for protocol in list(self.factory.protocols):
            protocol.connectionLost(None)  # type: ignore[arg-type]
        self.successResultOf(d)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_closeAllAfterCleanup(self) -> None:
        """
        closeAll fires only after the wrapped protocol's connectionLost has
        run, so a stack stops its store after sessions cleaned up in it.
        """
        order: list[str] = []

        class Cleanup(Protocol):
            def connectionLost(self, reason: object = None) -> None:
                order.append("protocol cleaned up")

        self.factory = GuardedFactory(
            Factory.forProtocol(Cleanup), "echo", self.status, maxPerAddress=2
        )
        protocol, _ = self.connect("192.0.2.1")
        d = self.factory.closeAll(Clock())
        d.addCallback(lambda _: order.append("closeAll fired"))
        protocol.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(order, ["protocol cleaned up", "closeAll fired"])


class DecliningTests(SynchronousTestCase):
    def test_wrappedDeclines(self) -> None:
        """If the service's factory declines a connection, so does the guard."""
        declining = Factory()
        declining.buildProtocol = lambda addr: None  # type: ignore[method-assign]
        guard = GuardedFactory(declining, "x", Status(Clock()), maxPerAddress=1)
        self.assertIsNone(guard.buildProtocol(peer("192.0.2.1")))
        self.assertEqual(guard.perAddress, {})


class AddressTests(SynchronousTestCase):
    def test_format(self) -> None:
        self.assertEqual(formatAddress(peer("127.0.0.1", 25)), "127.0.0.1:25")
        from twisted.internet.address import IPv6Address

        self.assertEqual(formatAddress(IPv6Address("TCP", "::1", 25)), "[::1]:25")

    def test_book(self) -> None:
        book = AddressBook()
        book.record("smtp", peer("127.0.0.1", 25), tls=False)
        book.record("smtp", peer("127.0.0.1", 465), tls=True)
        self.assertEqual(
            [str(b) for b in book.of("smtp")],
            ["smtp tcp 127.0.0.1:25 (plain)", "smtp tcp 127.0.0.1:465 (TLS)"],
        )
        book.forget("smtp", peer("127.0.0.1", 25))
        self.assertEqual(len(book.all()), 1)


class SSLContextFactoryTests(SynchronousTestCase):
    """
    L{sslContextFactory} reads Twisted's private C{_sslContextFactory}: these
    tests fail if a Twisted release changes what an C{ssl:} string builds.
    """

    def test_sslEndpoint(self) -> None:
        """An C{ssl:} string gives the CertificateOptions built from its files."""
        from twisted.internet.endpoints import serverFromString
        from twisted.internet.ssl import CertificateOptions
        from twisted.python.filepath import FilePath

        from appnet.tls import writeSelfSigned

        d = FilePath(self.mktemp())
        d.makedirs()
        cert, key = d.child("cert.pem"), d.child("key.pem")
        writeSelfSigned(cert.path, key.path, "localhost")
        endpoint = serverFromString(
            Clock(), f"ssl:0:privateKey={key.path}:certKey={cert.path}"
        )
        self.assertIsInstance(sslContextFactory(endpoint), CertificateOptions)

    def test_tcpEndpoint(self) -> None:
        """Any other endpoint has no context factory."""
        from twisted.internet.endpoints import serverFromString

        self.assertIsNone(sslContextFactory(serverFromString(Clock(), "tcp:0")))


class _Held(Protocol):
    """Remembers its connection, for the test to write through."""

    def __init__(self, made: Deferred[_Held]) -> None:
        self.made = made

    def connectionMade(self) -> None:
        self.made.callback(self)


class DirectWriteTests(TestCase):
    """
    On a plain TCP connection a service's writes go straight to the
    socket while nothing waits in the transport's buffer; from the first
    send that falls short, every write goes through the transport, in
    order.
    """

    async def connect(self, directWrites: bool = True) -> tuple[_Held, socket.socket]:
        from twisted.internet import reactor

        made: Deferred[_Held] = Deferred()
        factory = GuardedFactory(
            Factory.forProtocol(lambda: _Held(made)),
            "test",
            Status(Clock()),
            10,
            directWrites=directWrites,
        )
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(client.close)
        held = await made
        self.addCleanup(held.transport.loseConnection)
        return held, client

    def received(self, client: socket.socket, size: int) -> bytes:
        """What the client can read now, without the reactor running."""
        client.setblocking(False)
        data = b""
        while len(data) < size:
            try:
                chunk = client.recv(size - len(data))
            except BlockingIOError:
                break
            data += chunk
        return data

    async def test_straightToSocket(self) -> None:
        held, client = await self.connect()
        held.transport.write(b"250 Ok\r\n")
        held.transport.writeSequence([b"250 ", b"Ok\r\n"])
        # Sent already: the reactor has not turned since.
        self.assertEqual(self.received(client, 16), b"250 Ok\r\n" * 2)
        guarded = held.transport
        self.assertEqual(guarded.factory.status.counter("test", "bytes_out"), 16)

    async def test_notWhenOff(self) -> None:
        held, client = await self.connect(directWrites=False)
        held.transport.write(b"250 Ok\r\n")
        self.assertEqual(self.received(client, 8), b"")

    async def test_fullSocket(self) -> None:
        """
        A write too big for the socket goes on through the transport; the
        writes after it too (not past it), and all arrive in order.
        """
        held, client = await self.connect()
        chunk = bytes(range(256)) * (1 << 12)  # 1 MiB
        written = 0
        # Nobody reads: sooner or later a send falls short.
        while held.transport.direct is not None and written < 1 << 30:
            held.transport.write(chunk)
            written += 1
        self.assertIsNone(held.transport.direct)
        held.transport.write(b"after\r\n")
        expected = len(chunk) * written + len(b"after\r\n")
        received = bytearray()
        from twisted.internet import reactor

        done: Deferred[None] = Deferred()

        def read() -> None:
            received.extend(self.received(client, 1 << 22))
            if len(received) >= expected:
                done.callback(None)
            else:
                reactor.callLater(0, read)

        read()
        await done
        self.assertEqual(bytes(received), chunk * written + b"after\r\n")

    async def test_endsWithTLSAndClose(self) -> None:
        """
        Starting TLS or closing hands writes back to the transport.
        """
        held, client = await self.connect()
        guarded = held.transport
        self.assertIsNotNone(guarded.direct)
        guarded.loseConnection()
        self.assertIsNone(guarded.direct)

        started: list[object] = []
        held2, client2 = await self.connect()
        guarded2 = held2.transport
        self.patch(guarded2.transport, "startTLS", started.append)
        guarded2.startTLS("options")
        self.assertEqual(started, ["options"])
        self.assertIsNone(guarded2.direct)

    async def test_pullProducer(self) -> None:
        """
        A pull producer is asked for more when the transport's buffer
        empties: once one is registered, writes go through the transport.
        """
        held, client = await self.connect()
        held.transport.registerProducer(_Producer(), False)
        held.transport.unregisterProducer()
        self.assertIsNone(held.transport.direct)
        held.transport.write(b"250 Ok\r\n")
        self.assertEqual(self.received(client, 8), b"")

    async def test_senderAsks(self) -> None:
        """
        A sender that asks for the socket (sendfile) is paced by the
        transport's buffer: from then on writes go through it.
        """
        held, client = await self.connect()
        self.assertIsNotNone(held.transport.directSocket())
        self.assertIsNone(held.transport.direct)
        held.transport.write(b"250 Ok\r\n")
        self.assertEqual(self.received(client, 8), b"")

    async def test_pushProducer(self) -> None:
        """
        A push producer (as twisted.web's channel registers itself) keeps
        direct writes; once the socket is full, the transport buffers and
        pauses it, and resumes it when the client has read everything.
        """
        from twisted.internet import reactor

        held, client = await self.connect()
        producer = _Producer()
        held.transport.registerProducer(producer, True)
        self.addCleanup(held.transport.unregisterProducer)
        held.transport.write(b"250 Ok\r\n")
        self.assertEqual(self.received(client, 8), b"250 Ok\r\n")
        chunk = b"x" * (1 << 20)
        written = 0
        while held.transport.direct is not None and written < 1 << 10:
            held.transport.write(chunk)
            written += 1
        self.assertIsNone(held.transport.direct)
        self.assertEqual(producer.calls, ["pause"])
        expected, received = len(chunk) * written, 0
        done: Deferred[None] = Deferred()

        def read() -> None:
            nonlocal received
            received += len(self.received(client, 1 << 22))
            if received >= expected and producer.calls == ["pause", "resume"]:
                done.callback(None)
            else:
                reactor.callLater(0, read)

        read()
        await done
        self.assertEqual(received, expected)

    def test_notTCP(self) -> None:
        """Over any other transport (here a test's), no direct writes."""
        factory = GuardedFactory(
            Factory.forProtocol(Protocol), "test", Status(Clock()), 10
        )
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertIsNone(protocol.direct)
        protocol.write(b"x")
        self.assertEqual(transport.value(), b"x")


class _Producer:
    """Records what a transport asks of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")
