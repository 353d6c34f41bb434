"""
An IMAP client as a Deferred API: log in (STARTTLS verified with
service-identity), list folders, search, fetch, move and append.

L{connectIMAP} uses Twisted's L{IMAP4Client} for the dialogue and its
response parsing, with two changes: TLS is started with a verifying
context before anything else (Twisted's C{login} starts TLS itself with
an unverified C{ClientContextFactory} when the server offers it), and
LOGIN is sent directly (Twisted's C{login} would try that TLS again).
MOVE, UID FETCH of C{BODY.PEEK[]} and the UIDPLUS answers (APPENDUID,
COPYUID) are sent and read here, as Twisted's client has no methods for
them. TLS modes are those of L{appnet.mail.client}.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.interfaces import ITLSTransport
from twisted.mail.imap4 import Command, IMAP4Client, IMAP4Exception
from twisted.python.failure import Failure

from appnet.address import isLoopback
from appnet.errors import CannotConnect
from appnet.mail.client import TLS_MODES, MailClientError, tlsOptions
from appnet.mail.imap.wire import encodeMailbox, string, uidSet

__all__ = [
    "FolderEntry",
    "FolderStatus",
    "IMAPMessage",
    "IMAPSession",
    "MessageSummary",
    "connectIMAP",
]


@frozen
class FolderEntry:
    """
    One folder as LIST shows it.

    @ivar attributes: C{\\HasChildren}, C{\\Sent}, C{\\Noselect} ...
    """

    name: str
    attributes: tuple[str, ...]

    @property
    def selectable(self) -> bool:
        lowered = {a.lower() for a in self.attributes}
        return "\\noselect" not in lowered and "\\nonexistent" not in lowered


@frozen
class FolderStatus:
    """A folder's counts (STATUS)."""

    messages: int
    unseen: int
    uidNext: int
    uidValidity: int


@frozen
class MessageSummary:
    """What a message listing shows."""

    uid: int
    flags: tuple[str, ...]
    size: int
    date: str
    sender: str
    subject: str


@frozen
class IMAPMessage:
    """A fetched message, byte for byte."""

    uid: int
    data: bytes


