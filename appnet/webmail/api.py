"""
The JSON API under C{/api/v1}: what the webmail page does, for scripts
too. README.rst documents every endpoint.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from datetime import date, timedelta
from email import policy as emailPolicy
from email.parser import BytesParser
from typing import Any
from urllib.parse import quote, unquote

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from appnet.address import normalizeAccount
from appnet.auth import hashPassword
from appnet.cli import MIN_PASSWORD
from appnet.errors import (
    BadAddress,
    NoSuchFolder,
    NoSuchMessage,
    NoSuchUser,
    StoreUnavailable,
    UserExists,
)
from appnet.listen import hostOf
from appnet.mail.imap import search as searching
from appnet.mail.imap.account import DELIMITER, SPECIAL_USE, IMAPAccount, checkName
from appnet.mail.imap.errors import CommandFailed
from appnet.store.interfaces import (
    INBOX,
    FolderInfo,
    MessageBody,
    MessageInfo,
    QueuedMessage,
    User,
)
from appnet.web import csrf
from appnet.web.login import LoginFailed
from appnet.web.pages import sendJSON
from appnet.web.sessions import WebSession, sessionOf
from appnet.web.static import BodyProducer
from appnet.webmail.errors import APIError, SendRefused
from appnet.webmail.forms import draftFromJSON, draftFromMultipart, readJSON
from appnet.webmail.reading import (
    AttachmentInfo,
    ParsedMessage,
    Summary,
    addressList,
    contentDisposition,
    extractPart,
    headerSection,
    headOf,
    parseHeadersOnly,
    parseMessage,
    readAll,
    summarize,
)
from appnet.webmail.sending import (
    SENT,
    buildMessage,
    forwardSubject,
    replyRecipients,
    replySubject,
)
from appnet.webmail.sending import (
    quote as quoteReply,
)
from appnet.webmail.service import Webmail

__all__ = ["APIRoot", "Endpoint", "NotFound", "TRASH", "apiTree", "renderAPI"]

#: Where deleted messages go, when the account has this folder.
TRASH = "Trash"

#: Where drafts are saved (made with the other special-use folders).
DRAFTS = "Drafts"

#: Fields of a saved draft naming the message it answers or forwards
#: (C{FOLDER UID}, the folder percent-encoded), so that it threads when
#: sent after being reopened.
DRAFT_REFS = {"reply": "X-Appnet-Reply", "forward": "X-Appnet-Forward"}

#: Longest search text accepted per field, in characters.
MAX_SEARCH = 200

#: Messages per page unless asked; the most one page may hold.
PAGE_SIZE = 50
MAX_PAGE = 200

#: UIDs one move, delete or flags call may name.
MAX_UIDS = 1000

#: The largest UID (RFC 3501: UIDs are 32-bit); a larger number names no
#: message, and would not fit the store's integers.
MAX_UID = 2**32 - 1

#: The most folders one account may have through the API (the store
#: itself sets no cap; IMAP's CREATE does not apply this one).
MAX_FOLDERS = 1000

#: Folders that cannot be renamed or deleted here: INBOX and the
#: special-use folders IMAP makes for every account.
FIXED_FOLDERS = frozenset({INBOX, *SPECIAL_USE})

#: Flags the API lets a user set or clear (C{\\Deleted} goes through
#: C{delete}; C{\\Recent} belongs to IMAP).
SYSTEM_FLAGS = frozenset({"\\Seen", "\\Flagged", "\\Answered", "\\Draft"})

#: Images a browser may show inline from a message (no SVG: it is a
#: document that can carry scripts).
INLINE_IMAGES = frozenset({"image/png", "image/gif", "image/jpeg", "image/webp"})

#: Headers of every download: no script, no plugin, no framing, even if
#: a browser were persuaded to render it.
DOWNLOAD_CSP = b"sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"

_log = Logger()


@frozen
class Streamed:
    """A body to stream from an open file (a raw message download)."""

    file: Any
    size: int


def _json(request: Request, value: Any, code: int = 200) -> bytes:
    return sendJSON(request, value, code)


def renderAPI(request: Request, work: Coroutine[Any, Any, bytes | Streamed]) -> int:
    """
    Render with a coroutine returning the body (headers already set), or
    a L{Streamed} file. Errors become JSON: L{APIError} and
    L{SendRefused} with their status, a missing folder or message 404,
    anything unexpected a logged 500.
    """
    d = Deferred.fromCoroutine(_guarded(request, work))
    # Our own record of a lost client (Request._disconnected is private).
    gone: list[bool] = []

    def done(result: bytes | Streamed) -> None:
        if gone:
            if isinstance(result, Streamed):
                result.file.close()
            return
        if isinstance(result, Streamed):
            request.setHeader(b"content-length", b"%d" % (result.size,))
            if request.method == b"HEAD":
                result.file.close()
                request.write(b"")
                request.finish()
                return
            BodyProducer(request, result.file, [(0, result.size)]).start()
            return
        request.setHeader(b"content-length", b"%d" % (len(result),))
        request.write(b"" if request.method == b"HEAD" else result)
        request.finish()

    def failed(reason: Failure) -> None:
        if not reason.check(CancelledError):
            _log.failure("API {uri} failed", reason, uri=request.uri)

    def lost(_: Failure) -> None:
        gone.append(True)
        d.cancel()

    request.notifyFinish().addErrback(lost)
    d.addCallbacks(done, failed)
    return NOT_DONE_YET


async def _guarded(
    request: Request, work: Coroutine[Any, Any, bytes | Streamed]
) -> bytes | Streamed:
    try:
        return await work
    except APIError as e:
        return _json(request, {"error": e.message, **e.details}, e.code)
    except SendRefused as e:
        value: dict[str, Any] = {"error": e.message}
        if e.recipients:
            value["recipients"] = [dict(r) for r in e.recipients]
        return _json(request, value, e.code)
    except NoSuchFolder as e:
        return _json(request, {"error": f"no folder {e.name!r}"}, 404)
    except NoSuchMessage:
        return _json(request, {"error": "no such message"}, 404)
    except StoreUnavailable:
        request.setHeader(b"retry-after", b"5")
        return _json(request, {"error": "mail store unavailable; try again"}, 503)
    except CancelledError:
        raise
    except Exception:
        _log.failure(
            "API {method} {uri} failed", method=request.method, uri=request.uri
        )
        return _json(request, {"error": "internal error; it has been logged"}, 500)


def _session(request: Request) -> WebSession:
    session = sessionOf(request)
    if session is None:  # Only reachable when mounted without the gate.
        raise APIError(401, "login required")
    return session


def _admin(request: Request) -> WebSession:
    session = _session(request)
    if not session.admin:
        raise APIError(403, "administrators only")
    return session


def argument(request: Request, name: str) -> str | None:
    """A query argument as text, or C{None}."""
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        text: str = values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise APIError(400, f"{name} is not UTF-8") from None
    return text


def _folderArgument(request: Request, name: str = "folder") -> str:
    folder = argument(request, name)
    if folder is None:
        return INBOX
    if not folder or len(folder) > 255 or any(ord(c) < 32 for c in folder):
        raise APIError(400, f"bad {name}")
    return folder


def _number(
    request: Request, name: str, default: int | None, low: int, high: int
) -> int:
    text = argument(request, name)
    if text is None:
        if default is None:
            raise APIError(400, f"{name} is required")
        return default
    # ASCII digits only: str.isdigit() also takes "\u00b2", which int()
    # refuses, as it does thousands of digits.
    if (
        not (text.isascii() and text.isdigit())
        or len(text) > len(str(high))
        or not (low <= int(text) <= high)
    ):
        raise APIError(400, f"{name} must be a number from {low} to {high}")
    return int(text)


def _flag(request: Request, name: str) -> bool:
    return (argument(request, name) or "0").lower() in ("1", "true", "yes")


def _folderName(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 255:
        raise APIError(400, f"{name} must be a folder name")
    if any(ord(c) < 32 for c in value):
        raise APIError(400, f"{name} must be a folder name")
    return value


def _uids(value: Any) -> list[int]:
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_UIDS
        or not all(
            isinstance(u, int) and not isinstance(u, bool) and 0 < u <= MAX_UID
            for u in value
        )
    ):
        raise APIError(400, f"uids must be a list of 1 to {MAX_UIDS} positive integers")
    return sorted(set(value))


def _flagList(value: Any, name: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise APIError(400, f"{name} must be a list of flags")
    for flag in value:
        if flag.startswith("\\"):
            if flag not in SYSTEM_FLAGS:
                raise APIError(400, f"flag {flag} cannot be set here")
        elif not (
            0 < len(flag) <= 64
            and flag.isascii()
            and all(c.isalnum() or c in "$_.-" for c in flag)
        ):
            raise APIError(400, f"bad keyword {flag!r}")
    return frozenset(value)


def _messageURL(kind: str, folder: str, uid: int, **extra: Any) -> str:
    query = f"folder={quote(folder, safe='')}&uid={uid}"
    for key, value in extra.items():
        query += f"&{key}={value}"
    return f"/api/v1/{kind}?{query}"


def _role(name: str) -> str | None:
    return {INBOX: "inbox", SENT: "sent", TRASH: "trash", DRAFTS: "drafts"}.get(name)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


class Endpoint(Resource):
    """
    One API endpoint: C{async def GET(request)} and friends return the
    body; other methods get a JSON 405 with C{Allow}.
    """

    isLeaf = True

    def __init__(self, webmail: Webmail) -> None:
        super().__init__()
        self.webmail = webmail

    def _methods(self) -> list[bytes]:
        names = _METHODS
        found = [n for n in names if callable(getattr(self, n, None))]
        if "GET" in found and "HEAD" not in found:
            found.insert(found.index("GET") + 1, "HEAD")
        return [n.encode("ascii") for n in found]

    def render(self, request: Request) -> int | bytes:
        method = request.method.decode("ascii", "replace")
        handler = getattr(self, "GET" if method == "HEAD" else method, None)
        if handler is None or method not in _METHODS:
            request.setHeader(b"allow", b", ".join(self._methods()))
            return _json(request, {"error": f"method {method} not allowed"}, 405)
        return renderAPI(request, handler(request))


class LoginEndpoint(Endpoint):
    """
    C{POST /api/v1/login} with C{{"username", "password"}}: the JSON
    twin of the login form. It has no session yet, so no CSRF token; it
    requires C{Content-Type: application/json} (which no cross-site
    form can send without the browser asking first) and a same-origin
    request.
    """

    async def POST(self, request: Request) -> bytes:
        contentType = (request.getHeader(b"content-type") or b"").split(b";")[0]
        if contentType.strip().lower() != b"application/json":
            raise APIError(415, "send the credentials as application/json")
        try:
            csrf.verifyOrigin(request)
        except csrf.CSRFError as e:
            raise APIError(403, e.reason) from None
        body = readJSON(request.content)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise APIError(400, "username and password must be strings")
        try:
            session = await self.webmail.login.login(
                request, username.strip(), password
            )
        except LoginFailed as e:
            if e.throttled:
                request.setHeader(b"retry-after", b"60")
                raise APIError(429, str(e)) from None
            raise APIError(401, str(e)) from None
        return _json(request, _sessionJSON(session))


def _sessionJSON(session: WebSession) -> dict[str, Any]:
    return {
        "account": session.account,
        "admin": session.admin,
        "csrfToken": session.csrfToken,
        "expires": session.expires,
    }


class SessionEndpoint(Endpoint):
    """C{GET /api/v1/session}: the account, its role and the CSRF token."""

    async def GET(self, request: Request) -> bytes:
        session = _session(request)
        value = _sessionJSON(session)
        value["maxMessageSize"] = self.webmail.submitter.maxMessageSize
        return _json(request, value)


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


def _summaryJSON(info: MessageInfo, summary: Summary | None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "uid": info.uid,
        "size": info.size,
        "flags": sorted(info.flags),
        "internalDate": info.internalDate,
    }
    if summary is None:
        value.update(subject="", date=None, attachments=False)
        value.update({"from": [], "to": [], "messageId": "", "references": []})
        return value
    value.update(
        subject=summary.subject,
        date=summary.date,
        attachments=summary.hasAttachments,
        messageId=summary.messageId,
        references=list(summary.references),
    )
    value["from"] = addressList(summary.sender)
    value["to"] = addressList(summary.to)
    return value


def _summaries(bodies: Sequence[MessageBody | None]) -> list[Summary | None]:
    found: list[Summary | None] = []
    for body in bodies:
        try:
            found.append(summarize(body) if body is not None else None)
        except Exception:
            found.append(None)
    return found


class MessagesEndpoint(Endpoint):
    """
    C{GET /api/v1/messages?folder=INBOX&offset=0&limit=50}: one page of a
    folder, newest first, from the index and each message's header
    section (bodies are not read).
    """

    async def GET(self, request: Request) -> bytes:
        account = _session(request).account
        folder = _folderArgument(request)
        offset = _number(request, "offset", 0, 0, 10**9)
        limit = _number(request, "limit", PAGE_SIZE, 1, MAX_PAGE)
        mail = self.webmail.store.mail
        info = await mail.folder(account, folder)
        page = await mail.newestFirst(account, info.name, offset, limit)
        return _json(
            request,
            {
                "folder": info.name,
                "total": info.messages,
                "unseen": info.unseen,
                "offset": offset,
                "limit": limit,
                "messages": await _listed(self.webmail, account, info.name, page),
            },
        )


def _searchText(request: Request, name: str) -> str | None:
    text = argument(request, name)
    if text is None or not text.strip():
        return None
    if len(text) > MAX_SEARCH or any(ord(c) < 32 for c in text):
        raise APIError(400, f"{name} must be text of at most {MAX_SEARCH} characters")
    return text.strip().casefold()


def _searchDate(request: Request, name: str) -> date | None:
    text = argument(request, name)
    if not text:
        return None
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        pass
    raise APIError(400, f"{name} must be a date, YYYY-MM-DD")


def searchCriterion(request: Request) -> tuple[searching.Criterion, dict[str, str]]:
    """
    The IMAP search keys (L{appnet.mail.imap.search}) for a search
    request's fields: C{from}, C{to}, C{subject}, C{body} (substrings,
    any case), C{q} (in the sender, the subject or the text), C{thread}
    (a message id: that message and those that follow it), C{since} and
    C{until} (dates of the C{Date} field, both included). All given
    fields must match.

    @return: the criterion, and the fields as given (for the answer).
    @raise APIError: 400 for a bad field or none at all.
    """
    keys: list[searching.Criterion] = []
    asked: dict[str, str] = {}
    for name, header in (("from", "from"), ("to", "to"), ("subject", "subject")):
        text = _searchText(request, name)
        if text is not None:
            keys.append(searching.Header(header, text))
            asked[name] = text
    body = _searchText(request, "body")
    if body is not None:
        keys.append(searching.Body(body, withHeaders=False))
        asked["body"] = body
    anywhere = _searchText(request, "q")
    if anywhere is not None:
        keys.append(
            searching.Or(
                searching.Or(
                    searching.Header("from", anywhere),
                    searching.Header("subject", anywhere),
                ),
                searching.Body(anywhere, withHeaders=False),
            )
        )
        asked["q"] = anywhere
    thread = _searchText(request, "thread")
    if thread is not None:
        if not (thread.startswith("<") and thread.endswith(">")):
            raise APIError(400, "thread must be a message id, <...>")
        keys.append(
            searching.Or(
                searching.Header("message-id", thread),
                searching.Or(
                    searching.Header("references", thread),
                    searching.Header("in-reply-to", thread),
                ),
            )
        )
        asked["thread"] = thread
    since = _searchDate(request, "since")
    if since is not None:
        keys.append(searching.Sent("SINCE", since))
        asked["since"] = since.isoformat()
    until = _searchDate(request, "until")
    if until is not None:
        keys.append(searching.Sent("BEFORE", until + timedelta(days=1)))
        asked["until"] = until.isoformat()
    if not keys:
        raise APIError(
            400, "search for something: from, to, subject, body, q, thread, dates"
        )
    return (keys[0] if len(keys) == 1 else searching.And(tuple(keys))), asked


async def _listed(
    webmail: Webmail, account: str, folder: str, page: Sequence[MessageInfo]
) -> list[dict[str, Any]]:
    """The list entries of C{page}'s messages (header sections only)."""
    mail = webmail.store.mail
    # One lookup for the page; a message expunged meanwhile has none.
    found = await mail.openMessages(account, folder, [r.uid for r in page])
    bodies = [found.get(row.uid) for row in page]
    summaries = await webmail.inThread(_summaries, bodies)
    return [_summaryJSON(r, s) for r, s in zip(page, summaries, strict=True)]


