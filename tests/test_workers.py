"""
Tests for L{appnet.workers}: C{twistd appnet --workers 2} as real
processes on loopback sharing their sockets.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.config import loadConfig
from appnet.status import Status
from appnet.tap import Options, ParentRunner, makeService
from appnet.workers import ENVIRONMENT, WorkerRole
from tests.process import TWISTD, Collector, spawn, stop

ZONE = """\
$TTL 300
@ SOA ns hostmaster 1 3600 900 604800 60
  NS ns
ns A 192.0.2.53
www A 192.0.2.1
"""


def _get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def _dns(port: int) -> bytes:
    query = (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        b"\x03www\x07workers\x04test\x00\x00\x01\x00\x01"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(query, ("127.0.0.1", port))
        return s.recv(4096)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class OptionTests(SynchronousTestCase):
    """
    C{--workers} and C{[stack] workers}.
    """

    def test_option(self) -> None:
        """C{--workers N} sets C{stack.workers}; the default is 1."""
        options = Options()
        options.parseOptions(["--workers", "3"])
        self.assertEqual(options.loadConfig().stack.workers, 3)
        self.assertEqual(loadConfig(None, {}).stack.workers, 1)

    def test_parent(self) -> None:
        """With more than one worker, twistd runs the parent."""
        options = Options()
        options.parseOptions(["--workers", "2", "--data", self.mktemp()])
        self.assertIsInstance(makeService(options), ParentRunner)

    def test_role(self) -> None:
        """A worker's role travels in its environment."""
        role = WorkerRole(1, 2, {"http\ttcp:0": 7, "dns\tudp": 8, "dns\ttcp": 9})
        again = WorkerRole.fromEnvironment({ENVIRONMENT: role.toEnvironment()})
        self.assertEqual(again, role)
        self.assertEqual(again.socketFor("http", "tcp:0"), 7)
        self.assertEqual(again.dnsSockets(), (8, 9))
        self.assertIsNone(again.socketFor("ftp", "tcp:0"))

    def test_statusAddsUp(self) -> None:
        """A status with peers adds their counters and gauges to its own."""
        clock: Any = type("C", (), {"seconds": lambda self: 0.0})()
        status, other = Status(clock), Status(clock)
        status.increment("http", "requests", 2)
        other.increment("http", "requests", 3)
        other.gauge("dns", "zones", lambda: 1.0)
        status.setPeers([other.shared()])
        self.assertEqual(
            status.snapshot(), {"http": {"requests": 5}, "dns": {"zones": 1.0}}
        )
        restarted = Status(clock)
        restarted.restore(other.shared())
        self.assertEqual(restarted.counter("http", "requests"), 3)


class ProcessTests(TestCase):
    """
    Two workers behind one parent, as a user runs them.
    """

    timeout = 60

    async def test_workers(self) -> None:
        """
        Both workers serve the shared HTTP and DNS sockets; only worker 0
        runs the once-only services; SIGHUP reaches both; C{/status} adds
        up both; a killed worker is restarted and logged; stopping the
        parent stops them all.
        """
        data = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(data, "www"))
        os.makedirs(os.path.join(data, "zones"))
        with open(os.path.join(data, "www", "a.txt"), "w") as f:
            f.write("hello")
        with open(os.path.join(data, "zones", "workers.test.zone"), "w") as f:
            f.write(ZONE)
        args = ["-c", TWISTD, "-n", "--pidfile=", "--logfile=-", "appnet"]
        args += ["--data", data, "--workers", "2"]
        args += ["--http", "tcp:0:interface=127.0.0.1", "--dns", "127.0.0.1:0"]
        for service in ("ftp", "smtp", "submission", "pop3", "imap"):
            args += ["--disable", service]
        collector, pid = spawn(args, data)
        self.addCleanup(lambda: stop(collector, pid) if _alive(pid) else None)
        await self.count(collector, rb"appnet ready", 2)
        out = bytes(collector.out)
        http = re.search(rb"http listening on tcp 127\.0\.0\.1:(\d+)", out)
        dns = re.search(rb"dns listening on udp 127\.0\.0\.1:(\d+)", out)
        assert http is not None and dns is not None, out
        httpPort, dnsPort = int(http.group(1)), int(dns.group(1))
        workers = [int(p) for p in re.findall(rb"worker \d started \(pid (\d+)\)", out)]
        self.assertEqual(len(workers), 2)
        self.assertEqual(len(re.findall(rb"runs the once-only services", out)), 1)
        self.assertIn(b"mail-queue", out)

        for _ in range(20):
            body = await deferToThread(_get, httpPort, "/a.txt")
            self.assertTrue(body.endswith(b"hello"), body)
            answer = await deferToThread(_dns, dnsPort)
            self.assertEqual(answer[:2], b"\x12\x34")
            self.assertIn(bytes([192, 0, 2, 1]), answer)

        # /status in either worker counts both workers' requests.
        deadline = time.monotonic() + 20
        while True:
            status = await deferToThread(_get, httpPort, "/status")
            found = re.search(rb'"requests": (\d+)', status)
            queries = re.search(rb'"queries": (\d+)', status)
            if (
                found
                and queries
                and int(found.group(1)) >= 21
                and int(queries.group(1)) >= 20
            ):
                break
            self.assertLess(time.monotonic(), deadline, status)
            await deferLater(reactor, 0.2, lambda: None)

        os.kill(pid, signal.SIGHUP)
        await self.count(collector, rb"SIGHUP: reloading zones", 2)

        os.kill(workers[0], signal.SIGKILL)
        await self.count(collector, rb"restarting in", 1)
        await self.count(collector, rb"appnet ready", 3)
        body = await deferToThread(_get, httpPort, "/a.txt")
        self.assertTrue(body.endswith(b"hello"))

        out = bytes(collector.out)
        every = [int(p) for p in re.findall(rb"worker \d started \(pid (\d+)\)", out)]
        outcome = await stop(collector, pid)
        # twistd ends by the signal it was stopped with (or exit status 0).
        self.assertIn((outcome.code, outcome.signal), [(0, None), (None, 15)])
        self.assertIn("Server Shut Down", outcome.out)
        for worker in every:
            self.assertFalse(_alive(worker), worker)

    async def count(self, collector: Collector, pattern: bytes, times: int) -> None:
        """Wait until C{pattern} has appeared C{times} times in the output."""
        while len(re.findall(pattern, bytes(collector.out))) < times:
            d = collector.waitFor(b"\n")
            await d
            if len(re.findall(pattern, bytes(collector.out))) < times:
                await deferLater(reactor, 0.05, lambda: None)
