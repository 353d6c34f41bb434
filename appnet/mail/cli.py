"""
C{appnet mail send}, C{appnet mail fetch} and C{appnet mail imap}: a small
mail user agent.

C{send} composes a MIME message (text, attachments) and submits it with
STARTTLS and AUTH; C{fetch} downloads a POP3 maildrop into C{.eml} files
named by UIDL, keeping mail on the server (C{--keep}, the default: only
messages not already in the directory are downloaded) or deleting it
(C{--delete}). C{imap ls} lists folders (with counts) or a folder's
messages, C{imap fetch} saves messages as C{.eml} files (or prints one),
C{imap move} moves messages between folders. Servers are verified
against the platform's certificates and, when present, the data
directory's own (C{appnet cert}); C{--cafile} names another,
C{--insecure} turns verification off.
"""

from __future__ import annotations

import os
import re
from typing import Any, TextIO

from twisted.internet.threads import deferToThread
from twisted.python import usage

from appnet.cli import Command, CommandError, Context, SubOptions, readSecret
from appnet.config import parseHostPort
from appnet.mail.client import FetchedMessage, MailClientError, fetch, send
from appnet.mail.compose import attachmentFromFile, compose
from appnet.mail.imapclient import IMAPMessage, IMAPSession, connectIMAP

