"""
Tests for L{appnet.ftp._files}: the producer and consumer that move files
with bounded memory, line-end conversion and the rate limit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appnet.ftp._files import (
    AsciiDecoder,
    AsciiEncoder,
    FileReceiver,
    FileSender,
    TokenBucket,
    inline,
)
from appnet.ftp.errors import TransferAborted


class ManualThreads:
    """
    An L{InThread} runner whose calls wait until the test runs them, so a
    test can hold work "in the thread" and look at what happens meanwhile.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((f, args, d))
        return d

    def runOne(self) -> None:
        f, args, d = self.calls.pop(0)
        maybeDeferred(f, *args).chainDeferred(d)

    def runAll(self) -> None:
        while self.calls:
            self.runOne()


class Consumer:
    """A consumer that pauses its producer when told to."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.producer: Any = None
        self.writes = 0

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.data += data
        self.writes += 1


class Producer:
    """Records pause and resume."""

    def __init__(self) -> None:
        self.state = "producing"

    def pauseProducing(self) -> None:
        self.state = "paused"

    def resumeProducing(self) -> None:
        self.state = "producing"

    def stopProducing(self) -> None:
        self.state = "stopped"


class SenderTests(SynchronousTestCase):
    """
    L{FileSender}.
    """

    def setUp(self) -> None:
        path = self.mktemp()
        self.content = os.urandom(100_000)
        with open(path, "wb") as f:
            f.write(self.content)
        self.fd = os.open(path, os.O_RDONLY)
        self.addCleanup(os.close, self.fd)

    def test_sendsAll(self) -> None:
        """The whole file arrives, in chunks, then the producer unregisters."""
        consumer = Consumer()
        sender = FileSender(inline, self.fd, consumer, Clock(), chunkSize=8192)
        self.assertEqual(self.successResultOf(sender.start()), 100_000)
        self.assertEqual(bytes(consumer.data), self.content)
        self.assertEqual(consumer.writes, 13)
        self.assertIsNone(consumer.producer)

    def test_pauseBoundsReadAhead(self) -> None:
        """
        While paused, at most one chunk is read ahead: memory stays at a
        chunk or two, however large the file.
        """
        threads = ManualThreads()
        consumer = Consumer()
        sender = FileSender(threads, self.fd, consumer, Clock(), chunkSize=1000)
        done = sender.start()
        sender.pauseProducing()
        for _ in range(5):
            threads.runAll()
        self.assertEqual(len(consumer.data), 0)
        self.assertEqual(threads.calls, [], "only one chunk was read ahead")
        sender.resumeProducing()
        self.assertEqual(len(consumer.data), 1000)
        self.assertNoResult(done)
        threads.runAll()
        self.assertEqual(bytes(consumer.data), self.content)
        self.assertEqual(self.successResultOf(done), 100_000)

    def test_stop(self) -> None:
        """If the consumer stops the producer, the send fails as aborted."""
        threads = ManualThreads()
        sender = FileSender(threads, self.fd, Consumer(), Clock(), chunkSize=1000)
        done = sender.start()
        sender.stopProducing()
        self.failureResultOf(done, TransferAborted)
        quiet = sender.quiet()
        self.assertNoResult(quiet)
        threads.runAll()
        self.successResultOf(quiet)

    def test_throttle(self) -> None:
        """A throttle's delays space the chunks out in time."""
        clock = Clock()
        consumer = Consumer()
        sender = FileSender(
            inline,
            self.fd,
            consumer,
            clock,
            chunkSize=10_000,
            throttle=lambda n: 1.0,
        )
        done = sender.start()
        self.assertEqual(len(consumer.data), 10_000)
        clock.advance(1)
        self.assertEqual(len(consumer.data), 20_000)
        clock.pump([1] * 10)
        self.assertEqual(self.successResultOf(done), 100_000)

    def test_transform(self) -> None:
        """A transform applies to every chunk written."""
        consumer = Consumer()
        FileSender(
            inline, self.fd, consumer, Clock(), transform=lambda b: b[:1]
        ).start()
        self.assertEqual(len(consumer.data), 1)


class ReceiverTests(SynchronousTestCase):
    """
    L{FileReceiver}.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT)
        self.addCleanup(os.close, self.fd)

    def test_writesAll(self) -> None:
        """Everything written reaches the file by the time finish fires."""
        receiver = FileReceiver(inline, self.fd)
        for i in range(10):
            receiver.write(bytes([i]) * 1000)
        self.assertEqual(self.successResultOf(receiver.finish()), 10_000)
        with open(self.path, "rb") as f:
            self.assertEqual(len(f.read()), 10_000)

    def test_backpressure(self) -> None:
        """
        Above the high-water mark the producer is paused; once the disk
        catches up below the low mark it is resumed.
        """
        threads = ManualThreads()
        producer = Producer()
        receiver = FileReceiver(threads, self.fd, high=3000, low=1000, batch=1000)
        receiver.registerProducer(producer, True)
        for _ in range(5):
            receiver.write(b"x" * 1000)
        self.assertEqual(producer.state, "paused")
        for _ in range(3):
            threads.runOne()
            self.assertEqual(producer.state, "paused")
        threads.runOne()
        self.assertEqual(producer.state, "producing")
        finished = receiver.finish()
        threads.runAll()
        threads.runAll()
        self.assertEqual(self.successResultOf(finished), 5000)

    def test_limit(self) -> None:
        """A limit's error stops the producer and fails finish."""
        producer = Producer()
        error = TransferAborted("too much")
        receiver = FileReceiver(
            inline, self.fd, limit=lambda total: error if total > 5 else None
        )
        receiver.registerProducer(producer, True)
        receiver.write(b"12345")
        receiver.write(b"6")
        self.assertEqual(producer.state, "stopped")
        self.assertIs(self.failureResultOf(receiver.finish()).value, error)

    def test_writeError(self) -> None:
        """A failing write becomes the receiver's error."""
        receiver = FileReceiver(inline, 987654)
        receiver.write(b"x")
        self.assertIsNotNone(receiver.error)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class AsciiTests(SynchronousTestCase):
    """
    TYPE A line ends.
    """

    def test_encode(self) -> None:
        """LF becomes CRLF; CRLF stays; a CR/LF split across chunks too."""
        encode = AsciiEncoder()
        self.assertEqual(encode(b"a\nb\r\n"), b"a\r\nb\r\n")
        self.assertEqual(encode(b"c\r") + encode(b"\nd"), b"c\r\nd")

    def test_decode(self) -> None:
        """CRLF becomes LF, across chunk boundaries; a lone CR survives."""
        decode = AsciiDecoder()
        out = decode(b"a\r\nb\r") + decode(b"\nc\r") + decode(b"x") + decode.flush()
        self.assertEqual(out, b"a\nb\nc\rx")
        decode(b"end\r")
        self.assertEqual(decode.flush(), b"\r")


class BucketTests(SynchronousTestCase):
    """
    L{TokenBucket}.
    """

    def test_withinRate(self) -> None:
        """Up to one second's worth passes at once."""
        bucket = TokenBucket(Clock(), 1000)
        self.assertEqual(bucket.take(1000), 0.0)

    def test_overRate(self) -> None:
        """Beyond it, the caller is told to wait for the excess to drain."""
        clock = Clock()
        bucket = TokenBucket(clock, 1000)
        bucket.take(1000)
        self.assertEqual(bucket.take(500), 0.5)
        clock.advance(0.5)
        self.assertEqual(bucket.take(0), 0.0)
