"""
Delivery: what happens to a received message once its envelope and body
are complete.

Local recipients get it at once in their mailboxes (one atomic, durable
store operation for all of them); remote recipients, which only an
authenticated submission can have, go into the durable outgoing queue for
the relay. The SMTP server answers 250 only after both are done. The
stored form starts with C{Return-Path} (RFC 5321 4.4, added at final
delivery; kept by the store beside the file, so the queue shares the
received file) and this node's C{Received} field; the queued copy has no
C{Return-Path}.
"""

from __future__ import annotations

import functools
import itertools
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

from attrs import define, frozen
from twisted.internet.defer import Deferred, succeed

from appnet.errors import FolderExists
from appnet.mail.envelope import Mailbox
from appnet.store.interfaces import INBOX, DeliveryTarget, IStagedMessage, IStore

__all__ = ["Delivered", "Delivery", "Envelope", "receivedHeader", "returnPath"]


def rfc5322Date(when: float) -> str:
    """A date for a header field: C{Mon, 01 Jan 2024 00:00:00 +0000}."""
    return _dateOfSecond(int(when // 1))


@functools.lru_cache(maxsize=4)
def _dateOfSecond(second: int) -> str:
    # Formatting costs more than the rest of a Received field, and a busy
    # server needs it once a second.
    return format_datetime(datetime.fromtimestamp(second, UTC))


def returnPath(sender: Mailbox | None) -> bytes:
    """The C{Return-Path} line for an envelope sender."""
    path = "" if sender is None else str(sender)
    return f"Return-Path: <{path}>\r\n".encode()


def receivedHeader(
    *,
    helo: str,
    peer: str,
    hostname: str,
    protocol: str,
    id: str,
    when: float,
    recipient: str | None = None,
    tls: str | None = None,
) -> bytes:
    """
    This node's trace field (RFC 5321 4.4), folded.

    @param protocol: C{SMTP}, C{ESMTP}, or with C{S} (TLS) and C{A}
        (authenticated) per RFC 3848: C{ESMTPSA}.
    @param tls: a description of the TLS session, if any.
    """
    helo = "".join(c for c in helo if 32 < ord(c) < 127)[:255] or "unknown"
    lines = [f"Received: from {helo} ([{peer}])"]
    if tls:
        lines.append(f"\t({tls})")
    lines.append(f"\tby {hostname} (appnet) with {protocol} id {id}")
    tail = f"; {rfc5322Date(when)}"
    if recipient:
        lines.append(f"\tfor <{recipient}>{tail}")
    else:
        lines[-1] += tail
    return ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")


#: Message ids count up from a random start: unique in a process, unlikely
#: to repeat across restarts, and no system call per message.
_ids = itertools.count(int.from_bytes(secrets.token_bytes(6), "big"))


def newId() -> str:
    """A short message id for logs, Received and the 250 reply."""
    return "%012X" % (next(_ids) & 0xFFFFFFFFFFFF)


@frozen
class Envelope:
    """
    A complete SMTP transaction's envelope.

    @ivar local: owners and their quotas (deduplicated).
    @ivar remote: addresses to queue.
    @ivar submitter: the authenticated account, if any.
    @ivar folder: where local recipients get it (C{Junk} for mail that
        DMARC quarantines); made if missing.
    """

    id: str
    sender: Mailbox | None
    local: tuple[tuple[str, int | None], ...]
    remote: tuple[str, ...]
    submitter: str | None = None
    folder: str = INBOX


@frozen
class Delivered:
    """
    What became of a message: UIDs in local INBOXes, and the queue id.
    """

    uids: tuple[int, ...]
    queued: int | None


@define
class Delivery:
    """
    Files complete messages into the store.
    """

    _store: IStore
    _now: Callable[[], float] = time.time

    def stage(self) -> IStagedMessage:
        """A staged message to receive a body into."""
        staged: IStagedMessage = self._store.mail.stage()
        return staged

    def deliver(
        self, envelope: Envelope, staged: IStagedMessage
    ) -> Deferred[Delivered]:
        """
        Store the staged message for every recipient of the envelope: the
        queued copy is the received file, the stored ones gain the
        C{Return-Path} line when read.

        @raise appnet.errors.QuotaExceeded: (as a failure) if a local
            mailbox has no room (the store's authoritative check, in the
            delivery's transaction); then no local recipient got it.
            Mailboxes were checked at RCPT, so a refusal here means the
            mailbox filled meanwhile; the queued copy is then taken back.
        """
        if envelope.remote or envelope.folder != INBOX:
            return Deferred.fromCoroutine(self._deliver(envelope, staged))
        # An MX's every message: local INBOXes only, one store call (no
        # coroutine around it).
        if not envelope.local:
            return succeed(Delivered((), None))
        local = [
            DeliveryTarget(owner, INBOX, quota=quota) for owner, quota in envelope.local
        ]
        d = self._store.mail.deliver(
            staged, local, self._now(), prefix=returnPath(envelope.sender)
        )
        return d.addCallback(_locally)

    async def _deliver(self, envelope: Envelope, staged: IStagedMessage) -> Delivered:
        uids: Sequence[int] = ()
        local = [
            DeliveryTarget(owner, envelope.folder, quota=quota)
            for owner, quota in envelope.local
        ]
        if envelope.folder != INBOX:
            for target in local:
                try:
                    await self._store.mail.createFolder(target.owner, target.folder)
                except FolderExists:
                    pass
        queued = None
        if envelope.remote:
            sender = "" if envelope.sender is None else str(envelope.sender)
            queued = await self._store.queue.enqueue(
                staged,
                sender,
                list(envelope.remote),
                submitter=envelope.submitter,
            )
        if local:
            # Last: delivery may move the staged file into the mailbox.
            try:
                uids = await self._store.mail.deliver(
                    staged, local, self._now(), prefix=returnPath(envelope.sender)
                )
            except BaseException:
                # Refused as a whole: take the queued copy back, so a
                # client's retry sends nobody the message twice.
                if queued is not None:
                    await self._store.queue.delete(queued)
                raise
        return Delivered(tuple(uids), queued)


def _locally(uids: Sequence[int]) -> Delivered:
    return Delivered(tuple(uids), None)
