"""
In-process fixtures for test suites (appnet's own and its users'): L{start}
runs the services a test names on ephemeral loopback ports and stops them
in the test's cleanup; L{startStack} is the layer underneath.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred

from appnet.auth import hashPassword
from appnet.config import SERVICES, Config, loadConfig, mergeTables
from appnet.datadir import DataDir
from appnet.listen import Bound
from appnet.stack import Builder, Stack
from appnet.store.interfaces import IStore

#: Fixtures of protocol packages, re-exported here: name to module. They
#: build on this module, so they are imported on first use (PEP 562).
_FIXTURES = {
    "Address": "appnet.fixtures",
    "SeenRequest": "appnet.fixtures",
    "Services": "appnet.fixtures",
    "start": "appnet.fixtures",
    "Fault": "appnet.faults",
    "Faults": "appnet.faults",
    "CaughtMessage": "appnet.mail.catcher",
    "RunningDNS": "appnet.dns.testing",
    "StaticResolver": "appnet.dns.testing",
    "startDNS": "appnet.dns.testing",
    "MailStack": "appnet.mail.testing",
    "StoredMessage": "appnet.mail.testing",
    "startMail": "appnet.mail.testing",
    "MailNetwork": "appnet.mail.relaytesting",
    "MailNode": "appnet.mail.relaytesting",
    "startMailNetwork": "appnet.mail.relaytesting",
    "RunningFTP": "appnet.ftp.testing",
    "startFTP": "appnet.ftp.testing",
    "BrowserSession": "appnet.web.testing",
    "RunningWeb": "appnet.web.testing",
    "startWeb": "appnet.web.testing",
}

__all__ = [
    "RunningStack",
    "ephemeralConfig",
    "startStack",
    "TEST_HASH_COST",
    *_FIXTURES,
]

#: scrypt cost for fixture users: cheap, since tests log in often. Never
#: use it for real accounts.
TEST_HASH_COST = 4

_EPHEMERAL = "tcp:0:interface=127.0.0.1"


def ephemeralConfig(dataDir: str, overrides: Mapping[str, Any] = {}) -> Config:
    """
    A config with every service on an ephemeral loopback port, data in
    C{dataDir}, host name C{appnet.test}, no system resolvers (so a test
    never asks the machine's DNS servers), then C{overrides} (TOML-shaped)
    on top.
    """
    raw: dict[str, Any] = {"data": dataDir, "hostname": "appnet.test"}
    for name in SERVICES:
        raw[name] = (
            {"listen": "127.0.0.1:0", "resolv_conf": os.devnull}
            if name == "dns"
            else {"listen": [_EPHEMERAL]}
        )
    return loadConfig(None, mergeTables(raw, overrides))


@define
class RunningStack:
    """
    A started stack and what a test needs to reach it.
    """

    stack: Stack
    dataDir: DataDir
    _removeData: bool = True
    _stopped: bool = field(default=False, init=False)

    @property
    def config(self) -> Config:
        """The stack's config."""
        return self.stack.config

    @property
    def store(self) -> IStore:
        """The stack's store."""
        return self.stack.store

    def listeners(self, service: str) -> list[Bound]:
        """Every address C{service} listens on."""
        return self.stack.addresses.of(service)

    def address(self, service: str, transport: str = "tcp") -> tuple[str, int]:
        """
        C{(host, port)} of the first listener of C{service}.

        @raise KeyError: if it is not listening.
        """
        for bound in self.listeners(service):
            if bound.transport == transport:
                return bound.address.host, bound.address.port  # type: ignore[attr-defined]
        raise KeyError(f"{service} is not listening on {transport}")

    async def addUser(
        self, address: str, password: str, admin: bool = False, quota: int | None = None
    ) -> None:
        """
        Create an account (cheaply hashed; see L{TEST_HASH_COST}).
        """
        await self.store.users.addUser(
            address, hashPassword(password, log2n=TEST_HASH_COST), admin, quota
        )

    def stop(self) -> Deferred[None]:
        """
        Stop everything and remove the temporary data directory.
        """
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.stack.running:
            await self.stack.stopService()
        if self._removeData:
            shutil.rmtree(self.dataDir.root.path, ignore_errors=True)


async def startStack(
    testCase: Any = None,
    *,
    config: Mapping[str, Any] = {},
    users: Mapping[str, str] = {},
    builders: Sequence[str | Builder] | None = None,
    reactor: Any = None,
    store: IStore | None = None,
    dataDir: str | None = None,
    clock: Any = None,
) -> RunningStack:
    """
    Start a stack on ephemeral loopback ports.

    @param testCase: a trial C{TestCase}; if given, the stack is stopped by
        its cleanup.
    @param config: TOML-shaped overrides of L{ephemeralConfig}.
    @param users: accounts to create, address to password.
    @param builders: component builders (default: every one appnet has).
    @param reactor: default: the global reactor.
    @param store: an L{IStore} instead of SQLite in the data directory.
    @param dataDir: use (and keep) this directory instead of a temporary one.
    @param clock: what schedules long waits (the mail queue's retries),
        such as a L{twisted.internet.task.Clock} the test advances;
        default: the reactor.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    removeData = dataDir is None
    path = tempfile.mkdtemp(prefix="appnet-test-") if dataDir is None else dataDir
    try:
        stack = Stack(ephemeralConfig(path, config), reactor, store, builders, clock)
        running = RunningStack(stack, stack.dataDir, removeData)
    except BaseException:
        if removeData:
            shutil.rmtree(path, ignore_errors=True)
        raise
    try:
        stack.startService()
    except BaseException:
        await stack.released()
        if removeData:
            shutil.rmtree(path, ignore_errors=True)
        raise
    if testCase is not None:
        testCase.addCleanup(running.stop)
    try:
        await stack.whenReady()
        for address, password in users.items():
            await running.addUser(address, password)
    except BaseException:
        await running.stop()
        raise
    return running


def __getattr__(name: str) -> Any:
    # The protocol packages' fixtures, imported on first use so that
    # importing this module stays cheap (and free of import cycles).
    if name in _FIXTURES:
        module = importlib.import_module(_FIXTURES[name])
        return getattr(module, name)
    raise AttributeError(name)