class SearchEndpoint(Endpoint):
    """
    C{GET /api/v1/search?folder=INBOX&from=bob&subject=crepes&since=
    2026-01-01&until=2026-12-31&body=noon&offset=0&limit=50}: the
    folder's matching messages, newest first, paged as
    C{/api/v1/messages} pages a folder (same members, plus C{search}).
    The matching is IMAP SEARCH's (L{appnet.mail.imap.search}), in
    batches in a worker thread: only the header section is read unless
    C{body} or C{q} asks for the text.
    """

    async def GET(self, request: Request) -> bytes:
        account = _session(request).account
        folder = _folderArgument(request)
        offset = _number(request, "offset", 0, 0, 10**9)
        limit = _number(request, "limit", PAGE_SIZE, 1, MAX_PAGE)
        criterion, asked = searchCriterion(request)
        webmail = self.webmail
        mail = webmail.store.mail
        info = await mail.folder(account, folder)
        rows = list(await mail.listMessages(account, info.name))
        limits = searching.Limits(len(rows), rows[-1].uid if rows else 0)
        found: list[searching.Candidate] = []
        size = searching.BATCH[criterion.needs]
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            bodies = await mail.openMessages(
                account, info.name, [row.uid for row in batch]
            )
            candidates = [
                searching.Candidate(start + i + 1, row, bodies.get(row.uid))
                for i, row in enumerate(batch)
                if row.uid in bodies
            ]
            found += await webmail.heavy(
                searching.evaluate, criterion, candidates, limits
            )
        matches = sorted(
            (c.info for c in found), key=lambda m: (m.internalDate, m.uid), reverse=True
        )
        page = matches[offset : offset + limit]
        webmail.status.increment("webmail", "searches")
        return _json(
            request,
            {
                "folder": info.name,
                "search": asked,
                "total": len(matches),
                "unseen": sum(1 for m in matches if "\\Seen" not in m.flags),
                "offset": offset,
                "limit": limit,
                "messages": await _listed(webmail, account, info.name, page),
            },
        )


