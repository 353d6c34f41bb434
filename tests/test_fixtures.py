"""
Tests for L{appnet.fixtures.start}, the one fixture for every protocol.
"""

from __future__ import annotations

import ftplib
import imaplib
import io
import smtplib
import warnings
from email.message import EmailMessage

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import TestCase

from appnet.mail.client import send
from appnet.testing import Address, start, startDNS, startMail
from tests.helpers import storeThreads
from tests.mail.sockets import inThread

ALICE = "alice@example.org"
BOB = "bob@example.org"
ZONE = """\
$TTL 300
@   IN SOA ns.example.org. admin.example.org. 1 3600 600 86400 300
@   IN NS  ns.example.org.
ns  IN A   127.0.0.1
www IN A   192.0.2.7
"""


def _message(subject: str, to: str = BOB) -> bytes:
    m = EmailMessage()
    m["From"] = ALICE
    m["To"] = to
    m["Subject"] = subject
    m.set_content("hello")
    return m.as_bytes()


class StartTests(TestCase):
    async def test_onlyWhatIsAsked(self) -> None:
        """
        Only the named services listen; the others are not started at all.
        """
        s = await start(self, "smtp", "dns", users={BOB: "bob-secret"})
        self.assertEqual(s.address("smtp")[0], "127.0.0.1")
        self.assertEqual(s.address("dns")[0], "127.0.0.1")
        for other in ("imap", "pop3", "submission", "ftp", "http"):
            self.assertRaises(KeyError, s.address, other)

    async def test_unknownService(self) -> None:
        """An unknown service name is refused, naming the choices."""
        with self.assertRaises(ValueError) as caught:
            await start(self, "gopher")
        self.assertIn("smtp", str(caught.exception))

    async def test_passwordsStated(self) -> None:
        """
        Accounts get the passwords the test gives; a bare list (whose
        passwords would be hidden) is refused.
        """
        with self.assertRaises(TypeError):
            await start(self, "smtp", users=[BOB])  # type: ignore[arg-type]
        s = await start(self, "submission", users={ALICE: "alice-pw-1", BOB: "b-2"})
        host, port = s.address("submission")
        await send(
            reactor,
            host,
            port,
            sender=ALICE,
            recipients=[BOB],
            message=_message("stated"),
            username=ALICE,
            password="alice-pw-1",
            tls="none",
        )
        [stored] = await s.deliveredTo(BOB)
        self.assertEqual(stored.message["Subject"], "stated")

    async def test_smtplib(self) -> None:
        """
        smtplib sends to the MX port; C{deliveredTo} shows the message.
        """
        s = await start(self, "smtp", users={BOB: "x-secret"})
        host, port = s.address("smtp")

        def sendIt() -> None:
            with smtplib.SMTP(host, port, timeout=10) as client:
                client.sendmail(ALICE, [BOB], _message("via smtplib"))

        await inThread(sendIt)
        [stored] = await s.deliveredTo(BOB)
        self.assertEqual(stored.message["Subject"], "via smtplib")

    async def test_sessionsClosedByFixture(self) -> None:
        """
        IMAP, POP3 and FTP sessions the fixture opens are closed by its
        own cleanup: stopping leaves no store thread and no session.
        """
        s = await start(self, "imap", "pop3", "ftp", users={BOB: "bob-pw-123"})
        imap = await s.imap(BOB)
        self.assertEqual([f.name for f in await imap.listFolders()][0], "INBOX")
        pop3 = await s.pop3(BOB)
        self.assertEqual(await pop3.stat(), (0, 0))
        ftp = await s.ftpClient(BOB)
        self.assertIsNotNone(ftp)
        await s.stop()
        self.assertEqual(storeThreads(), [])
        self.assertIsNone(pop3.transport.connected or None)

    async def test_tls(self) -> None:
        """
        With C{tls=True} the stack has a certificate: the fixture's IMAP
        session starts TLS, verified against it.
        """
        s = await start(self, "imap", users={BOB: "bob-pw-123"}, tls=True)
        imap = await s.imap(BOB)
        self.assertTrue(s.running.dataDir.tlsCert.exists())

        def offered() -> tuple[str, ...]:
            with imaplib.IMAP4(*s.address("imap"), timeout=10) as plain:
                caps: tuple[str, ...] = plain.capabilities
                return caps

        self.assertIn("STARTTLS", await inThread(offered))
        self.assertEqual((await imap.listFolders())[0].name, "INBOX")

    async def test_dnsQueriesSeen(self) -> None:
        """Zones given as text are served; every query is recorded."""
        s = await start(self, "dns", zones={"example.org": ZONE})
        client = s.dnsClient()
        [address] = await client.lookupAddresses("www.example.org")
        self.assertEqual(address, "192.0.2.7")
        self.assertEqual(s.dnsQueries[-1].name, "www.example.org")

    async def test_httpRequestsSeen(self) -> None:
        """Web root files are served; every request is recorded."""
        s = await start(self, "http", www={"index.html": b"<h1>hi</h1>"})
        response = await s.web.client().get(s.url("/index.html?x=1"))
        self.assertEqual(await response.content(), b"<h1>hi</h1>")
        [seen] = s.httpRequests
        self.assertEqual(
            (seen.method, seen.path, seen.code), ("GET", "/index.html?x=1", 200)
        )

    async def test_ftpUploadsSeen(self) -> None:
        """Files given are in the home; files uploaded show in C{files}."""
        s = await start(
            self, "ftp", users={BOB: "bob-pw-123"}, files={BOB: {"a.txt": b"A"}}
        )
        host, port = s.address("ftp")

        def upload() -> bytes:
            with ftplib.FTP() as ftp:
                ftp.connect(host, port, timeout=10)
                ftp.login(BOB, "bob-pw-123")
                ftp.storbinary("STOR b.bin", io.BytesIO(b"B" * 10))
                out = io.BytesIO()
                ftp.retrbinary("RETR a.txt", out.write)
                return out.getvalue()

        self.assertEqual(await inThread(upload), b"A")
        self.assertEqual(s.files(BOB), {"a.txt": b"A", "b.bin": b"B" * 10})
        self.assertEqual(s.uploaded(BOB, "/b.bin"), b"B" * 10)


