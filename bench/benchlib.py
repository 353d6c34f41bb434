"""
What the bench scripts share: free ports, waiting for a server process to
listen, stopping it by its PID, and printing an RST table.

The scripts are run as files (``python bench/ftp/run.py``); each puts this
directory on ``sys.path`` to import this module. They are not tests: they
drive real processes from plain blocking code, so a short sleep between
polls is fine here.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Sequence

#: ``python -c TWISTD ...`` runs twistd from the running interpreter.
TWISTD = "from twisted.scripts.twistd import run; run()"


def freePort(host: str = "127.0.0.1", udp: bool = False) -> int:
    """
    A TCP port free on C{host} a moment ago (with C{udp}, free for UDP
    too); racy, which is fine for a benchmark.
    """
    while True:
        with socket.socket() as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            if not udp:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
                try:
                    datagram.bind((host, port))
                except OSError:
                    continue
                return port


def waitForPort(
    port: int,
    process: subprocess.Popen[bytes],
    seconds: float = 30,
    greeting: bool = False,
) -> None:
    """
    Poll until something accepts connections on 127.0.0.1:C{port} (and,
    with C{greeting}, says something first); fail if C{process} exits.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if greeting:
                    s.recv(100)
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on port {port}")


def stopProcess(process: subprocess.Popen[bytes], seconds: float = 15) -> None:
    """Stop a server we started, by its PID: SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    if process.stdin is not None:
        process.stdin.close()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def table(rows: Sequence[Sequence[str]]) -> str:
    """An RST simple table: the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))

    return "\n".join([rule, line(rows[0]), rule, *map(line, rows[1:]), rule])
