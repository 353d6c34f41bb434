"""
The relay end to end: two appnet nodes (crepes.fr on 127.0.0.2,
hamburger.edu on 127.0.0.3) and a DNS server with their MX records, in
this process, their queues on a virtual clock (L{startMailNetwork}).
"""

from __future__ import annotations

import email
import os
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime
from typing import Any

from twisted.trial.unittest import TestCase

from appnet.store.interfaces import RecipientState
from appnet.testing import startMailNetwork
from appnet.tls import writeSelfSigned

ALICE = "alice@crepes.fr"
BOB = "bob@hamburger.edu"


def message(subject: str = "hello", to: str = BOB) -> bytes:
    return (
        f"From: {ALICE}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n"
        f"body of {subject}\r\n.leading dot\r\n"
    ).encode()


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def report(data: bytes) -> tuple[EmailMessage, list[dict[str, str]], str]:
    """A DSN's message, its status blocks, and its quoted header."""
    dsn = parse(data)
    parts = list(dsn.iter_parts())
    blocks = [dict(block) for block in parts[1].get_payload()]
    return dsn, blocks, parts[2].get_content()


async def network(testCase: TestCase, **kw: Any) -> Any:
    kw.setdefault("domains", {"crepes.fr": ["alice"], "hamburger.edu": ["bob"]})
    return await startMailNetwork(testCase, **kw)


async def enqueue(node: Any, sender: str, recipients: list[str], data: bytes) -> int:
    """Put a message straight into a node's queue."""
    store = node.running.store
    staged = store.mail.stage()
    staged.write(data)
    try:
        id: int = await store.queue.enqueue(staged, sender, recipients)
    finally:
        staged.discard()
    return id


