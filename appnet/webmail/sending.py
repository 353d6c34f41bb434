"""
Sending from the webmail, through the submission path.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import email
import email.utils
import mimetypes
import re
from collections.abc import Callable, Sequence
from email import policy
from typing import Any

from attrs import define, frozen
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from appnet.errors import FolderExists, NoSuchFolder, NoSuchMessage, QuotaExceeded
from appnet.mail.compose import POLICY, Attachment, compose
from appnet.mail.delivery import Delivery, Envelope, newId, rfc5322Date
from appnet.mail.envelope import EnvelopeSyntaxError, Mailbox, parsePath
from appnet.mail.mailauth import MailAuth
from appnet.mail.routing import Rejected, Router
from appnet.status import Status
from appnet.store.interfaces import DeliveryTarget, IStore
from appnet.webmail.errors import SendRefused
from appnet.webmail.reading import (
    Address,
    ParsedMessage,
    headerSection,
    headOf,
    readAll,
)
from appnet.webmail.sanitize import htmlToText

__all__ = [
    "Draft",
    "MessageRef",
    "SENT",
    "Sent",
    "Submitter",
    "forwardSubject",
    "quote",
    "replyRecipients",
    "replySubject",
]

#: The folder a copy of every sent message goes to.
SENT = "Sent"

#: At most this many message ids are kept in C{References}.
MAX_REFERENCES = 20

#: Replies quote at most this much of the original's text.
MAX_QUOTE = 100_000

USER_AGENT = "appnet webmail"

InThread = Callable[..., Deferred[Any]]

_CONTENT_TYPE = re.compile(
    r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$"
)
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


@frozen
class MessageRef:
    """A stored message: folder and UID."""

    folder: str
    uid: int


@frozen
class Draft:
    """
    A message as the user wrote it.

    @ivar to: address fields as typed: each may hold several addresses
        separated by commas, with or without display names.
    @ivar reply: the message this answers, if any.
    @ivar forward: the message to attach, if any.
    """

    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    reply: MessageRef | None = None
    forward: MessageRef | None = None


@frozen
class Sent:
    """
    What became of a sent message.

    @ivar id: the id in the log and the C{Received} field.
    @ivar messageId: its C{Message-ID}.
    @ivar local: accounts whose mailboxes got it.
    @ivar remote: addresses queued for the relay.
    @ivar queueId: the queue entry, if any recipient is remote.
    @ivar sentUid: its UID in the C{Sent} folder, if the copy was filed.
    @ivar size: bytes delivered.
    """

    id: str
    messageId: str
    local: tuple[str, ...]
    remote: tuple[str, ...]
    queueId: int | None
    sentUid: int | None
    size: int


def _oneLine(text: str) -> str:
    return " ".join(text.replace("\x00", "").split())


def splitAddresses(field: str) -> list[str]:
    """
    Split an address field as typed at its top-level commas (and
    semicolons), respecting quoted names and angle brackets.
    """
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    angle = 0
    for c in field:
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif not quoted and c == "<":
            angle += 1
        elif not quoted and c == ">":
            angle = max(0, angle - 1)
        elif not quoted and not angle and c in ",;":
            parts.append("".join(current))
            current = []
            continue
        current.append(c)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


_NAME_ADDR = re.compile(r"^(.*?)<([^<>]*)>$", re.S)


def _nameAndAddress(text: str) -> tuple[str, str]:
    """
    C{Name <addr>} or a bare C{addr}; anything else (a name without
    brackets, stray text) is refused, so a typo never sends elsewhere.
    """
    match = _NAME_ADDR.match(text)
    if match is None:
        return "", text
    name = match.group(1).strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    elif any(c in name for c in '<>@"'):
        raise SendRefused(400, f"cannot read the address {text!r}")
    return name, match.group(2).strip()


def parseRecipients(fields: Sequence[str]) -> list[tuple[str, Mailbox]]:
    """
    The addresses in address fields as typed (C{"Bob <bob@x.org>, carol@y"}),
    each as its display name and envelope mailbox.

    @raise SendRefused: (400) naming the first address that does not parse.
    """
    found: list[tuple[str, Mailbox]] = []
    for field in fields:
        for text in splitAddresses(_oneLine(field)):
            name, addr = _nameAndAddress(text)
            if not addr.isascii():
                raise SendRefused(400, f"{addr}: non-ASCII addresses are not supported")
            if " " in addr or "@" not in addr:
                raise SendRefused(400, f"cannot read the address {text!r}")
            try:
                mailbox, rest = parsePath(f"<{addr}>", allowNull=False)
            except EnvelopeSyntaxError as e:
                raise SendRefused(400, f"{addr}: {e}") from None
            if mailbox is None or rest or not mailbox.domain:
                raise SendRefused(400, f"cannot read the address {text!r}")
            found.append((name, mailbox))
    return found


def replySubject(subject: str) -> str:
    """C{Re: subject}, without piling up prefixes."""
    subject = _oneLine(subject)
    if re.match(r"^(re|aw|sv)\s*:", subject, re.I):
        return subject
    return f"Re: {subject}" if subject else "Re:"


def forwardSubject(subject: str) -> str:
    """C{Fwd: subject}."""
    subject = _oneLine(subject)
    if re.match(r"^(fwd?|wg)\s*:", subject, re.I):
        return subject
    return f"Fwd: {subject}" if subject else "Fwd:"


def quote(original: ParsedMessage) -> str:
    """
    The original's text quoted for a reply: an attribution line, then
    every line prefixed with C{> }.
    """
    text = original.text
    if text is None and original.rawHTML is not None:
        text = htmlToText(original.rawHTML)
    text = (text or "")[:MAX_QUOTE].replace("\r\n", "\n").rstrip("\n")
    sender = original.addresses.get("from", ())
    who = sender[0].formatted() if sender else "someone"
    when = original.headers.get("date", "")
    head = f"On {when}, {who} wrote:" if when else f"{who} wrote:"
    lines = [">" if not line else "> " + line for line in text.split("\n")]
    return head + "\n" + "\n".join(lines) + "\n"


def replyRecipients(
    original: ParsedMessage, account: str, everyone: bool
) -> tuple[list[str], list[str]]:
    """
    Who a reply goes to: C{Reply-To} else C{From}; for a reply to all,
    also every other C{To} and C{Cc} address, the account itself left out.

    @return: the To and Cc fields, one formatted address each.
    """
    addresses = original.addresses
    primary = list(addresses.get("replyTo") or addresses.get("from") or ())
    seen = {account.lower()}
    to: list[str] = []
    cc: list[str] = []

    def add(target: list[str], found: Sequence[Address]) -> None:
        for address in found:
            key = address.address.lower()
            if key and key not in seen:
                seen.add(key)
                target.append(address.formatted())

    add(to, primary)
    if not to and primary:
        # Replying to one's own message: to its recipients instead.
        seen.discard(account.lower())
        add(to, list(addresses.get("to", ())))
    if everyone:
        add(cc, list(addresses.get("to", ())) + list(addresses.get("cc", ())))
    return to, cc


def _threading(head: bytes) -> tuple[str | None, str | None]:
    """C{In-Reply-To} and C{References} for a reply to this header section."""
    message = email.message_from_bytes(head, policy=policy.compat32)
    ids = _MESSAGE_ID.findall(str(message.get("message-id", "")))
    if not ids:
        return None, None
    own = ids[0]
    previous = _MESSAGE_ID.findall(str(message.get("references", "")))
    if not previous:
        previous = _MESSAGE_ID.findall(str(message.get("in-reply-to", "")))[:1]
    chain = [i for i in previous if i != own][-(MAX_REFERENCES - 1) :] + [own]
    return own, " ".join(chain)


def receivedField(
    *, client: str, account: str, hostname: str, id: str, when: float, secure: bool
) -> bytes:
    """
    The trace field of a webmail submission (RFC 5321 4.4), in the
    layout SMTP's uses.
    """
    protocol = "HTTPS" if secure else "HTTP"
    return (
        f"Received: from [{client}] ([{client}])\r\n"
        f"\t(webmail; authenticated as {account})\r\n"
        f"\tby {hostname} (appnet) with {protocol} id {id};"
        f" {rfc5322Date(when)}\r\n"
    ).encode("ascii", "replace")


def _attachmentType(attachment: Attachment) -> Attachment:
    declared = (attachment.contentType or "").lower().strip()
    if not _CONTENT_TYPE.match(declared) or declared.startswith("multipart/"):
        declared = (
            mimetypes.guess_type(attachment.filename)[0] or "application/octet-stream"
        )
    name = _oneLine(attachment.filename).replace("/", "_").replace("\\", "_")
    return Attachment(name or "attachment", attachment.data, declared)


def buildMessage(
    *,
    sender: str,
    to: Sequence[str],
    cc: Sequence[str],
    bcc: Sequence[str],
    subject: str,
    text: str,
    attachments: Sequence[Attachment],
    when: float,
    inReplyTo: str | None = None,
    references: str | None = None,
    forwarded: bytes | None = None,
    forwardName: str = "forwarded.eml",
) -> tuple[bytes, bytes]:
    """
    Compose the message. Blocking (CPU: MIME encoding).

    @return: the bytes to deliver, and the bytes for the C{Sent} folder
        (the same plus the C{Bcc} field).
    """
    message = compose(
        sender=sender,
        to=list(to) or ["undisclosed-recipients:;"],
        cc=list(cc),
        subject=_oneLine(subject),
        text=text.replace("\r\n", "\n"),
        attachments=[_attachmentType(a) for a in attachments],
        when=when,
    )
    if inReplyTo:
        message["In-Reply-To"] = inReplyTo
    if references:
        message["References"] = references
    message["User-Agent"] = USER_AGENT
    if forwarded is not None:
        try:
            original = email.message_from_bytes(forwarded, policy=policy.default)
            message.add_attachment(original, filename=forwardName)
        except Exception:
            # Beyond the parser's limits: attach the bytes as they are.
            message.add_attachment(
                forwarded,
                maintype="application",
                subtype="octet-stream",
                filename=forwardName,
            )
    delivered = message.as_bytes(policy=POLICY)
    if bcc:
        message["Bcc"] = ", ".join(bcc)
        return delivered, message.as_bytes(policy=POLICY)
    return delivered, delivered


@define
class Submitter:
    """
    Sends messages composed in the webmail (see the module docstring).
    """

    _store: IStore
    _router: Router
    _delivery: Delivery
    _status: Status
    _inThread: InThread
    hostname: str
    maxMessageSize: int
    maxRecipients: int
    defaultQuota: int | None = None
    #: DKIM-signs what is sent from a domain with a key.
    mailauth: MailAuth | None = None
    _log = Logger()

    def send(
        self, account: str, draft: Draft, *, client: str, secure: bool, now: float
    ) -> Deferred[Sent]:
        """
        Send C{draft} as C{account}.

        @param client: the browser's address, for the C{Received} field.
        @param secure: it came over HTTPS.
        @raise SendRefused: (as a failure) if nothing was sent.
        """
        return Deferred.fromCoroutine(
            self._send(account, draft, client=client, secure=secure, now=now)
        )

    async def _route(
        self, recipients: Sequence[Mailbox]
    ) -> tuple[dict[str, int | None], dict[str, None]]:
        local: dict[str, int | None] = {}
        remote: dict[str, None] = {}
        refused: list[dict[str, Any]] = []
        for mailbox in recipients:
            try:
                route = await self._router.route(mailbox, relay=True)
            except Rejected as e:
                refused.append(
                    {
                        "address": str(mailbox),
                        "code": e.code,
                        "reply": f"{e.enhanced} {e.text}",
                    }
                )
                continue
            local.update(route.local)
            remote.update(dict.fromkeys(route.remote))
        if refused:
            names = ", ".join(r["address"] for r in refused)
            raise SendRefused(422, f"recipients refused: {names}", tuple(refused))
        return local, remote

    async def _original(
        self, account: str, ref: MessageRef, whole: bool
    ) -> tuple[bytes, str]:
        """The original's header section (or whole bytes) and subject."""
        mail = self._store.mail
        try:
            body = await mail.openMessage(account, ref.folder, ref.uid)
        except (NoSuchFolder, NoSuchMessage):
            raise SendRefused(404, "the original message no longer exists") from None
        if whole:
            data = await self._inThread(readAll, body, self.maxMessageSize)
            if data is None:
                raise SendRefused(413, "the original is too large to forward")
        else:

            def head() -> bytes:
                with body.open() as f:
                    return headerSection(f)

            data = await self._inThread(head)
        subject = str(
            email.message_from_bytes(headOf(data), policy=policy.default).get(
                "subject", ""
            )
        )
        return data, subject

    async def _send(
        self, account: str, draft: Draft, *, client: str, secure: bool, now: float
    ) -> Sent:
        to = parseRecipients(draft.to)
        cc = parseRecipients(draft.cc)
        bcc = parseRecipients(draft.bcc)
        envelope = list(dict.fromkeys(m for _, m in to + cc + bcc))
        if not envelope:
            raise SendRefused(400, "no recipients")
        if len(envelope) > self.maxRecipients:
            raise SendRefused(
                400, f"too many recipients (at most {self.maxRecipients})"
            )
        local, remote = await self._route(envelope)
        inReplyTo = references = None
        forwarded = None
        forwardName = "forwarded.eml"
        if draft.reply is not None:
            head, _ = await self._original(account, draft.reply, whole=False)
            inReplyTo, references = _threading(head)
        if draft.forward is not None:
            forwarded, subject = await self._original(
                account, draft.forward, whole=True
            )
            forwardName = (_safeStem(subject) or "forwarded") + ".eml"
        size = sum(len(a.data) for a in draft.attachments) + len(draft.text)
        if size > self.maxMessageSize:
            raise SendRefused(413, "message too large")

        def formatted(pairs: list[tuple[str, Mailbox]]) -> list[str]:
            return [email.utils.formataddr((name, str(m))) for name, m in pairs]

        deliveredBytes, sentBytes = await self._inThread(
            buildMessage,
            sender=account,
            to=formatted(to),
            cc=formatted(cc),
            bcc=formatted(bcc),
            subject=draft.subject,
            text=draft.text,
            attachments=draft.attachments,
            when=now,
            inReplyTo=inReplyTo,
            references=references,
            forwarded=forwarded,
            forwardName=forwardName,
        )
        if self.mailauth is not None:
            # The mail authentication hook: DKIM before it is queued.
            signature = await self.mailauth.signMessage(
                deliveredBytes, [account.rpartition("@")[2].lower()]
            )
            deliveredBytes = signature + deliveredBytes
        id = newId()
        localPart, _, domain = account.rpartition("@")
        sender = Mailbox(localPart, domain)
        received = receivedField(
            client=client,
            account=account,
            hostname=self.hostname,
            id=id,
            when=now,
            secure=secure,
        )
        if len(received) + len(deliveredBytes) > self.maxMessageSize:
            raise SendRefused(
                413,
                f"message too large: {len(deliveredBytes)} bytes encoded, the limit"
                f" is {self.maxMessageSize}",
            )
        staged = self._delivery.stage()
        try:
            staged.write(received)
            staged.write(deliveredBytes)
            delivered = await self._delivery.deliver(
                Envelope(
                    id=id,
                    sender=sender,
                    local=tuple(local.items()),
                    remote=tuple(remote),
                    submitter=account,
                ),
                staged,
            )
        except QuotaExceeded as e:
            raise SendRefused(507, f"{e.owner}: mailbox full") from None
        finally:
            staged.discard()
        messageId = _messageId(deliveredBytes)
        self._status.increment("webmail", "sent")
        self._status.increment("webmail", "delivered", len(delivered.uids))
        if delivered.queued is not None:
            self._status.increment("webmail", "queued")
        self._log.info(
            "webmail {id}: from=<{sender}> local={local} remote={remote}"
            " size={size} client={client}",
            id=id,
            sender=account,
            local=list(local),
            remote=list(remote),
            size=len(deliveredBytes),
            client=client,
        )
        sentUid = await self._fileSent(account, sentBytes, now)
        if draft.reply is not None:
            await self._mark(account, draft.reply, "\\Answered")
        if draft.forward is not None:
            await self._mark(account, draft.forward, "$Forwarded")
        return Sent(
            id,
            messageId,
            tuple(local),
            tuple(remote),
            delivered.queued,
            sentUid,
            len(deliveredBytes),
        )

    async def _fileSent(self, account: str, data: bytes, now: float) -> int | None:
        mail = self._store.mail
        folders = await mail.listFolders(account)
        if not any(f.name == SENT for f in folders):
            try:
                await mail.createFolder(account, SENT)
            except FolderExists:
                pass
        user = await self._store.users.getUser(account)
        quota = self.defaultQuota
        if user is not None and user.quota is not None:
            quota = user.quota
        staged = mail.stage()
        try:
            staged.write(data)
            [uid] = await mail.deliver(
                staged,
                [DeliveryTarget(account, SENT, frozenset({"\\Seen"}), quota or None)],
                now,
            )
        except (QuotaExceeded, NoSuchFolder) as e:
            self._log.warn(
                "webmail: no copy in {folder} for {account}: {problem}",
                folder=SENT,
                account=account,
                problem=str(e),
            )
            return None
        finally:
            staged.discard()
        return int(uid)

    async def _mark(self, account: str, ref: MessageRef, flag: str) -> None:
        try:
            await self._store.mail.setFlags(
                account, ref.folder, [ref.uid], frozenset({flag}), "add"
            )
        except (NoSuchFolder, NoSuchMessage):
            pass


def _safeStem(subject: str) -> str:
    text = re.sub(r'[\x00-\x1f\x7f/\\:*?"<>|]+', "_", _oneLine(subject)).strip(" .")
    return text[:80]


def _messageId(data: bytes) -> str:
    head = email.message_from_bytes(headOf(data), policy=policy.compat32)
    return str(head.get("message-id", ""))
