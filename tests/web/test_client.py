"""
Tests for the HTTP client (L{appnet.web.client}) and C{appnet fetch},
against the web fixture over loopback.
"""

from __future__ import annotations

import io
import os

from service_identity import VerificationError
from service_identity.exceptions import DNSMismatch, IPAddressMismatch
from service_identity.hazmat import DNS_ID, IPAddress_ID
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.web.client import (
    FetchError,
    ProgressBar,
    _describe,
    download,
    fetch,
    makeClient,
)
from appnet.web.testing import RunningWeb, startWeb
from tests.process import run

BLOB = os.urandom(300_000)


class DownloadTests(TestCase):
    async def setUp(self) -> None:
        self.web: RunningWeb = await startWeb(
            self, files={"blob.bin": BLOB, "dir/index.html": b"<p>index</p>"}
        )
        self.client = makeClient(reactor)

    async def test_download(self) -> None:
        """A file is saved whole, with progress reported up to its size."""
        path = self.mktemp()
        seen: list[tuple[int, int | None]] = []
        result = await download(
            self.client,
            self.web.url("/blob.bin"),
            path,
            progress=lambda r, t: seen.append((r, t)),
        )
        with open(path, "rb") as f:
            self.assertEqual(f.read(), BLOB)
        self.assertEqual(
            (result.code, result.size, result.resumed), (200, len(BLOB), False)
        )
        self.assertEqual(seen[-1], (len(BLOB), len(BLOB)))
        self.assertEqual([r for r, _ in seen], sorted(r for r, _ in seen))

    async def test_redirect(self) -> None:
        """Redirects are followed; the result names the final URL."""
        path = self.mktemp()
        result = await download(self.client, self.web.url("/dir"), path)
        self.assertEqual(result.url, self.web.url("/dir/"))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"<p>index</p>")

    async def test_resume(self) -> None:
        """A partial file is completed with a Range request."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(BLOB[:100_000])
        result = await download(
            self.client, self.web.url("/blob.bin"), path, resume=True
        )
        self.assertTrue(result.resumed)
        self.assertEqual((result.code, result.received), (206, len(BLOB) - 100_000))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), BLOB)

    async def test_resumeComplete(self) -> None:
        """Resuming a complete file is a no-op (the server says 416)."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(BLOB)
        result = await download(
            self.client, self.web.url("/blob.bin"), path, resume=True
        )
        self.assertEqual(
            (result.code, result.size, result.received), (416, len(BLOB), 0)
        )

    async def test_resumeChangedFile(self) -> None:
        """A partial file longer than the server's is refused, not corrupted."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(BLOB + b"extra")
        with self.assertRaises(FetchError):
            await download(self.client, self.web.url("/blob.bin"), path, resume=True)

    async def test_errorStatus(self) -> None:
        """A 404 fails with the status and leaves no file behind."""
        path = self.mktemp()
        with self.assertRaises(FetchError) as caught:
            await download(self.client, self.web.url("/missing"), path)
        self.assertEqual(caught.exception.code, 404)
        self.assertIn("HTTP 404 Not Found", str(caught.exception))
        self.assertFalse(os.path.exists(path))

    async def test_refused(self) -> None:
        """A closed port fails with one line."""
        port = self.web.address[1]
        await self.web.stop()
        with self.assertRaises(FetchError) as caught:
            await download(self.client, f"http://127.0.0.1:{port}/", self.mktemp())
        self.assertIn("cannot connect", str(caught.exception))

    async def test_fetchToSink(self) -> None:
        """fetch streams the body to a callable."""
        chunks: list[bytes] = []
        response = await fetch(self.client, self.web.url("/blob.bin"), chunks.append)
        self.assertEqual(response.code, 200)
        self.assertEqual(b"".join(chunks), BLOB)


class TLSClientTests(TestCase):
    async def setUp(self) -> None:
        self.web: RunningWeb = await startWeb(
            self, files={"a.txt": b"over tls"}, tls=True
        )

    async def test_trusted(self) -> None:
        """With the server's certificate as trust root, verification passes."""
        chunks: list[bytes] = []
        client = makeClient(reactor, trust=self.web.certificatePEM)
        await fetch(client, self.web.url("/a.txt"), chunks.append)
        self.assertEqual(chunks, [b"over tls"])

    async def test_untrusted(self) -> None:
        """By default a self-signed certificate fails verification."""
        with self.assertRaises(FetchError) as caught:
            await fetch(makeClient(reactor), self.web.url("/a.txt"), lambda d: None)
        self.assertIn("TLS failed", str(caught.exception))

    async def test_insecure(self) -> None:
        """--insecure skips verification."""
        chunks: list[bytes] = []
        await fetch(
            makeClient(reactor, insecure=True), self.web.url("/a.txt"), chunks.append
        )
        self.assertEqual(chunks, [b"over tls"])