async def _stored(
    webmail: Webmail, account: str, folder: str, uid: int
) -> tuple[MessageInfo, MessageBody]:
    mail = webmail.store.mail
    rows = await mail.listMessages(account, folder, [uid])
    if not rows:
        raise NoSuchMessage(folder, uid)
    return rows[0], await mail.openMessage(account, folder, uid)


#: What the reader is told about a message the parser gives up on.
UNPARSABLE = "this message could not be parsed; download the original"


def _readForDisplay(
    body: MessageBody, limit: int, images: bool, folder: str, uid: int
) -> ParsedMessage:
    data = readAll(body, limit)
    if data is None:
        with body.open() as f:
            return parseHeadersOnly(
                headerSection(f), problem="this message is too large to show here"
            )

    def partURL(number: int) -> str:
        return _messageURL("attachment", folder, uid, part=number, inline=1)

    try:
        return parseMessage(data, images=images, partURL=partURL)
    except RecursionError:
        # The standard library's parser recurses per nesting level; such a
        # message is still listed and downloadable. Expected with hostile
        # input, so one line, not a traceback thousands of frames long.
        _log.warn(
            "Message {uid} in {folder} nests too deeply to parse",
            uid=uid,
            folder=folder,
        )
    except Exception:
        _log.failure("Cannot parse message {uid} in {folder}", uid=uid, folder=folder)
    return parseHeadersOnly(headOf(data), tooLarge=False, problem=UNPARSABLE)


