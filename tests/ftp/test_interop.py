"""
Interoperability: real third-party FTP clients against the real server on
loopback sockets. Python's ftplib (active, passive, FTP_TLS) runs in a
thread; curl and lftp run as processes.
"""

from __future__ import annotations

import ftplib
import io
import os
import ssl

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from appnet.testing import startFTP
from tests.ftp.programs import need, runProgram

ALICE = "alice@example.org"
PASSWORD = "pw-alice-1"
USERINFO = "alice%40example.org:pw-alice-1"


def _tree() -> dict[str, bytes]:
    files = {
        "docs/a.txt": b"hello\n",
        "docs/big.bin": os.urandom(2_000_000),
        "docs/deep/er/c.txt": b"c" * 10,
        "docs/empty/": b"",
        "docs/caf\u00e9 menu.txt": "cr\u00eapes\n".encode(),
    }
    return files


class FtplibTests(TestCase):
    """
    Python's ftplib.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.files = _tree()
        self.ftp = await startFTP(
            self, users={ALICE: PASSWORD}, files={ALICE: self.files}, tls=True
        )
        self.cafile = os.path.abspath(self.mktemp())
        with open(self.cafile, "wb") as f:
            f.write(self.ftp.certificate or b"")

    def session(self, client: ftplib.FTP, passive: bool) -> None:
        """What every ftplib test does, in the client's thread."""
        client.set_pasv(passive)
        self.assertEqual(client.pwd(), "/")
        client.cwd("docs")
        names = client.nlst()
        self.assertEqual(
            sorted(names),
            sorted(["a.txt", "big.bin", "deep", "empty", "caf\u00e9 menu.txt"]),
        )
        listing: list[str] = []
        client.retrlines("LIST", listing.append)
        self.assertEqual(len(listing), 5)
        facts = dict(client.mlsd())
        self.assertEqual(facts["big.bin"]["size"], "2000000")
        out = io.BytesIO()
        client.retrbinary("RETR big.bin", out.write)
        self.assertEqual(out.getvalue(), self.files["docs/big.bin"])
        out = io.BytesIO()
        client.retrbinary("RETR big.bin", out.write, rest=1_999_000)
        self.assertEqual(out.getvalue(), self.files["docs/big.bin"][1_999_000:])
        payload = os.urandom(500_000)
        self.assertTrue(
            client.storbinary("STOR up.bin", io.BytesIO(payload)).startswith("226")
        )
        self.assertEqual(client.size("up.bin"), 500_000)
        client.storlines("STOR lines.txt", io.BytesIO(b"one\ntwo\n"))
        with open(os.path.join(self.ftp.home(ALICE), "docs", "lines.txt"), "rb") as f:
            self.assertEqual(f.read(), b"one\ntwo\n", "TYPE A stores LF line ends")
        client.delete("lines.txt")
        lines: list[str] = []
        client.retrlines("RETR caf\u00e9 menu.txt", lines.append)
        self.assertEqual(lines, ["cr\u00eapes"])
        client.rename("up.bin", "moved.bin")
        client.delete("moved.bin")
        client.mkd("made")
        client.rmd("made")
        with self.assertRaises(ftplib.error_perm) as caught:
            client.cwd("../..")
        self.assertTrue(str(caught.exception).startswith("550"))
        client.quit()

    def plain(self) -> ftplib.FTP:
        host, port = self.ftp.address
        client = ftplib.FTP()
        client.encoding = "utf-8"
        client.connect(host, port, timeout=20)
        client.login(ALICE, PASSWORD)
        return client

    def secure(self) -> ftplib.FTP_TLS:
        host, port = self.ftp.address
        context = ssl.create_default_context(cafile=self.cafile)
        client = ftplib.FTP_TLS(context=context, encoding="utf-8")
        client.connect(host, port, timeout=20)
        client.auth()
        client.login(ALICE, PASSWORD)
        client.prot_p()
        return client

    async def test_passive(self) -> None:
        """ftplib in passive mode: listings, RETR (with REST), STOR, renames."""
        await deferToThread(lambda: self.session(self.plain(), True))

    async def test_active(self) -> None:
        """The same in active mode (PORT)."""
        await deferToThread(lambda: self.session(self.plain(), False))

    async def test_tls(self) -> None:
        """FTP_TLS: AUTH TLS, PROT P, passive and active."""
        await deferToThread(lambda: self.session(self.secure(), True))
        await deferToThread(lambda: self.session(self.secure(), False))

    async def test_abort(self) -> None:
        """
        ftplib's abort() (urgent data) stops a download mid-way. The server
        sends at 64 KiB/s, so the 2 MB file is still flowing when ABOR
        arrives: the transfer cannot finish first, however fast the machine.
        """
        slow = await startFTP(
            self,
            users={ALICE: PASSWORD},
            files={ALICE: self.files},
            config={"ftp": {"rate_limit": "64K"}},
        )

        def run() -> None:
            host, port = slow.address
            client = ftplib.FTP()
            client.connect(host, port, timeout=20)
            client.login(ALICE, PASSWORD)
            conn = client.transfercmd("RETR docs/big.bin")
            conn.recv(1024)
            # RFC 959: 426 for the transfer, then 226 for ABOR itself
            # (ftplib's abort() reads only the first).
            self.assertEqual(client.abort()[:3], "426")
            self.assertEqual(client.getresp()[:3], "226")
            conn.close()
            self.assertEqual(client.voidcmd("NOOP")[:3], "200")
            client.quit()

        await deferToThread(run)

    async def test_bounceRefused(self) -> None:
        """PORT to another host is refused (the FTP bounce attack)."""

        def run() -> None:
            client = self.plain()
            with self.assertRaises(ftplib.error_perm) as caught:
                client.sendcmd("PORT 192,0,2,1,4,1")
            self.assertTrue(str(caught.exception).startswith("501"))
            client.quit()

        await deferToThread(run)


