"""
The origin server for the proxy comparisons (``proxy_compare.py`` and the
cache benchmark): each response is described by its query string, and the
server counts what it was asked, so a script can tell whether a cache
answered or forwarded.

Query parameters of any path:

- ``id``: the counter the request is recorded under;
- ``s``: status (default 200); ``b``: body (default ``body``);
- ``h``: a ``Name:Value`` response header (repeatable);
- ``exp``: ``Expires`` this many seconds from now;
- ``lm``: ``Last-Modified`` this many seconds ago (and If-Modified-Since
  is honoured with 304);
- ``etag``: an ``ETag`` (If-None-Match is honoured with 304);
- ``h304``: a ``Name:Value`` header sent only on 304s;
- ``slow``: seconds to wait before answering.

Control paths: ``/_hits?id=X`` (JSON: requests, conditional requests,
the last request's headers), ``/_fail?id=X&on=1`` (answer 503 from now
on). Run: ``python bench/http/proxy_origin.py PORT``; it prints ``port N``.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from typing import Any

from twisted.internet import reactor
from twisted.web.http import datetimeToString, stringToDatetime
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

hits: dict[str, int] = defaultdict(int)
conditional: dict[str, int] = defaultdict(int)
last: dict[str, dict[str, str]] = {}
failing: set[str] = set()


def _arg(request: Any, name: bytes, default: bytes | None = None) -> bytes | None:
    values = request.args.get(name)
    return values[0] if values else default


class Origin(Resource):
    isLeaf = True

    def render(self, request: Any) -> Any:
        if request.path == b"/_hits":
            key = (_arg(request, b"id") or b"").decode()
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"cache-control", b"no-store")
            return json.dumps(
                {
                    "hits": hits[key],
                    "conditional": conditional[key],
                    "last": last.get(key, {}),
                }
            ).encode()
        if request.path == b"/_fail":
            key = (_arg(request, b"id") or b"").decode()
            if _arg(request, b"on") == b"1":
                failing.add(key)
            else:
                failing.discard(key)
            request.setHeader(b"cache-control", b"no-store")
            return b"ok"
        key = (_arg(request, b"id") or b"").decode()
        hits[key] += 1
        last[key] = {
            n.decode("latin-1"): b", ".join(v).decode("latin-1")
            for n, v in request.requestHeaders.getAllRawHeaders()
        }
        slow = float(_arg(request, b"slow", b"0") or 0)
        if slow:
            reactor.callLater(slow, self.answer, request, key)
            return NOT_DONE_YET
        self.answer(request, key)
        return NOT_DONE_YET

    def answer(self, request: Any, key: str) -> None:
        now = time.time()
        if key in failing:
            request.setResponseCode(503)
            request.setHeader(b"content-length", b"4")
            request.write(b"down")
            request.finish()
            return
        status = int(_arg(request, b"s", b"200") or 200)
        body = _arg(request, b"b", b"body") or b""
        headers: list[tuple[bytes, bytes]] = []
        for h in request.args.get(b"h", []):
            name, _, value = h.partition(b":")
            headers.append((name, value))
        exp = _arg(request, b"exp")
        if exp is not None:
            headers.append((b"Expires", datetimeToString(int(now + float(exp)))))
        lm = _arg(request, b"lm")
        lastModified = int(now - float(lm)) if lm is not None else None
        if lastModified is not None:
            headers.append((b"Last-Modified", datetimeToString(lastModified)))
        etag = _arg(request, b"etag")
        if etag is not None:
            headers.append((b"ETag", b'"' + etag + b'"'))
        notModified = False
        inm = request.getHeader(b"if-none-match")
        ims = request.getHeader(b"if-modified-since")
        if inm is not None or ims is not None:
            conditional[key] += 1
        if etag is not None and inm is not None:
            notModified = b'"' + etag + b'"' in inm or inm.strip() == b"*"
        elif lastModified is not None and ims is not None:
            try:
                notModified = lastModified <= stringToDatetime(ims)
            except ValueError:
                notModified = False
        if request.getHeader(b"range") and status == 200 and not notModified:
            status = 206
            headers.append((b"Content-Range", b"bytes 0-0/%d" % len(body)))
            body = body[:1]
        request.setResponseCode(304 if notModified else status)
        for name, value in headers:
            request.responseHeaders.addRawHeader(name, value)
        if notModified:
            for h in request.args.get(b"h304", []):
                name, _, value = h.partition(b":")
                request.responseHeaders.setRawHeaders(name, [value])
            request.finish()
            return
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()


def main() -> None:
    port = reactor.listenTCP(int(sys.argv[1]), Site(Origin()), interface="127.0.0.1")
    print(f"port {port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
