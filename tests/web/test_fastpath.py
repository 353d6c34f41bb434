"""
Tests for L{appnet.web.fastpath}: the static fast path answers as the full
path does (status, headers but Date, body, counters, access log), keeps
pipelined responses in order, and leaves everything unusual to the full
path.
"""

from __future__ import annotations

import os
import re
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from appnet.web.fastpath import FastStatic
from tests.web.helpers import Harness, Response, harness, parseResponses, raw

TEXT = b"".join(b"line %04d of a compressible text file\n" % i for i in range(100))


def corpus(etag: str, modified: str) -> list[tuple[str, bytes]]:
    """(method, request bytes) for every kind of request."""
    r: list[tuple[str, bytes]] = []
    for method in ("GET", "HEAD"):
        for path in (
            "/a.txt",
            "/small.txt",
            "/img.png",
            "/",
            "/sub/b.css",
            "/big.bin",
            "/missing.txt",
            "/sub",
            "/sub/",
            "/.env",
            "/a.txt?x=1",
            "/%61.txt",
            "/caf\xe9.txt",
            "/status",
            "//a.txt",
        ):
            r.append((method, raw(method, path)))
        r.append((method, raw(method, "/a.txt", {"Accept-Encoding": "gzip"})))
        r.append((method, raw(method, "/img.png", {"Accept-Encoding": "gzip"})))
        r.append((method, raw(method, "/small.txt", {"Accept-Encoding": "gzip"})))
        r.append((method, raw(method, "/small.txt", {"If-None-Match": etag})))
        r.append((method, raw(method, "/small.txt", {"If-None-Match": '"nope"'})))
        r.append((method, raw(method, "/small.txt", {"If-None-Match": "*"})))
        r.append((method, raw(method, "/small.txt", {"If-Modified-Since": modified})))
        r.append(
            (
                method,
                raw(
                    method,
                    "/small.txt",
                    {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
                ),
            )
        )
        r.append((method, raw(method, "/small.txt", {"If-Match": etag})))
        r.append((method, raw(method, "/a.txt", {"Range": "bytes=0-9"})))
        r.append((method, raw(method, "/a.txt", {"User-Agent": "t/1", "Referer": "x"})))
        r.append((method, raw(method, "/a.txt", {"X-Odd": "1"})))
        r.append((method, raw(method, "/a.txt", {"Connection": "keep-alive"})))
        r.append((method, raw(method, "/a.txt", version="HTTP/1.0")))
        r.append(
            (
                method,
                raw(method, "/a.txt", {"Connection": "keep-alive"}, version="HTTP/1.0"),
            )
        )
        r.append(
            (method, f"{method} /a.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".encode())
        )
        r.append((method, f"{method} /a.txt HTTP/1.1\r\n\r\n".encode()))
        r.append((method, f"{method} /a.txt HTTP/1.1\r\nHost:  a \r\n\r\n".encode()))
    r.append(("POST", raw("POST", "/a.txt", body=b"x=1")))
    r.append(("OPTIONS", raw("OPTIONS", "/a.txt")))
    return r


def _undated(response: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*", b"", response)


class DifferentialTests(SynchronousTestCase):
    """
    The same requests to a site with the fast path and to one without it,
    over one web root, give the same responses.
    """

    def setUp(self) -> None:
        root = self.mktemp()
        os.makedirs(os.path.join(root, "sub"))
        files = {
            "a.txt": TEXT,
            "small.txt": b"tiny",
            "img.png": b"\x89PNG" + bytes(2000),
            "index.html": b"<p>home</p>",
            "sub/b.css": b"body{}",
            "big.bin": os.urandom(300 * 1024),
            ".env": b"SECRET=1",
            "caf\xe9.txt": b"cafe",
        }
        for name, data in files.items():
            with open(os.path.join(root, name), "wb") as f:
                f.write(data)
        self.logs = self.mktemp()
        os.makedirs(self.logs)
        self.fast = self.site(root, "fast", {})
        self.full = self.site(root, "full", {"file_cache_size": 0})
        assert self.fast.site.fast is not None
        self.assertIsNone(self.full.site.fast)
        first = self.full.request("GET", "/small.txt")
        self.full.site.status.increment("http", "requests", -1)
        self.full.site.status.increment("http", "responses_2xx", -1)
        self.etag = first.header("etag") or ""
        self.modified = first.header("last-modified") or ""

    def site(self, root: str, name: str, http: dict[str, object]) -> Harness:
        log = os.path.join(self.logs, name + ".log")
        return harness(self, {"root": root, "access_log": log, **http})

    def log(self, web: Harness) -> list[str]:
        web.site.accessLog.flush()
        with open(web.site.accessLog.target) as f:
            return [re.sub(r"\[[^]]*\]", "[]", line) for line in f]

    def assertSame(self, got: list[Response], expected: list[Response]) -> None:
        self.assertEqual(len(got), len(expected))
        for number, (a, b) in enumerate(zip(got, expected, strict=True)):
            self.assertEqual(a.status, b.status, f"response {number}")
            self.assertEqual(
                {k: v for k, v in a.headers.items() if k != "date"},
                {k: v for k, v in b.headers.items() if k != "date"},
                f"response {number}",
            )
            self.assertEqual(a.body, b.body, f"response {number}")

    def test_oneByOne(self) -> None:
        """
        Each request of the corpus on its own connection, twice (the
        second time from the cache): the same responses, counters and
        access log lines.
        """
        for _ in range(2):
            for method, data in corpus(self.etag, self.modified):
                answers = []
                for web in (self.fast, self.full):
                    connection = web.connect()
                    connection.send(data)
                    answers.append(connection.transport.value())
                try:
                    parsed = [parseResponses(a, [method]) for a in answers]
                except Exception:
                    # A response http.client cannot read (a 400 to HEAD
                    # with a body): compare the bytes.
                    self.assertEqual(*[_undated(a) for a in answers])
                    continue
                self.assertSame(parsed[0], parsed[1])
        self.assertEqual(
            self.fast.status.snapshot()["http"], self.full.status.snapshot()["http"]
        )
        # The full side's first line is setUp's request.
        self.assertEqual(self.log(self.fast), self.log(self.full)[1:])
        assert isinstance(self.fast.site.fast, FastStatic)
        self.assertGreater(len(self.fast.site.fast.cache), 3)

    def test_pipelined(self) -> None:
        """
        The whole corpus but the requests that close the connection (a
        400 for a missing or doubled Host or a non-ASCII target, HTTP/1.0),
        pipelined on one connection: answered in order, the same as the
        full path does, and the fast path takes over again after the full
        path answered a request.
        """
        requests = [
            (m, d)
            for m, d in corpus(self.etag, self.modified)
            if b"HTTP/1.0" not in d
            and b"Host: a\r\nHost" not in d
            and b"Host" in d
            and b"caf" not in d
        ]
        requests = [r for r in requests if r[0] in ("GET", "HEAD")]
        methods = [m for m, _ in requests] * 2
        data = b"".join(d for _, d in requests) * 2
        out = []
        for web in (self.fast, self.full):
            connection = web.connect()
            connection.send(data)
            out.append(parseResponses(connection.transport.value(), methods))
        self.assertSame(out[0], out[1])
        # One by one on a kept-alive connection: after a full-path answer,
        # the next plain request is answered fast again.
        connection = self.fast.connect()
        for _, request in requests:
            connection.send(request)
        self.assertEqual(
            len(parseResponses(connection.transport.value(), [m for m, _ in requests])),
            len(requests),
        )
        self.assertTrue(connection.protocol.fastIdle)

    def test_fresh(self) -> None:
        """
        A changed file is served changed once the revalidation interval
        has passed; until then the cached copy is.
        """
        self.assertEqual(self.fast.request("GET", "/small.txt").body, b"tiny")
        path = os.path.join(self.fast.root, "small.txt")
        with open(path, "wb") as f:
            f.write(b"changed")
        self.assertEqual(self.fast.request("GET", "/small.txt").body, b"tiny")
        self.fast.clock.advance(self.fast.site.config.file_cache_valid)
        self.assertEqual(self.fast.request("GET", "/small.txt").body, b"changed")
        os.remove(path)
        self.fast.clock.advance(self.fast.site.config.file_cache_valid)
        self.assertEqual(self.fast.request("GET", "/small.txt").status, 404)

    def test_servedFast(self) -> None:
        """
        Once cached, a plain request is answered without twisted.web's
        resource traversal; a request it cannot answer still gets it.
        """
        self.fast.request("GET", "/a.txt")
        traversed: list[bytes] = []
        original = self.fast.site.getResourceFor

        def spy(request: object) -> object:
            traversed.append(request.uri)  # type: ignore[attr-defined]
            return original(request)

        self.fast.site.getResourceFor = spy  # type: ignore[method-assign]
        self.assertEqual(self.fast.request("GET", "/a.txt").body, TEXT)
        self.assertEqual(traversed, [])
        self.fast.request("GET", "/a.txt", {"Range": "bytes=0-1"})
        self.assertEqual(traversed, [b"/a.txt"])


class AccessLogTests(SynchronousTestCase):
    """
    The access log file is written in batches, and whole after a stop.
    """

    def test_buffered(self) -> None:
        """
        Lines wait for a second (or 64 KiB) and are all written when the
        site stops.
        """
        log = os.path.abspath(self.mktemp())
        web = harness(self, {"access_log": log})
        web.write("a.txt", b"a")
        for _ in range(3):
            web.request("GET", "/a.txt")
        with open(log) as f:
            self.assertEqual(f.read(), "")
        web.clock.advance(1)
        with open(log) as f:
            self.assertEqual(len(f.readlines()), 3)
        web.request("GET", "/a.txt")
        web.site.stopFactory()
        with open(log) as f:
            self.assertEqual(len(f.readlines()), 4)


class OffReactorTests(SynchronousTestCase):
    """
    The full static path does its file-system work through the runner
    (threads in a real server), not on the reactor thread.
    """

    def test_largeFile(self) -> None:
        """
        Resolving, opening and reading a file too large for the cache all
        go through the runner.
        """
        web = harness(self, {"file_cache_max_file": "1K"})
        data = os.urandom(600 * 1024)
        web.write("big.bin", data)
        ran: list[str] = []
        static = web.web.root.static
        inline = static.runner
        assert inline is not None

        def runner(f: Any, *args: Any) -> Any:
            ran.append(getattr(f, "__name__", repr(f)))
            return inline(f, *args)

        web.web.root.static = attrs.evolve(static, runner=runner)
        response = web.request("GET", "/big.bin")
        self.assertEqual(response.body, data)
        self.assertEqual(ran[0], "_resolveAndOpen")
        self.assertEqual(ran[1:], ["read"])
