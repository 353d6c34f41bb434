"""
Where the end-to-end relay row's time goes: run.py's headline row once,
with CPU time per message (the whole process, and its reactor thread)
and each stage's wall-clock latency, optionally under cProfile.

Stages are timed by wrapping, for this run only, the methods of A's
queue store, the relay and B's mail store that each stage calls:
submission (A's queue insert, durable before the 250), pickup (from the
insert's commit to the claim that takes it: none for mail the runner
adopts as it is queued, which is all of it here), the MX lookup, connection
set-up (TCP, greeting, EHLO, STARTTLS if offered), one transaction on a
session (MAIL to the final reply), B's durable store, and A's own
bookkeeping after the reply (recording the outcome, settling). Unlike
run.py, both nodes, their DNS server and the client run in this one
process, on one reactor, so that one profile and one set of wrappers see
every stage; its rates are not run.py's.

Usage::

    .venv/bin/python bench/relay/stages.py [-n 500] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer, task, threads

sys.path.insert(0, str(Path(__file__).parent))

from run import (  # noqa: E402
    ALICE,
    BOB,
    message,
    startSink,
    submitAll,
)

from appnet.auth import hashPassword  # noqa: E402
from appnet.mail.relay import Relay, RelayClient  # noqa: E402
from appnet.store.interfaces import INBOX  # noqa: E402
from appnet.store.mailsqlite import SQLiteMailStore  # noqa: E402
from appnet.store.queuesqlite import SQLiteQueueStore  # noqa: E402
from appnet.testing import startMailNetwork  # noqa: E402

__all__ = ["main"]

#: Each stage's latencies, seconds.
timings: dict[str, list[float]] = defaultdict(list)
#: When each queue entry's insert committed.
enqueued: dict[int, float] = {}
#: When each queue insert and each delivery on B finished.
moments: dict[str, list[float]] = defaultdict(list)


async def network(reactor: Any, mail: dict[str, Any]) -> Any:
    """Both nodes and their DNS server in this process, on the real clock."""
    return await startMailNetwork(
        None,
        domains={"crepes.fr": ["alice"], "hamburger.edu": ["bob"]},
        clock=reactor,
        config={"mail": {"retry": ["1h"], "spf": "off", **mail}},
    )


async def waitFor(reactor: Any, net: Any, count: int) -> None:
    """Until bob's INBOX on B holds C{count} messages."""
    b = net.node("hamburger.edu")
    while int((await b.running.store.mail.folder(BOB, INBOX)).messages) < count:
        await task.deferLater(reactor, 0.01, lambda: None)


