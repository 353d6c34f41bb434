"""
Large static files over real loopback connections: plain TCP sends the
body with os.sendfile past twisted.web's buffer, TLS and gzip do not, and
the bytes, ranges and access log are the same either way.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import TestCase

from appnet import files
from appnet.web.static import CHUNK
from appnet.web.testing import RunningWeb, startWeb
from tests.web.helpers import runCommand

BIG = os.urandom(6 * CHUNK + 12345)
TEXT = b"".join(b"line %06d of a compressible text file\n" % i for i in range(100_000))


class SendfileTests(TestCase):
    async def start(self, tls: bool = False, trace: bool = False) -> RunningWeb:
        self.log = os.path.abspath(self.mktemp())
        self.calls: list[int] = []
        real = os.sendfile

        def counting(out: int, fd: int, offset: int | None, count: int) -> int:
            sent = real(out, fd, offset, count)
            self.calls.append(sent)
            return sent

        self.patch(os, "sendfile", counting)
        # However busy the machine, a trip waits for curl to read: every
        # byte after the first chunk goes by sendfile.
        self.patch(files, "ZERO_COPY_WAIT", 60.0)
        return await startWeb(
            self,
            files={"big.bin": BIG, "text.txt": TEXT},
            config={
                "http": {"access_log": self.log},
                "trace": ["http"] if trace else [],
            },
            tls=tls,
        )

    async def curl(self, *args: str) -> str:
        outcome = await runCommand(["curl", "-sS", "-k", *args])
        self.assertEqual(outcome.code, 0, outcome.err)
        return str(outcome.out)

    async def download(self, web: RunningWeb, *args: str) -> bytes:
        path = os.path.abspath(self.mktemp())
        await self.curl(*args, "-o", path, web.url("/big.bin"))
        with open(path, "rb") as f:
            return f.read()

    async def accessLog(self, web: RunningWeb) -> list[list[str]]:
        await web.stop()
        with open(self.log) as f:
            return [line.split('"')[2].split() for line in f]

    async def test_plain(self) -> None:
        """
        A whole file and a single range arrive intact, mostly by sendfile,
        and the access log and counters count every byte.
        """
        web = await self.start()
        self.assertEqual(await self.download(web), BIG)
        self.assertEqual(sum(self.calls), len(BIG) - CHUNK)
        # The listener's byte counter has them all too.
        self.assertGreater(web.status.counter("http", "bytes_out"), len(BIG))
        del self.calls[:]
        ranged = await self.download(web, "-r", f"100-{len(BIG) - 2}")
        self.assertEqual(ranged, BIG[100:-1])
        self.assertEqual(sum(self.calls), len(BIG) - 101 - CHUNK)
        self.assertEqual(
            await self.accessLog(web),
            [["200", str(len(BIG))], ["206", str(len(BIG) - 101)]],
        )

    async def test_gzipAndTLS(self) -> None:
        """Compressed bodies and TLS connections never use sendfile."""
        web = await self.start(tls=True)
        self.assertEqual(await self.download(web), BIG)
        path = os.path.abspath(self.mktemp())
        await self.curl("--compressed", "-o", path, web.url("/text.txt"))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), TEXT)
        self.assertEqual(self.calls, [])

    async def test_traced(self) -> None:
        """While --trace records HTTP, every byte goes through the wrapper."""
        web = await self.start(trace=True)
        self.assertEqual(await self.download(web), BIG)
        self.assertEqual(self.calls, [])

    async def test_plainGzip(self) -> None:
        """On plain TCP too, a compressed body goes through the buffer."""
        web = await self.start()
        path = os.path.abspath(self.mktemp())
        headers = await self.curl(
            "--compressed", "-D", "-", "-o", path, web.url("/text.txt")
        )
        self.assertIn("Content-Encoding: gzip", headers)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), TEXT)
        self.assertEqual(self.calls, [])
