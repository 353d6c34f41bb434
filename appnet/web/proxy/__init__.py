"""
The caching reverse proxy: C{[[http.proxy]]} routes requests by path
prefix and C{Host} to upstream servers, through an RFC 9111 shared cache.
"""

from appnet.web.proxy.engine import ProxyEngine, ProxyResource, ProxyRouter, Route
from appnet.web.proxy.interfaces import ICacheStore
from appnet.web.proxy.mount import CacheService, proxyRoot
from appnet.web.proxy.store import CacheStore

__all__ = [
    "CacheService",
    "CacheStore",
    "ICacheStore",
    "ProxyEngine",
    "ProxyResource",
    "ProxyRouter",
    "Route",
    "proxyRoot",
]
