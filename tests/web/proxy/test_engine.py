"""
The caching reverse proxy over real loopback sockets: an origin written
here, the proxy's engine in front of it with a virtual clock for ages, and
a client. Nothing sleeps: the origin holds responses on Deferreds the
tests fire.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from typing import Any

from attrs import define, field
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.client import (
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    ResponseFailed,
    readBody,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from appnet.status import Status
from appnet.web.proxy.engine import ProxyEngine, ProxyRouter, Route
from appnet.web.proxy.policy import StoredResponse
from appnet.web.proxy.store import CacheStore
from appnet.web.proxy.upstream import Upstream
from appnet.web.validators import httpDate
from appnet.webmail.service import threadRunner

T0 = 1_800_000_000.0

Answer = tuple[int, dict[bytes, bytes], bytes]


class Origin(Resource):
    """
    An origin server: C{answers[path](request)} gives the status, headers
    and body; C{hold}, when set, delays every answer until it fires.
    """

    isLeaf = True

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.hits: Counter[bytes] = Counter()
        self.seen: list[Request] = []
        self.answers: dict[bytes, Callable[[Request], Answer]] = {}
        self.hold: Deferred[None] | None = None
        self.stall: set[bytes] = set()
        self.bodies: list[bytes] = []

    def render(self, request: Request) -> Any:
        self.hits[request.path] += 1
        self.seen.append(request)
        self.bodies.append(request.content.read())
        if self.hold is not None:
            self.hold.addCallback(lambda _: self._answer(request))
            return NOT_DONE_YET
        self._answer(request)
        return NOT_DONE_YET

    def _answer(self, request: Request) -> None:
        answer = self.answers.get(request.path)
        code, headers, body = answer(request) if answer else (404, {}, b"not here")
        request.setResponseCode(code)
        request.setHeader(b"date", httpDate(self.clock.seconds()))
        for name, value in headers.items():
            request.setHeader(name, value)
        if request.path in self.stall:
            # Half the body, then silence.
            request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body[: len(body) // 2])
            return
        if code != 304:
            request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)
        request.finish()


def fixed(code: int, body: bytes, **headers: str) -> Callable[[Request], Answer]:
    """An answer that is always the same."""
    fields = {k.replace("_", "-").encode(): v.encode() for k, v in headers.items()}
    return lambda request: (code, fields, body)


@define
class WatchedStatus(Status):
    """L{Status} that tells a test when a counter reaches a value."""

    watches: list[tuple[str, int, Deferred[None]]] = field(factory=list)

    def increment(self, service: str, name: str, amount: int = 1) -> None:
        super().increment(service, name, amount)
        for watch in list(self.watches):
            if watch[0] == name and self.counter(service, name) >= watch[1]:
                self.watches.remove(watch)
                watch[2].callback(None)

    def reaches(self, name: str, value: int) -> Deferred[None]:
        """Fires when cache counter C{name} reaches C{value}."""
        d: Deferred[None] = Deferred()
        if self.counter("cache", name) >= value:
            d.callback(None)
        else:
            self.watches.append((name, value, d))
        return d


@define
class WatchedStore(CacheStore):
    """L{CacheStore} that tells a test when a response is stored."""

    stored: list[Deferred[None]] = field(factory=list)

    def put(self, stored: StoredResponse, body: bytes) -> Deferred[None]:
        d = super().put(stored, body)
        waiting, self.stored = self.stored, []
        for each in waiting:
            d.addCallback(lambda _, each=each: each.callback(None))
        return d

    def nextPut(self) -> Deferred[None]:
        """Fires when the next response has been stored."""
        d: Deferred[None] = Deferred()
        self.stored.append(d)
        return d


class Harness(TestCase):
    """An origin, the proxy in front of it, and a client."""

    maxObject = 10_000
    readTimeout = 5.0

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.origin = Origin(self.clock)
        originPort = reactor.listenTCP(0, Site(self.origin), interface="127.0.0.1")
        self.addCleanup(originPort.stopListening)
        self.upstream = Upstream.create(
            reactor,
            f"http://127.0.0.1:{originPort.getHost().port}",
            connectTimeout=2.0,
            readTimeout=self.readTimeout,
        )
        self.addCleanup(self.upstream.pool.closeCachedConnections)
        self.store = WatchedStore(
            self.mktemp(),
            memoryLimit=100_000,
            memoryObjectLimit=100,
            diskLimit=1_000_000,
            inThread=threadRunner(reactor),
        )
        self.status = WatchedStatus(self.clock)
        self.engine = ProxyEngine(
            self.store,
            self.clock,
            self.status,
            self.maxObject,
            reactor,
            threadRunner(reactor),
        )
        route = Route(b"/", None, self.upstream)
        port = reactor.listenTCP(
            0,
            Site(ProxyRouter(self.engine, [route], Resource())),
            interface="127.0.0.1",
        )
        self.addCleanup(port.stopListening)
        self.base = b"http://127.0.0.1:%d" % port.getHost().port
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        self.agent = Agent(reactor, pool=pool)
        return self.store.load()

    async def get(
        self, path: bytes, method: bytes = b"GET", **headers: str
    ) -> tuple[IResponse, bytes]:
        """One request through the proxy: the response and its body."""
        fields = Headers(
            {k.replace("_", "-").encode(): [v.encode()] for k, v in headers.items()}
        )
        response = await self.agent.request(method, self.base + path, fields)
        body = await readBody(response)
        return response, body

    def header(self, response: IResponse, name: bytes) -> bytes | None:
        """One response header."""
        values = response.headers.getRawHeaders(name)
        return values[0] if values else None

    def counter(self, name: str) -> int:
        """A cache counter."""
        return self.status.counter("cache", name)


class ProxyTests(Harness):
    """The engine between a client and an origin."""

    async def test_missThenHit(self) -> None:
        """
        The first GET goes to the origin and is stored; the next is served
        from the cache, with an Age grown by the time resident (RFC 9111
        4, 4.2.3) and Cache-Status saying hit (RFC 9211).
        """
        self.origin.answers[b"/a"] = fixed(200, b"alpha", cache_control="max-age=60")
        first, body = await self.get(b"/a")
        self.assertEqual((first.code, body), (200, b"alpha"))
        self.assertIn(b"fwd=uri-miss", self.header(first, b"cache-status") or b"")
        self.assertIn(b"stored", self.header(first, b"cache-status") or b"")
        self.clock.advance(10)
        second, body = await self.get(b"/a")
        self.assertEqual((second.code, body), (200, b"alpha"))
        self.assertEqual(self.header(second, b"age"), b"10")
        self.assertEqual(self.header(second, b"cache-status"), b"appnet; hit; ttl=50")
        self.assertEqual(self.origin.hits[b"/a"], 1)
        self.assertEqual((self.counter("hit"), self.counter("miss")), (1, 1))

    async def test_revalidate304(self) -> None:
        """
        A stale response is validated with If-None-Match; the 304's fields
        are merged into the stored response, which answers (RFC 9111 4.3).
        """
        calls = []

        def answer(request: Request) -> Answer:
            calls.append(request.getHeader(b"if-none-match"))
            if request.getHeader(b"if-none-match") == b'"v1"':
                return (
                    304,
                    {b"etag": b'"v1"', b"cache-control": b"max-age=30", b"x-v": b"2"},
                    b"",
                )
            return (
                200,
                {b"etag": b'"v1"', b"cache-control": b"max-age=10", b"x-v": b"1"},
                b"body",
            )

        self.origin.answers[b"/r"] = answer
        await self.get(b"/r")
        self.clock.advance(20)
        response, body = await self.get(b"/r")
        self.assertEqual((response.code, body), (200, b"body"))
        self.assertEqual(calls, [None, b'"v1"'])
        self.assertEqual(self.header(response, b"x-v"), b"2")
        self.assertIn(b"fwd-status=304", self.header(response, b"cache-status") or b"")
        self.assertEqual(self.counter("revalidated"), 1)
        self.clock.advance(20)
        response, body = await self.get(b"/r")
        self.assertEqual(self.origin.hits[b"/r"], 2)
        self.assertEqual(body, b"body")

    async def test_coalescing(self) -> None:
        """Concurrent misses for one key make one upstream fetch."""
        self.origin.answers[b"/c"] = fixed(200, b"shared", cache_control="max-age=60")
        self.origin.hold = Deferred()
        pending = [Deferred.fromCoroutine(self.get(b"/c")) for _ in range(20)]
        await self.status.reaches("coalesced", 19)
        hold, self.origin.hold = self.origin.hold, None
        hold.callback(None)
        results = await gatherResults(pending)
        self.assertEqual({body for _, body in results}, {b"shared"})
        self.assertEqual(self.origin.hits[b"/c"], 1)
        self.assertEqual(self.counter("coalesced"), 19)

    async def test_notStorable(self) -> None:
        """no-store and private responses go to the origin every time."""
        self.origin.answers[b"/n"] = fixed(200, b"n", cache_control="no-store")
        self.origin.answers[b"/p"] = fixed(
            200, b"p", cache_control="private, max-age=60"
        )
        for _ in range(2):
            response, _ = await self.get(b"/n")
            await self.get(b"/p")
        self.assertEqual((self.origin.hits[b"/n"], self.origin.hits[b"/p"]), (2, 2))
        self.assertIn(
            b'detail="no-store"', self.header(response, b"cache-status") or b""
        )

    async def test_unsafeInvalidates(self) -> None:
        """A successful POST invalidates the stored GET of its target (4.4)."""
        self.origin.answers[b"/i"] = fixed(200, b"i", cache_control="max-age=60")
        await self.get(b"/i")
        await self.get(b"/i")
        response, _ = await self.get(b"/i", method=b"POST")
        self.assertEqual(response.code, 200)
        await self.get(b"/i")
        self.assertEqual(self.origin.hits[b"/i"], 3)

    async def test_requestBodies(self) -> None:
        """
        Request bodies reach the upstream whole: a small one (held in
        memory) and a large one (in a temporary file, read in a thread).
        """
        self.origin.answers[b"/up"] = fixed(201, b"ok")
        for size in (10, 500_000):
            data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
            response = await self.agent.request(
                b"POST", self.base + b"/up", None, FileBodyProducer(io.BytesIO(data))
            )
            await readBody(response)
            self.assertEqual(response.code, 201)
            self.assertEqual(self.origin.bodies[-1], data)

    async def test_hitFromDisk(self) -> None:
        """
        A body too large for the memory tier is served from its file on
        disk, streamed in chunks; HEAD and a client's 304 close it unread.
        """
        big = bytes(range(256)) * 20
        self.origin.answers[b"/d"] = fixed(
            200, big, cache_control="max-age=60", etag='"d"'
        )
        stored = self.store.nextPut()
        await self.get(b"/d")
        await stored
        response, body = await self.get(b"/d")
        self.assertEqual(body, big)
        self.assertIn(b"hit", self.header(response, b"cache-status") or b"")
        response, body = await self.get(b"/d", method=b"HEAD")
        self.assertEqual((response.code, body), (200, b""))
        response, body = await self.get(b"/d", if_none_match='"d"')
        self.assertEqual(response.code, 304)
        self.assertEqual(self.origin.hits[b"/d"], 1)

    async def test_headFromGet(self) -> None:
        """HEAD is answered from a stored GET, with its fields and no body."""
        self.origin.answers[b"/h"] = fixed(200, b"hello", cache_control="max-age=60")
        await self.get(b"/h")
        response, body = await self.get(b"/h", method=b"HEAD")
        self.assertEqual((response.code, body), (200, b""))
        self.assertEqual(self.header(response, b"content-length"), b"5")
        self.assertEqual(self.origin.hits[b"/h"], 1)

    async def test_clientConditional(self) -> None:
        """A client's If-None-Match matching the stored ETag gets a 304."""
        self.origin.answers[b"/e"] = fixed(
            200, b"e", cache_control="max-age=60", etag='"x"'
        )
        await self.get(b"/e")
        response, body = await self.get(b"/e", if_none_match='"x"')
        self.assertEqual((response.code, body), (304, b""))
        self.assertEqual(self.header(response, b"etag"), b'"x"')

    async def test_forwardingHeaders(self) -> None:
        """
        Hop-by-hop fields (and those Connection names) are removed;
        Forwarded, X-Forwarded-For and -Proto are added (RFC 9110 7.6.1,
        RFC 7239).
        """
        self.origin.answers[b"/f"] = fixed(200, b"f", cache_control="no-store")
        await self.get(
            b"/f", connection="X-Secret", x_secret="1", x_forwarded_for="10.0.0.9"
        )
        seen = self.origin.seen[-1]
        self.assertIsNone(seen.getHeader(b"x-secret"))
        self.assertEqual(seen.getHeader(b"x-forwarded-for"), b"10.0.0.9, 127.0.0.1")
        self.assertEqual(seen.getHeader(b"x-forwarded-proto"), b"http")
        forwarded = seen.getHeader(b"forwarded") or b""
        self.assertTrue(forwarded.startswith(b"for=127.0.0.1;proto=http;host="))

    async def test_vary(self) -> None:
        """Vary keeps one stored response per variant (RFC 9111 4.1)."""

        def answer(request: Request) -> Answer:
            language = request.getHeader(b"accept-language") or b"none"
            return (
                200,
                {b"vary": b"Accept-Language", b"cache-control": b"max-age=60"},
                language,
            )

        self.origin.answers[b"/v"] = answer
        for language in ("en", "de", "en", "de"):
            _, body = await self.get(b"/v", accept_language=language)
            self.assertEqual(body, language.encode())
        self.assertEqual(self.origin.hits[b"/v"], 2)

    async def test_onlyIfCached(self) -> None:
        """only-if-cached on a miss is answered 504 (RFC 9111 5.2.1.7)."""
        response, _ = await self.get(b"/o", cache_control="only-if-cached")
        self.assertEqual(response.code, 504)
        self.assertEqual(self.origin.hits[b"/o"], 0)

    async def test_staleIfError(self) -> None:
        """With stale-if-error a stale response answers for a failing origin."""
        state = {"fail": False}

        def answer(request: Request) -> Answer:
            if state["fail"]:
                return 503, {}, b"down"
            return 200, {b"cache-control": b"max-age=1, stale-if-error=600"}, b"old"

        self.origin.answers[b"/s"] = answer
        await self.get(b"/s")
        state["fail"] = True
        self.clock.advance(100)
        response, body = await self.get(b"/s")
        self.assertEqual((response.code, body), (200, b"old"))
        self.assertIn(b"stale-if-error", self.header(response, b"cache-status") or b"")

    async def test_staleWhileRevalidate(self) -> None:
        """
        Within stale-while-revalidate the stale response answers at once and
        a background fetch refreshes the cache (RFC 5861 3).
        """
        versions = iter([b"one", b"two"])
        self.origin.answers[b"/w"] = lambda request: (
            200,
            {b"cache-control": b"max-age=1, stale-while-revalidate=60"},
            next(versions),
        )
        await self.get(b"/w")
        self.clock.advance(5)
        refreshed = self.store.nextPut()
        _, body = await self.get(b"/w")
        self.assertEqual(body, b"one")
        await refreshed
        _, body = await self.get(b"/w")
        self.assertEqual(body, b"two")

    async def test_largeStreamsThrough(self) -> None:
        """A body larger than the object limit is relayed whole, not stored."""
        big = bytes(range(256)) * 200
        self.origin.answers[b"/big"] = fixed(200, big, cache_control="max-age=60")
        for _ in range(2):
            _, body = await self.get(b"/big")
            self.assertEqual(body, big)
        self.assertEqual(self.origin.hits[b"/big"], 2)

    async def test_unreachable(self) -> None:
        """An upstream that refuses connections gets a short 502, not a traceback."""
        self.upstream = Upstream.create(
            reactor, "http://127.0.0.1:1", connectTimeout=2.0, readTimeout=2.0
        )
        route = Route(b"/", None, self.upstream)
        port = reactor.listenTCP(
            0,
            Site(ProxyRouter(self.engine, [route], Resource())),
            interface="127.0.0.1",
        )
        self.addCleanup(port.stopListening)
        self.base = b"http://127.0.0.1:%d" % port.getHost().port
        response, body = await self.get(b"/x")
        self.assertEqual(response.code, 502)
        self.assertIn(b"unreachable", body)
        self.assertNotIn(b"Traceback", body)


class TimeoutTests(Harness):
    """An upstream that does not answer in time gets a 504."""

    readTimeout = 0.2

    async def test_slowUpstream(self) -> None:
        """No response head within the read timeout: 504 with a short body."""
        self.origin.answers[b"/slow"] = fixed(200, b"late")
        self.origin.hold = Deferred()
        response, body = await self.get(b"/slow")
        self.assertEqual(response.code, 504)
        self.assertIn(b"in time", body)
        hold, self.origin.hold = self.origin.hold, None
        hold.callback(None)

    async def test_stallMidBody(self) -> None:
        """
        An upstream that goes quiet in the middle of a body: the client's
        connection is closed (its response is visibly short) and nothing
        is stored.
        """
        self.origin.answers[b"/half"] = fixed(
            200, b"x" * 100, cache_control="max-age=60"
        )
        self.origin.stall.add(b"/half")
        with self.assertRaises(ResponseFailed):
            await self.get(b"/half")
        self.assertEqual(self.store.variants(b"http://" + self.base[7:] + b"/half"), [])
