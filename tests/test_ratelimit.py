"""
Tests for L{appnet.ratelimit.TokenBucket}, the one token bucket.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appnet.ratelimit import TokenBucket


class TokenBucketTests(SynchronousTestCase):
    """
    L{TokenBucket} refills at C{rate} a second up to C{burst}.
    """

    def test_takeSaysHowLongToWait(self) -> None:
        """L{TokenBucket.take} never refuses: past the burst it says how long."""
        clock = Clock()
        bucket = TokenBucket(clock, 100)
        self.assertEqual(bucket.take(100), 0.0)
        self.assertEqual(bucket.take(50), 0.5)
        clock.advance(1.5)
        self.assertEqual(bucket.take(100), 0.0)

    def test_tryTake(self) -> None:
        """L{TokenBucket.tryTake} takes only what the bucket holds."""
        clock = Clock()
        bucket = TokenBucket(clock, 1, burst=2)
        self.assertTrue(bucket.tryTake())
        self.assertTrue(bucket.tryTake())
        self.assertFalse(bucket.tryTake())
        clock.advance(1)
        self.assertTrue(bucket.tryTake())
        self.assertEqual(bucket.lastUsed, 1)

    def test_burstCaps(self) -> None:
        """An idle bucket holds no more than its burst."""
        clock = Clock()
        bucket = TokenBucket(clock, 1, burst=2)
        clock.advance(100)
        self.assertTrue(bucket.tryTake(2))
        self.assertFalse(bucket.tryTake())