__all__ = ["MailOptions", "MailSend", "MailFetch", "MailIMAP"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class _ClientCommand(Command):
    optFlags = [
        ["password-stdin", None, "Read the password from standard input."],
        ["insecure", None, "Do not verify the server's certificate."],
        ["no-tls", None, "Never use TLS (loopback testing only)."],
    ]
    password: str | None = None

    def prepare(self, stdin: TextIO) -> None:
        if not self["user"]:
            return
        self.password = readSecret(
            stdin, self["password-stdin"], f"Password for {self['user']}: "
        )

    def address(self, option: str, defaultPort: int) -> tuple[str, int]:
        try:
            return parseHostPort(self[option], defaultPort)
        except ValueError as e:
            raise CommandError(f"--{option}: {e}") from None

    async def trustRoot(self, context: Context) -> bytes | None:
        path = self["cafile"]
        if path is None:
            own = context.dataDir.tlsCert
            if not own.exists():
                return None
            path = own.path
        try:
            data: bytes = await deferToThread(_read, path)
        except OSError as e:
            raise CommandError(f"cannot read {path}: {e.strerror}") from None
        return data

    def tlsMode(self) -> str:
        return "none" if self["no-tls"] else "auto"


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _utf8(data: bytes, source: str) -> str:
    """
    Message text, from a file or standard input alike, is UTF-8 (not the
    locale's encoding, whose error handler would let undecodable bytes
    through as surrogates that then fail in the composer).
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CommandError(
            f"{source} is not UTF-8 text (byte {e.start}: {e.reason})"
        ) from None


def _utf8Argument(option: str, value: str | None) -> None:
    """
    Refuse an argument that is not UTF-8: Python hands such bytes over as
    surrogates, which the composer cannot encode.
    """
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise usage.UsageError(f"{option} is not UTF-8 text") from None


async def _readText(path: str) -> str:
    """The UTF-8 text of the file at C{path}, or a L{CommandError}."""
    try:
        data: bytes = await deferToThread(_read, path)
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror}") from None
    return _utf8(data, path)


class MailSend(_ClientCommand):
    """Compose a message and submit it (STARTTLS, AUTH)."""

    synopsis = (
        "--from ADDR --to ADDR [--to ADDR]... --subject TEXT"
        " (--body TEXT | --body-file FILE) [--attach FILE]..."
        " [--server HOST:PORT] [--user NAME]"
    )
    optParameters = [
        ["from", None, None, "Sender address (envelope and From)."],
        ["subject", None, "", "Subject."],
        ["body", None, None, "Message text."],
        ["body-file", None, None, "Read the message text from FILE ('-': stdin)."],
        ["html-file", None, None, "An HTML alternative from FILE."],
        ["server", None, "localhost:2587", "Submission server HOST:PORT."],
        ["user", None, None, "Log in as NAME (default: no AUTH)."],
        ["cafile", None, None, "Trust the certificates in this PEM file."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.to: list[str] = []
        self.attach: list[str] = []

    def opt_to(self, address: str) -> None:
        """Recipient (repeatable)."""
        self.to.append(address)

    def opt_attach(self, path: str) -> None:
        """Attach FILE (repeatable)."""
        self.attach.append(path)

    def postOptions(self) -> None:
        if not self["from"]:
            raise usage.UsageError("--from is required")
        if not self.to:
            raise usage.UsageError("at least one --to is required")
        if (self["body"] is None) == (self["body-file"] is None):
            raise usage.UsageError("give one of --body and --body-file")
        for name in ("from", "subject", "body"):
            _utf8Argument(f"--{name}", self[name])
        for address in self.to:
            _utf8Argument("--to", address)

    def prepare(self, stdin: TextIO) -> None:
        if self["body-file"] == "-":
            if self["password-stdin"]:
                raise CommandError("--body-file - and --password-stdin both need stdin")
            raw = getattr(stdin, "buffer", None)
            if raw is None:
                self["body"] = stdin.read()
            else:
                self["body"] = _utf8(raw.read(), "standard input")
            self["body-file"] = None
        super().prepare(stdin)

    async def run(self, context: Context) -> None:
        host, port = self.address("server", 587)
        text = self["body"]
        if text is None:
            text = await _readText(self["body-file"])
        html = None
        if self["html-file"]:
            html = await _readText(self["html-file"])
        attachments = []
        for path in self.attach:
            try:
                attachments.append(await deferToThread(attachmentFromFile, path))
            except OSError as e:
                raise CommandError(f"cannot read {path}: {e.strerror}") from None
        message = compose(
            sender=self["from"],
            to=self.to,
            subject=self["subject"],
            text=text,
            html=html,
            attachments=attachments,
        )
        envelope = self["from"].rpartition("<")[2].rstrip(">").strip()
        try:
            result = await send(
                context.reactor,
                host,
                port,
                sender=envelope,
                recipients=self.to,
                message=message,
                username=self["user"],
                password=self.password,
                tls=self.tlsMode(),
                trustRoot=await self.trustRoot(context),
                verify=not self["insecure"],
            )
        except MailClientError as e:
            # Recipients the server accepted before it refused the message
            # got nothing: name only those it refused, then the failure.
            for r in e.results:
                if not r.accepted:
                    context.say(f"{r.address}: refused ({r.code} {r.response})")
            raise CommandError(f"not sent: {e}") from None
        for r in result.results:
            context.say(
                f"{r.address}: {'accepted' if r.accepted else 'refused'}"
                f" ({r.code} {r.response})"
            )


class MailFetch(_ClientCommand):
    """Download a POP3 maildrop into .eml files."""

    synopsis = "--user NAME --out DIR [--pop3 HOST:PORT] [--keep | --delete]"
    optParameters = [
        ["pop3", None, "localhost:1110", "POP3 server HOST:PORT."],
        ["user", None, None, "Account to log in as."],
        ["out", None, None, "Directory for the .eml files."],
        ["cafile", None, None, "Trust the certificates in this PEM file."],
    ]
    optFlags = _ClientCommand.optFlags + [
        ["keep", None, "Leave mail on the server (default)."],
        ["delete", None, "Delete mail from the server once downloaded."],
    ]

    def postOptions(self) -> None:
        if not self["user"]:
            raise usage.UsageError("--user is required")
        if not self["out"]:
            raise usage.UsageError("--out is required")
        if self["keep"] and self["delete"]:
            raise usage.UsageError("give --keep or --delete, not both")

    async def run(self, context: Context) -> None:
        host, port = self.address("pop3", 110)
        out = self["out"]
        try:
            await deferToThread(os.makedirs, out, exist_ok=True)
        except OSError as e:
            raise CommandError(f"cannot create {out}: {e.strerror}") from None

        def path(uidl: str) -> str:
            return os.path.join(out, _SAFE.sub("_", uidl) + ".eml")

        def have(uidl: str) -> bool:
            return os.path.exists(path(uidl))

        written: list[str] = []

        def sink(message: FetchedMessage) -> None:
            target = path(message.uidl)
            temporary = target + ".part"
            with open(temporary, "wb") as f:
                f.write(message.data)
            os.replace(temporary, target)
            written.append(target)

        assert self.password is not None
        try:
            await fetch(
                context.reactor,
                host,
                port,
                username=self["user"],
                password=self.password,
                delete=self["delete"],
                skip=have,
                sink=sink,
                tls=self.tlsMode(),
                trustRoot=await self.trustRoot(context),
                verify=not self["insecure"],
            )
        except MailClientError as e:
            raise CommandError(str(e)) from None
        for target in written:
            context.say(target)
        action = "deleted from server" if self["delete"] else "kept on server"
        context.say(f"{len(written)} new messages in {out} ({action})")


class _IMAPCommand(_ClientCommand):
    optParameters = [
        ["imap", None, "localhost:1143", "IMAP server HOST:PORT."],
        ["user", None, None, "Account to log in as."],
        ["cafile", None, None, "Trust the certificates in this PEM file."],
    ]

    def postOptions(self) -> None:
        if not self["user"]:
            raise usage.UsageError("--user is required")

    async def session(self, context: Context) -> IMAPSession:
        host, port = self.address("imap", 143)
        assert self.password is not None
        try:
            return await connectIMAP(
                context.reactor,
                host,
                port,
                username=self["user"],
                password=self.password,
                tls=self.tlsMode(),
                trustRoot=await self.trustRoot(context),
                verify=not self["insecure"],
            )
        except MailClientError as e:
            raise CommandError(str(e)) from None

    async def run(self, context: Context) -> None:
        session = await self.session(context)
        try:
            await self.work(context, session)
        except MailClientError as e:
            raise CommandError(str(e)) from None
        finally:
            try:
                await session.logout()
            except MailClientError:
                pass

    async def work(self, context: Context, session: IMAPSession) -> None:
        raise NotImplementedError

    def uids(self, args: list[str]) -> list[int]:
        try:
            uids = [int(a) for a in args]
        except ValueError:
            raise usage.UsageError("UIDs are numbers") from None
        if any(u <= 0 for u in uids):
            raise usage.UsageError("UIDs are positive numbers")
        return uids


class IMAPList(_IMAPCommand):
    """List folders, or the messages of one folder."""

    synopsis = "--user NAME [--imap HOST:PORT] [FOLDER]"

    def parseArgs(self, folder: str | None = None) -> None:
        self.folder = folder

    async def work(self, context: Context, session: IMAPSession) -> None:
        if self.folder is None:
            for entry in await session.listFolders():
                if not entry.selectable:
                    context.say(f"{entry.name}/")
                    continue
                status = await session.status(entry.name)
                special = " ".join(a for a in entry.attributes if a not in _STRUCTURAL)
                context.say(
                    f"{entry.name}\t{status.messages} messages,"
                    f" {status.unseen} unseen{'  ' + special if special else ''}"
                )
            return
        count = await session.select(self.folder)
        uids = await session.search("ALL")
        for summary in await session.summaries(uids):
            flags = " ".join(summary.flags) or "-"
            context.say(
                f"{summary.uid}\t{summary.date}\t{summary.size}\t{flags}"
                f"\t{summary.sender}\t{summary.subject}"
            )
        context.say(f"{count} messages in {self.folder}")


_STRUCTURAL = {"\\HasChildren", "\\HasNoChildren", "\\Noselect", "\\Marked",
               "\\Unmarked"}  # fmt: skip


class IMAPFetch(_IMAPCommand):
    """Save messages as .eml files, or print one."""

    synopsis = "--user NAME [--folder FOLDER] [--search QUERY] [--out DIR] [UID...]"
    optParameters = _IMAPCommand.optParameters + [
        ["folder", None, "INBOX", "Folder to fetch from."],
        ["search", None, None, "IMAP search keys (default: ALL, or the UIDs)."],
        ["out", None, None, "Directory for the .eml files (default: print)."],
    ]

    def parseArgs(self, *uids: str) -> None:
        self.wanted = self.uids(list(uids))

    async def work(self, context: Context, session: IMAPSession) -> None:
        await session.select(self["folder"])
        if self.wanted and not self["search"]:
            uids = self.wanted
        else:
            found = await session.search(self["search"] or "ALL")
            uids = [u for u in found if not self.wanted or u in self.wanted]
        out = self["out"]
        if out is None:
            if len(uids) != 1:
                raise CommandError(
                    f"{len(uids)} messages match: name one UID, or give --out DIR"
                )
            fetched = await session.fetch(uids)
            if not fetched:
                # UID FETCH of a UID the folder lacks is an empty OK.
                raise CommandError(f"no message with UID {uids[0]} in {self['folder']}")
            [message] = fetched
            stream = getattr(context.out, "buffer", None)
            if stream is None:
                context.out.write(message.data.decode("utf-8", "replace"))
            else:
                context.out.flush()
                stream.write(message.data)
                stream.flush()
            return
        try:
            await deferToThread(os.makedirs, out, exist_ok=True)
        except OSError as e:
            raise CommandError(f"cannot create {out}: {e.strerror}") from None
        status = await session.status(self["folder"])
        prefix = _SAFE.sub("_", self["folder"])
        written: list[str] = []

        def sink(message: IMAPMessage) -> None:
            name = f"{prefix}-{status.uidValidity}-{message.uid}.eml"
            target = os.path.join(out, name)
            temporary = target + ".part"
            with open(temporary, "wb") as f:
                f.write(message.data)
            os.replace(temporary, target)
            written.append(target)

        await session.fetch(uids, sink)
        for target in written:
            context.say(target)
        context.say(f"{len(written)} messages saved in {out}")


class IMAPMove(_IMAPCommand):
    """Move messages to another folder."""

    synopsis = "--user NAME [--folder FOLDER] --to FOLDER (UID... | --search QUERY)"
    optParameters = _IMAPCommand.optParameters + [
        ["folder", None, "INBOX", "Folder to move from."],
        ["to", None, None, "Folder to move to."],
        ["search", None, None, "Move the messages these search keys match."],
    ]

    def parseArgs(self, *uids: str) -> None:
        self.wanted = self.uids(list(uids))

    def postOptions(self) -> None:
        super().postOptions()
        if not self["to"]:
            raise usage.UsageError("--to is required")
        if not self.wanted and not self["search"]:
            raise usage.UsageError("name UIDs or give --search")

    async def work(self, context: Context, session: IMAPSession) -> None:
        await session.select(self["folder"])
        uids = self.wanted
        if self["search"]:
            found = await session.search(self["search"])
            uids = [u for u in found if not self.wanted or u in self.wanted]
        await session.move(uids, self["to"])
        context.say(f"{len(uids)} messages moved from {self['folder']} to {self['to']}")


class MailIMAP(SubOptions):
    """Work with an IMAP account."""

    synopsis = "ls|fetch|move ..."
    subCommands: Any = [
        ["ls", None, IMAPList, "List folders, or a folder's messages."],
        ["fetch", None, IMAPFetch, "Save messages as .eml files, or print one."],
        ["move", None, IMAPMove, "Move messages to another folder."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("say ls, fetch or move")


class MailOptions(SubOptions):
    """Send and fetch mail."""

    synopsis = "send|fetch|imap ..."
    subCommands: Any = [
        ["send", None, MailSend, "Compose and submit a message."],
        ["fetch", None, MailFetch, "Download a POP3 maildrop into .eml files."],
        ["imap", None, MailIMAP, "List, fetch and move mail over IMAP."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("say send, fetch or imap")
