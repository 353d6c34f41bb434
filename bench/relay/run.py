"""
Relay throughput, in two parts.

End to end (the headline metric): alice@crepes.fr submits N messages of 1
KiB for bob@hamburger.edu on node A's submission port, as a mail user
agent would (EHLO, AUTH PLAIN; loopback, so no TLS), over 10 concurrent
connections, each sending its share one after another in one session
(RSET between). The clock starts before the first connection and stops
when B's INBOX holds all N: A stores each message durably in its queue
before its 250, relays it by MX lookup, and B stores it durably before
its own 250. The same run also gives the submission rate alone (until
A's last 250). The peer row sends the same N messages over the same 10
connections straight to B's MX port (no AUTH, no queue, no relay hop):
one durable store per message instead of two, what the relay hop costs.

The submitting client is Twisted's own L{ESMTPClient}, which loops over
messages in one session when C{getMailFrom} keeps answering (see
L{Submitter}): it runs on the reactor without blocking it, and it is not
appnet's relay client (the thing measured). Its cost (its writes and
reads) is in the numbers, as it is in the peer row. smtplib in threads
was the other candidate; it would need a thread pool of its own (the
reactor's runs the store's fsyncs) and ten threads contending for the
GIL with the reactor that runs both servers, which would measure the
GIL more than the mail path. appnet.mail.client.send sends one message
per connection.
The account's password is re-hashed at the production scrypt cost
before the clock starts (the fixture hashes cheaply), so each session's
AUTH costs what it would in service.

Queue drain: for each appnet row, N messages for bob@hamburger.edu are
queued on node A (through the store, not SMTP) while B is down; then B
starts, the queue is made due, and the clock runs until B's mailbox holds
all N (B stores each durably before its 250; A commits each delivery
before the next step). The rows differ in connection reuse and
per-destination concurrency. The peer row sends the same N messages
straight to B with C{twisted.mail.smtp.sendmail} (no queue, no
durability on the sending side, one connection per message), at most 5
at once. The sink rows replace node B by a minimal Twisted ESMTP server
on B's address and port that counts and discards messages; it offers
PIPELINING (Twisted's server answers pipelined commands in order when, as
here, its checks are synchronous) as appnet's does, so the relay client
pipelines with both.

Two appnet nodes (crepes.fr on 127.0.0.2, hamburger.edu on 127.0.0.3),
their DNS server and every client run in this process on the real
clock: one reactor, one core for all of them (B's work is in every row
alike). SPF is off on both nodes in every row.

Usage (from a checkout, with the test extras installed)::

    .venv/bin/python bench/relay/run.py [--quick]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer, task, threads
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
)
from twisted.internet.protocol import connectionDone
from twisted.mail import smtp
from twisted.mail.smtp import ESMTPClient, PLAINAuthenticator, sendmail
from twisted.python.failure import Failure
from zope.interface import implementer

from appnet.auth import hashPassword
from appnet.mail.lines import noDelay
from appnet.store.interfaces import INBOX
from appnet.testing import startMailNetwork

BOB = "bob@hamburger.edu"
ALICE = "alice@crepes.fr"
CONNECTIONS = 10


def message(n: int) -> bytes:
    filler = ("x" * 70 + "\r\n") * 13
    return f"Subject: bench {n}\r\nFrom: {ALICE}\r\n\r\n{filler}".encode()


@implementer(smtp.IMessage)
class _Discard:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def lineReceived(self, line: bytes) -> None:
        pass

    def eomReceived(self) -> defer.Deferred[None]:
        self.sink.count += 1
        return defer.succeed(None)

    def connectionLost(self) -> None:
        pass


@implementer(smtp.IMessageDelivery)
class Sink:
    """Accepts every message and throws it away, counting."""

    def __init__(self) -> None:
        self.count = 0

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: by sink"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        return origin

    def validateTo(self, user: Any) -> Any:
        return lambda: _Discard(self)


class PipeliningESMTP(smtp.ESMTP):
    """Twisted's ESMTP server, offering PIPELINING."""

    def extensions(self) -> dict[bytes, Any]:
        offered: dict[bytes, Any] = super().extensions()
        offered[b"PIPELINING"] = None
        return offered


async def startSink(reactor: Any, host: str, port: int) -> tuple[Sink, Any]:
    sink = Sink()
    factory = smtp.SMTPFactory()
    factory.delivery = sink  # type: ignore[attr-defined]

    def build(addr: Any) -> smtp.ESMTP:
        protocol = PipeliningESMTP()
        protocol.delivery = sink
        protocol.factory = factory
        return protocol

    factory.buildProtocol = build  # type: ignore[method-assign]
    listening = await TCP4ServerEndpoint(reactor, port, interface=host).listen(factory)
    return sink, listening


