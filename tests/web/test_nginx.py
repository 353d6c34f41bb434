"""
Interop: appnet's HTTP client (L{appnet.web.client} and C{appnet fetch})
against a real nginx serving static files, redirects, ranges and HTTPS
with certificates made by the test.
"""

from __future__ import annotations

import os
import shutil

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from appnet.tls import makeSelfSigned
from appnet.web.client import FetchError, download, fetch, makeClient
from tests.interop import unavailable
from tests.peers import freePorts, startServer, waitForPort
from tests.process import run

BLOB = os.urandom(700_000)
TEXT = b"served by nginx\n"


def _nginx() -> str:
    """The nginx binary (often in an sbin directory not on PATH), or skip."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/local/sbin"
    found = shutil.which("nginx", path=path)
    if found is None:
        unavailable("nginx is not installed (Debian package nginx-light)")
    return found


HOST = "127.0.0.1"

CONFIG = """\
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{plain};
        root {prefix}/www;
        location = /moved {{ return 301 /blob.bin; }}
        location = /secure {{ return 302 https://127.0.0.1:{tls}/blob.bin; }}
    }}
    server {{
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {prefix}/right.pem;
        ssl_certificate_key {prefix}/right.key;
        root {prefix}/www;
    }}
    server {{
        listen 127.0.0.1:{wrong} ssl;
        ssl_certificate {prefix}/wrong.pem;
        ssl_certificate_key {prefix}/wrong.key;
        root {prefix}/www;
    }}
}}
"""


class NginxTests(TestCase):
    """
    One nginx per test, on three loopback ports: plain HTTP, HTTPS with a
    certificate naming 127.0.0.1, and HTTPS with one naming another host.
    """

    async def setUp(self) -> None:
        nginx = _nginx()
        self.prefix = os.path.abspath(self.mktemp())
        for sub in ("www", "tmp", "logs"):
            os.makedirs(os.path.join(self.prefix, sub))
        with open(os.path.join(self.prefix, "www", "blob.bin"), "wb") as f:
            f.write(BLOB)
        with open(os.path.join(self.prefix, "www", "a.txt"), "wb") as f:
            f.write(TEXT)
        key, self.cert = makeSelfSigned("localhost")
        wrongKey, self.wrongCert = makeSelfSigned("elsewhere.example", loopback=False)
        for name, data in [
            ("right.key", key),
            ("right.pem", self.cert),
            ("wrong.key", wrongKey),
            ("wrong.pem", self.wrongCert),
            ("ca.pem", self.cert),
            ("wrong-ca.pem", self.wrongCert),
        ]:
            with open(os.path.join(self.prefix, name), "wb") as f:
                f.write(data)
        # nginx must be told its ports; if another process takes one
        # between freePort and nginx's bind, nginx exits and we try again.
        for attempt in range(3):
            self.plain, self.tls, self.wrong = freePorts(3)
            conf = os.path.join(self.prefix, "nginx.conf")
            with open(conf, "w") as f:
                f.write(
                    CONFIG.format(
                        prefix=self.prefix,
                        plain=self.plain,
                        tls=self.tls,
                        wrong=self.wrong,
                    )
                )
            ports = (self.plain, self.tls, self.wrong)
            # One process (master_process off): it has ended when its
            # ports close, and a port another process took is not ours
            # to wait for.
            collector = startServer(
                self,
                [nginx, "-p", self.prefix, "-c", conf, "-e", "stderr"],
                self.prefix,
            )
            try:
                for port in ports:
                    await waitForPort(collector, HOST, port, "nginx")
            except AssertionError:
                if attempt == 2 or b"Address already in use" not in collector.err:
                    raise
            else:
                break

    def url(self, path: str, port: int | None = None) -> str:
        scheme = "http" if port is None else "https"
        return f"{scheme}://127.0.0.1:{port or self.plain}{path}"

    def local(self, name: str) -> str:
        return os.path.join(self.prefix, name)

    def read(self, name: str) -> bytes:
        with open(self.local(name), "rb") as f:
            return f.read()

    async def test_get(self) -> None:
        """A plain GET saves nginx's file byte for byte."""
        result = await download(makeClient(reactor), self.url("/blob.bin"), "out")
        self.assertEqual((result.code, result.size), (200, len(BLOB)))
        with open("out", "rb") as f:
            self.assertEqual(f.read(), BLOB)

    async def test_redirect(self) -> None:
        """nginx's 301 is followed; the result names the final URL."""
        chunks: list[bytes] = []
        response = await fetch(makeClient(reactor), self.url("/moved"), chunks.append)
        self.assertEqual(response.code, 200)
        self.assertEqual(b"".join(chunks), BLOB)
        path = self.mktemp()
        result = await download(makeClient(reactor), self.url("/moved"), path)
        self.assertEqual(result.url, self.url("/blob.bin"))

    async def test_redirectToHTTPS(self) -> None:
        """A redirect from HTTP to HTTPS is verified with the given CA."""
        chunks: list[bytes] = []
        client = makeClient(reactor, trust=self.cert)
        await fetch(client, self.url("/secure"), chunks.append)
        self.assertEqual(b"".join(chunks), BLOB)

    async def test_resume(self) -> None:
        """A partial file is completed from nginx's 206, byte for byte."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(BLOB[:123_457])
        result = await download(
            makeClient(reactor), self.url("/blob.bin"), path, resume=True
        )
        self.assertEqual(
            (result.code, result.resumed, result.received),
            (206, True, len(BLOB) - 123_457),
        )
        with open(path, "rb") as f:
            self.assertEqual(f.read(), BLOB)

    async def test_resumeComplete(self) -> None:
        """nginx's 416 for a complete file is taken as done, file untouched."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(BLOB)
        result = await download(
            makeClient(reactor), self.url("/blob.bin"), path, resume=True
        )
        self.assertEqual((result.code, result.received), (416, 0))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), BLOB)

    async def test_notFound(self) -> None:
        """nginx's 404 is a FetchError with the status; no file is left."""
        with self.assertRaises(FetchError) as caught:
            await download(makeClient(reactor), self.url("/nope"), "never")
        self.assertEqual(caught.exception.code, 404)
        self.assertFalse(os.path.exists("never"))

    async def test_httpsTrusted(self) -> None:
        """HTTPS verifies against the given CA for the right name."""
        chunks: list[bytes] = []
        client = makeClient(reactor, trust=self.cert)
        await fetch(client, self.url("/a.txt", self.tls), chunks.append)
        self.assertEqual(b"".join(chunks), TEXT)

    async def test_httpsUntrusted(self) -> None:
        """Without the CA, nginx's self-signed certificate is refused."""
        with self.assertRaises(FetchError) as caught:
            await fetch(
                makeClient(reactor), self.url("/a.txt", self.tls), lambda _: None
            )
        self.assertIn("TLS failed", str(caught.exception))

    async def test_httpsWrongName(self) -> None:
        """A trusted certificate for another name is refused."""
        client = makeClient(reactor, trust=self.wrongCert)
        with self.assertRaises(FetchError) as caught:
            await fetch(client, self.url("/a.txt", self.wrong), lambda _: None)
        self.assertEqual(
            caught.exception.problem, "TLS failed: the certificate is not for 127.0.0.1"
        )

    async def test_httpsInsecure(self) -> None:
        """insecure accepts the wrong name."""
        chunks: list[bytes] = []
        client = makeClient(reactor, insecure=True)
        await fetch(client, self.url("/a.txt", self.wrong), chunks.append)
        self.assertEqual(b"".join(chunks), TEXT)

    async def fetchCommand(self, *args: str) -> tuple[int | None, str, str]:
        out = await run(["-m", "appnet", "fetch", "-q", *args], self.prefix)
        return out.code, out.out, out.err

    async def test_commandContinue(self) -> None:
        """appnet fetch -c completes a partial file from nginx."""
        with open(self.local("part.bin"), "wb") as f:
            f.write(BLOB[:5000])
        code, _, err = await self.fetchCommand(
            "-c", self.url("/blob.bin"), "-o", "part.bin"
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(self.read("part.bin"), BLOB)

    async def test_commandTLS(self) -> None:
        """
        appnet fetch --cacert verifies nginx for the right name, refuses the
        wrong name in one line (exit 1), and --insecure gets it anyway.
        """
        self.assertEqual(
            await self.fetchCommand("--cacert", "ca.pem", self.url("/a.txt", self.tls)),
            (0, TEXT.decode(), ""),
        )
        code, out, err = await self.fetchCommand(
            "--cacert", "wrong-ca.pem", self.url("/a.txt", self.wrong)
        )
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(
            err,
            f"appnet: {self.url('/a.txt', self.wrong)}: "
            "TLS failed: the certificate is not for 127.0.0.1\n",
        )
        self.assertEqual(
            await self.fetchCommand("-k", self.url("/a.txt", self.wrong)),
            (0, TEXT.decode(), ""),
        )
