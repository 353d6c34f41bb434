"""
Tests for L{appnet.faults}: each kind of scripted fault, as a real client
sees it (smtplib, dig, ftplib, curl, imaplib, poplib), and the registry's
counting, logging and self-clearing.
"""

from __future__ import annotations

import ftplib
import imaplib
import io
import json
import poplib
import smtplib
import subprocess
from email.message import EmailMessage
from typing import Any

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.faults import Fault, FaultError, Faults
from appnet.testing import start
from tests.interop import need
from tests.mail.sockets import inThread

ALICE = "alice@example.org"
BOB = "bob@example.org"
PASSWORD = "bob-pw-123"
ZONE = """\
$TTL 300
@   IN SOA ns.example.org. admin.example.org. 1 3600 600 86400 300
@   IN NS  ns.example.org.
@   IN MX  10 mx.example.org.
ns  IN A   127.0.0.1
mx  IN A   192.0.2.25
www IN A   192.0.2.7
"""


def message(subject: str = "hi") -> bytes:
    m = EmailMessage()
    m["From"] = ALICE
    m["To"] = BOB
    m["Subject"] = subject
    m.set_content("hello")
    return m.as_bytes()


def smtpSend(address: tuple[str, int], subject: str = "hi") -> None:
    with smtplib.SMTP(*address, timeout=10) as client:
        client.sendmail(ALICE, [BOB], message(subject))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


