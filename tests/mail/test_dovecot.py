"""
Interop: appnet's IMAP and POP3 clients, and the C{appnet mail imap} and
C{appnet mail fetch} commands, against a real Dovecot (Debian packages
dovecot-imapd and dovecot-pop3d).

Each test runs its own Dovecot master (C{dovecot -F}) from a
configuration written into a fresh directory: IMAP and POP3 on
127.0.0.1 ports chosen free, STARTTLS/STLS with a self-signed
certificate made by L{appnet.tls.makeSelfSigned} (the clients verify it
as their trust root), one account in a passwd-file, Maildir homes in the
same directory. As root, Dovecot's own C{dovecot} and C{dovenull} users
run its internal and login processes and mail belongs to C{nobody};
otherwise everything runs as the current user. The directory lives under
the system's temporary directory because Dovecot's UNIX sockets need
short paths.
"""

from __future__ import annotations

import datetime
import os
import pwd
import shutil
import tempfile
from collections.abc import Callable

from attrs import frozen
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ISSLTransport
from twisted.trial.unittest import TestCase

from appnet.mail.client import FetchedMessage, MailClientError, fetch
from appnet.mail.imapclient import IMAPMessage, IMAPSession, connectIMAP
from appnet.tls import makeSelfSigned
from tests.interop import unavailable
from tests.peers import freePort, startServer, waitForLog, waitForPort
from tests.process import Outcome, run

HOST = "127.0.0.1"
USER = "alice"
PASSWORD = "correct horse battery"

#: Where Debian's Dovecot packages put their service programs.
LIBEXEC = "/usr/lib/dovecot"

FIRST = (
    b"From: Bob <bob@example.org>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: first\r\n"
    b"Date: Fri, 05 Jan 2024 10:30:00 +0100\r\n"
    b"Message-ID: <first@example.org>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Hello Alice.\r\n"
    b".a line starting with a dot\r\n"
    b".\r\n"
    b"..and one with two\r\n"
    b"caf\xc3\xa9 \xe2\x82\xac\r\n"
)
SECOND = (
    b"From: Carol <carol@example.net>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: second\r\n"
    b"Message-ID: <second@example.net>\r\n"
    b"\r\n"
    + b"".join(b"line %06d of a long message, to span many reads\r\n" % i
               for i in range(6000))
)  # fmt: skip


def imapTime(text: str) -> datetime.datetime:
    """An IMAP date-time (INTERNALDATE) as an aware datetime."""
    return datetime.datetime.strptime(text, "%d-%b-%Y %H:%M:%S %z")


@frozen
class Dovecot:
    """A running Dovecot and how to reach it."""

    directory: str
    imap: int
    pop3: int
    cert: bytes
    certPath: str
    log: str


def _users() -> tuple[str, str, int, int]:
    """
    Dovecot's internal user, its login user, and the uid and gid mail is
    kept under.
    """
    if os.getuid() != 0:
        me = pwd.getpwuid(os.getuid()).pw_name
        return me, me, os.getuid(), os.getgid()
    try:
        pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")
        nobody = pwd.getpwnam("nobody")
    except KeyError as e:
        unavailable(f"Dovecot's system users are missing ({e})")
    return "dovecot", "dovenull", nobody.pw_uid, nobody.pw_gid


