"""
The mail services over real sockets on 127.0.0.1: the seeds' dialogues,
appnet's own clients and command, the fixture, and many messages over
concurrent connections.
"""

from __future__ import annotations

import email
import os
from email.policy import default

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from appnet.mail.client import MailClientError, fetch, send
from appnet.mail.compose import Attachment, compose
from appnet.mail.testing import MailStack
from appnet.store.interfaces import DeliveryTarget
from appnet.testing import startMail
from tests.mail.sockets import Dialogue, inThread, smtpDialogue, tlsMailStack
from tests.process import Outcome, run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readFile(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class SeedDialogueTests(TestCase):
    """
    The textbook exchanges: crepes.fr's MTA hands alice's message to
    hamburger.edu over SMTP; a user reads, deletes and quits over POP3.
    """

    async def test_crepesToHamburger(self) -> None:
        """
        The crepes.fr -> hamburger.edu SMTP dialogue, line by line: every
        step is answered with its success code and the message lands in
        bob's mailbox.
        """
        mail = await startMail(
            self,
            users={"bob@hamburger.edu": "hungry-bob"},
            config={"hostname": "hamburger.edu"},
        )
        host, port = mail.address("smtp")
        transcript = await inThread(
            smtpDialogue,
            host,
            port,
            [
                "HELO crepes.fr",
                "MAIL FROM: <alice@crepes.fr>",
                "RCPT TO: <bob@hamburger.edu>",
                "DATA",
                "Do you like ketchup?\r\nHow about pickles?\r\n.",
                "QUIT",
            ],
        )
        greeting = transcript[0][1]
        self.assertEqual(greeting, ["220 hamburger.edu ESMTP appnet"])
        codes = [reply[-1][:3] for _, reply in transcript[1:]]
        self.assertEqual(codes, ["250", "250", "250", "354", "250", "221"])
        [message] = await mail.deliveredTo("bob@hamburger.edu")
        self.assertTrue(message.data.startswith(b"Return-Path: <alice@crepes.fr>\r\n"))
        self.assertTrue(
            message.data.endswith(
                b"\r\n\r\nDo you like ketchup?\r\nHow about pickles?\r\n"
            )
        )

    async def test_pop3ListRetrDeleQuit(self) -> None:
        """
        alice's POP3 session: user, pass, list, retr, dele, retr, dele,
        quit; afterwards her maildrop is empty.
        """
        mail = await startMail(self, users={"alice@crepes.fr": "hungry-alice"})
        smtpHost, smtpPort = mail.address("smtp")
        for text in ("first", "second"):
            await inThread(
                smtpDialogue,
                smtpHost,
                smtpPort,
                [
                    "HELO hamburger.edu",
                    "MAIL FROM:<bob@hamburger.edu>",
                    "RCPT TO:<alice@crepes.fr>",
                    "DATA",
                    f"Subject: {text}\r\n\r\n{text} message\r\n.",
                    "QUIT",
                ],
            )
        host, port = mail.address("pop3")

        def session() -> list[list[str]]:
            client = Dialogue(host, port)
            replies = [[client.line()]]
            try:
                for command, multi in (
                    ("user alice@crepes.fr", False),
                    ("pass hungry-alice", False),
                    ("list", True),
                    ("retr 1", True),
                    ("dele 1", False),
                    ("retr 2", True),
                    ("dele 2", False),
                    ("quit", False),
                ):
                    client.send(command)
                    replies.append(client.multiline() if multi else [client.line()])
            finally:
                client.close()
            return replies

        replies = await inThread(session)
        self.assertTrue(all(r[0].startswith("+OK") for r in replies), replies)
        listing = replies[3]
        self.assertEqual(len(listing), 4)
        self.assertEqual([line.split()[0] for line in listing[1:3]], ["1", "2"])
        self.assertIn("first message", replies[4])
        self.assertIn("second message", replies[6])
        self.assertEqual(replies[-1], ["+OK Bye, 2 messages deleted"])
        self.assertEqual(await mail.deliveredTo("alice@crepes.fr"), [])


class ClientTests(TestCase):
    """
    appnet's own clients against its servers, with STARTTLS/STLS verified
    against the stack's certificate.
    """

    async def test_binaryAttachmentRoundTrip(self) -> None:
        """
        A message with a binary attachment submitted with STARTTLS and AUTH
        and fetched with STLS comes back byte for byte.
        """
        mail, cert = await tlsMailStack(
            self, {"alice@example.org": "pw-alice-1", "bob@example.org": "pw-bob-12"}
        )
        payload = os.urandom(100_000) + b"\r\n.\r\n" + bytes(range(256))
        message = compose(
            sender="Alice Liddell <alice@example.org>",
            to=["bob@example.org"],
            subject="Grüße: the file",
            text="Here it is.\n.\nA line with only a dot, above.\n",
            html="<p>Here it is.</p>",
            attachments=[Attachment("data.bin", payload)],
        )
        host, port = mail.address("submission")
        result = await send(
            reactor,
            host,
            port,
            sender="alice@example.org",
            recipients=["bob@example.org", "nobody@example.org"],
            message=message,
            username="alice@example.org",
            password="pw-alice-1",
            trustRoot=readFile(cert),
        )
        self.assertEqual(result.accepted, ["bob@example.org"])
        [refused] = result.refused
        self.assertEqual((refused.address, refused.code), ("nobody@example.org", 550))
        [stored] = await mail.deliveredTo("bob@example.org")
        self.assertIn(b"with ESMTPSA id", stored.data)
        host, port = mail.address("pop3")
        fetched = await fetch(
            reactor,
            host,
            port,
            username="bob@example.org",
            password="pw-bob-12",
            trustRoot=readFile(cert),
        )
        self.assertEqual(len(fetched), 1)
        self.assertEqual(fetched[0].data, stored.data)
        parsed = email.message_from_bytes(fetched[0].data, policy=default)
        self.assertEqual(parsed["Subject"], "Grüße: the file")
        [attachment] = list(parsed.iter_attachments())  # type: ignore[attr-defined]
        self.assertEqual(attachment.get_content(), payload)
        text = parsed.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
        content = text.get_content().replace("\r\n", "\n")
        self.assertIn("\n.\nA line with only a dot", content)

    async def test_sendFailures(self) -> None:
        """
        A refused login, and a message with no acceptable recipient, fail
        with MailClientError carrying the server's reply.
        """
        mail, cert = await tlsMailStack(self, {"alice@example.org": "pw-alice-1"})
        host, port = mail.address("submission")
        with self.assertRaises(MailClientError):
            await send(
                reactor,
                host,
                port,
                sender="alice@example.org",
                recipients=["alice@example.org"],
                message=b"Subject: x\n\nx\n",
                username="alice@example.org",
                password="wrong-password",
                trustRoot=readFile(cert),
            )
        host, port = mail.address("smtp")
        with self.assertRaises(MailClientError) as caught:
            await send(
                reactor,
                host,
                port,
                sender="x@remote.example",
                recipients=["nobody@example.org"],
                message=b"Subject: x\n\nx\n",
                trustRoot=readFile(cert),
            )
        self.assertEqual([r.code for r in caught.exception.results], [550])

    async def test_untrustedCertificate(self) -> None:
        """
        A server whose certificate is not trusted is refused (verification
        is on by default).
        """
        mail, _ = await tlsMailStack(self, {"alice@example.org": "pw-alice-1"})
        host, port = mail.address("smtp")
        with self.assertRaises(MailClientError):
            await send(
                reactor,
                host,
                port,
                sender="x@remote.example",
                recipients=["alice@example.org"],
                message=b"Subject: x\n\nx\n",
            )
        self.assertEqual(await mail.deliveredTo("alice@example.org"), [])

    async def test_keepMode(self) -> None:
        """
        Download-and-keep: messages stay, UIDLs are the same in the next
        session, and a skip function avoids fetching them again.
        """
        mail = await startMail(self, users={"bob@example.org": "pw-bob-12"})
        for n in range(3):
            await self.deliver(mail, f"message {n}")
        host, port = mail.address("pop3")
        first = await fetch(
            reactor,
            host,
            port,
            username="bob@example.org",
            password="pw-bob-12",
            tls="auto",
        )
        self.assertEqual(len(first), 3)
        await self.deliver(mail, "message 3")
        seen = {m.uidl for m in first}
        second = await fetch(
            reactor,
            host,
            port,
            username="bob@example.org",
            password="pw-bob-12",
            tls="auto",
            skip=seen.__contains__,
        )
        self.assertEqual(len(second), 1)
        self.assertNotIn(second[0].uidl, seen)
        self.assertIn(b"message 3", second[0].data)
        await fetch(
            reactor,
            host,
            port,
            username="bob@example.org",
            password="pw-bob-12",
            tls="auto",
            delete=True,
            skip=lambda uidl: True,
        )
        self.assertEqual(await mail.deliveredTo("bob@example.org"), [])

    async def deliver(self, mail: object, text: str) -> None:
        host, port = mail.address("smtp")  # type: ignore[attr-defined]
        await send(
            reactor,
            host,
            port,
            sender="",
            recipients=["bob@example.org"],
            message=f"Subject: {text}\n\n{text}\n".encode(),
            tls="auto",
        )


class CommandTests(TestCase):
    """The appnet mail command, as a real process."""

    timeout = 60

    async def test_sendAndFetch(self) -> None:
        """
        appnet mail send submits a composed message with an attachment;
        appnet mail fetch --delete writes it as a .eml file and empties
        the maildrop.
        """
        mail, cert = await tlsMailStack(self, {"alice@example.org": "pw-alice-1"})
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        attachment = os.path.join(work, "notes.bin")
        with open(attachment, "wb") as f:
            f.write(bytes(range(256)) * 4)
        host, port = mail.address("submission")
        sent = await run(
            [
                "-m", "appnet", "mail", "send",
                "--from", "alice@example.org", "--to", "alice@example.org",
                "--subject", "Notes", "--body", "See attached.",
                "--attach", attachment,
                "--server", f"{host}:{port}", "--user", "alice@example.org",
                "--password-stdin", "--cafile", cert,
            ],
            ROOT,
            {"PYTHONPATH": ROOT},
            stdin=b"pw-alice-1\n",
        )  # fmt: skip
        self.assertEqual(sent.code, 0, sent.err)
        self.assertIn("alice@example.org: accepted", sent.out)
        out = os.path.join(work, "out")
        host, port = mail.address("pop3")
        fetched = await run(
            [
                "-m", "appnet", "mail", "fetch", "--pop3", f"{host}:{port}",
                "--user", "alice@example.org", "--password-stdin", "--delete",
                "--out", out, "--cafile", cert,
            ],
            ROOT,
            {"PYTHONPATH": ROOT},
            stdin=b"pw-alice-1\n",
        )  # fmt: skip
        self.assertEqual(fetched.code, 0, fetched.err)
        [name] = os.listdir(out)
        self.assertTrue(name.endswith(".eml"))
        parsed = email.message_from_bytes(
            readFile(os.path.join(out, name)), policy=default
        )
        self.assertEqual(parsed["Subject"], "Notes")
        [part] = list(parsed.iter_attachments())  # type: ignore[attr-defined]
        self.assertEqual(part.get_content(), bytes(range(256)) * 4)
        self.assertEqual(await mail.deliveredTo("alice@example.org"), [])

    async def test_sendRefused(self) -> None:
        """A refused submission exits 1 with a one-line reason."""
        mail, cert = await tlsMailStack(self, {"alice@example.org": "pw-alice-1"})
        host, port = mail.address("submission")
        outcome = await run(
            [
                "-m", "appnet", "mail", "send",
                "--from", "alice@example.org", "--to", "bob@example.org",
                "--body", "x", "--server", f"{host}:{port}",
                "--user", "alice@example.org", "--password-stdin", "--cafile", cert,
            ],
            ROOT,
            {"PYTHONPATH": ROOT},
            stdin=b"wrong-password\n",
        )  # fmt: skip
        self.assertEqual(outcome.code, 1)
        self.assertTrue(outcome.err.startswith("appnet: not sent: "), outcome.err)
        self.assertNotIn("Traceback", outcome.err)

    async def test_sendRejectedMessage(self) -> None:
        """
        A message the server refuses after accepting its recipients (too
        big, 552 at the end of DATA) prints no recipient as accepted: only
        the failure, with the server's reason.
        """
        mail, cert = await tlsMailStack(
            self,
            {"alice@example.org": "pw-alice-1"},
            config={"mail": {"max_message_size": "2K"}},
        )
        host, port = mail.address("submission")
        outcome = await self.appnet(
            "mail", "send", "--from", "alice@example.org",
            "--to", "alice@example.org", "--to", "bob@elsewhere.example",
            "--body", "x" * 10_000, "--server", f"{host}:{port}",
            "--user", "alice@example.org", "--password-stdin", "--cafile", cert,
            stdin=b"pw-alice-1\n",
        )  # fmt: skip
        self.assertEqual(outcome.code, 1, outcome.err)
        self.assertNotIn("accepted", outcome.out)
        self.assertNotIn("250", outcome.out)
        self.assertTrue(outcome.err.startswith("appnet: not sent: "), outcome.err)
        self.assertIn("552", outcome.err)
        self.assertEqual(await mail.deliveredTo("alice@example.org"), [])

    def appnet(self, *args: str, stdin: bytes | None = None) -> Deferred[Outcome]:
        """Run C{python -m appnet args...} from the source tree."""
        return Deferred.fromCoroutine(
            run(["-m", "appnet", *args], ROOT, {"PYTHONPATH": ROOT}, stdin=stdin)
        )

    async def test_bodyFile(self) -> None:
        """
        appnet mail send --body-file FILE takes the message text from the
        file, and --body-file - from standard input, both read as UTF-8
        with their lines (one holding only a dot) intact; the text arrives
        as written, with non-ASCII header text encoded.
        """
        mail, cert = await tlsMailStack(
            self, {"alice@example.org": "pw-alice-1", "bob@example.org": "pw-bob-12"}
        )
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        fromFile = "Grüße aus Köln.\n.\nThe line above is a dot.\n"
        fromStdin = "Привет из stdin.\nSecond line.\n"
        body = os.path.join(work, "body.txt")
        with open(body, "wb") as f:
            f.write(fromFile.encode("utf-8"))
        host, port = mail.address("submission")
        sent = await self.appnet(
            "mail", "send",
            "--from", "alice@example.org", "--to", "bob@example.org",
            "--subject", "Köln", "--body-file", body,
            "--server", f"{host}:{port}", "--user", "alice@example.org",
            "--password-stdin", "--cafile", cert,
            stdin=b"pw-alice-1\n",
        )  # fmt: skip
        self.assertEqual(sent.code, 0, sent.err)
        self.assertIn("bob@example.org: accepted", sent.out)
        host, port = mail.address("smtp")
        sent = await self.appnet(
            "mail", "send",
            "--from", "Carol <carol@crepes.fr>", "--to", "bob@example.org",
            "--subject", "stdin", "--body-file", "-",
            "--server", f"{host}:{port}", "--cafile", cert,
            stdin=fromStdin.encode("utf-8"),
        )  # fmt: skip
        self.assertEqual(sent.code, 0, sent.err)
        first, second = await mail.deliveredTo("bob@example.org")
        self.assertIn(b"\r\nSubject: =?utf-8?", first.data)
        self.assertEqual(first.message["Subject"], "Köln")
        self.assertEqual(self.text(first.data), fromFile)
        self.assertIn(b"\r\nReturn-Path: <carol@crepes.fr>\r\n", b"\r\n" + second.data)
        self.assertEqual(self.text(second.data), fromStdin)

    def text(self, data: bytes) -> str:
        """The plain text of a stored message, with LF line ends."""
        parsed = email.message_from_bytes(data, policy=default)
        part = parsed.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
        content: str = part.get_content()
        return content.replace("\r\n", "\n")

    async def test_bodyFileErrors(self) -> None:
        """
        Mistakes in the message's text exit with one line and no
        traceback: both --body and --body-file, and an argument that is
        not UTF-8 (usage, 2); a missing file, a file or standard input
        that is not UTF-8, --body-file - with --password-stdin, and a
        missing --attach file (1).
        """
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        latin1 = os.path.join(work, "latin1.txt")
        with open(latin1, "wb") as f:
            f.write("café\n".encode("latin-1"))
        missing = os.path.join(work, "missing.txt")
        common = ["mail", "send", "--from", "a@example.org", "--to", "b@example.org",
                  "--server", "127.0.0.1:9"]  # fmt: skip
        outcomes = await gatherResults(
            [
                self.appnet(*common, "--body", "x", "--body-file", latin1),
                self.appnet(*common, "--body-file", missing),
                self.appnet(*common, "--body-file", latin1),
                self.appnet(
                    *common,
                    "--body-file",
                    "-",
                    "--user",
                    "a@example.org",
                    "--password-stdin",
                    stdin=b"pw\nbody\n",
                ),
                self.appnet(*common, "--body-file", "-", stdin=b"caf\xe9\n"),
                self.appnet(*common, "--body", "x", "--attach", missing),
                self.appnet(*common, "--body", os.fsdecode(b"caf\xe9")),
            ]
        )
        self.assertEqual(
            [(o.code, o.err.splitlines()[0]) for o in outcomes],
            [
                (2, "appnet: give one of --body and --body-file"),
                (1, f"appnet: cannot read {missing}: No such file or directory"),
                (1, f"appnet: {latin1} is not UTF-8 text (byte 3: invalid"
                    " continuation byte)"),
                (1, "appnet: --body-file - and --password-stdin both need stdin"),
                (1, "appnet: standard input is not UTF-8 text (byte 3: invalid"
                    " continuation byte)"),
                (1, f"appnet: cannot read {missing}: No such file or directory"),
                (2, "appnet: --body is not UTF-8 text"),
            ],
        )  # fmt: skip
        for outcome in outcomes:
            self.assertNotIn("Traceback", outcome.err)
            if outcome.code == 1:
                self.assertEqual(len(outcome.err.splitlines()), 1, outcome.err)

    async def test_fetchKeep(self) -> None:
        """
        appnet mail fetch --keep writes every message as a .eml file and
        leaves the maildrop as it was; run again (keeping is the default)
        it downloads only the message that arrived since, and does not
        touch the files it wrote before. --keep with --delete is refused.
        """
        mail, cert = await tlsMailStack(self, {"alice@example.org": "pw-alice-1"})
        for n in (1, 2):
            await self.deliver(mail, b"Subject: m%d\r\n\r\nbody %d\r\n" % (n, n))
        out = os.path.join(os.path.abspath(self.mktemp()), "out")
        host, port = mail.address("pop3")
        fetch = ["mail", "fetch", "--pop3", f"{host}:{port}",
                 "--user", "alice@example.org", "--password-stdin",
                 "--out", out, "--cafile", cert]  # fmt: skip
        first = await self.appnet(*fetch, "--keep", stdin=b"pw-alice-1\n")
        self.assertEqual(first.code, 0, first.err)
        self.assertEqual(
            first.out.splitlines()[-1], f"2 new messages in {out} (kept on server)"
        )
        stored = await mail.deliveredTo("alice@example.org")
        self.assertEqual(self.saved(out), {m.data for m in stored})
        earlier = os.path.join(out, sorted(os.listdir(out))[0])
        with open(earlier, "wb") as f:
            f.write(b"edited locally")

        await self.deliver(mail, b"Subject: m3\r\n\r\nbody 3\r\n")
        second = await self.appnet(*fetch, stdin=b"pw-alice-1\n")
        self.assertEqual(second.code, 0, second.err)
        [written, summary] = second.out.splitlines()
        self.assertEqual(summary, f"1 new messages in {out} (kept on server)")
        stored = await mail.deliveredTo("alice@example.org")
        self.assertEqual(len(stored), 3)
        self.assertEqual(readFile(written), stored[2].data)
        self.assertEqual(readFile(earlier), b"edited locally")
        self.assertEqual(len(os.listdir(out)), 3)

        both = await self.appnet(*fetch, "--keep", "--delete", stdin=b"pw-alice-1\n")
        self.assertEqual(both.code, 2)
        self.assertTrue(
            both.err.startswith("appnet: give --keep or --delete, not both\n"),
            both.err,
        )
        self.assertEqual(len(await mail.deliveredTo("alice@example.org")), 3)

    def saved(self, directory: str) -> set[bytes]:
        """The contents of the .eml files in C{directory}."""
        names = os.listdir(directory)
        self.assertTrue(all(n.endswith(".eml") for n in names), names)
        return {readFile(os.path.join(directory, n)) for n in names}

    async def deliver(self, mail: MailStack, data: bytes) -> None:
        """File C{data} in alice's INBOX, as a delivery would."""
        staged = mail.store.mail.stage()
        staged.write(data)
        try:
            await mail.store.mail.deliver(staged, [DeliveryTarget("alice@example.org")])
        finally:
            staged.discard()


LOAD = """
import smtplib, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
errors = []
def client(n):
    try:
        with smtplib.SMTP(host, port, timeout=60) as s:
            for i in range(100):
                s.sendmail("load@remote.example", ["bob@example.org"],
                           f"Subject: {n}-{i}\\r\\n\\r\\nmessage {n}-{i}\\r\\n")
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
for t in threads: t.start()
for t in threads: t.join()
print("errors", errors)
"""


class LoadTests(TestCase):
    timeout = 120

    async def test_thousandMessages(self) -> None:
        """
        1,000 messages over 10 concurrent connections give 1,000 distinct
        stored messages with distinct UIDs.
        """
        mail = await startMail(self, users={"bob@example.org": "pw-bob-12"})
        host, port = mail.address("smtp")
        outcome = await run(["-c", LOAD, host, str(port)], ROOT)
        self.assertEqual(outcome.out.strip(), "errors []", outcome.err)
        messages = await mail.deliveredTo("bob@example.org")
        self.assertEqual(len(messages), 1000)
        self.assertEqual(len({m.uid for m in messages}), 1000)
        subjects = {m.message["Subject"] for m in messages}
        self.assertEqual(subjects, {f"{n}-{i}" for n in range(10) for i in range(100)})
        usage = await mail.store.mail.usage("bob@example.org")
        self.assertEqual(usage.messages, 1000)


class TraceTests(TestCase):
    """--trace smtp,pop3 logs dialogues with secrets masked."""

    async def test_masked(self) -> None:
        """
        The transcript shows commands but not AUTH responses, PASS
        arguments or message bodies.
        """
        from twisted.logger import globalLogPublisher

        lines: list[str] = []

        def observe(event: dict[str, object]) -> None:
            if "direction" in event:
                lines.append(f"{event['direction']}: {event['line']}")

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        mail = await startMail(
            self,
            users={"alice@example.org": "pw-alice-1"},
            config={"trace": ["smtp", "pop3"]},
        )
        host, port = mail.address("submission")

        def submit() -> None:
            import smtplib

            with smtplib.SMTP(host, port, timeout=10) as s:
                s.login("alice@example.org", "pw-alice-1")
                s.sendmail(
                    "alice@example.org",
                    ["alice@example.org"],
                    "Subject: traced\r\n\r\nsecret body text\r\n",
                )

        await inThread(submit)
        host, port = mail.address("pop3")

        def read() -> None:
            import poplib

            p = poplib.POP3(host, port, timeout=10)
            p.user("alice@example.org")
            p.pass_("pw-alice-1")
            p.quit()

        await inThread(read)
        transcript = "\n".join(lines)
        self.assertIn("C: AUTH PLAIN ********", transcript)
        self.assertIn("C: PASS ********", transcript)
        self.assertIn("C: <message, 3 lines", transcript)
        self.assertNotIn("pw-alice-1", transcript)
        self.assertNotIn("secret body text", transcript)
        import base64

        self.assertNotIn(
            base64.b64encode(b"\0alice@example.org\0pw-alice-1").decode(), transcript
        )


class SharedReceivedFileTests(TestCase):
    """
    A message both queued and delivered is one file; every reader sees
    the bytes it saw when the Return-Path line was in the file.
    """

    async def test_readersSeeReturnPath(self) -> None:
        """
        Submitted to a local and a remote recipient, the message is one
        inode under the mailbox and the queue; POP3 RETR and LIST, IMAP
        BODY[] and RFC822.SIZE give the Return-Path line, then the queued
        bytes, and the queue (the relay's reader) has no Return-Path.
        """
        import imaplib
        import poplib
        import smtplib

        alice, bob = "alice@example.org", "bob@example.org"
        mail = await startMail(self, users={alice: "alice-pw-1234", bob: "bob-pw-1234"})
        host, port = mail.address("submission")

        def submit() -> None:
            with smtplib.SMTP(host, port) as client:
                client.login(alice, "alice-pw-1234")
                client.sendmail(
                    alice,
                    [bob, "zoe@remote.example"],
                    b"Subject: shared\r\n\r\none file, two names\r\n",
                )

        await inThread(submit)
        [queued] = await mail.store.queue.list()
        body = await mail.store.queue.openMessage(queued.id)
        with body.open() as f:
            queuedBytes = f.read()
        self.assertNotIn(b"Return-Path", queuedBytes)
        expected = b"Return-Path: <alice@example.org>\r\n" + queuedBytes

        pop3Host, pop3Port = mail.address("pop3")

        def pop3() -> tuple[bytes, int]:
            client = poplib.POP3(pop3Host, pop3Port)
            try:
                client.user(bob)
                client.pass_("bob-pw-1234")
                size = int(client.list(1).split()[2])
                _, lines, _ = client.retr(1)
                return b"\r\n".join(lines) + b"\r\n", size
            finally:
                client.quit()

        retrieved, listed = await inThread(pop3)
        self.assertEqual((retrieved, listed), (expected, len(expected)))

        imapHost, imapPort = mail.address("imap")

        def imap() -> tuple[bytes, bytes]:
            client = imaplib.IMAP4(imapHost, imapPort)
            try:
                client.login(bob, "bob-pw-1234")
                client.select("INBOX")
                _, data = client.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
                return data[0][0], data[0][1]  # type: ignore[index,return-value]
            finally:
                client.logout()

        head, fetched = await inThread(imap)
        self.assertEqual(fetched, expected)
        self.assertIn(b"RFC822.SIZE %d" % len(expected), head)

        root = mail.running.stack.dataDir.root.path
        [queueName] = os.listdir(os.path.join(root, "mail", "queue"))
        boxDir = os.path.join(root, "mail", "store", bob)
        [boxName] = os.listdir(boxDir)
        self.assertEqual(
            os.stat(os.path.join(root, "mail", "queue", queueName)).st_ino,
            os.stat(os.path.join(boxDir, boxName)).st_ino,
        )
