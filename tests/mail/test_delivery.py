"""
Tests for L{appnet.mail.delivery}'s trace fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

from twisted.trial.unittest import SynchronousTestCase

from appnet.mail.delivery import receivedHeader, rfc5322Date


class DateTests(SynchronousTestCase):
    def test_wholeSeconds(self) -> None:
        """
        The date is the instant's whole second, whatever was formatted
        before it (the formatting is remembered per second).
        """
        for when in (1.99, 0.0, 1700000000.999, 1700000001.0, -0.5, 1.5):
            expected = format_datetime(
                datetime.fromtimestamp(when, UTC).replace(microsecond=0)
            )
            self.assertEqual(rfc5322Date(when), expected, when)
        self.assertEqual(rfc5322Date(0.7), "Thu, 01 Jan 1970 00:00:00 +0000")

    def test_received(self) -> None:
        """A Received field names the client, this node, the id and the date."""
        self.assertEqual(
            receivedHeader(
                helo="c.example",
                peer="192.0.2.7",
                hostname="mx.example.org",
                protocol="ESMTP",
                id="ABC",
                when=86400.25,
                recipient="bob@example.org",
            ),
            b"Received: from c.example ([192.0.2.7])\r\n"
            b"\tby mx.example.org (appnet) with ESMTP id ABC\r\n"
            b"\tfor <bob@example.org>; Fri, 02 Jan 1970 00:00:00 +0000\r\n",
        )
