"""
Relay throughput: how fast a node's queue drains to another node, side by
side with Twisted's stock client sending the same messages.

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
row alike.

Usage (from a checkout, with the test extras installed)::

    .venv/bin/python bench/relay/run.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from twisted.internet import defer, task
from twisted.mail.smtp import sendmail

from appnet.store.interfaces import INBOX
from appnet.testing import startMailNetwork

BOB = "bob@hamburger.edu"
ALICE = "alice@crepes.fr"


def message(n: int) -> bytes:
    filler = ("x" * 70 + "\r\n") * 13
    return f"Subject: bench {n}\r\nFrom: {ALICE}\r\n\r\n{filler}".encode()


async def mailboxCount(net: Any) -> int:
    b = net.node("hamburger.edu")
    info = await b.running.store.mail.folder(BOB, INBOX)
    return int(info.messages)


async def waitFor(reactor: Any, net: Any, count: int) -> None:
    while await mailboxCount(net) < count:
        await task.deferLater(reactor, 0.01, lambda: None)


async def appnetRow(reactor: Any, n: int, reuse: int, concurrency: int) -> float:
    net = await startMailNetwork(
        None,
        domains={"crepes.fr": ["alice"], "hamburger.edu": ["bob"]},
        clock=reactor,
        config={
            "mail": {
                "relay_reuse": reuse,
                "relay_destination_concurrency": concurrency,
                "retry": ["1h"],
                "spf": "off",
            }
        },
    )
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
        await b.start()
        started = time.perf_counter()
        await store.queue.retry()
        await waitFor(reactor, net, n)
        elapsed = time.perf_counter() - started
        await net.settle()
        return n / elapsed
    finally:
        await net.stop()


async def twistedRow(reactor: Any, n: int) -> float:
    net = await startMailNetwork(
        None,
        domains={"crepes.fr": ["alice"], "hamburger.edu": ["bob"]},
        clock=reactor,
        config={"mail": {"spf": "off"}},
    )
    try:
        b = net.node("hamburger.edu")
        host, port = b.address("smtp")
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
        await waitFor(reactor, net, n)
        return n / (time.perf_counter() - started)
    finally:
        await net.stop()


async def main(reactor: Any, quick: bool) -> None:
    n = 100 if quick else 500
    rows = [
        (f"appnet relay, reuse 100, 5 conns, {n} msgs", appnetRow(reactor, n, 100, 5)),
        (f"appnet relay, reuse 100, 1 conn, {n} msgs", appnetRow(reactor, n, 100, 1)),
        (f"appnet relay, no reuse, 5 conns, {n} msgs", appnetRow(reactor, n, 1, 5)),
    ]
    results = []
    for name, work in rows:
        results.append((name, await work))
    results.append(
        (f"twisted sendmail, 5 at once, {n} msgs", await twistedRow(reactor, n))
    )
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