class MessageEndpoint(Endpoint):
    """
    C{GET /api/v1/message?folder=INBOX&uid=7[&images=1]}: one message,
    parsed: headers, its text, its HTML sanitised (remote images always
    removed, the message's own images only with C{images=1}), and its
    attachments with download URLs.
    """

    async def GET(self, request: Request) -> bytes:
        account = _session(request).account
        folder = _folderArgument(request)
        uid = _number(request, "uid", None, 1, MAX_UID)
        images = _flag(request, "images")
        webmail = self.webmail
        row, body = await _stored(webmail, account, folder, uid)
        parsed: ParsedMessage = await webmail.heavy(
            _readForDisplay, body, webmail.parseLimit, images, folder, uid
        )
        webmail.status.increment("webmail", "read")
        addresses = parsed.addresses
        value: dict[str, Any] = {
            "folder": folder,
            "uid": uid,
            "size": row.size,
            "flags": sorted(row.flags),
            "internalDate": row.internalDate,
            "date": parsed.date,
            "subject": parsed.headers.get("subject", ""),
            "dateText": parsed.headers.get("date", ""),
            "messageId": parsed.headers.get("messageId", ""),
            "from": addressList(addresses["from"]),
            "to": addressList(addresses["to"]),
            "cc": addressList(addresses["cc"]),
            "replyTo": addressList(addresses["replyTo"]),
            "text": parsed.text,
            "html": parsed.html,
            "blockedImages": {
                "remote": parsed.blockedRemote,
                "inline": parsed.blockedInline,
            },
            "attachments": [
                _attachmentJSON(folder, uid, a) for a in parsed.attachments
            ],
            "raw": _messageURL("raw", folder, uid),
            "tooLarge": parsed.tooLarge,
            "problem": parsed.problem,
        }
        return _json(request, value)


