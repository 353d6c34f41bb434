"""
Joining the proxy to the web server: the router in front of the site's
tree, and the service that loads the on-disk cache at start.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource

from appnet.config import HTTPConfig
from appnet.files import InThread
from appnet.stack import StackContext
from appnet.web.proxy.engine import ProxyEngine, ProxyRouter, Route
from appnet.web.proxy.forward import ForwardPolicy, ForwardProxy, systemResolver
from appnet.web.proxy.store import CacheStore

__all__ = ["CacheService", "proxyRoot"]


class CacheService(Service):
    """Loads the cache from disk at start."""

    name = "http-cache"  # type: ignore[assignment]
    _log = Logger()

    def __init__(
        self, store: CacheStore, routes: list[Route], forward: ForwardProxy | None
    ) -> None:
        self.store = store
        self.routes = routes
        self.forward = forward

    def startService(self) -> Any:
        super().startService()
        d: Deferred[None] = self.store.load()
        d.addErrback(lambda f: self._log.failure("Loading the HTTP cache failed", f))
        return d

    def stopService(self) -> Any:
        """Close the upstreams' kept-alive connections."""
        super().stopService()
        closing = [r.upstream.pool.closeCachedConnections() for r in self.routes]
        if self.forward is not None:
            closing.append(self.forward.close())
        return gatherResults(closing)


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
    ctx: StackContext, config: HTTPConfig, root: Resource, inThread: InThread
) -> tuple[IResource, list[Service]]:
    """
    The site's root resource and extra services: C{root} itself when no
    proxy route is configured, else a L{ProxyRouter} in front of it.
    """
    if not config.proxy and not config.forward_proxy:
        return root, []
    directory = config.cache_dir or os.path.join(ctx.dataDir.root.path, "cache", "http")
    store = CacheStore(
        directory,
        memoryLimit=config.cache_memory,
        memoryObjectLimit=config.cache_memory_object,
        diskLimit=config.cache_disk,
        inThread=inThread,
    )
    engine = ProxyEngine(
        store,
        ctx.clock,
        ctx.status,
        config.cache_max_object,
        ctx.reactor,
        inThread,
    )
    for name in store.stats():
        ctx.status.gauge("cache", name, _reader(store, name))
    for counter in ("hit", "miss", "revalidated", "stale", "coalesced", "bytes"):
        ctx.status.increment("cache", counter, 0)
    routes = _routes(ctx, config)
    forward = None
    if config.forward_proxy:
        forward = ForwardProxy(
            engine,
            ForwardPolicy(
                clients=[ipaddress.ip_network(n) for n in config.forward_allow],
                deny=[ipaddress.ip_network(n) for n in config.forward_deny],
                connectPorts=frozenset(config.forward_connect_ports),
                listeners=lambda: _listeners(ctx),
            ),
            systemResolver(inThread),
            ctx.reactor,
            connectTimeout=10.0,
            readTimeout=60.0,
            idleTimeout=config.idle_timeout,
            cache=config.forward_cache,
        )
    admin = [ipaddress.ip_network(n) for n in config.status_allow]
    router = ProxyRouter(engine, routes, root, forward, admin)
    return router, [CacheService(store, routes, forward)]


def _listeners(ctx: StackContext) -> list[tuple[str, int]]:
    result = []
    for bound in ctx.addresses.all():
        host = getattr(bound.address, "host", None)
        port = getattr(bound.address, "port", None)
        if host is not None and port is not None:
            result.append((host, port))
    return result
