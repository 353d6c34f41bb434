"""
Shared pieces for the mail tests: servers over the in-memory store on a
L{StringTransport}, driven with a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.mail.interfaces import IMailboxPOP3
from zope.interface import implementer

from appnet.auth import (
    APOPChecker,
    Authenticator,
    LoginThrottle,
    UserChecker,
    hashPassword,
)
from appnet.mail.imap import IIMAPAccount, IMAPServerFactory, accountFactory
from appnet.mail.pop3 import POP3ServerFactory, maildropFactory
from appnet.mail.realm import MailRealm
from appnet.mail.routing import Router
from appnet.mail.smtpserver import SMTPRole, SMTPServer, SMTPServerFactory
from appnet.status import Status
from appnet.store.interfaces import DeliveryTarget
from appnet.store.memory import MemoryStore

ALICE = "alice@example.org"
BOB = "bob@example.org"
PASSWORD = "pw-alice-1"


def inline(fn: Any, *args: Any) -> Deferred[Any]:
    """Run a "threaded" call inline, for deterministic tests."""
    return succeed(fn(*args))


class ManualThreads:
    """
    A thread runner whose calls wait until the test runs them: what it
    holds was not run on the reactor's turn that asked for it.

    @ivar calls: the functions waiting, in order.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple[Any, ...], Deferred[Any]]] = []
        self.ran: list[Any] = []

    def __call__(self, fn: Any, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((fn, args, d))
        return d

    def runOne(self) -> None:
        """Run the oldest waiting call and fire its Deferred."""
        fn, args, d = self.calls.pop(0)
        self.ran.append(fn)
        try:
            result = fn(*args)
        except BaseException:
            d.errback()
        else:
            d.callback(result)

    def runAll(self) -> None:
        """Run calls until none waits (new ones included)."""
        while self.calls:
            self.runOne()


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    """A string transport that records STARTTLS."""

    tlsStarted: Any = None

    def startTLS(self, contextFactory: Any) -> None:
        self.tlsStarted = contextFactory


class MailWorld:
    """
    A memory store with alice and bob, and what servers need around it.
    """

    def __init__(
        self,
        *,
        aliases: dict[str, tuple[str, ...]] | None = None,
        catchAll: str | None = None,
        quota: int | None = None,
        domains: tuple[str, ...] = ("example.org",),
        apop: bool = False,
    ) -> None:
        """
        @param apop: offer POP3 APOP (an APOP checker in the portal, and
            L{pop3Factory} greets with a timestamp), as C{[pop3] apop}.
        """
        self.clock = Clock()
        self.apop = apop
        #: What POP3 runs its file reads in (inline; a test may replace it
        #: before making a factory).
        self.blocking: Any = inline
        self.store = MemoryStore()
        self.store.mail._now = self.clock.seconds  # type: ignore[misc]
        for user in (ALICE, BOB):
            self.store.users.addUser(user, hashPassword(PASSWORD, log2n=4))
        checker = UserChecker(self.store.users, "example.org", inline)
        self.auth = Authenticator(
            checker,
            LoginThrottle(self.clock, maxFailures=3),
            self.clock,
            0.0,
            APOPChecker(self.store.users, "example.org") if apop else None,
        )
        self.status = Status(self.clock)
        self.realm = MailRealm()
        self.realm.register(
            IMailboxPOP3, maildropFactory(self.store.mail, self.clock, 1200)
        )
        self.realm.register(
            IIMAPAccount, accountFactory(self.store.mail, self.store.users, quota)
        )
        self.domains = domains

        async def localDomains() -> frozenset[str]:
            return frozenset(self.domains) | await self.store.users.domains()

        self.router = Router(
            self.store.users, localDomains, quota, aliases or {}, catchAll
        )

    def smtpFactory(
        self,
        submission: bool = False,
        tls: bool = False,
        maxRecipients: int = 100,
        maxMessageSize: int = 10000,
        hopLimit: int = 5,
    ) -> SMTPServerFactory:
        role = SMTPRole(
            "submission" if submission else "smtp", submission, maxRecipients
        )
        return SMTPServerFactory(
            role=role,
            hostname="mx.example.org",
            store=self.store,
            router=self.router,
            auth=self.auth,
            realm=self.realm,
            status=self.status,
            clock=self.clock,
            tlsOptions=object() if tls else None,
            idleTimeout=300,
            maxMessageSize=maxMessageSize,
            hopLimit=hopLimit,
        )

    def pop3Factory(self, tls: bool = False) -> POP3ServerFactory:
        return POP3ServerFactory(
            blocking=self.blocking,
            hostname="pop.example.org",
            store=self.store.mail,
            auth=self.auth,
            realm=self.realm,
            status=self.status,
            clock=self.clock,
            tlsOptions=object() if tls else None,
            idleTimeout=600,
            apop=self.apop,
        )

    def imapFactory(self, tls: bool = False, **kw: Any) -> IMAPServerFactory:
        options: dict[str, Any] = {
            "idleTimeout": 1800,
            "idleKeepalive": 120,
            "maxAppendSize": 10000,
            "maxLiteralSize": 1000,
        }
        options.update(kw)
        return IMAPServerFactory(
            hostname="imap.example.org",
            store=options.pop("store", self.store.mail),
            auth=self.auth,
            realm=self.realm,
            status=self.status,
            clock=self.clock,
            blocking=inline,
            tlsOptions=object() if tls else None,
            **options,
        )

    def deliver(self, owner: str, data: bytes) -> int:
        staged = self.store.mail.stage()
        staged.write(data)
        d = self.store.mail.deliver(staged, [DeliveryTarget(owner)])
        result: list[Any] = []
        d.addCallback(result.append)
        return int(result[0][0])

    def connect(
        self, factory: Any, peer: str = "192.0.2.7", tlsCapable: bool = True
    ) -> Session:
        protocol = factory.buildProtocol(IPv4Address("TCP", peer, 40000))
        transport = (TLSStringTransport if tlsCapable else StringTransport)(
            peerAddress=IPv4Address("TCP", peer, 40000),
            hostAddress=IPv4Address("TCP", "198.51.100.1", 25),
        )
        protocol.makeConnection(transport)
        return Session(protocol, transport)


class Session:
    """One server connection on a string transport."""

    def __init__(self, protocol: Any, transport: StringTransport) -> None:
        self.protocol = protocol
        self.transport = transport

    def read(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return bytes(data)

    def lines(self) -> list[str]:
        return self.read().decode().splitlines()

    def send(self, data: bytes | str) -> list[str]:
        if isinstance(data, str):
            data = data.encode()
        self.protocol.dataReceived(data)
        self.pump()
        return self.lines()

    def pump(self) -> None:
        """Run a registered pull producer (a file being sent) to its end."""
        while self.transport.producer is not None:
            self.transport.producer.resumeProducing()

    def command(self, line: str) -> list[str]:
        return self.send(line + "\r\n")

    @property
    def smtp(self) -> SMTPServer:
        assert isinstance(self.protocol, SMTPServer)
        return self.protocol


class SlowUsers:
    """A user store whose lookups wait until the test says so."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.pending: list[Deferred[Any]] = []

    def getUser(self, address: str) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.pending.append(d)
        return d.addCallback(lambda _: self.real.getUser(address))

    def release(self) -> None:
        while self.pending:
            self.pending.pop(0).callback(None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)
