"""
Integration over real loopback sockets: curl and treq against the web
server (conditional GET, ranges, compression, keep-alive reuse), HTTPS
with HSTS, and sessions surviving a restart.
"""

from __future__ import annotations

import os
import re

import treq
from twisted.trial.unittest import TestCase

from appnet.testing import startStack, startWeb
from appnet.web.server import webBuilder
from appnet.web.testing import RunningWeb
from appnet.web.validators import httpDate
from tests.web.helpers import runCommand

TEXT = b"".join(b"line %04d of a compressible text file\n" % i for i in range(200))


class CurlTests(TestCase):
    async def setUp(self) -> None:
        self.web: RunningWeb = await startWeb(
            self, files={"a.txt": TEXT, "sub/index.html": b"<p>sub</p>"}
        )

    async def curl(self, *args: str) -> str:
        outcome = await runCommand(["curl", "-sS", *args])
        self.assertEqual(outcome.code, 0, outcome.err)
        return str(outcome.out)

    async def test_head(self) -> None:
        """curl -I shows the status, length, validators and type."""
        out = await self.curl("-I", self.web.url("/a.txt"))
        self.assertTrue(out.startswith("HTTP/1.1 200 OK"), out)
        self.assertIn(f"Content-Length: {len(TEXT)}", out)
        self.assertRegex(out, r'ETag: "[0-9a-f-]+"')
        self.assertIn("Last-Modified: ", out)
        self.assertIn("Content-Type: text/plain; charset=utf-8", out)

    async def test_ranges(self) -> None:
        """curl -r fetches one range, or several as multipart."""
        self.assertEqual(
            await self.curl("-r", "0-9", self.web.url("/a.txt")), TEXT[:10].decode()
        )
        out = await self.curl("-r", "0-4,20-24", "-D", "-", self.web.url("/a.txt"))
        self.assertIn("206 Partial Content", out)
        self.assertIn("multipart/byteranges", out)
        self.assertIn(f"Content-Range: bytes 20-24/{len(TEXT)}", out)

    async def test_compressed(self) -> None:
        """curl --compressed gets gzip and unpacks it to the original."""
        path = os.path.abspath(self.mktemp())
        headers = await self.curl(
            "--compressed", "-D", "-", "-o", path, self.web.url("/a.txt")
        )
        self.assertIn("Content-Encoding: gzip", headers)
        self.assertIn("Vary: Accept-Encoding", headers)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), TEXT)

    async def test_ifModifiedSince(self) -> None:
        """curl -z with a date at or after the mtime gets 304; before, 200."""
        mtime = int(os.stat(self.web.www.child("a.txt").path).st_mtime)
        later = httpDate(mtime + 60).decode()
        earlier = httpDate(mtime - 3600).decode()
        url = self.web.url("/a.txt")
        fmt = ["-o", "/dev/null", "-w", "%{http_code}"]
        self.assertEqual(await self.curl("-z", later, *fmt, url), "304")
        self.assertEqual(await self.curl("-z", earlier, *fmt, url), "200")

    async def test_ifNoneMatch(self) -> None:
        """curl -H If-None-Match with the current tag gets 304."""
        head = await self.curl("-I", self.web.url("/a.txt"))
        m = re.search(r'ETag: ("[^"]+")', head)
        assert m is not None
        code = await self.curl(
            "-H",
            f"If-None-Match: {m.group(1)}",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            self.web.url("/a.txt"),
        )
        self.assertEqual(code, "304")

    async def test_keepAliveReuse(self) -> None:
        """curl reuses one connection for several requests (1.1 and 1.0)."""
        url = self.web.url("/a.txt")
        before = self.web.status.counter("http", "connections")
        out = await self.curl(
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects} ",
            url,
            url,
            url,
        )
        self.assertEqual(out.split(), ["1", "0", "0"])
        out = await self.curl(
            "-0",
            "-H",
            "Connection: keep-alive",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{num_connects} ",
            url,
            url,
        )
        self.assertEqual(out.split(), ["1", "0"])
        self.assertEqual(self.web.status.counter("http", "connections") - before, 2)

    async def test_redirectAndIndex(self) -> None:
        """curl -L follows the directory redirect to its index page."""
        out = await self.curl("-L", self.web.url("/sub"))
        self.assertEqual(out, "<p>sub</p>")


class TreqTests(TestCase):
    async def setUp(self) -> None:
        self.web: RunningWeb = await startWeb(self, files={"a.txt": TEXT})

    async def test_conditionalAndRange(self) -> None:
        """treq over one kept-alive connection: GET, 304, 206."""
        client = self.web.client(persistent=True)
        url = self.web.url("/a.txt")
        first = await client.get(url)
        self.assertEqual(await first.content(), TEXT)
        etag = first.headers.getRawHeaders("etag")[0]
        again = await client.get(url, headers={"If-None-Match": etag})
        self.assertEqual(again.code, 304)
        await again.content()
        part = await client.get(url, headers={"Range": "bytes=10-19"})
        self.assertEqual((part.code, await part.content()), (206, TEXT[10:20]))
        self.assertEqual(self.web.status.counter("http", "connections"), 1)

    async def test_bodyTooLarge(self) -> None:
        """A body over the limit gets 413 over a real connection."""
        web = await startWeb(self, config={"http": {"max_body_size": 1000}})
        response = await treq.post(
            web.url("/login"), data=b"x" * 50_000, persistent=False
        )
        self.assertEqual(response.code, 413)
        await response.content()