def dovecotConfig(
    directory: str, imap: int, pop3: int, protocols: str, uid: int, gid: int
) -> str:
    """The configuration of a Dovecot serving C{directory}'s homes."""
    internal, login, _, _ = _users()
    return f"""\
base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
instance_name = appnet-test-{imap}
listen = {HOST}
protocols = {protocols}
ssl = yes
ssl_cert = <{directory}/cert.pem
ssl_key = <{directory}/key.pem
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
first_valid_gid = 0
passdb {{
  driver = passwd-file
  args = {directory}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={directory}/home/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \\Archive
    auto = subscribe
  }}
  mailbox "Old Mail" {{
    auto = subscribe
  }}
  mailbox "Entwürfe" {{
    auto = subscribe
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


async def startDovecot(test: TestCase) -> Dovecot:
    """
    Start a Dovecot for C{test}, serving IMAP and POP3 to one account;
    stopped by its PID when the test ends.
    """
    dovecot = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin")
    if dovecot is None:
        unavailable("dovecot is not installed (Debian package dovecot-imapd)")
    for program, package in (("imap", "dovecot-imapd"), ("pop3", "dovecot-pop3d")):
        if not os.path.exists(os.path.join(LIBEXEC, program)):
            unavailable(f"Dovecot's {program} is missing (Debian package {package})")
    _, _, uid, gid = _users()
    directory = tempfile.mkdtemp(prefix="appnet-dovecot-")
    test.addCleanup(shutil.rmtree, directory, True)
    os.chmod(directory, 0o755)
    keyPEM, certPEM = makeSelfSigned("localhost")
    for name, data, mode in (("cert.pem", certPEM, 0o644), ("key.pem", keyPEM, 0o600)):
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
    with open(os.path.join(directory, "passwd"), "w") as f:
        f.write(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    home = os.path.join(directory, "home", USER)
    os.makedirs(home)
    for path in (os.path.dirname(home), home):
        os.chown(path, uid, gid)
    imap, pop3 = freePort(HOST), freePort(HOST)
    while pop3 == imap:
        pop3 = freePort(HOST)
    config = os.path.join(directory, "dovecot.conf")
    with open(config, "w") as f:
        f.write(dovecotConfig(directory, imap, pop3, "imap pop3", uid, gid))
    log = os.path.join(directory, "dovecot.log")
    collector = startServer(
        test,
        [dovecot, "-F", "-c", config],
        directory,
        [(HOST, imap), (HOST, pop3)],
    )
    for port in (imap, pop3):
        await waitForPort(collector, HOST, port, "dovecot", log)
    return Dovecot(
        directory, imap, pop3, certPEM, os.path.join(directory, "cert.pem"), log
    )


async def login(server: Dovecot, test: TestCase) -> IMAPSession:
    """A verified, logged-in IMAP session, logged out when the test ends."""
    session = await connectIMAP(
        reactor,
        HOST,
        server.imap,
        username=USER,
        password=PASSWORD,
        tls="require",
        trustRoot=server.cert,
        timeout=10,
    )
    test.addCleanup(_logout, session)
    return session


async def _logout(session: IMAPSession) -> None:
    try:
        await session.logout()
    except MailClientError:
        pass


async def deliver(server: Dovecot, test: TestCase, *messages: bytes) -> list[int]:
    """Put messages into the INBOX with IMAP APPEND; their UIDs."""
    session = await connectIMAP(
        reactor,
        HOST,
        server.imap,
        username=USER,
        password=PASSWORD,
        trustRoot=server.cert,
        timeout=10,
    )
    try:
        uids = [await session.append("INBOX", m) for m in messages]
    finally:
        await session.logout()
    assert all(uid is not None for uid in uids), uids
    return [uid for uid in uids if uid is not None]


class IMAPTests(TestCase):
    """
    appnet's IMAP client against Dovecot.
    """

    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        self.server = await startDovecot(self)

    async def test_startTLS(self) -> None:
        """
        The client starts TLS before logging in, verifying Dovecot's
        certificate against the given trust root; Dovecot's log records
        a TLS login.
        """
        session = await login(self.server, self)
        transport = session._client.transport
        self.assertTrue(ISSLTransport.providedBy(transport))
        self.assertIn(b"MOVE", session.capabilities)
        self.assertIn(b"UIDPLUS", session.capabilities)
        await session.logout()
        await waitForLog(self.server.log, r"imap-login: Info: Login: user=<alice>.*TLS")

    async def test_untrustedCertificate(self) -> None:
        """
        A Dovecot whose certificate the trust root does not vouch for is
        refused before any password is sent.
        """
        _, otherCert = makeSelfSigned("localhost")
        with self.assertRaises(MailClientError):
            await connectIMAP(
                reactor,
                HOST,
                self.server.imap,
                username=USER,
                password=PASSWORD,
                trustRoot=otherCert,
                timeout=10,
            )
        with open(self.server.log) as f:
            self.assertNotIn("user=<alice>", f.read())

    async def test_wrongPassword(self) -> None:
        """A refused login is a MailClientError carrying Dovecot's words."""
        with self.assertRaises(MailClientError) as caught:
            await connectIMAP(
                reactor,
                HOST,
                self.server.imap,
                username=USER,
                password="wrong",
                trustRoot=self.server.cert,
                timeout=10,
            )
        self.assertIn("Authentication failed", str(caught.exception))

    async def test_listFolders(self) -> None:
        """
        listFolders shows every folder with its special-use attribute.
        """
        session = await login(self.server, self)
        folders = {f.name: f for f in await session.listFolders()}
        self.assertEqual(
            set(folders), {"INBOX", "Sent", "Trash", "Archive", "Old Mail", "Entwürfe"}
        )
        self.assertIn("\\Sent", folders["Sent"].attributes)
        self.assertIn("\\Trash", folders["Trash"].attributes)
        self.assertIn("\\Archive", folders["Archive"].attributes)
        self.assertTrue(all(f.selectable for f in folders.values()))

    async def test_appendFetch(self) -> None:
        """
        A message appended (8-bit, lines starting with dots, or 300 KB
        long) is fetched back byte for byte, under the UID APPEND
        reported; fetching does not mark it read; flags and date given
        to APPEND show in the summaries.
        """
        session = await login(self.server, self)
        first = await session.append(
            "INBOX", FIRST, flags=["\\Flagged"], date="05-Jan-2024 10:30:00 +0100"
        )
        second = await session.append("INBOX", SECOND)
        self.assertEqual((first, second), (1, 2))
        self.assertEqual(await session.select("INBOX"), 2)
        fetched = await session.fetch([2, 1])
        self.assertEqual(fetched, [IMAPMessage(1, FIRST), IMAPMessage(2, SECOND)])
        status = await session.status("INBOX")
        self.assertEqual((status.messages, status.unseen), (2, 2))
        one, two = await session.summaries([1, 2])
        self.assertIn("\\Flagged", one.flags)
        self.assertNotIn("\\Seen", one.flags)
        # Dovecot keeps the instant, not the zone (a Maildir file's mtime).
        self.assertEqual(imapTime(one.date), imapTime("05-Jan-2024 10:30:00 +0100"))
        self.assertEqual(one.sender, "Bob <bob@example.org>")
        self.assertEqual(one.subject, "first")
        self.assertEqual(one.size, len(FIRST))
        self.assertEqual(two.size, len(SECOND))
        streamed: list[IMAPMessage] = []
        self.assertEqual(await session.fetch([1, 2], streamed.append), [])
        self.assertEqual([m.data for m in streamed], [FIRST, SECOND])

    async def test_folderNames(self) -> None:
        """
        Folder names with spaces and non-ASCII letters (modified UTF-7
        on the wire) work for APPEND, STATUS, SELECT and MOVE.
        """
        session = await login(self.server, self)
        uid = await session.append("Entwürfe", FIRST)
        self.assertEqual((await session.status("Entwürfe")).messages, 1)
        await session.select("Entwürfe")
        assert uid is not None
        await session.move([uid], "Old Mail")
        self.assertEqual(await session.search(), [])
        self.assertEqual(await session.select("Old Mail"), 1)
        [moved] = await session.search()
        self.assertEqual(await session.fetch([moved]), [IMAPMessage(moved, FIRST)])

    async def test_search(self) -> None:
        """search returns the UIDs Dovecot finds for the search keys."""
        await deliver(self.server, self, FIRST, SECOND, FIRST)
        session = await login(self.server, self)
        await session.select("INBOX")
        self.assertEqual(await session.search(), [1, 2, 3])
        self.assertEqual(await session.search("SUBJECT second"), [2])
        self.assertEqual(await session.search('FROM "bob@example.org"'), [1, 3])
        self.assertEqual(await session.search("BODY nothing-like-this"), [])
        self.assertEqual(await session.search("UID 2:*"), [2, 3])

    async def test_move(self) -> None:
        """
        move takes messages out of one folder into another (Dovecot
        offers MOVE), where they are fetched back unchanged.
        """
        await deliver(self.server, self, FIRST, SECOND, FIRST)
        session = await login(self.server, self)
        await session.select("INBOX")
        await session.move([1, 3], "Archive")
        self.assertEqual(await session.search(), [2])
        self.assertEqual((await session.status("Archive")).messages, 2)
        await session.select("Archive")
        uids = await session.search()
        self.assertEqual(len(uids), 2)
        fetched = await session.fetch(uids)
        self.assertEqual([m.data for m in fetched], [FIRST, FIRST])


