"""
Tests for L{appnet.address}: the one loopback test every protocol uses.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from appnet.address import isLoopback


class LoopbackTests(SynchronousTestCase):
    def test_loopback(self) -> None:
        """
        Loopback addresses in every spelling, C{localhost} and UNIX-socket
        peers are this machine.
        """
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "::ffff:127.0.0.1",
            "localhost",
            "unix",
        ]:
            self.assertTrue(isLoopback(host), host)

    def test_notLoopback(self) -> None:
        """Other addresses, and names that are not C{localhost}, are not."""
        for host in ["192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "example.org", ""]:
            self.assertFalse(isLoopback(host), host)
