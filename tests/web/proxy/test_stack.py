"""
The proxy in a running stack: C{[[http.proxy]]} in the config, an appnet
static site as the origin, counters in C{/status} and C{/metrics}.
"""

from __future__ import annotations

import json
import os
import time

from twisted.trial.unittest import TestCase

from appnet.testing import startWeb
from tests.process import Outcome, run


class StackTests(TestCase):
    """A stack configured with a proxy route."""

    async def test_routeCacheAndStatus(self) -> None:
        """
        Requests under the route's prefix go to the origin through the
        cache (the origin's validators make the second a revalidation);
        others are served by the site itself; /status counts.
        """
        origin = await startWeb(self)
        # Modified "later" than any Date the origin sends: no heuristic
        # freshness (RFC 9111 4.2.2), so the second request revalidates
        # however long the first took.
        page = origin.put("app/a.txt", b"from the origin\n")
        future = time.time() + 86400
        os.utime(page.path, (future, future))
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


class CacheCommandTests(TestCase):
    """C{appnet cache stats} and C{appnet cache purge} against a running server."""

    timeout = 60

    async def appnet(self, *args: str) -> Outcome:
        """Run the appnet command."""
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        outcome: Outcome = await run(
            ["-m", "appnet", *args], cwd, env={"APPNET_DATA": cwd}
        )
        return outcome

    async def test_statsAndPurge(self) -> None:
        """
        stats prints the counters; purge URL removes that URL's responses
        (the next request is a miss); purge --all empties the cache.
        """
        origin = await startWeb(self, files={"a.txt": b"A", "b.txt": b"B"})
        proxy = await startWeb(
            self, config={"http": {"proxy": [{"upstream": origin.baseURL}]}}
        )
        client = proxy.client()
        for name in ("a.txt", "b.txt"):
            response = await client.get(proxy.url(name))
            await response.content()
        outcome = await self.appnet("cache", "stats", "--server", proxy.baseURL)
        self.assertEqual(outcome.code, 0, outcome.err)
        self.assertIn("entries        2", outcome.out)
        self.assertIn("miss           2", outcome.out)
        outcome = await self.appnet(
            "cache", "purge", proxy.url("a.txt"), "--server", proxy.baseURL
        )
        self.assertEqual(outcome.out.strip(), "purged 1 stored response")
        response = await client.get(proxy.url("a.txt"))
        await response.content()
        status = response.headers.getRawHeaders(b"cache-status")[0]
        self.assertIn(b"fwd=uri-miss", status)
        outcome = await self.appnet(
            "cache", "purge", "--all", "--server", proxy.baseURL
        )
        self.assertEqual(outcome.out.strip(), "purged 2 stored responses")

    async def test_purgeRefusedFromElsewhere(self) -> None:
        """PURGE from outside http.status_allow is refused with 403."""
        origin = await startWeb(self)
        proxy = await startWeb(
            self,
            config={
                "http": {
                    "proxy": [{"upstream": origin.baseURL}],
                    "status_allow": ["10.0.0.0/8"],
                }
            },
        )
        outcome = await self.appnet(
            "cache", "purge", "--all", "--server", proxy.baseURL
        )
        self.assertEqual(outcome.code, 1)
        self.assertIn("refused PURGE", outcome.err)
