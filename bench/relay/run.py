"""
Relay throughput: how fast a node's queue drains to another node, side by
side with Twisted's stock client sending the same messages; first to a
real appnet node (durable on both sides), then to a sink that discards
what it gets (so the sending side's own cost shows).

Two appnet nodes (crepes.fr on 127.0.0.2, hamburger.edu on 127.0.0.3) and
their DNS server run in this process (L{startMailNetwork}, real clock).
For each appnet row, N messages of 1 KiB for bob@hamburger.edu are queued
on node A while B is down; then B starts, the queue is made due, and the
clock runs until B's mailbox holds all N (B stores each durably before its
250; A commits each delivery before the next step). The rows differ in
connection reuse and per-destination concurrency. The peer row sends the
same N messages straight to B with C{twisted.mail.smtp.sendmail} (no
queue, no durability on the sending side, one connection per message),
at most 5 at once. Everything shares one reactor, so B's work is in every
row alike. The sink rows replace node B by a minimal Twisted ESMTP server
on B's address and port that counts and discards messages.

Usage (from a checkout, with the test extras installed)::

    .venv/bin/python bench/relay/run.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.mail import smtp
from twisted.mail.smtp import sendmail
from zope.interface import implementer

from appnet.store.interfaces import INBOX
from appnet.testing import startMailNetwork

BOB = "bob@hamburger.edu"
ALICE = "alice@crepes.fr"


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


async def startSink(reactor: Any, host: str, port: int) -> tuple[Sink, Any]:
    sink = Sink()
    factory = smtp.SMTPFactory()
    factory.delivery = sink  # type: ignore[attr-defined]

    def build(addr: Any) -> smtp.ESMTP:
        protocol = smtp.ESMTP()
        protocol.delivery = sink
        protocol.factory = factory
        return protocol

    factory.buildProtocol = build  # type: ignore[method-assign]
    listening = await TCP4ServerEndpoint(reactor, port, interface=host).listen(factory)
    return sink, listening


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
    rows = [
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
    results = []
    for name, work in rows:
        results.append((name, await work))
    print(f"{n} messages of 1 KiB per row")
    width = max(len(name) for name, _ in results)
    print(f"{'case':<{width}}  msg/s")
    for name, rate in results:
        print(f"{name:<{width}}  {rate:7.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 messages per row")
    args = parser.parse_args()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, args.quick)))
    sys.exit(0)