class CurlTests(TestCase):
    """
    curl: list, get, put, resume with C{-C -}, and --ftp-ssl.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.curl = need("curl")
        self.files = _tree()
        self.ftp = await startFTP(
            self, users={ALICE: PASSWORD}, files={ALICE: self.files}, tls=True
        )
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.cafile = os.path.join(self.dir, "ca.pem")
        with open(self.cafile, "wb") as f:
            f.write(self.ftp.certificate or b"")
        host, port = self.ftp.address
        self.base = f"ftp://{USERINFO}@{host}:{port}"

    async def curl_(self, *args: str) -> str:
        outcome = await runProgram(
            [self.curl, "-sS", "--max-time", "30", *args], self.dir
        )
        self.assertEqual(outcome.code, 0, outcome.err)
        return outcome.out

    def remote(self, path: str) -> bytes:
        with open(os.path.join(self.ftp.home(ALICE), path), "rb") as f:
            return f.read()

    async def test_list(self) -> None:
        """A directory URL lists it (LIST); -l names only (NLST)."""
        listing = await self.curl_(f"{self.base}/docs/")
        self.assertEqual(len(listing.splitlines()), 5)
        self.assertIn(" big.bin", listing)
        names = await self.curl_("-l", f"{self.base}/docs/")
        self.assertIn("a.txt", names.splitlines())

    async def test_getPut(self) -> None:
        """Download a file; upload one, making its directory."""
        await self.curl_("-o", "big.bin", f"{self.base}/docs/big.bin")
        with open(os.path.join(self.dir, "big.bin"), "rb") as f:
            self.assertEqual(f.read(), self.files["docs/big.bin"])
        await self.curl_("--ftp-create-dirs", "-T", "big.bin", f"{self.base}/new/dir/")
        self.assertEqual(self.remote("new/dir/big.bin"), self.files["docs/big.bin"])

    async def test_resume(self) -> None:
        """C{-C -} resumes a download (REST) and an upload (APPE)."""
        partial = os.path.join(self.dir, "big.bin")
        with open(partial, "wb") as f:
            f.write(self.files["docs/big.bin"][:700_000])
        await self.curl_("-C", "-", "-o", "big.bin", f"{self.base}/docs/big.bin")
        with open(partial, "rb") as f:
            self.assertEqual(f.read(), self.files["docs/big.bin"])
        with open(os.path.join(self.ftp.home(ALICE), "half.bin"), "wb") as f:
            f.write(self.files["docs/big.bin"][:1_234_567])
        await self.curl_("-C", "-", "-T", "big.bin", f"{self.base}/half.bin")
        self.assertEqual(self.remote("half.bin"), self.files["docs/big.bin"])

    async def test_active(self) -> None:
        """Active mode (-P -: EPRT or PORT to curl's own address)."""
        out = await self.curl_("-P", "-", f"{self.base}/docs/a.txt")
        self.assertEqual(out, "hello\n")

    async def test_tls(self) -> None:
        """--ftp-ssl: list, get and put over AUTH TLS with PROT P."""
        tls = ["--ftp-ssl", "--ssl-reqd", "--cacert", self.cafile]
        url = self.base.replace("127.0.0.1", "localhost")
        listing = await self.curl_(*tls, f"{url}/docs/")
        self.assertIn(" a.txt", listing)
        await self.curl_(*tls, "-o", "big.bin", f"{url}/docs/big.bin")
        with open(os.path.join(self.dir, "big.bin"), "rb") as f:
            self.assertEqual(f.read(), self.files["docs/big.bin"])
        await self.curl_(*tls, "-T", "big.bin", f"{url}/secure.bin")
        self.assertEqual(self.remote("secure.bin"), self.files["docs/big.bin"])

    async def test_jailEscape(self) -> None:
        """Paths climbing out of the home fail (curl exits with an error)."""
        outcome = await runProgram(
            [self.curl, "-v", "--path-as-is", f"{self.base}/../../etc/passwd"],
            self.dir,
        )
        self.assertEqual(outcome.code, 9, outcome.err)
        self.assertIn("< 550 ..: permission denied: outside your home", outcome.err)


class LftpTests(TestCase):
    """
    lftp: mirroring a directory tree, down and up.
    """

    timeout = 90

    async def setUp(self) -> None:
        self.lftp = need("lftp")
        self.ftp = await startFTP(self, users={ALICE: PASSWORD}, tls=True)
        files = {
            f"tree/d{i}/f{j}.txt": f"{i}-{j}\n".encode()
            for i in range(5)
            for j in range(20)
        }
        files["tree/big.bin"] = os.urandom(1_000_000)
        files["tree/empty/"] = b""
        self.files = files
        await self.ftp.addFiles({ALICE: files})
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.cafile = os.path.join(self.dir, "ca.pem")
        with open(self.cafile, "wb") as f:
            f.write(self.ftp.certificate or b"")

    async def lftp_(self, script: str, tls: bool = False) -> None:
        host, port = self.ftp.address
        settings = [
            "set net:max-retries 1",
            "set net:timeout 15",
            "set cmd:fail-exit yes",
        ]
        if tls:
            settings += [
                f"set ssl:ca-file {self.cafile}",
                "set ftp:ssl-force yes",
                "set ftp:ssl-protect-data yes",
            ]
            host = "localhost"
        else:
            settings.append("set ftp:ssl-allow no")
        commands = "; ".join(settings + [script, "quit"])
        outcome = await runProgram(
            [
                self.lftp,
                "-u",
                f"{ALICE},{PASSWORD}",
                "-p",
                str(port),
                "-e",
                commands,
                host,
            ],
            self.dir,
            env={"HOME": self.dir},
        )
        self.assertEqual(outcome.code, 0, outcome.out + outcome.err)

    def local(self, root: str) -> dict[str, bytes]:
        found = {}
        for here, dirs, names in os.walk(root):
            for d in dirs:
                if not os.listdir(os.path.join(here, d)):
                    found[os.path.relpath(os.path.join(here, d), root) + "/"] = b""
            for name in names:
                path = os.path.join(here, name)
                with open(path, "rb") as f:
                    found[os.path.relpath(path, root)] = f.read()
        return found

    async def test_mirror(self) -> None:
        """lftp mirror copies the whole tree down, and mirror -R back up."""
        await self.lftp_("mirror tree copy")
        expected = {k.removeprefix("tree/"): v for k, v in self.files.items()}
        self.assertEqual(self.local(os.path.join(self.dir, "copy")), expected)
        await self.lftp_("mirror -R copy uploaded")
        uploaded = self.local(os.path.join(self.ftp.home(ALICE), "uploaded"))
        self.assertEqual(uploaded, expected)

    async def test_mirrorTLS(self) -> None:
        """The same mirror over FTPS."""
        await self.lftp_("mirror tree copy", tls=True)
        self.assertEqual(
            len(self.local(os.path.join(self.dir, "copy"))), len(self.files)
        )
