"""
The mail catcher (C{twistd -n appnet --catch-all}, C{[mail] catch = true}):
the MX and submission ports accept mail to any address, with or without
any AUTH, and keep every message in one mailbox of the store; nothing is
relayed. L{Catcher} lists, searches, reads, deletes, waits for and
releases the caught messages; the testing API (L{appnet.testapi}) serves
it over HTTP at C{/_appnet/}.
"""

from __future__ import annotations

import email
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from email.policy import default
from typing import Any

from attrs import define, field, frozen
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from appnet.errors import NoSuchFolder, NoSuchMessage
from appnet.mail.envelope import Mailbox
from appnet.mail.routing import Route

__all__ = [
    "CATCHER",
    "CatchAuth",
    "CatchRouter",
    "CaughtMessage",
    "Catcher",
    "envelopeHeader",
]

#: The store mailbox that keeps caught mail.
CATCHER = "caught@catcher.invalid"

#: The header field the catcher adds with the envelope recipients.
ENVELOPE_TO = "X-Appnet-Envelope-To"


def envelopeHeader(recipients: Sequence[str]) -> bytes:
    """The field recording a caught message's envelope recipients."""
    value = ", ".join(f"<{r}>" for r in recipients)
    return f"{ENVELOPE_TO}: {value}\r\n".encode("utf-8", "replace")


@define
class CatchRouter:
    """
    Routes every recipient, of any domain, to the catcher's mailbox.
    """

    async def isLocal(self, domain: str) -> bool:
        """Every domain is caught."""
        return True

    def routeNow(self, mailbox: Mailbox, *, relay: bool) -> Route:
        """Keep it: nothing is relayed (decided at once)."""
        return Route(((CATCHER, None),))

    async def route(self, mailbox: Mailbox, *, relay: bool) -> Route:
        """Keep it: nothing is relayed."""
        return self.routeNow(mailbox, relay=relay)

    async def owns(self, account: str, sender: Mailbox) -> bool:
        """Any sender is fine."""
        return True


@implementer(ICredentialsChecker)
class _AnyPassword:
    credentialInterfaces = (IUsernamePassword,)

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        name: bytes = credentials.username or b"anonymous"
        return succeed(name)


@define
class CatchAuth:
    """
    The catcher's SMTP AUTH: every user name and password is accepted.
    """

    def portalFor(self, realm: IRealm, clientAddress: str) -> Portal:
        """A portal that lets anyone in."""
        return Portal(realm, [_AnyPassword()])


