"""
Tests for /status and /metrics.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from appnet.status import Status
from appnet.web.status import prometheusText
from tests.web.helpers import harness


class StatusPageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.web = harness(self)
        status = self.web.status
        status.started()
        status.increment("smtp", "messages_queued", 3)
        status.increment("smtp", "messages_delivered", 2)
        status.increment("dns", "queries", 10)
        status.gauge("dns", "cache_hit_ratio", lambda: 0.75)
        self.web.clock.advance(42)

    def test_json(self) -> None:
        """/status shows every service's counters and gauges and the uptime."""
        r = self.web.request("GET", "/status")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertEqual(r.header("cache-control"), "no-store")
        data = json.loads(r.body)
        self.assertEqual(data["uptime"], 42)
        self.assertEqual(data["services"]["smtp"]["messages_queued"], 3)
        self.assertEqual(data["services"]["dns"]["cache_hit_ratio"], 0.75)
        self.assertEqual(data["services"]["http"]["requests"], 1)
        self.assertIn("version", data)

    def test_metrics(self) -> None:
        """/metrics is Prometheus text with counters, gauges and uptime."""
        self.web.request("GET", "/nope")
        r = self.web.request("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(
            (r.header("content-type") or "").startswith("text/plain; version=0.0.4")
        )
        text = r.body.decode()
        self.assertIn("appnet_uptime_seconds 42\n", text)
        self.assertIn("# TYPE appnet_messages_queued_total counter\n", text)
        self.assertIn('appnet_messages_queued_total{service="smtp"} 3\n', text)
        self.assertIn("# TYPE appnet_cache_hit_ratio gauge\n", text)
        self.assertIn('appnet_cache_hit_ratio{service="dns"} 0.75\n', text)
        self.assertIn('appnet_responses_4xx_total{service="http"} 1\n', text)
        self.assertIn('appnet_requests_total{service="http"} 2\n', text)

    def test_restricted(self) -> None:
        """Clients outside status_allow get 403."""
        for path in ("/status", "/metrics"):
            r = self.web.request("GET", path, host="192.0.2.7")
            self.assertEqual(r.status, 403, path)

    def test_allowConfigured(self) -> None:
        """status_allow can open the pages to other networks."""
        web = harness(self, {"status_allow": ["192.0.2.0/24"]})
        self.assertEqual(web.request("GET", "/status", host="192.0.2.7").status, 200)
        self.assertEqual(web.request("GET", "/status").status, 403)


class PrometheusTests(SynchronousTestCase):
    def test_names(self) -> None:
        """Odd characters in names become underscores; labels are escaped."""
        from twisted.internet.task import Clock

        status = Status(Clock())
        status.increment('we"ird', "bytes-in.total")
        text = prometheusText(status)
        self.assertIn('appnet_bytes_in_total_total{service="we\\"ird"} 1', text)
