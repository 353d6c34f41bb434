"""
Counters every service reports, for C{/status} and C{/metrics}.

A L{Status} holds monotonically increasing counters and point-in-time
gauges, keyed by service and name (C{("smtp", "connections")}). Services
increment counters as things happen and register gauges as callables read
at snapshot time, so nothing is computed unless someone asks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from attrs import define, field
from twisted.internet.interfaces import IReactorTime

__all__ = ["Status"]


@define
class Status:
    """
    The stack's counters and gauges.
    """

    _clock: IReactorTime
    _started: float | None = field(default=None, init=False)
    _counters: dict[tuple[str, str], int] = field(factory=dict, init=False)
    _gauges: dict[tuple[str, str], Callable[[], float]] = field(
        factory=dict, init=False
    )
    _recording: list[tuple[tuple[str, str], int]] | None = field(
        default=None, init=False
    )
    _peers: list[dict[str, dict[str, float]]] = field(factory=list, init=False)
    _settlers: list[Callable[[], None]] = field(factory=list, init=False)

    def started(self) -> None:
        """Note the start time, for uptime."""
        self._started = self._clock.seconds()

    def increment(self, service: str, name: str, amount: int = 1) -> None:
        """Add C{amount} to counter C{name} of C{service}."""
        key = (service, name)
        self._counters[key] = self._counters.get(key, 0) + amount
        if self._recording is not None:
            self._recording.append((key, amount))

    def record(self) -> None:
        """
        Start noting every increment, so a fast path can repeat exactly
        what the full path counted (see L{recorded}).
        """
        self._recording = []

    def recorded(self) -> tuple[tuple[tuple[str, str], int], ...]:
        """
        Stop noting increments; the C{((service, name), amount)} noted
        since L{record}.
        """
        noted = tuple(self._recording or ())
        self._recording = None
        return noted

    def settleWith(self, settle: Callable[[], None]) -> None:
        """
        Call C{settle} before counters are read: a fast path that tallies
        its own hits adds them then (with L{incrementAll}).
        """
        self._settlers.append(settle)

    def _settle(self) -> None:
        for settle in self._settlers:
            settle()

    def incrementAll(self, increments: Sequence[tuple[tuple[str, str], int]]) -> None:
        """Apply increments as L{recorded} returned them."""
        counters = self._counters
        for key, amount in increments:
            counters[key] = counters.get(key, 0) + amount

    def counter(self, service: str, name: str) -> int:
        """The current value of a counter (0 if never incremented)."""
        self._settle()
        return self._counters.get((service, name), 0)

    def gauge(self, service: str, name: str, read: Callable[[], float]) -> None:
        """Register a gauge, read at snapshot time."""
        self._gauges[(service, name)] = read

    def uptime(self) -> float:
        """Seconds since L{started}, or 0 before it."""
        if self._started is None:
            return 0.0
        return self._clock.seconds() - self._started

    def shared(self) -> dict[str, dict[str, float]]:
        """
        This process's counters and gauges, for the other workers of a
        stack (L{setPeers}): C{{"counters": {"svc name": value}, "gauges":
        {...}}}, JSON-ready.
        """
        self._settle()
        return {
            "counters": {f"{s} {n}": v for (s, n), v in self._counters.items()},
            "gauges": {f"{s} {n}": read() for (s, n), read in self._gauges.items()},
        }

    def setPeers(self, peers: Sequence[dict[str, dict[str, float]]]) -> None:
        """
        The L{shared} values of the stack's other worker processes, added
        into L{snapshot} and L{metrics} (counters and gauges are summed).
        """
        self._peers = list(peers)

    def restore(self, shared: dict[str, dict[str, float]]) -> None:
        """
        Continue the counters of a previous process of this worker (as it
        L{shared} them), so totals do not drop when a worker restarts.
        """
        for key, value in shared.get("counters", {}).items():
            service, _, name = key.partition(" ")
            self.increment(service, name, int(value))

    def _values(
        self,
    ) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
        self._settle()
        counters: dict[tuple[str, str], float] = dict(self._counters)
        gauges = {key: read() for key, read in self._gauges.items()}
        for peer in self._peers:
            for kind, into in (("counters", counters), ("gauges", gauges)):
                for key, value in peer.get(kind, {}).items():
                    service, _, name = key.partition(" ")
                    pair = (service, name)
                    into[pair] = into.get(pair, 0) + value
        if self._peers:
            # A ratio is not a quantity: the workers' mean, not their sum.
            share = 1 + len(self._peers)
            for pair in gauges:
                if pair[1].endswith("_ratio"):
                    gauges[pair] /= share
        return counters, gauges

    def snapshot(self) -> dict[str, dict[str, float]]:
        """
        Every counter and gauge as C{{service: {name: value}}}.
        """
        result: dict[str, dict[str, float]] = {}
        counters, gauges = self._values()
        for (service, name), value in counters.items():
            result.setdefault(service, {})[name] = value
        for (service, name), value in gauges.items():
            result.setdefault(service, {})[name] = value
        return result

    def metrics(self) -> list[tuple[str, str, str, float]]:
        """
        Every counter and gauge as C{(service, name, kind, value)}, kind
        C{"counter"} or C{"gauge"}, sorted by service and name (for
        C{/metrics}, which must tell the two apart).
        """
        counters, gauges = self._values()
        rows: list[tuple[str, str, str, float]] = [
            (service, name, "counter", value)
            for (service, name), value in counters.items()
        ]
        rows += [
            (service, name, "gauge", value) for (service, name), value in gauges.items()
        ]
        return sorted(rows)
