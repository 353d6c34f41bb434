"""
Tests for static files: validators and conditional GET, ranges, gzip,
content types, directory pages and path confinement, over the real site
and channel in memory.
"""

from __future__ import annotations

import gzip
import os
import time
from email.parser import BytesParser

from twisted.trial.unittest import SynchronousTestCase

from appnet.web.static import CHUNK, BodyProducer, contentType
from appnet.web.validators import httpDate
from tests.web.helpers import Harness, harness, raw

TEXT = b"".join(b"line %04d of a compressible text file\n" % i for i in range(100))


class StaticTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.web: Harness = harness(self)
        self.web.write("a.txt", TEXT)
        self.web.write("small.txt", b"tiny")
        self.web.write("img.png", b"\x89PNG" + bytes(2000))


class GetAndHeadTests(StaticTestCase):
    def test_get(self) -> None:
        """A file is served whole with its type, length and validators."""
        r = self.web.request("GET", "/a.txt")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, TEXT)
        self.assertEqual(r.header("content-type"), "text/plain; charset=utf-8")
        self.assertEqual(r.header("content-length"), str(len(TEXT)))
        self.assertEqual(r.header("accept-ranges"), "bytes")
        etag = r.header("etag")
        assert etag is not None
        self.assertTrue(etag.startswith('"') and etag.endswith('"'))
        mtime = int(os.stat(os.path.join(self.web.root, "a.txt")).st_mtime)
        self.assertEqual(r.header("last-modified"), httpDate(mtime).decode())
        self.assertEqual(r.header("server"), "appnet")
        self.assertEqual(r.header("x-content-type-options"), "nosniff")

    def test_head(self) -> None:
        """HEAD has GET's headers and no body."""
        get = self.web.request("GET", "/a.txt")
        head = self.web.request("HEAD", "/a.txt")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")
        for name in ("content-length", "etag", "last-modified", "content-type"):
            self.assertEqual(head.header(name), get.header(name))

    def test_methodNotAllowed(self) -> None:
        """Other methods get 405 with Allow."""
        r = self.web.request("POST", "/a.txt", body=b"x=1")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "GET, HEAD")

    def test_notFound(self) -> None:
        """A missing file is 404 with an HTML page."""
        r = self.web.request("GET", "/missing.txt")
        self.assertEqual(r.status, 404)
        self.assertIn(b"404 Not Found", r.body)

    def test_favicon(self) -> None:
        """
        Without a favicon.ico of the site's own, one is served (an SVG
        icon, cacheable); the site's own file wins when there is one.
        """
        r = self.web.request("GET", "/favicon.ico")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "image/svg+xml")
        self.assertTrue(r.body.startswith(b"<svg "), r.body)
        self.assertEqual(self.web.request("HEAD", "/favicon.ico").status, 200)
        self.web.write("favicon.ico", b"\x00\x00\x01\x00own")
        r = self.web.request("GET", "/favicon.ico")
        self.assertEqual(r.body, b"\x00\x00\x01\x00own")

    def test_nameTooLong(self) -> None:
        """
        A path segment longer than the file system allows is 404, not a
        logged 500 (found by tests.robustness.test_http).
        """
        r = self.web.request("GET", "/" + "a" * 300)
        self.assertEqual(r.status, 404)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_symlinkLoop(self) -> None:
        """A symbolic link loop is 404 too."""
        loop = os.path.join(self.web.root, "loop")
        os.symlink(loop, loop)
        self.assertEqual(self.web.request("GET", "/loop/x").status, 404)

    def test_etagChangesWithContent(self) -> None:
        """
        Rewriting a file gives it a new entity tag, once the file cache's
        revalidation interval (C{http.file_cache_valid}) has passed.
        """
        before = self.web.request("GET", "/small.txt").header("etag")
        path = self.web.write("small.txt", b"other")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
        self.web.clock.advance(self.web.site.config.file_cache_valid)
        after = self.web.request("GET", "/small.txt").header("etag")
        self.assertNotEqual(before, after)