class RegistryTests(SynchronousTestCase):
    def test_clearsAfterUses(self) -> None:
        """
        A fault fires for its scripted number of uses, is counted, and
        then clears itself.
        """
        faults = Faults()
        fault = faults.smtp("RCPT", 451, times=2)
        self.assertTrue(faults.has("smtp"))
        self.assertFalse(faults.has("dns"))
        self.assertIs(faults.take("smtp", "RCPT"), fault)
        self.assertIs(faults.take("smtp", "RCPT"), fault)
        self.assertIsNone(faults.take("smtp", "RCPT"))
        self.assertEqual(fault.used, 2)
        self.assertEqual(faults.pending(), [])
        self.assertFalse(faults.has("smtp"))
        self.assertEqual(faults.count("smtp"), 2)
        self.assertEqual(faults.fired[0], "smtp RCPT reply 451 (1 of 2)")

    def test_matching(self) -> None:
        """DNS faults match a name and type; HTTP ones a path prefix."""
        faults = Faults()
        faults.dns("Mail.Example.org.", "servfail", type="MX")
        faults.http("/api/", status=503)
        self.assertIsNone(faults.take("dns", "query", "mail.example.org", "A"))
        self.assertIsNotNone(faults.take("dns", "query", "mail.example.org", "MX"))
        self.assertIsNone(faults.take("http", "request", "/index.html"))
        self.assertIsNotNone(faults.take("http", "request", "/api/users"))

    def test_badFaults(self) -> None:
        """An impossible fault is refused, naming the problem."""
        faults = Faults()
        for bad in (
            Fault("gopher", "x", "y"),
            Fault("smtp", "HELO", "reply", code=451),
            Fault("dns", "query", "explode"),
            Fault("smtp", "RCPT", "reply", code=250),
            Fault("dns", "query", "servfail", qtype="BOGUS"),
        ):
            self.assertRaises(FaultError, faults.add, bad)
        self.assertRaises(FaultError, faults.fromJSON, {"protocol": "smtp"})
        self.assertRaises(
            FaultError,
            faults.fromJSON,
            {"protocol": "smtp", "point": "RCPT", "action": "reply", "colour": 1},
        )

    def test_logged(self) -> None:
        """Every firing is logged."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        faults = Faults()
        faults.pop3("RETR")
        faults.take("pop3", "command", "RETR")
        self.assertIn("pop3 command RETR err", events[-1]["fault"])


class SMTPFaultTests(TestCase):
    async def test_rcpt(self) -> None:
        """
        The next two RCPTs are answered 451: smtplib raises
        SMTPRecipientsRefused twice, then the message goes through.
        """
        s = await start(self, "smtp", users={BOB: PASSWORD})
        s.faults.smtp("RCPT", 451, "4.7.1 Greylisted", times=2)
        for _ in range(2):
            failure = await self.assertFailure(
                inThread(smtpSend, s.address("smtp")), smtplib.SMTPRecipientsRefused
            )
            self.assertEqual(failure.recipients[BOB][0], 451)
        await inThread(smtpSend, s.address("smtp"))
        self.assertEqual(len(await s.deliveredTo(BOB)), 1)
        self.assertEqual(s.faults.count("smtp"), 2)
        self.assertEqual(s.stack.status.counter("faults", "smtp"), 2)

    async def test_mail(self) -> None:
        """MAIL answered 550: smtplib raises SMTPSenderRefused."""
        s = await start(self, "smtp", users={BOB: PASSWORD})
        s.faults.smtp("MAIL", 550, "5.7.1 Go away")
        failure = await self.assertFailure(
            inThread(smtpSend, s.address("smtp")), smtplib.SMTPSenderRefused
        )
        self.assertEqual(failure.smtp_code, 550)

    async def test_data(self) -> None:
        """DATA answered 554: smtplib raises SMTPDataError; nothing stored."""
        s = await start(self, "smtp", users={BOB: PASSWORD})
        s.faults.smtp("DATA", 554)
        failure = await self.assertFailure(
            inThread(smtpSend, s.address("smtp")), smtplib.SMTPDataError
        )
        self.assertEqual(failure.smtp_code, 554)
        self.assertEqual(await s.deliveredTo(BOB), [])

    async def test_endOfData(self) -> None:
        """The reply after the message can be scripted: 452 at its end."""
        s = await start(self, "smtp", users={BOB: PASSWORD})
        s.faults.smtp("message", 452, "4.3.1 Insufficient storage")
        failure = await self.assertFailure(
            inThread(smtpSend, s.address("smtp")), smtplib.SMTPDataError
        )
        self.assertEqual(failure.smtp_code, 452)
        self.assertEqual(await s.deliveredTo(BOB), [])

    async def test_dropAfterData(self) -> None:
        """
        The connection is dropped when the data ends: smtplib raises
        SMTPServerDisconnected, and no message was kept.
        """
        s = await start(self, "smtp", users={BOB: PASSWORD})
        s.faults.smtpDropAfterData()
        await self.assertFailure(
            inThread(smtpSend, s.address("smtp")), smtplib.SMTPServerDisconnected
        )
        self.assertEqual(await s.deliveredTo(BOB), [])
        await inThread(smtpSend, s.address("smtp"))
        self.assertEqual(len(await s.deliveredTo(BOB)), 1)

    async def test_slowGreeting(self) -> None:
        """
        A slow greeting waits on the virtual clock: a client that will not
        wait times out; once the clock has moved on, it arrives.
        """
        s = await start(self, "smtp", users={BOB: PASSWORD})
        s.faults.smtpSlowGreeting(30)

        def impatient() -> None:
            smtplib.SMTP(*s.address("smtp"), timeout=0.3)

        await self.assertFailure(inThread(impatient), smtplib.SMTPServerDisconnected)
        self.assertEqual(s.faults.count(), 1)
        s.clock.advance(30)
        await inThread(smtpSend, s.address("smtp"))

    async def test_overJSON(self) -> None:
        """
        A fault scripted over the testing API (curl POST /_appnet/faults)
        is what smtplib then meets; the API lists it as fired.
        """
        curl = need("curl", "curl")
        s = await start(
            self,
            "smtp",
            "http",
            users={BOB: PASSWORD},
            config={"http": {"test_api": True}},
        )
        body = json.dumps(
            {"protocol": "smtp", "point": "RCPT", "action": "reply", "code": 421}
        )
        added = await inThread(
            run, curl, "-s", "-H", "Content-Type: application/json",
            "-d", body, s.url("/_appnet/faults"),
        )  # fmt: skip
        self.assertEqual(json.loads(added.stdout)["times"], 1)
        failure = await self.assertFailure(
            inThread(smtpSend, s.address("smtp")), smtplib.SMTPRecipientsRefused
        )
        self.assertEqual(failure.recipients[BOB][0], 421)
        listed = await inThread(run, curl, "-s", s.url("/_appnet/faults"))
        state = json.loads(listed.stdout)
        self.assertEqual(state["pending"], [])
        self.assertEqual(state["fired"], ["smtp RCPT reply 421 (1 of 1)"])
        refused = await inThread(
            run, curl, "-s", "-o", "/dev/null", "-w", "%{http_code}",
            "-d", body, s.url("/_appnet/faults"),
        )  # fmt: skip
        self.assertEqual(refused.stdout, "415")
        bad = await inThread(
            run, curl, "-s", "-H", "Content-Type: application/json",
            "-d", '{"protocol": "smtp", "point": "HELO", "action": "reply"}',
            s.url("/_appnet/faults"),
        )  # fmt: skip
        self.assertEqual(
            json.loads(bad.stdout), {"error": "smtp has no fault point 'HELO'"}
        )

    async def test_transcript(self) -> None:
        """A fault shows in the connection's --trace transcript."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        s = await start(self, "smtp", users={BOB: PASSWORD}, config={"trace": ["smtp"]})
        s.faults.smtp("RCPT", 450)
        await self.assertFailure(
            inThread(smtpSend, s.address("smtp")), smtplib.SMTPRecipientsRefused
        )
        lines = [e.get("line", "") for e in events if e.get("direction") == "!"]
        self.assertEqual(lines, ["fault: smtp RCPT reply 450 (1 of 1)"])