class TLSTests(TestCase):
    async def test_hstsAndVerification(self) -> None:
        """
        Over HTTPS the certificate verifies against its own PEM (curl
        --cacert, treq), HSTS is sent, and an untrusting curl fails.
        """
        web = await startWeb(
            self, files={"a.txt": b"secret"}, tls=True, config={"http": {"hsts": "1d"}}
        )
        response = await web.client().get(web.url("/a.txt"))
        self.assertEqual(await response.content(), b"secret")
        self.assertEqual(
            response.headers.getRawHeaders("strict-transport-security"),
            ["max-age=86400"],
        )
        assert web.certificatePEM is not None
        cafile = os.path.abspath(self.mktemp())
        with open(cafile, "wb") as f:
            f.write(web.certificatePEM)
        ok = await runCommand(["curl", "-sS", "--cacert", cafile, web.url("/a.txt")])
        self.assertEqual((ok.code, ok.out), (0, "secret"))
        refused = await runCommand(["curl", "-sS", web.url("/a.txt")])
        self.assertEqual(refused.code, 60)

    async def test_sessionCookieSecure(self) -> None:
        """Logging in over HTTPS sets a Secure __Host- cookie."""
        web = await startWeb(self, tls=True, users={"alice@example.org": "pw-alice-12"})
        client = web.client()
        form = await client.get(web.url("/login"))
        body = await form.content()
        token = re.search(rb'name="csrf_token" value="([^"]+)"', body)
        assert token is not None
        response = await client.post(
            web.url("/login"),
            data={
                "username": "alice@example.org",
                "password": "pw-alice-12",
                "csrf_token": token.group(1).decode(),
            },
            allow_redirects=False,
        )
        self.assertEqual(response.code, 303)
        cookies = response.headers.getRawHeaders("set-cookie")
        session = [c for c in cookies if c.startswith("__Host-appnet_session=")]
        self.assertEqual(len(session), 1)
        self.assertIn("; Secure", session[0])
        await response.content()


class RestartTests(TestCase):
    async def login(self, base: str) -> str:
        form = await treq.get(base + "/login", persistent=False)
        body = await form.content()
        token = re.search(rb'name="csrf_token" value="([^"]+)"', body)
        assert token is not None
        login = form.headers.getRawHeaders("set-cookie")[0].split(";")[0]
        response = await treq.post(
            base + "/login",
            data={
                "username": "alice@example.org",
                "password": "pw-alice-12",
                "csrf_token": token.group(1).decode(),
            },
            headers={"Cookie": login},
            allow_redirects=False,
            persistent=False,
        )
        await response.content()
        self.assertEqual(response.code, 303)
        cookie: str = response.headers.getRawHeaders("set-cookie")[0].split(";")[0]
        return cookie

    async def whoami(self, base: str, cookie: str) -> bytes:
        response = await treq.get(
            base + "/logout",
            headers={"Cookie": cookie},
            persistent=False,
            allow_redirects=False,
        )
        body: bytes = await response.content()
        return body

    async def test_sessionSurvivesRestart(self) -> None:
        """A session made before a restart is still logged in after it."""
        data = os.path.abspath(self.mktemp())
        first = await startStack(
            self,
            builders=[webBuilder()],
            dataDir=data,
            users={"alice@example.org": "pw-alice-12"},
        )
        host, port = first.address("http")
        cookie = await self.login(f"http://{host}:{port}")
        await first.stop()
        second = await startStack(self, builders=[webBuilder()], dataDir=data)
        host, port = second.address("http")
        page = await self.whoami(f"http://{host}:{port}", cookie)
        self.assertIn(b"Logged in as alice@example.org", page)


class TraceTests(TestCase):
    async def test_traceMasksCookies(self) -> None:
        """--trace http logs the dialogue of a real connection, cookies masked."""
        from twisted.logger import globalLogPublisher

        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        web = await startWeb(self, files={"a.txt": b"hi"}, config={"trace": ["http"]})
        out = await runCommand(
            [
                "curl",
                "-sS",
                "-H",
                "Cookie: appnet_session=tok-secret",
                web.url("/a.txt"),
            ]
        )
        self.assertEqual(out.out, "hi")
        lines = [
            str(e["line"]) for e in events if e.get("service") == "http" and "line" in e
        ]
        self.assertIn("GET /a.txt HTTP/1.1", lines)
        self.assertIn("Cookie: ********", lines)
        self.assertIn("HTTP/1.1 200 OK", lines)
        self.assertFalse([line for line in lines if "tok-secret" in line])
