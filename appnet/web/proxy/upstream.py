"""
Talking to upstreams: one L{Agent} with a keep-alive pool per upstream,
request headers rewritten for forwarding (hop-by-hop fields out,
C{Forwarded}, C{X-Forwarded-For}, C{X-Forwarded-Proto} and C{Via} in), and
a response body relayed to the client as it arrives, paced by the client's
connection, with a read timeout.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    ResponseDone,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from appnet.web.client import TrustPolicy
from appnet.web.proxy.policy import HOP_BY_HOP, Fields, get

__all__ = [
    "BodyRelay",
    "ReadTimeout",
    "RequestBody",
    "Upstream",
    "forwardFields",
    "responseFields",
]


class ReadTimeout(Exception):
    """The upstream went quiet for longer than the read timeout."""


def _connectionNamed(fields: Fields) -> set[bytes]:
    names: set[bytes] = set()
    for value in get(fields, b"connection"):
        names |= {n.strip().lower() for n in value.split(b",") if n.strip()}
    return names


def endToEnd(fields: Fields) -> Fields:
    """C{fields} without hop-by-hop ones (RFC 9110 7.6.1)."""
    drop = HOP_BY_HOP | _connectionNamed(fields)
    return tuple((n, v) for n, v in fields if n not in drop)


def _quoteFor(host: str) -> bytes:
    if ":" in host:
        return b'"[' + host.encode("ascii") + b']"'
    return host.encode("ascii")


def forwardFields(
    fields: Fields, client: str, scheme: bytes, host: bytes | None
) -> Fields:
    """
    The fields of a request as forwarded: hop-by-hop ones removed,
    C{Forwarded} (RFC 7239), C{X-Forwarded-For}/C{-Proto} and C{Via} added
    (appended to what earlier proxies set).
    """
    # The body is re-framed by the agent, which sets Content-Length itself.
    kept = [(n, v) for n, v in endToEnd(fields) if n != b"content-length"]
    element = b"for=" + _quoteFor(client) + b";proto=" + scheme
    if host:
        element += b';host="' + host.replace(b'"', b"") + b'"'
    kept.append((b"forwarded", element))
    previous = [v for n, v in kept if n == b"x-forwarded-for"]
    kept = [
        (n, v) for n, v in kept if n not in (b"x-forwarded-for", b"x-forwarded-proto")
    ]
    chain = b", ".join(previous + [client.encode("ascii")])
    kept.append((b"x-forwarded-for", chain))
    kept.append((b"x-forwarded-proto", scheme))
    kept.append((b"via", b"1.1 appnet"))
    return tuple(kept)


def responseFields(response: IResponse) -> Fields:
    """An upstream response's fields, lowercased, in order."""
    return tuple(
        (name.lower(), value)
        for name, values in response.headers.getAllRawHeaders()
        for value in values
    )


def toHeaders(fields: Fields) -> Headers:
    """L{Fields} as Twisted L{Headers}."""
    headers = Headers()
    for name, value in fields:
        headers.addRawHeader(name, value)
    return headers


@frozen
class Upstream:
    """
    One upstream: where it is and the agent (with its pool) that talks to
    it.
    """

    base: bytes
    agent: IAgent
    pool: HTTPConnectionPool
    readTimeout: float

    @classmethod
    def create(
        cls,
        reactor: Any,
        base: str,
        *,
        connectTimeout: float,
        readTimeout: float,
        trust: bytes | None = None,
        maxPersistent: int = 16,
    ) -> Upstream:
        """
        An upstream at C{base} (C{http://host:port} or C{https://...}); TLS
        servers are verified (service-identity) against C{trust}, else the
        system's CAs.
        """
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = maxPersistent
        pool.cachedConnectionTimeout = 60
        policy: Any = (
            TrustPolicy(trust) if trust is not None else BrowserLikePolicyForHTTPS()
        )
        agent = Agent(
            reactor, contextFactory=policy, pool=pool, connectTimeout=connectTimeout
        )
        return cls(base.rstrip("/").encode("ascii"), agent, pool, readTimeout)

    def url(self, target: bytes) -> bytes:
        """The upstream URL of a request target (origin-form)."""
        return self.base + (target if target.startswith(b"/") else b"/" + target)


