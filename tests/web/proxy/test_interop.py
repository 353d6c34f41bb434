"""
Interop: a real nginx as the origin behind appnet's reverse proxy (plain
HTTP, and HTTPS verified against the test's CA), driven by curl.
"""

from __future__ import annotations

import os
import shutil

from twisted.trial.unittest import TestCase

from appnet.testing import startWeb
from appnet.tls import makeSelfSigned
from appnet.web.testing import RunningWeb
from tests.interop import unavailable
from tests.peers import freePorts, startServer, waitForLog, waitForPort
from tests.web.helpers import runCommand

BLOB = os.urandom(300_000)
TEXT = b"served by nginx\n"

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
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {prefix}/cert.pem;
        ssl_certificate_key {prefix}/key.pem;
        root {prefix}/www;
        location /fresh/ {{ expires 60s; }}
        location /private/ {{ add_header Cache-Control "private"; }}
    }}
}}
"""


def nginxBinary() -> str:
    """The nginx binary (often in an sbin directory not on PATH), or skip."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/local/sbin"
    found = shutil.which("nginx", path=path)
    if found is None:
        unavailable("nginx is not installed (Debian package nginx-light)")
    return found


class NginxOriginTests(TestCase):
    """appnet's cache in front of nginx, with curl as the client."""

    async def setUp(self) -> None:
        nginx = nginxBinary()
        self.prefix = os.path.abspath(self.mktemp())
        for sub in ("www/fresh", "www/private", "tmp", "logs"):
            os.makedirs(os.path.join(self.prefix, sub))
        for name, data in [
            ("www/fresh/a.txt", TEXT),
            ("www/plain.txt", TEXT),
            ("www/private/p.txt", TEXT),
            ("www/fresh/blob.bin", BLOB),
        ]:
            with open(os.path.join(self.prefix, name), "wb") as f:
                f.write(data)
        key, self.cert = makeSelfSigned("localhost")
        for name, data in [("key.pem", key), ("cert.pem", self.cert)]:
            with open(os.path.join(self.prefix, name), "wb") as f:
                f.write(data)
        for attempt in range(3):
            self.plain, self.tls = freePorts(2)
            conf = os.path.join(self.prefix, "nginx.conf")
            with open(conf, "w") as f:
                f.write(
                    CONFIG.format(prefix=self.prefix, plain=self.plain, tls=self.tls)
                )
            collector = startServer(
                self,
                [nginx, "-p", self.prefix, "-c", conf, "-e", "stderr"],
                self.prefix,
            )
            try:
                for port in (self.plain, self.tls):
                    await waitForPort(collector, "127.0.0.1", port, "nginx")
            except AssertionError:
                if attempt == 2 or b"Address already in use" not in collector.err:
                    raise
            else:
                break

    async def proxy(self, **route: object) -> RunningWeb:
        """appnet with one route to nginx (plain unless told)."""
        settings = {"upstream": f"http://127.0.0.1:{self.plain}", **route}
        return await startWeb(
            self,
            config={"http": {"proxy": [settings], "cache_max_object": "100K"}},
        )

    async def curl(self, *args: str) -> str:
        """curl's output (headers with -D -), asserting success."""
        outcome = await runCommand(["curl", "-sS", *args])
        self.assertEqual(outcome.code, 0, outcome.err)
        return str(outcome.out)

    async def originRequests(self, expected: int) -> int:
        """
        How many requests nginx has logged, once at least C{expected} are
        (nginx writes a line just after its response).
        """
        path = os.path.join(self.prefix, "access.log")
        await waitForLog(path, rf"(?:[^\n]*\n){{{expected}}}")
        with open(path, "rb") as f:
            return f.read().count(b"\n")

    async def test_hitAfterMiss(self) -> None:
        """nginx's expires 60s makes the second curl a hit with Age."""
        web = await self.proxy()
        first = await self.curl("-D", "-", web.url("/fresh/a.txt"))
        self.assertIn("fwd=uri-miss", first)
        second = await self.curl("-D", "-", web.url("/fresh/a.txt"))
        self.assertIn("Cache-Status: appnet; hit", second)
        self.assertIn("\r\nAge: ", second)
        self.assertTrue(second.endswith(TEXT.decode()))
        self.assertEqual(await self.originRequests(1), 1)

    async def test_revalidateWithNginx(self) -> None:
        """
        A client's no-cache makes appnet revalidate with nginx's ETag and
        Last-Modified; nginx's 304 refreshes the stored response.
        """
        web = await self.proxy()
        await self.curl(web.url("/plain.txt"))
        out = await self.curl(
            "-D", "-", "-H", "Cache-Control: no-cache", web.url("/plain.txt")
        )
        self.assertIn("fwd-status=304", out)
        self.assertTrue(out.endswith(TEXT.decode()))
        # nginx writes its log line after the response: wait for it.
        await waitForLog(
            os.path.join(self.prefix, "access.log"), '"GET /plain.txt HTTP/1.1" 304'
        )

    async def test_privateNotStored(self) -> None:
        """nginx's Cache-Control: private is never stored by the shared cache."""
        web = await self.proxy()
        for _ in range(2):
            out = await self.curl("-D", "-", web.url("/private/p.txt"))
        self.assertIn('detail="private"', out)
        self.assertEqual(await self.originRequests(2), 2)

    async def test_largeStreamsThrough(self) -> None:
        """A body over cache_max_object arrives whole and is not stored."""
        web = await self.proxy()
        path = os.path.abspath(self.mktemp())
        for _ in range(2):
            await self.curl("-o", path, web.url("/fresh/blob.bin"))
            with open(path, "rb") as f:
                self.assertEqual(f.read(), BLOB)
        self.assertEqual(await self.originRequests(2), 2)

    async def test_httpsUpstreamVerified(self) -> None:
        """An https upstream is verified against the route's CA."""
        ca = os.path.join(self.prefix, "cert.pem")
        web = await self.proxy(upstream=f"https://localhost:{self.tls}", ca=ca)
        out = await self.curl(web.url("/fresh/a.txt"))
        self.assertEqual(out, TEXT.decode())

    async def test_httpsUpstreamWrongCA(self) -> None:
        """A certificate the route does not trust is a 502, not a traceback."""
        _, other = makeSelfSigned("elsewhere.example", loopback=False)
        ca = os.path.abspath(self.mktemp())
        with open(ca, "wb") as f:
            f.write(other)
        web = await self.proxy(upstream=f"https://localhost:{self.tls}", ca=ca)
        out = await self.curl("-w", "%{http_code}", "-o", "/dev/null", web.url("/x"))
        self.assertEqual(out, "502")
