"""
SMTP 1 KiB throughput of two appnet checkouts, alternating: for telling
whether a change to the MX hot path helps, on a machine whose speed
drifts between runs (a shared one), where two runs of ``run.py`` a few
minutes apart differ as much as the change does.

Each round starts appnet from checkout A, then from checkout B (each with
that checkout first on ``PYTHONPATH``, so its own code runs, whatever is
installed), sends each ``--warmup`` messages untimed and then
``--messages`` timed ones of 1 KiB over 10 connections, as ``run.py``
does, and records the rate and the CPU time per message of the reactor
thread and of the whole process (from /proc). The table gives every
round, so drift shows, and the medians.

Usage, from a checkout with the test extras installed (a second checkout
made with ``git worktree add ../before HEAD~1``, say)::

    .venv/bin/python bench/smtp/compare.py ../before . [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import run  # noqa: E402
from benchlib import stopProcess, table  # noqa: E402


def measure(checkout: str, work: str, warmup: int, count: int) -> tuple[float, ...]:
    """One appnet from C{checkout}: its rate and CPU ms per message."""
    previous = os.environ.get("PYTHONPATH"), run.ROOT
    # Its code first on the path, and its directory the current one for
    # "python -m appnet" (whose own directory would come first).
    os.environ["PYTHONPATH"] = run.ROOT = os.path.abspath(checkout)
    try:
        appnet, ports = run.startAppnet(os.path.join(work, "appnet"))
    finally:
        if previous[0] is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous[0]
        run.ROOT = previous[1]
    try:
        asyncio.run(run.smtpLoad(ports["smtp"], 1024, warmup))
        reactor = run.cpuSeconds(appnet.pid, appnet.pid)
        process = run.cpuSeconds(appnet.pid)
        rate, sent = asyncio.run(run.smtpLoad(ports["smtp"], 1024, count))
        reactor = run.cpuSeconds(appnet.pid, appnet.pid) - reactor
        process = run.cpuSeconds(appnet.pid) - process
    finally:
        stopProcess(appnet)
    return rate, 1000 * reactor / sent, 1000 * process / sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="checkout A (measured first in each round)")
    parser.add_argument("b", help="checkout B")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--messages", type=int, default=12000)
    options = parser.parse_args()
    rows = [["round", "checkout", "msg/s", "reactor ms/msg", "process ms/msg"]]
    results: dict[str, list[tuple[float, ...]]] = {options.a: [], options.b: []}
    for n in range(1, options.rounds + 1):
        for checkout in (options.a, options.b):
            work = tempfile.mkdtemp(prefix="appnet-compare-")
            try:
                result = measure(checkout, work, options.warmup, options.messages)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            results[checkout].append(result)
            rate, reactor, process = result
            rows.append(
                [
                    str(n),
                    checkout,
                    f"{rate:.0f}",
                    f"{reactor:.2f}",
                    f"{process:.2f}",
                ]
            )
    for checkout, each in results.items():
        rows.append(
            [
                "median",
                checkout,
                f"{statistics.median(r[0] for r in each):.0f}",
                f"{statistics.median(r[1] for r in each):.2f}",
                f"{statistics.median(r[2] for r in each):.2f}",
            ]
        )
    print(table(rows))


if __name__ == "__main__":
    main()