class RelayTests(TestCase):
    """
    Mail from one node to the other, found by MX lookup.
    """

    timeout = 60

    async def test_deliveredByMX(self) -> None:
        """
        alice@crepes.fr submits on node A; the message reaches
        bob@hamburger.edu's mailbox on node B, found by MX lookup; the
        Received fields show the path (submission at A, then A to B) and
        B's SPF check passed; A's queue is empty again.
        """
        net = await network(self)
        result = await net.submit(ALICE, [BOB], message())
        self.assertEqual(result.accepted, [BOB])
        [stored] = await net.mailbox(BOB)
        parsed = parse(stored.data)
        received = parsed.get_all("Received")
        self.assertEqual(len(received), 2)
        self.assertIn("from mx.crepes.fr ([127.0.0.2])", received[0])
        self.assertIn("by mx.hamburger.edu", received[0])
        self.assertIn("by mx.crepes.fr", received[1])
        self.assertIn("ESMTPA", received[1])
        self.assertTrue(str(parsed["Received-SPF"]).startswith("pass"))
        self.assertIn("\r\n.leading dot\r\n", stored.data.decode())
        self.assertEqual(await net.node("crepes.fr").queued(), [])
        asked = [(q.name, q.typeName) for q in net.dns.queries]
        self.assertIn(("hamburger.edu", "MX"), asked)
        status = net.node("crepes.fr").running.stack.status
        self.assertEqual(status.counter("queue", "delivered"), 1)

    async def test_nodeDownDeferredThenDelivered(self) -> None:
        """
        With node B down the message is deferred and retried on the
        schedule (5m, then 10m later); once B is back, the next retry
        delivers it, once.
        """
        net = await network(self)
        a, b = net.node("crepes.fr"), net.node("hamburger.edu")
        await b.stop()
        start = net.clock.seconds()
        await net.submit(ALICE, [BOB], message())
        [queued] = await a.queued()
        self.assertEqual(queued.attempts, 1)
        self.assertEqual(queued.recipients[0].state, RecipientState.DEFERRED)
        self.assertIn("connect to", queued.recipients[0].response)
        self.assertEqual(queued.nextAttempt, start + 300)
        await net.advance(minutes=4)
        self.assertEqual((await a.queued())[0].attempts, 1)
        await net.advance(minutes=1)
        [queued] = await a.queued()
        self.assertEqual(queued.attempts, 2)
        self.assertEqual(queued.nextAttempt, start + 900)
        await b.start()
        await net.advance(minutes=10)
        self.assertEqual(await a.queued(), [])
        self.assertEqual(len(await net.mailbox(BOB)), 1)
        await net.advance(hours=1)
        self.assertEqual(len(await net.mailbox(BOB)), 1)
        self.assertEqual(await net.mailbox(ALICE), [])

    async def test_rejectedRecipientBounces(self) -> None:
        """
        B answers 550 to one recipient: the other is delivered, and alice
        gets a DSN (multipart/report) for the refused one only, with B's
        diagnostic and her message's header; nothing is left queued.
        """
        net = await network(self)
        nobody = "nobody@hamburger.edu"
        await net.submit(ALICE, [BOB, nobody], message("two", f"{BOB}, {nobody}"))
        await net.settle()
        self.assertEqual(len(await net.mailbox(BOB)), 1)
        [bounce] = await net.mailbox(ALICE)
        dsn, blocks, header = report(bounce.data)
        self.assertEqual(dsn.get_content_type(), "multipart/report")
        self.assertEqual(dsn.get_param("report-type"), "delivery-status")
        self.assertEqual(dsn["Subject"], "Undelivered Mail Returned to Sender")
        self.assertTrue(str(dsn["From"]).startswith("Mail Delivery System"))
        self.assertIn("<>", bounce.data.decode().splitlines()[0])  # Return-Path
        self.assertEqual(blocks[0]["Reporting-MTA"], "dns; mx.crepes.fr")
        self.assertEqual(len(blocks), 2)
        self.assertEqual(blocks[1]["Final-Recipient"], f"rfc822; {nobody}")
        self.assertEqual(blocks[1]["Action"], "failed")
        self.assertEqual(blocks[1]["Status"], "5.1.1")
        self.assertEqual(blocks[1]["Remote-MTA"], "dns; mx.hamburger.edu")
        self.assertTrue(blocks[1]["Diagnostic-Code"].startswith("smtp; 550 5.1.1"))
        self.assertIn("Subject: two", header)
        self.assertEqual(await net.node("crepes.fr").queued(), [])

    async def test_expiryBounces(self) -> None:
        """
        With B down for good, alice is told of the delay after 4 hours,
        and after 5 days the message bounces (4.4.7) and leaves the
        queue; the whole schedule runs on the virtual clock.
        """
        net = await network(self)
        a = net.node("crepes.fr")
        await net.node("hamburger.edu").stop()
        start = net.clock.seconds()
        await net.submit(ALICE, [BOB], message())
        await net.advance(hours=4, minutes=16)
        [warning] = await net.mailbox(ALICE)
        dsn, blocks, _ = report(warning.data)
        self.assertEqual(dsn["Subject"], "Delayed Mail (still being retried)")
        self.assertEqual(blocks[1]["Action"], "delayed")
        self.assertIn("Will-Retry-Until", blocks[1])
        [queued] = await a.queued()
        self.assertTrue(queued.warned)
        await net.advance(days=5)
        self.assertEqual(await a.queued(), [])
        warning2, failure = await net.mailbox(ALICE)
        self.assertEqual(warning2.uid, warning.uid)
        dsn, blocks, _ = report(failure.data)
        self.assertEqual(blocks[1]["Action"], "failed")
        self.assertEqual(blocks[1]["Status"], "4.4.7")
        self.assertIn("expired", blocks[1]["Diagnostic-Code"])
        status = a.running.stack.status
        self.assertEqual(status.counter("queue", "expired"), 1)
        # Attempts after 5m 10m 20m 40m 1h 2h 4h, then every 4h, and a
        # last one at exactly 5 days.
        waits = [300, 600, 1200, 2400, 3600, 7200, 14400]
        t, tries = 0, 0
        while t < 5 * 86400:
            tries += 1
            t = min(t + waits[min(tries, len(waits)) - 1], 5 * 86400)
        self.assertEqual(status.counter("queue", "deferred"), tries)
        last = format_datetime(datetime.fromtimestamp(start + 5 * 86400, UTC))
        self.assertEqual(blocks[1]["Last-Attempt-Date"], last)

    async def test_nullSenderNeverBounced(self) -> None:
        """
        A message from the null sender (a DSN itself) that bounces is
        dropped: no DSN to <>, no loop.
        """
        net = await network(self)
        a = net.node("crepes.fr")
        await enqueue(a, "", ["nobody@hamburger.edu"], message())
        await net.settle()
        self.assertEqual(await a.queued(), [])
        self.assertEqual(await net.mailbox(ALICE), [])
        self.assertEqual(a.running.stack.status.counter("queue", "bounced"), 1)

    async def test_nullMX(self) -> None:
        """A domain with a null MX (RFC 7505) bounces at once: 5.1.10."""
        zone = (
            "$ORIGIN nomail.example.\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n"
            "@ IN NS ns\nns IN A 127.0.0.9\n@ IN MX 0 .\n"
        )
        net = await network(self, zones={"nomail.example": zone})
        await net.submit(ALICE, ["x@nomail.example"], message())
        [bounce] = await net.mailbox(ALICE)
        _, blocks, _ = report(bounce.data)
        self.assertEqual(blocks[1]["Status"], "5.1.10")

    async def test_unknownDomain(self) -> None:
        """A domain that does not exist bounces at once: 5.1.2."""
        net = await network(self)
        await net.submit(ALICE, ["x@gone.hamburger.edu"], message())
        [bounce] = await net.mailbox(ALICE)
        _, blocks, _ = report(bounce.data)
        self.assertEqual(blocks[1]["Status"], "5.1.2")

    async def test_implicitMXAndNextHost(self) -> None:
        """
        A domain without MX records is its own exchanger (its A record);
        a domain whose first MX refuses connections is delivered through
        the next one.
        """
        zones = {
            "direct.example": (
                "$ORIGIN direct.example.\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n"
                "@ IN NS ns\nns IN A 127.0.0.9\n@ IN A 127.0.0.3\n"
            ),
            "backup.example": (
                "$ORIGIN backup.example.\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n"
                "@ IN NS ns\nns IN A 127.0.0.9\n@ IN MX 10 dead\n@ IN MX 20 mx\n"
                "dead IN A 127.0.0.9\nmx IN A 127.0.0.3\n"
            ),
        }
        net = await network(
            self,
            zones=zones,
            domains={
                "crepes.fr": ["alice"],
                "hamburger.edu": ["bob", "carol@direct.example", "dave@backup.example"],
            },
        )
        await net.submit(
            ALICE, ["carol@direct.example", "dave@backup.example"], message()
        )
        b = net.node("hamburger.edu")
        self.assertEqual(len(await b.deliveredTo("carol@direct.example")), 1)
        self.assertEqual(len(await b.deliveredTo("dave@backup.example")), 1)

    async def test_loopBackToMyself(self) -> None:
        """
        Mail for a domain that is not local but whose MX is this node
        bounces (5.4.6) instead of looping.
        """
        zone = (
            "$ORIGIN loop.example.\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n"
            "@ IN NS ns\nns IN A 127.0.0.9\n@ IN MX 10 mx.crepes.fr.\n"
        )
        net = await network(self, zones={"loop.example": zone})
        await net.submit(ALICE, ["x@loop.example"], message())
        [bounce] = await net.mailbox(ALICE)
        _, blocks, _ = report(bounce.data)
        self.assertEqual(blocks[1]["Status"], "5.4.6")

    async def test_localRecipientFromQueue(self) -> None:
        """
        Mail in the queue for one of the node's own domains is delivered
        into the local mailbox, never over the network.
        """
        net = await network(self)
        a = net.node("crepes.fr")
        await enqueue(a, BOB, [ALICE], message("local", ALICE))
        await net.settle()
        [stored] = await net.mailbox(ALICE)
        self.assertTrue(stored.data.startswith(b"Return-Path: <bob@hamburger.edu>"))
        self.assertEqual(await a.queued(), [])
        self.assertEqual([q for q in net.dns.queries if q.typeName == "MX"], [])

    async def test_oneConnectionForSeveral(self) -> None:
        """
        Several messages for one destination share one connection (RSET
        between them), with one connection allowed per destination.
        """
        net = await network(
            self,
            nodeConfig={"crepes.fr": {"mail": {"relay_destination_concurrency": 1}}},
        )
        a, b = net.node("crepes.fr"), net.node("hamburger.edu")
        for n in range(5):
            await enqueue(a, ALICE, [BOB], message(f"m{n}"))
        await net.settle()
        self.assertEqual(len(await net.mailbox(BOB)), 5)
        self.assertEqual(b.running.stack.status.counter("smtp", "connections"), 1)

    async def test_spfRejectBounces(self) -> None:
        """
        A node with C{spf = "reject"} refuses mail whose sender's domain
        does not permit the sending node (550 5.7.23 at MAIL FROM); the
        sender gets a DSN saying so.
        """
        net = await network(
            self,
            spf={"crepes.fr": "v=spf1 ip4:192.0.2.1 -all"},
            nodeConfig={"hamburger.edu": {"mail": {"spf": "reject"}}},
        )
        await net.submit(ALICE, [BOB], message())
        self.assertEqual(await net.mailbox(BOB), [])
        [bounce] = await net.mailbox(ALICE)
        _, blocks, _ = report(bounce.data)
        self.assertEqual(blocks[1]["Status"], "5.7.23")
        self.assertIn("SPF validation failed", blocks[1]["Diagnostic-Code"])


