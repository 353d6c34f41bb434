"""
IMAP server CPU per command: how many milliseconds of the appnet
process's CPU time (all its threads, user and system) each command of
the stress loop costs.

C{--clients} sessions (Python's imaplib in threads) stay logged in to
the bench account's 50-message INBOX; for C{--seconds} each, they all
send one kind of command in a loop: SELECT INBOX; FETCH 1:10 (FLAGS
BODY.PEEK[HEADER]); STORE of a keyword on the last message (C{*});
STORE of C{\\Deleted} then EXPUNGE (two commands, counted as a pair);
APPEND of a 4 KiB message. The process's CPU time before and after
each phase (from C{/proc}), divided by the commands answered, is the
figure; it holds up on a busy machine better than a rate does.

Usage (from a checkout, with the test extras installed)::

    .venv/bin/python bench/imap/cpu.py [--seconds 5] [--clients 10]
"""

from __future__ import annotations

import argparse
import imaplib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import stopProcess, table  # noqa: E402
from run import PASSWORD, USER, message, startAppnet  # noqa: E402

MESSAGES = 50


def cpuSeconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def select(m: imaplib.IMAP4, i: int) -> int:
    m.select("INBOX")
    return 1


def fetch(m: imaplib.IMAP4, i: int) -> int:
    m.fetch("1:10", "(FLAGS BODY.PEEK[HEADER])")
    return 1


def store(m: imaplib.IMAP4, i: int) -> int:
    m.store("*", "+FLAGS", f"($Label{i % 5})")
    return 1


def expunge(m: imaplib.IMAP4, i: int) -> int:
    m.store("*", "+FLAGS", "(\\Deleted)")
    m.expunge()
    return 2


def append(m: imaplib.IMAP4, i: int) -> int:
    m.append("INBOX", "", imaplib.Time2Internaldate(time.time()), message(i))
    return 1


PHASES: list[tuple[str, Callable[[imaplib.IMAP4, int], int]]] = [
    ("SELECT INBOX", select),
    ("FETCH 1:10 (FLAGS BODY.PEEK[HEADER])", fetch),
    ("STORE * +FLAGS ($LabelN)", store),
    ("APPEND (4 KiB)", append),
    ("STORE * +FLAGS (\\Deleted), EXPUNGE", expunge),
]


def phase(
    sessions: list[imaplib.IMAP4],
    work: Callable[[imaplib.IMAP4, int], int],
    seconds: float,
) -> tuple[int, float]:
    """Every session runs C{work} in a loop: commands answered, seconds."""
    counts = [0] * len(sessions)
    until = time.monotonic() + seconds

    def loop(n: int) -> None:
        i = 0
        while time.monotonic() < until:
            counts[n] += work(sessions[n], n + i)
            i += 1

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(len(sessions))]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=10)
    options = parser.parse_args()
    work = tempfile.mkdtemp(prefix="appnet-imap-cpu-")
    rows = [["command", "commands/s", "CPU ms/command"]]
    try:
        process, port = startAppnet(os.path.join(work, "appnet"), MESSAGES)
        try:
            sessions = []
            for _ in range(options.clients):
                m = imaplib.IMAP4("127.0.0.1", port, timeout=60)
                m.login(USER, PASSWORD)
                m.select("INBOX")
                sessions.append(m)
            for name, fn in PHASES:
                before = cpuSeconds(process.pid)
                count, elapsed = phase(sessions, fn, options.seconds)
                used = cpuSeconds(process.pid) - before
                rows.append(
                    [name, f"{count / elapsed:.0f}", f"{used * 1000 / count:.2f}"]
                )
            for m in sessions:
                m.logout()
        finally:
            stopProcess(process)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{options.clients} sessions, {options.seconds:g} s a command")
    print(table(rows))


if __name__ == "__main__":
    main()
