"""
The queue survives C{kill -9}: node A (the real C{twistd appnet}, in a
subprocess) queues 100 messages for hamburger.edu while node B is down,
is killed with SIGKILL, and started again; once B is up, every message
reaches B exactly once. Short real retry intervals (1s) throughout.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from appnet.auth import hashPassword
from appnet.mail.relaytesting import _freePort, zoneFor
from appnet.store.interfaces import INBOX, FolderInfo, RecipientState
from appnet.store.sqlite import SQLiteStore
from appnet.testing import TEST_HASH_COST, startDNS, startStack
from tests.mail.sockets import inThread
from tests.process import TWISTD, Collector, spawn, stop

ALICE = "alice@crepes.fr"
BOB = "bob@hamburger.edu"
PASSWORD = "pw-alice-12"
COUNT = 100
#: A's connections to B: the bound on copies a kill can duplicate.
CONNECTIONS = 5
A, B, DNS = "127.0.0.2", "127.0.0.3", "127.0.0.4"
_LISTENING = re.compile(rb"(\w+) listening on tcp 127\.0\.0\.2:(\d+)")


def submit(port: int, count: int) -> list[str]:
    """Submit C{count} messages on one authenticated connection."""
    replies = []
    with smtplib.SMTP(A, port, timeout=30) as s:
        s.ehlo("client.crepes.fr")
        s.login(ALICE, PASSWORD)
        for n in range(count):
            refused = s.sendmail(
                ALICE, [BOB], f"Subject: queued {n}\r\n\r\nmessage {n}\r\n"
            )
            assert refused == {}, refused
            replies.append("250")
    return replies


class QueueKillTests(TestCase):
    """
    Exactly-once delivery from a queue whose daemon is killed.
    """

    timeout = 120

    def setUp(self) -> None:
        self.cwd = os.path.abspath(self.mktemp())
        self.data = os.path.join(self.cwd, "a")
        os.makedirs(self.data)

    def writeConfig(self, port: int, resolver: tuple[str, int]) -> str:
        path = os.path.join(self.cwd, "a.toml")
        with open(path, "w") as f:
            f.write(
                f"""
