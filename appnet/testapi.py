"""
The testing API at C{/_appnet/}, for test suites in any language: scripted
faults (L{appnet.faults}) and the mail catcher's messages
(L{appnet.mail.catcher}), over HTTP.
"""

from __future__ import annotations

import html
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from appnet.auth import hashPassword
from appnet.errors import AppnetError, NoSuchMessage, UserExists
from appnet.faults import FaultError, Faults
from appnet.listen import hostOf
from appnet.mail.catcher import CATCHER, Catcher, CaughtMessage

__all__ = ["TestAPI", "mountTestAPI"]

_SEARCH = ("to", "from", "subject", "text", "q")
_MAX_WAIT = 300.0


class _Answer(Exception):
    def __init__(self, code: int, body: Any) -> None:
        super().__init__(code)
        self.code = code
        self.body = body


def _query(request: Request) -> dict[str, str]:
    args: dict[bytes, list[bytes]] = request.args or {}
    return {
        key.decode(): values[-1].decode("utf-8", "replace")
        for key, values in args.items()
        if values
    }


def _json(request: Request) -> Any:
    kind = (request.getHeader(b"content-type") or b"").split(b";")[0].strip()
    if kind != b"application/json":
        # A cross-site form cannot send this type without a preflight.
        raise _Answer(415, {"error": "send Content-Type: application/json"})
    try:
        assert request.content is not None
        return json.loads(request.content.read() or b"{}")
    except ValueError as e:
        raise _Answer(400, {"error": f"bad JSON: {e}"}) from None