@implementer(IPushProducer)
class BodyRelay(Protocol):
    """
    Receives an upstream body: hands each chunk to C{sink} (which writes
    it to the client) and, while C{collect} holds, keeps a copy up to
    C{limit} bytes for the cache. Registered as the client request's
    producer, so a slow client pauses the upstream. C{done} fires with
    C{None} when the body is complete, or fails.
    """

    _log = Logger()
    #: The response's transport: it pauses, resumes and stops the body.
    transport: Any

    def __init__(
        self,
        clock: IReactorTime,
        readTimeout: float,
        sink: Callable[[bytes], None] | None,
        collect: bool,
        limit: int,
        onTooLarge: Callable[[], None] = lambda: None,
    ) -> None:
        self._clock = clock
        self._readTimeout = readTimeout
        self._sink = sink
        self.collect = collect
        self._limit = limit
        self._onTooLarge = onTooLarge
        self.chunks: list[bytes] = []
        self.size = 0
        self.done: Deferred[None] = Deferred()
        self._timer: IDelayedCall | None = None
        self._paused = False
        self._timedOut = False

    def connectionMade(self) -> None:
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        if self._readTimeout and not self._paused:
            self._timer = self._clock.callLater(self._readTimeout, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _expired(self) -> None:
        self._timer = None
        self._timedOut = True
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        self._arm()
        self.size += len(data)
        if self.collect:
            if self.size > self._limit:
                self.collect = False
                self.chunks = []
                self._onTooLarge()
            else:
                self.chunks.append(data)
        if self._sink is not None:
            self._sink(data)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self._disarm()
        if self._timedOut:
            self.done.errback(ReadTimeout())
        elif reason.check(ResponseDone):
            self.done.callback(None)
        elif reason.check(PotentialDataLoss):
            # The body ended with the connection (no length given): whole
            # for the client, but not certain enough to store.
            self.collect = False
            self.chunks = []
            self.done.callback(None)
        else:
            self.done.errback(reason)

    def body(self) -> bytes:
        """The collected body."""
        return b"".join(self.chunks)

    # IPushProducer, driven by the client's connection.

    def pauseProducing(self) -> None:
        self._paused = True
        self._disarm()
        if self.transport is not None:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        self._arm()
        if self.transport is not None:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self._disarm()
        if self.transport is not None:
            self.transport.stopProducing()


@implementer(IBodyProducer)
class RequestBody:
    """
    A request body Twisted has received (in memory, or in a temporary file
    when large) sent upstream in chunks; file chunks are read by
    C{inThread}, never on the reactor. Paused and resumed by the upstream
    connection.
    """

    CHUNK = 64 * 1024

    def __init__(self, content: Any, length: int, inThread: Callable[..., Any]) -> None:
        self.length = length
        self._content = content
        self._inThread = inThread
        self._inMemory = isinstance(content, io.BytesIO)
        self._paused: Deferred[None] | None = None
        self._stopped = False
        self._done: Deferred[None] | None = None

    def startProducing(self, consumer: Any) -> Deferred[None]:
        self._content.seek(0)
        self._done = Deferred()
        Deferred.fromCoroutine(self._run(consumer)).addErrback(self._failed)
        return self._done

    def _failed(self, reason: Failure) -> None:
        if not self._stopped and self._done is not None:
            self._done.errback(reason)

    async def _run(self, consumer: Any) -> None:
        while not self._stopped:
            if self._paused is not None:
                await self._paused
                continue
            if self._inMemory:
                chunk = self._content.read(self.CHUNK)
            else:
                chunk = await self._inThread(self._content.read, self.CHUNK)
            if self._stopped:
                return
            if not chunk:
                assert self._done is not None
                self._done.callback(None)
                return
            consumer.write(chunk)

    def pauseProducing(self) -> None:
        if self._paused is None:
            self._paused = Deferred()

    def resumeProducing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self) -> None:
        self._stopped = True
        self.resumeProducing()
