"""
The API's folder endpoints (C{/api/v1/folders}): list, create, rename,
delete.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from twisted.web.resource import IResource
from twisted.web.server import Request

from appnet.errors import NoSuchFolder
from appnet.mail.imap.account import DELIMITER, SPECIAL_USE, IMAPAccount, checkName
from appnet.mail.imap.errors import CommandFailed
from appnet.store.interfaces import INBOX, FolderInfo
from appnet.webmail.api.common import (
    MAX_UIDS,
    TRASH,
    Endpoint,
    _flag,
    _json,
    _log,
    _role,
    _session,
)
from appnet.webmail.errors import APIError
from appnet.webmail.forms import readJSON
from appnet.webmail.service import Webmail

__all__ = [
    "FIXED_FOLDERS",
    "FolderEndpoint",
    "FoldersEndpoint",
    "MAX_FOLDERS",
    "allFolders",
]


#: The most folders one account may have through the API (the store
#: itself sets no cap; IMAP's CREATE does not apply this one).
MAX_FOLDERS = 1000

#: Folders that cannot be renamed or deleted here: INBOX and the
#: special-use folders IMAP makes for every account.
FIXED_FOLDERS = frozenset({INBOX, *SPECIAL_USE})


def _folderJSON(f: FolderInfo) -> dict[str, Any]:
    return {
        "name": f.name,
        "role": _role(f.name),
        "special": f.name in FIXED_FOLDERS,
        "messages": f.messages,
        "unseen": f.unseen,
        "size": f.size,
    }


def _newFolderName(value: Any) -> str:
    """
    A folder name from a request body, checked by IMAP's rules
    (L{checkName}): 400 if it breaks them.
    """
    if not isinstance(value, str):
        raise APIError(400, "name must be a folder name")
    try:
        return checkName(value.strip())
    except CommandFailed as e:
        raise APIError(400, e.text) from None


async def allFolders(webmail: Webmail, account: str) -> Sequence[FolderInfo]:
    """
    Every folder of the account, INBOX first; the special-use folders
    (C{Sent}, C{Drafts}, C{Trash}, C{Junk}) are made first if missing,
    as the account's first IMAP login would make them.
    """
    mail = webmail.store.mail
    folders = await mail.listFolders(account)
    names = {f.name for f in folders}
    if not names.issuperset(SPECIAL_USE):
        await IMAPAccount(account, mail).ensureSpecialFolders()
        folders = await mail.listFolders(account)
    if not folders:
        folders = [await mail.folder(account, INBOX)]
    return folders


def _missingLevels(name: str, existing: set[str]) -> int:
    """How many folders making C{name} makes: it and absent superiors."""
    levels = name.split(DELIMITER)
    prefixes = (DELIMITER.join(levels[:depth]) for depth in range(1, len(levels) + 1))
    return sum(1 for p in prefixes if p not in existing and p != INBOX)


def _checkRoom(existing: set[str], making: int) -> None:
    if len(existing) + making > MAX_FOLDERS:
        raise APIError(409, f"too many folders (at most {MAX_FOLDERS})")


def _refusal(e: CommandFailed) -> APIError:
    """An IMAP refusal of a folder change as the API's error."""
    code = {"ALREADYEXISTS": 409, "NONEXISTENT": 404}.get(e.code or "", 400)
    return APIError(code, e.text)


class FoldersEndpoint(Endpoint):
    """
    C{GET /api/v1/folders}: every folder, INBOX first; C{POST} with
    C{{"name"}}: make one (and its missing superiors, as IMAP's CREATE
    does). C{/api/v1/folders/NAME} is one folder (L{FolderEndpoint}).
    """

    isLeaf = False

    def getChild(self, path: bytes, request: Request) -> IResource:
        # The name may arrive as one segment (%2F) or several: the rest
        # of the path is the name either way.
        rest = request.postpath or []
        segments = [path, *rest]
        if request.prepath is not None:
            request.prepath.extend(rest)
        request.postpath = []
        try:
            name = "/".join(s.decode("utf-8") for s in segments)
        except UnicodeDecodeError:
            name = ""
        if not name:
            return self
        return FolderEndpoint(self.webmail, name)

    async def GET(self, request: Request) -> bytes:
        account = _session(request).account
        folders = await allFolders(self.webmail, account)
        return _json(request, {"folders": [_folderJSON(f) for f in folders]})

    async def POST(self, request: Request) -> bytes:
        account = _session(request).account
        name = _newFolderName(readJSON(request.content).get("name"))
        mail = self.webmail.store.mail
        existing = {f.name for f in await mail.listFolders(account)}
        if name == INBOX or name in existing:
            raise APIError(409, f"folder {name!r} exists already")
        _checkRoom(existing, _missingLevels(name, existing))
        try:
            await IMAPAccount(account, mail).create(name)
        except CommandFailed as e:
            raise _refusal(e) from None
        info = await mail.folder(account, name)
        _log.info("Webmail: {account} made folder {name}", account=account, name=name)
        request.setHeader(
            b"location", f"/api/v1/folders/{quote(name, safe='')}".encode()
        )
        return _json(request, {"folder": _folderJSON(info)}, 201)


