"""
What every endpoint of the JSON API shares: the limits, the rendering of
a coroutine as a JSON reply, argument parsing, the L{Endpoint} base and
the JSON 404 resources.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any
from urllib.parse import quote

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from appnet.errors import NoSuchFolder, NoSuchMessage, StoreUnavailable
from appnet.store.interfaces import INBOX
from appnet.web.pages import sendJSON
from appnet.web.sessions import WebSession, sessionOf
from appnet.web.static import BodyProducer
from appnet.webmail.errors import APIError, SendRefused
from appnet.webmail.sending import SENT
from appnet.webmail.service import Webmail

__all__ = [
    "APIRoot",
    "DRAFTS",
    "Endpoint",
    "MAX_UID",
    "MAX_UIDS",
    "NotFound",
    "SYSTEM_FLAGS",
    "Streamed",
    "TRASH",
    "argument",
    "renderAPI",
]


#: Where deleted messages go, when the account has this folder.
TRASH = "Trash"

#: Where drafts are saved (made with the other special-use folders).
DRAFTS = "Drafts"

#: UIDs one move, delete or flags call may name.
MAX_UIDS = 1000

#: The largest UID (RFC 3501: UIDs are 32-bit); a larger number names no
#: message, and would not fit the store's integers.
MAX_UID = 2**32 - 1

#: Flags the API lets a user set or clear (C{\\Deleted} goes through
#: C{delete}; C{\\Recent} belongs to IMAP).
SYSTEM_FLAGS = frozenset({"\\Seen", "\\Flagged", "\\Answered", "\\Draft"})

_log = Logger(namespace="appnet.webmail.api")


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