class ConditionalTests(StaticTestCase):
    def etag(self) -> str:
        value = self.web.request("GET", "/small.txt").header("etag")
        assert value is not None
        return value

    def lastModified(self) -> str:
        value = self.web.request("GET", "/small.txt").header("last-modified")
        assert value is not None
        return value

    def test_ifNoneMatch(self) -> None:
        """A matching If-None-Match gives 304 with the tag and no body."""
        etag = self.etag()
        r = self.web.request("GET", "/small.txt", {"If-None-Match": etag})
        self.assertEqual(r.status, 304)
        self.assertEqual(r.body, b"")
        self.assertEqual(r.header("etag"), etag)
        self.assertIsNone(r.header("content-length"))

    def test_ifNoneMatchListAndWeak(self) -> None:
        """Tags are matched weakly, in a list without spaces, or by '*'."""
        etag = self.etag()
        for value in (f'"x",W/{etag}', f'W/"nope",{etag}', "*"):
            r = self.web.request("GET", "/small.txt", {"If-None-Match": value})
            self.assertEqual(r.status, 304, value)

    def test_ifNoneMatchMiss(self) -> None:
        """A different tag gives the full response."""
        r = self.web.request("GET", "/small.txt", {"If-None-Match": '"other"'})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"tiny")

    def test_ifModifiedSince(self) -> None:
        """If-Modified-Since at or after the mtime gives 304; before, 200."""
        r = self.web.request(
            "GET", "/small.txt", {"If-Modified-Since": self.lastModified()}
        )
        self.assertEqual(r.status, 304)
        old = httpDate(time.time() - 86400 * 365).decode()
        r = self.web.request("GET", "/small.txt", {"If-Modified-Since": old})
        self.assertEqual(r.status, 200)

    def test_ifNoneMatchOverridesIfModifiedSince(self) -> None:
        """When If-None-Match is present, If-Modified-Since is ignored."""
        r = self.web.request(
            "GET",
            "/small.txt",
            {"If-None-Match": '"other"', "If-Modified-Since": self.lastModified()},
        )
        self.assertEqual(r.status, 200)

    def test_ifMatch(self) -> None:
        """If-Match must match strongly, else 412."""
        etag = self.etag()
        self.assertEqual(
            self.web.request("GET", "/small.txt", {"If-Match": etag}).status, 200
        )
        self.assertEqual(
            self.web.request("GET", "/small.txt", {"If-Match": '"x"'}).status, 412
        )
        self.assertEqual(
            self.web.request("GET", "/small.txt", {"If-Match": "W/" + etag}).status,
            412,
        )

    def test_ifUnmodifiedSince(self) -> None:
        """A file modified after If-Unmodified-Since gives 412."""
        old = httpDate(time.time() - 86400).decode()
        r = self.web.request("GET", "/small.txt", {"If-Unmodified-Since": old})
        self.assertEqual(r.status, 412)

    def test_badDateIgnored(self) -> None:
        """An unparseable If-Modified-Since is ignored."""
        r = self.web.request("GET", "/small.txt", {"If-Modified-Since": "yesterday"})
        self.assertEqual(r.status, 200)


