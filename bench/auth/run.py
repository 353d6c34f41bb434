"""
Logins under load: IMAP clients that log in, select INBOX and log out in a
loop, against one appnet daemon with the verified-credentials cache off
(C{[auth] cache_ttl = 0}) and on (the default), side by side in one run.

While they run, one more client stays logged in and times C{NOOP} and
C{STATUS INBOX} (store work): with password checks in their own threads
(C{[auth] hash_threads}), a burst of logins should not slow it.

Usage (from a checkout, with the test extras installed)::

    .venv/bin/python bench/auth/run.py [--clients 20] [--seconds 10]

On a shared machine, run it twice and compare.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(__file__))))

from benchlib import table  # noqa: E402

from tests.robustness.campaign import ALICE, PASSWORD, Daemon  # noqa: E402


def _loop(port: int, until: float, latencies: list[float], errors: list[str]) -> None:
    while time.monotonic() < until:
        try:
            client = imaplib.IMAP4("127.0.0.1", port)
            started = time.monotonic()
            client.login(ALICE, PASSWORD)
            latencies.append(time.monotonic() - started)
            client.select("INBOX")
            client.logout()
        except (OSError, imaplib.IMAP4.error) as e:
            # The campaign daemon's idle timeout is 5 s: a login queued
            # behind uncached hashes for longer is logged out.
            errors.append(str(e))


def _probe(port: int, until: float, latencies: list[float]) -> None:
    client = imaplib.IMAP4("127.0.0.1", port)
    client.login(ALICE, PASSWORD)
    while time.monotonic() < until:
        started = time.monotonic()
        client.noop()
        client.status("INBOX", "(MESSAGES UIDNEXT)")
        latencies.append(time.monotonic() - started)
        time.sleep(0.01)
    client.logout()


def measure(cacheTTL: str, clients: int, seconds: float) -> dict[str, float]:
    """One daemon, C{clients} login loops for C{seconds}; the figures."""
    daemon = Daemon(auth=f'cache_ttl = "{cacheTTL}"\nmax_failures = 1000')
    try:
        daemon.start()
        port = daemon.ports["imap"]
        until = time.monotonic() + seconds
        logins: list[float] = []
        probes: list[float] = []
        errors: list[str] = []
        threads = [
            threading.Thread(target=_loop, args=(port, until, logins, errors))
            for _ in range(clients)
        ]
        threads.append(threading.Thread(target=_probe, args=(port, until, probes)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        daemon.stop()
    probes.sort()
    return {
        "logins/s": len(logins) / seconds,
        "errors": float(len(errors)),
        "login p50 ms": statistics.median(logins) * 1000,
        "store p50 ms": statistics.median(probes) * 1000,
        "store p99 ms": probes[int(len(probes) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    options = parser.parse_args()
    off = measure("0s", options.clients, options.seconds)
    on = measure("5m", options.clients, options.seconds)
    rows = [["", "cache off", "cache on", "on/off"]]
    for key in off:
        ratio = on[key] / off[key] if off[key] else 0.0
        rows.append([key, f"{off[key]:.1f}", f"{on[key]:.1f}", f"{ratio:.2f}x"])
    print(table(rows))


if __name__ == "__main__":
    main()
