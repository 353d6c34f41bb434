"""
Every line-based server as the stack runs it with C{--trace}: wrapped in
the listener's L{GuardedFactory} with its protocol's mask, so the
transcript reads every byte in both directions while the protocol works.

Oracles, for every case: hostile input (mutated commands from each
protocol's own fuzz table, random bytes, cut connections) raises nothing
out of the wrapper, logs no failure, and every logged line encodes as
strict UTF-8; the connection counters return to zero once it is lost.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent

from appnet.listen import GuardedFactory
from appnet.mail.imap.server import IMAP_MASK
from appnet.mail.pop3 import POP3_MASK
from appnet.mail.smtpserver import SMTP_MASK
from appnet.status import Status
from appnet.trace import MaskRule
from appnet.web.server import HTTP_MASK
from tests.ftp.helpers import Harness as FTPHarness
from tests.mail.helpers import ALICE, MailWorld
from tests.robustness import test_ftp, test_imap, test_pop3, test_smtp
from tests.robustness.fuzz import FuzzTestCase, Garbage
from tests.web.helpers import harness as webHarness
from tests.web.helpers import raw


class TracedTests(FuzzTestCase):
    """Hostile sessions through the traced listener wrapper."""

    def setUp(self) -> None:
        super().setUp()
        world = MailWorld()
        world.deliver(ALICE, test_imap.MESSAGE)
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        ftp = FTPHarness(root, connect=False)
        web = webHarness(self)
        lines = {
            "smtp": [v + b" " + a for v, a in test_smtp.VALID],
            "pop3": [v + b" " + a for v, a in test_pop3.VALID],
            "imap": [b"t " + c for c in test_imap.VALID],
            "ftp": [v + b" " + a for v, a in test_ftp.VALID],
            "http": [raw("GET", p).rstrip(b"\r\n") for p in ("/", "/status", "/login")],
        }
        self.services: dict[str, tuple[Any, MaskRule, list[bytes]]] = {
            "smtp": (world.smtpFactory(submission=True), SMTP_MASK, lines["smtp"]),
            "pop3": (world.pop3Factory(), POP3_MASK, lines["pop3"]),
            "imap": (world.imapFactory(), IMAP_MASK, lines["imap"]),
            "ftp": (ftp.factory, MaskRule(secretCommands={b"PASS": 0}), lines["ftp"]),
            "http": (web.site, HTTP_MASK, lines["http"]),
        }
        self.clock = ftp.clock

    def session(self, garbage: Garbage, service: str) -> bytes:
        _, _, lines = self.services[service]
        out = b""
        for _ in range(garbage.count(1, 8)):
            line = garbage.pick(lines)
            if garbage.chance(0.4):
                line = garbage.mutate(line)
            elif garbage.chance(0.2):
                line = garbage.blob(60)
            out += line + garbage.ending()
        return out.replace(b"{", b"(")

    def test_traced(self) -> None:
        """
        Hostile sessions of every protocol, traced, raise nothing, log no
        failure, and log only lines that can be written.
        """
        for garbage, case in self.cases("traced", 500):
            service = garbage.pick(sorted(self.services))
            factory, mask, _ = self.services[service]
            status = Status(self.clock)
            guarded = GuardedFactory(factory, service, status, 10, b"", mask)
            peer = IPv4Address("TCP", "127.0.0.1", 40000)
            protocol = guarded.buildProtocol(peer)
            transport = StringTransport(
                peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 25)
            )
            mark = len(self.logged)
            protocol.makeConnection(transport)
            data = self.session(garbage, service)
            if garbage.chance(0.3):
                data = data[: garbage.random.randrange(len(data) + 1)]
            self.deliver(protocol, data, garbage, case)
            # Let a message or file being sent go on (not the HTTP channel,
            # which registers itself as the producer of its transport).
            producer = transport.producer
            while (
                service != "http"
                and producer is not None
                and not transport.disconnecting
                and garbage.chance(0.8)
            ):
                producer.resumeProducing()
                producer = transport.producer
            self.disconnect(protocol, case)
            self.clock.advance(0)
            self.assertEqual(guarded.perAddress, {}, case.describe())
            for i in range(mark, len(self.logged)):
                text = formatEvent(self.logged[i])
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    self.fail(f"log line not UTF-8: {text!r}\n{case.describe()}")