class RangeTests(StaticTestCase):
    def test_single(self) -> None:
        """One range gives 206 with Content-Range."""
        r = self.web.request("GET", "/a.txt", {"Range": "bytes=5-14"})
        self.assertEqual(r.status, 206)
        self.assertEqual(r.body, TEXT[5:15])
        self.assertEqual(r.header("content-range"), f"bytes 5-14/{len(TEXT)}")

    def test_openAndSuffix(self) -> None:
        """Open-ended and suffix ranges; a suffix longer than the file is all."""
        size = len(TEXT)
        r = self.web.request("GET", "/a.txt", {"Range": f"bytes={size - 3}-"})
        self.assertEqual(r.body, TEXT[-3:])
        r = self.web.request("GET", "/a.txt", {"Range": "bytes=-7"})
        self.assertEqual(r.body, TEXT[-7:])
        r = self.web.request("GET", "/small.txt", {"Range": "bytes=-500"})
        self.assertEqual((r.status, r.body), (206, b"tiny"))
        self.assertEqual(r.header("content-range"), "bytes 0-3/4")

    def test_multiple(self) -> None:
        """Several ranges give multipart/byteranges with a part each."""
        r = self.web.request("GET", "/a.txt", {"Range": "bytes=0-4,100-109"})
        self.assertEqual(r.status, 206)
        ctype = r.header("content-type")
        assert ctype is not None
        self.assertTrue(ctype.startswith("multipart/byteranges; boundary="))
        self.assertEqual(int(r.header("content-length") or 0), len(r.body))
        message = BytesParser().parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + r.body
        )
        parts = message.get_payload()
        assert isinstance(parts, list)
        self.assertEqual(
            [p["Content-Range"] for p in parts],
            [f"bytes 0-4/{len(TEXT)}", f"bytes 100-109/{len(TEXT)}"],
        )
        self.assertEqual(
            [p.get_payload(decode=True) for p in parts], [TEXT[0:5], TEXT[100:110]]
        )

    def test_overlappingMerged(self) -> None:
        """Overlapping ranges are merged into one part."""
        r = self.web.request("GET", "/a.txt", {"Range": "bytes=0-9,5-19,20-29"})
        self.assertEqual(r.status, 206)
        self.assertEqual(r.body, TEXT[0:30])

    def test_unsatisfiable(self) -> None:
        """No overlapping range gives 416 with the size."""
        r = self.web.request("GET", "/small.txt", {"Range": "bytes=10-20"})
        self.assertEqual(r.status, 416)
        self.assertEqual(r.header("content-range"), "bytes */4")

    def test_malformedIgnored(self) -> None:
        """A malformed or foreign-unit Range is ignored (200)."""
        for value in ("bytes=5-1", "bytes=x-y", "lines=1-2", "bytes="):
            r = self.web.request("GET", "/small.txt", {"Range": value})
            self.assertEqual(r.status, 200, value)

    def test_tooManyIgnored(self) -> None:
        """More ranges than the limit are ignored rather than amplified."""
        value = "bytes=" + ",".join(f"{i * 2}-{i * 2}" for i in range(100))
        r = self.web.request("GET", "/a.txt", {"Range": value})
        self.assertEqual(r.status, 200)

    def test_ifRange(self) -> None:
        """If-Range with the current tag or date applies the range; else 200."""
        first = self.web.request("GET", "/a.txt")
        etag, date = first.header("etag"), first.header("last-modified")
        assert etag is not None and date is not None
        for value, status in (
            (etag, 206),
            (date, 206),
            ('"old"', 200),
            ("W/" + etag, 200),
        ):
            r = self.web.request(
                "GET", "/a.txt", {"Range": "bytes=0-1", "If-Range": value}
            )
            self.assertEqual(r.status, status, value)
            if status == 200:
                self.assertEqual(r.body, TEXT)

    def test_headRangeIgnored(self) -> None:
        """Range applies to GET only."""
        r = self.web.request("HEAD", "/a.txt", {"Range": "bytes=0-1"})
        self.assertEqual(r.status, 200)


class GzipTests(StaticTestCase):
    def test_compressed(self) -> None:
        """Text is gzipped for clients that accept it, with Vary and its own tag."""
        plain = self.web.request("GET", "/a.txt")
        r = self.web.request("GET", "/a.txt", {"Accept-Encoding": "br, gzip;q=0.8"})
        self.assertEqual(r.header("content-encoding"), "gzip")
        self.assertEqual(r.header("vary"), "Accept-Encoding")
        self.assertEqual(plain.header("vary"), "Accept-Encoding")
        self.assertEqual(gzip.decompress(r.body), TEXT)
        self.assertLess(len(r.body), len(TEXT))
        self.assertNotEqual(r.header("etag"), plain.header("etag"))

    def test_deterministic(self) -> None:
        """The gzipped bytes are the same each time, as a strong tag needs."""
        headers = {"Accept-Encoding": "gzip"}
        first = self.web.request("GET", "/a.txt", headers).body
        self.assertEqual(self.web.request("GET", "/a.txt", headers).body, first)

    def test_conditionalOnGzipTag(self) -> None:
        """If-None-Match with the gzip variant's tag gives 304."""
        headers = {"Accept-Encoding": "gzip"}
        etag = self.web.request("GET", "/a.txt", headers).header("etag")
        assert etag is not None
        r = self.web.request("GET", "/a.txt", {**headers, "If-None-Match": etag})
        self.assertEqual(r.status, 304)

    def test_refused(self) -> None:
        """gzip;q=0, no header, or identity only: no compression."""
        for headers in (
            {"Accept-Encoding": "gzip;q=0"},
            {},
            {"Accept-Encoding": "identity"},
        ):
            r = self.web.request("GET", "/a.txt", headers)
            self.assertIsNone(r.header("content-encoding"), headers)
            self.assertEqual(r.body, TEXT)

    def test_starAccepted(self) -> None:
        """'*' accepts gzip when gzip is not refused."""
        r = self.web.request("GET", "/a.txt", {"Accept-Encoding": "*"})
        self.assertEqual(r.header("content-encoding"), "gzip")

    def test_notForBinaryOrSmall(self) -> None:
        """Images and tiny files are sent as they are."""
        for path in ("/img.png", "/small.txt"):
            r = self.web.request("GET", path, {"Accept-Encoding": "gzip"})
            self.assertIsNone(r.header("content-encoding"), path)
        self.assertIsNone(self.web.request("GET", "/img.png").header("vary"))

    def test_rangeIsIdentity(self) -> None:
        """A range request gets identity bytes even when gzip is accepted."""
        r = self.web.request(
            "GET", "/a.txt", {"Accept-Encoding": "gzip", "Range": "bytes=0-9"}
        )
        self.assertEqual((r.status, r.body), (206, TEXT[:10]))
        self.assertIsNone(r.header("content-encoding"))

    def test_headHasNoLength(self) -> None:
        """HEAD of a gzipped response has no (unknown) Content-Length."""
        r = self.web.request("HEAD", "/a.txt", {"Accept-Encoding": "gzip"})
        self.assertEqual(r.header("content-encoding"), "gzip")
        self.assertIsNone(r.header("content-length"))

    def test_disabled(self) -> None:
        """With gzip off nothing is compressed."""
        web = harness(self, {"gzip": False})
        web.write("a.txt", TEXT)
        r = web.request("GET", "/a.txt", {"Accept-Encoding": "gzip"})
        self.assertIsNone(r.header("content-encoding"))


