"""
Running third-party programs (curl, lftp) from trial tests without
blocking the reactor.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from twisted.internet import reactor

from tests.interop import need as needProgram
from tests.process import Collector, Outcome


def need(program: str) -> str:
    """The path of C{program}; skips the test if it is not installed."""
    return needProgram(program)


async def runProgram(
    argv: Sequence[str], cwd: str, env: dict[str, str] | None = None
) -> Outcome:
    """Run C{argv} to completion and return what it printed."""
    collector = Collector()
    environ = dict(os.environ)
    environ.update(env or {})
    reactor.spawnProcess(  # type: ignore[attr-defined]
        collector, argv[0], list(argv), env=environ, path=cwd
    )
    return await collector.ended
