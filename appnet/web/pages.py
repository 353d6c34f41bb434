"""
Small HTML pages and leaf resources the web server answers with: error
pages, redirects, a page frame, and in-memory bodies (compressed when the
client accepts it).

Twisted's own error pages (C{resource.ErrorPage}, C{NoResource}) render
Twisted-branded HTML and leave the body uncompressed and uncached; these
carry the headers a browser needs (a restrictive Content-Security-Policy on
every page generated here) and escape everything they print.
"""

from __future__ import annotations

import html
import json
import zlib
from collections.abc import Coroutine
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from appnet.web.validators import acceptsEncoding

__all__ = [
    "FAVICON",
    "ErrorResource",
    "FaviconResource",
    "RedirectResource",
    "errorBody",
    "gzipBytes",
    "page",
    "renderAsync",
    "sendBody",
    "sendJSON",
]

#: Pages generated here load nothing from anywhere; inline styles only.
PAGE_CSP = (
    b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

#: The site's icon when the web root has none: an envelope on a blue
#: square, as SVG (every current browser draws SVG icons).
FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    b'<rect width="32" height="32" rx="6" fill="#2457a6"/>'
    b'<rect x="6" y="9" width="20" height="14" rx="2" fill="#fff"/>'
    b'<path d="M6.5 10l9.5 7.5 9.5-7.5" fill="none" stroke="#2457a6"'
    b' stroke-width="2"/></svg>'
)

#: Bodies smaller than this are not worth compressing.
GZIP_MIN_SIZE = 256

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;"
    "padding:0 1em;color:#222}"
    "table{border-collapse:collapse;width:100%}"
    "td,th{text-align:left;padding:.2em .8em .2em 0}"
    "td.size{text-align:right;font-variant-numeric:tabular-nums}"
    "tr:nth-child(even){background:#f4f4f4}"
    "form p{margin:.6em 0}label{display:inline-block;min-width:7em}"
    ".error{color:#a00}"
)


def page(title: str, bodyHTML: str) -> bytes:
    """
    A complete HTML page around C{bodyHTML} (already escaped); C{title} is
    escaped here.
    """
    t = html.escape(title)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{t}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n<h1>{t}</h1>\n{bodyHTML}\n</body></html>\n"
    ).encode()


def reason(code: int) -> str:
    """The reason phrase of a status code."""
    return RESPONSES.get(code, b"Error").decode("ascii")


def errorBody(code: int, detail: str = "") -> bytes:
    """An error page: the status and an escaped one-line detail."""
    text = f"<p>{html.escape(detail)}</p>" if detail else ""
    return page(f"{code} {reason(code)}", text)


def gzipBytes(body: bytes) -> bytes:
    """Gzip a whole body, deterministically (no time stamp in the header)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


def sendBody(
    request: Request,
    body: bytes,
    contentType: bytes,
    *,
    code: int = 200,
    compress: bool = True,
) -> bytes:
    """
    Prepare C{request} to answer with an in-memory body and return what a
    C{render} method returns: the body, gzipped (with C{Vary}) when the
    client accepts it and it is large enough.
    """
    request.setResponseCode(code)
    request.setHeader(b"content-type", contentType)
    if contentType.startswith(b"text/html"):
        request.setHeader(b"content-security-policy", PAGE_CSP)
    if compress and _compressible(request):
        request.responseHeaders.addRawHeader(b"vary", b"Accept-Encoding")
        if len(body) >= GZIP_MIN_SIZE and acceptsEncoding(
            request.getHeader(b"accept-encoding"), b"gzip"
        ):
            request.setHeader(b"content-encoding", b"gzip")
            body = gzipBytes(body)
    return body


def _compressible(request: Request) -> bool:
    site = getattr(request, "site", None)
    return bool(getattr(site, "gzipEnabled", True))


def sendJSON(request: Request, value: Any, code: int = 200) -> bytes:
    """Answer with C{value} as JSON (no caching)."""
    request.setHeader(b"cache-control", b"no-store")
    body = json.dumps(value, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    return sendBody(request, body, b"application/json", code=code)


class ErrorResource(Resource):
    """
    A leaf answering every method with one error status and page.
    """

    isLeaf = True

    def __init__(
        self, code: int, detail: str = "", headers: dict[bytes, bytes] | None = None
    ) -> None:
        super().__init__()
        self.code = code
        self.detail = detail
        self.headers = headers or {}

    def render(self, request: Request) -> bytes:
        for name, value in self.headers.items():
            request.setHeader(name, value)
        request.setHeader(b"cache-control", b"no-store")
        return sendBody(
            request,
            errorBody(self.code, self.detail),
            b"text/html; charset=utf-8",
            code=self.code,
        )


class RedirectResource(Resource):
    """
    A leaf redirecting every request to one location.
    """

    isLeaf = True

    def __init__(self, location: bytes, code: int = 301) -> None:
        super().__init__()
        self.location = location
        self.code = code

    def render(self, request: Request) -> bytes:
        request.setHeader(b"location", self.location)
        link = html.escape(self.location.decode("utf-8", "replace"))
        return sendBody(
            request,
            page(reason(self.code), f'<p>See <a href="{link}">{link}</a>.</p>'),
            b"text/html; charset=utf-8",
            code=self.code,
        )


_log = Logger()


def renderAsync(request: Request, work: Coroutine[Any, Any, bytes]) -> int:
    """
    Render with a coroutine: return this from C{render_*}. The coroutine's
    result is the body (as from a synchronous C{render}); an exception is
    logged and answered with a plain 500, never a traceback. If the client
    goes away first, the coroutine is cancelled.
    """
    d = Deferred.fromCoroutine(work)
    # Our own record of a lost client (Request._disconnected is private).
    gone: list[bool] = []

    def done(body: bytes) -> None:
        if gone:
            return
        if request.method == b"HEAD":
            if body:
                request.setHeader(b"content-length", b"%d" % (len(body),))
            request.write(b"")
        else:
            request.setHeader(b"content-length", b"%d" % (len(body),))
            request.write(body)
        request.finish()

    def failed(reason: Failure) -> None:
        if reason.check(CancelledError):
            return
        _log.failure("Rendering {uri} failed", reason, uri=request.uri)
        if gone or request.startedWriting:
            return
        request.setResponseCode(500)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        body = errorBody(500, "Something went wrong; it has been logged.")
        request.setHeader(b"content-length", b"%d" % (len(body),))
        request.write(body)
        request.finish()

    def lost(_: Failure) -> None:
        gone.append(True)
        d.cancel()

    request.notifyFinish().addErrback(lost)
    d.addCallbacks(done, failed)
    return NOT_DONE_YET


class FaviconResource(Resource):
    """
    C{/favicon.ico} when the web root has none, so browsers and monitors
    asking for it get an icon instead of a 404 in every log.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"cache-control", b"public, max-age=86400")
        return sendBody(request, FAVICON, b"image/svg+xml")

    render_HEAD = render_GET