class TypeTests(SynchronousTestCase):
    def test_types(self) -> None:
        """Types come from a fixed table; archives are not content-encoded."""
        self.assertEqual(contentType("index.html"), "text/html; charset=utf-8")
        self.assertEqual(contentType("app.js"), "text/javascript; charset=utf-8")
        self.assertEqual(contentType("x.json"), "application/json")
        self.assertEqual(contentType("x.svg"), "image/svg+xml; charset=utf-8")
        self.assertEqual(contentType("x.woff2"), "font/woff2")
        self.assertEqual(contentType("x.tar.gz"), "application/gzip")
        self.assertEqual(contentType("noext"), "application/octet-stream")

    def test_gzFileNotEncoded(self) -> None:
        """A .gz file is served as application/gzip without Content-Encoding."""
        web = harness(self)
        web.write("a.tar.gz", gzip.compress(b"x" * 1000))
        r = web.request("GET", "/a.tar.gz", {"Accept-Encoding": "gzip"})
        self.assertEqual(r.header("content-type"), "application/gzip")
        self.assertIsNone(r.header("content-encoding"))


class DirectoryTests(StaticTestCase):
    def test_redirectToSlash(self) -> None:
        """A directory URL without a slash is redirected, query kept."""
        self.web.write("sub/b.txt", b"b")
        r = self.web.request("GET", "/sub?x=1")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.header("location"), "/sub/?x=1")

    def test_listing(self) -> None:
        """A directory without index.html lists its entries, escaped."""
        self.web.write("sub/<b>&.txt", b"b")
        self.web.write("sub/.hidden", b"h")
        self.web.write("sub/inner/c.txt", b"c")
        r = self.web.request("GET", "/sub/")
        self.assertEqual(r.status, 200)
        self.assertIn(b"Index of /sub/", r.body)
        self.assertIn(b'href="%3Cb%3E%26.txt">&lt;b&gt;&amp;.txt</a>', r.body)
        self.assertIn(b'href="inner/"', r.body)
        self.assertIn(b'href="../"', r.body)
        self.assertNotIn(b"hidden", r.body)
        self.assertLess(r.body.index(b"inner/"), r.body.index(b"&lt;b&gt;"))
        self.assertIn("default-src 'none'", r.header("content-security-policy") or "")

    def test_index(self) -> None:
        """index.html is served for its directory."""
        self.web.write("sub/index.html", b"<p>home</p>")
        r = self.web.request("GET", "/sub/")
        self.assertEqual((r.status, r.body), (200, b"<p>home</p>"))
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")

    def test_listingOff(self) -> None:
        """With listing off, a directory without index.html is 403."""
        web = harness(self, {"listing": False})
        web.write("sub/b.txt", b"b")
        self.assertEqual(web.request("GET", "/sub/").status, 403)

    def test_root(self) -> None:
        """The root lists the web root."""
        r = self.web.request("GET", "/")
        self.assertEqual(r.status, 200)
        self.assertIn(b"a.txt", r.body)
        self.assertNotIn(b'href="../"', r.body)

    def test_slashOnFile(self) -> None:
        """A file URL with a trailing slash is 404."""
        self.assertEqual(self.web.request("GET", "/a.txt/").status, 404)