class _Client(IMAP4Client):
    """Twisted's client, telling when the greeting has arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.greeted: Deferred[Any] = Deferred()

    def serverGreeting(self, caps: Any) -> None:
        self.greeted.callback(caps)

    async def upgrade(self, options: Any) -> None:
        """
        STARTTLS with the capabilities we already hold (Twisted's
        C{startTLS} reads its private capability cache, which the greeting
        does not fill).
        """
        await self.sendCommand(Command(b"STARTTLS"))
        ITLSTransport(self.transport).startTLS(options)
        self.startedTLS = True
        await self.getCapabilities(useCache=False)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


T = TypeVar("T")

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")


class IMAPSession:
    """
    A logged-in IMAP connection.
    """

    def __init__(self, client: _Client, capabilities: dict[bytes, Any]) -> None:
        self._client = client
        self.capabilities = capabilities
        self.selected: str | None = None

    # The API: Deferreds, failures as MailClientError.

    def listFolders(self) -> Deferred[list[FolderEntry]]:
        """Every folder (LIST "" "*")."""
        return _api(self._listFolders())

    def status(self, folder: str) -> Deferred[FolderStatus]:
        """A folder's counts, without selecting it."""
        return _api(self._status(folder))

    def select(self, folder: str) -> Deferred[int]:
        """Select a folder; fires with how many messages it holds."""
        return _api(self._select(folder))

    def search(self, query: str = "ALL") -> Deferred[list[int]]:
        """The UIDs of the selected folder's messages matching C{query}."""
        return _api(self._search(query))

    def summaries(self, uids: Sequence[int]) -> Deferred[list[MessageSummary]]:
        """UID, flags, size, date, sender and subject of messages."""
        return _api(self._summaries(uids))

    def fetch(
        self,
        uids: Sequence[int],
        sink: Callable[[IMAPMessage], None] | None = None,
    ) -> Deferred[list[IMAPMessage]]:
        """
        Messages by UID, without marking them read (BODY.PEEK[]), one at
        a time.

        @param sink: receives each message as it arrives; the result list
            is then empty, so memory does not grow with the folder.
        """
        return _api(self._fetch(uids, sink))

    def move(self, uids: Sequence[int], folder: str) -> Deferred[None]:
        """
        Move messages to another folder (MOVE, else COPY, STORE \\Deleted
        and UID EXPUNGE).
        """
        return _api(self._move(uids, folder))

    def append(
        self,
        folder: str,
        data: bytes,
        flags: Sequence[str] = (),
        date: str | None = None,
    ) -> Deferred[int | None]:
        """
        Store a message in a folder.

        @param date: an IMAP date-time (C{"05-Jan-2024 10:30:00 +0100"}).
        @return: its UID, if the server says (UIDPLUS).
        """
        return _api(self._append(folder, data, flags, date))

    def logout(self) -> Deferred[None]:
        """Log out and close the connection."""
        return _api(self._logout())

    # The work.

    def _command(
        self, verb: bytes, args: bytes, want: tuple[bytes, ...] = ()
    ) -> Deferred[Any]:
        return self._client.sendCommand(Command(verb, args, wantResponse=want))

    async def _listFolders(self) -> list[FolderEntry]:
        """Every folder (LIST "" "*")."""
        listed = await self._client.list("", "*")
        return [FolderEntry(name, tuple(flags)) for flags, _, name in listed]

    async def _status(self, folder: str) -> FolderStatus:
        """A folder's counts, without selecting it."""
        result = await self._client.status(
            folder, "MESSAGES", "UNSEEN", "UIDNEXT", "UIDVALIDITY"
        )
        return FolderStatus(
            int(result["MESSAGES"]),
            int(result["UNSEEN"]),
            int(result["UIDNEXT"]),
            int(result["UIDVALIDITY"]),
        )

    async def _select(self, folder: str) -> int:
        """Select a folder; returns how many messages it holds."""
        result = await self._client.select(folder)
        self.selected = folder
        return int(result.get("EXISTS", 0))

    async def _search(self, query: str = "ALL") -> list[int]:
        """The UIDs of the selected folder's messages matching C{query}."""
        found = await self._client.search(query, uid=True)
        return sorted(int(u) for u in found)

    async def _summaries(self, uids: Sequence[int]) -> list[MessageSummary]:
        """UID, flags, size, date, sender and subject of messages."""
        if not uids:
            return []
        result = await self._client.fetchAll(uidSet(uids).decode(), uid=True)
        summaries = []
        for values in result.values():
            envelope = values.get("ENVELOPE") or [None] * 10
            sender = ""
            if envelope[2]:
                name, _, mailbox, host = envelope[2][0]
                address = f"{_text(mailbox)}@{_text(host)}" if host else _text(mailbox)
                sender = f"{_text(name)} <{address}>" if name else address
            summaries.append(
                MessageSummary(
                    uid=int(values["UID"]),
                    flags=tuple(_text(f) for f in values.get("FLAGS", ())),
                    size=int(values.get("RFC822.SIZE", 0)),
                    date=_text(values.get("INTERNALDATE")),
                    sender=sender,
                    subject=_text(envelope[1]),
                )
            )
        return sorted(summaries, key=lambda s: s.uid)

    async def _fetch(
        self,
        uids: Sequence[int],
        sink: Callable[[IMAPMessage], None] | None = None,
    ) -> list[IMAPMessage]:
        """
        Messages by UID, without marking them read (BODY.PEEK[]), one at
        a time.

        @param sink: receives each message as it arrives; the result list
            is then empty, so memory does not grow with the folder.
        """
        messages: list[IMAPMessage] = []
        for uid in sorted(set(uids)):
            result = await self._client.fetchSpecific(str(uid), uid=True, peek=True)
            # Twisted gives {seq: [[name, value, ...]]}, bytes decoded
            # with charmap (latin-1): encode them back.
            for (parts,) in result.values():
                data = None
                for i, part in enumerate(parts):
                    if part == "BODY" and i + 2 < len(parts):
                        data = parts[i + 2]
                if data is None:
                    continue
                if isinstance(data, str):
                    data = data.encode("latin-1")
                message = IMAPMessage(uid, data)
                if sink is None:
                    messages.append(message)
                else:
                    sink(message)
        return messages

    async def _move(self, uids: Sequence[int], folder: str) -> None:
        """
        Move messages to another folder (MOVE, else COPY, STORE \\Deleted
        and UID EXPUNGE).
        """
        if not uids:
            return
        target = string(encodeMailbox(folder))
        numbers = uidSet(uids)
        if b"MOVE" in self.capabilities:
            await self._command(b"UID MOVE", numbers + b" " + target)
            return
        await self._command(b"UID COPY", numbers + b" " + target)
        await self._command(b"UID STORE", numbers + b" +FLAGS.SILENT (\\Deleted)")
        await self._command(b"UID EXPUNGE", numbers)

    async def _append(
        self,
        folder: str,
        data: bytes,
        flags: Sequence[str] = (),
        date: str | None = None,
    ) -> int | None:
        """
        Store a message in a folder.

        @param date: an IMAP date-time (C{"05-Jan-2024 10:30:00 +0100"}).
        @return: its UID, if the server says (UIDPLUS).
        """
        _, last = await self._client.append(folder, io.BytesIO(data), flags, date)
        found = _APPENDUID.search(last if isinstance(last, bytes) else b"")
        return int(found.group(2)) if found else None

    async def _logout(self) -> None:
        """Log out and close the connection."""
        try:
            await self._client.logout()
        finally:
            if self._client.transport is not None:
                self._client.transport.loseConnection()


