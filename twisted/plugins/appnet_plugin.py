"""
The twistd dropin for C{twistd appnet}.
"""

from twisted.application.service import ServiceMaker

appnet = ServiceMaker(
    "appnet",
    "appnet.tap",
    "The Internet's application layer: HTTP, FTP, SMTP, POP3, IMAP and DNS.",
    "appnet",
)
