"""
C{/status} (JSON) and C{/metrics} (Prometheus text format 0.0.4): every
counter and gauge of the stack, read from its L{Status} at request time.

Services register their own counters as they land (connections and bytes
for every listener, messages queued / delivered / bounced, DNS queries and
cache hits, FTP transfers, HTTP requests by status class); these pages
render whatever is there, grouped by service, plus the uptime. Both are
served only to the client networks in C{http.status_allow} (loopback by
default): counters tell an outsider more than they should.

In C{/metrics} a counter C{name} of service C{svc} becomes
C{appnet_<name>_total{service="svc"}} and a gauge C{appnet_<name>{...}},
so one metric name gathers every service's value.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from appnet import __version__
from appnet.address import inNetworks
from appnet.listen import AddressBook, formatAddress
from appnet.status import Status
from appnet.web.pages import ErrorResource, sendBody, sendJSON

__all__ = ["MetricsResource", "StatusResource", "prometheusText"]


def _allowed(request: Request, networks: Sequence[Any]) -> bool:
    host = getattr(request.getClientAddress(), "host", None)
    return host is not None and inNetworks(host, networks)


class _Restricted(Resource):
    isLeaf = True

    def __init__(self, status: Status, allow: Sequence[Any]) -> None:
        super().__init__()
        self.status = status
        self.allow = list(allow)

    def render_GET(self, request: Request) -> bytes:
        if not _allowed(request, self.allow):
            result: bytes = ErrorResource(
                403, "Status is only shown to configured networks."
            ).render(request)
            return result
        request.setHeader(b"cache-control", b"no-store")
        return self.body(request)

    def body(self, request: Request) -> bytes:
        raise NotImplementedError


class StatusResource(_Restricted):
    """
    C{/status}: C{{"version", "uptime", "listeners", "services": {svc:
    {name: value}}}}.
    """

    def __init__(
        self, status: Status, addresses: AddressBook, allow: Sequence[Any]
    ) -> None:
        super().__init__(status, allow)
        self.addresses = addresses

    def body(self, request: Request) -> bytes:
        return sendJSON(
            request,
            {
                "version": __version__,
                "uptime": round(self.status.uptime(), 3),
                "listeners": [
                    {
                        "service": bound.service,
                        "transport": bound.transport,
                        "address": formatAddress(bound.address),
                        "tls": bound.tls,
                    }
                    for bound in self.addresses.all()
                ],
                "services": self.status.snapshot(),
            },
        )


_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def _metricName(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name)
    if cleaned[:1].isdigit():
        cleaned = "_" + cleaned
    return cleaned


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def prometheusText(status: Status) -> str:
    """
    The Prometheus exposition text for a L{Status}.
    """
    families: dict[str, tuple[str, list[str]]] = {}
    for service, name, kind, value in status.metrics():
        metric = "appnet_" + _metricName(name)
        if kind == "counter":
            metric += "_total"
        family = families.setdefault(metric, (kind, []))
        if family[0] != kind:
            continue
        family[1].append(f'{metric}{{service="{_label(service)}"}} {_number(value)}')
    lines = [
        "# HELP appnet_uptime_seconds Seconds since the stack started.",
        "# TYPE appnet_uptime_seconds gauge",
        f"appnet_uptime_seconds {_number(round(status.uptime(), 3))}",
        "# HELP appnet_info The running version.",
        "# TYPE appnet_info gauge",
        f'appnet_info{{version="{_label(__version__)}"}} 1',
    ]
    for metric in sorted(families):
        kind, samples = families[metric]
        lines.append(f"# TYPE {metric} {kind}")
        lines.extend(samples)
    return "\n".join(lines) + "\n"


class MetricsResource(_Restricted):
    """
    C{/metrics}: the Prometheus text format.
    """

    def body(self, request: Request) -> bytes:
        return sendBody(
            request,
            prometheusText(self.status).encode("utf-8"),
            b"text/plain; version=0.0.4; charset=utf-8",
        )