class POP3Tests(TestCase):
    """
    appnet's POP3 fetch client against Dovecot's POP3 server.
    """

    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        self.server = await startDovecot(self)

    def fetch(
        self, delete: bool = False, skip: Callable[[str], bool] = lambda uidl: False
    ) -> Deferred[list[FetchedMessage]]:
        """Fetch alice's maildrop over verified STLS."""
        return fetch(
            reactor,
            HOST,
            self.server.pop3,
            username=USER,
            password=PASSWORD,
            delete=delete,
            skip=skip,
            tls="require",
            trustRoot=self.server.cert,
            timeout=10,
        )

    async def test_keep(self) -> None:
        """
        Download-and-keep gets every message byte for byte (Dovecot's
        dot-stuffing undone), in maildrop order, with UIDLs that stay
        the same in the next session; skipped UIDLs are not downloaded.
        """
        await deliver(self.server, self, FIRST, SECOND)
        fetched = await self.fetch()
        self.assertEqual([m.data for m in fetched], [FIRST, SECOND])
        uidls = [m.uidl for m in fetched]
        self.assertEqual(len(set(uidls)), 2)
        again = await self.fetch(skip=lambda uidl: uidl == uidls[0])
        self.assertEqual([(m.uidl, m.data) for m in again], [(uidls[1], SECOND)])
        await waitForLog(self.server.log, r"pop3-login: Info: Login: user=<alice>.*TLS")

    async def test_delete(self) -> None:
        """
        Download-and-delete empties the maildrop: the next fetch finds
        nothing, and IMAP sees an empty INBOX.
        """
        await deliver(self.server, self, FIRST, SECOND)
        fetched = await self.fetch(delete=True)
        self.assertEqual([m.data for m in fetched], [FIRST, SECOND])
        self.assertEqual(await self.fetch(), [])
        session = await login(self.server, self)
        self.assertEqual((await session.status("INBOX")).messages, 0)

    async def test_refusals(self) -> None:
        """
        An untrusted certificate and a wrong password are
        MailClientErrors.
        """
        _, otherCert = makeSelfSigned("localhost")
        with self.assertRaises(MailClientError):
            await fetch(
                reactor,
                HOST,
                self.server.pop3,
                username=USER,
                password=PASSWORD,
                trustRoot=otherCert,
                timeout=10,
            )
        with self.assertRaises(MailClientError) as caught:
            await fetch(
                reactor,
                HOST,
                self.server.pop3,
                username=USER,
                password="wrong",
                trustRoot=self.server.cert,
                timeout=10,
            )
        self.assertIn("Authentication failed", str(caught.exception))


