"""
Tests for the HTTP server's connection handling: persistence, limits and
their status codes, the request timeout, HSTS, the access log, counters
and the masked transcript.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource

from appnet.trace import Transcript
from appnet.web.server import HTTP_MASK, combinedLine, webThreads
from tests.web.helpers import Harness, harness, raw


class PersistenceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.web: Harness = harness(self)
        self.web.write("a.txt", b"hello")

    def test_http11KeepAlive(self) -> None:
        """HTTP/1.1 connections stay open across requests."""
        c = self.web.connect()
        c.send(raw("GET", "/a.txt"))
        c.send(raw("GET", "/a.txt"))
        self.assertEqual([r.body for r in c.responses()], [b"hello", b"hello"])
        self.assertFalse(c.closed)

    def test_pipelined(self) -> None:
        """Pipelined requests are answered in order."""
        c = self.web.connect()
        c.send(raw("GET", "/a.txt") + raw("GET", "/nope") + raw("HEAD", "/a.txt"))
        self.assertEqual(
            [r.status for r in c.responses(["GET", "GET", "HEAD"])], [200, 404, 200]
        )

    def test_connectionCloseList(self) -> None:
        """'Connection: keep-alive, close' closes (a list, not one token)."""
        c = self.web.connect()
        c.send(raw("GET", "/a.txt", {"Connection": "keep-alive,close"}))
        self.assertEqual(c.responses()[0].status, 200)
        self.assertTrue(c.closed)

    def test_http10KeepAlive(self) -> None:
        """HTTP/1.0 with keep-alive stays open when the response has a length."""
        c = self.web.connect()
        for _ in range(2):
            c.send(
                raw("GET", "/a.txt", {"Connection": "keep-alive"}, version="HTTP/1.0")
            )
        responses = c.responses()
        self.assertEqual([r.body for r in responses], [b"hello", b"hello"])
        self.assertEqual(responses[0].header("connection"), "keep-alive")
        self.assertFalse(c.closed)

    def test_http10Close(self) -> None:
        """HTTP/1.0 without keep-alive closes after the response."""
        c = self.web.connect()
        c.send(raw("GET", "/a.txt", version="HTTP/1.0"))
        self.assertEqual(c.responses()[0].body, b"hello")
        self.assertTrue(c.closed)

    def test_http10KeepAliveUnknownLength(self) -> None:
        """
        An HTTP/1.0 keep-alive response without a length (gzip on the fly)
        is ended by closing the connection.
        """
        self.web.write("t.txt", b"text " * 200)
        c = self.web.connect()
        c.send(
            raw(
                "GET",
                "/t.txt",
                {"Connection": "keep-alive", "Accept-Encoding": "gzip"},
                version="HTTP/1.0",
            )
        )
        self.assertTrue(c.closed)
        self.assertIsNone(c.responses()[0].header("connection"))


class LimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.web: Harness = harness(
            self, {"max_header_size": 2048, "max_body_size": 1000}
        )

    def test_headerTooLarge(self) -> None:
        """Header fields over the limit get 431 and the connection closes."""
        c = self.web.connect()
        c.send(raw("GET", "/", {f"X-{i}": "v" * 100 for i in range(30)}))
        r = c.responses()[0]
        self.assertEqual(r.status, 431)
        self.assertEqual(r.header("connection"), "close")
        self.assertTrue(c.closed)

    def test_oneHugeHeaderLine(self) -> None:
        """One header line longer than the limit also gets 431."""
        c = self.web.connect()
        c.send(b"GET / HTTP/1.1\r\nX: " + b"v" * 5000)
        self.assertEqual(c.responses()[0].status, 431)

    def test_requestLineTooLong(self) -> None:
        """A request line over the limit gets 414."""
        c = self.web.connect()
        c.send(raw("GET", "/" + "a" * 3000))
        self.assertEqual(c.responses()[0].status, 414)
        c = self.web.connect()
        c.send(b"GET /" + b"a" * 5000)
        self.assertEqual(c.responses()[0].status, 414)

    def test_bodyTooLarge(self) -> None:
        """A declared body over the limit gets 413 before it is sent."""
        c = self.web.connect()
        c.send(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        value = c.transport.value()
        self.assertNotIn(b"100 Continue", value)
        self.assertEqual(c.responses()[0].status, 413)
        c.send(b"x" * 5000)
        self.assertEqual(c.transport.value(), value)

    def test_chunkedBodyTooLarge(self) -> None:
        """A chunked body growing over the limit gets 413."""
        c = self.web.connect()
        c.send(b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            c.send(b"190\r\n" + b"x" * 400 + b"\r\n")
        self.assertEqual(c.responses()[0].status, 413)
        self.assertTrue(c.closed)

    def test_bodyWithinLimit(self) -> None:
        """A body within the limit is processed."""
        r = self.web.request(
            "POST",
            "/login",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"username=a&password=b",
        )
        self.assertEqual(r.status, 403)  # no CSRF token, but it was read

    def test_malformed(self) -> None:
        """A malformed header gets a 400 page."""
        c = self.web.connect()
        c.send(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
        r = c.responses()[0]
        self.assertEqual(r.status, 400)
        self.assertIn(b"400", r.body)

    def test_hostRequired(self) -> None:
        """An HTTP/1.1 request without Host gets 400; HTTP/1.0 need not send it."""
        c = self.web.connect()
        c.send(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(c.responses()[0].status, 400)
        c = self.web.connect()
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(c.responses()[0].status, 200)

    def test_contentLengthTooManyDigits(self) -> None:
        """
        A Content-Length of thousands of digits gets 413; Twisted's parser
        made int() raise out of dataReceived (found by
        tests.robustness.test_http).
        """
        web = harness(self)  # headers up to the default 16 KiB
        for digits in (b"1" + b"0" * 4400, b"9" * 21):
            c = web.connect()
            c.send(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: " + digits)
            c.send(b"\r\n\r\nxyz")
            self.assertEqual(c.responses()[0].status, 413)
            self.assertTrue(c.closed)

    def test_rejectedHEADHasNoBody(self) -> None:
        """
        A HEAD request refused by the channel (here a header value with a
        bare CR) gets the status and headers without the error page.
        """
        c = self.web.connect()
        c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n")
        [r] = c.responses(["HEAD"])
        self.assertEqual(r.status, 400)
        self.assertTrue(c.transport.value().endswith(b"\r\n\r\n"))

    def test_rejectionsCounted(self) -> None:
        """Refused requests count as 4xx responses and are logged."""
        c = self.web.connect()
        c.send(raw("GET", "/" + "a" * 3000))
        self.assertEqual(self.web.status.counter("http", "responses_4xx"), 1)


class TimeoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.web: Harness = harness(self, {"request_timeout": 10, "idle_timeout": 100})
        self.web.write("a.txt", b"hello")

    def test_slowHeaders(self) -> None:
        """Headers still incomplete after request_timeout get 408."""
        c = self.web.connect()
        c.send(b"GET /a.txt HTTP/1.1\r\n")
        for _ in range(9):
            self.web.clock.advance(1)
            c.send(b"X: y\r\n")
        self.assertEqual(c.transport.value(), b"")
        self.web.clock.advance(1.5)
        self.assertEqual(c.responses()[0].status, 408)
        self.assertTrue(c.closed)

    def test_idleNotTimedOut(self) -> None:
        """An idle kept-alive connection is not a slow request."""
        c = self.web.connect()
        c.send(raw("GET", "/a.txt"))
        self.web.clock.advance(50)
        c.send(raw("GET", "/a.txt"))
        self.assertEqual([r.status for r in c.responses()], [200, 200])

    def test_timerPerRequest(self) -> None:
        """Each request gets the whole allowance from its first byte."""
        c = self.web.connect()
        c.send(raw("GET", "/a.txt"))
        self.web.clock.advance(8)
        c.send(b"GET /a.txt HTTP/1.1\r\n")
        self.web.clock.advance(8)
        c.send(b"Host: x\r\n\r\n")
        self.assertEqual([r.status for r in c.responses()], [200, 200])

    def test_idleTimeout(self) -> None:
        """A connection idle longer than idle_timeout is closed."""
        c = self.web.connect()
        c.send(raw("GET", "/a.txt"))
        self.web.clock.advance(101)
        self.assertTrue(c.closed)


class HeaderTests(SynchronousTestCase):
    def test_hsts(self) -> None:
        """HSTS is sent over TLS only, when configured."""
        web = harness(self, {"hsts": "365d"})
        web.write("a.txt", b"x")
        secure = web.request("GET", "/a.txt", secure=True)
        self.assertEqual(secure.header("strict-transport-security"), "max-age=31536000")
        self.assertIsNone(
            web.request("GET", "/a.txt").header("strict-transport-security")
        )
        off = harness(self)
        off.write("a.txt", b"x")
        r = off.request("GET", "/a.txt", secure=True)
        self.assertIsNone(r.header("strict-transport-security"))


class AccessLogTests(SynchronousTestCase):
    def test_file(self) -> None:
        """Each request is one combined-format line in the access log file."""
        path = self.mktemp()
        web = harness(self, {"access_log": path})
        web.write("a.txt", b"hello")
        web.request("GET", "/a.txt?q=1", {"Referer": "http://r/", "User-Agent": 'x"y'})
        web.request("GET", "/missing")
        web.site.stopFactory()
        with open(path) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2)
        pattern = (
            r"^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "
            r'"GET /a\.txt\?q=1 HTTP/1\.1" 200 5 "http://r/" "x\\x22y"$'
        )
        self.assertRegex(lines[0], pattern)
        self.assertIn('"GET /missing HTTP/1.1" 404 ', lines[1])

    def test_daemonLog(self) -> None:
        """By default the lines go to the daemon's log."""
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        web = harness(self)
        web.request("GET", "/nope")
        lines = [e["line"] for e in events if "line" in e]
        self.assertTrue(any('"GET /nope HTTP/1.1" 404' in str(x) for x in lines))

    def test_off(self) -> None:
        """'off' logs nothing."""
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        web = harness(self, {"access_log": "off"})
        web.request("GET", "/nope")
        self.assertFalse([e for e in events if "line" in e])

    def test_escaping(self) -> None:
        """Control bytes and non-ASCII in the request line are escaped."""
        line = combinedLine(
            client="::1",
            user="alice@example.org",
            when="[x]",
            requestLine=b"GET /\xc3\xa9\x1b HTTP/1.1",
            code=200,
            length=0,
            referer=None,
            agent=None,
        )
        self.assertEqual(
            line,
            '::1 - alice@example.org [x] "GET /\\xC3\\xA9\\x1B HTTP/1.1" 200 - "-" "-"',
        )


