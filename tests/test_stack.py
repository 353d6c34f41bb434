"""
Integration tests for L{appnet.stack.Stack}: real sockets on 127.0.0.1,
ephemeral ports, everything stopped afterwards.
"""

from __future__ import annotations

import os
import poplib
import socket
import ssl

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from appnet.errors import ListenError
from appnet.testing import startStack
from appnet.tls import writeSelfSigned
from tests.helpers import echoBuilder, storeThreads


class Collect(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.got: Deferred[bytes] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if not self.got.called:
            self.got.callback(self.data)

    def connectionLost(self, reason: object) -> None:
        self.lost.callback(None)


async def connect(host: str, port: int) -> Collect:
    return await connectProtocol(TCP4ClientEndpoint(reactor, host, port), Collect())


class StackTests(TestCase):
    """
    A stack binds each enabled service's endpoints and stops cleanly.
    """

    async def test_listensAndServes(self) -> None:
        """Each service listens on its own ephemeral loopback port."""
        stack = await startStack(self, builders=[echoBuilder("smtp", "pop3")])
        smtp, pop3 = stack.address("smtp"), stack.address("pop3")
        self.assertEqual(smtp[0], "127.0.0.1")
        self.assertNotEqual(smtp[1], pop3[1])
        client = await connect(*smtp)
        client.transport.write(b"ping")  # type: ignore[union-attr]
        self.assertEqual(await client.got, b"ping")
        client.transport.loseConnection()  # type: ignore[union-attr]
        await client.lost

    async def test_severalEndpoints(self) -> None:
        """A service listens on every endpoint of its list."""
        stack = await startStack(
            self,
            builders=[echoBuilder("http")],
            config={"http": {"listen": ["tcp:0:interface=127.0.0.1"] * 2}},
        )
        self.assertEqual(len(stack.listeners("http")), 2)

    async def test_disabledNotBound(self) -> None:
        stack = await startStack(
            self,
            builders=[echoBuilder("smtp", "pop3")],
            config={"pop3": {"enabled": False}},
        )
        self.assertEqual(stack.listeners("pop3"), [])
        self.assertEqual(len(stack.listeners("smtp")), 1)

    async def test_stopLeavesNothing(self) -> None:
        """
        Stopping closes the ports and open connections and joins the store's
        threads; trial's reactor check finds no leftover selectable or timer.
        """
        stack = await startStack(builders=[echoBuilder("smtp")])
        host, port = stack.address("smtp")
        client = await connect(host, port)
        self.assertTrue(storeThreads())
        await stack.stop()
        await client.lost
        self.assertEqual(storeThreads(), [])
        probe = socket.socket()
        self.addCleanup(probe.close)
        self.assertNotEqual(probe.connect_ex((host, port)), 0)
        self.assertFalse(os.path.exists(stack.dataDir.root.path))

    async def test_portInUse(self) -> None:
        """
        A port in use fails start-up with a ListenError naming the service
        and the endpoint; ports bound before it are released.
        """
        blocker = socket.socket()
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        busy = blocker.getsockname()[1]
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        freePort = free.getsockname()[1]
        free.close()
        endpoint = f"tcp:{busy}:interface=127.0.0.1"
        with self.assertRaises(ListenError) as caught:
            await startStack(
                builders=[echoBuilder("smtp", "pop3")],
                config={
                    "smtp": {"listen": [f"tcp:{freePort}:interface=127.0.0.1"]},
                    "pop3": {"listen": [endpoint]},
                },
            )
        error = caught.exception
        self.assertEqual((error.service, error.endpoint), ("pop3", endpoint))
        self.assertIn("in use", str(error))
        again = socket.socket()
        self.addCleanup(again.close)
        again.bind(("127.0.0.1", freePort))

    async def test_usersAndDomains(self) -> None:
        """Fixture users exist; their domains are local, with configured ones."""
        stack = await startStack(
            self,
            builders=[],
            users={"bob@hamburger.edu": "bob-password"},
            config={"mail": {"domains": ["crepes.fr"]}},
        )
        self.assertEqual(
            await stack.stack.context.localDomains(),
            frozenset({"crepes.fr", "hamburger.edu"}),
        )
        avatar = await stack.stack.context.auth.checker.requestAvatarId(
            __import__("twisted.cred.credentials").cred.credentials.UsernamePassword(
                b"bob@hamburger.edu", b"bob-password"
            )
        )
        self.assertEqual(avatar, "bob@hamburger.edu")

    async def test_tlsFromDataDir(self) -> None:
        """A certificate in DATA/tls is loaded for STARTTLS."""
        from appnet.tls import writeSelfSigned

        path = self.mktemp()
        os.makedirs(os.path.join(path, "tls"))
        writeSelfSigned(
            os.path.join(path, "tls", "cert.pem"),
            os.path.join(path, "tls", "key.pem"),
            "mail.example.org",
        )
        stack = await startStack(self, builders=[], dataDir=path)
        tls = stack.stack.context.tls
        assert tls is not None
        self.assertIn("mail.example.org", tls.leaf.subject.rfc4514_string())


def _popCertificate(host: str, port: int) -> tuple[bytes, bytes | None]:
    """
    (CAPA reply, DER certificate after STLS or None) from a real POP3
    client; blocking, so tests run it in a thread.
    """
    client = poplib.POP3(host, port, timeout=10)
    try:
        capabilities = " ".join(client.capa()).encode("ascii")
        if b"STLS" not in capabilities:
            return capabilities, None
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client.stls(context)
        return capabilities, client.sock.getpeercert(binary_form=True)
    finally:
        client.quit()


def _der(path: str) -> bytes:
    with open(path, "rb") as f:
        return ssl.PEM_cert_to_DER_cert(f.read().decode("ascii"))


class TLSReloadTests(TestCase):
    """
    The certificate for STARTTLS, STLS and AUTH TLS can be replaced while
    the stack runs, and start-up lines say which listeners offer TLS.
    """

    def certificate(self, data: str, name: str) -> str:
        os.makedirs(os.path.join(data, "tls"), exist_ok=True)
        cert = os.path.join(data, "tls", "cert.pem")
        writeSelfSigned(cert, os.path.join(data, "tls", "key.pem"), name, force=True)
        return cert

    async def test_startupLinesNameUpgrade(self) -> None:
        """
        With a certificate loaded, each listener's line names its upgrade
        command instead of "plain".
        """
        data = self.mktemp()
        self.certificate(data, "mail.example.org")
        stack = await startStack(self, dataDir=data)
        security = {
            b.service: b.security
            for b in stack.stack.addresses.all()
            if b.transport == "tcp"
        }
        self.assertEqual(security["smtp"], "STARTTLS")
        self.assertEqual(security["submission"], "STARTTLS")
        self.assertEqual(security["imap"], "STARTTLS")
        self.assertEqual(security["pop3"], "STLS")
        self.assertEqual(security["ftp"], "AUTH TLS")
        self.assertEqual(security["http"], "plain")
        line = str([b for b in stack.stack.addresses.all() if b.service == "pop3"][0])
        self.assertTrue(line.endswith("(STLS)"), line)

    async def test_reloadOffersAndReplaces(self) -> None:
        """
        A certificate made after start is offered from the next session
        once reloaded (SIGHUP's work); a renewed one replaces it; a broken
        file is refused and the current certificate stays.
        """
        data = self.mktemp()
        os.makedirs(data)
        stack = await startStack(
            self, dataDir=data, builders=["appnet.mail.server:buildMail"]
        )
        host, port = stack.address("pop3")
        capabilities, cert = await deferToThread(_popCertificate, host, port)
        self.assertIsNone(cert)
        first = self.certificate(data, "first.example.org")
        stack.stack.reloadTLS()
        capabilities, cert = await deferToThread(_popCertificate, host, port)
        self.assertIn(b"STLS", capabilities)
        self.assertEqual(cert, _der(first))
        second = _der(self.certificate(data, "second.example.org"))
        stack.stack.reloadTLS()
        _, cert = await deferToThread(_popCertificate, host, port)
        self.assertEqual(cert, second)
        with open(os.path.join(data, "tls", "cert.pem"), "wb") as f:
            f.write(b"not a certificate\n")
        stack.stack.reloadTLS()
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        _, cert = await deferToThread(_popCertificate, host, port)
        self.assertEqual(cert, second)