def _attachmentJSON(folder: str, uid: int, a: AttachmentInfo) -> dict[str, Any]:
    return {
        "part": a.part,
        "filename": a.filename,
        "contentType": a.contentType,
        "size": a.size,
        "contentId": a.contentId,
        "inline": a.inline,
        "url": _messageURL("attachment", folder, uid, part=a.part),
    }


def _downloadHeaders(request: Request, contentType: bytes, disposition: bytes) -> None:
    request.setHeader(b"content-type", contentType)
    request.setHeader(b"content-disposition", disposition)
    request.setHeader(b"content-security-policy", DOWNLOAD_CSP)
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"cache-control", b"private, no-store")


class AttachmentEndpoint(Endpoint):
    """
    C{GET /api/v1/attachment?folder=INBOX&uid=7&part=2[&inline=1]}: one
    part, decoded, as a download (C{Content-Disposition: attachment} with
    a safe file name). With C{inline=1}, a PNG, GIF, JPEG or WebP image is
    served for display (the page's "show images").
    """

    async def GET(self, request: Request) -> bytes:
        account = _session(request).account
        folder = _folderArgument(request)
        uid = _number(request, "uid", None, 1, MAX_UID)
        part = _number(request, "part", None, 1, 10**6)
        inline = _flag(request, "inline")
        webmail = self.webmail
        _, body = await _stored(webmail, account, folder, uid)

        def extract() -> tuple[AttachmentInfo, bytes] | None:
            data = readAll(body, webmail.parseLimit)
            if data is None:
                raise APIError(413, "the message is too large to take apart")
            try:
                return extractPart(data, part)
            except Exception:
                raise APIError(422, UNPARSABLE) from None

        found = await webmail.heavy(extract)
        if found is None:
            raise APIError(404, "no such part")
        info, content = found
        if inline and info.contentType not in INLINE_IMAGES:
            raise APIError(415, "only PNG, GIF, JPEG and WebP images are shown inline")
        webmail.status.increment("webmail", "downloads")
        _downloadHeaders(
            request,
            info.contentType.encode("ascii"),
            contentDisposition("inline" if inline else "attachment", info.filename),
        )
        return content


class RawEndpoint(Endpoint):
    """
    C{GET /api/v1/raw?folder=INBOX&uid=7}: the stored message as an
    C{.eml} download, streamed from its file.
    """

    async def GET(self, request: Request) -> Streamed:
        account = _session(request).account
        folder = _folderArgument(request)
        uid = _number(request, "uid", None, 1, MAX_UID)
        _, body = await _stored(self.webmail, account, folder, uid)
        f = await self.webmail.inThread(body.open)
        _downloadHeaders(
            request,
            b"message/rfc822",
            contentDisposition("attachment", f"message-{uid}.eml"),
        )
        return Streamed(f, body.size)


class DraftEndpoint(Endpoint):
    """
    C{GET /api/v1/draft?mode=reply|all|forward|edit&folder=INBOX&uid=7}:
    the fields of a reply (to the sender), a reply to all, or a forward,
    filled in from the original, for the page's compose form; with
    C{edit}, a saved draft's own fields (409 for a message not flagged
    C{\\Draft}).
    """

    async def GET(self, request: Request) -> bytes:
        session = _session(request)
        folder = _folderArgument(request)
        uid = _number(request, "uid", None, 1, MAX_UID)
        mode = argument(request, "mode") or "reply"
        if mode not in ("reply", "all", "forward", "edit"):
            raise APIError(400, "mode must be reply, all, forward or edit")
        webmail = self.webmail
        row, body = await _stored(webmail, session.account, folder, uid)
        if mode == "edit":
            if "\\Draft" not in row.flags:
                raise APIError(409, "only a draft can be edited")
            fields = await webmail.heavy(_draftFields, body, webmail.parseLimit)
            for kind in DRAFT_REFS:
                fields[kind] = await _stillThere(webmail, session.account, fields[kind])
            fields["draft"] = {"folder": folder, "uid": uid}
            return _json(request, fields)
        parsed: ParsedMessage = await webmail.heavy(
            _readForDisplay, body, webmail.parseLimit, False, folder, uid
        )
        ref = {"folder": folder, "uid": uid}
        subject = parsed.headers.get("subject", "")
        if mode == "forward":
            value: dict[str, Any] = {
                "to": [],
                "cc": [],
                "subject": forwardSubject(subject),
                "text": "",
                "reply": None,
                "forward": ref,
            }
        else:
            to, cc = replyRecipients(parsed, session.account, mode == "all")
            value = {
                "to": to,
                "cc": cc,
                "subject": replySubject(subject),
                "text": "\n\n" + quoteReply(parsed),
                "reply": ref,
                "forward": None,
            }
        return _json(request, value)


