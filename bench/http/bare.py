"""
The floor under every HTTP row: a bare Twisted TCP protocol that answers
each keep-alive GET with one pre-built response (headers and the file's
bytes, read once at start). It parses nothing but the end of each request;
this is what the reactor alone costs.

    python bench/http/bare.py FILE PORT
"""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol


class Bare(Protocol):
    response = b""

    def connectionMade(self) -> None:
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        count = self.buffer.count(b"\r\n\r\n")
        if count:
            self.buffer = self.buffer[self.buffer.rindex(b"\r\n\r\n") + 4 :]
            self.transport.write(self.response * count)  # type: ignore[union-attr]


def main() -> None:
    with open(sys.argv[1], "rb") as f:
        body = f.read()
    Bare.response = (
        b"HTTP/1.1 200 OK\r\nServer: bare\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    reactor.listenTCP(  # type: ignore[attr-defined]
        int(sys.argv[2]), Factory.forProtocol(Bare), interface="127.0.0.1"
    )
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
