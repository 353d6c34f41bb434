"""
The data directory: where appnet keeps everything durable.

Found the same way by C{twistd appnet} and by the C{appnet} command: the
C{--data} option, else the C{data} config key, else C{$APPNET_DATA}, else
C{./appnet-data}. Its layout is a contract::

    store.sqlite        accounts, mailbox indexes, small messages, queue,
                        sessions
    mail/               message files (messages over 16 KiB, the queue)
    tls/cert.pem        made by C{appnet cert}; used for STARTTLS when present
    tls/key.pem
    zones/*.zone        BIND zone files served authoritatively
    www/                the web root
    ftp/<user>/         each user's FTP home
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from attrs import frozen
from twisted.python.filepath import FilePath

__all__ = ["DATA_ENV", "DEFAULT_DATA_DIR", "DataDir", "findDataDir"]

DEFAULT_DATA_DIR = "appnet-data"
DATA_ENV = "APPNET_DATA"

# Directories holding secrets or other people's mail are private to the
# daemon's user; the web root and FTP homes are ordinary.
_PRIVATE = ("mail", "tls")
_PUBLIC = ("zones", "www", "ftp")


def findDataDir(option: str | None, env: Mapping[str, str] | None = None) -> str:
    """
    Decide which directory is the data directory.

    @param option: the C{--data} option or C{data} config key, if given.
    @param env: the environment to consult (default L{os.environ}).
    @return: the directory path (not necessarily existing yet).
    """
    if option:
        return option
    environ = os.environ if env is None else env
    return environ.get(DATA_ENV) or DEFAULT_DATA_DIR


@frozen
class DataDir:
    """
    Paths inside one data directory.

    Constructing a L{DataDir} touches nothing on disk; L{create} makes the
    directories.
    """

    root: FilePath[str]

    @classmethod
    def at(cls, path: str) -> DataDir:
        """
        A L{DataDir} rooted at C{path} (relative paths are taken from the
        current directory).
        """
        return cls(FilePath(os.path.abspath(path)))

    @property
    def store(self) -> FilePath[str]:
        """The SQLite database file."""
        return self.root.child("store.sqlite")

    @property
    def mail(self) -> FilePath[str]:
        """The directory of message files."""
        return self.root.child("mail")

    @property
    def tlsCert(self) -> FilePath[str]:
        """The default certificate (PEM, leaf first, then chain)."""
        return self.root.child("tls").child("cert.pem")

    @property
    def tlsKey(self) -> FilePath[str]:
        """The default private key (PEM)."""
        return self.root.child("tls").child("key.pem")

    @property
    def zones(self) -> FilePath[str]:
        """The directory of zone files served authoritatively."""
        return self.root.child("zones")

    @property
    def www(self) -> FilePath[str]:
        """The web root."""
        return self.root.child("www")

    @property
    def ftp(self) -> FilePath[str]:
        """The parent of every user's FTP home."""
        return self.root.child("ftp")

    def create(self) -> None:
        """
        Create the data directory and its standard subdirectories if they are
        missing. Existing content is left alone.
        """
        if not self.root.isdir():
            self.root.makedirs(ignoreExistingDirectory=True)
            os.chmod(self.root.path, 0o750)
        for name in _PRIVATE:
            child = self.root.child(name)
            if not child.isdir():
                child.makedirs(ignoreExistingDirectory=True)
                os.chmod(child.path, 0o700)
        for name in _PUBLIC:
            child = self.root.child(name)
            if not child.isdir():
                child.makedirs(ignoreExistingDirectory=True)
