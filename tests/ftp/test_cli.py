"""
Tests for C{appnet ftp}, run as a real process against the fixture server.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.cli import CommandError
from appnet.ftp.cli import parseURL
from appnet.progress import Progress
from appnet.testing import startFTP
from tests.process import Outcome, run

ALICE = "alice@example.org"
PASSWORD = "pw-alice-1"


class URLTests(SynchronousTestCase):
    """
    L{parseURL}.
    """

    def test_full(self) -> None:
        """User, password, host, port and path, percent-decoded."""
        where = parseURL("ftp://alice%40example.org:p%3Ass@ftp.example.org:2121/a%20b/")
        self.assertEqual(
            (where.user, where.password, where.host, where.port, where.path),
            ("alice@example.org", "p:ss", "ftp.example.org", 2121, "/a b/"),
        )
        self.assertTrue(where.directory)

    def test_defaults(self) -> None:
        """Port 21 (990 for ftps), path /, no user."""
        where = parseURL("ftp://h")
        self.assertEqual((where.port, where.path, where.user), (21, "/", None))
        self.assertEqual(parseURL("ftps://h").port, 990)

    def test_bad(self) -> None:
        """Other schemes and missing hosts are one-line errors."""
        self.assertRaises(CommandError, parseURL, "http://h/")
        self.assertRaises(CommandError, parseURL, "ftp:///x")


class ProgressTests(SynchronousTestCase):
    """
    The progress bar.
    """

    def test_draws(self) -> None:
        """
        It shows label, percent and sizes, redraws at most ten times a
        second, and ends the line at 100%.
        """
        import io

        out = io.StringIO()
        progress = Progress(out, "f", 2 * 1024 * 1024, True)
        progress(1024 * 1024)
        for _ in range(1000):
            progress(1)
        self.assertLess(out.getvalue().count("\r"), 10)
        progress.done = 1024 * 1024
        progress.finish()
        self.assertTrue(out.getvalue().endswith("\n"))
        self.assertIn("f 100% [########################] 2.00MB/2.00MB", out.getvalue())

    def test_off(self) -> None:
        """Disabled, it prints nothing."""
        import io

        out = io.StringIO()
        progress = Progress(out, "f", 10, False)
        progress(5)
        progress.finish()
        self.assertEqual(out.getvalue(), "")


class CommandTests(TestCase):
    """
    C{appnet ftp ls|get|put|mkdir|rm|mirror}.
    """

    timeout = 120

    async def setUp(self) -> None:
        self.ftp = await startFTP(
            self,
            users={ALICE: PASSWORD},
            files={
                ALICE: {"docs/a.txt": b"hello", "docs/sub/b.bin": os.urandom(200_000)}
            },
            tls=True,
        )
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)
        host, port = self.ftp.address
        self.base = f"ftp://alice%40example.org@{host}:{port}"
        self.cafile = os.path.join(self.cwd, "ca.pem")
        with open(self.cafile, "wb") as f:
            f.write(self.ftp.certificate or b"")

    async def appnet(self, *args: str, ok: bool = True) -> Outcome:
        outcome = await run(
            ["-m", "appnet", "ftp", *args, "--password-stdin"],
            self.cwd,
            env={"APPNET_DATA": os.path.join(self.cwd, "data")},
            stdin=PASSWORD.encode() + b"\n",
        )
        if ok:
            self.assertEqual(outcome.code, 0, outcome.err)
        return outcome

    def remote(self, path: str) -> str:
        return os.path.join(self.ftp.home(ALICE), path)

    async def test_anonymousOff(self) -> None:
        """
        Without a user in the URL the login is anonymous; a server with
        anonymous FTP off says so, and the command hints at a user.
        """
        host, port = self.ftp.address
        out = await self.appnet("ls", f"ftp://{host}:{port}/", ok=False)
        self.assertEqual(out.code, 1)
        self.assertEqual(
            out.err,
            "appnet: USER anonymous: 530 Anonymous FTP is off on this server;"
            f" log in as a user (anonymous FTP: give a user, as in"
            f" ftp://USER@{host}/)\n",
        )

    async def test_putOverQuota(self) -> None:
        """
        An upload the server stops at the quota reports the server's
        reason (552 ... quota), not a closed data connection.
        """
        ftp = await startFTP(
            self, users={ALICE: PASSWORD}, config={"ftp": {"quota": "100K"}}
        )
        host, port = ftp.address
        local = os.path.join(self.cwd, "big.bin")
        with open(local, "wb") as f:
            f.write(os.urandom(1_000_000))
        out = await self.appnet(
            "put", local, f"ftp://alice%40example.org@{host}:{port}/", ok=False
        )
        self.assertEqual(out.code, 1)
        self.assertIn("552", out.err)
        self.assertIn("quota", out.err)
        self.assertEqual(len(out.err.splitlines()), 1, out.err)

    async def test_ls(self) -> None:
        """ls lists names (directories with /); -l the server's lines."""
        out = await self.appnet("ls", f"{self.base}/docs/")
        self.assertEqual(out.out.splitlines(), ["a.txt", "sub/"])
        out = await self.appnet("ls", "-l", f"{self.base}/docs")
        self.assertTrue(out.out.splitlines()[0].startswith("-rw-r--r--"))

    async def test_getPutWithProgress(self) -> None:
        """get and put move the bytes and draw a progress bar."""
        out = await self.appnet("get", f"{self.base}/docs/sub/b.bin", "--progress")
        self.assertIn("100% [########################]", out.err)
        local = os.path.join(self.cwd, "b.bin")
        with open(local, "rb") as f, open(self.remote("docs/sub/b.bin"), "rb") as g:
            self.assertEqual(f.read(), g.read())
        await self.appnet("put", local, f"{self.base}/docs/", "--progress")
        self.assertEqual(os.path.getsize(self.remote("docs/b.bin")), 200_000)

    async def test_resume(self) -> None:
        """get --resume continues a partial file."""
        local = os.path.join(self.cwd, "b.bin")
        with open(self.remote("docs/sub/b.bin"), "rb") as f:
            content = f.read()
        with open(local, "wb") as f:
            f.write(content[:1000])
        await self.appnet("get", f"{self.base}/docs/sub/b.bin", local, "--resume")
        with open(local, "rb") as f:
            self.assertEqual(f.read(), content)

    async def test_mkdirRm(self) -> None:
        """mkdir makes a directory, rm removes files and (--dir) directories."""
        await self.appnet("mkdir", f"{self.base}/made")
        self.assertTrue(os.path.isdir(self.remote("made")))
        await self.appnet("rm", f"{self.base}/docs/a.txt")
        self.assertFalse(os.path.exists(self.remote("docs/a.txt")))
        await self.appnet("rm", "--dir", f"{self.base}/made")
        self.assertFalse(os.path.exists(self.remote("made")))

    async def test_mirror(self) -> None:
        """mirror copies a tree down; a second run copies nothing; -R goes up."""
        out = await self.appnet("mirror", f"{self.base}/docs/", "copy")
        self.assertIn("2 of 2 files copied", out.out)
        with open(os.path.join(self.cwd, "copy", "sub", "b.bin"), "rb") as f:
            with open(self.remote("docs/sub/b.bin"), "rb") as g:
                self.assertEqual(f.read(), g.read())
        out = await self.appnet("mirror", f"{self.base}/docs/", "copy")
        self.assertIn("0 of 2 files copied", out.out)
        await self.appnet("mirror", "--reverse", "copy", f"{self.base}/back")
        self.assertEqual(os.path.getsize(self.remote("back/sub/b.bin")), 200_000)

    async def test_tls(self) -> None:
        """--tls with --cacert logs in over AUTH TLS."""
        url = self.base.replace("127.0.0.1", "localhost")
        out = await self.appnet("ls", "--tls", "--cacert", self.cafile, f"{url}/")
        self.assertEqual(out.out.splitlines(), ["docs/"])

    async def test_errors(self) -> None:
        """Server errors are one line with the reply, exit status 1."""
        out = await self.appnet("get", f"{self.base}/nope", ok=False)
        self.assertEqual(out.code, 1)
        self.assertEqual(
            out.err, "appnet: RETR /nope: 550 /nope: no such file or directory\n"
        )
        self.assertFalse(os.path.exists(os.path.join(self.cwd, "nope")))
        self.assertFalse(os.path.exists(os.path.join(self.cwd, "nope.appnet-part")))
        out = await self.appnet("ls", "http://x/", ok=False)
        self.assertIn("not an FTP URL", out.err)
