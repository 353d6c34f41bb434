"""
Two appnet nodes (127.0.0.2 and 127.0.0.3) over one PostgreSQL database:
mail submitted on one is read on the other over IMAP and POP3, and an IMAP
IDLE on one hears of a delivery made through the other; the database
down and restarted. C{APPNET_PROOF_FULL=1} runs the proofs with the
issue's numbers (1,000 messages).
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.threads import deferToThread
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import TestCase

from appnet.config import SERVICES
from appnet.mail.client import MailClientError, fetch, send
from appnet.mail.imapclient import connectIMAP
from appnet.store.interfaces import INBOX
from appnet.store.pg import StoreUnavailable
from appnet.testing import RunningStack, startStack
from tests import pgserver

ALICE = "alice@example.org"
PASSWORD = "correct horse"


def nodeConfig(host: str, url: str) -> dict[str, Any]:
    """Every service of one node on C{host}, the store at C{url}."""
    raw: dict[str, Any] = {"store": {"url": url}}
    for name in SERVICES:
        raw[name] = (
            {"listen": f"{host}:0"}
            if name == "dns"
            else {"listen": [f"tcp:0:interface={host}"]}
        )
    raw["mail"] = {"domains": ["example.org"]}
    return raw


async def twoNodes(test: TestCase) -> tuple[RunningStack, RunningStack]:
    """Start nodes A (127.0.0.2) and B (127.0.0.3) on a fresh database."""
    url = await pgserver.freshDatabase(test)
    a = await startStack(
        test, config=nodeConfig("127.0.0.2", url), users={ALICE: PASSWORD}
    )
    b = await startStack(test, config=nodeConfig("127.0.0.3", url))
    return a, b


async def submit(node: RunningStack, subject: str) -> None:
    host, port = node.address("submission")
    await send(
        reactor,
        host,
        port,
        sender=ALICE,
        recipients=[ALICE],
        message=f"Subject: {subject}\r\n\r\nbody of {subject}\r\n".encode(),
        username=ALICE,
        password=PASSWORD,
        tls="auto",
    )


class IdleClient(LineReceiver):
    """
    Just enough of a line-based client (IMAP's LOGIN, SELECT and IDLE;
    POP3's USER and PASS): send lines, wait for a reply matching a pattern
    (lines no one waited for are kept for the next wait).
    """

    delimiter = b"\r\n"

    def __init__(self) -> None:
        self.waiting: list[tuple[re.Pattern[bytes], Deferred[bytes]]] = []
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        for pattern, d in list(self.waiting):
            if pattern.search(line):
                self.waiting.remove((pattern, d))
                d.callback(line)
                return
        self.lines.append(line)

    def expect(self, pattern: bytes) -> Deferred[bytes]:
        compiled = re.compile(pattern)
        for line in self.lines:
            if compiled.search(line):
                self.lines.remove(line)
                d: Deferred[bytes] = Deferred()
                d.callback(line)
                return d
        d = Deferred()
        self.waiting.append((compiled, d))
        return d.addTimeout(30, reactor)

    def send(self, line: bytes) -> None:
        self.sendLine(line)


class TwoNodesTests(TestCase):
    """Nodes sharing one database serve the same mailboxes."""

    timeout = pgserver.proofScale(120, 900)

    async def test_submitOnAReadOnB(self) -> None:
        """
        A message submitted on node A is read on node B over IMAP and
        over POP3.
        """
        a, b = await twoNodes(self)
        await submit(a, "hello from A")
        host, port = b.address("imap")
        session = await connectIMAP(
            reactor, host, port, username=ALICE, password=PASSWORD, tls="auto"
        )
        try:
            await session.select("INBOX")
            uids = await session.search("ALL")
            self.assertEqual(len(uids), 1)
            [message] = await session.fetch(uids)
            self.assertIn(b"body of hello from A", message.data)
        finally:
            await session.logout()
        host, port = b.address("pop3")
        fetched = await fetch(
            reactor, host, port, username=ALICE, password=PASSWORD, tls="auto"
        )
        self.assertEqual(len(fetched), 1)
        self.assertIn(b"Subject: hello from A", fetched[0].data)

    async def test_idleOnBHearsA(self) -> None:
        """
        An IMAP client idling on node B is told of a message delivered
        through node A within a second.
        """
        a, b = await twoNodes(self)
        client = IdleClient()
        host, port = b.address("imap")
        await connectProtocol(TCP4ClientEndpoint(reactor, host, port), client)
        self.addCleanup(client.transport.loseConnection)
        await client.expect(rb"^\* OK")
        client.send(b"l LOGIN " + ALICE.encode() + b' "' + PASSWORD.encode() + b'"')
        await client.expect(rb"^l OK")
        client.send(b"s SELECT INBOX")
        await client.expect(rb"^s OK")
        client.send(b"i IDLE")
        await client.expect(rb"^\+ ")
        started = reactor.seconds()
        await gatherResults(
            [
                Deferred.fromCoroutine(submit(a, "wake up")),
                client.expect(rb"^\* 1 EXISTS"),
            ]
        )
        self.assertLess(reactor.seconds() - started, 1.0)
        client.send(b"DONE")
        await client.expect(rb"^i OK")

    async def test_concurrentSubmissions(self) -> None:
        """
        Messages submitted through both nodes at once (five connections
        each) get distinct UIDs in one mailbox, increasing in each
        connection's order of submission.
        """
        a, b = await twoNodes(self)
        each = pgserver.proofScale(10, 1000) // 10

        async def loop(node: RunningStack, name: str) -> None:
            for i in range(each):
                await submit(node, f"{name} {i}")

        await gatherResults(
            [
                Deferred.fromCoroutine(loop(node, f"{name}{k}"))
                for k in range(5)
                for name, node in (("a", a), ("b", b))
            ]
        )
        listed = await b.store.mail.listMessages(ALICE)
        self.assertEqual([m.uid for m in listed], list(range(1, 10 * each + 1)))
        bodies = await b.store.mail.openMessages(ALICE, INBOX, [m.uid for m in listed])
        order: dict[str, list[tuple[int, int]]] = {}
        for uid, body in bodies.items():
            with body.open() as f:
                subject = f.read().split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0]
            name, _, i = subject.decode().partition(" ")
            order.setdefault(name, []).append((int(i), uid))
        self.assertEqual(len(order), 10)
        for pairs in order.values():
            uids = [uid for _, uid in sorted(pairs)]
            self.assertEqual(uids, sorted(uids))


class DatabaseDownTests(TestCase):
    """A node whose database goes away answers "try later", then recovers."""

    timeout = pgserver.proofScale(120, 900)

    async def test_downAndBack(self) -> None:
        """
        With the database stopped, SMTP answers 451 (nothing is
        acknowledged), IMAP and POP3 refuse with a temporary error; the
        node does not crash, and once the database is back, mail flows
        again without a restart.
        """
        server = pgserver.newServer()
        self.addCleanup(deferToThread, server.remove)
        await deferToThread(server.start)
        await deferToThread(pgserver.createDatabase, server, "appnet")
        raw = nodeConfig("127.0.0.2", server.url("appnet"))
        raw["store"]["timeout"] = 1
        node = await startStack(self, config=raw, users={ALICE: PASSWORD})
        await submit(node, "before")
        imap = IdleClient()
        host, port = node.address("imap")
        await connectProtocol(TCP4ClientEndpoint(reactor, host, port), imap)
        self.addCleanup(imap.transport.loseConnection)
        await imap.expect(rb"^\* OK")
        imap.send(b"l LOGIN " + ALICE.encode() + b' "' + PASSWORD.encode() + b'"')
        await imap.expect(rb"^l OK")
        await deferToThread(server.stop)
        imap.send(b"s SELECT INBOX")
        refused = await imap.expect(rb"^s ")
        self.assertTrue(refused.startswith(b"s NO [UNAVAILABLE]"), refused)
        host, port = node.address("smtp")
        with self.assertRaises(MailClientError) as caught:
            await send(
                reactor,
                host,
                port,
                sender="someone@elsewhere.example",
                recipients=[ALICE],
                message=b"Subject: lost?\r\n\r\nno\r\n",
                tls="auto",
            )
        self.assertEqual(caught.exception.code, 451)
        host, port = node.address("pop3")
        with self.assertRaises(MailClientError) as popped:
            await fetch(
                reactor, host, port, username=ALICE, password=PASSWORD, tls="auto"
            )
        self.assertIn("SYS/TEMP", str(popped.exception))
        host, port = node.address("imap")
        with self.assertRaises(MailClientError):
            await connectIMAP(
                reactor, host, port, username=ALICE, password=PASSWORD, tls="auto"
            )
        await deferToThread(server.start)
        await submit(node, "after")
        subjects = [m.uid for m in await node.store.mail.listMessages(ALICE)]
        self.assertEqual(subjects, [1, 2])
        self.flushLoggedErrors(StoreUnavailable)

    async def test_restartMidRun(self) -> None:
        """
        The database restarted in the middle of a run of SMTP deliveries:
        every message that got a 250 is in the mailbox afterwards, the
        others got a 4xx, and the node serves on.
        """
        server = pgserver.newServer()
        self.addCleanup(deferToThread, server.remove)
        await deferToThread(server.start)
        await deferToThread(pgserver.createDatabase, server, "appnet")
        raw = nodeConfig("127.0.0.2", server.url("appnet"))
        raw["store"]["timeout"] = 1
        node = await startStack(self, config=raw, users={ALICE: PASSWORD})
        host, port = node.address("smtp")
        accepted: list[int] = []
        refused: list[int] = []

        async def one(i: int) -> None:
            try:
                await send(
                    reactor,
                    host,
                    port,
                    sender="someone@elsewhere.example",
                    recipients=[ALICE],
                    message=b"Subject: run %d\r\n\r\nbody\r\n" % i,
                    tls="auto",
                )
            except MailClientError as e:
                self.assertTrue(e.code is None or 400 <= e.code < 500, e)
                refused.append(i)
            else:
                accepted.append(i)

        total = pgserver.proofScale(30, 1000)
        half: Deferred[None] = Deferred()

        async def sender(first: int, count: int) -> None:
            for i in range(first, first + count):
                await one(i)
                if len(accepted) >= total // 4 and not half.called:
                    half.callback(None)

        async def restart() -> None:
            await half
            await deferToThread(server.stop)
            await sender(100000, 2)
            await deferToThread(server.start)

        await gatherResults(
            [Deferred.fromCoroutine(sender(k * 10000, total // 5)) for k in range(5)]
            + [Deferred.fromCoroutine(restart())]
        )
        await sender(200000, 2)
        self.assertTrue(refused)
        stored = set()
        for row in await node.store.mail.listMessages(ALICE):
            body = await node.store.mail.openMessage(ALICE, INBOX, row.uid)
            with body.open() as f:
                stored.add(int(f.read().split(b"run ", 1)[1].split(b"\r\n", 1)[0]))
        # Every 250 is stored; a 451 whose commit landed just as the
        # connection broke may be stored too (the client retries it).
        self.assertLessEqual(set(accepted), stored)
        self.assertLessEqual(stored, set(accepted) | set(refused))
        self.assertTrue({200000, 200001} <= stored)
        self.flushLoggedErrors(StoreUnavailable)

    async def test_idleResumes(self) -> None:
        """
        An IMAP client idling on node B while the database restarts is
        told of mail delivered through node A afterwards: B's listener
        reconnected by itself.
        """
        server = pgserver.newServer()
        self.addCleanup(deferToThread, server.remove)
        await deferToThread(server.start)
        await deferToThread(pgserver.createDatabase, server, "appnet")
        url = server.url("appnet")
        a = await startStack(
            self, config=nodeConfig("127.0.0.2", url), users={ALICE: PASSWORD}
        )
        b = await startStack(self, config=nodeConfig("127.0.0.3", url))
        client = IdleClient()
        host, port = b.address("imap")
        await connectProtocol(TCP4ClientEndpoint(reactor, host, port), client)
        self.addCleanup(client.transport.loseConnection)
        await client.expect(rb"^\* OK")
        client.send(b"l LOGIN " + ALICE.encode() + b' "' + PASSWORD.encode() + b'"')
        await client.expect(rb"^l OK")
        client.send(b"s SELECT INBOX")
        await client.expect(rb"^s OK")
        client.send(b"i IDLE")
        await client.expect(rb"^\+ ")
        await deferToThread(server.stop)
        await deferToThread(server.start)
        await submit(a, "after the restart")
        await client.expect(rb"^\* 1 EXISTS")
        client.send(b"DONE")
        await client.expect(rb"^i OK")


class IdentityTests(TestCase):
    """Nodes with the same host name keep their queue claims apart."""

    async def test_sameHostName(self) -> None:
        """
        Two nodes configured with one host name get distinct claim
        prefixes (from their data directories), so a node starting does
        not take back claims another live node holds; a node's identity
        survives its restart.
        """
        url = await pgserver.freshDatabase(self)
        a = await startStack(self, config=nodeConfig("127.0.0.2", url))
        b = await startStack(self, config=nodeConfig("127.0.0.3", url))
        nodeA: Any = a.stack.backgroundService("mail-queue")
        nodeB: Any = b.stack.backgroundService("mail-queue")
        self.assertEqual(a.config.hostname, b.config.hostname)
        self.assertNotEqual(nodeA.node, nodeB.node)
        self.assertTrue(nodeA.owner.startswith(nodeA.node))
        again = await startStack(
            self,
            config=nodeConfig("127.0.0.2", url),
            dataDir=a.dataDir.root.path,
        )
        runner: Any = again.stack.backgroundService("mail-queue")
        self.assertEqual(runner.node, nodeA.node)


class POP3LockTests(TestCase):
    """POP3's maildrop lock holds across nodes."""

    async def test_inUseOnOtherNode(self) -> None:
        """
        While a POP3 session on node A holds the maildrop, a login on
        node B is refused with [IN-USE]; after A's QUIT, B gets in.
        """
        a, b = await twoNodes(self)

        async def session(node: RunningStack) -> tuple[IdleClient, bytes]:
            client = IdleClient()
            host, port = node.address("pop3")
            await connectProtocol(TCP4ClientEndpoint(reactor, host, port), client)
            self.addCleanup(client.transport.loseConnection)
            await client.expect(rb"^\+OK")
            client.send(b"USER " + ALICE.encode())
            await client.expect(rb"^\+OK")
            client.send(b"PASS " + PASSWORD.encode())
            return client, await client.expect(rb"^[+-]")

        first, reply = await session(a)
        self.assertTrue(reply.startswith(b"+OK"), reply)
        second, reply = await session(b)
        self.assertTrue(reply.startswith(b"-ERR [IN-USE]"), reply)
        first.send(b"QUIT")
        await first.expect(rb"^\+OK")
        third, reply = await session(b)
        self.assertTrue(reply.startswith(b"+OK"), reply)


class WebmailTests(TestCase):
    """Webmail sessions and mail are shared by the nodes."""

    async def test_loginOnAReadOnB(self) -> None:
        """
        A webmail login on node A is a session on node B too, and B's
        message list shows a message submitted on A.
        """
        import json

        import treq

        a, b = await twoNodes(self)
        await submit(a, "for the web")
        host, port = a.address("http")
        response = await treq.post(
            f"http://{host}:{port}/api/v1/login",
            json.dumps({"username": ALICE, "password": PASSWORD}).encode(),
            headers={"Content-Type": "application/json"},
            persistent=False,
        )
        await response.content()
        self.assertEqual(response.code, 200)
        cookie = response.headers.getRawHeaders("set-cookie")[0].split(";")[0]
        host, port = b.address("http")
        response = await treq.get(
            f"http://{host}:{port}/api/v1/messages",
            headers={"Cookie": cookie},
            persistent=False,
        )
        listed = json.loads(await response.content())
        self.assertEqual(response.code, 200)
        self.assertEqual([m["subject"] for m in listed["messages"]], ["for the web"])


class StartupTests(TestCase):
    """twistd's start-up with a PostgreSQL store."""

    async def start(self, url: str) -> str:
        """Run twistd's pre-reactor start-up; return what it wrote."""
        import io
        import sys

        from appnet.stack import Stack
        from appnet.tap import TwistdRunner
        from appnet.testing import ephemeralConfig

        config = ephemeralConfig(self.mktemp(), {"store": {"url": url}})
        runner = TwistdRunner(Stack(config, reactor, builders=[]))
        stderr = io.StringIO()
        self.patch(sys, "__stderr__", stderr)
        # It blocks (as it does before twistd's reactor runs): a thread.
        with self.assertRaises(SystemExit):
            await deferToThread(runner.privilegedStartService)
        return stderr.getvalue()

    async def test_newerSchema(self) -> None:
        """A database from a newer appnet stops start-up with one line."""
        from appnet.store._db import Migration
        from appnet.store.pg import migrateDatabase

        url = await pgserver.freshDatabase(self)
        await deferToThread(
            migrateDatabase, url, {"users": [Migration(99, "SELECT 1")]}
        )
        said = await self.start(url)
        self.assertIn("newer than this appnet", said)
        self.assertEqual(len(said.splitlines()), 1)

    async def test_unreachable(self) -> None:
        """A database that cannot be reached stops start-up with one line."""
        server = await pgserver.sharedServer()
        url = server.url("no_such_database")
        said = await self.start(url)
        self.assertIn("cannot reach the database", said)
        self.assertEqual(len(said.splitlines()), 1)
