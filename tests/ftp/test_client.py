"""
Tests for L{appnet.ftp.client}: reply parsing on a L{StringTransport}, and
the whole API against the real server over loopback sockets (passive and
active, plain and TLS).
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.ftp.client import FTPClient, FTPControl, Reply, clientTLS, connectFTP
from appnet.ftp.errors import FTPClientError
from appnet.testing import startFTP
from tests.interop import unavailable

ALICE = "alice@example.org"
PASSWORD = "pw-alice-1"


class ControlTests(SynchronousTestCase):
    """
    L{FTPControl}: commands one at a time, replies parsed.
    """

    def setUp(self) -> None:
        self.control = FTPControl()
        self.transport = StringTransport()
        self.control.makeConnection(self.transport)

    def test_greeting(self) -> None:
        """The greeting may be multi-line; preliminary 120 is skipped."""
        self.control.dataReceived(
            b"120 soon\r\n220-Hello\r\n 220 not the end\r\n220 ok\r\n"
        )
        reply = self.successResultOf(self.control.greeting)
        self.assertEqual(reply, Reply(220, ("Hello", "220 not the end", "ok")))

    def test_sequential(self) -> None:
        """A second command waits until the first is answered."""
        self.control.dataReceived(b"220 hi\r\n")
        first = self.control.command("NOOP")
        second = self.control.command("PWD")
        self.assertEqual(self.transport.value(), b"NOOP\r\n")
        self.control.dataReceived(b"200 ok\r\n")
        self.assertEqual(self.successResultOf(first).code, 200)
        self.assertEqual(self.transport.value(), b"NOOP\r\nPWD\r\n")
        self.control.dataReceived(b'257 "/"\r\n')
        self.assertEqual(self.successResultOf(second).text, '"/"')

    def test_errorsAndPreliminaries(self) -> None:
        """1xx goes to the preliminary callback; 5xx fails, PASS masked."""
        self.control.dataReceived(b"220 hi\r\n")
        seen: list[Reply] = []
        d = self.control.command("PASS secret", seen.append)
        self.control.dataReceived(b"150 wait\r\n530 no\r\n")
        self.assertEqual(seen, [Reply(150, ("wait",))])
        error = self.failureResultOf(d, FTPClientError).value
        self.assertEqual((error.code, error.command), (530, "PASS ********"))
        self.assertNotIn("secret", str(error))

    def test_noLineEnds(self) -> None:
        """A command holding CR or LF is refused before it is sent."""
        self.control.dataReceived(b"220 hi\r\n")
        self.failureResultOf(self.control.command("CWD a\r\nDELE b"))
        self.assertEqual(self.transport.value(), b"")

    def test_lost(self) -> None:
        """A lost connection fails every waiting command."""
        self.control.dataReceived(b"220 hi\r\n")
        d = self.control.command("NOOP")
        self.control.connectionLost()
        self.failureResultOf(d)
        self.failureResultOf(self.control.command("NOOP"))


class ClientTests(TestCase):
    """
    The client API against the real server.
    """

    timeout = 60

    async def setUp(self) -> None:
        self.ftp = await startFTP(
            self,
            users={ALICE: PASSWORD},
            files={
                ALICE: {"docs/a.txt": b"hello", "docs/sub/b.bin": os.urandom(300_000)}
            },
            tls=True,
        )
        self.local = os.path.abspath(self.mktemp())
        os.makedirs(self.local)

    async def connect(self, passive: bool = True, tls: bool = False) -> FTPClient:
        host, port = self.ftp.address
        options = clientTLS("localhost", self.ftp.certificate) if tls else None
        client = await connectFTP(
            reactor,
            host,
            port,
            user=ALICE,
            password=PASSWORD,
            tls=options,
            passive=passive,
        )
        self.addCleanup(client.quit)
        return client

    async def roundTrip(self, client: FTPClient) -> None:
        self.assertEqual(await client.pwd(), "/")
        entries = await client.entries("docs")
        self.assertEqual(
            [(e.name, e.kind) for e in entries], [("a.txt", "file"), ("sub", "dir")]
        )
        target = os.path.join(self.local, "b.bin")
        self.assertEqual(await client.retrieveFile("docs/sub/b.bin", target), 300_000)
        with (
            open(target, "rb") as f,
            open(os.path.join(self.ftp.home(ALICE), "docs/sub/b.bin"), "rb") as g,
        ):
            self.assertEqual(f.read(), g.read())
        self.assertEqual(await client.storeFile(target, "copy.bin"), 300_000)
        self.assertEqual(await client.size("copy.bin"), 300_000)

    async def test_passive(self) -> None:
        """Listing, download and upload over passive connections (EPSV)."""
        await self.roundTrip(await self.connect())

    async def test_active(self) -> None:
        """The same over active connections (PORT)."""
        await self.roundTrip(await self.connect(passive=False))

    async def test_tls(self) -> None:
        """The same with AUTH TLS and PROT P, passive and active."""
        await self.roundTrip(await self.connect(tls=True))
        await self.roundTrip(await self.connect(tls=True, passive=False))

    async def test_pasvFallback(self) -> None:
        """When EPSV is refused, the client falls back to PASV."""
        client = await self.connect()
        client._epsv = False
        self.assertEqual(await client.nlst("docs"), ["a.txt", "sub"])

    async def test_resume(self) -> None:
        """Downloads continue from the local size; uploads from the remote."""
        client = await self.connect()
        target = os.path.join(self.local, "b.bin")
        await client.retrieveFile("docs/sub/b.bin", target)
        os.truncate(target, 1000)
        self.assertEqual(
            await client.retrieveFile("docs/sub/b.bin", target, resume=True), 299_000
        )
        self.assertEqual(os.path.getsize(target), 300_000)
        await client.store("part.bin", target)
        remote = os.path.join(self.ftp.home(ALICE), "part.bin")
        os.truncate(remote, 5000)
        self.assertEqual(
            await client.storeFile(target, "part.bin", resume=True), 295_000
        )
        with open(remote, "rb") as f, open(target, "rb") as g:
            self.assertEqual(f.read(), g.read())

    async def test_directories(self) -> None:
        """mkdir, cwd, rename, delete, rmdir."""
        client = await self.connect()
        await client.mkdir("new")
        await client.cwd("new")
        self.assertEqual(await client.pwd(), "/new")
        await client.cwd("/")
        await client.rename("docs/a.txt", "new/a.txt")
        await client.delete("new/a.txt")
        await client.rmdir("new")
        self.assertEqual(await client.nlst(), ["docs"])

    async def test_errors(self) -> None:
        """Failures come back as L{FTPClientError} with the reply code."""
        client = await self.connect()
        error = await self.assertFailure(client.cwd("nope"), FTPClientError)
        self.assertEqual(error.code, 550)
        existing = os.path.join(self.local, "x")
        with open(existing, "wb") as f:
            f.write(b"keep me")
        error = await self.assertFailure(
            client.retrieveFile("nope", existing), FTPClientError
        )
        self.assertEqual(error.code, 550)
        with open(existing, "rb") as f:
            self.assertEqual(f.read(), b"keep me", "a failed download changes nothing")
        self.assertEqual(os.listdir(self.local), ["x"])
        self.assertEqual(await client.pwd(), "/", "the session goes on")

    async def test_ipv6(self) -> None:
        """
        Over IPv6 the client uses EPSV (passive) and EPRT (active), and the
        server listens and connects on ::1.
        """
        import socket

        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            unavailable("no IPv6 loopback (::1) on this machine")
        ftp = await startFTP(
            self,
            users={ALICE: PASSWORD},
            files={ALICE: {"a.txt": b"over six"}},
            config={"ftp": {"listen": ["tcp6:0:interface=\\:\\:1"]}},
        )
        host, port = ftp.address
        self.assertEqual(host, "::1")
        for passive in (True, False):
            client = await connectFTP(
                reactor, host, port, user=ALICE, password=PASSWORD, passive=passive
            )
            target = os.path.join(self.local, f"a-{passive}.txt")
            await client.retrieveFile("a.txt", target)
            with open(target, "rb") as f:
                self.assertEqual(f.read(), b"over six")
            await client.quit()

    async def test_implicitTLS(self) -> None:
        """
        Implicit FTPS (an ssl: endpoint, TLS from the first byte): the
        server knows the session is private and allows PROT P.
        """
        from appnet.tls import writeSelfSigned

        certs = os.path.abspath(self.mktemp())
        cert, key = os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem")
        writeSelfSigned(cert, key, "localhost")
        endpoint = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        ftp = await startFTP(
            self,
            users={ALICE: PASSWORD},
            files={ALICE: {"a.txt": b"private"}},
            config={"ftp": {"listen": [endpoint]}},
        )
        with open(cert, "rb") as f:
            options = clientTLS("localhost", f.read())
        host, port = ftp.address
        client = await connectFTP(
            reactor,
            host,
            port,
            user=ALICE,
            password=PASSWORD,
            tls=options,
            implicit=True,
        )
        self.addCleanup(client.quit)
        self.assertEqual(await client.nlst(), ["a.txt"])

    async def test_badLogin(self) -> None:
        """A wrong password fails the connect with 530."""
        ftp = await startFTP(
            self, users={ALICE: PASSWORD}, config={"auth": {"failure_delay": "0s"}}
        )
        host, port = ftp.address
        error = await self.assertFailure(
            connectFTP(reactor, host, port, user=ALICE, password="wrong"),
            FTPClientError,
        )
        self.assertEqual(error.code, 530)
