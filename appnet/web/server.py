"""
The web server: the site, its resource tree, and the builder that puts it
in the stack.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from typing import Any

from attrs import define, field, frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime, ISSLTransport
from twisted.internet.protocol import connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import (
    NO_BODY_CODES,
    HTTPChannel,
    datetimeToLogString,
    datetimeToString,
)
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from appnet.config import HTTPConfig
from appnet.faults import NO_FAULTS, Fault, Faults
from appnet.files import InThread, inline
from appnet.listen import hostOf
from appnet.stack import Component, Listening, StackContext
from appnet.status import Status
from appnet.threads import PoolService
from appnet.trace import MaskRule
from appnet.web.fastpath import FastStatic, FileCache
from appnet.web.login import LoginResource, LoginService, LogoutResource
from appnet.web.pages import ErrorResource, errorBody, reason
from appnet.web.proxy.mount import proxyRoot
from appnet.web.sessions import SessionGate, SessionManager
from appnet.web.static import StaticFiles
from appnet.web.status import MetricsResource, StatusResource

__all__ = [
    "MOUNTS",
    "AccessLog",
    "WebChannel",
    "WebContext",
    "WebRequest",
    "WebRoot",
    "WebSite",
    "buildWeb",
    "webBuilder",
]

#: Applications attached to the root: C{"module:function"} strings, each
#: function taking the L{WebContext} and returning C{{name: resource}}.
MOUNTS: tuple[str, ...] = (
    "appnet.webmail.mount:mountWebmail",
    "appnet.testapi:mountTestAPI",
)

SERVER = b"appnet"

#: How long a rejected connection keeps reading (and discarding) the
#: client's data before closing, so the client reads our status first.
LINGER = 2.0


_BODY = re.compile(rb"\n(?:content-length|transfer-encoding)[ \t]*:", re.IGNORECASE)

_PLAIN = re.compile(rb"[\x20-\x21\x23-\x5b\x5d-\x7e]*")

#: An HTTP-version (RFC 9112 2.3).
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")

#: The versions served (HTTP/2 and later have no request line).
SERVED_VERSIONS = (b"HTTP/1.0", b"HTTP/1.1")


def requestLine(line: bytes) -> tuple[bytes, bytes, bytes]:
    """
    A request line's method, target and version, as far as they are
    there (empty where missing); the channel's own reading, for answers
    it gives before or instead of Twisted's parser.
    """
    parts = line.split(b" ")
    parts += [b""] * (3 - len(parts))
    return parts[0], parts[1], parts[-1] if len(parts) >= 3 else b""


def isAPI(target: bytes) -> bool:
    """Does a request target (origin or absolute form) lie under C{/api}?"""
    if b"://" in target:
        target = b"/" + target.partition(b"://")[2].partition(b"/")[2]
    path = target.split(b"?", 1)[0]
    return path == b"/api" or path.startswith(b"/api/")


def _escape(value: bytes | str) -> str:
    """
    Escape a field for the access log as nginx does: quotes, backslashes,
    control and non-ASCII bytes as C{\\xHH}.
    """
    data = value.encode("utf-8", "replace") if isinstance(value, str) else value
    if _PLAIN.fullmatch(data):
        return data.decode("ascii")
    out = []
    for byte in data:
        if byte in (0x22, 0x5C) or byte < 0x20 or byte >= 0x7F:
            out.append(f"\\x{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def _mediaType(value: bytes) -> bytes | None:
    """
    The media type of a C{Content-Type} value as Twisted's form parsing
    reads it (with the C{email} package), or C{None} where that parser
    fails.
    """
    message = EmailMessage()
    try:
        message["content-type"] = value.decode("charmap")
        return message.get_content_type().encode("charmap")
    except Exception:
        return None


def combinedLine(
    *,
    client: str,
    user: str,
    when: str,
    requestLine: bytes,
    code: int,
    length: int,
    referer: bytes | None,
    agent: bytes | None,
) -> str:
    """
    One access log line in the combined format::

        127.0.0.1 - alice@example.org [10/Oct/2026:13:55:36 +0000]
            "GET /a.txt HTTP/1.1" 200 2326 "-" "curl/8.5.0"
    """
    return (
        f'{client} - {_escape(user) or "-"} {when} "{_escape(requestLine)}" '
        f'{code} {length or "-"} "{_escape(referer or b"-")}" '
        f'"{_escape(agent or b"-")}"'
    )


@define
class AccessLog:
    """
    Where access log lines go: a file (appended, buffered as nginx's
    C{buffer=} does: written when 64 KiB are waiting, a second after the
    first waiting line, and on close), the daemon's log (C{""}), or nowhere
    (C{"off"}).
    """

    target: str
    clock: IReactorTime | None = None
    _fd: int | None = field(default=None, init=False)
    _waiting: list[bytes] = field(factory=list, init=False)
    _size: int = field(default=0, init=False)
    _timer: Any = field(default=None, init=False)
    _log = Logger()

    #: Bytes of lines held before they are written.
    BUFFER = 64 * 1024
    #: Seconds a line may wait.
    FLUSH = 1.0

    def open(self) -> None:
        """Open the file, if the target is one."""
        if self.target not in ("", "off") and self._fd is None:
            self._fd = os.open(
                self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640
            )

    def close(self) -> None:
        """Write what is waiting and close the file."""
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def flush(self) -> None:
        """Write the waiting lines now."""
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        if self._waiting and self._fd is not None:
            data = b"".join(self._waiting)
            while data:
                data = data[os.write(self._fd, data) :]
        self._waiting = []
        self._size = 0

    def write(self, line: str) -> None:
        """Record one request."""
        if self._fd is not None:
            data = (line + "\n").encode("utf-8")
            if self.clock is None:
                os.write(self._fd, data)
                return
            self._waiting.append(data)
            self._size += len(data)
            if self._size >= self.BUFFER:
                self.flush()
            elif self._timer is None:
                self._timer = self.clock.callLater(self.FLUSH, self.flush)
        elif self.target == "":
            self._log.info("{line}", line=line)

    @property
    def enabled(self) -> bool:
        """Are lines recorded at all?"""
        return self.target != "off"


class WebRequest(Request):
    """
    A request of L{WebSite}: server headers, counters, access log.

    @ivar logUser: what the access log shows as the user (an application
        sets it to the logged-in account).
    """

    site: WebSite
    channel: WebChannel
    logUser: str = ""
    _bodyReceived = 0
    _counted = False

    def __repr__(self) -> str:
        # Twisted's repr decodes the target as ASCII; its own log events
        # (a HEAD answered with a body) format the request, and a target
        # with a byte above 0x7F made each a traceback ("MESSAGE LOST").
        return "<{} {} {} {}>".format(
            type(self).__name__,
            _escape(self.method or b"-"),
            _escape(self.uri or b"-"),
            _escape(self.clientproto or b"-"),
        )

    def handleContentChunk(self, data: bytes) -> None:
        channel = self.channel
        if getattr(channel, "rejected", False):
            return
        self._bodyReceived += len(data)
        if self._bodyReceived > channel.maxBodySize:
            channel.reject(413, "The request body is too large.")
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        contentType = self.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
        if command == b"POST" and contentType:
            if _mediaType(contentType) != b"application/x-www-form-urlencoded":
                # Only urlencoded forms are parsed into request.args.
                # Twisted would parse a multipart upload whole on the
                # reactor thread, dropping file names; applications parse
                # it themselves, in a thread (appnet.webmail.forms). And a
                # Content-Type the email package cannot read ("x;X+K*"
                # makes it raise IndexError) must not reach Twisted's
                # parser, which would raise out of dataReceived.
                self._parsePOSTFormSubmission = False
        super().requestReceived(command, path, version)

    def process(self) -> None:
        site = self.channel.site
        site.requestStarted(self)
        faults = site.web.stack.faults if site.web is not None else NO_FAULTS
        if faults is not NO_FAULTS and not self.path.startswith(b"/_appnet/"):
            fault = faults.take(
                "http",
                "request",
                self.path.decode("latin-1"),
                transport=self.channel.transport,
            )
            if fault is not None:
                self._faulted(fault, faults.clock)
                return
        super().process()

    def _faulted(self, fault: Fault, clock: IReactorTime) -> None:
        """Answer as a scripted fault (L{appnet.faults}) says."""
        if fault.action == "reset":
            self.channel.transport.abortConnection()  # type: ignore[union-attr]
        elif fault.action == "status":
            body = (fault.text or "Scripted failure").encode("utf-8") + b"\n"
            self.setResponseCode(fault.code or 500)
            self.setHeader(b"content-type", b"text/plain; charset=utf-8")
            self.setHeader(b"content-length", b"%d" % len(body))
            self.write(body)
            self.finish()
        else:

            def later() -> None:
                if self.channel is not None:
                    Request.process(self)

            clock.callLater(fault.delay, later)

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            self._finalHeaders()
        super().write(data)

    def _finalHeaders(self) -> None:
        headers = self.responseHeaders
        headers.setRawHeaders(b"server", [SERVER])
        if not headers.hasHeader(b"x-content-type-options"):
            headers.setRawHeaders(b"x-content-type-options", [b"nosniff"])
        site = self.channel.site if self.channel is not None else None
        if site is not None and site.hsts and self.isSecure():
            headers.setRawHeaders(
                b"strict-transport-security", [b"max-age=%d" % (site.hsts,)]
            )
        channel = self.channel
        if self.clientproto == b"HTTP/1.0" and getattr(channel, "keepAlive10", False):
            lengthKnown = (
                headers.hasHeader(b"content-length")
                or self.method == b"HEAD"
                or self.code in NO_BODY_CODES
            )
            if lengthKnown:
                headers.setRawHeaders(b"connection", [b"keep-alive"])
            else:
                # The body ends when the connection does.
                channel.persistent = False

    def finish(self) -> None:
        super().finish()
        self._done()

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self._done()

    def _done(self) -> None:
        if not self._counted:
            self._counted = True
            site = getattr(self, "site", None)
            if site is not None:
                site.requestEnded(self)


class WebChannel(HTTPChannel):
    """
    An HTTP connection with limits that answer with the right status.

    @ivar maxBodySize: largest request body in bytes (413 above).
    @ivar requestTimeout: seconds allowed for a request's header section
        (408 after), counted from its first byte.
    @ivar rejected: set once the connection is being closed with an error
        status; everything the client sends after is discarded.
    @ivar keepAlive10: the current request is HTTP/1.0 with
        C{Connection: keep-alive}.
    @ivar requestMethod: the method of the request being received, as
        this channel read its request line.
    @ivar requestTarget: its target, likewise.
    """

    site: WebSite
    maxBodySize = 25 * 1024 * 1024
    requestTimeout: float | None = 30.0
    rejected = False
    keepAlive10 = False
    requestMethod = b""
    requestTarget = b""
    _inHead = False
    _awaitingHead = True
    _headSize = 0
    _headLines = 0
    _headTimer: Any = None
    _lingerTimer: Any = None
    #: Set by a CONNECT tunnel (L{appnet.web.proxy.forward}): from then on
    #: the client's bytes go to its C{dataReceived}, not to the parser.
    tunnel: Any = None
    _log = Logger()

    #: The static fast path, if the site has one and this connection may
    #: use it.
    fast: FastStatic | None = None
    #: Nothing of the full path is pending: the next bytes start a request.
    fastIdle = True
    _fastResume = False
    _client = ""
    _faults: Faults = NO_FAULTS

    def connectionMade(self) -> None:
        super().connectionMade()
        site: Any = getattr(self, "site", None)
        web = getattr(site, "web", None)
        self._faults = web.stack.faults if web is not None else NO_FAULTS
        fast = getattr(site, "fast", None)
        if fast is not None and not (
            site.hsts and ISSLTransport.providedBy(self.transport)
        ):
            self.fast = fast
            self._client = hostOf(self.transport.getPeer())  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.dataReceived(data)
            return
        if self.rejected:
            return
        fast = self.fast
        if fast is not None and self._faults.has("http"):
            # A scripted fault applies at the full path's fault point.
            fast = None
        if fast is not None:
            if self.fastIdle:
                self.resetTimeout()
                used = fast.serve(data, self.transport.write, self._client)  # type: ignore[union-attr]
                if used == len(data):
                    return
                data = data[used:]
                self.fastIdle = False
                # The full path takes over; it hands back once it has
                # answered, if what it got was one request head and no more.
                self._fastResume = data.endswith(b"\r\n\r\n") and (
                    data.count(b"\r\n\r\n") == 1 and not _BODY.search(data)
                )
            else:
                self._fastResume = False
        super().dataReceived(data)
        # Most requests arrive whole in one read; only a header section
        # still incomplete afterwards needs the clock.
        if (
            self._awaitingHead
            and self._headTimer is None
            and self.requestTimeout
            and not self.rejected
            and (self._inHead or self._buffer)
        ):
            self._headTimer = self.callLater(self.requestTimeout, self._headTimedOut)

    def _headTimedOut(self) -> None:
        self._headTimer = None
        self.reject(408, "The request took too long to arrive.")

    def _cancelHeadTimer(self) -> None:
        if self._headTimer is not None:
            if self._headTimer.active():
                self._headTimer.cancel()
            self._headTimer = None

    def lineReceived(self, line: bytes) -> None:
        if self.rejected:
            return
        if not self._inHead:
            if not line:
                # A stray CRLF between requests (RFC 9112 2.2 allows one).
                super().lineReceived(line)
                return
            self._inHead = True
            self._headSize = 0
            self._headLines = 0
            method, target, version = requestLine(line)
            self.requestMethod, self.requestTarget = method, target
            if len(line) > self.totalHeadersSize:
                self.reject(414, "The request line is too long.")
                return
            if _VERSION.fullmatch(version) and version not in SERVED_VERSIONS:
                self.reject(505, "Only HTTP/1.0 and HTTP/1.1 are served.")
                return
        elif not line:
            self._inHead = False
            self._awaitingHead = False
            self._cancelHeadTimer()
        else:
            self._headLines += 1
            if self._headLines > self.maxHeaders:
                self.reject(431, "Too many header fields.")
                return
        self._headSize += len(line) + 2
        if self._headSize > self.totalHeadersSize:
            self.reject(431, "The request header fields are too large.")
            return
        super().lineReceived(line)

    def headerReceived(self, line: bytes) -> bool:
        name, colon, value = line.partition(b":")
        if colon and name.strip(b" \t").lower() == b"content-length":
            value = value.strip(b" \t")
            if value.isdigit() and len(value) > 20:
                # More than any body limit, and more digits than int()
                # converts (Twisted's parser would raise out of
                # dataReceived).
                self.reject(413, "The request body is too large.")
                return False
        accepted: bool = super().headerReceived(line)
        return accepted

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._inHead:
            self.reject(431, "The request header fields are too large.")
        else:
            self.reject(414, "The request line is too long.")

    def allHeadersReceived(self) -> None:
        if self.rejected:
            return
        if self.length is not None and self.length > self.maxBodySize:
            self.reject(413, "The request body is too large.")
            return
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        if self.rejected:
            return
        super().allContentReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if self.tunnel is not None:
            # Sent right behind the CONNECT head, in the same read.
            self.tunnel.dataReceived(data)
            return
        if self.rejected:
            return
        super().rawDataReceived(data)

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        tokens: set[bytes] = set()
        for value in request.requestHeaders.getRawHeaders(b"connection", []):
            tokens.update(t.strip().lower() for t in value.split(b","))
        self.keepAlive10 = False
        if version == b"HTTP/1.1":
            if b"close" in tokens:
                request.responseHeaders.setRawHeaders(b"connection", [b"close"])
                return False
            return True
        if version == b"HTTP/1.0" and b"keep-alive" in tokens:
            self.keepAlive10 = True
            return True
        return False

    def requestDone(self, request: Any) -> None:
        self._awaitingHead = True
        self.requestMethod = self.requestTarget = b""
        super().requestDone(request)
        if (
            self._fastResume
            and not self.requests
            and not self.rejected
            and self.persistent
            and self.transport is not None
        ):
            self.fastIdle = True
        self._fastResume = False

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.reject(400, "The request is malformed.")

    def reject(self, code: int, detail: str) -> None:
        """
        Answer the request being received with an error status and close
        the connection, after a short lingering read.
        """
        if self.rejected or self.transport is None:
            return
        self.rejected = True
        self._cancelHeadTimer()
        self.setTimeout(None)
        if isAPI(self.requestTarget):
            body = json.dumps({"error": detail}).encode("utf-8") + b"\n"
            contentType = b"application/json"
        else:
            body = errorBody(code, detail)
            contentType = b"text/html; charset=utf-8"
        head = (
            b"HTTP/1.1 %d %s\r\nDate: %s\r\nServer: %s\r\n"
            b"Content-Type: %s\r\nContent-Length: %d\r\n"
            b"X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
        ) % (
            code,
            reason(code).encode("ascii"),
            datetimeToString(),
            SERVER,
            contentType,
            len(body),
        )
        # A response to HEAD has no body (RFC 9110 9.3.2), even this one.
        method = self.requestMethod
        self.transport.write(head if method == b"HEAD" else head + body)
        site = getattr(self, "site", None)
        if site is not None:
            site.rejected(self, code, len(body))
        halfClose = getattr(self.transport, "loseWriteConnection", None)
        if halfClose is not None:
            try:
                halfClose()
            except Exception:
                halfClose = None
        if halfClose is None:
            self.transport.loseConnection()
            return
        self._lingerTimer = self.callLater(LINGER, self._endLinger)

    def _endLinger(self) -> None:
        self._lingerTimer = None
        if self.transport is not None:
            self.transport.loseConnection()

    def readConnectionLost(self) -> None:
        """The client closed its side: nothing more to linger for."""
        if self.rejected and self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.tunnel is not None:
            self.tunnel.connectionLost(reason)
        self._cancelHeadTimer()
        if self._lingerTimer is not None and self._lingerTimer.active():
            self._lingerTimer.cancel()
        self._lingerTimer = None
        super().connectionLost(reason)


class WebSite(Site):
    """
    The site: L{WebChannel}s and L{WebRequest}s under one config.
    """

    protocol = WebChannel  # type: ignore[assignment]
    requestFactory = WebRequest
    displayTracebacks = False
    #: The context of the component this site serves.
    web: WebContext | None = None
    #: Called with every request once answered (fixtures record them).
    observers: list[Callable[[Request], object]] = []

    def __init__(
        self,
        resource: IResource,
        *,
        config: HTTPConfig,
        status: Status,
        reactor: IReactorTime,
        accessLog: AccessLog | None = None,
    ) -> None:
        super().__init__(resource, timeout=config.idle_timeout or None, reactor=reactor)
        self.config = config
        self.observers = []
        self.status = status
        self.hsts = int(config.hsts)
        self.gzipEnabled = config.gzip
        self.accessLog = accessLog or AccessLog(config.access_log, reactor)
        self.active = 0
        #: The static fast path (L{appnet.web.fastpath}), if on.
        self.fast: FastStatic | None = None
        status.gauge("http", "requests_active", lambda: float(self.active))

    def acceptableProtocols(self) -> list[bytes]:
        """HTTP/1.1 only: ALPN must not offer h2 to this channel."""
        return [b"http/1.1"]

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        channel.maxBodySize = self.config.max_body_size
        channel.totalHeadersSize = self.config.max_header_size
        channel.MAX_LENGTH = self.config.max_header_size
        channel.requestTimeout = self.config.request_timeout or None
        return channel

    def startFactory(self) -> None:
        super().startFactory()
        self.accessLog.open()

    def stopFactory(self) -> None:
        super().stopFactory()
        self.accessLog.close()

    def getResourceFor(self, request: Any) -> IResource:
        hosts = request.requestHeaders.getRawHeaders(b"host", [])
        if request.clientproto == b"HTTP/1.1" and not hosts:
            # RFC 9112 3.2: a 1.1 request without Host is answered with 400.
            return ErrorResource(400, "The Host header is missing.")
        if len(hosts) > 1 or any(b"," in host for host in hosts):
            # RFC 9112 3.2: so is one with more than one Host field line.
            return ErrorResource(400, "There is more than one Host header.")
        if not request.uri.isascii():
            # A URI is ASCII (RFC 3986 2): clients percent-encode the rest.
            # Twisted's own error pages would fail to quote such a target.
            return ErrorResource(400, "The request target is not ASCII.")
        resource: IResource = super().getResourceFor(request)
        return resource

    def requestStarted(self, request: WebRequest) -> None:
        """Count a request whose head has arrived."""
        self.status.increment("http", "requests")
        self.active += 1

    def requestEnded(self, request: WebRequest) -> None:
        """A request finished or its connection was lost."""
        self.active -= 1

    def log(self, request: Any) -> None:
        """Count the response by status class and write the access log."""
        self._count(request.code)
        line = combinedLine(
            client=hostOf(request.getClientAddress()),
            user=request.logUser,
            when=self._logDateTime or datetimeToLogString(self.reactor.seconds()),
            requestLine=b"%s %s %s"
            % (request.method, request.uri, request.clientproto),
            code=request.code,
            length=request.sentLength,
            referer=request.getHeader(b"referer"),
            agent=request.getHeader(b"user-agent"),
        )
        self.accessLog.write(line)
        for observer in self.observers:
            observer(request)

    def rejected(self, channel: WebChannel, code: int, length: int) -> None:
        """Count and log a request the channel refused before processing."""
        self._count(code)
        command = getattr(channel, "_command", b"-")
        path = getattr(channel, "_path", b"")
        version = getattr(channel, "_version", b"")
        requestLine = b" ".join(p for p in (command, path, version) if p)
        headers = channel.requests[-1].requestHeaders if channel.requests else None
        line = combinedLine(
            client=hostOf(channel.transport.getPeer()),  # type: ignore[union-attr]
            user="",
            when=self._logDateTime or datetimeToLogString(self.reactor.seconds()),
            requestLine=requestLine[:512],
            code=code,
            length=length,
            referer=headers.getRawHeaders(b"referer", [None])[0] if headers else None,
            agent=headers.getRawHeaders(b"user-agent", [None])[0] if headers else None,
        )
        self.accessLog.write(line)

    def _count(self, code: int) -> None:
        self.status.increment("http", f"responses_{code // 100}xx")

    def fastAnswered(self, code: int) -> None:
        """Count a request the fast path answered."""
        self.status.incrementAll(
            ((("http", "requests"), 1), (("http", f"responses_{code // 100}xx"), 1))
        )


class WebRoot(Resource):
    """
    The root of the tree: named children (applications, status, login)
    first, everything else from the static files.
    """

    def __init__(self, static: StaticFiles) -> None:
        super().__init__()
        self.static = static

    def getChild(self, path: bytes, request: Request) -> IResource:
        segments = [path] + list(request.postpath or [])
        query = b""
        if b"?" in request.uri:
            query = b"?" + request.uri.split(b"?", 1)[1]
        return self.static.resolveLater(segments, query)

    def render(self, request: Request) -> bytes | int:
        # Only reached for an empty path (a proxy's "GET  HTTP/1.1").
        resource = self.static.resolve([b""])
        result: bytes | int = resource.render(request)
        return result


@frozen
class WebContext:
    """
    What applications mounted on the web server receive.

    @ivar stack: the shared L{StackContext} (store, auth, config, reactor).
    @ivar config: the C{[http]} settings.
    @ivar sessions: cookie sessions (L{SessionManager}).
    @ivar login: checks passwords and starts sessions (L{LoginService}).
    @ivar root: the root resource, to attach children to.
    """

    stack: StackContext
    config: HTTPConfig
    sessions: SessionManager
    login: LoginService
    root: WebRoot

    def gate(self, resource: IResource, json: bool = False) -> SessionGate:
        """
        Put C{resource} behind a login: requests without a valid session
        are redirected to C{/login} (or get a JSON 401), unsafe methods
        without the session's CSRF token get 403.
        """
        return SessionGate(resource, self.sessions, json=json)


class SessionPurger(Service):
    """
    Deletes expired sessions now and then.
    """

    _log = Logger()

    def __init__(
        self, sessions: SessionManager, clock: IReactorTime, interval: float = 600.0
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._interval = interval
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        loop = LoopingCall(self._purge)
        loop.clock = self._clock
        self._loop = loop
        loop.start(self._interval, now=True).addErrback(
            lambda f: self._log.failure("purging sessions", f)
        )

    async def _purgeAsync(self) -> None:
        count = await self._sessions.purge()
        if count:
            self._log.info("Purged {count} expired web sessions", count=count)

    def _purge(self) -> Any:
        return Deferred.fromCoroutine(self._purgeAsync()).addErrback(
            lambda f: self._log.failure("purging sessions", f)
        )

    def stopService(self) -> Any:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None


def _load(path: str) -> Callable[[WebContext], Mapping[bytes, IResource]]:
    module, _, name = path.partition(":")
    mount: Callable[[WebContext], Mapping[bytes, IResource]] = getattr(
        importlib.import_module(module), name
    )
    return mount


def _allowed(networks: Sequence[str]) -> list[Any]:
    return [ipaddress.ip_network(n) for n in networks]


Mount = Callable[[WebContext], Mapping[bytes, IResource]]


def webBuilder(
    mounts: Sequence[str | Mount] | None = None,
) -> Callable[[StackContext], Component]:
    """
    A builder for the web component with these applications mounted
    (default: L{MOUNTS}).
    """

    def build(ctx: StackContext) -> Component:
        return buildWeb(ctx, MOUNTS if mounts is None else mounts)

    return build


#: Threads for static files, the proxy's cache and its name look-ups: a
#: pool of the web component's own, so a slow download's trip never
#: delays the store's fsyncs (nor uses the reactor's default pool).
WEB_THREADS = 8


def webThreads(reactor: Any) -> tuple[InThread, list[PoolService]]:
    """
    The web component's blocking-call runner and the pool behind it (to
    start and stop with the stack); inline, with no pool, on a reactor
    without threads (a memory reactor in a unit test).
    """
    if not IReactorFromThreads.providedBy(reactor):
        return inline, []
    pool = PoolService(reactor, "appnet-web", WEB_THREADS)
    return pool.run, [pool]


def buildWeb(
    ctx: StackContext, mounts: Sequence[str | Mount] | None = None
) -> Component:
    """
    The web component: the site behind C{http.listen}, and the purger of
    expired sessions.
    """
    config = ctx.config.http
    rootDir = config.root or ctx.dataDir.www.path
    inThread, pools = webThreads(ctx.reactor)
    static = StaticFiles(
        rootDir,
        listing=config.listing,
        gzipTypes=tuple(config.gzip_types) if config.gzip else (),
        runner=inThread,
    )
    root = WebRoot(static)
    sessions = SessionManager(
        ctx.store.sessions, ctx.store.users, ctx.reactor, config.session_lifetime
    )
    login = LoginService(ctx.auth, sessions, ctx.status)
    web = WebContext(ctx, config, sessions, login, root)
    allow = _allowed(config.status_allow)
    root.putChild(b"status", StatusResource(ctx.status, ctx.addresses, allow))
    root.putChild(b"metrics", MetricsResource(ctx.status, allow))
    root.putChild(b"login", LoginResource(login))
    root.putChild(b"logout", LogoutResource(sessions))
    for mount in MOUNTS if mounts is None else mounts:
        function = _load(mount) if isinstance(mount, str) else mount
        for name, resource in function(web).items():
            root.putChild(name, resource)
    siteRoot, proxyServices = proxyRoot(ctx, config, root, inThread)
    # Timers (idle and request timeouts, the access log's) on the stack's
    # clock: the reactor, or a test's virtual clock.
    site = WebSite(siteRoot, config=config, status=ctx.status, reactor=ctx.clock)
    site.web = web
    if config.file_cache_size and config.file_cache_max_file:
        files = FileCache(
            static,
            ctx.reactor,
            inThread,
            maxBytes=config.file_cache_size,
            maxFileSize=config.file_cache_max_file,
            valid=config.file_cache_valid,
        )
        site.fast = FastStatic(
            files,
            ctx.reactor,
            lambda name: name in root.children,
            SERVER,
            site.fastAnswered,
            site.accessLog.write if site.accessLog.enabled else None,
        )
    return Component(
        listening=[
            Listening(
                "http",
                site,
                refusal=(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n"
                ),
                mask=HTTP_MASK,
            )
        ],
        services=[*pools, *proxyServices],
        once=[SessionPurger(sessions, ctx.reactor)],
    )


#: What is secret in an HTTP transcript: credentials and cookies in
#: headers, and request bodies (a login form's password).
HTTP_MASK = MaskRule(
    secretCommands={
        b"AUTHORIZATION:": 1,
        b"PROXY-AUTHORIZATION:": 1,
        b"COOKIE:": 0,
        b"X-CSRF-TOKEN:": 0,
    },
    serverSecrets={b"SET-COOKIE:": 0},
    httpBodies=True,
)
