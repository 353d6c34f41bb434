"""
Deferred-returning tests under trial: no C{async def}, callbacks only.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.names import client, dns
from twisted.trial.unittest import TestCase

from appnet.testing import start
from examples.myapp import fetchStatus, sendWelcome

ZONE = """\
$TTL 300
@  IN SOA ns admin 1 3600 600 86400 300
@  IN NS  ns
@  IN MX  10 mail
ns IN A   127.0.0.1
"""


class DeferredStyleTests(TestCase):
    def test_welcomeMail(self) -> Deferred[Any]:
        """The welcome message reaches the new user's mailbox."""
        d = start(self, "smtp", users={"bob@example.org": "secret"})

        def started(s: Any) -> Deferred[Any]:
            sent = deferToThread(sendWelcome, s.address("smtp"), "bob@example.org")
            sent.addCallback(lambda _: s.deliveredTo("bob@example.org"))
            return sent

        def delivered(messages: list[Any]) -> None:
            self.assertEqual(messages[0].message["Subject"], "Welcome")

        return d.addCallback(started).addCallback(delivered)

    def test_mxLookup(self) -> Deferred[Any]:
        """Twisted's own resolver finds the MX the zone text names."""
        d = start(self, "dns", zones={"example.org": ZONE})

        def started(s: Any) -> Deferred[Any]:
            resolver = client.Resolver(servers=[s.address("dns")])
            return resolver.lookupMailExchange("example.org")

        def answered(result: Any) -> None:
            answers, _, _ = result
            self.assertEqual(answers[0].type, dns.MX)
            self.assertEqual(str(answers[0].payload.name), "mail.example.org")

        return d.addCallback(started).addCallback(answered)

    def test_serverError(self) -> Deferred[Any]:
        """The app reports the status a scripted HTTP fault answers."""
        d = start(self, "http", www={"health": b"ok"})

        def started(s: Any) -> Deferred[int]:
            s.faults.http("/health", status=503)
            return deferToThread(fetchStatus, s.url("/health"))

        return d.addCallback(started).addCallback(self.assertEqual, 503)
