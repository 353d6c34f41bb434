"""
Durability: a 250 after DATA, or an OK after an IMAP APPEND, means the
message survives C{kill -9} of the real C{twistd appnet} process.
"""

from __future__ import annotations

import imaplib
import os
import re
import signal
import smtplib

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from appnet.auth import hashPassword
from appnet.store.interfaces import INBOX
from appnet.store.sqlite import SQLiteStore
from appnet.testing import TEST_HASH_COST
from tests.mail.sockets import inThread
from tests.process import TWISTD, Collector, spawn, stop
from tests.test_tap import ephemeralArgs

BOB = "bob@example.org"
_LISTENING = re.compile(rb"(\w+) listening on tcp 127\.0\.0\.1:(\d+)")


def send(port: int, count: int) -> list[str]:
    """Send C{count} messages on one connection; return the 250 replies."""
    replies = []
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.ehlo("crepes.fr")
        for n in range(count):
            s.mail("alice@crepes.fr")
            s.rcpt(BOB)
            code, reply = s.data(f"Subject: durable {n}\r\n\r\nmessage {n}\r\n")
            assert code == 250, (code, reply)
            replies.append(reply.decode())
    return replies


class KillTests(TestCase):
    timeout = 90

    def setUp(self) -> None:
        self.cwd = os.path.abspath(self.mktemp())
        self.data = os.path.join(self.cwd, "data")
        os.makedirs(self.data)

    async def start(self) -> tuple[Collector, int, dict[str, int]]:
        collector, pid = spawn(
            ["-c", TWISTD, "-n", "--pidfile=", "appnet", *ephemeralArgs(self.data)],
            self.cwd,
        )
        self.addCleanup(stop, collector, pid)
        await collector.waitFor(b"appnet ready")
        ports = {m[0].decode(): int(m[1]) for m in _LISTENING.findall(collector.out)}
        return collector, pid, ports

    async def test_killAfter250(self) -> None:
        """
        Messages acknowledged with 250 are all in the mailbox after the
        daemon is killed with SIGKILL right after the last 250 and
        started again on the same data directory — complete, each once.
        """
        store = SQLiteStore.open(os.path.join(self.data, "store.sqlite"), reactor)
        await store.start()
        await store.users.addUser(BOB, hashPassword("pw-bob-12", log2n=TEST_HASH_COST))
        await store.stop()

        collector, pid, ports = await self.start()
        replies = await inThread(send, ports["smtp"], 20)
        os.kill(pid, signal.SIGKILL)
        outcome = await collector.ended
        self.assertEqual(outcome.signal, signal.SIGKILL)
        self.assertEqual(len(replies), 20)

        collector, pid, ports = await self.start()
        store = SQLiteStore.open(os.path.join(self.data, "store.sqlite"), reactor)
        await store.start()
        self.addCleanup(store.stop)
        messages = await store.mail.listMessages(BOB, INBOX)
        self.assertEqual(len(messages), 20)
        bodies = []
        for info in messages:
            body = await store.mail.openMessage(BOB, INBOX, info.uid)
            with body.open() as f:
                bodies.append(f.read())
            self.assertEqual(len(bodies[-1]), info.size)
        for n in range(20):
            self.assertEqual(
                sum(1 for b in bodies if b.endswith(b"\r\n\r\nmessage %d\r\n" % n)), 1
            )
        # The restarted daemon serves them too.
        more = await inThread(send, ports["smtp"], 1)
        self.assertEqual(len(more), 1)
        self.assertEqual(len(await store.mail.listMessages(BOB, INBOX)), 21)

    async def test_killAfterAppend(self) -> None:
        """
        Messages an IMAP APPEND acknowledged (with their flags and the
        folder's UIDs) are there after SIGKILL right after the last OK.
        """
        store = SQLiteStore.open(os.path.join(self.data, "store.sqlite"), reactor)
        await store.start()
        await store.users.addUser(BOB, hashPassword("pw-bob-12", log2n=TEST_HASH_COST))
        await store.stop()
        collector, pid, ports = await self.start()

        def append(port: int, count: int) -> list[bytes]:
            m = imaplib.IMAP4("127.0.0.1", port, timeout=20)
            m.login(BOB, "pw-bob-12")
            answers = []
            for n in range(count):
                data = b"Subject: appended %d\r\n\r\nmessage %d\r\n" % (n, n)
                typ, answer = m.append("Drafts", "(\\Draft)", None, data)
                assert typ == "OK", answer
                answers.append(answer[0])
            return answers

        answers = await inThread(append, ports["imap"], 10)
        os.kill(pid, signal.SIGKILL)
        await collector.ended
        found = [re.search(rb"APPENDUID \d+ (\d+)", a) for a in answers]
        uids = [int(m.group(1)) for m in found if m is not None]
        store = SQLiteStore.open(os.path.join(self.data, "store.sqlite"), reactor)
        await store.start()
        self.addCleanup(store.stop)
        messages = await store.mail.listMessages(BOB, "Drafts")
        self.assertEqual([m.uid for m in messages], uids)
        self.assertTrue(all(m.flags == frozenset({"\\Draft"}) for m in messages))
        body = await store.mail.openMessage(BOB, "Drafts", uids[-1])
        with body.open() as f:
            self.assertEqual(f.read(), b"Subject: appended 9\r\n\r\nmessage 9\r\n")