class CounterTests(SynchronousTestCase):
    def test_counters(self) -> None:
        """Requests and responses by status class are counted."""
        web = harness(self)
        web.write("a.txt", b"x")
        web.request("GET", "/a.txt")
        web.request("GET", "/a.txt")
        web.request("GET", "/nope")
        status = web.status
        self.assertEqual(status.counter("http", "requests"), 3)
        self.assertEqual(status.counter("http", "responses_2xx"), 2)
        self.assertEqual(status.counter("http", "responses_4xx"), 1)
        self.assertEqual(status.snapshot()["http"]["requests_active"], 0)


class TranscriptTests(SynchronousTestCase):
    def test_masked(self) -> None:
        """
        The HTTP transcript masks credentials, cookies and request bodies
        (a login form's password) but shows the rest.
        """
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        t = Transcript("http", "127.0.0.1:5", HTTP_MASK)
        body = b"username=alice&password=hunter2-secret"
        t.fromClient(
            b"POST /login HTTP/1.1\r\nAuthorization: Basic c2VjcmV0\r\n"
            b"Cookie: appnet_session=tok-secret\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        t.fromServer(
            b"HTTP/1.1 303 See Other\r\nSet-Cookie: appnet_session=new-secret\r\n\r\n"
        )
        t.fromClient(b"GET / HTTP/1.1\r\n\r\n")
        lines = [str(e.get("line")) for e in events if e.get("service") == "http"]
        text = "\n".join(lines)
        self.assertNotIn("secret", text)
        self.assertNotIn("hunter2", text)
        self.assertIn("POST /login HTTP/1.1", lines)
        self.assertIn("Authorization: Basic ********", lines)
        self.assertIn("Cookie: ********", lines)
        self.assertIn("Set-Cookie: ********", lines)
        self.assertIn(f"<body, {len(body)} bytes>", lines)
        self.assertIn("GET / HTTP/1.1", lines)
        self.assertTrue(re.search("Content-Length: \\d+", text))