class FolderEndpoint(Endpoint):
    """
    C{/api/v1/folders/NAME}: C{GET} one folder; C{PATCH} with
    C{{"name"}} renames it and its subfolders; C{DELETE} deletes it.
    INBOX and the special-use folders are neither renamed nor deleted
    (409). A folder with subfolders is not deleted (409), nor one with
    messages (409) unless C{?force=1}: then its messages go to C{Trash}
    when the account has that folder (as C{/api/v1/delete} does), else
    they are deleted with it.
    """

    def __init__(self, webmail: Webmail, name: str) -> None:
        super().__init__(webmail)
        self.name = name

    def _folder(self) -> str:
        try:
            return checkName(self.name)
        except CommandFailed as e:
            raise APIError(400, e.text) from None

    def _changeable(self, action: str) -> str:
        name = self._folder()
        if name in FIXED_FOLDERS:
            raise APIError(409, f"{name} is a special folder and cannot be {action}")
        return name

    async def GET(self, request: Request) -> bytes:
        account = _session(request).account
        info = await self.webmail.store.mail.folder(account, self._folder())
        return _json(request, {"folder": _folderJSON(info)})

    async def PATCH(self, request: Request) -> bytes:
        account = _session(request).account
        source = self._changeable("renamed")
        target = _newFolderName(readJSON(request.content).get("name"))
        mail = self.webmail.store.mail
        existing = {f.name for f in await mail.listFolders(account)}
        if source not in existing:
            raise NoSuchFolder(account, source)
        if target == INBOX or target in existing:
            raise APIError(409, f"folder {target!r} exists already")
        # The folder leaves its name; superiors of the new one may be made.
        _checkRoom(existing, _missingLevels(target, existing) - 1)
        try:
            await IMAPAccount(account, mail).rename(source, target)
        except CommandFailed as e:
            raise _refusal(e) from None
        info = await mail.folder(account, target)
        _log.info(
            "Webmail: {account} renamed folder {old} to {new}",
            account=account,
            old=source,
            new=target,
        )
        return _json(request, {"folder": _folderJSON(info), "from": source})

    async def DELETE(self, request: Request) -> bytes:
        account = _session(request).account
        name = self._changeable("deleted")
        force = _flag(request, "force")
        mail = self.webmail.store.mail
        folders = {f.name: f for f in await mail.listFolders(account)}
        info = folders.get(name)
        if info is None:
            raise NoSuchFolder(account, name)
        if any(other.startswith(name + DELIMITER) for other in folders):
            raise APIError(409, "folder has subfolders; delete or move them first")
        if info.messages and not force:
            raise APIError(409, "folder not empty", {"messages": info.messages})
        moved = 0
        if info.messages and TRASH in folders:
            uids = [row.uid for row in await mail.listMessages(account, name)]
            for start in range(0, len(uids), MAX_UIDS):
                chunk = uids[start : start + MAX_UIDS]
                moved += len(await mail.move(account, name, chunk, TRASH))
            # A message filed here meanwhile is not deleted unasked.
            left = (await mail.folder(account, name)).messages
            if left:
                raise APIError(409, "folder not empty", {"messages": left})
        await mail.deleteFolder(account, name)
        _log.info(
            "Webmail: {account} deleted folder {name} ({moved} messages to Trash)",
            account=account,
            name=name,
            moved=moved,
        )
        return _json(request, {"deleted": name, "movedToTrash": moved})
