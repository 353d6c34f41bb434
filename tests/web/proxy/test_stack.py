"""
The proxy in a running stack: C{[[http.proxy]]} in the config, an appnet
static site as the origin, counters in C{/status} and C{/metrics}.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import TestCase

from appnet.testing import startWeb


class StackTests(TestCase):
    """A stack configured with a proxy route."""

    async def test_routeCacheAndStatus(self) -> None:
        """
        Requests under the route's prefix go to the origin through the
        cache (the origin's validators make the second a revalidation);
        others are served by the site itself; /status counts.
        """
        origin = await startWeb(self, files={"app/a.txt": b"from the origin\n"})
        proxy = await startWeb(
            self,
            files={"local.txt": b"local\n"},
            config={
                "http": {"proxy": [{"upstream": origin.baseURL, "prefix": "/app/"}]}
            },
        )
        client = proxy.client(persistent=True)
        for _ in range(2):
            response = await client.get(proxy.baseURL + "/app/a.txt")
            body = await response.content()
            self.assertEqual(body, b"from the origin\n")
        status = response.headers.getRawHeaders(b"cache-status")[0]
        self.assertIn(b"fwd-status=304", status)
        response = await client.get(proxy.baseURL + "/local.txt")
        self.assertEqual(await response.content(), b"local\n")
        response = await client.get(proxy.baseURL + "/status")
        counters = json.loads(await response.content())
        cache = counters["services"]["cache"]
        self.assertEqual(cache["miss"], 1)
        self.assertEqual(cache["revalidated"], 1)
        self.assertEqual(cache["entries"], 1)
        response = await client.get(proxy.baseURL + "/metrics")
        self.assertIn(
            b'appnet_revalidated_total{service="cache"} 1', await response.content()
        )
