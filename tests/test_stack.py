"""
Integration tests for L{appnet.stack.Stack}: real sockets on 127.0.0.1,
ephemeral ports, everything stopped afterwards.
"""

from __future__ import annotations

import os
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from appnet.errors import ListenError
from appnet.testing import startStack
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