class TestAPI(Resource):
    """
    The C{/_appnet/} tree (see the module docstring).
    """

    isLeaf = True
    _log = Logger()

    def __init__(
        self,
        catcher: Catcher,
        faults: Faults,
        allow: list[Any],
        reactor: Any,
        web: Any = None,
    ) -> None:
        super().__init__()
        self.catcher = catcher
        self.faults = faults
        self.allow = allow
        self.reactor = reactor
        self.web = web

    def render(self, request: Request) -> int:
        client = hostOf(request.getClientAddress())
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            address = None
        if address is None or not any(address in net for net in self.allow):
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain")
            return b"Forbidden\n"  # type: ignore[return-value]
        d = Deferred.fromCoroutine(self._handle(request))
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    def _failed(self, failure: Failure, request: Request) -> None:
        self._log.failure("testing API request failed", failure)
        self._send(request, 500, {"error": "internal error"})

    def _send(self, request: Request, code: int, body: Any) -> None:
        if request.finished or request.channel is None:
            return
        request.setResponseCode(code)
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            data = body.encode("utf-8")
        else:
            request.setHeader(b"content-type", b"application/json")
            data = json.dumps(body).encode("utf-8") + b"\n"
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-length", b"%d" % len(data))
        request.write(data)
        request.finish()

    async def _handle(self, request: Request) -> None:
        path = [p.decode("utf-8", "replace") for p in request.postpath or [] if p]
        method = (request.method or b"GET").decode("ascii", "replace")
        try:
            code, body = await self._route(method, path, request)
        except _Answer as answer:
            code, body = answer.code, answer.body
        except FaultError as e:
            code, body = 400, {"error": str(e)}
        except NoSuchMessage:
            code, body = 404, {"error": "no such message"}
        except AppnetError as e:
            code, body = 502, {"error": str(e)}
        self._send(request, code, body)

    async def _route(
        self, method: str, path: list[str], request: Request
    ) -> tuple[int, Any]:
        handlers: Mapping[tuple[str, str], Callable[..., Awaitable[tuple[int, Any]]]]
        handlers = {
            ("GET", ""): self._page,
            ("GET", "messages"): self._list,
            ("DELETE", "messages"): self._deleteAll,
            ("GET", "wait"): self._wait,
            ("GET", "faults"): self._faults,
            ("POST", "faults"): self._addFault,
            ("DELETE", "faults"): self._clearFaults,
            ("POST", "webmail"): self._webmail,
        }
        head = path[0] if path else ""
        if len(path) <= 1:
            handler = handlers.get((method, head))
            if handler is None:
                raise _Answer(
                    405
                    if head in ("", "messages", "wait", "faults", "webmail")
                    else 404,
                    {"error": f"{method} /_appnet/{head} is not served"},
                )
            return await handler(request)
        if head == "faults" and len(path) == 2 and method == "DELETE":
            if not path[1].isdigit() or not self.faults.remove(int(path[1])):
                raise _Answer(404, {"error": "no such fault"})
            return 200, {"removed": int(path[1])}
        if head != "messages" or not path[1].isdigit() or len(path) > 3:
            raise _Answer(404, {"error": "not found"})
        id = int(path[1])
        action = (method, path[2] if len(path) == 3 else "")
        if action == ("GET", ""):
            caught = await self.catcher.get(id)
            return 200, _detail(caught)
        if action == ("GET", "view"):
            return 200, _viewPage(await self.catcher.get(id))
        if action == ("GET", "raw"):
            caught = await self.catcher.get(id)
            request.setHeader(b"content-type", b"message/rfc822")
            return 200, caught.data
        if action == ("DELETE", ""):
            if not await self.catcher.delete(id):
                raise NoSuchMessage("the caught mail", id)
            return 200, {"deleted": 1}
        if action == ("POST", "release"):
            return await self._release(id, _json(request))
        raise _Answer(405, {"error": f"{method} is not served here"})

    async def _page(self, request: Request) -> tuple[int, Any]:
        rows = []
        for caught in reversed(await self.catcher.messages()):
            rows.append(
                "<tr><td>{id}</td><td>{sender}</td><td>{to}</td>"
                '<td><a href="messages/{id}/view">{subject}</a></td>'
                "<td>{size}</td>"
                '<td><a href="messages/{id}/raw">raw</a></td></tr>'.format(
                    id=caught.id,
                    sender=html.escape(caught.sender),
                    to=html.escape(", ".join(caught.recipients)),
                    subject=html.escape(caught.subject or "(no subject)"),
                    size=caught.size,
                )
            )
        body = (
            "<!doctype html><meta charset=utf-8><title>Caught mail</title>"
            "<h1>Caught mail</h1><p>{count} messages.</p>"
            '<form method=post action="webmail"><button>Open in webmail</button>'
            "</form>"
            "<table><tr><th>#<th>From<th>To<th>Subject<th>Bytes<th></tr>{rows}</table>"
        ).format(count=len(rows), rows="".join(rows))
        return 200, body

    async def _webmail(self, request: Request) -> tuple[int, Any]:
        """
        Log this browser into webmail as the catcher's mailbox (an account
        made on first use, with a random password nobody knows).
        """
        if self.web is None:
            raise _Answer(404, {"error": "no webmail here"})
        users = self.catcher.store.users
        if await users.getUser(CATCHER) is None:
            password = secrets.token_urlsafe(24)
            pool = self.reactor.getThreadPool()
            hashed = await deferToThreadPool(self.reactor, pool, hashPassword, password)
            try:
                await users.addUser(CATCHER, hashed, False, None)
            except UserExists:
                pass  # Made meanwhile by another request.
        await self.web.sessions.start(request, CATCHER)
        request.setHeader(b"location", b"/mail/")
        return 303, {"location": "/mail/"}

    async def _list(self, request: Request) -> tuple[int, Any]:
        query = {k: v for k, v in _query(request).items() if k in _SEARCH}
        found = await self.catcher.messages(query)
        return 200, {"messages": [caught.summary() for caught in found]}

    async def _deleteAll(self, request: Request) -> tuple[int, Any]:
        return 200, {"deleted": await self.catcher.delete()}

    async def _wait(self, request: Request) -> tuple[int, Any]:
        args = _query(request)
        try:
            timeout = min(float(args.get("timeout", "10")), _MAX_WAIT)
        except ValueError:
            raise _Answer(400, {"error": "timeout must be a number"}) from None
        query = {k: v for k, v in args.items() if k in _SEARCH}
        caught = await self.catcher.wait(query, timeout)
        if caught is None:
            raise _Answer(408, {"error": f"no matching message within {timeout:g}s"})
        return 200, _detail(caught)

    async def _faults(self, request: Request) -> tuple[int, Any]:
        return 200, {
            "pending": [fault.asJSON() for fault in self.faults.pending()],
            "fired": list(self.faults.fired),
        }

    async def _addFault(self, request: Request) -> tuple[int, Any]:
        raw = _json(request)
        if not isinstance(raw, dict):
            raise _Answer(400, {"error": "a fault is a JSON object"})
        return 201, self.faults.fromJSON(raw).asJSON()

    async def _clearFaults(self, request: Request) -> tuple[int, Any]:
        count = len(self.faults.pending())
        self.faults.clear()
        return 200, {"removed": count}

    async def _release(self, id: int, raw: Any) -> tuple[int, Any]:
        if not isinstance(raw, dict) or "host" not in raw or "port" not in raw:
            raise _Answer(400, {"error": "give host and port"})
        to = raw.get("to")
        if to is not None and not (
            isinstance(to, list) and all(isinstance(a, str) for a in to)
        ):
            raise _Answer(400, {"error": "to is a list of addresses"})
        result = await self.catcher.release(
            id, str(raw["host"]), int(raw["port"]), to, str(raw.get("tls", "auto"))
        )
        return 200, {"released": id, "accepted": list(getattr(result, "accepted", []))}


def _viewPage(caught: CaughtMessage) -> str:
    """One caught message as a page: its headers and text."""
    headers = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in caught.message.items()
    )
    return (
        "<!doctype html><meta charset=utf-8><title>{subject}</title>"
        '<p><a href="../../">All caught mail</a> · <a href="raw">raw</a></p>'
        "<h1>{subject}</h1><p>From {sender} to {to}</p>"
        "<table>{headers}</table><pre>{text}</pre>"
    ).format(
        subject=html.escape(caught.subject or "(no subject)"),
        sender=html.escape(caught.sender or "<>"),
        to=html.escape(", ".join(caught.recipients)),
        headers=headers,
        text=html.escape(caught.text()),
    )


def _detail(caught: CaughtMessage) -> dict[str, Any]:
    message = caught.message
    return {
        **caught.summary(),
        "headers": [[k, str(v)] for k, v in message.items()],
        "text": caught.text(),
    }


def mountTestAPI(web: Any) -> dict[bytes, IResource]:
    """
    The web mount (L{appnet.web.server.MOUNTS}): C{/_appnet/} when the
    config asks for it, else nothing.
    """
    ctx = web.stack
    if not (ctx.config.http.test_api or ctx.config.mail.catch):
        return {}
    allow = [ipaddress.ip_network(n) for n in ctx.config.http.status_allow]
    catcher = Catcher(ctx.store, ctx.reactor)
    return {b"_appnet": TestAPI(catcher, ctx.faults, allow, ctx.reactor, web)}
