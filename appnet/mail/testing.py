"""
A mail fixture for test suites: a whole appnet stack with accounts, and a
way to see what was delivered (L{startMail}).
"""

from __future__ import annotations

import email
import warnings
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.policy import default
from typing import Any

from attrs import define, frozen

from appnet.mail.envelope import Mailbox
from appnet.mail.imapclient import IMAPSession, connectIMAP
from appnet.mail.server import makeRouter
from appnet.store.interfaces import INBOX, FolderInfo
from appnet.testing import RunningStack, startStack

__all__ = ["MailStack", "StoredMessage", "startMail", "passwordFor"]


def passwordFor(address: str) -> str:
    """The password L{startMail} gives an account listed without one."""
    return f"pw-{address}"


@frozen
class StoredMessage:
    """
    A message in a mailbox: its UID, flags, and bytes as stored (starting
    with the Return-Path and Received fields delivery added).
    """

    uid: int
    flags: frozenset[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        """The message parsed (C{email.policy.default})."""
        parsed = email.message_from_bytes(self.data, policy=default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@define
class MailStack:
    """
    A running stack with mail services, for a test.

    @ivar running: the underlying L{RunningStack}.
    @ivar passwords: each account's password.
    """

    running: RunningStack
    passwords: dict[str, str]

    def address(self, service: str) -> tuple[str, int]:
        """Where C{smtp}, C{submission}, C{pop3} or C{imap} listens."""
        return self.running.address(service)

    @property
    def store(self) -> Any:
        """The stack's store."""
        return self.running.store

    async def addUser(self, address: str, password: str | None = None) -> str:
        """Create another account; returns its password."""
        password = password or passwordFor(address)
        await self.running.addUser(address, password)
        self.passwords[address] = password
        return password

    async def deliveredTo(self, address: str) -> list[StoredMessage]:
        """
        The messages in the INBOX that mail for C{address} reaches (an
        account, an alias resolving to one account, a plus-address),
        oldest first.
        """
        local, _, domain = address.rpartition("@")
        route = await makeRouter(self.running.stack.context).route(
            Mailbox(local, domain.lower()), relay=True
        )
        if len(route.local) != 1:
            raise ValueError(f"{address} does not lead to exactly one mailbox")
        owner = route.local[0][0]
        mail = self.store.mail
        result = []
        for info in await mail.listMessages(owner, INBOX):
            body = await mail.openMessage(owner, INBOX, info.uid)
            with body.open() as f:
                result.append(StoredMessage(info.uid, info.flags, f.read()))
        return result

    async def folders(self, address: str) -> list[FolderInfo]:
        """An account's folders (INBOX first), with counts."""
        return list(await self.store.mail.listFolders(address))

    async def messages(self, address: str, folder: str = INBOX) -> list[StoredMessage]:
        """The messages of one of an account's folders, with their flags."""
        mail = self.store.mail
        result = []
        for info in await mail.listMessages(address, folder):
            body = await mail.openMessage(address, folder, info.uid)
            with body.open() as f:
                result.append(StoredMessage(info.uid, info.flags, f.read()))
        return result

    async def imap(self, address: str) -> IMAPSession:
        """
        An IMAP session logged in as C{address} (STARTTLS if the stack has
        a certificate, verified against it). Log it out when done.
        """
        host, port = self.address("imap")
        cert = self.running.dataDir.tlsCert
        trustRoot = None
        if cert.exists():
            with open(cert.path, "rb") as f:
                trustRoot = f.read()
        return await connectIMAP(
            self.running.stack.reactor,
            "localhost" if trustRoot else host,
            port,
            username=address,
            password=self.passwords[address],
            tls="auto",
            trustRoot=trustRoot,
        )

    async def queued(self) -> list[Any]:
        """Messages waiting in the outgoing queue."""
        return list(await self.store.queue.list())

    def stop(self) -> Any:
        """Stop the stack (the test's cleanup does it too)."""
        return self.running.stop()


async def startMail(
    testCase: Any = None,
    *,
    users: Sequence[str] | Mapping[str, str] = (),
    config: Mapping[str, Any] = {},
    **kw: Any,
) -> MailStack:
    """
    Start a stack (every service on an ephemeral loopback port) with these
    accounts.

    @param users: addresses (each gets L{passwordFor} its address) or a
        mapping of address to password.
    @param config: TOML-shaped overrides (C{{"mail": {"aliases": ...}}}).
    @param kw: passed to L{appnet.testing.startStack}.
    """
    if not isinstance(users, Mapping) and users:
        warnings.warn(
            "startMail(users=[...]) with hidden passwords is deprecated:"
            " give {address: password}, or use appnet.testing.start",
            DeprecationWarning,
            stacklevel=2,
        )
    passwords = (
        dict(users)
        if isinstance(users, Mapping)
        else {address: passwordFor(address) for address in users}
    )
    running = await startStack(testCase, config=config, users=passwords, **kw)
    return MailStack(running, dict(passwords))
