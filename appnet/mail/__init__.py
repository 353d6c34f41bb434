"""
Mail: SMTP (MX and submission) with the relay queue, POP3 and IMAP over
the mail store, and clients.

The public surface: L{send} and L{fetch} (SMTP submission and POP3),
L{connectIMAP} and its L{IMAPSession}, and the values and errors they
return. Servers join a stack through L{appnet.mail.server.buildMail};
fixtures are in L{appnet.mail.testing}.
"""

from appnet.mail.client import (
    FetchedMessage,
    MailClientError,
    RecipientResult,
    SendResult,
    fetch,
    send,
)
from appnet.mail.imapclient import (
    FolderEntry,
    FolderStatus,
    IMAPMessage,
    IMAPSession,
    MessageSummary,
    connectIMAP,
)

__all__ = [
    "FetchedMessage",
    "FolderEntry",
    "FolderStatus",
    "IMAPMessage",
    "IMAPSession",
    "MailClientError",
    "MessageSummary",
    "RecipientResult",
    "SendResult",
    "connectIMAP",
    "fetch",
    "send",
]