def _draftFields(body: MessageBody, limit: int) -> dict[str, Any]:
    """A saved draft's fields for the compose form. Blocking."""
    data = readAll(body, limit)
    if data is None:
        raise APIError(413, "the draft is too large to open")
    message = BytesParser(policy=emailPolicy.default).parsebytes(data)

    def field(name: str) -> str:
        try:
            value = message.get(name)
        except Exception:
            return ""
        text = "" if value is None else " ".join(str(value).split())
        return "" if text == "undisclosed-recipients:;" else text

    text = ""
    try:
        part = message.get_body(("plain",))
        if part is not None:
            text = str(part.get_content()).replace("\r\n", "\n")
    except Exception:
        text = ""
    refs: dict[str, Any] = {}
    for kind, name in DRAFT_REFS.items():
        folder, _, uid = field(name).partition(" ")
        refs[kind] = None
        if folder and uid.isdigit() and 0 < int(uid) <= MAX_UID:
            refs[kind] = {"folder": unquote(folder), "uid": int(uid)}
    return {
        "to": [field("to")] if field("to") else [],
        "cc": [field("cc")] if field("cc") else [],
        "bcc": [field("bcc")] if field("bcc") else [],
        "subject": field("subject"),
        "text": text,
        **refs,
    }


async def _stillThere(
    webmail: Webmail, account: str, ref: dict[str, Any] | None
) -> dict[str, Any] | None:
    """C{ref} if the message it names still exists, else C{None}."""
    if ref is None:
        return None
    try:
        rows = await webmail.store.mail.listMessages(
            account, ref["folder"], [ref["uid"]]
        )
    except NoSuchFolder:
        return None
    return ref if rows else None


async def _dropDraft(webmail: Webmail, account: str, uid: int) -> list[int]:
    """Expunge draft C{uid} of C{Drafts}, if it is flagged C{\\Draft}."""
    mail = webmail.store.mail
    rows = await mail.listMessages(account, DRAFTS, [uid])
    if not rows or "\\Draft" not in rows[0].flags:
        return []
    return list(await mail.expunge(account, DRAFTS, [uid]))


class DraftsEndpoint(Endpoint):
    """
    C{POST /api/v1/drafts[?replaces=UID]} with the compose form (as
    C{send} takes it): save the message, unsent, in C{Drafts} flagged
    C{\\Draft} and C{\\Seen}, through IMAP's APPEND (quota applies); the
    draft it C{replaces} is then removed. C{DELETE
    /api/v1/drafts?uid=UID} removes a saved draft for good. Reopen one
    with C{GET /api/v1/draft?mode=edit&folder=Drafts&uid=UID}.
    """

    async def POST(self, request: Request) -> bytes:
        account = _session(request).account
        replaces = _number(request, "replaces", 0, 0, MAX_UID)
        webmail = self.webmail
        contentType = request.getHeader(b"content-type") or b""
        kind = contentType.split(b";")[0].strip().lower()
        if request.content is None:
            raise APIError(400, "nothing to save")
        if kind == b"multipart/form-data":
            draft = await webmail.heavy(
                draftFromMultipart, request.content, contentType
            )
        elif kind == b"application/json":
            draft = await webmail.heavy(draftFromJSON, request.content)
        else:
            raise APIError(415, "send multipart/form-data or application/json")
        now = webmail.clock.seconds()

        refs = b"".join(
            b"%s: %s %d\r\n"
            % (name.encode(), quote(ref.folder, safe="").encode(), ref.uid)
            for name, ref in (
                (DRAFT_REFS["reply"], draft.reply),
                (DRAFT_REFS["forward"], draft.forward),
            )
            if ref is not None
        )

        def build() -> bytes:
            try:
                _, saved = buildMessage(
                    sender=account,
                    to=[" ".join(t.split()) for t in draft.to if t.strip()],
                    cc=[" ".join(t.split()) for t in draft.cc if t.strip()],
                    bcc=[" ".join(t.split()) for t in draft.bcc if t.strip()],
                    subject=draft.subject,
                    text=draft.text,
                    attachments=draft.attachments,
                    when=now,
                )
            except Exception:
                raise APIError(400, "the draft's address fields do not parse") from None
            return refs + saved

        data: bytes = await webmail.heavy(build)
        if len(data) > webmail.submitter.maxMessageSize:
            raise APIError(413, "draft too large")
        await allFolders(webmail, account)
        user = await webmail.store.users.getUser(account)
        quota = webmail.submitter.defaultQuota
        if user is not None and user.quota is not None:
            quota = user.quota
        mail = webmail.store.mail
        staged = mail.stage()
        try:
            staged.write(data)
            _, uid = await IMAPAccount(account, mail, quota or None).append(
                DRAFTS, staged, frozenset({"\\Draft", "\\Seen"}), now
            )
        except CommandFailed as e:
            code = 507 if e.code == "OVERQUOTA" else 409
            raise APIError(code, e.text) from None
        finally:
            staged.discard()
        replaced = await _dropDraft(webmail, account, replaces) if replaces else []
        webmail.status.increment("webmail", "drafts_saved")
        return _json(
            request,
            {"folder": DRAFTS, "uid": uid, "size": len(data), "replaced": replaced},
            201,
        )

    async def DELETE(self, request: Request) -> bytes:
        account = _session(request).account
        uid = _number(request, "uid", None, 1, MAX_UID)
        removed = await _dropDraft(self.webmail, account, uid)
        if not removed:
            raise APIError(404, "no such draft")
        return _json(request, {"deleted": removed})