@frozen
class CaughtMessage:
    """
    One caught message.

    @ivar id: its id (its UID in the catcher's mailbox).
    @ivar sender: the envelope sender (C{""}: the null sender).
    @ivar recipients: the envelope recipients.
    @ivar subject: the C{Subject}.
    @ivar received: when it arrived, seconds since the epoch.
    @ivar data: the bytes as kept (the catcher's trace fields first).
    """

    id: int
    sender: str
    recipients: tuple[str, ...]
    subject: str
    received: float
    size: int
    data: bytes = field(repr=False)

    @property
    def message(self) -> EmailMessage:
        """The message parsed (C{email.policy.default})."""
        parsed = email.message_from_bytes(self.data, policy=default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def text(self) -> str:
        """The plain text body (or the HTML one, or C{""})."""
        body = self.message.get_body(("plain", "html"))
        if body is None:
            return ""
        try:
            content: str = body.get_content()
        except (LookupError, ValueError):
            return ""
        return content

    def matches(self, query: Mapping[str, str]) -> bool:
        """
        Does it match every criterion of C{query} (case-insensitive
        substrings): C{to}, C{from}, C{subject}, C{text} (the body), C{q}
        (any of them)?
        """
        fields = {
            "to": " ".join(self.recipients) + " " + str(self.message["To"] or ""),
            "from": self.sender + " " + str(self.message["From"] or ""),
            "subject": self.subject,
        }
        for key, wanted in query.items():
            if not wanted:
                continue
            wanted = wanted.lower()
            if key == "text":
                haystack = self.text()
            elif key == "q":
                haystack = " ".join(fields.values()) + " " + self.text()
            elif key in fields:
                haystack = fields[key]
            else:
                raise ValueError(f"unknown search field {key!r}")
            if wanted not in haystack.lower():
                return False
        return True

    def summary(self) -> dict[str, Any]:
        """The JSON API's listing entry."""
        return {
            "id": self.id,
            "from": self.sender,
            "to": list(self.recipients),
            "subject": self.subject,
            "received": self.received,
            "size": self.size,
        }


def _parse(uid: int, received: float, data: bytes) -> CaughtMessage:
    parsed = email.message_from_bytes(data, policy=default)
    sender = str(parsed.get("Return-Path", "")).strip().strip("<>")
    raw = str(parsed.get(ENVELOPE_TO, ""))
    recipients = tuple(r.strip().strip("<>") for r in raw.split(",") if r.strip())
    return CaughtMessage(
        id=uid,
        sender=sender,
        recipients=recipients,
        subject=str(parsed.get("Subject", "")),
        received=received,
        size=len(data),
        data=data,
    )


def _read(body: Any) -> bytes:
    with body.open() as f:
        data: bytes = f.read()
    return data


@define
class Catcher:
    """
    The caught mail in a store.

    @ivar store: the stack's L{IStore}.
    @ivar reactor: runs file reads in its thread pool, and the waits.
    """

    store: Any
    reactor: Any
    _cache: dict[int, CaughtMessage] = field(factory=dict)

    def _blocking(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        pool = getattr(self.reactor, "getThreadPool", None)
        if pool is None:
            return succeed(fn(*args))
        return deferToThreadPool(self.reactor, pool(), fn, *args)

    async def messages(self, query: Mapping[str, str] = {}) -> list[CaughtMessage]:
        """
        Caught messages matching C{query} (see L{CaughtMessage.matches}),
        oldest first.
        """
        mail = self.store.mail
        try:
            rows = await mail.listMessages(CATCHER)
        except NoSuchFolder:
            return []
        current = {row.uid for row in rows}
        for uid in list(self._cache):
            if uid not in current:
                del self._cache[uid]
        result = []
        for row in rows:
            caught = self._cache.get(row.uid)
            if caught is None:
                try:
                    body = await mail.openMessage(CATCHER, "INBOX", row.uid)
                except NoSuchMessage:
                    continue
                data = await self._blocking(_read, body)
                caught = self._cache[row.uid] = _parse(row.uid, row.internalDate, data)
            if caught.matches(query):
                result.append(caught)
        return result

    async def get(self, id: int) -> CaughtMessage:
        """
        One caught message.

        @raise NoSuchMessage: if there is none with that id.
        """
        for caught in await self.messages():
            if caught.id == id:
                return caught
        raise NoSuchMessage("the caught mail", id)

    async def delete(self, id: int | None = None) -> int:
        """Delete one caught message, or (C{None}) all; how many went."""
        mail = self.store.mail
        try:
            if id is None:
                uids = [row.uid for row in await mail.listMessages(CATCHER)]
            else:
                uids = [id]
            removed = await mail.expunge(CATCHER, "INBOX", uids) if uids else []
        except NoSuchFolder:
            return 0
        return len(removed)

    async def wait(
        self, query: Mapping[str, str] = {}, timeout: float = 10.0
    ) -> CaughtMessage | None:
        """
        The first message matching C{query} that arrives from now on, or
        C{None} after C{timeout} seconds.
        """
        seen = {caught.id for caught in await self.messages()}
        arrived: Deferred[None] = Deferred()

        def changed(info: Any) -> None:
            if not arrived.called:
                arrived.callback(None)

        stop = self.store.mail.watch(CATCHER, "INBOX", changed)
        deadline = self.reactor.seconds() + timeout
        try:
            while True:
                for caught in await self.messages(query):
                    if caught.id not in seen:
                        return caught
                    seen.add(caught.id)
                left = deadline - self.reactor.seconds()
                if left <= 0:
                    return None
                arrived = Deferred()
                timer = self.reactor.callLater(left, _fire, arrived)
                try:
                    await arrived
                finally:
                    if timer.active():
                        timer.cancel()
        finally:
            stop()

    async def release(
        self,
        id: int,
        host: str,
        port: int,
        recipients: Sequence[str] | None = None,
        tls: str = "auto",
    ) -> Any:
        """
        Send a caught message on to a real SMTP server (to its envelope
        recipients, or C{recipients}).
        """
        from appnet.mail.client import send

        caught = await self.get(id)
        data = _withoutTrace(caught.data)
        return await send(
            self.reactor,
            host,
            port,
            sender=caught.sender,
            recipients=list(recipients or caught.recipients),
            message=data,
            tls=tls,
        )


def _fire(d: Deferred[None]) -> None:
    if not d.called:
        d.callback(None)


def _withoutTrace(data: bytes) -> bytes:
    """The message as sent: the catcher's own leading fields removed."""
    lines = data.split(b"\r\n") if b"\r\n" in data else data.split(b"\n")
    sep = b"\r\n" if b"\r\n" in data else b"\n"
    i = 0
    ours = [b"return-path:", ENVELOPE_TO.lower().encode() + b":", b"received:"]
    while i < len(lines):
        line = lines[i].lower()
        mine = next((p for p in ours if line.startswith(p)), None)
        if mine is not None:
            ours.remove(mine)  # each once: earlier hops' Received stay
            i += 1
            while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                i += 1
            continue
        break
    return sep.join(lines[i:])
