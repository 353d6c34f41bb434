"""
An FTP server for test suites: users and their files from dicts, on an
ephemeral loopback port, inside the test's reactor (L{startFTP}).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from attrs import define
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from appnet.fixtures import Address
from appnet.ftp.shell import homeName
from appnet.tls import writeSelfSigned

__all__ = ["RunningFTP", "startFTP"]

#: Key of C{files} naming the anonymous area.
ANONYMOUS = "anonymous"


@define
class RunningFTP:
    """
    A running FTP server and what a test needs to reach it.

    @ivar stack: the L{appnet.testing.RunningStack} it runs on.
    @ivar certificate: the server certificate (PEM) when TLS is on, for
        clients to trust.
    """

    stack: Any
    certificate: bytes | None = None
    _data: str | None = None

    @property
    def address(self) -> Address:
        """
        C{(host, port)} of the control connection: call it,
        C{ftp.address()} (the tuple form is deprecated).
        """
        return Address(*self.stack.address("ftp"))

    @property
    def root(self) -> str:
        """The directory holding every home (C{DATA/ftp})."""
        return str(self.stack.dataDir.ftp.path)

    def home(self, user: str) -> str:
        """
        The home directory of account C{user} (or of the anonymous area for
        C{"anonymous"}), whether or not it exists yet.
        """
        if user == ANONYMOUS:
            return self.stack.config.ftp.anonymous_root or os.path.join(
                self.root, "anonymous"
            )
        return os.path.join(self.root, homeName(user))

    def url(self, user: str | None = None, path: str = "/") -> str:
        """C{ftp://user@host:port/path}, with the user name escaped."""
        host, port = self.address()
        who = f"{quote(user, safe='')}@" if user else ""
        return f"ftp://{who}{host}:{port}{path}"

    async def addFiles(self, files: Mapping[str, Mapping[str, bytes | str]]) -> None:
        """
        Write files into homes: C{{user: {relative path: content}}}. A path
        ending in C{/} makes a directory.
        """
        await deferToThread(_write, {self.home(u): fs for u, fs in files.items()})

    def stop(self) -> Deferred[None]:
        """Stop the server and remove its data."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await self.stack.stop()
        if self._data is not None:
            shutil.rmtree(self._data, ignore_errors=True)


def _write(files: Mapping[str, Mapping[str, bytes | str]]) -> None:
    for home, entries in files.items():
        os.makedirs(home, exist_ok=True)
        for relative, content in entries.items():
            path = os.path.join(home, relative.lstrip("/"))
            if relative.endswith("/"):
                os.makedirs(path, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            data = content.encode("utf-8") if isinstance(content, str) else content
            with open(path, "wb") as f:
                f.write(data)


async def startFTP(
    testCase: Any = None,
    *,
    users: Mapping[str, str] = {},
    files: Mapping[str, Mapping[str, bytes | str]] = {},
    config: Mapping[str, Any] = {},
    tls: bool = False,
    anonymous: bool = False,
    reactor: Any = None,
) -> RunningFTP:
    """
    Start an FTP server on an ephemeral loopback port.

    @param testCase: a trial C{TestCase}; if given, the server is stopped
        by its cleanup.
    @param users: accounts, address to password.
    @param files: files to put in the homes before the test runs, by
        account (or C{"anonymous"}), then relative path to content.
    @param config: TOML-shaped overrides (C{{"ftp": {"quota": "1M"}}}).
    @param tls: make a self-signed certificate so AUTH TLS is offered.
    @param anonymous: allow read-only anonymous logins.
    """
    from appnet.config import mergeTables
    from appnet.testing import startStack

    data = tempfile.mkdtemp(prefix="appnet-ftp-test-")
    certificate = None
    try:
        if tls:
            cert = os.path.join(data, "tls", "cert.pem")
            key = os.path.join(data, "tls", "key.pem")
            await deferToThread(writeSelfSigned, cert, key, "localhost")
            with open(cert, "rb") as f:
                certificate = f.read()
        settings: dict[str, Any] = {"passive_ports": "0", "data_timeout": "10s"}
        if anonymous:
            settings["anonymous"] = True
        overrides = mergeTables({"ftp": settings}, config)
        stack = await startStack(
            None,
            config=overrides,
            users=users,
            builders=["appnet.ftp.server:build"],
            reactor=reactor,
            dataDir=data,
        )
    except BaseException:
        shutil.rmtree(data, ignore_errors=True)
        raise
    running = RunningFTP(stack, certificate, data)
    if testCase is not None:
        testCase.addCleanup(running.stop)
    if files:
        await running.addFiles(files)
    return running
