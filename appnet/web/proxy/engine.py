"""
The reverse proxy with its cache: for each request routed to an upstream,
answer from the store when RFC 9111 allows, otherwise fetch (coalescing
concurrent misses for one key into one upstream request), stream the
response to the client, store it when it may be stored, and say what
happened in C{Cache-Status}.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO
from weakref import WeakSet

from attrs import define, field
from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.error import (
    ConnectError,
    DNSLookupError,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NOT_MODIFIED, datetimeToString
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from appnet.address import inNetworks
from appnet.listen import hostOf
from appnet.status import Status
from appnet.web.pages import errorBody
from appnet.web.proxy.interfaces import ICacheStore
from appnet.web.proxy.policy import (
    Fields,
    StoredResponse,
    Verdict,
    cacheKey,
    cacheStatus,
    canServeStaleOnError,
    correctedInitialAge,
    decide,
    get,
    invalidations,
    matchesNotModified,
    mergeNotModified,
    requestControl,
    selectVariant,
    storable,
    storedFields,
    validators,
    varyKey,
    without,
)
from appnet.web.proxy.upstream import (
    BodyRelay,
    RequestBody,
    Upstream,
    endToEnd,
    forwardFields,
    responseFields,
    toHeaders,
)
from appnet.web.static import BodyProducer
from appnet.web.validators import Condition, evaluate, parseDate, parseETags

__all__ = ["ProxyEngine", "ProxyResource", "ProxyRouter", "Route"]

#: Counters under the C{cache} service in /status and /metrics.
COUNTERS = ("hit", "miss", "revalidated", "stale", "coalesced", "bytes")

_CONDITIONAL = (
    b"if-none-match",
    b"if-modified-since",
    b"if-match",
    b"if-unmodified-since",
    b"if-range",
)

#: Fields of a 304 to the client (RFC 9110 15.4.5).
_NOT_MODIFIED_FIELDS = (
    b"cache-control",
    b"content-location",
    b"date",
    b"etag",
    b"expires",
    b"vary",
    b"last-modified",
)


@define
class Route:
    """
    Requests for an upstream: those whose path starts with C{prefix} and,
    if C{host} is set, whose C{Host} is it (port ignored).
    """

    prefix: bytes
    host: bytes | None
    upstream: Upstream
    cache: bool = True

    def matches(self, host: bytes | None, path: bytes) -> bool:
        """Does a request for C{host} and C{path} go here?"""
        if self.host is not None:
            name = (host or b"").lower()
            if name.startswith(b"["):
                name = name.split(b"]")[0] + b"]"
            else:
                name = name.rsplit(b":", 1)[0] if name.count(b":") == 1 else name
            if name != self.host:
                return False
        return path.startswith(self.prefix)


_Shared = tuple[StoredResponse, bytes | None]


@define
class _Fill:
    """An upstream fetch for one key that other requests wait on."""

    waiters: list[Deferred[_Shared | None]] = field(factory=list)
    result: _Shared | None = None
    settled: bool = False

    def wait(self) -> Deferred[_Shared | None]:
        d: Deferred[_Shared | None] = Deferred()
        if self.settled:
            d.callback(self.result)
        else:
            self.waiters.append(d)
        return d

    def settle(self, result: _Shared | None) -> None:
        if self.settled:
            return
        self.settled = True
        self.result = result
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            d.callback(result)


class _UpstreamFailed(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _requestFields(request: Request) -> Fields:
    return tuple(
        (name.lower(), value)
        for name, values in request.requestHeaders.getAllRawHeaders()
        for value in values
    )


@define
class ProxyEngine:
    """
    Proxies requests to upstreams through the cache.

    @ivar store: the L{CacheStore}.
    @ivar clock: the time ages are computed with.
    @ivar timers: schedules timeouts (the reactor).
    @ivar inThread: runs blocking reads (a large request body's file).
    @ivar status: where the C{cache} counters go.
    @ivar maxObject: the largest body stored; larger ones stream through.
    """

    store: ICacheStore
    clock: IReactorTime
    status: Status
    maxObject: int
    timers: IReactorTime
    inThread: Callable[..., Deferred[Any]] = maybeDeferred
    _fills: dict[bytes, _Fill] = field(factory=dict, init=False)
    _gone: WeakSet[Request] = field(factory=WeakSet, init=False)
    _log = Logger()

    def watch(self, request: Request) -> None:
        """Note when C{request}'s client goes away before the answer."""
        request.notifyFinish().addErrback(lambda _: self._gone.add(request))

    def count(self, name: str, amount: int = 1) -> None:
        """Add to a C{cache} counter."""
        self.status.increment("cache", name, amount)

    def render(self, request: Request, route: Route) -> int:
        """Answer C{request} through C{route}; for a resource's C{render}."""
        self.watch(request)
        d = Deferred.fromCoroutine(self._handle(request, route))

        def failed(reason: Failure) -> None:
            if reason.check(CancelledError, _Aborted):
                return
            if reason.check(_UpstreamFailed):
                error = reason.value
                assert isinstance(error, _UpstreamFailed)
                self.fail(request, error.code, error.detail)
                return
            self._log.failure("Proxying {uri} failed", reason, uri=request.uri)
            self.fail(request, 502, "The proxy failed; it has been logged.")

        d.addErrback(failed)
        return NOT_DONE_YET

    def purge(self, request: Request) -> bytes:
        """
        Answer a C{PURGE} request: remove the target URI's stored responses
        (both schemes), or all of them with C{Cache-Purge: all}.
        """
        if (request.getHeader(b"cache-purge") or b"").strip().lower() == b"all":
            count = self.store.clear()
        else:
            host = request.getHeader(b"host") or b""
            count = sum(
                self.store.remove(cacheKey(scheme, host, request.uri))
                for scheme in (b"http", b"https")
            )
        self._log.info("Purged {count} cached responses", count=count)
        request.setResponseCode(200 if count else 404)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return b'{"purged": %d}\n' % (count,)

    # The decision.

    async def _handle(self, request: Request, route: Route) -> None:
        method = request.method
        fields = _requestFields(request)
        scheme = b"https" if request.isSecure() else b"http"
        host = request.getHeader(b"host") or b""
        key = cacheKey(scheme, host, request.uri)
        cacheable = (
            route.cache and method in (b"GET", b"HEAD") and not get(fields, b"range")
        )
        if not cacheable:
            detail = "method" if method not in (b"GET", b"HEAD") else None
            if route.cache and get(fields, b"range"):
                detail = "range"
            status = cacheStatus(
                hit=False, fwd="bypass" if route.cache else "bypass", detail=detail
            )
            await self._passThrough(request, route, fields, status)
            return
        control = requestControl(fields)
        stored = selectVariant(self.store.variants(key), fields)
        now = self.clock.seconds()
        if stored is not None:
            decision = decide(stored, fields, now)
            if decision.verdict in (Verdict.SERVE, Verdict.SERVE_STALE_REVALIDATE):
                body = self.store.body(stored)
                if body is not None:
                    try:
                        data = await body
                    except OSError:
                        self.store.remove(key)
                    else:
                        if decision.verdict is Verdict.SERVE_STALE_REVALIDATE:
                            self.count("stale")
                            self._background(
                                route, key, fields, scheme, host, request.uri, stored
                            )
                            status = cacheStatus(
                                hit=True,
                                ttl=decision.ttl,
                                detail="stale-while-revalidate",
                            )
                        else:
                            if decision.stale:
                                self.count("stale")
                            status = cacheStatus(hit=True, ttl=decision.ttl)
                        self.count("hit")
                        self._serveStored(request, stored, data, status, decision.hide)
                        return
                    stored = None
        if control.has(b"only-if-cached"):
            # RFC 9111 5.2.1.7.
            self.fail(
                request,
                504,
                "The response is not in the cache.",
                cacheStatus(hit=False, fwd="miss", detail="only-if-cached"),
            )
            return
        fill = self._fills.get(key)
        if fill is not None:
            self.count("coalesced")
            result = await fill.wait()
            if result is not None:
                fresh, shared = result
                source: bytes | BinaryIO | None = shared
                if source is None:
                    pending = self.store.body(fresh)
                    source = await pending if pending is not None else None
                if source is not None and varyKey(fresh.fields, fields) == fresh.vary:
                    decision = decide(fresh, fields, self.clock.seconds())
                    # A response that needs validation for every use
                    # (no-cache, max-age=0) is not shared: waiters fetch.
                    if decision.verdict is not Verdict.REVALIDATE:
                        self.count("hit")
                        status = cacheStatus(
                            hit=False, fwd="miss", collapsed=True, ttl=decision.ttl
                        )
                        self._serveStored(request, fresh, source, status, decision.hide)
                        return
                if source is not None and not isinstance(source, bytes):
                    source.close()
        fill = _Fill() if key not in self._fills else None
        if fill is not None:
            self._fills[key] = fill
        try:
            await self._fetch(
                request, route, key, fields, scheme, host, request.uri, stored, fill
            )
        finally:
            if fill is not None:
                if self._fills.get(key) is fill:
                    del self._fills[key]
                fill.settle(fill.result)

    def _background(
        self,
        route: Route,
        key: bytes,
        fields: Fields,
        scheme: bytes,
        host: bytes,
        target: bytes,
        stored: StoredResponse,
    ) -> None:
        """Revalidate C{stored} without a client (RFC 5861 3)."""
        if key in self._fills:
            return
        fill = _Fill()
        self._fills[key] = fill

        async def revalidate() -> None:
            try:
                await self._fetch(
                    None, route, key, fields, scheme, host, target, stored, fill
                )
            finally:
                if self._fills.get(key) is fill:
                    del self._fills[key]
                fill.settle(fill.result)

        Deferred.fromCoroutine(revalidate()).addErrback(
            lambda f: self._log.failure("Background revalidation failed", f)
        )

    # Upstream requests.

    async def _send(
        self, route: Route, method: bytes, target: bytes, fields: Fields, body: Any
    ) -> IResponse:
        producer = None
        if body is not None:
            body.seek(0, 2)
            size = body.tell()
            body.seek(0)
            if size or method in (b"POST", b"PUT", b"PATCH"):
                producer = RequestBody(body, size, self.inThread)
        upstream = route.upstream
        d = upstream.agent.request(
            method, upstream.url(target), toHeaders(fields), producer
        )
        expired = []
        timer = None
        if upstream.readTimeout:

            def expire() -> None:
                expired.append(True)
                d.cancel()

            timer = self.timers.callLater(upstream.readTimeout, expire)
        try:
            response: IResponse = await d
        except Exception as e:
            if expired:
                raise _UpstreamFailed(
                    504, "The upstream server did not answer in time."
                ) from None
            if isinstance(e, CancelledError):
                raise
            if isinstance(e, error.TimeoutError):
                raise _UpstreamFailed(
                    504, "The upstream server did not accept a connection in time."
                ) from None
            if isinstance(e, (ConnectError, DNSLookupError)):
                raise _UpstreamFailed(
                    502, f"The upstream server is unreachable ({type(e).__name__})."
                ) from None
            raise _UpstreamFailed(
                502, "The upstream server failed to answer."
            ) from None
        finally:
            if timer is not None and timer.active():
                timer.cancel()
        return response

    async def _passThrough(
        self, request: Request, route: Route, fields: Fields, status: bytes
    ) -> None:
        client = hostOf(request.getClientAddress())
        scheme = b"https" if request.isSecure() else b"http"
        host = request.getHeader(b"host")
        out = forwardFields(fields, client, scheme, host)
        response = await self._send(
            route, request.method, request.uri, out, request.content
        )
        resFields = responseFields(response)
        for key in invalidations(
            request.method, response.code, scheme, host or b"", request.uri, resFields
        ):
            self.store.remove(key)
        await self._relay(
            request,
            response,
            resFields,
            status,
            collect=False,
            readTimeout=route.upstream.readTimeout,
        )

    async def _relay(
        self,
        request: Request | None,
        response: IResponse,
        resFields: Fields,
        status: bytes,
        collect: bool,
        readTimeout: float,
        notModified: bool = False,
        onTooLarge: Any = None,
    ) -> BodyRelay:
        """Stream C{response} to C{request} (if any), collecting a copy."""
        sink = None
        if request is not None:
            self._head(request, response.code, endToEnd(resFields), status)
            if notModified:
                self._notModified(request)
            else:
                sink = request.write
        relay = BodyRelay(
            self.timers,
            readTimeout,
            sink,
            collect,
            self.maxObject,
            onTooLarge or (lambda: None),
        )
        if request is not None and not notModified:
            request.registerProducer(relay, True)
            request.notifyFinish().addErrback(lambda _: relay.stopProducing())
        response.deliverBody(relay)
        try:
            await relay.done
        except Exception:
            if request is not None:
                if not notModified:
                    request.unregisterProducer()
                request.loseConnection()
            raise _Aborted() from None
        if request is not None:
            if not notModified:
                request.unregisterProducer()
                self.count("bytes", relay.size)
            self._finish(request)
        return relay

    async def _fetch(
        self,
        request: Request | None,
        route: Route,
        key: bytes,
        fields: Fields,
        scheme: bytes,
        host: bytes,
        target: bytes,
        stored: StoredResponse | None,
        fill: _Fill | None,
    ) -> None:
        """Fetch from upstream for a cacheable GET/HEAD; serve and store."""
        client = (
            hostOf(request.getClientAddress()) if request is not None else "127.0.0.1"
        )
        clientMethod = request.method if request is not None else b"GET"
        # The cache fetches with GET, its own validators replacing the
        # client's (the client's are evaluated here, against the result).
        out = without(forwardFields(fields, client, scheme, host), _CONDITIONAL)
        if stored is not None:
            out += validators(stored)
        requestTime = self.clock.seconds()
        try:
            response = await self._send(route, b"GET", target, out, None)
        except _UpstreamFailed as e:
            if stored is not None and canServeStaleOnError(
                stored, fields, self.clock.seconds()
            ):
                await self._serveStale(request, stored, fields, e.code)
                return
            raise
        responseTime = self.clock.seconds()
        resFields = responseFields(response)
        if (
            stored is not None
            and response.code == NOT_MODIFIED
            and matchesNotModified(stored, resFields)
        ):
            updated = mergeNotModified(stored, resFields, requestTime, responseTime)
            pending = self.store.body(stored)
            data = None
            if pending is not None:
                try:
                    data = await pending
                except OSError:
                    data = None
            if data is not None:
                self.store.update(updated)
                self.count("revalidated")
                if fill is not None:
                    fill.result = (updated, data if isinstance(data, bytes) else None)
                if request is not None:
                    decision = decide(updated, (), self.clock.seconds())
                    status = cacheStatus(
                        hit=False, fwd="stale", fwdStatus=304, ttl=decision.ttl
                    )
                    self._serveStored(request, updated, data, status, frozenset())
                return
            # The body went missing meanwhile: fetch it whole.
            await self._fetch(
                request, route, key, fields, scheme, host, target, None, fill
            )
            return
        if (
            stored is not None
            and response.code >= 500
            and canServeStaleOnError(stored, fields, self.clock.seconds())
        ):
            await self._discard(response)
            await self._serveStale(request, stored, fields, response.code)
            return
        self.count("miss")
        reason = storable(b"GET", response.code, fields, resFields)
        if (
            reason is None
            and isinstance(response.length, int)
            and response.length > self.maxObject
        ):
            reason = "too-large"
        vary = varyKey(resFields, fields)
        if reason is None and vary is None:
            reason = "vary-star"
        if reason is not None and fill is not None:
            # Waiters fetch for themselves.
            fill.settle(None)
        fwd = "stale" if stored is not None else "uri-miss"
        status = cacheStatus(
            hit=False,
            fwd=fwd,
            fwdStatus=response.code,
            stored=reason is None,
            detail=reason,
        )
        notModified = False
        if request is not None and response.code == 200:
            etag, lastModified = _validatorsOf(resFields)
            condition = evaluate(
                clientMethod, request.requestHeaders, etag, lastModified
            )
            notModified = condition is Condition.NOT_MODIFIED
        if request is not None and request.method == b"HEAD":
            notModified = True
        timeout = route.upstream.readTimeout
        if request is None:
            relay = await self._collect(response, timeout)
        else:
            relay = await self._relay(
                request,
                response,
                resFields,
                status,
                collect=reason is None,
                readTimeout=timeout,
                notModified=notModified,
                onTooLarge=(lambda: fill.settle(None)) if fill is not None else None,
            )
        if reason is None and relay.collect:
            body = relay.body()
            entry = StoredResponse(
                key=key,
                vary=vary or (),
                status=response.code,
                fields=storedFields(resFields),
                requestTime=requestTime,
                responseTime=responseTime,
                initialAge=correctedInitialAge(resFields, requestTime, responseTime),
                size=len(body),
            )
            self.store.put(entry, body)
            if fill is not None:
                fill.result = (entry, body)

    async def _collect(self, response: IResponse, readTimeout: float) -> BodyRelay:
        relay = BodyRelay(self.timers, readTimeout, None, True, self.maxObject)
        response.deliverBody(relay)
        await relay.done
        return relay

    async def _discard(self, response: IResponse) -> None:
        relay = BodyRelay(self.timers, 0.0, None, False, 0)
        response.deliverBody(relay)
        try:
            await relay.done
        except Exception:
            pass

    async def _serveStale(
        self, request: Request | None, stored: StoredResponse, fields: Fields, code: int
    ) -> None:
        """RFC 5861 4: answer with a stale response when the origin fails."""
        if request is None:
            return
        pending = self.store.body(stored)
        if pending is None:
            raise _UpstreamFailed(502, "The upstream server failed to answer.")
        data = await pending
        self.count("stale")
        decision = decide(stored, fields, self.clock.seconds())
        status = cacheStatus(
            hit=True, ttl=decision.ttl, fwdStatus=code, detail="stale-if-error"
        )
        self._serveStored(request, stored, data, status, decision.hide)

    # Writing responses.

    def _head(self, request: Request, code: int, fields: Fields, status: bytes) -> None:
        request.setResponseCode(code)
        headers = request.responseHeaders
        for name in list(dict(headers.getAllRawHeaders())):
            if name.lower() not in (b"server",):
                headers.removeHeader(name)
        for name, value in fields:
            headers.addRawHeader(name, value)
        if not headers.hasHeader(b"date"):
            headers.setRawHeaders(b"date", [datetimeToString(self.clock.seconds())])
        headers.addRawHeader(b"via", b"1.1 appnet")
        headers.addRawHeader(b"cache-status", status)

    def _notModified(self, request: Request) -> None:
        if request.method == b"HEAD":
            return
        request.setResponseCode(NOT_MODIFIED)
        headers = request.responseHeaders
        for name in list(dict(headers.getAllRawHeaders())):
            lower = name.lower()
            if lower not in _NOT_MODIFIED_FIELDS and lower not in (
                b"age",
                b"via",
                b"cache-status",
                b"server",
            ):
                headers.removeHeader(name)

    def _serveStored(
        self,
        request: Request,
        stored: StoredResponse,
        body: bytes | BinaryIO,
        status: bytes,
        hide: frozenset[bytes],
    ) -> None:
        """
        Answer from a stored response, with C{Age} (RFC 9111 4); C{body} is
        bytes, or an open file streamed in chunks read in the thread pool.
        """
        if self._done(request):
            if not isinstance(body, bytes):
                body.close()
            return
        fields = without(stored.fields, hide | {b"age"})
        age = int(
            max(0.0, stored.initialAge + self.clock.seconds() - stored.responseTime)
        )
        fields += ((b"age", b"%d" % (age,)),)
        self._head(request, stored.status, fields, status)
        request.responseHeaders.setRawHeaders(
            b"content-length", [b"%d" % (stored.size,)]
        )
        etag, lastModified = _validatorsOf(stored.fields)
        condition = evaluate(request.method, request.requestHeaders, etag, lastModified)
        if condition is Condition.NOT_MODIFIED and stored.status == 200:
            self._notModified(request)
            request.write(b"")
        elif request.method == b"HEAD":
            request.write(b"")
        elif isinstance(body, bytes):
            request.write(body)
            self.count("bytes", len(body))
        else:
            # The shared file sender (reads in our threads, paced by the
            # client, sendfile where the connection allows); it closes the
            # file and finishes the response.
            sender = BodyProducer(
                request, body, [(0, stored.size)], None, self.inThread
            )
            sender.start().addCallback(self._streamed)
            return
        if not isinstance(body, bytes):
            body.close()
        self._finish(request)

    def _streamed(self, sent: int | None) -> None:
        # None: the client went away, or the file could not be read (the
        # sender dropped the connection and logged nothing of it here).
        if sent is not None:
            self.count("bytes", sent)

    def _done(self, request: Request) -> bool:
        """Has C{request} been answered, or its client gone?"""
        return bool(request.finished) or request in self._gone

    def _finish(self, request: Request) -> None:
        if not self._done(request):
            request.finish()

    def fail(
        self, request: Request, code: int, detail: str, status: bytes | None = None
    ) -> None:
        """
        Answer with a short error page (or close, if the response has
        already begun).
        """
        if self._done(request):
            return
        if request.startedWriting:
            request.loseConnection()
            return
        body = errorBody(code, detail)
        request.setResponseCode(code)
        request.responseHeaders.setRawHeaders(
            b"content-type", [b"text/html; charset=utf-8"]
        )
        request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % (len(body),)])
        request.responseHeaders.setRawHeaders(b"cache-control", [b"no-store"])
        if status is not None:
            request.responseHeaders.setRawHeaders(b"cache-status", [status])
        request.write(b"" if request.method == b"HEAD" else body)
        request.finish()


