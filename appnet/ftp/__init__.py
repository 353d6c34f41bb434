"""
FTP for appnet: a server with jailed per-user homes and FTPS, joined to the
stack by L{appnet.ftp.server.build}, and a client.

The public pieces::

    from appnet.ftp import connectFTP, clientTLS

    client = await connectFTP(reactor, "localhost", 2121,
                              user="alice@example.org", password="...")

Modules: C{server} (the protocol, its factory and the stack builder),
C{shell} (the jailed filesystem), C{data} (data connections), C{client},
C{cli} (C{appnet ftp}), C{testing} (the C{startFTP} fixture).
"""

from appnet.ftp.client import FTPClient, Reply, clientTLS, connectFTP
from appnet.ftp.errors import FTPClientError, FTPCommandError, FTPError
from appnet.ftp.interfaces import IFTPFilesystem, IReadHandle, IWriteHandle

__all__ = [
    "FTPClient",
    "FTPClientError",
    "FTPCommandError",
    "FTPError",
    "IFTPFilesystem",
    "IReadHandle",
    "IWriteHandle",
    "Reply",
    "clientTLS",
    "connectFTP",
]
