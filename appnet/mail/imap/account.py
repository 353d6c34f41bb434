"""
What an IMAP login yields: an account of folders over the mail store,
with IMAP's rules for folder names, the hierarchy, subscriptions and
special-use folders.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import define
from twisted.internet.defer import Deferred
from twisted.mail.interfaces import INamespacePresenter
from zope.interface import Attribute, Interface, implementer

from appnet.errors import FolderExists, NoSuchFolder, QuotaExceeded
from appnet.mail.imap.errors import CommandFailed
from appnet.mail.realm import AvatarFactory
from appnet.store.interfaces import (
    INBOX,
    DeliveryTarget,
    FolderInfo,
    IMailStore,
    IStagedMessage,
    IUserStore,
)

__all__ = [
    "DELIMITER",
    "SPECIAL_USE",
    "IIMAPAccount",
    "IMAPAccount",
    "accountFactory",
    "checkName",
]

#: The hierarchy delimiter.
DELIMITER = "/"

#: Special-use folders (RFC 6154) by name, made for every account.
SPECIAL_USE: Mapping[str, str] = {
    "Drafts": "\\Drafts",
    "Junk": "\\Junk",
    "Sent": "\\Sent",
    "Trash": "\\Trash",
}

#: Longest folder name accepted, in characters.
MAX_NAME = 255
#: Deepest hierarchy accepted.
MAX_LEVELS = 16


def checkName(name: str) -> str:
    """
    A folder name as the store keeps it, or a refusal.

    @raise CommandFailed: for an empty, over-long or over-deep name, one
        with control characters, wildcards, or an empty level.
    """
    if name.upper() == INBOX:
        return INBOX
    if name[:6].upper() == INBOX + DELIMITER:
        name = INBOX + name[5:]
    if not name or len(name) > MAX_NAME:
        raise CommandFailed("Mailbox name is empty or too long", "CANNOT")
    if any(ord(c) < 0x20 or c == "\x7f" for c in name) or "*" in name or "%" in name:
        raise CommandFailed("Mailbox name has forbidden characters", "CANNOT")
    levels = name.split(DELIMITER)
    if any(not level for level in levels) or len(levels) > MAX_LEVELS:
        raise CommandFailed("Mailbox name has an empty or too many levels", "CANNOT")
    return name


def patternRegex(pattern: str) -> re.Pattern[str]:
    """
    A LIST pattern as a regular expression: C{*} matches anything, C{%}
    anything but the delimiter; an INBOX prefix in any case matches.
    """
    out = []
    for c in pattern:
        if c == "*":
            out.append(".*")
        elif c == "%":
            out.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            out.append(re.escape(c))
    text = "".join(out)
    if pattern[:5].upper() == INBOX and (
        len(pattern) == 5 or pattern[5] in (DELIMITER, "*", "%")
    ):
        text = "INBOX" + "".join(out[5:])
    return re.compile(text + r"\Z", re.DOTALL)


@define(frozen=True)
class ListedFolder:
    """
    One LIST or LSUB answer line.

    @ivar attributes: C{\\HasChildren}, C{\\Noselect}, C{\\Sent} ...
    """

    name: str
    attributes: tuple[str, ...]


class IIMAPAccount(Interface):
    """
    An authenticated account as IMAP sees it.
    """

    address = Attribute("The account's canonical address.")
    store = Attribute("The L{IMailStore}.")
    quota = Attribute("Its quota in bytes, or None.")

    def ensureSpecialFolders() -> Deferred[None]:
        """Make the special-use folders that are missing."""

    def list(
        reference: str, pattern: str, subscribed: bool
    ) -> Deferred[list[ListedFolder]]:
        """LIST (or LSUB with C{subscribed}) answers, in name order."""

    def status(name: str) -> Deferred[FolderInfo]:
        """A folder's state (C{NONEXISTENT} if missing)."""

    def create(name: str) -> Deferred[None]:
        """Make a folder and any missing superiors."""

    def delete(name: str) -> Deferred[None]:
        """Delete a folder and its messages (not INBOX)."""

    def rename(old: str, new: str) -> Deferred[None]:
        """Rename a folder and its inferiors."""

    def subscribe(name: str, subscribed: bool) -> Deferred[None]:
        """Subscribe to a folder or unsubscribe from it."""

    def append(
        name: str,
        staged: IStagedMessage,
        flags: frozenset[str],
        date: float | None,
        uidValidity: int | None = None,
    ) -> Deferred[tuple[int, int]]:
        """
        File a message durably; fires with (UIDVALIDITY, UID). The folder
        is read for its UIDVALIDITY unless the caller knows it.
        """

    def checkAppend(name: str, size: int) -> Deferred[None]:
        """Fail (TRYCREATE, OVERQUOTA) if an APPEND would be refused."""

    def copy(
        name: str, uids: Sequence[int], dest: str, move: bool
    ) -> Deferred[tuple[int, Mapping[int, int]]]:
        """Copy or move messages; fires with the target's UIDVALIDITY and
        source to new UIDs."""


