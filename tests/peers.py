"""
Real third-party servers (nginx, pyftpdlib, aiosmtpd, Unbound, Dovecot)
started by a test so appnet's clients can be run against them.

Each server is a child process on 127.0.0.1, started through the reactor
(nothing blocks it) and stopped by its PID in the test's cleanup, which
waits until the process has ended and the ports it was given are closed
(a daemon's children may outlive it briefly), so no listener outlives
the test. Readiness is learnt from the server itself: the small Python
servers print C{port N} once listening; daemons that must be told their
port (nginx, Unbound, Dovecot) are polled with bounded connection
attempts on the reactor (L{waitForPort}), with a deadline, never slept
for.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from collections.abc import Sequence

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.process import Collector, Outcome, terminate

#: How long a server may take to start listening, or to go away.
DEADLINE = 20.0

_PORT = re.compile(rb"^port (\d+)$", re.M)


def freePorts(count: int, host: str = "127.0.0.1") -> list[int]:
    """
    C{count} distinct TCP ports on C{host} that nothing listens on now:
    each socket stays bound until all are chosen, so the kernel cannot
    hand out one port twice (two servers of one config on one port).
    """
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def freePort(host: str = "127.0.0.1", udp: bool = False) -> int:
    """
    A port on C{host} that nothing listens on now: one the kernel chose
    for a TCP socket bound to port 0 (and, with C{udp}, free for UDP
    too). The socket is closed before the server binds it, so another
    process could take it in between; the server then fails to start
    and the test says so.
    """
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            if not udp:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
                try:
                    datagram.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no port free for both TCP and UDP on {host}")


def _pause(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


async def _accepts(host: str, port: int) -> bool:
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=1)
    try:
        protocol = await connectProtocol(endpoint, Protocol())
    except ConnectError:
        return False
    assert protocol.transport is not None
    protocol.transport.loseConnection()
    return True


async def waitForPort(
    collector: Collector, host: str, port: int, name: str, log: str | None = None
) -> None:
    """
    Poll until C{host:port} accepts TCP connections; fail with the
    server's output (and its log file) if it exits first or the
    deadline passes.
    """
    deadline = time.monotonic() + DEADLINE
    while not await _accepts(host, port):
        if collector.ended.called or time.monotonic() > deadline:
            detail = ""
            if log is not None and os.path.exists(log):
                with open(log, encoding="utf-8", errors="replace") as f:
                    detail = f.read()[-2000:]
            raise AssertionError(
                f"{name} is not listening on {host}:{port}: "
                f"{collector.out.decode(errors='replace')}"
                f"{collector.err.decode(errors='replace')}{detail}"
            )
        await _pause(0.05)


async def waitForClosed(host: str, port: int) -> None:
    """Poll until nothing accepts connections on C{host:port} any more."""
    deadline = time.monotonic() + DEADLINE
    while await _accepts(host, port):
        if time.monotonic() > deadline:
            raise AssertionError(f"{host}:{port} still listening after stop")
        await _pause(0.05)


async def waitForLog(path: str, pattern: str) -> str:
    """
    Poll until the server's log file at C{path} matches the regular
    expression C{pattern} (a daemon's log is written by another process,
    a moment after the event); the matching text.
    """
    deadline = time.monotonic() + DEADLINE
    text = ""
    while True:
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            found = re.search(pattern, text)
            if found is not None:
                return found.group(0)
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not in {path}: {text[-2000:]}")
        await _pause(0.05)


def startServer(
    test: TestCase,
    argv: Sequence[str],
    cwd: str,
    ports: Sequence[tuple[str, int]] = (),
    env: dict[str, str] | None = None,
) -> Collector:
    """
    Start C{argv} (its program an absolute path) as a child process; in
    C{test}'s cleanup, stop it by its PID, wait until it has ended, then
    until C{ports} are closed (a daemon's children may outlive it
    briefly).
    """
    collector = Collector()
    environ = dict(os.environ)
    environ.update(env or {})
    process = reactor.spawnProcess(
        collector, argv[0], list(argv), env=environ, path=cwd
    )
    pid: int = process.pid

    async def stop() -> None:
        terminate(pid)
        await collector.ended
        for host, port in ports:
            await waitForClosed(host, port)

    test.addCleanup(lambda: Deferred.fromCoroutine(stop()))
    return collector


async def runProgram(argv: Sequence[str], cwd: str) -> Outcome:
    """Run a program (an absolute path) to completion, without blocking."""
    collector = Collector()
    reactor.spawnProcess(collector, argv[0], list(argv), env=dict(os.environ), path=cwd)
    return await collector.ended


async def startPythonServer(
    test: TestCase, script: str, args: Sequence[str], cwd: str
) -> tuple[Collector, int]:
    """
    Run the Python server C{script} (a path) until it prints C{port N};
    return its collector and that port.
    """
    collector = startServer(test, [sys.executable, "-u", script, *args], cwd)
    ready = collector.waitFor(b"\n")
    ready.addTimeout(DEADLINE, reactor)
    await ready
    m = _PORT.search(bytes(collector.out))
    if m is None:
        raise AssertionError(f"{script} did not say its port: {collector.err!r}")
    return collector, int(m.group(1))
