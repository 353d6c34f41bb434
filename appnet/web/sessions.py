"""
Cookie sessions bound to rows of the store.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from attrs import define, frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import IResource
from twisted.web.server import Request
from twisted.web.util import DeferredResource
from zope.interface import implementer

from appnet.store.interfaces import ISessionStore, IUserStore, SessionRecord
from appnet.web import csrf
from appnet.web.pages import ErrorResource, RedirectResource, sendJSON

__all__ = [
    "COOKIE",
    "SECURE_COOKIE",
    "SessionGate",
    "SessionManager",
    "WebSession",
    "sessionOf",
]

COOKIE = b"appnet_session"
#: The cookie's name over TLS: browsers accept a C{__Host-} cookie only
#: with C{Secure}, C{Path=/} and no C{Domain}.
SECURE_COOKIE = b"__Host-appnet_session"

#: The expiry is rewritten when it has slid by more than this (or a tenth
#: of the lifetime, if less).
TOUCH_INTERVAL = 300.0

_ATTRIBUTE = "_appnetSession"


@frozen
class WebSession:
    """
    A logged-in browser.

    @ivar account: the canonical address it is logged in as.
    @ivar admin: whether that account is an administrator.
    @ivar csrfToken: the token every unsafe request must carry.
    @ivar created: when the session started.
    @ivar expires: when it ends unless used.
    """

    account: str
    admin: bool
    csrfToken: str
    created: float
    expires: float
    _key: str

    def __repr__(self) -> str:
        return f"WebSession({self.account!r}, expires={self.expires})"


def _hash(token: bytes) -> str:
    return hashlib.sha256(token).hexdigest()


def sessionOf(request: Request) -> WebSession | None:
    """
    The session found for C{request} by L{SessionManager.current} (every
    request that passed a L{SessionGate} has one).
    """
    found = getattr(request, _ATTRIBUTE, None)
    return found if isinstance(found, WebSession) else None


def cookieName(request: Request) -> bytes:
    """The session cookie's name for this request's scheme."""
    return SECURE_COOKIE if request.isSecure() else COOKIE


@define
class SessionManager:
    """
    Starts, finds and ends sessions.

    @ivar lifetime: seconds a session lasts without being used.
    """

    _store: ISessionStore
    _users: IUserStore
    _clock: IReactorTime
    lifetime: float = 12 * 3600.0
    _log = Logger()

    def start(self, request: Request, account: str) -> Deferred[WebSession]:
        """
        Log C{request}'s browser in as C{account}: end the session it had,
        store a new one and set the cookie.
        """
        return Deferred.fromCoroutine(self._start(request, account))

    async def _start(self, request: Request, account: str) -> WebSession:
        old = self._token(request)
        if old is not None:
            await self._store.deleteSession(_hash(old))
        token, session = await self._create(account)
        request.addCookie(
            cookieName(request),
            token,
            path=b"/",
            secure=request.isSecure(),
            httpOnly=True,
            sameSite=b"lax",
        )
        setattr(request, _ATTRIBUTE, session)
        self._log.info(
            "Web login: {account} from {client}",
            account=account,
            client=getattr(request.getClientAddress(), "host", "-"),
        )
        return session

    def create(self, account: str) -> Deferred[tuple[str, WebSession]]:
        """
        Store a new session for C{account} without a request (for fixtures
        and tools).

        @return: the cookie value and the session.
        """
        return Deferred.fromCoroutine(self._create(account))

    async def _create(self, account: str) -> tuple[str, WebSession]:
        user = await self._users.getUser(account)
        token = secrets.token_urlsafe(32)
        now = self._clock.seconds()
        record = SessionRecord(
            _hash(token.encode("ascii")),
            account,
            csrf.newToken(),
            now,
            now + self.lifetime,
        )
        await self._store.addSession(record)
        return token, self._session(record, bool(user and user.admin))

    def _session(self, record: SessionRecord, admin: bool) -> WebSession:
        return WebSession(
            record.account,
            admin,
            record.csrfToken,
            record.created,
            record.expires,
            record.key,
        )

    def _token(self, request: Request) -> bytes | None:
        value = request.getCookie(cookieName(request))
        if not value or len(value) > 256:
            return None
        assert isinstance(value, bytes)
        return value

    def current(self, request: Request) -> Deferred[WebSession | None]:
        """
        The valid session C{request}'s cookie names, or C{None}. An expired
        session is deleted; a used one has its expiry moved forward.
        """
        return Deferred.fromCoroutine(self._current(request))

    async def _current(self, request: Request) -> WebSession | None:
        cached = getattr(request, _ATTRIBUTE, None)
        if cached is not None:
            return sessionOf(request)
        session = await self._lookup(request)
        setattr(request, _ATTRIBUTE, session if session is not None else False)
        if session is not None and hasattr(request, "logUser"):
            request.logUser = session.account
        return session

    async def _lookup(self, request: Request) -> WebSession | None:
        token = self._token(request)
        if token is None:
            return None
        key = _hash(token)
        record = await self._store.getSession(key)
        if record is None:
            return None
        now = self._clock.seconds()
        if record.expires <= now:
            await self._store.deleteSession(key)
            return None
        user = await self._users.getUser(record.account)
        if user is None:
            await self._store.deleteSession(key)
            return None
        expires = now + self.lifetime
        if expires - record.expires > min(TOUCH_INTERVAL, self.lifetime / 10):
            await self._store.touchSession(key, expires)
            record = SessionRecord(
                record.key, record.account, record.csrfToken, record.created, expires
            )
        return self._session(record, user.admin)

    def end(self, request: Request) -> Deferred[bool]:
        """
        Log C{request}'s browser out: delete its session and clear the
        cookie.

        @return: whether there was a session.
        """
        return Deferred.fromCoroutine(self._end(request))

    async def _end(self, request: Request) -> bool:
        token = self._token(request)
        request.addCookie(
            cookieName(request),
            b"",
            path=b"/",
            max_age=b"0",
            expires=b"Thu, 01 Jan 1970 00:00:00 GMT",
            secure=request.isSecure(),
            httpOnly=True,
            sameSite=b"lax",
        )
        setattr(request, _ATTRIBUTE, False)
        if token is None:
            return False
        existed = await self._store.deleteSession(_hash(token))
        return existed

    def endAll(self, account: str) -> Deferred[int]:
        """End every session of C{account} (after a password change)."""
        return self._store.deleteAccountSessions(account)

    def purge(self) -> Deferred[int]:
        """Delete every expired session."""
        return self._store.purgeExpired(self._clock.seconds())


def loginRedirect(request: Request) -> IResource:
    """Send a browser without a session to the login page, then back."""
    here = request.uri if request.method in (b"GET", b"HEAD") else b"/"
    location = b"/login?next=" + quote(here, safe="/").encode("ascii")
    return RedirectResource(location, 303)


class _JSONError(ErrorResource):
    def render(self, request: Request) -> bytes:
        for name, value in self.headers.items():
            request.setHeader(name, value)
        return sendJSON(request, {"error": self.detail}, self.code)


@implementer(IResource)
class SessionGate:
    """
    Wraps a resource tree so that only logged-in browsers reach it, and
    only with the CSRF token on unsafe methods.

    Traversal is asynchronous (the session is in the store), so the gate
    answers C{getChildWithDefault} with a L{DeferredResource} that waits
    for the checks and then traverses the wrapped tree with the rest of
    the path, as C{twisted.web.guard} does.
    """

    isLeaf = False
    _log = Logger()

    def __init__(
        self,
        wrapped: IResource,
        sessions: SessionManager,
        *,
        json: bool = False,
        onMissing: Callable[[Request], IResource] | None = None,
    ) -> None:
        self._wrapped = wrapped
        self._sessions = sessions
        self._json = json
        self._onMissing = onMissing

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("add children to the wrapped resource")

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        assert request.postpath is not None and request.prepath is not None
        request.postpath.insert(0, request.prepath.pop())
        return self._gated(request)

    def render(self, request: Request) -> Any:
        return self._gated(request).render(request)

    def _gated(self, request: Request) -> IResource:
        return DeferredResource(Deferred.fromCoroutine(self._check(request)))

    def _missing(self, request: Request) -> IResource:
        if self._onMissing is not None:
            return self._onMissing(request)
        if self._json:
            return _JSONError(
                401,
                "login required",
                {b"www-authenticate": b'Cookie realm="appnet"'},
            )
        return loginRedirect(request)

    async def _check(self, request: Request) -> IResource:
        session = await self._sessions.current(request)
        if session is None:
            return self._missing(request)
        if not csrf.isSafe(request.method):
            try:
                csrf.verify(request, session.csrfToken)
            except csrf.CSRFError as e:
                self._log.warn(
                    "Refused {method} {uri} for {account}: {reason}",
                    method=request.method,
                    uri=request.uri,
                    account=session.account,
                    reason=e.reason,
                )
                if self._json:
                    return _JSONError(403, e.reason)
                return ErrorResource(403, e.reason)
        request.setHeader(b"cache-control", b"no-store")
        return self._wrapped