class TLSTests(TestCase):
    """
    Opportunistic STARTTLS to an MX, and a smarthost with required,
    verified TLS and AUTH.
    """

    timeout = 60

    async def withCertificate(self, node: Any) -> str:
        """Give a node a self-signed certificate (restarting it)."""
        await node.stop()
        cert = os.path.join(node.dataDir, "tls", "cert.pem")
        writeSelfSigned(
            cert, os.path.join(node.dataDir, "tls", "key.pem"), f"mx.{node.domain}"
        )
        await node.start()
        return cert

    async def test_opportunisticTLS(self) -> None:
        """
        An MX offering STARTTLS with a certificate nobody can verify gets
        the message encrypted: delivery does not fail on the certificate
        (Postfix's "may").
        """
        net = await network(self)
        await self.withCertificate(net.node("hamburger.edu"))
        await net.submit(ALICE, [BOB], message())
        [stored] = await net.mailbox(BOB)
        received = parse(stored.data).get_all("Received")[0]
        self.assertIn("with ESMTPS", received)
        self.assertIn("using TLS", received)

    async def test_smarthost(self) -> None:
        """
        With a smarthost, mail goes there whatever its domain, over TLS
        verified against the configured CA file, after AUTH.
        """
        net = await network(
            self,
            domains={
                "crepes.fr": ["alice"],
                "hamburger.edu": {"bob": "pw-bob-123", "relay": "relay-password"},
            },
            nodeConfig={"hamburger.edu": {"submission": {"sender_must_match": False}}},
        )
        a, b = net.node("crepes.fr"), net.node("hamburger.edu")
        cert = await self.withCertificate(b)
        host, port = b.address("submission")
        secret = os.path.join(net._root, "smarthost.pw")
        with open(secret, "w") as f:
            f.write("relay-password\n")
        await a.stop()
        a.config["mail"].update(
            smarthost=f"mx.hamburger.edu:{port}",
            smarthost_user="relay@hamburger.edu",
            smarthost_password_file=secret,
            smarthost_cafile=cert,
        )
        await a.start()
        await net.submit(ALICE, [BOB], message())
        [stored] = await net.mailbox(BOB)
        received = parse(stored.data).get_all("Received")[0]
        self.assertIn("with ESMTPSA", received)
        self.assertEqual(await a.queued(), [])

    async def test_smarthostUnverified(self) -> None:
        """
        A smarthost whose certificate does not verify gets nothing: the
        message stays queued (deferred), its password is never sent.
        """
        net = await network(
            self,
            domains={"crepes.fr": ["alice"], "hamburger.edu": {"relay": "pw-relay-1"}},
        )
        a, b = net.node("crepes.fr"), net.node("hamburger.edu")
        await self.withCertificate(b)
        host, port = b.address("submission")
        await a.stop()
        a.config["mail"].update(
            smarthost=f"mx.hamburger.edu:{port}", smarthost_user="relay@hamburger.edu"
        )
        await a.start()
        await net.submit(ALICE, [BOB], message())
        [queued] = await a.queued()
        self.assertEqual(queued.recipients[0].state, RecipientState.DEFERRED)
        self.assertEqual(b.running.stack.status.counter("submission", "messages"), 0)