class SendEndpoint(Endpoint):
    """
    C{POST /api/v1/send}: send a message (C{multipart/form-data} from the
    page, or JSON); see L{appnet.webmail.sending}.
    """

    async def POST(self, request: Request) -> bytes:
        session = _session(request)
        webmail = self.webmail
        contentType = request.getHeader(b"content-type") or b""
        kind = contentType.split(b";")[0].strip().lower()
        if request.content is None:
            raise APIError(400, "nothing to send")
        if kind == b"multipart/form-data":
            draft = await webmail.heavy(
                draftFromMultipart, request.content, contentType
            )
        elif kind == b"application/json":
            draft = await webmail.heavy(draftFromJSON, request.content)
        else:
            raise APIError(415, "send multipart/form-data or application/json")
        try:
            sent = await webmail.submitter.send(
                session.account,
                draft,
                client=hostOf(request.getClientAddress()),
                secure=request.isSecure(),
                now=webmail.clock.seconds(),
            )
        except SendRefused:
            webmail.status.increment("webmail", "send_refused")
            raise
        return _json(
            request,
            {
                "id": sent.id,
                "messageId": sent.messageId,
                "delivered": list(sent.local),
                "queued": list(sent.remote),
                "queueId": sent.queueId,
                "size": sent.size,
                "sent": (
                    {"folder": SENT, "uid": sent.sentUid}
                    if sent.sentUid is not None
                    else None
                ),
            },
        )


class MoveEndpoint(Endpoint):
    """
    C{POST /api/v1/move} with C{{"folder", "uids", "to"}}: move messages
    to another folder of the account.
    """

    async def POST(self, request: Request) -> bytes:
        account = _session(request).account
        body = readJSON(request.content)
        folder = _folderName(body.get("folder", INBOX), "folder")
        target = _folderName(body.get("to"), "to")
        uids = _uids(body.get("uids"))
        mail = self.webmail.store.mail
        source = await mail.folder(account, folder)
        dest = await mail.folder(account, target)
        if source.name == dest.name:
            raise APIError(400, "the messages are in that folder already")
        moved = await mail.move(account, source.name, uids, dest.name)
        self.webmail.status.increment("webmail", "moved", len(moved))
        return _json(
            request,
            {"to": dest.name, "uids": {str(k): v for k, v in sorted(moved.items())}},
        )


class DeleteEndpoint(Endpoint):
    """
    C{POST /api/v1/delete} with C{{"folder", "uids"}}: move the messages
    to C{Trash} when the account has that folder (and they are not in it
    already); otherwise flag them C{\\Deleted} and expunge them, for good.
    """

    async def POST(self, request: Request) -> bytes:
        account = _session(request).account
        body = readJSON(request.content)
        folder = _folderName(body.get("folder", INBOX), "folder")
        uids = _uids(body.get("uids"))
        mail = self.webmail.store.mail
        source = await mail.folder(account, folder)
        names = {f.name for f in await mail.listFolders(account)}
        status = self.webmail.status
        if TRASH in names and source.name != TRASH:
            moved = await mail.move(account, source.name, uids, TRASH)
            status.increment("webmail", "deleted", len(moved))
            return _json(
                request,
                {
                    "action": "moved",
                    "to": TRASH,
                    "uids": {str(k): v for k, v in sorted(moved.items())},
                },
            )
        await mail.setFlags(account, source.name, uids, frozenset({"\\Deleted"}), "add")
        removed = await mail.expunge(account, source.name, uids)
        status.increment("webmail", "deleted", len(removed))
        return _json(request, {"action": "expunged", "uids": sorted(removed)})


class FlagsEndpoint(Endpoint):
    """
    C{POST /api/v1/flags} with C{{"folder", "uids", "add", "remove"}}:
    set or clear C{\\Seen}, C{\\Flagged}, C{\\Answered}, C{\\Draft} and
    keywords.
    """

    async def POST(self, request: Request) -> bytes:
        account = _session(request).account
        body = readJSON(request.content)
        folder = _folderName(body.get("folder", INBOX), "folder")
        uids = _uids(body.get("uids"))
        add = _flagList(body.get("add"), "add")
        remove = _flagList(body.get("remove"), "remove")
        if not add and not remove:
            raise APIError(400, "name flags to add or remove")
        mail = self.webmail.store.mail
        source = await mail.folder(account, folder)
        if add:
            await mail.setFlags(account, source.name, uids, add, "add")
        if remove:
            await mail.setFlags(account, source.name, uids, remove, "remove")
        rows = await mail.listMessages(account, source.name, uids)
        return _json(
            request,
            {"messages": [{"uid": r.uid, "flags": sorted(r.flags)} for r in rows]},
        )


def _queuedJSON(message: QueuedMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "sender": message.sender,
        "submitter": message.submitter,
        "size": message.size,
        "created": message.created,
        "nextAttempt": message.nextAttempt,
        "attempts": message.attempts,
        "held": message.held,
        "lastError": message.lastError,
        "recipients": [
            {
                "address": r.address,
                "state": r.state,
                "response": r.response,
                "updated": r.updated,
            }
            for r in message.recipients
        ],
    }


class QueueEndpoint(Endpoint):
    """C{GET /api/v1/queue}: the outgoing queue, oldest first (admins)."""

    async def GET(self, request: Request) -> bytes:
        _admin(request)
        messages = await self.webmail.store.queue.list()
        return _json(request, {"messages": [_queuedJSON(m) for m in messages]})


def _userJSON(user: User) -> dict[str, Any]:
    return {
        "address": user.address,
        "admin": user.admin,
        "quota": user.quota,
        "created": user.created,
    }