class ClockTests(TestCase):
    async def test_fiveDayRetrySchedule(self) -> None:
        """
        A message to an MX that never answers is retried for five days on
        the fixture's virtual clock, then bounced to its sender: the whole
        schedule runs on that clock, none of it waits for wall time.
        """
        closed = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        port = closed.getHost().port
        await closed.stopListening()
        zone = ZONE.replace("example.org", "far.test") + "@ IN MX 10 ns.far.test.\n"
        s = await start(
            self,
            "submission",
            "dns",
            users={ALICE: "alice-pw-1"},
            zones={"far.test": zone},
            config={"mail": {"relay_port": port}},
        )
        host, submission = s.address("submission")
        await send(
            reactor,
            host,
            submission,
            sender=ALICE,
            recipients=["bob@far.test"],
            message=_message("five days", "bob@far.test"),
            username=ALICE,
            password="alice-pw-1",
            tls="none",
        )
        began = s.clock.seconds()
        await s.advance(days=5, minutes=1)
        self.assertGreaterEqual(s.clock.seconds() - began, 5 * 86400)
        self.assertEqual(await s.queued(), [])
        warning, bounce = await s.deliveredTo(ALICE)
        self.assertEqual(
            warning.message["Subject"], "Delayed Mail (still being retried)"
        )
        self.assertIn("4.4.7", bounce.data.decode())
        self.assertGreater(s.stack.status.counter("queue", "deferred"), 30)

    async def test_dnsTTLOnClock(self) -> None:
        """
        The DNS cache ages on the fixture's clock: a forwarded answer (TTL
        300) is served from the cache until the test moves the clock past
        its TTL, then asked upstream again.
        """
        upstream = await startDNS(self, zones={"example.org": ZONE})
        host, port = upstream.address()
        s = await start(self, "dns", config={"dns": {"forward": [f"{host}:{port}"]}})
        client = s.dnsClient()
        answer = await client.lookupAddresses("www.example.org")
        self.assertEqual(answer, ["192.0.2.7"])
        asked = len(upstream.queries)
        await client.lookupAddresses("www.example.org")
        self.assertEqual(len(upstream.queries), asked)
        s.clock.advance(299)
        await client.lookupAddresses("www.example.org")
        self.assertEqual(len(upstream.queries), asked)
        s.clock.advance(2)
        await client.lookupAddresses("www.example.org")
        self.assertGreater(len(upstream.queries), asked)

    async def test_idleTimeoutOnClock(self) -> None:
        """
        Protocol idle timeouts run on the fixture's clock: an SMTP client
        that says nothing is told 421 once the test moves the clock past
        the timeout, not before.
        """
        s = await start(self, "smtp")
        lines: list[bytes] = []
        greeted: Deferred[None] = Deferred()
        closed: Deferred[None] = Deferred()

        class Quiet(LineReceiver):
            def lineReceived(self, line: bytes) -> None:
                lines.append(line)
                if not greeted.called:
                    greeted.callback(None)

            def connectionLost(self, reason: object = None) -> None:
                closed.callback(None)

        host, port = s.address("smtp")
        await connectProtocol(TCP4ClientEndpoint(reactor, host, port), Quiet())
        await greeted
        s.clock.advance(299)
        self.assertEqual(len(lines), 1)
        s.clock.advance(1)
        await closed
        self.assertTrue(lines[-1].startswith(b"421 4.4.2"), lines)

    async def test_httpIdleTimeoutOnClock(self) -> None:
        """
        The web server's timeouts run on the fixture's clock too: a
        connection that sends nothing is closed once the test moves the
        clock past the idle timeout, not before.
        """
        s = await start(self, "http")
        closed: Deferred[None] = Deferred()

        class Silent(LineReceiver):
            def connectionLost(self, reason: object = None) -> None:
                closed.callback(None)

        host, port = s.address("http")
        client = await connectProtocol(
            TCP4ClientEndpoint(reactor, host, port), Silent()
        )
        timeout = s.stack.config.http.idle_timeout
        s.clock.advance(timeout - 1)
        self.assertFalse(closed.called)
        self.assertTrue(client.transport.connected)  # type: ignore[union-attr]
        s.clock.advance(2)
        await closed

    async def test_ftpIdleTimeoutOnClock(self) -> None:
        """
        So do the FTP server's: an idle control connection is told 421
        once the test moves the clock past the idle timeout.
        """
        s = await start(self, "ftp")
        lines: list[bytes] = []
        greeted: Deferred[None] = Deferred()
        closed: Deferred[None] = Deferred()

        class Quiet(LineReceiver):
            def lineReceived(self, line: bytes) -> None:
                lines.append(line)
                if not greeted.called:
                    greeted.callback(None)

            def connectionLost(self, reason: object = None) -> None:
                closed.callback(None)

        host, port = s.address("ftp")
        await connectProtocol(TCP4ClientEndpoint(reactor, host, port), Quiet())
        await greeted
        timeout = s.stack.config.ftp.idle_timeout
        s.clock.advance(timeout - 1)
        self.assertEqual(len(lines), 1)
        s.clock.advance(2)
        await closed
        self.assertTrue(lines[-1].startswith(b"421"), lines)


class AddressShapeTests(TestCase):
    async def test_addressCalled(self) -> None:
        """
        Every fixture's address is called: C{start(...).address("smtp")},
        C{startDNS(...).address()}; the old tuple form still works but
        warns.
        """
        dns = await startDNS(self)
        host, port = dns.address()
        self.assertEqual(host, "127.0.0.1")
        self.assertIsInstance(dns.address, Address)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            oldHost, oldPort = dns.address
        self.assertEqual((oldHost, oldPort), (host, port))
        self.assertEqual(caught[0].category, DeprecationWarning)

    async def test_hiddenPasswordsDeprecated(self) -> None:
        """C{startMail(users=[...])} still works, with a deprecation warning."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mail = await startMail(self, users=[BOB])
        self.assertEqual(mail.passwords[BOB], f"pw-{BOB}")
        self.assertEqual(caught[0].category, DeprecationWarning)
