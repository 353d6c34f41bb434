"""
SMTP throughput by store: appnet over SQLite (one node), over PostgreSQL
(one node), and two appnet nodes over one PostgreSQL (the load split
between them), side by side in one run.

The load generator is the one of C{bench/smtp/run.py}: 10 connections,
one message at a time each, counting 250 replies; every 250 means the
message is durable (SQLite: fsynced file and commit; PostgreSQL: its
commit, fsynced: the benchmark's server runs with C{fsync=on}). The
PostgreSQL server is started from Debian's C{postgresql} package in a
temporary directory (as C{postgres} when run as root) and stopped after.

Usage (from a checkout, with the test extras installed)::

    .venv/bin/python bench/smtp/stores.py [--quick]

All nodes and the database share this machine's cores, so the two-node
row measures contention as much as scaling; on a shared machine, run it
twice and compare rows of one table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import stopProcess, table  # noqa: E402
from run import CONNECTIONS, RECIPIENT, _smtpClient, message  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from tests.pgserver import createDatabase, newServer  # noqa: E402


def appnet(
    data: str, host: str, url: str | None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start one appnet node; return it and its SMTP port."""
    os.makedirs(data, exist_ok=True)
    config = os.path.join(data, "appnet.toml")
    with open(config, "w") as f:
        f.write(f'[store]\nurl = "{url}"\n' if url else "")
    args = ["--config", config, "--data", data, "--dns", f"{host}:0"]
    for name in ("http", "ftp", "smtp", "submission", "pop3", "imap"):
        args += [f"--{name}", f"tcp:0:interface={host}"]
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "appnet", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=data,
    )  # fmt: skip
    assert process.stdout is not None
    port = 0
    for raw in process.stdout:
        found = re.search(rb"smtp listening on tcp [\d.]+:(\d+)", raw)
        if found:
            port = int(found.group(1))
        if b"appnet ready" in raw:
            break
    else:
        raise RuntimeError("appnet did not start")
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, port


def addUser(data: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "appnet", "--config",
         os.path.join(data, "appnet.toml"), "--data", data, "user", "add",
         RECIPIENT, "--password-stdin"],
        input=b"bench-password\n",
        check=False,
        capture_output=True,
        cwd=ROOT,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(result.stderr.decode())


async def load(targets: list[tuple[str, int]], size: int, total: int) -> float:
    """Messages/s over C{CONNECTIONS} connections spread over the targets."""
    body = message(size)
    per = total // CONNECTIONS
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = await asyncio.gather(
        *[
            _smtpClient(
                targets[i % len(targets)][1], body, per, targets[i % len(targets)][0]
            )
            for i in range(CONNECTIONS)
        ]
    )
    return sum(sent) / (loop.time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    options = parser.parse_args()
    scale = 5 if options.quick else 1
    loads = [(1024, 2000 // scale), (100 * 1024, 500 // scale)]
    work = tempfile.mkdtemp(prefix="appnet-bench-")
    server = newServer()
    server.durable = True
    checked = (0, 0, 0)
    rows = [
        [
            "SMTP, 10 conns",
            "SQLite, 1 node",
            "PostgreSQL, 1 node",
            "PostgreSQL, 2 nodes",
        ]
    ]
    try:
        server.start()
        results: dict[str, list[str]] = {}
        for name, nodes, pg in (
            ("sqlite", 1, False),
            ("pg1", 1, True),
            ("pg2", 2, True),
        ):
            url = None
            if pg:
                createDatabase(server, name)
                url = server.url(name)
            started = []
            try:
                for n in range(nodes):
                    data = os.path.join(work, f"{name}-{n}")
                    os.makedirs(data)
                    with open(os.path.join(data, "appnet.toml"), "w") as f:
                        f.write(f'[store]\nurl = "{url}"\n' if url else "")
                    if n == 0:
                        addUser(data)
                    started.append(appnet(data, f"127.0.0.{2 + n}", url))
                targets = [
                    (f"127.0.0.{2 + n}", port) for n, (_, port) in enumerate(started)
                ]
                for size, total in loads:
                    rate = asyncio.run(load(targets, size, total))
                    results.setdefault(f"{size // 1024} KiB x {total}", []).append(
                        f"{rate:.0f} msg/s"
                    )
            finally:
                for process, _ in started:
                    stopProcess(process)
            if nodes == 2:
                checked = uidCheck(server.url(name))
        for label, values in results.items():
            rows.append([label, *values])
    finally:
        server.remove()
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    print(
        "two nodes, one mailbox: {} messages stored, {} distinct UIDs,"
        " UIDs 1 to {}".format(*checked)
    )


def uidCheck(url: str) -> tuple[int, int, int]:
    """Messages, distinct UIDs and the highest UID in the mailbox."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT uid), MAX(uid) FROM mail_messages"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


if __name__ == "__main__":
    main()
