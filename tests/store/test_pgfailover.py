"""
A node killed with C{kill -9} while it holds queued remote mail: another
node on the same PostgreSQL delivers every message, once, after the dead
node's lease runs out.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from appnet.store.interfaces import INBOX
from appnet.testing import startStack
from tests import pgserver
from tests.process import TWISTD, spawn
from tests.store.test_pgnodes import nodeConfig

SINK_USER = "r@remote.example"
COUNT = pgserver.proofScale(8, 200)


class Tarpit(Protocol):
    """Accepts a connection and never says a word."""

    def connectionMade(self) -> None:
        factory: Any = self.factory
        if not factory.connected.called:
            factory.connected.callback(None)


class FailoverTests(TestCase):
    """The queue survives the death of the node working on it."""

    timeout = pgserver.proofScale(60, 900)

    async def test_killedNodesMailDeliveredOnce(self) -> None:
        """
        Node A (a twistd process) claims the queued messages and hangs
        delivering them to a smarthost that never answers; A is killed
        with SIGKILL. Node B, once A's lease has run out, delivers each
        message exactly once to the real destination.
        """
        url = await pgserver.freshDatabase(self)
        sink = await startStack(
            self,
            config={"mail": {"domains": ["remote.example"]}},
            users={SINK_USER: "sink password"},
        )
        sinkHost, sinkPort = sink.address("smtp")
        pit = Factory.forProtocol(Tarpit)
        pit.connected = Deferred()  # type: ignore[attr-defined]
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(pit)
        self.addCleanup(port.stopListening)
        # Queue the messages, through a store of the test's own.
        store = await pgserver.startStore(self, url)
        for i in range(COUNT):
            staged = store.mail.stage()
            staged.write(b"Subject: message %d\r\n\r\nbody %d\r\n" % (i, i))
            await store.queue.enqueue(staged, "s@example.org", [SINK_USER])
            staged.discard()
        # Node A, a real process.
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        with open(os.path.join(cwd, "a.toml"), "w") as f:
            f.write(
                "[mail]\n"
                f'smarthost = "127.0.0.1:{port.getHost().port}"\n'
                'smarthost_tls = "none"\n'
            )
        args = ["--data", os.path.join(cwd, "data"), "--dns", "127.0.0.2:0"]
        for name in ("http", "ftp", "smtp", "submission", "pop3", "imap"):
            args += [f"--{name}", "tcp:0:interface=127.0.0.2"]
        collector, pid = spawn(
            ["-c", TWISTD, "-n", "--pidfile=", "appnet", "--config", "a.toml"]
            + ["--store", url, "--hostname", "a.appnet.test", *args],
            cwd,
        )
        self.addCleanup(self._kill, pid)
        await collector.waitFor(b"appnet ready")
        await pit.connected.addTimeout(20, reactor)  # type: ignore[attr-defined]
        claimed = await store.queue.list()
        self.assertEqual(len(claimed), COUNT)
        self.assertTrue(
            all((m.claimedBy or "").startswith("a.appnet.test:") for m in claimed),
            [m.claimedBy for m in claimed],
        )
        os.kill(pid, signal.SIGKILL)
        await collector.ended
        # Node B, on a clock the test moves past A's lease.
        clock = Clock()
        clock.advance(time.time())
        raw = nodeConfig("127.0.0.3", url)
        raw["hostname"] = "b.appnet.test"
        raw["mail"] = {"smarthost": f"{sinkHost}:{sinkPort}", "smarthost_tls": "none"}
        b = await startStack(self, config=raw, clock=clock)
        runner: Any = b.stack.backgroundService("mail-queue")
        # Within the lease, B leaves A's claims alone.
        runner.wake()
        await runner.whenIdle()
        waiting = await store.queue.list()
        self.assertEqual(len(waiting), COUNT)
        self.assertTrue(
            all((m.claimedBy or "").startswith("a.appnet.test:") for m in waiting)
        )
        clock.advance(901)
        # A wake-up that lands while a scan is finishing becomes a timer
        # due at once, which fires only when this virtual clock moves.
        for _ in range(5):
            runner.wake()
            await runner.whenIdle()
            if not await store.queue.list():
                break
            clock.advance(0)
        self.assertEqual(await store.queue.list(), [])
        rows = await sink.store.mail.listMessages(SINK_USER, INBOX)
        subjects = []
        for row in rows:
            body = await sink.store.mail.openMessage(SINK_USER, INBOX, row.uid)
            with body.open() as f:
                data = f.read()
            subjects.append(data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0])
        self.assertEqual(
            sorted(subjects), sorted(b"message %d" % i for i in range(COUNT))
        )

    def _kill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