class DNSFaultTests(TestCase):
    async def dig(self, s: Any, *args: str) -> str:
        dig = need("dig", "bind9-dnsutils")
        host, port = s.address("dns")
        done = await inThread(
            run, dig, f"@{host}", "-p", str(port), "+tries=1", "+time=1", *args
        )
        return done.stdout

    async def test_servfail(self) -> None:
        """dig sees SERVFAIL for the scripted name and type, once."""
        s = await start(self, "dns", zones={"example.org": ZONE})
        s.faults.dns("example.org", "servfail", type="MX")
        self.assertIn("status: NOERROR", await self.dig(s, "example.org", "A"))
        self.assertIn("status: SERVFAIL", await self.dig(s, "example.org", "MX"))
        self.assertIn("status: NOERROR", await self.dig(s, "example.org", "MX"))

    async def test_nxdomain(self) -> None:
        """dig sees NXDOMAIN for a name that exists."""
        s = await start(self, "dns", zones={"example.org": ZONE})
        s.faults.dns("www.example.org", "nxdomain")
        self.assertIn("status: NXDOMAIN", await self.dig(s, "www.example.org"))

    async def test_timeout(self) -> None:
        """No answer at all: dig times out."""
        s = await start(self, "dns", zones={"example.org": ZONE})
        s.faults.dns("www.example.org", "timeout")
        out = await self.dig(s, "www.example.org")
        self.assertIn("timed out", out)
        self.assertNotIn("status:", out)

    async def test_truncate(self) -> None:
        """
        A truncated UDP reply: dig retries over TCP and gets the answer.
        """
        s = await start(self, "dns", zones={"example.org": ZONE})
        s.faults.dns("www.example.org", "truncate")
        out = await self.dig(s, "www.example.org")
        self.assertIn("Truncated, retrying in TCP mode", out)
        self.assertIn("192.0.2.7", out)
        self.assertEqual([q.transport for q in s.dnsQueries], ["udp", "tcp"])

    async def test_overJSON(self) -> None:
        """
        A DNS fault scripted with curl over the testing API: dig sees
        SERVFAIL; DELETE /_appnet/faults clears what is left.
        """
        curl = need("curl", "curl")
        s = await start(
            self,
            "dns",
            "http",
            zones={"example.org": ZONE},
            config={"http": {"test_api": True}},
        )
        fault = {
            "protocol": "dns", "point": "query", "action": "servfail",
            "match": "www.example.org", "type": "A", "times": 2,
        }  # fmt: skip
        await inThread(
            run, curl, "-s", "-H", "Content-Type: application/json",
            "-d", json.dumps(fault), s.url("/_appnet/faults"),
        )  # fmt: skip
        self.assertIn("status: SERVFAIL", await self.dig(s, "www.example.org"))
        cleared = await inThread(
            run, curl, "-s", "-X", "DELETE", s.url("/_appnet/faults")
        )
        self.assertEqual(json.loads(cleared.stdout), {"removed": 1})
        self.assertIn("status: NOERROR", await self.dig(s, "www.example.org"))


class FTPFaultTests(TestCase):
    async def ftpServer(self) -> Any:
        return await start(
            self,
            "ftp",
            users={BOB: PASSWORD},
            files={BOB: {"big.bin": b"x" * 1_000_000, "small.txt": b"small"}},
        )

    def session(self, s: Any) -> ftplib.FTP:
        ftp = ftplib.FTP()
        ftp.connect(*s.address("ftp"), timeout=10)
        ftp.login(BOB, PASSWORD)
        return ftp

    async def test_dataRefused(self) -> None:
        """
        The next data connection is refused with 425: ftplib raises
        error_temp; the next transfer works.
        """
        s = await self.ftpServer()
        s.faults.ftpData(425)

        def fetchTwice() -> tuple[str, bytes]:
            with self.session(s) as ftp:
                try:
                    ftp.retrbinary("RETR small.txt", lambda _: None)
                except ftplib.error_temp as e:
                    first = str(e)
                out = io.BytesIO()
                ftp.retrbinary("RETR small.txt", out.write)
                return first, out.getvalue()

        first, second = await inThread(fetchTwice)
        self.assertTrue(first.startswith("425"), first)
        self.assertEqual(second, b"small")

    async def test_cut(self) -> None:
        """
        A transfer cut after N bytes: ftplib gets less than the file and
        error_temp (426).
        """
        s = await self.ftpServer()
        s.faults.ftpCut(after=1000)
        received = bytearray()

        def fetch() -> str:
            ftp = self.session(s)
            try:
                try:
                    ftp.retrbinary("RETR big.bin", received.extend)
                except ConnectionResetError:
                    ftp.voidresp()  # The data connection was reset: the reply.
                return "complete"
            except ftplib.error_temp as e:
                return str(e)
            finally:
                ftp.close()

        outcome = await inThread(fetch)
        self.assertTrue(outcome.startswith("426"), outcome)
        self.assertLess(len(received), 1_000_000)


