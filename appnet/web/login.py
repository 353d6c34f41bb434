"""
Logging in and out of the web server with the shared accounts.

L{LoginService} checks a user name and password through the stack's
L{GuardedPortal} (the same checker and throttling as SMTP AUTH, POP3, IMAP
and FTP) and starts a cookie session; applications with their own login
endpoint (a JSON API) call it directly. L{LoginResource} is the HTML form
at C{/login} (C{?next=/mail/} says where to go after), L{LogoutResource}
the form at C{/logout}. Both forms are protected against cross-site
forgery (L{appnet.web.csrf}); logging out requires a POST.
"""

from __future__ import annotations

import html
from typing import Any

from attrs import frozen
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import Interface, implementer

from appnet.auth import Authenticator, LoginThrottled
from appnet.errors import AppnetError
from appnet.listen import hostOf
from appnet.status import Status
from appnet.web import csrf
from appnet.web.pages import page, renderAsync, sendBody
from appnet.web.sessions import SessionManager, WebSession

__all__ = [
    "IWebUser",
    "LoginFailed",
    "LoginResource",
    "LoginService",
    "LogoutResource",
    "WebRealm",
    "safeNext",
]


class IWebUser(Interface):
    """
    The avatar of a web login: the account's canonical address (a
    C{str}).
    """


@implementer(IRealm)
class WebRealm:
    """
    Logged-in web users are just their address; the session carries the
    rest.
    """

    def requestAvatar(
        self, avatarId: Any, mind: object, *interfaces: Any
    ) -> tuple[Any, str, Any]:
        if IWebUser not in interfaces:
            raise NotImplementedError("the web realm only offers IWebUser")
        return IWebUser, str(avatarId), lambda: None


@frozen(eq=False)
class LoginFailed(AppnetError):
    """
    A web login was refused.

    @ivar throttled: refused without checking, after too many failures.
    """

    throttled: bool = False

    def __str__(self) -> str:
        if self.throttled:
            return "too many failed logins; try again later"
        return "wrong user name or password"


@frozen
class LoginService:
    """
    Checks passwords and starts sessions.
    """

    auth: Authenticator
    sessions: SessionManager
    #: Counts C{http} C{logins} and C{login_failures}, if given.
    status: Status | None = None

    async def login(self, request: Request, username: str, password: str) -> WebSession:
        """
        Log C{request}'s browser in.

        @raise LoginFailed: for a wrong name or password, or when the
            client address or the account is throttled (after the
            configured delay, as for every protocol).
        """
        portal = self.auth.portalFor(WebRealm(), hostOf(request.getClientAddress()))
        try:
            _, account, _ = await portal.login(
                UsernamePassword(username.encode("utf-8"), password.encode("utf-8")),
                None,
                IWebUser,
            )
        except LoginThrottled:
            self._count("login_failures")
            raise LoginFailed(throttled=True) from None
        except UnauthorizedLogin:
            self._count("login_failures")
            raise LoginFailed() from None
        self._count("logins")
        return await self.sessions.start(request, str(account))

    def _count(self, name: str) -> None:
        if self.status is not None:
            self.status.increment("http", name)


def safeNext(value: bytes | None, default: bytes = b"/") -> bytes:
    """
    Where to send the browser after logging in: a path on this server
    only (never C{//host} or C{/\\host}, which browsers read as another
    site).
    """
    if not value:
        return default
    if not value.startswith(b"/") or value[1:2] in (b"/", b"\\"):
        return default
    if any(b < 0x21 or b == 0x7F for b in value) or not value.isascii():
        return default
    return value


def formValue(request: Request, name: bytes) -> bytes | None:
    """The first value of a query or form field."""
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name)
    return values[0] if values else None


def _arg(request: Request, name: bytes) -> str:
    return (formValue(request, name) or b"").decode("utf-8", "replace")


