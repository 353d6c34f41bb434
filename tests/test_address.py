"""
Tests for L{appnet.address}: the one loopback test every protocol uses.
"""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from appnet.address import inNetworks, ipAddress, isLoopback


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


class IPAddressTests(SynchronousTestCase):
    def test_spellings(self) -> None:
        """
        IPv4-mapped IPv6 is judged as IPv4, a scope is dropped, and what is
        not an IP address is C{None}.
        """
        self.assertEqual(
            ipAddress("::ffff:192.0.2.1"), ipaddress.ip_address("192.0.2.1")
        )
        self.assertEqual(ipAddress("fe80::1%eth0"), ipaddress.ip_address("fe80::1"))
        self.assertIsNone(ipAddress("example.org"))
        self.assertIsNone(ipAddress("unix"))

    def test_inNetworks(self) -> None:
        """An address in any of the networks matches; a name never does."""
        networks = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]
        self.assertTrue(inNetworks("::ffff:10.1.2.3", networks))
        self.assertTrue(inNetworks("::1", networks))
        self.assertFalse(inNetworks("192.0.2.1", networks))
        self.assertFalse(inNetworks("localhost", networks))
