"""
Interop: Python's imaplib (in threads) and curl against appnet's IMAP
server over 127.0.0.1, on the SQLite store, with STARTTLS verified
against the stack's certificate; and the concurrency of two IMAP
sessions, an SMTP delivery and a POP3 session on one mailbox.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import ssl
import subprocess
import time
from typing import Any

from twisted.trial.unittest import TestCase

from appnet.mail.testing import MailStack
from appnet.store.interfaces import DeliveryTarget
from tests.interop import need
from tests.mail.sockets import inThread, tlsMailStack

ALICE, BOB = "alice@example.org", "bob@example.org"
USERS = {ALICE: "pw-alice-1", BOB: "pw-bob-12"}

MESSAGE = (
    b"From: Bob <bob@example.org>\r\n"
    b"To: Alice <alice@example.org>\r\n"
    b"Subject: interop\r\n"
    b"Date: Tue, 2 Jan 2024 08:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="zz"\r\n'
    b"\r\n"
    b"--zz\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"plain words\r\n"
    b"--zz\r\n"
    b"Content-Type: text/html; charset=us-ascii\r\n"
    b"\r\n"
    b"<p>html words</p>\r\n"
    b"--zz--\r\n"
)


def context(cert: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cert)


async def deliver(
    mail: MailStack, owner: str, data: bytes, folder: str = "INBOX"
) -> int:
    staged = mail.store.mail.stage()
    staged.write(data)
    try:
        [uid] = await mail.store.mail.deliver(staged, [DeliveryTarget(owner, folder)])
    finally:
        staged.discard()
    return int(uid)


def snapshot(result: tuple[str, list[Any]]) -> tuple[str, list[Any]]:
    """imaplib keeps appending to the list SELECT returned: copy it."""
    return result[0], list(result[1])


def connect(host: str, port: int, cert: str, user: str = ALICE) -> imaplib.IMAP4:
    m = imaplib.IMAP4(host, port, timeout=10)
    m.starttls(ssl_context=context(cert))
    m.login(user, USERS[user])
    return m


class ImaplibTests(TestCase):
    async def test_everyCommand(self) -> None:
        """
        imaplib drives every command of the issue's list: CAPABILITY,
        NOOP, STARTTLS, LOGIN, AUTHENTICATE PLAIN, LIST, LSUB, CREATE,
        DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, SELECT, EXAMINE, STATUS,
        APPEND, CHECK, CLOSE, EXPUNGE, SEARCH, FETCH (every item), STORE,
        COPY, MOVE, the UID forms, NAMESPACE, ID, ENABLE, UNSELECT, LOGOUT.
        """
        mail, cert = await tlsMailStack(self, USERS)
        host, port = mail.address("imap")
        await deliver(mail, ALICE, MESSAGE)

        def client() -> dict[str, Any]:
            out: dict[str, Any] = {}
            m = imaplib.IMAP4(host, port, timeout=10)
            out["before"] = m.capabilities
            out["noop"] = m.noop()
            m.starttls(ssl_context=context(cert))
            out["after"] = m.capability()
            m.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{USERS[ALICE]}".encode())
            out["namespace"] = m.namespace()
            out["id"] = m.xatom("ID", '("name" "imaplib")')
            out["id-data"] = m.untagged_responses.pop("ID", None)
            out["enable"] = m.enable("CONDSTORE")
            out["list"] = m.list()
            out["create"] = m.create("Projects/Alpha")
            out["rename"] = m.rename("Projects", "Work")
            out["unsubscribe"] = m.unsubscribe("Work/Alpha")
            out["lsub"] = m.lsub()
            out["subscribe"] = m.subscribe("Work/Alpha")
            out["status"] = m.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
            out["append"] = m.append(
                "INBOX", "(\\Flagged)", imaplib.Time2Internaldate(1704182400), MESSAGE
            )
            out["examine"] = snapshot(m.select("INBOX", readonly=True))
            out["examine-store"] = m.store("1", "+FLAGS", "\\Seen")
            out["select"] = snapshot(m.select("INBOX"))
            out["check"] = m.check()
            out["search"] = m.search(None, "FLAGGED")
            out["search-text"] = m.search(None, "TEXT", '"html words"')
            out["uid-search"] = m.uid("SEARCH", "SUBJECT", "interop")
            out["fetch"] = m.fetch(
                "1",
                "(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE)",
            )
            out["peek"] = m.fetch("1", "(BODY.PEEK[2] BODY.PEEK[HEADER]<0.20>)")
            out["flags-after-peek"] = m.fetch("1", "(FLAGS)")
            out["body"] = m.fetch("1", "(BODY[1])")
            out["uid-fetch"] = m.uid("FETCH", "2", "(RFC822.SIZE)")
            out["store"] = m.store("2", "-FLAGS", "\\Flagged")
            out["store-silent"] = m.store("1", "+FLAGS.SILENT", "(\\Answered)")
            out["uid-store"] = m.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
            out["copy"] = m.copy("2", "Work/Alpha")
            out["uid-copy"] = m.uid("COPY", "2", "Archive")
            out["create-archive"] = m.create("Archive")
            out["uid-copy-2"] = m.uid("COPY", "2", "Archive")
            out["expunge"] = m.expunge()
            out["move"] = m.uid("MOVE", "2", "Trash")
            out["after-move"] = m.uid("FETCH", "1:*", "(UID)")
            out["append-2"] = m.append("INBOX", None, None, b"Subject: x\r\n\r\nx\r\n")
            m.select("INBOX")
            out["store-2"] = m.store("1", "+FLAGS", "(\\Deleted)")
            out["uid-expunge"] = m.uid("EXPUNGE", "1:*")
            out["unselect"] = m.unselect()
            m.select("Work/Alpha")
            m.store("1", "+FLAGS.SILENT", "(\\Deleted)")
            out["close"] = m.close()
            out["delete"] = m.delete("Work/Alpha")
            out["logout"] = m.logout()
            return out

        out = await inThread(client)
        self.assertIn("STARTTLS", out["before"])
        self.assertIn("AUTH=PLAIN", out["before"])  # loopback
        self.assertEqual(out["noop"][0], "OK")
        caps = out["after"][1][0].split()
        for cap in (b"IDLE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"LITERAL+"):
            self.assertIn(cap, caps)
        self.assertEqual(out["namespace"], ("OK", [b'(("" "/")) NIL NIL']))
        self.assertEqual(out["id"][0], "OK")
        self.assertIn(b'"name" "appnet"', out["id-data"][0])
        self.assertEqual(out["enable"][0], "OK")
        listed = out["list"][1]
        self.assertIn(b'(\\HasNoChildren \\Sent) "/" "Sent"', listed)
        self.assertIn(b'(\\HasNoChildren \\Trash) "/" "Trash"', listed)
        self.assertEqual(out["create"][0], "OK")
        self.assertEqual(out["rename"][0], "OK")
        self.assertNotIn(b'() "/" "Work/Alpha"', out["lsub"][1])
        self.assertFalse(any(b"Work/Alpha" in line for line in out["lsub"][1]))
        self.assertEqual(out["subscribe"][0], "OK")
        self.assertRegex(
            out["status"][1][0], rb"MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1"
        )
        self.assertRegex(out["append"][1][0], rb"\[APPENDUID \d+ 2\] APPEND completed")
        self.assertEqual(out["examine-store"][0], "NO")
        self.assertEqual(out["select"], ("OK", [b"2"]))
        self.assertEqual(out["check"][0], "OK")
        self.assertEqual(out["search"], ("OK", [b"2"]))
        self.assertEqual(out["search-text"], ("OK", [b"1 2"]))
        self.assertEqual(out["uid-search"], ("OK", [b"1 2"]))
        fetched = out["fetch"][1][0]
        self.assertIn(b"RFC822.SIZE %d" % len(MESSAGE), fetched)
        self.assertIn(b'ENVELOPE ("Tue, 2 Jan 2024 08:00:00 +0000" "interop"', fetched)
        self.assertIn(
            b'BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL'
            b' "7BIT" 11 1',
            fetched,
        )
        self.assertIn(b'"ALTERNATIVE")', fetched)
        self.assertEqual(out["peek"][1][0][1], b"<p>html words</p>")
        self.assertEqual(out["peek"][1][1][1], b"From: Bob <bob@examp")
        # SELECT (after EXAMINE, which claims nothing) took \\Recent.
        self.assertEqual(out["flags-after-peek"][1], [b"1 (FLAGS (\\Recent))"])
        self.assertEqual(out["body"][1][0][1], b"plain words")
        self.assertIn(b"FLAGS (\\Recent \\Seen)", out["body"][1][1])
        self.assertEqual(
            out["uid-fetch"][1], [b"2 (UID 2 RFC822.SIZE %d)" % len(MESSAGE)]
        )
        self.assertEqual(out["store"][1], [b"2 (FLAGS (\\Recent))"])
        self.assertEqual(out["store-silent"], ("OK", [None]))
        self.assertEqual(
            out["uid-store"][1],
            [b"1 (FLAGS (\\Answered \\Deleted \\Recent \\Seen) UID 1)"],
        )
        self.assertRegex(out["copy"][1][0], rb"\[COPYUID \d+ 2 1\] COPY completed")
        self.assertEqual(out["uid-copy"][0], "NO")
        self.assertIn(b"[TRYCREATE]", out["uid-copy"][1][0])
        self.assertEqual(out["uid-copy-2"][0], "OK")
        self.assertEqual(out["expunge"], ("OK", [b"1"]))
        self.assertEqual(out["move"][0], "OK")
        self.assertEqual(out["after-move"], ("OK", [None]))
        self.assertEqual(out["uid-expunge"][0], "OK")
        self.assertEqual(out["unselect"][0], "OK")
        self.assertEqual(out["close"][0], "OK")
        self.assertEqual(out["delete"][0], "OK")
        self.assertEqual(out["logout"][0], "BYE")
        folders = {f.name: f for f in await mail.store.mail.listFolders(ALICE)}
        self.assertNotIn("Work/Alpha", folders)
        self.assertEqual(folders["INBOX"].messages, 0)
        self.assertEqual(folders["Trash"].messages, 1)
        self.assertEqual(folders["Archive"].messages, 1)

    async def test_silentRemoveInternalDateAndPartials(self) -> None:
        """
        imaplib checks what L{test_everyCommand} only sends:

        - STORE -FLAGS.SILENT (and UID STORE) answers OK with no FETCH,
          and a later FETCH shows the flags gone;
        - INTERNALDATE is RFC 3501's date-time, the instant APPEND gave
          (shown in UTC), and for a delivered message the time it came;
        - partial fetches of a multipart message give exactly the bytes
          asked for: BODY[1]<2.5>, BODY[TEXT]<0.10>, a range running past
          the end (cut short) and one starting past it (empty); without
          .PEEK they set \\Seen.
        """
        mail, cert = await tlsMailStack(self, USERS)
        host, port = mail.address("imap")
        before = time.time()
        await deliver(mail, ALICE, MESSAGE)
        after = time.time()

        def client() -> dict[str, Any]:
            out: dict[str, Any] = {}
            m = connect(host, port, cert)
            out["append"] = m.append(
                "INBOX",
                "(\\Flagged \\Seen $Later)",
                '"02-Jan-2024 09:30:15 +0100"',
                MESSAGE,
            )
            m.select("INBOX")
            out["silent"] = m.store("2", "-FLAGS.SILENT", "(\\Flagged $Later)")
            out["silent-untagged"] = m.untagged_responses.pop("FETCH", None)
            out["uid-silent"] = m.uid("STORE", "2", "-FLAGS.SILENT", "(\\Seen)")
            out["after-silent"] = m.fetch("2", "(FLAGS)")
            out["dates"] = m.fetch("1:2", "(INTERNALDATE)")
            out["partials"] = m.fetch(
                "1", "(BODY[1]<2.5> BODY[TEXT]<0.10> BODY[1]<8.100> BODY[2]<100.5>)"
            )
            out["seen"] = m.fetch("1", "(FLAGS)")
            m.logout()
            return out

        out = await inThread(client)
        self.assertEqual(out["append"][0], "OK")
        self.assertEqual(out["silent"], ("OK", [None]))
        self.assertIsNone(out["silent-untagged"])
        self.assertEqual(out["uid-silent"], ("OK", [None]))
        self.assertEqual(out["after-silent"], ("OK", [b"2 (FLAGS (\\Recent))"]))

        delivered, appended = out["dates"][1]
        self.assertRegex(
            delivered,
            rb'^1 \(INTERNALDATE "[ \d]\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d'
            rb' [+-]\d{4}"\)$',
        )
        self.assertEqual(appended, b'2 (INTERNALDATE "02-Jan-2024 08:30:15 +0000")')
        self.assertEqual(
            time.mktime(imaplib.Internaldate2tuple(appended)),  # type: ignore[arg-type]
            1704184215.0,
        )
        arrived = time.mktime(imaplib.Internaldate2tuple(delivered))  # type: ignore[arg-type]
        self.assertTrue(int(before) <= arrived <= after, (before, arrived, after))

        status, data = out["partials"]
        self.assertEqual(status, "OK")
        self.assertEqual(
            data,
            [
                (b"1 (BODY[1]<2> {5}", b"ain w"),
                (b" BODY[TEXT]<0> {10}", b"--zz\r\nCont"),
                (b" BODY[1]<8> {3}", b"rds"),
                (b" BODY[2]<100> {0}", b""),
                b" FLAGS (\\Recent \\Seen))",
            ],
        )
        self.assertEqual(out["seen"], ("OK", [b"1 (FLAGS (\\Recent \\Seen))"]))

    async def test_loginDisabledBeforeTLS(self) -> None:
        """
        A remote client must use STARTTLS before LOGIN (simulated by a
        stack on a non-loopback address is not possible here, so the rule
        is checked in the unit tests); over TLS a wrong password gets
        NO [AUTHENTICATIONFAILED].
        """
        mail, cert = await tlsMailStack(self, USERS)
        host, port = mail.address("imap")

        def client() -> str:
            m = imaplib.IMAP4(host, port, timeout=10)
            m.starttls(ssl_context=context(cert))
            try:
                m.login(ALICE, "wrong")
            except imaplib.IMAP4.error as e:
                return str(e)
            finally:
                m.shutdown()
            return "logged in"

        self.assertIn("[AUTHENTICATIONFAILED]", await inThread(client))

    async def test_idleSeesSMTPDelivery(self) -> None:
        """
        An IDLE session is told of a message delivered by SMTP (another
        protocol in the same process), as EXISTS then RECENT, without
        ending its IDLE. The store pushes the change to watchers when the
        delivery commits, so no wall-clock bound is asserted: a lost
        notification fails by the test's timeout instead.
        """
        mail, cert = await tlsMailStack(self, USERS)
        host, port = mail.address("imap")
        smtpHost, smtpPort = mail.address("smtp")
        m = await inThread(connect, host, port, cert)
        self.addCleanup(lambda: inThread(m.logout))
        await inThread(m.select, "INBOX")

        def idle() -> None:
            m.send(b"i1 IDLE\r\n")
            assert m.readline().startswith(b"+")

        await inThread(idle)

        def smtp() -> None:
            with smtplib.SMTP(smtpHost, smtpPort, timeout=10) as s:
                s.sendmail(
                    "carol@remote.example", [ALICE], b"Subject: ping\r\n\r\nhi\r\n"
                )

        def waitExists() -> tuple[bytes, bytes]:
            return m.readline(), m.readline()

        waiting = inThread(waitExists)
        await inThread(smtp)
        line, recent = await waiting
        self.assertEqual(line, b"* 1 EXISTS\r\n")
        self.assertEqual(recent, b"* 1 RECENT\r\n")

        def done() -> bytes:
            m.send(b"DONE\r\n")
            return m.readline()

        self.assertEqual(await inThread(done), b"i1 OK IDLE terminated\r\n")

    async def test_recentTwoSessions(self) -> None:
        """
        Two imaplib sessions over the SQLite store: only the first to
        SELECT gets RECENT and \\Recent (FETCH, SEARCH RECENT); a message
        delivered while both have INBOX selected is recent in the session
        that learns of it first and not in the other; STATUS RECENT from
        a third session counts what no SELECT has claimed.
        """
        mail, cert = await tlsMailStack(self, USERS)
        host, port = mail.address("imap")
        for n in (1, 2):
            await deliver(mail, ALICE, b"Subject: r%d\r\n\r\nbody\r\n" % n)
        a = await inThread(connect, host, port, cert)
        b = await inThread(connect, host, port, cert)
        c = await inThread(connect, host, port, cert)
        for m in (a, b, c):
            self.addCleanup(inThread, m.logout)

        def session(m: imaplib.IMAP4) -> dict[str, Any]:
            out: dict[str, Any] = {}
            m.select("INBOX")
            out["recent"] = m.response("RECENT")[1]
            out["flags"] = m.fetch("1:*", "(FLAGS)")[1]
            out["search"] = m.search(None, "RECENT")[1]
            m.untagged_responses.clear()
            return out

        self.assertEqual(
            await inThread(c.status, "INBOX", "(RECENT)"),
            ("OK", [b'"INBOX" (RECENT 2)']),
        )
        first = await inThread(session, a)
        second = await inThread(session, b)
        self.assertEqual(first["recent"], [b"2"])
        self.assertEqual(
            first["flags"], [b"1 (FLAGS (\\Recent))", b"2 (FLAGS (\\Recent))"]
        )
        self.assertEqual(first["search"], [b"1 2"])
        self.assertEqual(second["recent"], [b"0"])
        self.assertEqual(second["flags"], [b"1 (FLAGS ())", b"2 (FLAGS ())"])
        self.assertEqual(second["search"], [b""])
        self.assertEqual(
            await inThread(c.status, "INBOX", "(RECENT)"),
            ("OK", [b'"INBOX" (RECENT 0)']),
        )

        await deliver(mail, ALICE, b"Subject: r3\r\n\r\nbody\r\n")

        def catchUp(m: imaplib.IMAP4) -> tuple[Any, Any, Any]:
            m.noop()
            exists = m.response("EXISTS")[1]
            recent = m.response("RECENT")[1]
            return exists, recent, m.fetch("3", "(FLAGS)")[1]

        self.assertEqual(
            await inThread(catchUp, b), ([b"3"], [b"1"], [b"3 (FLAGS (\\Recent))"])
        )
        self.assertEqual(
            await inThread(catchUp, a), ([b"3"], [None], [b"3 (FLAGS ())"])
        )

    async def test_literalPlus(self) -> None:
        """A LITERAL+ APPEND over a raw socket needs no continuation."""
        mail, cert = await tlsMailStack(self, USERS)
        host, port = mail.address("imap")

        def client() -> list[bytes]:
            with socket.create_connection((host, port), timeout=10) as s:
                f = s.makefile("rb")
                f.readline()
                body = b"Subject: plus\r\n\r\nno wait\r\n"
                s.sendall(
                    b"a LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n"
                    % (
                        len(ALICE),
                        ALICE.encode(),
                        len(USERS[ALICE]),
                        USERS[ALICE].encode(),
                    )
                    + b"b APPEND INBOX {%d+}\r\n%s\r\nc LOGOUT\r\n" % (len(body), body)
                )
                return [f.readline() for _ in range(4)]

        lines = await inThread(client)
        self.assertTrue(lines[0].startswith(b"a OK"))
        self.assertTrue(lines[1].startswith(b"b OK [APPENDUID"))
        self.assertEqual(lines[3], b"c OK LOGOUT successful\r\n")


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "20", *args],
        capture_output=True,
        check=False,
    )


class CurlTests(TestCase):
    def setUp(self) -> None:
        need("curl", "curl")

    async def test_listAndFetch(self) -> None:
        """
        curl lists folders over imap:// and fetches a message by UID, with
        STARTTLS required and the certificate verified.
        """
        mail, cert = await tlsMailStack(self, USERS)
        await deliver(mail, BOB, MESSAGE)
        host, port = mail.address("imap")
        common = ["--ssl-reqd", "--cacert", cert, "--user", f"{BOB}:{USERS[BOB]}"]
        listed = await inThread(curl, *common, f"imap://localhost:{port}/")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertIn(b'* LIST (\\HasNoChildren) "/" "INBOX"', listed.stdout)
        self.assertIn(b'\\Sent) "/" "Sent"', listed.stdout)
        fetched = await inThread(curl, *common, f"imap://localhost:{port}/INBOX;UID=1")
        self.assertEqual(fetched.returncode, 0, fetched.stderr)
        self.assertEqual(fetched.stdout, MESSAGE)
        searched = await inThread(
            curl, *common, f"imap://localhost:{port}/INBOX?SUBJECT%20interop"
        )
        self.assertEqual(searched.stdout, b"* SEARCH 1\r\n")


class ConcurrencyTests(TestCase):
    async def test_twoIMAPSessionsSMTPAndPOP3(self) -> None:
        """
        Two IMAP sessions, an SMTP delivery and a POP3 session on one
        mailbox at once:

        - POP3 holds its maildrop lock; IMAP sessions are not blocked by
          it, and a second POP3 session is refused [IN-USE].
        - An SMTP delivery shows in both IMAP sessions (EXISTS); POP3
          keeps the listing it had at login.
        - A flag set in one IMAP session shows in the other.
        - Messages are \\Recent in the session that selected or learned
          of them first (C{a}), and not in the other.
        - POP3's DELE takes effect at QUIT: until then IMAP still has the
          message; after, both IMAP sessions get EXPUNGE, and the message
          POP3 retrieved is \\Seen for them.
        - A message IMAP expunges while POP3 has it listed gets -ERR from
          RETR, not a broken session.
        """
        mail, cert = await tlsMailStack(self, USERS)
        for n in (1, 2):
            await deliver(mail, ALICE, b"Subject: m%d\r\n\r\nbody %d\r\n" % (n, n))
        imapHost, imapPort = mail.address("imap")
        popHost, popPort = mail.address("pop3")
        smtpHost, smtpPort = mail.address("smtp")

        def pop() -> poplib.POP3:
            p = poplib.POP3(popHost, popPort, timeout=10)
            p.stls(context=context(cert))
            p.user(ALICE)
            p.pass_(USERS[ALICE])
            return p

        p = await inThread(pop)
        self.assertEqual((await inThread(p.stat))[0], 2)
        with self.assertRaises(poplib.error_proto) as caught:
            await inThread(pop)
        self.assertIn(b"[IN-USE]", caught.exception.args[0])

        a = await inThread(connect, imapHost, imapPort, cert)
        b = await inThread(connect, imapHost, imapPort, cert)
        for m in (a, b):
            self.assertEqual(await inThread(m.select, "INBOX"), ("OK", [b"2"]))
            m.untagged_responses.clear()

        def smtp() -> None:
            with smtplib.SMTP(smtpHost, smtpPort, timeout=10) as s:
                s.sendmail(
                    "carol@remote.example", [ALICE], b"Subject: m3\r\n\r\nbody 3\r\n"
                )

        await inThread(smtp)

        def noop(m: imaplib.IMAP4) -> dict[str, list[Any]]:
            m.noop()
            responses = dict(m.untagged_responses)
            m.untagged_responses.clear()
            return responses

        seen = await inThread(noop, a)
        self.assertEqual((seen["EXISTS"], seen["RECENT"]), ([b"3"], [b"3"]))
        seen = await inThread(noop, b)
        self.assertEqual((seen["EXISTS"], seen.get("RECENT")), ([b"3"], None))
        self.assertEqual((await inThread(p.stat))[0], 2)

        await inThread(a.store, "1", "+FLAGS.SILENT", "(\\Flagged)")
        await inThread(noop, a)
        self.assertEqual(
            (await inThread(noop, b))["FETCH"], [b"1 (UID 1 FLAGS (\\Flagged))"]
        )

        await inThread(p.retr, 1)
        await inThread(p.dele, 2)
        self.assertEqual((await inThread(a.fetch, "2", "(UID)"))[1], [b"2 (UID 2)"])
        self.assertTrue((await inThread(p.quit)).startswith(b"+OK"))
        for m, recent in ((a, b" \\Recent"), (b, b"")):
            seen = await inThread(noop, m)
            self.assertEqual(seen["EXPUNGE"], [b"2"])
            self.assertEqual(
                seen["FETCH"], [b"1 (UID 1 FLAGS (\\Flagged%s \\Seen))" % recent]
            )

        p = await inThread(pop)
        self.assertEqual((await inThread(p.stat))[0], 2)
        await inThread(a.uid, "STORE", "3", "+FLAGS.SILENT", "(\\Deleted)")
        await inThread(a.uid, "EXPUNGE", "3")
        with self.assertRaises(poplib.error_proto) as caught:
            await inThread(p.retr, 2)
        self.assertIn(b"removed by another session", caught.exception.args[0])
        self.assertTrue((await inThread(p.quit)).startswith(b"+OK"))
        self.assertEqual((await inThread(noop, b))["EXPUNGE"], [b"2"])
        for m in (a, b):
            await inThread(m.logout)
        remaining = await mail.deliveredTo(ALICE)
        self.assertEqual([r.message["Subject"] for r in remaining], ["m1"])
        self.assertEqual(remaining[0].flags, frozenset({"\\Flagged", "\\Seen"}))