def _loginForm(
    token: str, nextPath: bytes, message: str = "", username: str = ""
) -> str:
    error = (
        f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    )
    return (
        f"{error}"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="csrf_token" value="{html.escape(token)}">'
        f'<input type="hidden" name="next" value="{html.escape(nextPath.decode())}">'
        '<p><label for="username">User name</label> '
        '<input id="username" name="username" autocomplete="username" required'
        f' autofocus value="{html.escape(username)}"></p>'
        '<p><label for="password">Password</label> '
        '<input id="password" name="password" type="password" required'
        ' autocomplete="current-password"></p>'
        '<p><button type="submit">Log in</button></p></form>'
    )


class LoginResource(Resource):
    """
    C{/login}: the form (GET) and its submission (POST).
    """

    isLeaf = True

    def __init__(self, service: LoginService) -> None:
        super().__init__()
        self.service = service

    def _page(
        self, request: Request, code: int, message: str = "", username: str = ""
    ) -> bytes:
        token = csrf.issueLoginToken(request)
        nextPath = safeNext(formValue(request, b"next"))
        request.setHeader(b"cache-control", b"no-store")
        return sendBody(
            request,
            page("Log in to appnet", _loginForm(token, nextPath, message, username)),
            b"text/html; charset=utf-8",
            code=code,
        )

    def render_GET(self, request: Request) -> bytes:
        return self._page(request, 200)

    def render_POST(self, request: Request) -> int:
        return renderAsync(request, self._post(request))

    async def _post(self, request: Request) -> bytes:
        username = _arg(request, b"username").strip()
        try:
            csrf.verifyLoginToken(request)
        except csrf.CSRFError as e:
            return self._page(request, 403, str(e), username)
        try:
            await self.service.login(request, username, _arg(request, b"password"))
        except LoginFailed as e:
            if e.throttled:
                request.setHeader(b"retry-after", b"60")
                return self._page(request, 429, str(e), username)
            # 401, with the challenge RFC 9110 11.6.1 asks of it: the
            # "Cookie" scheme of the HTTP cookie-auth draft, naming the form.
            request.setHeader(
                b"www-authenticate", b'Cookie realm="appnet" form-action="/login"'
            )
            return self._page(request, 401, str(e).capitalize() + ".", username)
        target = safeNext(formValue(request, b"next"))
        request.setResponseCode(303)
        request.setHeader(b"location", target)
        request.setHeader(b"cache-control", b"no-store")
        return b""


class LogoutResource(Resource):
    """
    C{/logout}: a confirmation form (GET) and the logout itself (POST).
    """

    isLeaf = True

    def __init__(self, sessions: SessionManager) -> None:
        super().__init__()
        self.sessions = sessions

    def render_GET(self, request: Request) -> int:
        return renderAsync(request, self._get(request))

    async def _get(self, request: Request) -> bytes:
        session = await self.sessions.current(request)
        request.setHeader(b"cache-control", b"no-store")
        if session is None:
            request.setResponseCode(303)
            request.setHeader(b"location", b"/login")
            return b""
        form = (
            f"<p>Logged in as {html.escape(session.account)}.</p>"
            '<form method="post" action="/logout">'
            f'<input type="hidden" name="csrf_token"'
            f' value="{html.escape(session.csrfToken)}">'
            '<p><button type="submit">Log out</button></p></form>'
        )
        return sendBody(request, page("Log out", form), b"text/html; charset=utf-8")

    def render_POST(self, request: Request) -> int:
        return renderAsync(request, self._post(request))

    async def _post(self, request: Request) -> bytes:
        session = await self.sessions.current(request)
        request.setHeader(b"cache-control", b"no-store")
        if session is not None:
            try:
                csrf.verify(request, session.csrfToken)
            except csrf.CSRFError as e:
                return sendBody(
                    request,
                    page("Log out", f'<p class="error">{html.escape(str(e))}</p>'),
                    b"text/html; charset=utf-8",
                    code=403,
                )
            await self.sessions.end(request)
        request.setResponseCode(303)
        target = safeNext(
            formValue(request, b"next"),
            b"/login",
        )
        request.setHeader(b"location", target)
        return b""
