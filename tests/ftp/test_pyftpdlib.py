"""
Interop: appnet's FTP client (L{appnet.ftp.client} and C{appnet ftp})
against a real pyftpdlib server: login, MLSD, uploads and downloads byte
for byte with resume, directory operations, EPSV, PASV and active data
connections, and explicit TLS (AUTH TLS, PROT P).
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from appnet.ftp.client import FTPClient, clientTLS, connectFTP
from appnet.ftp.errors import FTPClientError, FTPError
from appnet.tls import makeSelfSigned
from tests.interop import unavailable
from tests.peers import startPythonServer
from tests.process import run

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyftpd.py")
USER = "alice"
PASSWORD = "pw-alice-1"
BLOB = os.urandom(1_500_000)


class PyftpdlibTests(TestCase):
    """
    The client against pyftpdlib, one server per test, serving a home in
    the test's temporary directory.
    """

    async def startServer(self, *options: str) -> None:
        try:
            import pyftpdlib  # noqa: F401
        except ImportError:
            unavailable("pyftpdlib is not installed (the test extra)")
        self.base = os.path.abspath(self.mktemp())
        self.home = os.path.join(self.base, "home")
        os.makedirs(self.home)
        self.server, self.port = await startPythonServer(
            self, SERVER, [self.home, USER, PASSWORD, *options], self.base
        )

    async def sent(self, command: str) -> None:
        """Wait until pyftpdlib has logged receiving C{command}."""
        seen = self.server.waitFor(f"<- {command}".encode())
        seen.addTimeout(10, reactor)
        await seen

    async def connect(self, **kwargs: object) -> FTPClient:
        client = await connectFTP(
            reactor,
            "127.0.0.1",
            self.port,
            user=USER,
            password=PASSWORD,
            **kwargs,  # type: ignore[arg-type]
        )
        self.addCleanup(client.quit)
        return client

    def put(self, name: str, data: bytes) -> None:
        path = os.path.join(self.home, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    async def roundTrip(self, client: FTPClient) -> None:
        """Upload BLOB, list it, download it, and compare."""
        local = os.path.join(self.base, "up.bin")
        with open(local, "wb") as f:
            f.write(BLOB)
        self.assertEqual(await client.storeFile(local, "/up.bin"), len(BLOB))
        self.assertEqual(self.read(os.path.join(self.home, "up.bin")), BLOB)
        entries = {e.name: e for e in await client.entries("/")}
        self.assertEqual(
            (entries["up.bin"].kind, entries["up.bin"].size), ("file", len(BLOB))
        )
        back = os.path.join(self.base, "down.bin")
        self.assertEqual(await client.retrieveFile("/up.bin", back), len(BLOB))
        self.assertEqual(self.read(back), BLOB)

    async def test_loginAndList(self) -> None:
        """Login, FEAT (pyftpdlib has MLST), and an MLSD listing with facts."""
        await self.startServer()
        self.put("docs/a.txt", b"hello")
        client = await self.connect()
        self.assertTrue(any(f.startswith("MLST") for f in client.features))
        self.assertEqual(await client.pwd(), "/")
        entries = {e.name: e for e in await client.mlsd("/")}
        self.assertEqual(entries["docs"].kind, "dir")
        [a] = await client.mlsd("/docs")
        self.assertEqual((a.name, a.kind, a.size), ("a.txt", "file", 5))
        self.assertIsNotNone(a.modified)

    async def test_badLogin(self) -> None:
        """A wrong password fails with the server's 530."""
        await self.startServer()
        with self.assertRaises(FTPClientError) as caught:
            await connectFTP(
                reactor, "127.0.0.1", self.port, user=USER, password="wrong"
            )
        self.assertEqual(caught.exception.code, 530)

    async def test_epsv(self) -> None:
        """Store and retrieve byte for byte over EPSV data connections."""
        await self.startServer()
        await self.roundTrip(await self.connect())
        await self.sent("EPSV")
        self.assertNotIn(b"<- PASV", self.server.err)

    async def test_pasv(self) -> None:
        """
        With EPSV withdrawn (500), the client falls back to PASV and the
        transfers still work.
        """
        await self.startServer("--no-epsv")
        await self.roundTrip(await self.connect())
        await self.sent("PASV")

    async def test_active(self) -> None:
        """Active mode (PORT): pyftpdlib connects to the client."""
        await self.startServer()
        await self.roundTrip(await self.connect(passive=False))
        await self.sent("PORT 127,0,0,1,")
        self.assertNotIn(b"<- EPSV", self.server.err)

    async def test_resumeDownload(self) -> None:
        """A partial download is completed with REST, byte for byte."""
        await self.startServer()
        self.put("big.bin", BLOB)
        local = os.path.join(self.base, "big.bin")
        with open(local, "wb") as f:
            f.write(BLOB[:400_001])
        client = await self.connect()
        received = await client.retrieveFile("/big.bin", local, resume=True)
        await self.sent("REST 400001")
        self.assertEqual(received, len(BLOB) - 400_001)
        self.assertEqual(self.read(local), BLOB)

    async def test_resumeUpload(self) -> None:
        """A partial upload is completed with SIZE and APPE."""
        await self.startServer()
        self.put("up.bin", BLOB[:70_000])
        local = os.path.join(self.base, "up.bin")
        with open(local, "wb") as f:
            f.write(BLOB)
        client = await self.connect()
        sent = await client.storeFile(local, "/up.bin", resume=True)
        await self.sent("APPE /up.bin")
        self.assertEqual(sent, len(BLOB) - 70_000)
        self.assertEqual(self.read(os.path.join(self.home, "up.bin")), BLOB)

    async def test_directories(self) -> None:
        """mkdir, rename, delete and rmdir change pyftpdlib's tree."""
        await self.startServer()
        self.put("f.txt", b"x")
        client = await self.connect()
        await client.mkdir("/new")
        self.assertTrue(os.path.isdir(os.path.join(self.home, "new")))
        await client.rename("/f.txt", "/new/g.txt")
        self.assertEqual(self.read(os.path.join(self.home, "new", "g.txt")), b"x")
        self.assertEqual(await client.size("/new/g.txt"), 1)
        await client.delete("/new/g.txt")
        await client.rmdir("/new")
        self.assertEqual(os.listdir(self.home), [])
        with self.assertRaises(FTPClientError) as caught:
            await client.delete("/missing")
        self.assertEqual(caught.exception.code, 550)

    async def test_tls(self) -> None:
        """
        AUTH TLS with the certificate verified for 127.0.0.1, PROT P, and
        a transfer over protected data connections.
        """
        key, cert = makeSelfSigned("localhost")
        certPath = os.path.abspath(self.mktemp())
        os.makedirs(certPath)
        with open(os.path.join(certPath, "key.pem"), "wb") as f:
            f.write(key)
        with open(os.path.join(certPath, "cert.pem"), "wb") as f:
            f.write(cert)
        await self.startServer(
            "--tls",
            os.path.join(certPath, "cert.pem"),
            os.path.join(certPath, "key.pem"),
        )
        client = await self.connect(tls=clientTLS("127.0.0.1", cert))
        self.assertTrue(client.control.transport.TLS)  # type: ignore[union-attr]
        await self.roundTrip(client)
        for command in ("AUTH TLS", "PBSZ 0", "PROT P"):
            await self.sent(command)

    async def test_tlsUntrusted(self) -> None:
        """AUTH TLS to a server whose certificate is not trusted fails."""
        key, cert = makeSelfSigned("localhost")
        with open(os.path.abspath("key.pem"), "wb") as f:
            f.write(key)
        with open(os.path.abspath("cert.pem"), "wb") as f:
            f.write(cert)
        await self.startServer(
            "--tls", os.path.abspath("cert.pem"), os.path.abspath("key.pem")
        )
        _, other = makeSelfSigned("localhost")
        with self.assertRaises(FTPError) as caught:
            await connectFTP(
                reactor,
                "127.0.0.1",
                self.port,
                user=USER,
                password=PASSWORD,
                tls=clientTLS("127.0.0.1", other),
            )
        self.assertIn("certificate verify failed", str(caught.exception))

    async def test_command(self) -> None:
        """appnet ftp get --resume completes a partial file from pyftpdlib."""
        await self.startServer()
        self.put("pub/big.bin", BLOB)
        with open(os.path.join(self.base, "big.bin"), "wb") as f:
            f.write(BLOB[:1000])
        url = f"ftp://{USER}:{PASSWORD}@127.0.0.1:{self.port}/pub/big.bin"
        out = await run(
            ["-m", "appnet", "ftp", "get", "--no-progress", "--resume", url],
            self.base,
        )
        self.assertEqual(out.code, 0, out.err)
        self.assertEqual(self.read(os.path.join(self.base, "big.bin")), BLOB)
