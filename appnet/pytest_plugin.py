"""
appnet's fixtures for pytest, on pytest-twisted: C{appnet_start} takes the
arguments of L{appnet.testing.start} and stops what it started when the
test ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_twisted  # type: ignore[import-untyped]

__all__ = ["appnet_start"]


@pytest_twisted.async_yield_fixture()
async def appnet_start() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """
    A function starting services (see L{appnet.testing.start}); everything
    it started is stopped after the test.
    """
    from appnet.fixtures import start

    started: list[Any] = []

    async def starter(*services: str, **kw: Any) -> Any:
        services_ = await start(None, *services, **kw)
        started.append(services_)
        return services_

    yield starter
    for running in reversed(started):
        await running.stop()