def _failure(error: Exception, name: str, missing: str = "NONEXISTENT") -> Exception:
    if isinstance(error, NoSuchFolder):
        return CommandFailed(f"Mailbox {name} does not exist", missing)
    if isinstance(error, FolderExists):
        return CommandFailed(f"Mailbox {error.args[1]} already exists", "ALREADYEXISTS")
    if isinstance(error, QuotaExceeded):
        return CommandFailed("Quota exceeded", "OVERQUOTA")
    return error


@implementer(IIMAPAccount, INamespacePresenter)
@define
class IMAPAccount:
    """
    One account's folders, for one IMAP session.
    """

    address: str
    store: IMailStore
    quota: int | None = None

    # INamespacePresenter: one personal namespace, no others.

    def getPersonalNamespaces(self) -> list[list[str]]:
        return [["", DELIMITER]]

    def getSharedNamespaces(self) -> None:
        return None

    def getOtherNamespaces(self) -> None:
        return None

    def getUserNamespaces(self) -> None:
        return None

    # Folders.

    def ensureSpecialFolders(self) -> Deferred[None]:
        async def run() -> None:
            existing = {f.name for f in await self.store.listFolders(self.address)}
            for name in SPECIAL_USE:
                if name not in existing:
                    try:
                        await self.store.createFolder(self.address, name)
                    except FolderExists:
                        pass

        return Deferred.fromCoroutine(run())

    def list(
        self, reference: str, pattern: str, subscribed: bool
    ) -> Deferred[list[ListedFolder]]:
        async def run() -> list[ListedFolder]:
            folders = await self.store.listFolders(self.address)
            return listFolders(folders, reference, pattern, subscribed)

        return Deferred.fromCoroutine(run())

    def status(self, name: str) -> Deferred[FolderInfo]:
        async def run() -> FolderInfo:
            try:
                return await self.store.folder(self.address, checkName(name))
            except NoSuchFolder as e:
                raise _failure(e, name) from None

        return Deferred.fromCoroutine(run())

    def create(self, name: str) -> Deferred[None]:
        async def run() -> None:
            cleaned = checkName(name.rstrip(DELIMITER) or name)
            if cleaned == INBOX:
                raise CommandFailed("INBOX always exists", "ALREADYEXISTS")
            levels = cleaned.split(DELIMITER)
            existing = {f.name for f in await self.store.listFolders(self.address)}
            if cleaned in existing:
                raise CommandFailed(
                    f"Mailbox {cleaned} already exists", "ALREADYEXISTS"
                )
            # RFC 3501 6.3.3: superiors are made as needed.
            for depth in range(1, len(levels) + 1):
                prefix = DELIMITER.join(levels[:depth])
                if prefix in existing or prefix == INBOX:
                    continue
                try:
                    await self.store.createFolder(self.address, prefix)
                except FolderExists as e:
                    if prefix == cleaned:
                        raise _failure(e, cleaned) from None

        return Deferred.fromCoroutine(run())

    def delete(self, name: str) -> Deferred[None]:
        async def run() -> None:
            cleaned = checkName(name)
            if cleaned == INBOX:
                raise CommandFailed("INBOX cannot be deleted", "CANNOT")
            try:
                await self.store.deleteFolder(self.address, cleaned)
            except NoSuchFolder as e:
                raise _failure(e, cleaned) from None

        return Deferred.fromCoroutine(run())

    def rename(self, old: str, new: str) -> Deferred[None]:
        async def run() -> None:
            source, target = checkName(old), checkName(new)
            if target == INBOX:
                raise CommandFailed("Nothing can be renamed to INBOX", "CANNOT")
            if target == source:
                raise CommandFailed(f"Mailbox {target} already exists", "ALREADYEXISTS")
            if target.startswith(source + DELIMITER):
                raise CommandFailed("A mailbox cannot move below itself", "CANNOT")
            levels = target.split(DELIMITER)
            existing = {f.name for f in await self.store.listFolders(self.address)}
            if source not in existing and source != INBOX:
                raise CommandFailed(f"Mailbox {source} does not exist", "NONEXISTENT")
            try:
                await self.store.renameFolder(self.address, source, target, DELIMITER)
            except (NoSuchFolder, FolderExists) as e:
                raise _failure(e, source) from None
            for depth in range(1, len(levels)):
                prefix = DELIMITER.join(levels[:depth])
                if prefix not in existing and prefix != INBOX:
                    try:
                        await self.store.createFolder(self.address, prefix)
                    except FolderExists:
                        pass

        return Deferred.fromCoroutine(run())

    def subscribe(self, name: str, subscribed: bool) -> Deferred[None]:
        async def run() -> None:
            cleaned = checkName(name)
            try:
                await self.store.setSubscribed(self.address, cleaned, subscribed)
            except NoSuchFolder as e:
                raise _failure(e, cleaned) from None

        return Deferred.fromCoroutine(run())

    def append(
        self,
        name: str,
        staged: IStagedMessage,
        flags: frozenset[str],
        date: float | None,
        uidValidity: int | None = None,
    ) -> Deferred[tuple[int, int]]:
        async def run() -> tuple[int, int]:
            cleaned = checkName(name)
            target = DeliveryTarget(self.address, cleaned, flags, self.quota)
            try:
                [uid] = await self.store.deliver(staged, [target], date)
                if uidValidity is None:
                    info = await self.store.folder(self.address, cleaned)
                    return info.uidValidity, uid
            except (NoSuchFolder, QuotaExceeded) as e:
                raise _failure(e, cleaned, "TRYCREATE") from None
            return uidValidity, uid

        return Deferred.fromCoroutine(run())

    def checkAppend(self, name: str, size: int) -> Deferred[None]:
        """
        Would an APPEND of C{size} bytes to C{name} be accepted? (Asked
        before a client is invited to send a synchronising literal.)
        """

        async def run() -> None:
            cleaned = checkName(name)
            try:
                await self.store.folder(self.address, cleaned)
            except NoSuchFolder as e:
                raise _failure(e, cleaned, "TRYCREATE") from None
            if self.quota is not None:
                usage = await self.store.usage(self.address)
                if usage.bytes + size > self.quota:
                    raise CommandFailed("Quota exceeded", "OVERQUOTA")

        return Deferred.fromCoroutine(run())

    def copy(
        self, name: str, uids: Sequence[int], dest: str, move: bool
    ) -> Deferred[tuple[int, Mapping[int, int]]]:
        """
        Copy or move messages to another folder.

        @return: the destination's UIDVALIDITY and source to new UIDs.
        """

        async def run() -> tuple[int, Mapping[int, int]]:
            target = checkName(dest)
            try:
                info = await self.store.folder(self.address, target)
                if move:
                    mapping = await self.store.move(self.address, name, uids, target)
                else:
                    mapping = await self.store.copy(
                        self.address, name, uids, target, self.quota
                    )
            except (NoSuchFolder, QuotaExceeded) as e:
                raise _failure(e, target, "TRYCREATE") from None
            return info.uidValidity, mapping

        return Deferred.fromCoroutine(run())