def connectIMAP(
    reactor: Any,
    host: str,
    port: int,
    *,
    username: str,
    password: str,
    tls: str = "require",
    trustRoot: bytes | None = None,
    verify: bool = True,
    timeout: float = 60.0,
) -> Deferred[IMAPSession]:
    """
    Connect, start TLS and log in.

    @param tls: C{"require"}, C{"auto"} (plain text only to a loopback
        server offering no STARTTLS) or C{"none"}.
    @raise MailClientError: (as a failure) if the connection, TLS or the
        login fails.
    """
    if tls not in TLS_MODES:
        raise ValueError(f"tls must be one of {TLS_MODES}")

    async def run() -> IMAPSession:
        client = _Client()
        endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
        await CannotConnect.during(host, port, connectProtocol(endpoint, client))
        try:
            caps = await client.greeted.addTimeout(timeout, reactor)
            if caps is None:
                caps = await client.getCapabilities(useCache=False)
            if tls != "none" and b"STARTTLS" in caps:
                await client.upgrade(tlsOptions(host, trustRoot, verify))
            elif tls == "require" or (tls == "auto" and not isLoopback(host)):
                raise MailClientError(f"{host} does not offer STARTTLS")
            login = string(username.encode()) + b" " + string(password.encode())
            await client.sendCommand(Command(b"LOGIN", login))
            caps = await client.getCapabilities(useCache=False)
            return IMAPSession(client, caps)
        except BaseException:
            if client.transport is not None:
                client.transport.loseConnection()
            raise

    return _api(run())


def _translate(failure: Failure) -> Failure:
    if failure.check(MailClientError, CannotConnect):
        return failure
    error = failure.value
    if isinstance(error, IMAP4Exception):
        text = error.args[0] if error.args else str(error)
    else:
        text = str(error) or type(error).__name__
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return Failure(MailClientError(f"IMAP: {text}"))


def _api(work: Coroutine[Any, Any, T]) -> Deferred[T]:
    return Deferred.fromCoroutine(work).addErrback(_translate)