class Submitter(ESMTPClient):
    """
    One user agent's session: EHLO, AUTH PLAIN if given a login, then its
    messages one after another, then QUIT.

    Twisted's L{SMTPClient} asks C{getMailFrom} again after each message
    (and RSET) and says QUIT when it gets C{None}; its C{SenderMixin}
    (behind C{sendmail}) answers only once, hence this small subclass.
    Bodies are given with LF line ends (Twisted turns them into CRLF) and
    start no line with a dot. Nagle's algorithm is off, as a client that
    waits for each reply should have it: the final dot would otherwise
    wait for the server's delayed ACK (some 40 ms a message).

    @ivar done: fires when the connection is closed; fails if any message
        was not accepted with 250.
    """

    debug = False

    def __init__(
        self,
        messages: Sequence[bytes],
        sender: str,
        recipient: str,
        login: tuple[str, str] | None,
        accepted: Callable[[], None],
    ) -> None:
        secret = login[1].encode() if login is not None else None
        ESMTPClient.__init__(self, secret, None, b"ua.crepes.fr")
        self.heloFallback = False
        if login is not None:
            self.requireAuthentication = True
            self.registerAuthenticator(PLAINAuthenticator(login[0].encode()))
        self._messages = deque(messages)
        self._sender = sender
        self._recipient = recipient
        self._accepted = accepted
        self._current = b""
        self.errors: list[str] = []
        self.done: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        noDelay(self.transport)
        super().connectionMade()

    def getMailFrom(self) -> str | None:
        if not self._messages:
            return None
        self._current = self._messages.popleft()
        return self._sender

    def getMailTo(self) -> list[str]:
        return [self._recipient]

    def getMailData(self) -> io.BytesIO:
        return io.BytesIO(self._current)

    def sentMail(
        self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any
    ) -> None:
        if code == 250:
            self._accepted()
        else:
            self.errors.append(f"{code} {resp!r} {addresses!r}")

    def sendError(self, exc: Exception) -> None:
        self.errors.append(str(exc))
        super().sendError(exc)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        if self.errors or self._messages:
            left = len(self._messages)
            self.done.errback(
                RuntimeError(f"{left} messages not sent; {self.errors[:3]}")
            )
        else:
            self.done.callback(None)


async def submitAll(
    reactor: Any,
    host: str,
    port: int,
    n: int,
    login: tuple[str, str] | None,
    connections: int = CONNECTIONS,
) -> float:
    """
    Send messages 0 to C{n}-1 from alice to bob over C{connections}
    concurrent sessions to C{host}:C{port}.

    @return: when the last one was accepted (C{time.perf_counter}).
    """
    last = [0.0]

    def accepted() -> None:
        last[0] = time.perf_counter()

    clients = [
        Submitter(
            # Twisted's client wants LF line ends (CRLF would become
            # CR CR LF).
            [message(i).replace(b"\r\n", b"\n") for i in range(c, n, connections)],
            ALICE,
            BOB,
            login,
            accepted,
        )
        for c in range(connections)
    ]
    await defer.gatherResults(
        [
            connectProtocol(TCP4ClientEndpoint(reactor, host, port), client)
            for client in clients
        ]
    )
    await defer.gatherResults([client.done for client in clients])
    return last[0]


async def endToEndRow(reactor: Any, n: int, direct: bool) -> tuple[float, float]:
    """
    alice submits C{n} messages on A's submission port (or, C{direct},
    on B's MX port) over 10 connections.

    @return: messages/s until every 250, and until B's INBOX held all.
    """
    net = await network(reactor, {})
    try:
        a, b = net.node("crepes.fr"), net.node("hamburger.edu")
        if direct:
            host, port = b.host, b.smtpPort
            login = None
        else:
            host, port = a.address("submission")
            login = (ALICE, a.passwords[ALICE])
            # The fixture hashes passwords cheaply; a real account has the
            # production cost, which each session's AUTH pays.
            hashed = await threads.deferToThread(hashPassword, login[1])
            await a.running.store.users.setPasswordHash(ALICE, hashed)
        started = time.perf_counter()
        submitted = await submitAll(reactor, host, port, n, login)
        await waitFor(reactor, net, n)
        stored = time.perf_counter()
        await net.settle()
        return n / (submitted - started), n / (stored - started)
    finally:
        await net.stop()


async def mailboxCount(net: Any) -> int:
    b = net.node("hamburger.edu")
    info = await b.running.store.mail.folder(BOB, INBOX)
    return int(info.messages)


async def waitFor(reactor: Any, net: Any, count: int) -> None:
    while await mailboxCount(net) < count:
        await task.deferLater(reactor, 0.01, lambda: None)


