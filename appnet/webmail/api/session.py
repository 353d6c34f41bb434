"""
The API's log-in and session endpoints (C{/api/v1/login},
C{/api/v1/session}).
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request

from appnet.web import csrf
from appnet.web.login import LoginFailed
from appnet.web.sessions import WebSession
from appnet.webmail.api.common import Endpoint, _json, _session
from appnet.webmail.errors import APIError
from appnet.webmail.forms import readJSON

__all__ = ["LoginEndpoint", "SessionEndpoint"]


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
