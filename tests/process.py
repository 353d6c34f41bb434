"""
Running appnet's commands as real processes from trial tests, without
blocking the reactor.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from attrs import define, field
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

TWISTD = "from twisted.scripts.twistd import run; run()"


@define
class Outcome:
    """What a finished process printed and its exit status."""

    out: str
    err: str
    code: int | None
    signal: int | None = None


@define(eq=False)
class Collector(ProcessProtocol):
    """Collects output; can wait for a marker in standard output."""

    out: bytearray = field(factory=bytearray)
    err: bytearray = field(factory=bytearray)
    ended: Deferred[Outcome] = field(factory=Deferred)
    waiting: list[tuple[bytes, Deferred[None]]] = field(factory=list)
    stdin: bytes | None = None

    def connectionMade(self) -> None:
        if self.stdin is not None:
            self.transport.write(self.stdin)  # type: ignore[union-attr]
        self.transport.closeStdin()  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        self.out += data
        self._check()

    def errReceived(self, data: bytes) -> None:
        self.err += data
        self._check()

    def _check(self) -> None:
        for marker, d in list(self.waiting):
            if marker in self.out or marker in self.err:
                self.waiting.remove((marker, d))
                d.callback(None)

    def waitFor(self, marker: bytes) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.waiting.append((marker, d))
        self._check()
        return d

    def processEnded(self, reason: Failure) -> None:
        code = sig = None
        if reason.check(ProcessDone):
            code = 0
        elif reason.check(ProcessTerminated):
            code = reason.value.exitCode
            sig = reason.value.signal
        for _, d in self.waiting:
            d.errback(
                RuntimeError(f"process ended before marker: {self.out!r} {self.err!r}")
            )
        self.waiting.clear()
        self.ended.callback(
            Outcome(
                self.out.decode("utf-8", "replace"),
                self.err.decode("utf-8", "replace"),
                code,
                sig,
            )
        )


def spawn(
    args: Sequence[str],
    cwd: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> tuple[Collector, int]:
    """
    Start C{python args...}; return its collector and PID.
    """
    collector = Collector(stdin=stdin)
    environ = dict(os.environ)
    environ.update(env or {})
    process = reactor.spawnProcess(  # type: ignore[attr-defined]
        collector, sys.executable, [sys.executable, *args], env=environ, path=cwd
    )
    return collector, process.pid


async def run(
    args: Sequence[str],
    cwd: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> Outcome:
    """Run C{python args...} to completion."""
    collector, _ = spawn(args, cwd, env, stdin)
    return await collector.ended


def terminate(pid: int) -> None:
    """Stop a process we started, by its PID."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def stop(collector: Collector, pid: int) -> Deferred[Outcome]:
    """Stop a process we started, by its PID, and wait until it has ended."""
    terminate(pid)
    return collector.ended
