"""
Tests for L{appnet.dns.policy}: who may recurse or transfer, and the
per-client rate limit.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appnet.dns.policy import Policy, RateLimiter, Verdict


class PolicyTests(SynchronousTestCase):
    """
    Permissions by client address.
    """

    def test_recursionByNetwork(self) -> None:
        """Recursion for the configured networks only."""
        policy = Policy(["127.0.0.0/8", "::1/128", "10.1.0.0/16"], [])
        for host in ("127.0.0.1", "127.0.0.9", "::1", "10.1.2.3", "::ffff:127.0.0.1"):
            self.assertTrue(policy.mayRecurse(host), host)
        for host in ("10.2.0.1", "192.0.2.1", "2001:db8::1", "garbage"):
            self.assertFalse(policy.mayRecurse(host), host)

    def test_transferByAddress(self) -> None:
        """AXFR only for listed addresses; none by default."""
        self.assertFalse(Policy([], []).mayTransfer("127.0.0.1"))
        policy = Policy([], ["192.0.2.53"])
        self.assertTrue(policy.mayTransfer("192.0.2.53"))
        self.assertFalse(policy.mayTransfer("192.0.2.54"))


class RateLimiterTests(SynchronousTestCase):
    """
    A token bucket per client address.
    """

    def test_burstThenLimit(self) -> None:
        """
        A client gets C{burst} answers at once, then one per 1/rate
        seconds; over the limit, every second query slips (TC reply), the
        others are dropped.
        """
        clock = Clock()
        limiter = RateLimiter(clock, rate=10, burst=3, slip=2)
        verdicts = [limiter.check("192.0.2.1") for _ in range(7)]
        self.assertEqual(
            verdicts,
            [Verdict.ANSWER] * 3
            + [Verdict.DROP, Verdict.SLIP, Verdict.DROP, Verdict.SLIP],
        )
        self.assertEqual(limiter.check("192.0.2.2"), Verdict.ANSWER)
        clock.advance(0.1)
        self.assertEqual(limiter.check("192.0.2.1"), Verdict.ANSWER)
        self.assertNotEqual(limiter.check("192.0.2.1"), Verdict.ANSWER)
        clock.advance(10)
        self.assertEqual(
            [limiter.check("192.0.2.1") for _ in range(3)], [Verdict.ANSWER] * 3
        )

    def test_boundedMemory(self) -> None:
        """Idle clients are forgotten when the table is full."""
        clock = Clock()
        limiter = RateLimiter(clock, rate=1, burst=1, maxClients=10)
        for i in range(10):
            limiter.check(f"192.0.2.{i}")
        clock.advance(5)
        limiter.check("198.51.100.1")
        self.assertEqual(len(limiter._buckets), 1)
