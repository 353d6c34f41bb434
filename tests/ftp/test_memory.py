"""
The server's memory stays bounded whatever the file size: a real
C{twistd -n appnet} process moves 200 MiB each way while the test watches
its resident set size.
"""

from __future__ import annotations

import ftplib
import os
import re

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from appnet.auth import hashPassword
from appnet.ftp.shell import homeName
from appnet.store.sqlite import SQLiteStore
from appnet.testing import TEST_HASH_COST
from tests.interop import unavailable
from tests.process import TWISTD, spawn, stop

ALICE = "alice@example.org"
PASSWORD = "pw-alice-1"
SIZE = 200 * 1024 * 1024
#: The most the server's peak RSS may grow over its size after start-up
#: while the transfers run.
BOUND = 50 * 1024 * 1024

CONFIG = """
[ftp]
listen = ["tcp:0:interface=127.0.0.1"]
passive_ports = "0"
[http]
enabled = false
[smtp]
enabled = false
[submission]
enabled = false
[pop3]
enabled = false
[imap]
enabled = false
[dns]
enabled = false
"""


class Zeros:
    """A file-like object reading C{size} zero bytes."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(n)


def _kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


class MemoryTests(TestCase):
    """
    RSS growth during 200 MiB transfers.
    """

    timeout = 60

    async def test_boundedMemory(self) -> None:
        """
        A 200 MiB download and a 200 MiB upload raise the server's peak
        RSS by less than 50 MiB over what it used after a first small
        transfer.
        """
        if not os.path.exists("/proc/self/status"):
            unavailable("/proc is missing: peak RSS cannot be read")
        cwd = os.path.abspath(self.mktemp())
        data = os.path.join(cwd, "data")
        os.makedirs(data)
        store = SQLiteStore.open(os.path.join(data, "store.sqlite"), reactor)
        await store.start()
        await store.users.addUser(ALICE, hashPassword(PASSWORD, log2n=TEST_HASH_COST))
        await store.stop()
        home = os.path.join(data, "ftp", homeName(ALICE))
        os.makedirs(home)
        with open(os.path.join(home, "big.bin"), "wb") as f:
            f.truncate(SIZE)
        with open(os.path.join(home, "small.bin"), "wb") as f:
            f.write(b"x" * 100_000)
        config = os.path.join(cwd, "appnet.toml")
        with open(config, "w") as f:
            f.write(CONFIG)
        collector, pid = spawn(
            [
                "-c",
                TWISTD,
                "-n",
                "--pidfile=",
                "appnet",
                "--data",
                data,
                "--config",
                config,
            ],
            cwd,
        )
        self.addCleanup(stop, collector, pid)
        await collector.waitFor(b"appnet ready")
        match = re.search(
            rb"ftp listening on tcp 127\.0\.0\.1:(\d+)", bytes(collector.out)
        )
        assert match is not None, collector.out
        port = int(match.group(1))

        def transfer() -> tuple[int, int, int]:
            client = ftplib.FTP()
            client.connect("127.0.0.1", port, timeout=30)
            client.login(ALICE, PASSWORD)
            client.retrbinary("RETR small.bin", lambda b: None)
            client.storbinary("STOR small-up.bin", Zeros(100_000))
            baseline = _kib(pid, "VmRSS")
            received = 0

            def count(block: bytes) -> None:
                nonlocal received
                received += len(block)

            client.retrbinary("RETR big.bin", count, blocksize=256 * 1024)
            client.storbinary("STOR up.bin", Zeros(SIZE), blocksize=256 * 1024)
            client.quit()
            return baseline, _kib(pid, "VmHWM"), received

        baseline, peak, received = await deferToThread(transfer)
        self.assertEqual(received, SIZE)
        self.assertEqual(os.path.getsize(os.path.join(home, "up.bin")), SIZE)
        growth = peak - baseline
        self.assertLess(
            growth,
            BOUND,
            f"RSS grew by {growth / 2**20:.1f} MiB (baseline {baseline / 2**20:.1f}"
            f" MiB, peak {peak / 2**20:.1f} MiB)",
        )