def timed(
    cls: type, name: str, stage: str, after: Callable[[Any, float], None] | None = None
) -> None:
    """Wrap C{cls.name} so each call's latency lands in C{timings[stage]}."""
    original = getattr(cls, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        d = defer.maybeDeferred(original, self, *args, **kwargs)

        def done(result: Any) -> Any:
            now = time.perf_counter()
            timings[stage].append(now - started)
            if after is not None:
                after(result, now)
            return result

        return d.addCallback(done)

    setattr(cls, name, wrapper)


def instrument() -> None:
    def inserted(id: int, now: float) -> None:
        enqueued[id] = now
        moments["A queue insert"].append(now)

    def stored(_: object, now: float) -> None:
        moments["B store"].append(now)

    def claimed(messages: Any, now: float) -> None:
        timings["claim size"].append(len(messages))
        for m in messages:
            if m.id in enqueued:
                timings["pickup (commit -> claimed)"].append(now - enqueued.pop(m.id))

    timed(SQLiteQueueStore, "enqueue", "A queue insert (before 250)", inserted)
    timed(SQLiteQueueStore, "claim", "A claim", claimed)
    timed(SQLiteQueueStore, "openMessage", "A openMessage")
    timed(SQLiteQueueStore, "record", "A record outcome")
    timed(SQLiteQueueStore, "get", "A get")
    timed(SQLiteQueueStore, "settle", "A settle")
    timed(SQLiteQueueStore, "nextDue", "A nextDue")
    timed(Relay, "hops", "MX lookup")
    timed(Relay, "connect", "connection set-up")
    timed(RelayClient, "send", "SMTP transaction")
    timed(SQLiteMailStore, "deliver", "B store (deliver)", stored)


async def endToEnd(
    reactor: Any, n: int, profile: str | None, mail: dict[str, Any], row: str
) -> None:
    profiler = cProfile.Profile() if profile else None
    net = await network(reactor, mail)
    try:
        a, b = net.node("crepes.fr"), net.node("hamburger.edu")
        host, port = a.address("submission")
        login: tuple[str, str] | None = (ALICE, a.passwords[ALICE])
        hashed = await threads.deferToThread(hashPassword, a.passwords[ALICE])
        await a.running.store.users.setPasswordHash(ALICE, hashed)
        if row == "direct":
            host, port, login = b.host, b.smtpPort, None
        elif row == "submit":
            await a.runner.stopService()
        elif row == "sink":
            await b.stop()
            for i in range(n):
                staged = a.running.store.mail.stage()
                staged.write(message(i))
                await a.running.store.queue.enqueue(staged, ALICE, [BOB])
                staged.discard()
            await net.settle()
            discard, listening = await startSink(reactor, b.host, b.smtpPort)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        thread = time.thread_time()
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        if row == "sink":
            await a.running.store.queue.retry()
            while discard.count < n:
                await task.deferLater(reactor, 0.01, lambda: None)
            submitted = time.perf_counter()
        else:
            submitted = await submitAll(reactor, host, port, n, login)
        if row in ("e2e", "direct"):
            await waitFor(reactor, net, n)
        stored = time.perf_counter()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        after = resource.getrusage(resource.RUSAGE_SELF)
        reactorCPU = time.thread_time() - thread
        processCPU = (after.ru_utime - usage.ru_utime) + (
            after.ru_stime - usage.ru_stime
        )
        if row == "submit":
            a.runner.startService()
        if row == "sink":
            await listening.stopListening()
        await net.settle()
    finally:
        await net.stop()
    wall = stored - started
    print(f"{n} messages, 10 submission connections, row {row}")
    print(
        f"end to end {n / wall:.0f} msg/s; submission {n / (submitted - started):.0f}"
    )
    print(
        f"CPU ms/message: process {processCPU * 1000 / n:.2f}"
        f" (reactor thread {reactorCPU * 1000 / n:.2f});"
        f" reactor busy {reactorCPU / wall:.0%} of the run"
    )
    for what, times in moments.items():
        first, last = times[0] - started, times[-1] - started
        steady = (len(times) - 1) / (times[-1] - times[0])
        print(
            f"{what}: first at {first * 1000:.0f} ms, last at {last * 1000:.0f} ms,"
            f" {steady:.0f}/s in between"
        )
    print()
    print(f"{'stage':<30} {'count':>6} {'mean ms':>8} {'p50':>7} {'p95':>7}")
    for stage, values in timings.items():
        values = sorted(values)
        if not values:
            continue
        if stage == "claim size":
            print(f"{stage:<30} {len(values):>6} {sum(values) / len(values):>8.1f}")
            continue
        mean = sum(values) / len(values) * 1000
        p50 = values[len(values) // 2] * 1000
        p95 = values[int(len(values) * 0.95)] * 1000
        print(f"{stage:<30} {len(values):>6} {mean:>8.2f} {p50:>7.2f} {p95:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=500, help="messages")
    parser.add_argument("--profile", help="write cProfile stats here")
    parser.add_argument(
        "--row",
        choices=["e2e", "direct", "submit", "sink"],
        default="e2e",
        help="e2e: submit on A, stored on B; direct: the same sessions"
        " straight to B's MX; submit: on A with its queue runner stopped;"
        " sink: A's queue drained to a sink in B's place",
    )
    parser.add_argument(
        "--mail",
        action="append",
        default=[],
        help="a [mail] setting for both nodes, KEY=INTEGER",
    )
    args = parser.parse_args()
    mail = {k: int(v) for k, v in (each.split("=", 1) for each in args.mail)}
    row = args.row
    instrument()
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(
            endToEnd(reactor, args.n, args.profile, mail, row)
        )
    )


if __name__ == "__main__":
    main()
