"""
Cross-site request forgery protection.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs, urlsplit

from attrs import frozen
from twisted.web.server import Request

from appnet.errors import AppnetError

__all__ = [
    "FIELD",
    "HEADER",
    "CSRFError",
    "isSafe",
    "issueLoginToken",
    "newToken",
    "ownOrigin",
    "submittedToken",
    "verify",
    "verifyLoginToken",
    "verifyOrigin",
]

#: The form field carrying the token.
FIELD = b"csrf_token"
#: The header carrying the token.
HEADER = b"x-csrf-token"

LOGIN_COOKIE = b"appnet_login"
SECURE_LOGIN_COOKIE = b"__Host-appnet_login"

#: How long a login form stays usable.
LOGIN_TOKEN_AGE = 3600

_SAFE = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})


@frozen(eq=False)
class CSRFError(AppnetError):
    """
    A state-changing request failed the CSRF checks.

    @ivar reason: what was wrong, for the 403 page and the log.
    """

    reason: str

    def __str__(self) -> str:
        return self.reason


def isSafe(method: bytes) -> bool:
    """Is C{method} one that must not change state (so needs no token)?"""
    return method.upper() in _SAFE


def newToken() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def submittedToken(request: Request) -> bytes | None:
    """
    The token a request carries: the header, else the form field.

    A token in the query string is never accepted: URLs end up in logs,
    history and Referer headers. Twisted merges query and form arguments
    into C{request.args}, so a request whose query names the field is
    treated as carrying no token at all.
    """
    header = request.getHeader(HEADER)
    if header:
        assert isinstance(header, bytes)
        return header.strip()
    # As text: urlsplit and parse_qs of bytes raise on a byte above 0x7F
    # or a percent-escape that is not UTF-8 (C{?next=%ff}).
    query = urlsplit((request.uri or b"").decode("latin-1")).query
    if FIELD.decode("ascii") in parse_qs(query, keep_blank_values=True):
        return None
    values = (getattr(request, "args", None) or {}).get(FIELD)
    if values:
        value = values[0]
        return value if isinstance(value, bytes) else str(value).encode("utf-8")
    return None


def _origin(scheme: str, netloc: str) -> str:
    host = netloc.lower()
    if scheme == "http" and host.endswith(":80"):
        host = host[:-3]
    elif scheme == "https" and host.endswith(":443"):
        host = host[:-4]
    return f"{scheme}://{host}"


def ownOrigin(request: Request) -> str | None:
    """
    This server's origin as the browser sees it, from the request's
    C{Host} header and whether it arrived over TLS.
    """
    host = request.getHeader(b"host")
    if not host:
        return None
    scheme = "https" if request.isSecure() else "http"
    return _origin(scheme, host.decode("latin-1").strip())


def verifyOrigin(request: Request) -> None:
    """
    Check that a request was not sent by another site's page.

    @raise CSRFError: if C{Sec-Fetch-Site}, C{Origin} or C{Referer} says
        it was.
    """
    site = request.getHeader(b"sec-fetch-site")
    if site is not None and site.strip().lower() not in (b"same-origin", b"none"):
        raise CSRFError("cross-site request refused")
    own = ownOrigin(request)
    origin = request.getHeader(b"origin")
    if origin is not None:
        text = origin.decode("latin-1").strip()
        parts = urlsplit(text)
        if text == "null" or own is None or _origin(parts.scheme, parts.netloc) != own:
            raise CSRFError("request from another origin refused")
        return
    referer = request.getHeader(b"referer")
    if referer is not None and own is not None:
        parts = urlsplit(referer.decode("latin-1").strip())
        if parts.scheme and _origin(parts.scheme, parts.netloc) != own:
            raise CSRFError("request from another origin refused")


def verify(request: Request, expected: str) -> None:
    """
    Check a state-changing request against its session's token and its
    origin.

    @param expected: the session's token (L{WebSession.csrfToken}).
    @raise CSRFError: naming what failed.
    """
    verifyOrigin(request)
    token = submittedToken(request)
    if not token:
        raise CSRFError("CSRF token missing")
    if not hmac.compare_digest(token, expected.encode("ascii")):
        raise CSRFError("CSRF token wrong")


def _loginCookie(request: Request) -> bytes:
    return SECURE_LOGIN_COOKIE if request.isSecure() else LOGIN_COOKIE


def issueLoginToken(request: Request) -> str:
    """
    Give the browser a login-form token: set it as a cookie and return it
    for the form's hidden field. An existing one is reused, so two open
    login tabs both work.
    """
    existing = request.getCookie(_loginCookie(request))
    if existing and 20 <= len(existing) <= 64 and existing.isascii():
        token = existing.decode("ascii")
    else:
        token = newToken()
    request.addCookie(
        _loginCookie(request),
        token,
        path=b"/",
        max_age=str(LOGIN_TOKEN_AGE).encode("ascii"),
        secure=request.isSecure(),
        httpOnly=True,
        sameSite=b"strict",
    )
    return token


def verifyLoginToken(request: Request) -> None:
    """
    Check a login form submission: same origin, and the form's token
    equal to the login cookie.

    @raise CSRFError: if not.
    """
    verifyOrigin(request)
    cookie = request.getCookie(_loginCookie(request))
    token = submittedToken(request)
    if not cookie or not token:
        raise CSRFError("login form expired; reload the page")
    if not hmac.compare_digest(cookie, token):
        raise CSRFError("login form token wrong; reload the page")