class _Aborted(Exception):
    """The upstream body broke off; the client connection was closed."""


@functools.lru_cache(maxsize=4096)
def _validatorsOf(fields: Fields) -> tuple[Any, int | None]:
    etag = None
    tags = get(fields, b"etag")
    if tags:
        parsed = parseETags(tags[0])
        if isinstance(parsed, list) and parsed:
            etag = parsed[0]
    modified = get(fields, b"last-modified")
    return etag, parseDate(modified[0]) if modified else None


class ProxyResource(Resource):
    """The leaf that hands a routed request to the engine."""

    isLeaf = True

    def __init__(self, engine: ProxyEngine, route: Route) -> None:
        super().__init__()
        self.engine = engine
        self.route = route

    def render(self, request: Request) -> int:
        return self.engine.render(request, self.route)


#: The server's own paths, never proxied.
RESERVED = frozenset({b"/status", b"/metrics"})


class _PurgeLeaf(Resource):
    isLeaf = True

    def __init__(self, engine: ProxyEngine, allow: Sequence[Any]) -> None:
        super().__init__()
        self.engine = engine
        self.allow = list(allow)

    def render(self, request: Request) -> bytes:
        if not _fromNetworks(request, self.allow):
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"application/json")
            return b'{"error": "PURGE is only accepted from configured networks"}\n'
        return self.engine.purge(request)