async def network(reactor: Any, mail: dict[str, Any]) -> Any:
    return await startMailNetwork(
        None,
        domains={"crepes.fr": ["alice"], "hamburger.edu": ["bob"]},
        clock=reactor,
        config={"mail": {"retry": ["1h"], "spf": "off", **mail}},
    )


async def appnetRow(
    reactor: Any, n: int, reuse: int, concurrency: int, sink: bool = False
) -> float:
    net = await network(
        reactor,
        {"relay_reuse": reuse, "relay_destination_concurrency": concurrency},
    )
    listening = None
    try:
        a, b = net.node("crepes.fr"), net.node("hamburger.edu")
        await b.stop()
        store = a.running.store
        for i in range(n):
            staged = store.mail.stage()
            staged.write(message(i))
            await store.queue.enqueue(staged, ALICE, [BOB])
            staged.discard()
        await net.settle()
        if sink:
            discard, listening = await startSink(reactor, b.host, b.smtpPort)
        else:
            await b.start()
        started = time.perf_counter()
        await store.queue.retry()
        if sink:
            while discard.count < n:
                await task.deferLater(reactor, 0.01, lambda: None)
        else:
            await waitFor(reactor, net, n)
        elapsed = time.perf_counter() - started
        await net.settle()
        return n / elapsed
    finally:
        if listening is not None:
            await listening.stopListening()
        await net.stop()


async def twistedRow(reactor: Any, n: int, sink: bool = False) -> float:
    net = await network(reactor, {})
    listening = None
    try:
        b = net.node("hamburger.edu")
        host, port = b.host, b.smtpPort
        if sink:
            await b.stop()
            discard, listening = await startSink(reactor, host, port)
        limit = defer.DeferredSemaphore(5)
        started = time.perf_counter()
        await defer.gatherResults(
            [
                limit.run(
                    sendmail,
                    host,
                    ALICE,
                    [BOB],
                    # Twisted's sender wants LF line ends (CRLF would
                    # become CR CR LF).
                    message(i).replace(b"\r\n", b"\n"),
                    port=port,
                )
                for i in range(n)
            ]
        )
        if not sink:
            await waitFor(reactor, net, n)
        return n / (time.perf_counter() - started)
    finally:
        if listening is not None:
            await listening.stopListening()
        await net.stop()


async def main(reactor: Any, quick: bool) -> None:
    n = 100 if quick else 500
    relayed, stored = await endToEndRow(reactor, n, direct=False)
    direct, _ = await endToEndRow(reactor, n, direct=True)
    endToEnd = [
        ("* submit on A (AUTH) -> stored in bob's INBOX on B", stored),
        ("  same run, until A's last 250 (submission only)", relayed),
        ("  peer: same 10 conns straight to B's MX (no relay hop)", direct),
    ]
    drains = [
        ("appnet relay, reuse 100, 5 conns -> appnet", appnetRow(reactor, n, 100, 5)),
        ("appnet relay, reuse 100, 1 conn -> appnet", appnetRow(reactor, n, 100, 1)),
        ("appnet relay, no reuse, 5 conns -> appnet", appnetRow(reactor, n, 1, 5)),
        ("twisted sendmail, 5 at once -> appnet", twistedRow(reactor, n)),
        (
            "appnet relay, reuse 100, 5 conns -> sink",
            appnetRow(reactor, n, 100, 5, True),
        ),
        (
            "appnet relay, reuse 100, 1 conn -> sink",
            appnetRow(reactor, n, 100, 1, True),
        ),
        ("appnet relay, no reuse, 5 conns -> sink", appnetRow(reactor, n, 1, 5, True)),
        ("twisted sendmail, 5 at once -> sink", twistedRow(reactor, n, True)),
    ]
    queued = []
    for name, work in drains:
        queued.append((name, await work))
    width = max(len(name) for name, _ in endToEnd + queued)
    print(f"{n} messages of 1 KiB per row")
    print()
    print(
        f"End to end: alice submits on A, {CONNECTIONS} connections of"
        f" {n // CONNECTIONS} messages each"
    )
    print(f"{'case':<{width}}  msg/s")
    for name, rate in endToEnd:
        print(f"{name:<{width}}  {rate:7.0f}")
    print()
    print("Queue drain: queued on A while B was down, then B started")
    print(f"{'case':<{width}}  msg/s")
    for name, rate in queued:
        print(f"{name:<{width}}  {rate:7.0f}")
    print()
    print(
        "* the headline metric: messages/s from submission on A to stored in B's INBOX"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 messages per row")
    args = parser.parse_args()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, args.quick)))
    sys.exit(0)
