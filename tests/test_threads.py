"""
Tests for L{appnet.threads}.
"""

from __future__ import annotations

import threading

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.trial.unittest import TestCase

from appnet.threads import PoolService


class PoolServiceTests(TestCase):
    """
    L{PoolService} is a named pool of threads started and stopped as a
    service.
    """

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: IReactorFromThreads = reactor  # type: ignore[assignment]

    async def _name(self, pool: PoolService) -> str:
        return await pool.run(lambda: threading.current_thread().name)

    def test_waitsForStart(self) -> Deferred[None]:
        """Work submitted before the service starts runs once it does."""
        pool = PoolService(self.reactor, "appnet-test", 1)
        result = Deferred.fromCoroutine(self._name(pool))
        self.assertNoResult(result)
        pool.startService()
        self.addCleanup(pool.stopService)
        return result.addCallback(lambda name: self.assertIn("appnet-test", name))

    def test_stoppedFails(self) -> Deferred[None]:
        """After stopping, work fails with the service's stoppedError."""

        class Own(PoolService):
            def stoppedError(self) -> Exception:
                return KeyError("stopped")

        pool = Own(self.reactor, "appnet-test", 1)
        pool.startService()

        def check(_: object) -> None:
            self.failureResultOf(pool.run(lambda: None), KeyError)

        return pool.stopService().addCallback(check)

    def test_restart(self) -> Deferred[None]:
        """A service started again after stopping runs work again."""
        pool = PoolService(self.reactor, "appnet-test", 1)
        pool.startService()

        async def again() -> None:
            await pool.stopService()
            pool.startService()
            self.addCleanup(pool.stopService)
            self.assertIn("appnet-test", await self._name(pool))

        return Deferred.fromCoroutine(again())