def _fromNetworks(request: Request, networks: Sequence[Any]) -> bool:
    return inNetworks(hostOf(request.getClientAddress()), networks)


class _ForwardLeaf(Resource):
    isLeaf = True

    def __init__(self, forward: Any) -> None:
        super().__init__()
        self.forward = forward

    def render(self, request: Request) -> int:
        result: int = self.forward.render(request)
        return result


class ProxyRouter(Resource):
    """
    The site's root when the proxy is configured: C{PURGE} (from the
    C{admin} networks) to the cache, a forward proxy request to C{forward}
    (if enabled), a request matching a route to its upstream, anything
    else (and the server's own C{/status} and C{/metrics}) to the normal
    tree.
    """

    def __init__(
        self,
        engine: ProxyEngine,
        routes: Sequence[Route],
        fallback: Resource,
        forward: Any = None,
        admin: Sequence[Any] = (),
    ) -> None:
        super().__init__()
        self.engine = engine
        self.routes = list(routes)
        self.fallback = fallback
        self.forward = forward
        self._leaves = [ProxyResource(engine, r) for r in self.routes]
        self._forwardLeaf = _ForwardLeaf(forward) if forward is not None else None
        self._purgeLeaf = _PurgeLeaf(engine, admin)

    def _route(self, request: Request) -> Resource | None:
        if request.method == b"PURGE":
            return self._purgeLeaf
        if request.uri.split(b"?", 1)[0] in RESERVED:
            return None
        if self._forwardLeaf is not None and self.forward.handles(request):
            return self._forwardLeaf
        host = request.getHeader(b"host")
        path = request.uri.split(b"?", 1)[0]
        for route, leaf in zip(self.routes, self._leaves, strict=True):
            if route.matches(host, path):
                return leaf
        return None

    def getChildWithDefault(self, path: bytes, request: Request) -> Any:
        leaf = self._route(request)
        if leaf is not None:
            # The leaf takes the whole path.
            request.postpath = [path, *(request.postpath or [])]
            return leaf
        return self.fallback.getChildWithDefault(path, request)

    def render(self, request: Request) -> Any:
        leaf = self._route(request)
        if leaf is not None:
            return leaf.render(request)
        return self.fallback.render(request)
