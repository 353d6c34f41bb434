"""
Outbound mail out of the box: with no resolver configured and no DNS
recursion, the relay finds remote mail exchangers through the system's
resolvers (a C{resolv.conf} pointing at a twisted.names server on
loopback, started here), and says plainly when DNS is what failed.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import globalLogPublisher
from twisted.mail import smtp
from twisted.names import common, dns, error, server
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from appnet.mail.client import send
from appnet.store.interfaces import RecipientState
from appnet.testing import startStack
from tests.process import run

ALICE = "alice@example.org"
PASSWORD = "pw-alice-1"


class Broken(Exception):
    """What the test DNS server's resolver raises for a SERVFAIL name."""


class Zone(common.ResolverBase):
    """
    Records by (name, type) for a twisted.names C{DNSServerFactory}; a
    known name without records of the type asked for is NODATA, an
    unknown name NXDOMAIN, a name in C{broken} SERVFAIL.
    """

    def __init__(self, records: list[dns.RRHeader], broken: set[bytes]) -> None:
        super().__init__()
        self.records = records
        self.broken = broken

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any = None) -> Any:
        name = name.lower()
        if name in self.broken:
            return fail(Broken(name))
        known = [r for r in self.records if r.name.name.lower() == name]
        if not known:
            return fail(error.DomainError(name))
        return succeed(([r for r in known if r.type == type], [], []))


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> Deferred[bytes]:
        self.sink.messages.append(b"\n".join(self.lines))
        waiters, self.sink.waiters = self.sink.waiters, []
        for waiter in waiters:
            waiter.callback(None)
        return succeed(b"queued")

    def connectionLost(self) -> None:
        pass


@implementer(smtp.IMessageDelivery)
class Sink:
    """An SMTP server's delivery that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.recipients: list[str] = []
        self.waiters: list[Deferred[None]] = []

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: by the sink"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        return origin

    def validateTo(self, user: Any) -> Any:
        self.recipients.append(str(user.dest))
        return lambda: _Message(self)

    def received(self) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        self.waiters.append(waiter)
        return waiter


class OutOfTheBoxTests(TestCase):
    """
    A stack with no resolver configured relays through resolv.conf's
    servers.
    """

    timeout = 30

    async def startDNS(self) -> int:
        records = [
            dns.RRHeader(
                b"remote.example",
                dns.MX,
                payload=dns.Record_MX(10, b"mx.remote.example"),
            ),
            dns.RRHeader(
                b"mx.remote.example", dns.A, payload=dns.Record_A("127.0.0.2")
            ),
        ]
        zone = Zone(records, {b"broken.example"})
        factory = server.DNSServerFactory(authorities=[zone])
        port = reactor.listenUDP(  # type: ignore[attr-defined]
            0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port
        return number

    async def startSink(self) -> tuple[Sink, int]:
        sink = Sink()

        def build() -> smtp.ESMTP:
            protocol = smtp.ESMTP()
            protocol.delivery = sink
            return protocol

        factory = smtp.SMTPFactory()
        factory.protocol = build  # type: ignore[assignment]
        port = reactor.listenTCP(0, factory, interface="127.0.0.2")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        number: int = port.getHost().port
        return sink, number

    async def startMail(self, dnsPort: int, relayPort: int) -> Any:
        resolv = os.path.abspath(self.mktemp())
        with open(resolv, "w") as f:
            f.write(f"search example.org\nnameserver [127.0.0.1]:{dnsPort}\n")
        return await startStack(
            self,
            config={"dns": {"resolv_conf": resolv}, "mail": {"relay_port": relayPort}},
            users={ALICE: PASSWORD},
        )

    async def submit(self, stack: Any, to: str) -> None:
        host, port = stack.address("submission")
        await send(
            reactor,
            host,
            port,
            sender=ALICE,
            recipients=[to],
            message=f"From: {ALICE}\r\nTo: {to}\r\nSubject: hi\r\n\r\nhi\r\n".encode(),
            username=ALICE,
            password=PASSWORD,
            tls="none",
        )

    async def test_relaysByMXFromResolvConf(self) -> None:
        """
        With no config but resolv.conf, a submitted message reaches the
        remote domain's MX (127.0.0.2) found through the resolv.conf
        server, and the start-up log names that server.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        dnsPort = await self.startDNS()
        sink, relayPort = await self.startSink()
        received = sink.received()
        stack = await self.startMail(dnsPort, relayPort)
        await self.submit(stack, "bob@remote.example")
        await received
        self.assertEqual(sink.recipients, ["bob@remote.example"])
        self.assertIn(b"Subject: hi", sink.messages[0])
        said = [
            e["resolver"]
            for e in events
            if e.get("log_format", "").startswith("mail resolves names")
        ]
        self.assertEqual(
            said,
            [
                f"the system's resolvers 127.0.0.1:{dnsPort} "
                f"(from {stack.config.dns.resolv_conf})"
            ],
        )

    async def test_dnsFailureSaidPlainly(self) -> None:
        """
        A SERVFAIL for the recipient's domain defers the recipient with a
        reply that says the DNS lookup of MX failed and who said what;
        C{appnet queue show} prints it.
        """
        dnsPort = await self.startDNS()
        sink, relayPort = await self.startSink()
        stack = await self.startMail(dnsPort, relayPort)
        await self.submit(stack, "bob@broken.example")
        runner: Any = stack.stack.backgroundService("mail-queue")
        await runner.whenIdle()
        self.flushLoggedErrors(Broken)
        [queued] = await stack.store.queue.list()
        [recipient] = queued.recipients
        self.assertEqual(recipient.state, RecipientState.DEFERRED)
        expected = (
            "DNS lookup of MX for broken.example failed: "
            f"SERVFAIL from 127.0.0.1:{dnsPort}"
        )
        self.assertIn(expected, recipient.response)
        shown = await run(
            ["-m", "appnet", "queue", "show", str(queued.id)],
            os.getcwd(),
            env={"APPNET_DATA": stack.dataDir.root.path},
        )
        self.assertIn(expected, shown.out)  # type: ignore[attr-defined]
        self.assertEqual(sink.messages, [])
