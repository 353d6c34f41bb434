"""
Line framing for the mail protocols: one command at a time.

Twisted's C{LineOnlyReceiver} hands every line of a received chunk to the
protocol at once, so a command answered asynchronously (a recipient check
in the store, a password check in a thread) is overtaken by the pipelined
commands after it: Twisted's SMTP answers them out of order or with 503,
and after STARTTLS it goes on executing plaintext lines that were sent
before the handshake (command injection). L{LineQueue} keeps unread input
in a buffer and hands out the next line only when the protocol is ready:
a command that goes asynchronous calls L{LineQueue.hold} and, once it has
answered, L{LineQueue.release}. L{LineQueue.discardInput} drops whatever
was pipelined (after STARTTLS and STLS). While a command is pending the
buffer is bounded: past L{LineQueue.maxBuffered} the transport is paused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["DotStuffer", "LineQueue", "crlfLineEnds", "noDelay"]


def noDelay(transport: Any) -> None:
    """
    Turn off Nagle's algorithm: replies are small and answer a waiting
    client, and a reply held back for the client's delayed ACK costs some
    40 ms per command (asyncio servers turn it off by default too).
    """
    setter = getattr(transport, "setTcpNoDelay", None)
    if setter is not None:
        try:
            setter(True)
        except OSError:
            pass


def crlfLineEnds(chunk: bytes) -> bytes:
    """CRLF for every line end, bare LF included."""
    return chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class DotStuffer:
    """
    Dot-stuffing of a message body sent in chunks (SMTP DATA, RFC 5321
    4.5.2; POP3 multi-line responses, RFC 1939 3): a line starting with
    C{.} gets another one, across chunk boundaries.

    @ivar lineEnds: also turn every line end (bare LF included) into CRLF;
        a CR at the end of a chunk is held back until the next chunk or
        L{flush} says whether an LF follows it.
    """

    def __init__(self, lineEnds: bool = False) -> None:
        self.lineEnds = lineEnds
        self.atLineStart = True
        self.heldCR = False

    def __call__(self, chunk: bytes) -> bytes:
        if self.lineEnds:
            if self.heldCR:
                chunk = b"\r" + chunk
                self.heldCR = False
            if chunk.endswith(b"\r"):
                chunk, self.heldCR = chunk[:-1], True
        if not chunk:
            return chunk
        if self.lineEnds:
            chunk = crlfLineEnds(chunk)
        if self.atLineStart and chunk.startswith(b"."):
            chunk = b"." + chunk
        chunk = chunk.replace(b"\n.", b"\n..")
        self.atLineStart = chunk.endswith(b"\n")
        return chunk

    def flush(self) -> bytes:
        """What is held back, to send before the terminating C{.} line."""
        held, self.heldCR = self.heldCR, False
        return b"\r" if held else b""


#: Consumes raw bytes; returns None while it wants more, else the bytes
#: that follow what it consumed.
RawConsumer = Callable[[bytes], "bytes | None"]


class LineQueue:
    """
    A mixin for line-based server protocols; put it before the Twisted
    protocol class in the bases so its C{dataReceived} wins.

    Subclasses implement C{lineReceived(line)} (the line without its
    CRLF or LF) and C{lineTooLong()}.

    @ivar maxLineLength: longest command line accepted.
    @ivar maxBuffered: unread bytes kept while a command is pending before
        the transport is paused.
    """

    transport: Any
    maxLineLength = 4096
    maxBuffered = 1 << 16
    _inbox = b""
    _held = 0
    _draining = False
    _paused = False
    _skipping = False
    _raw: RawConsumer | None = None

    # Provided by the protocol (not defined here, so that the Twisted
    # base's lineReceived is found after this mixin in the MRO).
    lineReceived: Callable[[bytes], None]
    lineTooLong: Callable[[], None]

    def dataReceived(self, data: bytes) -> None:
        self._inbox += data
        self._drain()

    def hold(self) -> None:
        """
        Stop handing out lines until L{release} (a command is pending).
        """
        self._held += 1

    def release(self) -> None:
        """
        The pending command has answered: go on with buffered input.
        """
        self._held = max(0, self._held - 1)
        if self._paused and not self._held:
            self._paused = False
            transport = self.transport
            if transport is not None and not transport.disconnecting:
                transport.resumeProducing()
        self._drain()

    def discardInput(self) -> None:
        """
        Forget everything received and not yet handled.
        """
        self._inbox = b""
        self._skipping = False

    def readRaw(self, consumer: RawConsumer) -> None:
        """
        Hand the following bytes to C{consumer} instead of splitting lines
        (an SMTP message body), until it returns the bytes after its end.
        """
        self._raw = consumer

    def _stopped(self) -> bool:
        transport = self.transport
        return transport is None or bool(transport.disconnecting)

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while not self._held and not self._stopped():
                if self._raw is not None:
                    if not self._inbox:
                        break
                    data, self._inbox = self._inbox, b""
                    rest = self._raw(data)
                    if rest is None:
                        break
                    self._raw = None
                    self._inbox = rest + self._inbox
                    continue
                newline = self._inbox.find(b"\n")
                if newline == -1:
                    if len(self._inbox) > self.maxLineLength:
                        self._inbox = b""
                        if not self._skipping:
                            self._skipping = True
                            self.lineTooLong()
                    break
                line, self._inbox = (
                    self._inbox[:newline],
                    self._inbox[newline + 1 :],
                )
                if self._skipping:
                    self._skipping = False
                    continue
                if len(line) > self.maxLineLength:
                    self.lineTooLong()
                    continue
                if line.endswith(b"\r"):
                    line = line[:-1]
                self.lineReceived(line)
        finally:
            self._draining = False
        if (
            self._held
            and not self._paused
            and len(self._inbox) > self.maxBuffered
            and not self._stopped()
        ):
            self._paused = True
            self.transport.pauseProducing()
