"""
Tests for L{appnet.logs}: the buffered log observer writes every line, in
order, later.
"""

from __future__ import annotations

import io
import os

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, formatEventAsClassicLogText, formatTime
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.logs import BufferedLogObserver
from tests.process import TWISTD, spawn, stop, terminate
from tests.test_tap import ephemeralArgs


def event(text: str, level: LogLevel = LogLevel.info, when: float = 1e9) -> dict:
    return {
        "log_format": "{text}",
        "text": text,
        "log_level": level,
        "log_time": when,
        "log_namespace": "test",
        "log_system": "-",
    }


class BufferedLogObserverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.out = io.StringIO()
        self.reactor = MemoryReactorClock()
        self.observer = BufferedLogObserver(self.out)
        self.observer.start(self.reactor, interval=1.0)
        self.reactor.run()  # The hooks; the fake reactor then says stopped.

    def shutdown(self) -> None:
        for f, args, kw in self.reactor.triggers["after"]["shutdown"]:
            f(*args, **kw)

    def test_sameLines(self) -> None:
        """
        Lines are those of twistd's observer (time, system, text), whole
        seconds formatted as it does.
        """
        e = event("hello", when=1_000_000_000.75)
        self.observer(e)
        self.observer.flush()
        expected = formatEventAsClassicLogText(
            event("hello", when=1_000_000_000.75), formatTime=formatTime
        )
        self.assertEqual(self.out.getvalue(), expected)

    def test_writtenOnTimer(self) -> None:
        """
        Informational lines wait for the timer, then are written together,
        in order.
        """
        for i in range(3):
            self.observer(event(f"line {i}"))
        self.assertEqual(self.out.getvalue(), "")
        self.reactor.advance(1.0)
        self.assertEqual(
            [line.split("] ")[1] for line in self.out.getvalue().splitlines()],
            ["line 0", "line 1", "line 2"],
        )

    def test_warningAtOnce(self) -> None:
        """A warning is written at once, after the lines before it."""
        self.observer(event("before"))
        self.observer(event("trouble", LogLevel.warn))
        self.assertEqual(
            [line.split("] ")[1] for line in self.out.getvalue().splitlines()],
            ["before", "trouble"],
        )

    def test_limit(self) -> None:
        """Lines past the size limit are written without waiting."""
        self.observer.limit = 100
        self.observer(event("x" * 200))
        self.assertIn("x" * 200, self.out.getvalue())

    def test_shutdown(self) -> None:
        """After the reactor shuts down, what is buffered is written."""
        self.observer(event("last"))
        self.shutdown()
        self.assertIn("last", self.out.getvalue())
        # The timer stopped with it; later lines are written at once.
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.observer(event("after"))
        self.assertTrue(self.out.getvalue().endswith("after\n"))

    def test_loggedWhileWriting(self) -> None:
        """
        An event logged by the thread that is writing (a signal handler:
        the reactor's for SIGTERM logs) does not wait for the write it
        interrupts; it is written next.
        """
        observer = self.observer

        class Interrupted(io.StringIO):
            def write(self, text: str) -> int:
                if "first" in text:
                    observer(event("nested", LogLevel.warn))
                return super().write(text)

        self.out = Interrupted()
        observer = self.observer = BufferedLogObserver(self.out)
        observer(event("first", LogLevel.warn))
        self.assertNotIn("nested", self.out.getvalue())
        observer.flush()
        self.assertEqual(
            [line.split("] ")[1] for line in self.out.getvalue().splitlines()],
            ["first", "nested"],
        )

    def test_noText(self) -> None:
        """An event with nothing to say writes nothing."""
        self.observer({"log_time": 1e9})
        self.observer.flush()
        self.assertEqual(self.out.getvalue(), "")


class DaemonTests(TestCase):
    """C{twistd --logger=appnet.logs.buffered appnet}, a real process."""

    timeout = 60

    async def test_completeAfterCleanStop(self) -> None:
        """
        The daemon's log reaches standard output while it runs, and whole
        once it stops cleanly: down to twistd's last line, logged after
        the reactor stopped.
        """
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        data = os.path.join(cwd, "data")
        collector, pid = spawn(
            ["-c", TWISTD, "-n", "--pidfile=", "--logger=appnet.logs.buffered"]
            + ["appnet", *ephemeralArgs(data)],
            cwd,
        )
        self.addCleanup(stop, collector, pid)
        await collector.waitFor(b"appnet ready")
        terminate(pid)
        outcome = await collector.ended
        self.assertIn("appnet stopped", outcome.out)
        self.assertTrue(outcome.out.endswith("Server Shut Down.\n"), outcome.out[-200:])
        self.assertNotIn("Traceback", outcome.out + outcome.err)
