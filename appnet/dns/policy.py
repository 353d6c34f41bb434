"""
Who may do what: recursion and zone transfers by client address, and how
fast any one client is answered over UDP.

Recursion is for the networks in C{dns.allow_recursion} only (default:
loopback), so the server is never an open resolver; zone transfers
(AXFR) only for the addresses in C{dns.allow_transfer} (default: none).

The rate limit is a token bucket per client address: C{rate} responses a
second, bursts up to C{burst}. It applies to UDP only, where source
addresses can be forged and the server could be used to amplify an attack
on the forged address; TCP's handshake proves the address, and TCP
connections per address are limited separately. Queries over the limit
are dropped, except every C{slip}-th one, which gets an empty truncated
(TC) reply, as BIND's response rate limiting does: a real client that
is over the limit retries over TCP and is answered, while a forged
victim receives replies no larger than the queries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from enum import Enum

from twisted.internet.interfaces import IReactorTime

__all__ = ["Policy", "RateLimiter", "Verdict"]


class Policy:
    """
    Recursion and transfer permissions by client address.
    """

    def __init__(
        self, allowRecursion: Sequence[str], allowTransfer: Sequence[str]
    ) -> None:
        self._recursion = [
            ipaddress.ip_network(n, strict=False) for n in allowRecursion
        ]
        self._transfer = [ipaddress.ip_network(a, strict=False) for a in allowTransfer]
        self._known: dict[str, bool] = {}

    @staticmethod
    def _within(
        host: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
    ) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        return any(address in network for network in networks)

    def mayRecurse(self, host: str) -> bool:
        """May C{host} have names outside our zones resolved?"""
        known = self._known.get(host)
        if known is None:
            known = self._within(host, self._recursion)
            if len(self._known) > 4096:
                self._known.clear()
            self._known[host] = known
        return known

    def mayTransfer(self, host: str) -> bool:
        """May C{host} transfer our zones (AXFR)?"""
        return self._within(host, self._transfer)


class Verdict(Enum):
    """What to do with one UDP query."""

    ANSWER = "answer"
    DROP = "drop"
    SLIP = "slip"


class RateLimiter:
    """
    A token bucket per client address, on a clock (the arithmetic of
    L{appnet.ratelimit.TokenBucket}, inline: it runs for every UDP query).
    """

    def __init__(
        self,
        clock: IReactorTime,
        rate: float,
        burst: float | None = None,
        slip: int = 2,
        maxClients: int = 100000,
    ) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = float(burst if burst is not None else max(rate, 1.0))
        self.slip = slip
        self.maxClients = maxClients
        #: A client's [tokens, when last refilled].
        self._buckets: dict[str, list[float]] = {}
        self._refused: dict[str, int] = {}

    def check(self, host: str) -> Verdict:
        """
        Take a token for one response to C{host}, or say how to refuse.
        """
        now = self._clock.seconds()
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) >= self.maxClients:
                self._prune(now)
            bucket = self._buckets[host] = [self.burst, now]
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return Verdict.ANSWER
        bucket[0] = tokens
        refused = self._refused[host] = self._refused.get(host, 0) + 1
        if self.slip and refused % self.slip == 0:
            return Verdict.SLIP
        return Verdict.DROP

    def _prune(self, now: float) -> None:
        """Forget clients whose buckets have filled up again."""
        full = self.burst / self.rate if self.rate else 0
        for host, bucket in list(self._buckets.items()):
            if now - bucket[1] >= full:
                del self._buckets[host]
                self._refused.pop(host, None)
        if len(self._buckets) >= self.maxClients:
            self._buckets.clear()
            self._refused.clear()