class HTTPFaultTests(TestCase):
    async def curl(self, *args: str) -> subprocess.CompletedProcess[str]:
        curl = need("curl", "curl")
        return await inThread(
            run, curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", *args
        )

    async def test_status(self) -> None:
        """curl sees the scripted status for the path, then the real one."""
        s = await start(self, "http", www={"docs/x.txt": b"x"})
        s.faults.http("/docs/", status=503)
        self.assertEqual((await self.curl(s.url("/docs/x.txt"))).stdout, "503")
        self.assertEqual((await self.curl(s.url("/docs/x.txt"))).stdout, "200")

    async def test_reset(self) -> None:
        """The connection is reset: curl fails with no status (000)."""
        s = await start(self, "http", www={"a": b"a"})
        s.faults.http("/a", reset=True)
        done = await self.curl(s.url("/a"))
        self.assertEqual(done.stdout, "000")
        self.assertIn(done.returncode, (52, 56))

    async def test_delay(self) -> None:
        """
        A delay runs on the virtual clock: the response waits until the
        test moves the clock.
        """
        s = await start(self, "http", www={"slow": b"slow"})
        s.faults.http("/slow", delay=5)
        d = s.web.client().get(s.url("/slow"))
        await s.faults.waitFired()
        self.assertNoResult(d)
        s.clock.advance(5)
        response = await d
        self.assertEqual(response.code, 200)
        self.assertEqual(await response.content(), b"slow")


class MailboxFaultTests(TestCase):
    async def test_imapAppend(self) -> None:
        """imaplib's APPEND gets the scripted NO."""
        s = await start(self, "imap", users={BOB: PASSWORD})
        s.faults.imap("APPEND", no="[OVERQUOTA] Mailbox is full")

        def append() -> tuple[str, Any]:
            with imaplib.IMAP4(*s.address("imap"), timeout=10) as imap:
                imap.login(BOB, PASSWORD)
                try:
                    return imap.append("INBOX", None, None, message())
                except imaplib.IMAP4.error as e:
                    return "NO", str(e)

        status, detail = await inThread(append)
        self.assertEqual(status, "NO")
        self.assertIn("OVERQUOTA", str(detail))
        self.assertEqual(await s.messages(BOB), [])

    async def test_imapByeMidFetch(self) -> None:
        """A FETCH answered with BYE: imaplib raises IMAP4.abort."""
        s = await start(self, "smtp", "imap", users={BOB: PASSWORD})
        await inThread(smtpSend, s.address("smtp"))
        s.faults.imap("FETCH", bye="Server shutting down")

        untagged: list[Any] = []

        def fetch() -> None:
            imap = imaplib.IMAP4(*s.address("imap"), timeout=10)
            imap.login(BOB, PASSWORD)
            imap.select("INBOX")
            try:
                imap.fetch("1", "(RFC822)")
            finally:
                untagged.extend(imap.untagged_responses.get("FETCH", []))
                imap.shutdown()

        await self.assertFailure(inThread(fetch), imaplib.IMAP4.abort)
        # The message's data came first: the BYE cut the FETCH short.
        self.assertTrue(untagged)

    async def test_pop3Retr(self) -> None:
        """poplib's RETR gets the scripted -ERR."""
        s = await start(self, "smtp", "pop3", users={BOB: PASSWORD})
        await inThread(smtpSend, s.address("smtp"))
        s.faults.pop3("RETR", err="[SYS/TEMP] Disk on fire")

        def retr() -> None:
            pop = poplib.POP3(*s.address("pop3"), timeout=10)
            try:
                pop.user(BOB)
                pop.pass_(PASSWORD)
                pop.retr(1)
            finally:
                pop.close()

        failure = await self.assertFailure(inThread(retr), poplib.error_proto)
        self.assertIn("Disk on fire", str(failure))

    async def test_pop3Drop(self) -> None:
        """A dropped connection at RETR: poplib sees the end of the stream."""
        s = await start(self, "smtp", "pop3", users={BOB: PASSWORD})
        await inThread(smtpSend, s.address("smtp"))
        s.faults.pop3("RETR", drop=True)

        def retr() -> None:
            pop = poplib.POP3(*s.address("pop3"), timeout=10)
            try:
                pop.user(BOB)
                pop.pass_(PASSWORD)
                pop.retr(1)
            finally:
                pop.close()

        failure = await self.assertFailure(inThread(retr), poplib.error_proto)
        self.assertIn("EOF", str(failure))