def _password(body: dict[str, Any]) -> str:
    password = body.get("password")
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise APIError(400, f"password must have at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise APIError(400, "password too long")
    return password


async def _hash(webmail: Webmail, password: str) -> str:
    encoded: str = await webmail.heavy(hashPassword, password)
    return encoded


class UsersEndpoint(Endpoint):
    """
    C{GET /api/v1/users}: every account; C{POST} with C{{"address",
    "password", "admin", "quota"}}: create one (admins).
    """

    isLeaf = False

    def getChild(self, path: bytes, request: Request) -> IResource:
        try:
            address = path.decode("utf-8")
        except UnicodeDecodeError:
            address = ""
        return UserEndpoint(self.webmail, address)

    async def GET(self, request: Request) -> bytes:
        _admin(request)
        users = await self.webmail.store.users.listUsers()
        return _json(request, {"users": [_userJSON(u) for u in users]})

    async def POST(self, request: Request) -> bytes:
        _admin(request)
        body = readJSON(request.content)
        raw = body.get("address")
        if not isinstance(raw, str):
            raise APIError(400, "address must be a string")
        try:
            address = normalizeAccount(raw)
        except BadAddress as e:
            raise APIError(400, str(e)) from None
        password = _password(body)
        admin = body.get("admin", False)
        quota = body.get("quota")
        if not isinstance(admin, bool):
            raise APIError(400, "admin must be true or false")
        if quota is not None and (
            not isinstance(quota, int)
            or isinstance(quota, bool)
            or not 0 <= quota < 2**63  # what the store's integers hold
        ):
            raise APIError(400, "quota must be a number of bytes or null")
        encoded = await _hash(self.webmail, password)
        try:
            user = await self.webmail.store.users.addUser(
                address, encoded, admin, quota
            )
        except UserExists:
            raise APIError(409, f"{address} exists already") from None
        _log.info("Web admin: user {address} added", address=address)
        request.setHeader(b"location", f"/api/v1/users/{quote(address)}".encode())
        return _json(request, {"user": _userJSON(user)}, 201)


class UserEndpoint(Endpoint):
    """
    C{DELETE /api/v1/users/ADDRESS}: delete an account (not one's own);
    C{POST /api/v1/users/ADDRESS/password} with C{{"password"}}: set its
    password, ending its sessions (admins).
    """

    isLeaf = False

    def __init__(self, webmail: Webmail, address: str) -> None:
        super().__init__(webmail)
        self.address = address

    def getChild(self, path: bytes, request: Request) -> IResource:
        if path == b"password" and not request.postpath:
            return PasswordEndpoint(self.webmail, self.address)
        return NotFound()

    def _account(self) -> str:
        try:
            return normalizeAccount(self.address)
        except BadAddress as e:
            raise APIError(400, str(e)) from None

    async def GET(self, request: Request) -> bytes:
        _admin(request)
        user = await self.webmail.store.users.getUser(self._account())
        if user is None:
            raise APIError(404, "no such user")
        return _json(request, {"user": _userJSON(user)})

    async def DELETE(self, request: Request) -> bytes:
        session = _admin(request)
        address = self._account()
        if address == session.account:
            raise APIError(409, "you cannot delete your own account")
        try:
            await self.webmail.store.users.deleteUser(address)
        except NoSuchUser:
            raise APIError(404, "no such user") from None
        await self.webmail.sessions.endAll(address)
        _log.info("Web admin: user {address} deleted", address=address)
        return _json(request, {"deleted": address})


class PasswordEndpoint(UserEndpoint):
    """C{POST /api/v1/users/ADDRESS/password}."""

    isLeaf = True
    GET = None  # type: ignore[assignment]
    DELETE = None  # type: ignore[assignment]

    async def POST(self, request: Request) -> bytes:
        _admin(request)
        address = self._account()
        password = _password(readJSON(request.content))
        encoded = await _hash(self.webmail, password)
        try:
            await self.webmail.store.users.setPasswordHash(address, encoded)
        except NoSuchUser:
            raise APIError(404, "no such user") from None
        ended = await self.webmail.sessions.endAll(address)
        _log.info("Web admin: password of {address} set", address=address)
        return _json(request, {"address": address, "sessionsEnded": ended})


class NotFound(Resource):
    """A JSON 404 for every method."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        return _json(request, {"error": "no such endpoint"}, 404)


class APIRoot(Resource):
    """
    C{/api}, and C{/api/v1}: named endpoints, a JSON 404 for anything
    else.
    """

    def getChild(self, path: bytes, request: Request) -> IResource:
        return NotFound()

    def render(self, request: Request) -> bytes:
        return _json(request, {"error": "no such endpoint"}, 404)


def apiTree(webmail: Webmail, gate: Callable[[IResource], IResource]) -> APIRoot:
    """
    C{/api} with C{v1} under it: C{login} open, everything else behind
    C{gate} (a function wrapping a resource in the JSON session gate).
    """
    v1 = APIRoot()
    v1.putChild(b"login", LoginEndpoint(webmail))
    endpoints: dict[bytes, Resource] = {
        b"session": SessionEndpoint(webmail),
        b"folders": FoldersEndpoint(webmail),
        b"messages": MessagesEndpoint(webmail),
        b"search": SearchEndpoint(webmail),
        b"message": MessageEndpoint(webmail),
        b"attachment": AttachmentEndpoint(webmail),
        b"raw": RawEndpoint(webmail),
        b"draft": DraftEndpoint(webmail),
        b"drafts": DraftsEndpoint(webmail),
        b"send": SendEndpoint(webmail),
        b"move": MoveEndpoint(webmail),
        b"delete": DeleteEndpoint(webmail),
        b"flags": FlagsEndpoint(webmail),
        b"queue": QueueEndpoint(webmail),
        b"users": UsersEndpoint(webmail),
    }
    for name, endpoint in endpoints.items():
        v1.putChild(name, gate(endpoint))
    root = APIRoot()
    root.putChild(b"v1", v1)
    return root
