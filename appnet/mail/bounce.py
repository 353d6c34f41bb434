"""
Delivery status notifications: what the sender of a queued message is
told when some of its recipients failed for good, or are taking long.

A DSN (RFC 3464, inside RFC 6522's multipart/report) has three parts: a
text for people, a C{message/delivery-status} part with one block of
fields per recipient (C{Final-Recipient}, C{Action} C{failed} or
C{delayed}, C{Status} from the reply's enhanced code, C{Remote-MTA} and
C{Diagnostic-Code} when a server answered), and the original message's
header (C{text/rfc822-headers}, at most L{MAX_HEADER} bytes of it). It
comes from C{MAILER-DAEMON@} this host with the null envelope sender, so
a DSN that cannot be delivered is never answered by another one, and it
is marked C{Auto-Submitted: auto-replied} (RFC 3834). Deciding when one is
due is L{appnet.mail.queue}'s part; this module only writes them, with
the C{email} package.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage, Message, MIMEPart
from email.policy import SMTP
from email.utils import format_datetime
from typing import BinaryIO

from attrs import frozen

from appnet.mail.relay import Reply

__all__ = ["MAX_HEADER", "FAILED", "DELAYED", "Reported", "readHeader", "report"]

#: The most of the original header a DSN quotes.
MAX_HEADER = 64 * 1024

FAILED = "failed"
DELAYED = "delayed"


@frozen
class Reported:
    """
    One recipient a DSN reports on.
    """

    recipient: str
    reply: Reply
    when: float


def _date(when: float) -> str:
    return format_datetime(datetime.fromtimestamp(when, UTC))


def readHeader(file: BinaryIO) -> bytes:
    """
    The header of a stored message (up to the empty line), at most
    L{MAX_HEADER} bytes of it. Blocking: call in a thread.
    """
    data = file.read(MAX_HEADER)
    end = data.find(b"\r\n\r\n")
    if end == -1:
        end = data.find(b"\n\n")
    if end != -1:
        return data[: end + 2]
    # No end in sight: cut at the last whole line.
    cut = data.rfind(b"\n")
    return data[: cut + 1] if cut != -1 else b""


def _statusBlock(failure: Reported, action: str, retryUntil: float | None) -> Message:
    block = Message()
    block["Final-Recipient"] = f"rfc822; {failure.recipient}"
    block["Action"] = action
    block["Status"] = failure.reply.enhanced
    if failure.reply.host is not None:
        block["Remote-MTA"] = f"dns; {failure.reply.host[0]}"
        block["Diagnostic-Code"] = (
            f"smtp; {failure.reply.code} {failure.reply.enhanced} {failure.reply.text}"
        )
    else:
        block["Diagnostic-Code"] = f"X-Appnet; {failure.reply.text}"
    block["Last-Attempt-Date"] = _date(failure.when)
    if retryUntil is not None:
        block["Will-Retry-Until"] = _date(retryUntil)
    return block


def report(
    *,
    hostname: str,
    queueId: int,
    sender: str,
    arrived: float,
    now: float,
    failures: Sequence[Reported],
    header: bytes,
    action: str = FAILED,
    retryUntil: float | None = None,
) -> bytes:
    """
    A DSN to C{sender} about C{failures}, as bytes with CRLF line ends.

    @param queueId: the original's queue id, for the postmaster.
    @param arrived: when the original was queued.
    @param header: the original's header (L{readHeader}).
    @param action: L{FAILED} or L{DELAYED}.
    @param retryUntil: for a delay: when the queue gives up.
    """
    message = EmailMessage(policy=SMTP)
    message["From"] = f"Mail Delivery System <MAILER-DAEMON@{hostname}>"
    message["To"] = f"<{sender}>"
    if action == FAILED:
        message["Subject"] = "Undelivered Mail Returned to Sender"
    else:
        message["Subject"] = "Delayed Mail (still being retried)"
    message["Date"] = _date(now)
    message["Message-ID"] = f"<{secrets.token_hex(8)}.dsn@{hostname}>"
    message["Auto-Submitted"] = "auto-replied"
    message["MIME-Version"] = "1.0"
    message["Content-Type"] = "multipart/report; report-type=delivery-status"

    text = MIMEPart(policy=SMTP)
    text.set_content(_explanation(hostname, failures, action, retryUntil))
    text["Content-Description"] = "Notification"
    message.attach(text)  # type: ignore[arg-type]  # (typeshed: parts are MIMEPart)

    status = MIMEPart(policy=SMTP)
    status["Content-Description"] = "Delivery report"
    status["Content-Type"] = "message/delivery-status"
    fields = Message()
    fields["Reporting-MTA"] = f"dns; {hostname}"
    fields["X-Appnet-Queue-ID"] = str(queueId)
    fields["Arrival-Date"] = _date(arrived)
    status.set_payload(
        [fields, *(_statusBlock(f, action, retryUntil) for f in failures)]
    )
    message.attach(status)  # type: ignore[arg-type]

    headers = MIMEPart(policy=SMTP)
    original = header.decode("utf-8", "replace").replace("\r\n", "\n")
    headers.set_content(original, subtype="rfc822-headers")
    headers["Content-Description"] = "Undelivered Message Headers"
    message.attach(headers)  # type: ignore[arg-type]
    return message.as_bytes()


def _explanation(
    hostname: str, failures: Sequence[Reported], action: str, retryUntil: float | None
) -> str:
    lines = [f"This is the mail system at host {hostname}.", ""]
    if action == FAILED:
        lines += [
            "I'm sorry to have to inform you that your message could not",
            "be delivered to one or more recipients.",
        ]
    else:
        lines += [
            "Your message could not be delivered yet to one or more",
            "recipients. It will be tried again until "
            + (_date(retryUntil) if retryUntil is not None else "it expires")
            + ";",
            "you do not need to send it again.",
        ]
    lines.append("")
    for failure in failures:
        reply = failure.reply
        where = f"host {reply.host[0]}[{reply.host[1]}] said: " if reply.host else ""
        lines.append(f"<{failure.recipient}>: {where}{reply.code} {reply.enhanced}")
        lines.append(f"    {reply.text}")
    lines.append("")
    return "\n".join(lines)
