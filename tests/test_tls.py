"""
Tests for L{appnet.tls}: self-signed certificates and loading TLS material.
"""

from __future__ import annotations

import ipaddress
import os
import stat

from cryptography import x509
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    serverFromString,
    wrapClientTLS,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.errors import ConfigError
from appnet.tls import loadTLS, makeSelfSigned, writeSelfSigned
from tests.helpers import Echo


class SelfSignedTests(SynchronousTestCase):
    """
    L{makeSelfSigned} and L{writeSelfSigned}.
    """

    def test_names(self) -> None:
        """The certificate names the host, localhost and the loopbacks."""
        _, certPEM = makeSelfSigned("mail.example.org")
        cert = x509.load_pem_x509_certificate(certPEM)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(
            san.get_values_for_type(x509.DNSName), ["mail.example.org", "localhost"]
        )
        self.assertEqual(
            set(san.get_values_for_type(x509.IPAddress)),
            {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")},
        )

    def test_onlyHostname(self) -> None:
        """With C{loopback=False} the certificate names the host alone."""
        _, certPEM = makeSelfSigned("mail.example.org", loopback=False)
        cert = x509.load_pem_x509_certificate(certPEM)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["mail.example.org"])
        self.assertEqual(san.get_values_for_type(x509.IPAddress), [])

    def test_writeModes(self) -> None:
        """The key is written mode 0600; existing files are not replaced."""
        d = FilePath(self.mktemp())
        cert, key = d.child("cert.pem").path, d.child("key.pem").path
        writeSelfSigned(cert, key, "example.org")
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        self.assertRaises(FileExistsError, writeSelfSigned, cert, key, "example.org")
        writeSelfSigned(cert, key, "example.org", force=True)
        loadTLS(cert, key)


class LoadTests(SynchronousTestCase):
    """
    L{loadTLS} names the bad file and the problem.
    """

    def setUp(self) -> None:
        d = FilePath(self.mktemp())
        d.makedirs()
        self.cert, self.key = d.child("cert.pem"), d.child("key.pem")
        writeSelfSigned(self.cert.path, self.key.path, "example.org")

    def test_loads(self) -> None:
        material = loadTLS(self.cert.path, self.key.path)
        self.assertEqual(len(material.chain), 1)
        material.serverOptions().getContext()

    def test_missingCert(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            loadTLS(self.cert.path + ".missing", self.key.path)
        self.assertEqual(caught.exception.key, "tls.cert")

    def test_unreadableKey(self) -> None:
        # A directory cannot be read as a file, even by root.
        self.key.remove()
        self.key.makedirs()
        with self.assertRaises(ConfigError) as caught:
            loadTLS(self.cert.path, self.key.path)
        self.assertEqual(caught.exception.key, "tls.key")

    def test_notPEM(self) -> None:
        self.cert.setContent(b"hello")
        with self.assertRaises(ConfigError) as caught:
            loadTLS(self.cert.path, self.key.path)
        self.assertIn("no PEM certificate", caught.exception.problem)

    def test_mismatch(self) -> None:
        """A key that does not belong to the certificate is refused."""
        otherKey, _ = makeSelfSigned("other.example")
        self.key.setContent(otherKey)
        with self.assertRaises(ConfigError) as caught:
            loadTLS(self.cert.path, self.key.path)
        self.assertIn("does not match", caught.exception.problem)


class Collect(Protocol):
    def __init__(self) -> None:
        self.got: Deferred[bytes] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: object) -> None:
        self.lost.callback(None)

    def connectionMade(self) -> None:
        self.transport.write(b"over tls")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if not self.got.called:
            self.got.callback(data)


class EndpointTests(TestCase):
    """
    A generated certificate serves an C{ssl:} endpoint that a verifying TLS
    client accepts.
    """

    async def test_sslEndpoint(self) -> None:
        d = FilePath(self.mktemp())
        d.makedirs()
        cert, key = d.child("cert.pem"), d.child("key.pem")
        writeSelfSigned(cert.path, key.path, "localhost")
        endpoint = serverFromString(
            reactor,
            f"ssl:0:interface=127.0.0.1:privateKey={key.path}:certKey={cert.path}",
        )
        served: list[ClosingEcho] = []

        class ClosingEcho(Echo):
            def connectionMade(self) -> None:
                self.lost: Deferred[None] = Deferred()
                served.append(self)

            def connectionLost(self, reason: object) -> None:
                self.lost.callback(None)

        port = await endpoint.listen(Factory.forProtocol(ClosingEcho))
        self.addCleanup(port.stopListening)
        trust = Certificate.loadPEM(cert.getContent())
        client = wrapClientTLS(
            optionsForClientTLS("localhost", trust),
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
        )
        protocol = await connectProtocol(client, Collect())
        self.assertEqual(await protocol.got, b"over tls")
        protocol.transport.loseConnection()  # type: ignore[union-attr]
        await protocol.lost
        await served[0].lost


class ALPNTests(TestCase):
    """
    Clients offering ALPN complete the handshake with services that name no
    ALPN protocol (Twisted alone answers them with a fatal alert).
    """

    def setUp(self) -> None:
        d = FilePath(self.mktemp())
        d.makedirs()
        self.cert, self.key = d.child("cert.pem"), d.child("key.pem")
        writeSelfSigned(self.cert.path, self.key.path, "localhost")

    async def roundTrip(self, port: int) -> None:
        trust = Certificate.loadPEM(self.cert.getContent())
        client = wrapClientTLS(
            optionsForClientTLS(
                "localhost", trust, acceptableProtocols=[b"h2", b"imap"]
            ),
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
        )
        protocol = await connectProtocol(client, Collect())
        self.assertEqual(await protocol.got, b"over tls")
        self.assertIsNone(protocol.transport.negotiatedProtocol)  # type: ignore[union-attr]
        protocol.transport.loseConnection()  # type: ignore[union-attr]
        await protocol.lost

    async def test_sslListener(self) -> None:
        """An appnet ssl: listener accepts a client offering ALPN."""
        from appnet.testing import startStack
        from tests.helpers import echoBuilder

        endpoint = (
            f"ssl:0:interface=127.0.0.1:privateKey={self.key.path}"
            f":certKey={self.cert.path}"
        )
        stack = await startStack(
            self,
            builders=[echoBuilder("imap")],
            config={"imap": {"listen": [endpoint]}},
        )
        await self.roundTrip(stack.address("imap")[1])

    async def test_serverOptions(self) -> None:
        """The STARTTLS context factory accepts a client offering ALPN."""
        from twisted.internet.endpoints import SSL4ServerEndpoint

        options = loadTLS(self.cert.path, self.key.path).serverOptions()
        endpoint = SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1")
        lost: list[Deferred[None]] = []

        class Closing(Echo):
            def connectionMade(self) -> None:
                self.done: Deferred[None] = Deferred()
                lost.append(self.done)

            def connectionLost(self, reason: object) -> None:
                self.done.callback(None)

        port = await endpoint.listen(Factory.forProtocol(Closing))
        self.addCleanup(port.stopListening)
        await self.roundTrip(port.getHost().port)
        await lost[0]
