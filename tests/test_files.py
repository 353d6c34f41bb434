"""
The shared threaded file sender's parts: bodies of literal and file
spans, the socket under a plain TCP transport, and sending straight to a
socket (zero copy).
"""

from __future__ import annotations

import io
import os
import socket
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import ISSLTransport, ITCPTransport
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides, implementer

from appnet import files
from appnet.files import (
    FileShrank,
    FileSpans,
    IDirectWrites,
    SendingStopped,
    ThreadedFileSender,
    ZeroCopy,
    inline,
    plainSocket,
    zeroCopyTo,
)

DATA = bytes(range(256)) * 64


def dataFile(case: SynchronousTestCase) -> int:
    """A descriptor open on a file of L{DATA}, closed after the test."""
    path = case.mktemp()
    with open(path, "wb") as f:
        f.write(DATA)
    fd = os.open(path, os.O_RDONLY)
    case.addCleanup(os.close, fd)
    return fd


def socketPair(case: SynchronousTestCase) -> tuple[socket.socket, socket.socket]:
    """Two connected sockets, closed after the test."""
    a, b = socket.socketpair()
    case.addCleanup(a.close)
    case.addCleanup(b.close)
    return a, b


class FileSpansTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fd = dataFile(self)

    def test_read(self) -> None:
        """
        C{size} bytes at a time (more only when a literal part, which
        comes whole, passes it), joined across parts, then C{b""}.
        """
        spans = FileSpans(self.fd, [b"<", (10, 5), b">", (0, 0), (100, 3)])
        self.assertEqual(spans.length, 10)
        self.assertEqual(spans.read(3), b"<" + DATA[10:12])
        self.assertEqual(spans.read(100), DATA[12:15] + b">" + DATA[100:103])
        self.assertEqual(spans.read(100), b"")

    def test_fileObject(self) -> None:
        """
        A file object without a descriptor is read with seek and read;
        sendfile leaves it all to read.
        """
        a, b = socketPair(self)
        spans = FileSpans(io.BytesIO(DATA), [(7, 3), b"-", (0, 2)])
        self.assertEqual(spans.sendfile(a.fileno(), 100), 0)
        self.assertEqual(spans.read(100), DATA[7:10] + b"-" + DATA[:2])

    def test_readShrank(self) -> None:
        """A span past the end of the file fails with FileShrank."""
        spans = FileSpans(self.fd, [(len(DATA) - 2, 5)])
        self.assertRaises(FileShrank, spans.read, 10)

    def test_sendfile(self) -> None:
        """
        sendfile sends the current span to a socket and stops (0) at a
        literal part, which read then returns.
        """
        a, b = socketPair(self)
        spans = FileSpans(self.fd, [(5, 1000), b"--", (0, 4)])
        self.assertEqual(spans.sendfile(a.fileno(), 600), 600)
        self.assertEqual(spans.sendfile(a.fileno(), 600), 400)
        self.assertEqual(spans.sendfile(a.fileno(), 600), 0)
        self.assertEqual(spans.read(3), b"--" + DATA[:1])
        self.assertEqual(spans.sendfile(a.fileno(), 600), 3)
        self.assertEqual(spans.sendfile(a.fileno(), 600), 0)
        a.close()
        received = b""
        while chunk := b.recv(65536):
            received += chunk
        self.assertEqual(received, DATA[5:1005] + DATA[1:4])

    def test_sendfileShrank(self) -> None:
        """A span past the end of the file fails with FileShrank."""
        a, b = socketPair(self)
        spans = FileSpans(self.fd, [(len(DATA) - 2, 5)])
        self.assertEqual(spans.sendfile(a.fileno(), 10), 2)
        self.assertRaises(FileShrank, spans.sendfile, a.fileno(), 10)


@implementer(IDirectWrites)
class Wrapper(StringTransport):
    """A transport wrapper that allows direct writes, and counts them."""

    def __init__(self, handle: socket.socket | None) -> None:
        super().__init__()
        self.handle = handle
        self.counted: list[int] = []

    def directSocket(self) -> socket.socket | None:
        return self.handle

    def wroteDirectly(self, count: int) -> None:
        self.counted.append(count)


class PlainSocketTests(SynchronousTestCase):
    def test_plainTCP(self) -> None:
        """A Twisted TCP connection's socket, from getHandle."""
        sock = socket.socket()
        self.addCleanup(sock.close)
        self.assertIs(plainSocket(tcp.Connection(sock, None)), sock)

    def test_notPlain(self) -> None:
        """
        TLS connections, and transports that are not Twisted TCP
        connections (even if they say they are TCP) have none.
        """
        sock = socket.socket()
        self.addCleanup(sock.close)
        tls = tcp.Connection(sock, None)
        directlyProvides(tls, ISSLTransport)
        self.assertIsNone(plainSocket(tls))
        memory: Any = StringTransport()
        directlyProvides(memory, ITCPTransport)
        memory.getHandle = lambda: sock
        self.assertIsNone(plainSocket(memory))
        self.assertIsNone(plainSocket(None))

    def test_wrapper(self) -> None:
        """
        A wrapper says for itself, and is told of the bytes written past
        it, as is the sender's own callback.
        """
        sock = socket.socket()
        self.addCleanup(sock.close)
        self.assertIsNone(plainSocket(Wrapper(None)))
        self.assertIsNone(zeroCopyTo(Wrapper(None), len, print))
        wrapper = Wrapper(sock)
        self.assertIs(plainSocket(wrapper), sock)
        told: list[int] = []
        zeroCopy = zeroCopyTo(wrapper, lambda fd, limit: 0, told.append)
        assert zeroCopy is not None
        self.assertIs(zeroCopy.handle, sock)
        zeroCopy.sent(10)
        self.assertEqual((wrapper.counted, told), ([10], [10]))


