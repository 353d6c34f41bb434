"""
IMAP: the server over the mail store (L{appnet.mail.imap.server}), the
account and mailbox views it works through, and the parsing and
rendering pieces behind FETCH and SEARCH.
"""

from appnet.mail.imap.account import IIMAPAccount, IMAPAccount, accountFactory
from appnet.mail.imap.server import IMAP_MASK, IMAPServer, IMAPServerFactory, refusal

__all__ = [
    "IIMAPAccount",
    "IMAPAccount",
    "IMAPServer",
    "IMAPServerFactory",
    "IMAP_MASK",
    "accountFactory",
    "refusal",
]