class ALPNTests(SynchronousTestCase):
    def test_guardedFactoryOffersHTTP11(self) -> None:
        """
        Behind the listener wrapper the site still offers http/1.1 over
        ALPN (else TLS clients offering ALPN get a fatal alert).
        """
        from twisted.internet.interfaces import IProtocolNegotiationFactory

        from appnet.listen import GuardedFactory

        web = harness(self)
        guarded = GuardedFactory(web.site, "http", web.status, 10)
        self.assertTrue(IProtocolNegotiationFactory.providedBy(guarded))
        self.assertEqual(guarded.acceptableProtocols(), [b"http/1.1"])


class _Echo(Resource):
    """Records each POST's parsed arguments and body."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[dict[bytes, list[bytes]], bytes]] = []

    def render_POST(self, request: Any) -> bytes:
        self.seen.append((dict(request.args), request.content.read()))
        return b"ok"


def echo(web: Harness) -> list[tuple[dict[bytes, list[bytes]], bytes]]:
    """Serve an echo at C{/echo}; what it sees lands in the list returned."""
    resource = _Echo()
    web.web.root.putChild(b"echo", resource)
    return resource.seen


class FormBodyTests(SynchronousTestCase):
    def test_multipartLeftUnparsed(self) -> None:
        """
        A multipart/form-data body reaches the resource unparsed (Twisted
        would parse it into args on the reactor thread, losing file
        names); URL-encoded forms are still parsed.
        """
        web = harness(self)
        seen = echo(web)
        form = (
            b'--b\r\nContent-Disposition: form-data; name="f"; filename="a.txt"'
            b"\r\n\r\nabc\r\n--b--\r\n"
        )
        web.request(
            "POST",
            "/echo?q=1",
            {"Content-Type": "multipart/form-data; boundary=b"},
            form,
        )
        web.request(
            "POST",
            "/echo",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"a=1",
        )
        self.assertEqual(seen, [({b"q": [b"1"]}, form), ({b"a": [b"1"]}, b"a=1")])

    def test_unreadableContentType(self) -> None:
        """
        A Content-Type the email package cannot read ("x;X+K*" makes it
        raise IndexError, which Twisted's form parsing let escape from
        dataReceived) leaves the body unparsed, urlencoded or not (found
        by tests.robustness.test_http).
        """
        web = harness(self)
        seen = echo(web)
        for contentType in ("x;X+K*", "application/x-www-form-urlencoded;X+K*"):
            r = web.request("POST", "/echo", {"Content-Type": contentType}, b"a=1")
            self.assertEqual(r.status, 200)
        self.assertEqual(seen, [({}, b"a=1"), ({}, b"a=1")])


class VersionAndAPIErrorTests(SynchronousTestCase):
    """
    The channel's own reading of the request line: 505 for an HTTP
    version it does not serve, and JSON refusals under C{/api}. These
    pin behaviour Twisted gives no public hook for (it answers 400 to
    any version but 1.0 and 1.1, and keeps the request line private).
    """

    def setUp(self) -> None:
        self.web: Harness = harness(self, {"max_body_size": 1000})
        self.web.write("a.txt", b"hello")

    def test_unsupportedVersion(self) -> None:
        """GET / HTTP/9.9 (or HTTP/2.0) gets 505 and the connection closes."""
        for version in (b"HTTP/9.9", b"HTTP/2.0", b"HTTP/0.9"):
            c = self.web.connect()
            c.send(b"GET /a.txt " + version + b"\r\nHost: x\r\n\r\n")
            r = c.responses()[0]
            self.assertEqual(r.status, 505, version)
            self.assertIn(b"505", r.body)
            self.assertTrue(c.closed)

    def test_malformedVersionStill400(self) -> None:
        """A version that is not HTTP/d.d at all is a malformed request: 400."""
        c = self.web.connect()
        c.send(b"GET /a.txt HTTX/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(c.responses()[0].status, 400)

    def test_servedVersions(self) -> None:
        """HTTP/1.0 and HTTP/1.1 are served as before."""
        for version in ("HTTP/1.0", "HTTP/1.1"):
            r = self.web.connect()
            r.send(raw("GET", "/a.txt", version=version))
            self.assertEqual(r.responses()[0].body, b"hello")

    def test_apiBodyTooLargeIsJSON(self) -> None:
        """
        A body over the limit sent to /api gets its 413 as a JSON object,
        declared or chunked; elsewhere the HTML page.
        """
        c = self.web.connect()
        c.send(b"POST /api/v1/send HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        r = c.responses()[0]
        self.assertEqual(
            (r.status, r.header("content-type")), (413, "application/json")
        )
        self.assertEqual(
            json.loads(r.body), {"error": "The request body is too large."}
        )
        c = self.web.connect()
        c.send(
            b"POST /api/v1/drafts HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(3):
            c.send(b"190\r\n" + b"x" * 400 + b"\r\n")
        r = c.responses()[0]
        self.assertEqual(
            (r.status, r.header("content-type")), (413, "application/json")
        )
        c = self.web.connect()
        c.send(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        r = c.responses()[0]
        self.assertEqual(r.status, 413)
        self.assertTrue(r.header("content-type").startswith("text/html"))

    def test_apiVersionIsJSON(self) -> None:
        """A 505 for an /api target (absolute form too) is JSON."""
        for target in (b"/api/v1/session", b"http://x/api/v1/folders?a=1"):
            c = self.web.connect()
            c.send(b"GET " + target + b" HTTP/9.9\r\nHost: x\r\n\r\n")
            r = c.responses()[0]
            self.assertEqual(
                (r.status, r.header("content-type")), (505, "application/json")
            )
            self.assertIn("error", json.loads(r.body))

    def test_apiMalformedIsJSON(self) -> None:
        """A malformed request to /api gets its 400 as JSON."""
        c = self.web.connect()
        c.send(b"GET /api/v1/session HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n")
        r = c.responses()[0]
        self.assertEqual(
            (r.status, r.header("content-type")), (400, "application/json")
        )
        self.assertEqual(json.loads(r.body), {"error": "The request is malformed."})

    def test_pipelinedAfterAPIRequest(self) -> None:
        """
        The request line read for one request does not colour the next: a
        static request refused after an API one gets the HTML page.
        """
        c = self.web.connect()
        c.send(raw("GET", "/api/v1/nothing") + raw("GET", "/a.txt", version="HTTP/9.9"))
        first, second = c.responses(["GET", "GET"])
        self.assertEqual(
            (first.status, first.header("content-type")), (404, "application/json")
        )
        self.assertEqual(second.status, 505)
        self.assertTrue(second.header("content-type").startswith("text/html"))


class WebThreadsTests(TestCase):
    """
    L{webThreads}: the web component's blocking calls run in a pool of its
    own, not the reactor's default pool nor the store's file threads.
    """

    def test_ownPool(self) -> Deferred[None]:
        """With a real reactor, calls run in C{appnet-web} threads."""
        from twisted.internet import reactor

        inThread, pools = webThreads(reactor)
        [pool] = pools
        pool.startService()
        self.addCleanup(pool.stopService)
        d = inThread(lambda: threading.current_thread().name)
        return d.addCallback(lambda name: self.assertIn("appnet-web", name))

    def test_memoryReactor(self) -> None:
        """A reactor without threads gets calls run at once, and no pool."""
        inThread, pools = webThreads(MemoryReactorClock())
        self.assertEqual(pools, [])
        self.assertEqual(self.successResultOf(inThread(lambda: 7)), 7)
