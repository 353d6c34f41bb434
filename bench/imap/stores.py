"""
IMAP by store: the same mailbox served by appnet over SQLite and over
PostgreSQL, side by side in one run.

The mailbox and the measurements are those of C{bench/imap/run.py}
(10,000 messages of about 4 KiB; SELECT, FETCH FLAGS, FETCH BODY.PEEK[],
SEARCH SUBJECT, through Python's imaplib over TCP on loopback). The
PostgreSQL server comes from Debian's C{postgresql} package, started in a
temporary directory with C{fsync=on} and stopped after.

Usage (from a checkout, with the test extras installed)::

    .venv/bin/python bench/imap/stores.py [--messages N]

On a shared machine, run it twice and compare the columns of one table.
"""

from __future__ import annotations

import argparse
import imaplib
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
from run import PASSWORD, POPULATE, USER, measure  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from tests.pgserver import createDatabase, newServer  # noqa: E402

POPULATE_PG = POPULATE.replace(
    "from appnet.store.sqlite import SQLiteStore",
    "from appnet.store.pg import PostgreSQLStore as SQLiteStore",
)


def startAppnet(
    data: str, count: int, url: str | None
) -> tuple[subprocess.Popen[bytes], int]:
    os.makedirs(data)
    config = os.path.join(data, "appnet.toml")
    with open(config, "w") as f:
        f.write(f'[store]\nurl = "{url}"\n' if url else "")
    subprocess.run(
        [sys.executable, "-m", "appnet", "--config", config, "--data", data,
         "user", "add", USER, "--password-stdin"],
        input=PASSWORD.encode() + b"\n", check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    script, target = (
        (POPULATE_PG, url) if url else (POPULATE, os.path.join(data, "store.sqlite"))
    )
    subprocess.run(
        [sys.executable, "-c", script, target, USER, str(count), ROOT],
        check=True, cwd=ROOT,
    )  # fmt: skip
    args = ["--config", config, "--data", data, "--dns", "127.0.0.1:0"]
    for name in ("http", "ftp", "smtp", "submission", "pop3", "imap"):
        args += [f"--{name}", "tcp:0:interface=127.0.0.1"]
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "appnet", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=data,
    )  # fmt: skip
    assert process.stdout is not None
    port = None
    for raw in process.stdout:
        found = re.search(rb"imap listening on tcp 127\.0\.0\.1:(\d+)", raw)
        if found:
            port = int(found.group(1))
        if b"appnet ready" in raw:
            break
    if port is None:
        raise RuntimeError("appnet did not start")
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10000)
    options = parser.parse_args()
    count = options.messages
    work = tempfile.mkdtemp(prefix="appnet-bench-imap-")
    server = newServer()
    server.durable = True
    results = []
    try:
        server.start()
        createDatabase(server, "bench")
        for name, url in (("sqlite", None), ("pg", server.url("bench"))):
            process, port = startAppnet(os.path.join(work, name), count, url)
            try:

                def connect(port: int = port) -> imaplib.IMAP4:
                    m = imaplib.IMAP4("127.0.0.1", port, timeout=300)
                    m.login(USER, PASSWORD)
                    return m

                results.append(measure(connect, count))
            finally:
                stopProcess(process)
    finally:
        server.remove()
        shutil.rmtree(work, ignore_errors=True)
    rows = [["test", "SQLite", "PostgreSQL"]]
    for label, key, form in (
        (f"SELECT INBOX, first ({count} msgs)", "select-first", "{:.3f} s"),
        ("SELECT INBOX, median of 5", "select", "{:.3f} s"),
        ("FETCH 1:* (FLAGS UID)", "flags", "{:,.0f} msg/s"),
        ("FETCH 1:* BODY.PEEK[]", "bodies", "{:.1f} MB/s"),
        ("FETCH 1:* BODY.PEEK[] (msgs)", "bodies-msgs", "{:,.0f} msg/s"),
        ("SEARCH SUBJECT (headers)", "search", "{:.3f} s"),
    ):
        rows.append([label, *(form.format(r[key]) for r in results)])
    print(table(rows))


if __name__ == "__main__":
    main()