data = "{self.data}"
hostname = "mx.crepes.fr"
[mail]
domains = ["crepes.fr"]
relay_port = {port}
bind_address = "{A}"
retry = ["1s"]
queue_poll = "1s"
relay_connect_timeout = "5s"
relay_destination_concurrency = {CONNECTIONS}
spf = "off"
[smtp]
listen = ["tcp:{port}:interface={A}"]
[submission]
listen = ["tcp:0:interface={A}"]
[dns]
enabled = false
resolver = "{resolver[0]}:{resolver[1]}"
[pop3]
enabled = false
[imap]
enabled = false
[ftp]
enabled = false
[http]
enabled = false
"""
            )
        return path

    async def startA(self, config: str) -> tuple[Collector, int, dict[str, int]]:
        collector, pid = spawn(
            ["-c", TWISTD, "-n", "--pidfile=", "appnet", "--config", config], self.cwd
        )
        self.addCleanup(stop, collector, pid)
        await collector.waitFor(b"appnet ready")
        ports = {m[0].decode(): int(m[1]) for m in _LISTENING.findall(collector.out)}
        return collector, pid, ports

    async def queueWhileBDown(self) -> tuple[int, str]:
        """
        Start A, submit COUNT messages for bob while B is down, kill A
        with SIGKILL; check they are all in A's queue.

        @return: the shared MX port and A's config file.
        """
        # A is started again on it after SIGKILL.
        port = _freePort([A, B], stable=True)
        dns = await startDNS(
            self,
            zones={
                "crepes.fr": zoneFor("crepes.fr", A, DNS, None),
                "hamburger.edu": zoneFor("hamburger.edu", B, DNS, None),
            },
            listen=f"{DNS}:0",
        )
        config = self.writeConfig(port, dns.address)
        store = SQLiteStore.open(os.path.join(self.data, "store.sqlite"), reactor)
        await store.start()
        await store.users.addUser(ALICE, hashPassword(PASSWORD, log2n=TEST_HASH_COST))
        await store.stop()

        collector, pid, ports = await self.startA(config)
        replies = await inThread(submit, ports["submission"], COUNT)
        self.assertEqual(len(replies), COUNT)
        os.kill(pid, signal.SIGKILL)
        outcome = await collector.ended
        self.assertEqual(outcome.signal, signal.SIGKILL)

        store = SQLiteStore.open(os.path.join(self.data, "store.sqlite"), reactor)
        await store.start()
        queued = await store.queue.list()
        await store.stop()
        self.assertEqual(len(queued), COUNT)
        for message in queued:
            [recipient] = message.recipients
            self.assertIn(
                recipient.state, (RecipientState.PENDING, RecipientState.DEFERRED)
            )
        return port, config

    async def startB(self, port: int, count: int) -> tuple[Any, Deferred[None]]:
        """
        Start B; the Deferred fires once bob has C{count} messages.
        """
        b = await startStack(
            self,
            config={
                "hostname": "mx.hamburger.edu",
                "smtp": {"listen": [f"tcp:{port}:interface={B}"]},
                "dns": {"enabled": False},
                "mail": {"domains": ["hamburger.edu"], "spf": "off"},
            },
            users={BOB: "pw-bob-123"},
        )
        arrived: Deferred[None] = Deferred()

        def changed(info: FolderInfo) -> None:
            if info.messages >= count and not arrived.called:
                arrived.callback(None)

        await b.store.mail.folder(BOB)
        self.addCleanup(b.store.mail.watch(BOB, INBOX, changed))
        return b, arrived

    async def subjects(self, b: Any) -> list[int]:
        """The numbers of the messages in bob's mailbox, one per copy."""
        found = []
        for info in await b.store.mail.listMessages(BOB, INBOX):
            body = await b.store.mail.openMessage(BOB, INBOX, info.uid)
            with body.open() as f:
                found += [
                    int(n) for n in re.findall(rb"Subject: queued (\d+)", f.read())
                ]
        return sorted(found)

    async def assertQueueEmpty(self) -> None:
        self.assertEqual(await self.leftInQueue(), [])

    async def leftInQueue(self) -> list[int]:
        """The numbers of the messages still in A's queue."""
        store = SQLiteStore.open(os.path.join(self.data, "store.sqlite"), reactor)
        await store.start()
        self.addCleanup(store.stop)
        found = []
        for message in await store.queue.list():
            body = await store.queue.openMessage(message.id)
            with body.open() as f:
                found += [
                    int(n) for n in re.findall(rb"Subject: queued (\d+)", f.read())
                ]
        return sorted(found)

    async def test_kill9WithQueuedMail(self) -> None:
        """
        100 messages acknowledged by node A while B is down are all in
        A's queue after A is killed with SIGKILL; A started again
        delivers each of them to B exactly once when B comes up.
        """
        port, config = await self.queueWhileBDown()
        b, arrived = await self.startB(port, COUNT)
        collector, pid, _ = await self.startA(config)
        await arrived
        outcome = await stop(collector, pid)
        self.assertIn("appnet stopped", outcome.out + outcome.err)
        self.assertEqual(await self.subjects(b), list(range(COUNT)))
        await self.assertQueueEmpty()

    async def test_kill9WhileDelivering(self) -> None:
        """
        A killed again while it is delivering (B has some of the
        messages) loses none: started once more it delivers the rest.
        The only copies that can arrive twice are the ones in flight at
        the kill (B's 250 sent, A's commit not yet on disk): at most one
        per connection. (Such a copy may still be on its way again when
        B has them all and A is stopped: it stays queued, a duplicate to
        come, never one B lacks.)
        """
        port, config = await self.queueWhileBDown()
        b, some = await self.startB(port, 30)
        collector, pid, _ = await self.startA(config)
        await some
        os.kill(pid, signal.SIGKILL)
        await collector.ended
        arrived: Deferred[None] = Deferred()

        def changed(info: FolderInfo) -> None:
            if len(set(seen)) < COUNT:
                return
            if not arrived.called:
                arrived.callback(None)

        seen: list[int] = []

        async def check(info: FolderInfo) -> None:
            seen[:] = await self.subjects(b)
            changed(info)

        self.addCleanup(
            b.store.mail.watch(
                BOB, INBOX, lambda info: Deferred.fromCoroutine(check(info))
            )
        )
        collector, pid, _ = await self.startA(config)
        await arrived
        outcome = await stop(collector, pid)
        self.assertIn("appnet stopped", outcome.out + outcome.err)
        numbers = await self.subjects(b)
        self.assertEqual(sorted(set(numbers)), list(range(COUNT)))
        left = await self.leftInQueue()
        self.assertLessEqual(len(numbers) + len(left) - COUNT, CONNECTIONS)