class Consumer(StringTransport):
    """A transport that pauses its producer above C{limit} buffered bytes."""

    limit = 1000

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) > self.limit and self.producer is not None:
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        """What was buffered; the producer is resumed as a transport would."""
        data = self.value()
        self.clear()
        if self.producer is not None:
            self.producer.resumeProducing()
        return data


class ZeroCopyTests(SynchronousTestCase):
    """
    ThreadedFileSender with ZeroCopy: straight to the socket only while
    the consumer's buffer is known empty.
    """

    def setUp(self) -> None:
        self.fd = dataFile(self)
        self.a, self.b = socketPair(self)
        self.a.setblocking(False)
        self.bypassed: list[int] = []

    def sender(
        self, consumer: Consumer, spans: FileSpans, send: Any = None, **kw: Any
    ) -> ThreadedFileSender:
        zeroCopy = ZeroCopy(self.a, send or spans.sendfile, self.bypassed.append)
        return ThreadedFileSender(
            inline,
            spans.read,
            consumer,
            chunkSize=2000,
            length=spans.length,
            zeroCopy=zeroCopy,
            **kw,
        )

    def received(self) -> bytes:
        self.b.setblocking(False)
        out = b""
        try:
            while chunk := self.b.recv(65536):
                out += chunk
        except BlockingIOError:
            pass
        return out

    def test_afterDrain(self) -> None:
        """
        The first chunk goes through the consumer, which pauses the
        sender; nothing is read ahead; once the consumer resumes it (its
        buffer empty), the rest goes straight to the socket, counted.
        """
        consumer = Consumer()
        spans = FileSpans(self.fd, [(0, len(DATA))])
        sender = self.sender(consumer, spans)
        done = sender.start()
        self.assertEqual(consumer.value(), DATA[:2000])
        self.assertNoResult(done)
        first = consumer.drain()
        self.assertEqual(self.successResultOf(done), len(DATA))
        self.assertEqual(first, DATA[:2000])
        self.assertEqual(self.received(), DATA[2000:])
        self.assertEqual(self.bypassed, [len(DATA) - 2000])
        self.assertIsNone(consumer.producer)

    def test_transformed(self) -> None:
        """With a transform, every byte goes through the consumer."""
        consumer = Consumer()
        spans = FileSpans(self.fd, [(0, len(DATA))])
        sender = self.sender(consumer, spans, transform=bytes.upper)
        done = sender.start()
        out = b""
        while consumer.producer is not None:
            out += consumer.drain()
        out += consumer.value()
        self.successResultOf(done)
        self.assertEqual(out, DATA.upper())
        self.assertEqual(self.received(), b"")
        self.assertEqual(self.bypassed, [])

    def test_fullSocket(self) -> None:
        """
        A socket that stays full sends the next chunk through the
        consumer (whose resuming, once sent, allows a direct send again).
        """
        self.patch(files, "_writable", lambda fd, seconds: False)
        consumer = Consumer()
        spans = FileSpans(self.fd, [(0, len(DATA))])
        sent: list[int] = []

        def full(fd: int, limit: int) -> int:
            if not sent:
                sent.append(limit)
                raise BlockingIOError()
            return spans.sendfile(fd, limit)

        done = self.sender(consumer, spans, full).start()
        self.assertEqual(consumer.drain(), DATA[:2000])
        # The direct trip found the socket full: the next chunk is read.
        self.assertEqual(consumer.value(), DATA[2000:4000])
        self.assertEqual(self.bypassed, [0])
        consumer.drain()
        self.assertEqual(self.successResultOf(done), len(DATA))
        self.assertEqual(self.received(), DATA[4000:])

    def test_waitBudget(self) -> None:
        """
        A trip waits for a full socket at most ZERO_COPY_WAIT in all, then
        the next chunk goes through the consumer.
        """
        now = [0.0]
        waits: list[float] = []

        class Clock:
            def monotonic(self) -> float:
                return now[0]

        def writable(fd: int, seconds: float) -> bool:
            waits.append(round(seconds, 6))
            now[0] += 0.04
            return True

        def full(fd: int, limit: int) -> int:
            raise BlockingIOError()

        self.patch(files, "time", Clock())
        self.patch(files, "_writable", writable)
        consumer = Consumer()
        spans = FileSpans(self.fd, [(0, len(DATA))])
        done = self.sender(consumer, spans, full).start()
        self.assertEqual(consumer.drain(), DATA[:2000])
        self.assertEqual(waits, [0.1, 0.06, 0.02])
        self.assertEqual(consumer.value(), DATA[2000:4000])
        self.assertNoResult(done)

    def test_stopped(self) -> None:
        """Stopped while paused: the sender fails, nothing more is sent."""
        consumer = Consumer()
        spans = FileSpans(self.fd, [(0, len(DATA))])
        sender = self.sender(consumer, spans)
        done = sender.start()
        sender.stopProducing()
        self.failureResultOf(done, SendingStopped)
        sender.resumeProducing()
        self.assertEqual(self.received(), b"")

    def test_shrank(self) -> None:
        """A file that shrank fails the sender with FileShrank."""
        consumer = Consumer()
        spans = FileSpans(self.fd, [(0, len(DATA) + 10)])
        sender = self.sender(consumer, spans)
        done = sender.start()
        consumer.drain()
        self.failureResultOf(done, FileShrank)
        self.assertEqual(len(self.flushLoggedErrors()), 0)