class CommandTests(TestCase):
    """
    C{appnet mail imap ls|fetch|move} and C{appnet mail fetch} as real
    processes against Dovecot.
    """

    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        self.server = await startDovecot(self)
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)

    async def appnet(self, *args: str) -> Outcome:
        """Run C{appnet mail ARGS} as alice, trusting Dovecot's certificate."""
        return await run(
            ["-m", "appnet", "mail", *args, "--user", USER, "--password-stdin",
             "--cafile", self.server.certPath],
            self.cwd,
            env={"APPNET_DATA": os.path.join(self.cwd, "data")},
            stdin=PASSWORD.encode() + b"\n",
        )  # fmt: skip

    async def imap(self, command: str, *args: str) -> Outcome:
        """Run C{appnet mail imap COMMAND} against Dovecot."""
        return await self.appnet(
            "imap", command, "--imap", f"{HOST}:{self.server.imap}", *args
        )

    async def test_imapLs(self) -> None:
        """
        C{imap ls} lists folders with counts and special-use attributes,
        and a folder's messages with sender and subject.
        """
        await deliver(self.server, self, FIRST, SECOND)
        outcome = await self.imap("ls")
        self.assertEqual(outcome.code, 0, outcome.err)
        lines = outcome.out.splitlines()
        self.assertIn("INBOX\t2 messages, 2 unseen", lines)
        self.assertIn("Archive\t0 messages, 0 unseen  \\Archive", lines)
        self.assertIn("Sent\t0 messages, 0 unseen  \\Sent", lines)
        outcome = await self.imap("ls", "INBOX")
        self.assertEqual(outcome.code, 0, outcome.err)
        out = outcome.out
        self.assertRegex(
            out, rf"(?m)^1\t.*\t{len(FIRST)}\t\\Recent\tBob <bob@example.org>\tfirst$"
        )
        self.assertRegex(out, r"(?m)^2\t.*\tCarol <carol@example.net>\tsecond$")
        self.assertIn("2 messages in INBOX", out)

    async def test_imapFetch(self) -> None:
        """
        C{imap fetch UID} prints the message byte for byte; with
        C{--out} and C{--search} it saves the matches as .eml files.
        """
        await deliver(self.server, self, FIRST, SECOND)
        outcome = await self.imap("fetch", "1")
        self.assertEqual(outcome.code, 0, outcome.err)
        self.assertEqual(outcome.out, FIRST.decode("utf-8"))
        out = os.path.join(self.cwd, "saved")
        outcome = await self.imap("fetch", "--search", "SUBJECT second", "--out", out)
        self.assertEqual(outcome.code, 0, outcome.err)
        [name] = os.listdir(out)
        self.assertRegex(name, r"^INBOX-\d+-2\.eml$")
        with open(os.path.join(out, name), "rb") as f:
            self.assertEqual(f.read(), SECOND)

    async def test_imapFetchMissing(self) -> None:
        """
        C{imap fetch UID} of a UID the folder does not hold (Dovecot
        answers UID FETCH with an empty OK) says so in one line and
        exits 1.
        """
        await deliver(self.server, self, FIRST)
        outcome = await self.imap("fetch", "7")
        self.assertEqual(outcome.code, 1)
        self.assertEqual(outcome.out, "")
        self.assertEqual(outcome.err, "appnet: no message with UID 7 in INBOX\n")

    async def test_imapMove(self) -> None:
        """C{imap move} moves messages by UID to another folder."""
        await deliver(self.server, self, FIRST, SECOND)
        outcome = await self.imap("move", "--to", "Archive", "2")
        self.assertEqual(outcome.code, 0, outcome.err)
        self.assertIn("1 messages moved from INBOX to Archive", outcome.out)
        session = await login(self.server, self)
        self.assertEqual((await session.status("INBOX")).messages, 1)
        await session.select("Archive")
        [uid] = await session.search()
        self.assertEqual(await session.fetch([uid]), [IMAPMessage(uid, SECOND)])

    async def test_pop3Fetch(self) -> None:
        """
        C{mail fetch} saves the maildrop as .eml files, keeps it on the
        server and downloads nothing new the second time; C{--delete}
        empties it.
        """
        await deliver(self.server, self, FIRST, SECOND)
        out = os.path.join(self.cwd, "maildrop")
        pop3 = ("fetch", "--pop3", f"{HOST}:{self.server.pop3}", "--out", out)
        outcome = await self.appnet(*pop3)
        self.assertEqual(outcome.code, 0, outcome.err)
        self.assertIn("2 new messages", outcome.out)
        contents = []
        for name in sorted(os.listdir(out)):
            with open(os.path.join(out, name), "rb") as f:
                contents.append(f.read())
        self.assertEqual(sorted(contents), sorted([FIRST, SECOND]))
        outcome = await self.appnet(*pop3)
        self.assertEqual(outcome.code, 0, outcome.err)
        self.assertIn("0 new messages", outcome.out)
        outcome = await self.appnet(*pop3, "--delete")
        self.assertEqual(outcome.code, 0, outcome.err)
        self.assertIn("deleted from server", outcome.out)
        self.assertEqual(await fetch(
            reactor, HOST, self.server.pop3, username=USER, password=PASSWORD,
            trustRoot=self.server.cert, timeout=10,
        ), [])  # fmt: skip
