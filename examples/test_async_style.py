"""
C{async def} tests under trial: mail, DNS and HTTP fixtures, faults, the
mail catcher and the virtual clock.
"""

from __future__ import annotations

import smtplib

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from appnet.testing import start
from examples.myapp import fetchStatus, sendWelcome


class AsyncStyleTests(TestCase):
    async def test_welcomeMail(self) -> None:
        """The welcome message reaches the new user's mailbox."""
        s = await start(self, "smtp", users={"bob@example.org": "secret"})
        await deferToThread(sendWelcome, s.address("smtp"), "bob@example.org")
        [mail] = await s.deliveredTo("bob@example.org")
        self.assertEqual(mail.message["Subject"], "Welcome")

    async def test_greylisted(self) -> None:
        """A greylisting MX (451 on RCPT) makes the app's send fail."""
        s = await start(self, "smtp", users={"bob@example.org": "secret"})
        s.faults.smtp("RCPT", 451, "4.7.1 Greylisted, try again")
        send = deferToThread(sendWelcome, s.address("smtp"), "bob@example.org")
        await self.assertFailure(send, smtplib.SMTPRecipientsRefused)

    async def test_catcher(self) -> None:
        """The mail catcher keeps mail to any address."""
        s = await start(self, "smtp", catch=True)
        await deferToThread(sendWelcome, s.address("smtp"), "anyone@anywhere.test")
        [caught] = await s.caught(to="anyone@")
        self.assertEqual(caught.subject, "Welcome")

    async def test_page(self) -> None:
        """The app sees the page the web root has; requests are recorded."""
        s = await start(self, "http", www={"index.html": b"<h1>hi</h1>"})
        self.assertEqual(await deferToThread(fetchStatus, s.url("/")), 200)
        self.assertEqual(s.httpRequests[-1].path, "/")

    async def test_dnsTimeout(self) -> None:
        """A DNS name that never answers; the query is seen anyway."""
        s = await start(self, "dns", zones={"example.org": "@ IN A 192.0.2.1\n"})
        s.faults.dns("example.org", "timeout")
        resolver = s.dnsClient(timeout=0.2)
        await self.assertFailure(resolver.lookupAddresses("example.org"), Exception)
        self.assertEqual(s.dnsQueries[0].name, "example.org")