def listFolders(
    folders: Sequence[FolderInfo], reference: str, pattern: str, subscribed: bool
) -> list[ListedFolder]:
    """
    Match folders against a LIST pattern (C{reference} prepended).
    Levels that have no folder of their own but hold matching ones are
    listed C{\\Noselect} when the pattern ends with C{%} (RFC 3501
    6.3.8).
    """
    regex = patternRegex(reference + pattern)
    real = {f.name: f for f in folders}
    shown = {f.name for f in folders if f.subscribed or not subscribed}
    parents: set[str] = set()
    for name in real:
        levels = name.split(DELIMITER)
        for depth in range(1, len(levels)):
            parents.add(DELIMITER.join(levels[:depth]))
    candidates = set(shown)
    if pattern.endswith("%"):
        for name in shown:
            levels = name.split(DELIMITER)
            for depth in range(1, len(levels)):
                candidates.add(DELIMITER.join(levels[:depth]))
    listed = []
    for name in sorted(candidates, key=lambda n: (n != INBOX, n)):
        if not regex.match(name):
            continue
        attributes: list[str] = []
        if name not in shown:
            attributes.append("\\Noselect")
        attributes.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        use = SPECIAL_USE.get(name)
        if use is not None and name in real:
            attributes.append(use)
        listed.append(ListedFolder(name, tuple(attributes)))
    return listed


def accountFactory(
    store: IMailStore, users: IUserStore, defaultQuota: int | None
) -> AvatarFactory:
    """
    How the mail realm makes an L{IMAPAccount}: the account's quota is
    read, and its special-use folders made if missing.
    """

    async def make(owner: str, mind: Any) -> tuple[object, Callable[[], None]]:
        user = await users.getUser(owner)
        quota = defaultQuota
        if user is not None and user.quota is not None:
            quota = user.quota
        account = IMAPAccount(owner, store, quota or None)
        await account.ensureSpecialFolders()
        return account, lambda: None

    return make
