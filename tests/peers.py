"""
Real third-party servers (nginx, pyftpdlib, aiosmtpd) started by a test so
appnet's clients can be run against them.

Each server is a child process on 127.0.0.1, started through the reactor
(nothing blocks it) and stopped by its PID in the test's cleanup, which
waits for the process to end so no listener outlives the test. Readiness
is learnt from the server itself: the small Python servers print
C{port N} once listening; for nginx, which cannot report a port it was
given as 0, the port is polled with bounded connection attempts, each one
the reactor's own event, never a sleep.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Sequence

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.process import Collector, stop

#: How long a server may take to come up.
READY_SECONDS = 15.0

_PORT = re.compile(rb"^port (\d+)$", re.M)


def startProcess(
    case: TestCase,
    executable: str,
    args: Sequence[str],
    cwd: str,
    env: dict[str, str] | None = None,
) -> Collector:
    """
    Start C{executable args...}; stop it by its PID (and wait for it to
    end) when C{case} cleans up.
    """
    collector = Collector()
    environ = dict(os.environ)
    environ.update(env or {})
    process = reactor.spawnProcess(  # type: ignore[attr-defined]
        collector, executable, [executable, *args], env=environ, path=cwd
    )
    pid = process.pid
    case.addCleanup(stop, collector, pid)
    return collector


async def startPythonServer(
    case: TestCase, script: str, args: Sequence[str], cwd: str
) -> tuple[Collector, int]:
    """
    Run the Python server C{script} (a path) until it prints C{port N};
    return its collector and that port.
    """
    collector = startProcess(case, sys.executable, ["-u", script, *args], cwd)
    ready = collector.waitFor(b"\n")
    ready.addTimeout(READY_SECONDS, reactor)
    await ready
    m = _PORT.search(bytes(collector.out))
    if m is None:
        raise AssertionError(f"{script} did not say its port: {collector.err!r}")
    return collector, int(m.group(1))


def freePort() -> int:
    """
    A loopback TCP port that was free a moment ago, for a server (nginx)
    that must be told its port; callers retry if another process takes it.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def waitForPort(
    port: int, collector: Collector, seconds: float = READY_SECONDS
) -> None:
    """
    Wait until something accepts connections on 127.0.0.1:C{port}, trying
    every 20 ms for at most C{seconds}; fail at once if the process that
    should be listening has ended.
    """
    attempts = int(seconds / 0.02)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=1)
    for _ in range(attempts):
        if collector.ended.called:
            raise AssertionError(f"server ended: {collector.err.decode()!r}")
        try:
            protocol = await connectProtocol(endpoint, Protocol())
        except ConnectError:
            await deferLater(reactor, 0.02, lambda: None)
            continue
        assert protocol.transport is not None
        protocol.transport.loseConnection()
        return
    raise AssertionError(f"nothing listened on port {port} within {seconds}s")
