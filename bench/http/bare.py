"""
The floor under every HTTP row: a bare Twisted TCP protocol that answers
each keep-alive GET with one pre-built response (headers and the small
file's bytes, read once at start), or, for the large file's name, its
headers and then the file itself read 1 MiB at a time as the transport
asks for more (a push producer; reads on the reactor thread, which only
a benchmark may do). It parses nothing but the end of each request; this
is what the reactor alone costs. Small responses go straight to the
socket while nothing waits in the transport's buffer, as appnet's
listeners send them (appnet.listen).

    python bench/http/bare.py FILE PORT [LARGEFILE]
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

CHUNK = 1024 * 1024


@implementer(IPushProducer)
class Reader:
    """Writes a file into a transport, a chunk each time it has room."""

    def __init__(self, path: str, transport: Any, done: Any) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.offset = 0
        self.paused = False
        self.transport = transport
        self.done = done
        transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.fd >= 0:
            data = os.pread(self.fd, CHUNK, self.offset)
            if not data:
                self.stopProducing()
                self.transport.unregisterProducer()
                self.done()
                return
            self.offset += len(data)
            self.transport.write(data)

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Bare(Protocol):
    response = b""
    large = b""
    largeHead = b""
    largePath = ""

    def connectionMade(self) -> None:
        self.buffer = b""
        self.sending = False
        self.direct: Any = self.transport.getHandle()  # type: ignore[union-attr]

    def write(self, data: bytes) -> None:
        """Send at once while the transport holds nothing, else through it."""
        if self.direct is not None:
            try:
                sent = self.direct.send(data)
            except OSError:
                sent = 0
            if sent == len(data):
                return
            self.direct = None
            data = data[sent:]
        self.transport.write(data)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.sending:
            self.answer()

    def answer(self) -> None:
        count = 0
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            if self.large and head.split(b" ", 2)[1:2] == [self.large]:
                if count:
                    self.write(self.response * count)
                    count = 0
                self.direct = None  # The file goes through the transport.
                self.transport.write(self.largeHead)  # type: ignore[union-attr]
                self.sending = True
                Reader(self.largePath, self.transport, self.sent)
                return
            count += 1
        if count:
            self.write(self.response * count)

    def sent(self) -> None:
        self.sending = False
        self.answer()


def main() -> None:
    with open(sys.argv[1], "rb") as f:
        body = f.read()
    Bare.response = (
        b"HTTP/1.1 200 OK\r\nServer: bare\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    if len(sys.argv) > 3:
        Bare.largePath = sys.argv[3]
        Bare.large = b"/" + os.path.basename(sys.argv[3]).encode()
        Bare.largeHead = (
            b"HTTP/1.1 200 OK\r\nServer: bare\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % os.path.getsize(sys.argv[3])
        )
    reactor.listenTCP(  # type: ignore[attr-defined]
        int(sys.argv[2]), Factory.forProtocol(Bare), interface="127.0.0.1"
    )
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