class ConfinementTests(StaticTestCase):
    def setUp(self) -> None:
        super().setUp()
        outside = os.path.join(os.path.dirname(self.web.root), "secret.txt")
        with open(outside, "wb") as f:
            f.write(b"secret")
        os.symlink(outside, os.path.join(self.web.root, "out.txt"))
        os.symlink(os.path.dirname(self.web.root), os.path.join(self.web.root, "up"))
        os.symlink("a.txt", os.path.join(self.web.root, "in.txt"))
        self.web.write(".env", b"PASSWORD=x")

    def test_escapes(self) -> None:
        """Dot segments (plain or encoded), encoded slashes and NULs are 404."""
        for path in (
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E/secret.txt",
            "/sub/..%2f..%2fsecret.txt",
            "/..%2fsecret.txt",
            "/a.txt%00.png",
            "/./a.txt",
        ):
            r = self.web.request("GET", path)
            self.assertEqual(r.status, 404, path)
            self.assertNotIn(b"secret", r.body)

    def test_symlinksOut(self) -> None:
        """Symbolic links leading out of the root are 404, and not listed."""
        self.assertEqual(self.web.request("GET", "/out.txt").status, 404)
        self.assertEqual(self.web.request("GET", "/up/secret.txt").status, 404)
        listing = self.web.request("GET", "/").body
        self.assertNotIn(b"out.txt", listing)
        self.assertNotIn(b'"up/"', listing)

    def test_symlinkInside(self) -> None:
        """A symbolic link within the root is followed."""
        r = self.web.request("GET", "/in.txt")
        self.assertEqual((r.status, r.body), (200, TEXT))

    def test_dotfiles(self) -> None:
        """Dotfiles are not served."""
        self.assertEqual(self.web.request("GET", "/.env").status, 404)
        self.assertEqual(self.web.request("GET", "/%2eenv").status, 404)


class StreamingTests(StaticTestCase):
    def test_boundedByBackPressure(self) -> None:
        """
        A large file is produced only as fast as the connection drains:
        once the transport pauses the producer, nothing more is read.
        """
        big = os.urandom(4 * CHUNK)
        self.web.write("big.bin", big)
        connection = self.web.connect()
        transport = connection.transport
        written: list[int] = []
        original = transport.write

        def write(data: bytes) -> None:
            original(data)
            written.append(len(data))
            if sum(written) > 200_000 and transport.producer is not None:
                transport.producer.pauseProducing()

        transport.write = write  # type: ignore[method-assign]
        connection.send(raw("GET", "/big.bin"))
        # At most one chunk (read before the pause) past the limit.
        self.assertLess(sum(written), 200_000 + CHUNK + 65536)
        self.assertGreater(sum(written), 100_000)
        assert transport.producer is not None
        while len(transport.value()) < len(big):
            written.clear()
            transport.producer.resumeProducing()
        response = connection.responses()[0]
        self.assertEqual(response.body, big)

    def test_clientGoneClosesFile(self) -> None:
        """When the client disconnects mid-body, production stops."""
        self.web.write("big.bin", os.urandom(4 * CHUNK))
        connection = self.web.connect()
        transport = connection.transport
        original = transport.write
        sent = [0]

        def write(data: bytes) -> None:
            original(data)
            sent[0] += len(data)
            if sent[0] > 100_000 and transport.producer is not None:
                transport.producer.pauseProducing()

        transport.write = write  # type: ignore[method-assign]
        connection.send(raw("GET", "/big.bin"))
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        producer = connection.protocol._requestProducer
        self.assertIsInstance(producer, BodyProducer)
        self.assertLess(sent[0], 4 * CHUNK)
        connection.protocol.connectionLost(Failure(ConnectionLost()))
        self.assertTrue(producer._file.closed)
