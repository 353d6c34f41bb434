"""
The token bucket behind every rate limit: FTP transfer rates, DNS
responses per client.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

__all__ = ["TokenBucket"]


class TokenBucket:
    """
    C{rate} tokens a second, up to C{burst} held (one second's worth
    unless given); it starts full.
    """

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(
        self, clock: IReactorTime, rate: float, burst: float | None = None
    ) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = float(rate if burst is None else burst)
        self._tokens = self.burst
        self._last = clock.seconds()

    def _refill(self) -> None:
        now = self._clock.seconds()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self, amount: float) -> float:
        """
        Account for C{amount} just used (never refused); return the
        seconds to wait before using more (0 when within the rate), so
        that a transfer slows down instead of failing.
        """
        self._refill()
        self._tokens -= amount
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate

    def tryTake(self, amount: float = 1.0) -> bool:
        """Take C{amount} if the bucket holds it; say whether it did."""
        self._refill()
        if self._tokens >= amount:
            self._tokens -= amount
            return True
        return False

    @property
    def lastUsed(self) -> float:
        """When the bucket was last used, on its clock."""
        return self._last
