"""
Joining the proxy to the web server: the router in front of the site's
tree, and the service that loads the on-disk cache at start.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource

from appnet.config import HTTPConfig
from appnet.stack import StackContext
from appnet.web.proxy.engine import ProxyEngine, ProxyRouter, Route
from appnet.web.proxy.store import CacheStore
from appnet.webmail.service import threadRunner

__all__ = ["CacheService", "proxyRoot"]


class CacheService(Service):
    """Loads the cache from disk at start."""

    name = "http-cache"  # type: ignore[assignment]
    _log = Logger()

    def __init__(self, store: CacheStore, routes: list[Route]) -> None:
        self.store = store
        self.routes = routes

    def startService(self) -> Any:
        super().startService()
        d: Deferred[None] = self.store.load()
        d.addErrback(lambda f: self._log.failure("Loading the HTTP cache failed", f))
        return d

    def stopService(self) -> Any:
        """Close the upstreams' kept-alive connections."""
        super().stopService()
        return gatherResults(
            [r.upstream.pool.closeCachedConnections() for r in self.routes]
        )


def _routes(ctx: StackContext, config: HTTPConfig) -> list[Route]:
    from appnet.web.proxy.upstream import Upstream

    routes = []
    for entry in config.proxy:
        trust = None
        if entry.ca is not None:
            with open(entry.ca, "rb") as f:
                trust = f.read()
        upstream = Upstream.create(
            ctx.reactor,
            entry.upstream,
            connectTimeout=entry.connect_timeout,
            readTimeout=entry.read_timeout,
            trust=trust,
        )
        routes.append(
            Route(
                entry.prefix.encode("utf-8"),
                entry.host.encode("idna") if entry.host else None,
                upstream,
                entry.cache,
            )
        )
    return routes


def _reader(store: CacheStore, name: str) -> Callable[[], float]:
    return lambda: store.stats()[name]


def proxyRoot(
    ctx: StackContext, config: HTTPConfig, root: Resource
) -> tuple[IResource, list[Service]]:
    """
    The site's root resource and extra services: C{root} itself when no
    proxy route is configured, else a L{ProxyRouter} in front of it.
    """
    if not config.proxy:
        return root, []
    directory = config.cache_dir or os.path.join(ctx.dataDir.root.path, "cache", "http")
    store = CacheStore(
        directory,
        memoryLimit=config.cache_memory,
        memoryObjectLimit=config.cache_memory_object,
        diskLimit=config.cache_disk,
        inThread=threadRunner(ctx.reactor),
    )
    engine = ProxyEngine(
        store, ctx.clock, ctx.status, config.cache_max_object, ctx.reactor
    )
    for name in store.stats():
        ctx.status.gauge("cache", name, _reader(store, name))
    for counter in ("hit", "miss", "revalidated", "stale", "coalesced", "bytes"):
        ctx.status.increment("cache", counter, 0)
    routes = _routes(ctx, config)
    router = ProxyRouter(engine, routes, root)
    return router, [CacheService(store, routes)]