class DescribeTests(SynchronousTestCase):
    def test_wrongName(self) -> None:
        """
        A certificate that chains to a trusted root but names another host
        is one line naming the host, not service-identity's repr.
        """
        for mismatch, name in [
            (IPAddressMismatch(IPAddress_ID("127.0.0.1")), "127.0.0.1"),
            (DNSMismatch(DNS_ID("example.org")), "example.org"),
        ]:
            error = _describe("https://h/", VerificationError(errors=[mismatch]))
            self.assertEqual(
                error.problem, f"TLS failed: the certificate is not for {name}"
            )


class ProgressBarTests(SynchronousTestCase):
    """
    L{ProgressBar} draws the progress callback's figures.
    """

    def test_draws(self) -> None:
        """The bar shows percentage and bytes, throttled, and ends the line."""
        out = io.StringIO()
        bar = ProgressBar(out)
        for received in range(0, 1001):
            bar(received, 1000)
        bar.done()
        text = out.getvalue()
        self.assertLess(text.count("\r"), 20)
        self.assertIn("100% [", text)
        self.assertIn("0.98kB/0.98kB", text)
        self.assertTrue(text.endswith("\n"))

    def test_unknownTotal(self) -> None:
        """Without a total it shows the bytes so far."""
        out = io.StringIO()
        bar = ProgressBar(out)
        bar(2048, None)
        bar.done()
        self.assertIn("2.00kB", out.getvalue())

    def test_nothingReceived(self) -> None:
        """A bar never called writes nothing."""
        out = io.StringIO()
        ProgressBar(out).done()
        self.assertEqual(out.getvalue(), "")


class FetchCommandTests(TestCase):
    async def setUp(self) -> None:
        self.web: RunningWeb = await startWeb(self, files={"blob.bin": BLOB})
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)

    async def test_saves(self) -> None:
        """appnet fetch URL -o FILE saves the file and says so."""
        out = await run(
            ["-m", "appnet", "fetch", self.web.url("/blob.bin"), "-o", "x.bin"],
            self.cwd,
        )
        self.assertEqual(out.code, 0, out.err)
        with open(os.path.join(self.cwd, "x.bin"), "rb") as f:
            self.assertEqual(f.read(), BLOB)
        self.assertIn(f"x.bin: {len(BLOB)} bytes", out.err)

    async def test_continue(self) -> None:
        """--continue resumes a partial file."""
        with open(os.path.join(self.cwd, "x.bin"), "wb") as f:
            f.write(BLOB[:1000])
        out = await run(
            ["-m", "appnet", "fetch", "-c", self.web.url("/blob.bin"), "-o", "x.bin"],
            self.cwd,
        )
        self.assertEqual(out.code, 0, out.err)
        self.assertIn("resumed", out.err)
        with open(os.path.join(self.cwd, "x.bin"), "rb") as f:
            self.assertEqual(f.read(), BLOB)

    async def test_stdout(self) -> None:
        """Without -o the body goes to standard output."""
        self.web.put("t.txt", b"to stdout\n")
        out = await run(["-m", "appnet", "fetch", self.web.url("/t.txt")], self.cwd)
        self.assertEqual((out.code, out.out), (0, "to stdout\n"))

    async def test_notFound(self) -> None:
        """An error status is one line and exit status 1."""
        out = await run(["-m", "appnet", "fetch", self.web.url("/nope")], self.cwd)
        self.assertEqual(out.code, 1)
        self.assertEqual(
            out.err, f"appnet: {self.web.url('/nope')}: HTTP 404 Not Found\n"
        )

    async def test_usage(self) -> None:
        """Conflicting options are a usage error (status 2)."""
        out = await run(
            ["-m", "appnet", "fetch", "--insecure", "--cacert", "x", "https://h/"],
            self.cwd,
        )
        self.assertEqual(out.code, 2)
        self.assertIn("exclude each other", out.err)

    async def test_tls(self) -> None:
        """--cacert trusts a self-signed server; without it, one-line failure."""
        web = await startWeb(self, files={"a.txt": b"tls!"}, tls=True)
        assert web.certificatePEM is not None
        with open(os.path.join(self.cwd, "ca.pem"), "wb") as f:
            f.write(web.certificatePEM)
        ok = await run(
            ["-m", "appnet", "fetch", "--cacert", "ca.pem", web.url("/a.txt")], self.cwd
        )
        self.assertEqual((ok.code, ok.out), (0, "tls!"))
        bad = await run(["-m", "appnet", "fetch", web.url("/a.txt")], self.cwd)
        self.assertEqual(bad.code, 1)
        self.assertIn("TLS failed", bad.err)
        self.assertEqual(bad.err.count("\n"), 1)
        insecure = await run(
            ["-m", "appnet", "fetch", "-k", web.url("/a.txt")], self.cwd
        )
        self.assertEqual((insecure.code, insecure.out), (0, "tls!"))
