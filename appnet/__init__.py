"""
appnet: the Internet's classic application layer on Twisted.

Web (HTTP), file transfer (FTP), mail (SMTP, POP3, IMAP) and naming (DNS)
servers that compose into one twistd plugin (C{twistd -n appnet}), clients
with Deferred APIs, and in-process fixtures for test suites
(L{appnet.testing}).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
