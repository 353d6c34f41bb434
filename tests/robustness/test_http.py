"""
The web server under hostile input: the real site, channel and resources
(static files, C{/status}, C{/login}, the webmail at C{/mail} and its JSON
API under C{/api/v1}) over string transports, from
L{tests.web.helpers.harness}.

Oracles, for every case: nothing raises and no failure is logged; what the
server sends parses as a sequence of HTTP/1.1 responses (status line,
header fields, a body framed by its length or chunks); no response is a
500 and none shows Python internals; every API answer is JSON; and
afterwards a good request is answered: on the same connection, or, when
the server closed it (after a 4xx for a malformed request, which RFC 9112
says to do, or after an HTTP/1.0 exchange), on a new one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from attrs import define
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from appnet.auth import hashPassword
from appnet.store.interfaces import DeliveryTarget
from tests.robustness.fuzz import NUMBERS, Case, FuzzTestCase, Garbage
from tests.web.helpers import Connection, harness, raw

ALICE = "alice@example.org"
ADMIN = "admin@example.org"
PASSWORD = "pw-alice-123"

_STATUS = re.compile(rb"^HTTP/1\.[01] ([1-5][0-9][0-9]) [\t\x20-\x7e]*$")
_FIELD = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*$")

MESSAGE = (
    b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: hi\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Disposition: attachment; filename=a.bin\r\n\r\nxyz\r\n--b--\r\n"
)

PATHS = (
    "/",
    "/index.html",
    "/a.txt",
    "/status",
    "/metrics",
    "/login",
    "/login?next=/mail/",
    "/logout",
    "/mail",
    "/mail/",
    "/mail/webmail.js",
    "/api/v1/session",
    "/api/v1/folders",
    "/api/v1/messages?folder=INBOX&offset=0&limit=10",
    "/api/v1/message?folder=INBOX&uid=1&images=1",
    "/api/v1/attachment?folder=INBOX&uid=1&part=3&inline=0",
    "/api/v1/raw?folder=INBOX&uid=1",
    "/api/v1/draft?folder=INBOX&uid=1&mode=forward",
    "/api/v1/queue",
    "/api/v1/users",
    "/api/v1/users/bob%40example.org",
    "/api/v1/users/bob%40example.org/password",
    "/api/v1/nothing",
)

BODIES: Mapping[str, Any] = {
    "/api/v1/login": {"username": ALICE, "password": PASSWORD},
    "/api/v1/send": {
        "to": ["bob@example.org"],
        "subject": "s",
        "text": "t",
        "reply": {"folder": "INBOX", "uid": 1},
        "attachments": [{"filename": "a", "contentType": "text/plain", "data": "eA=="}],
    },
    "/api/v1/move": {"folder": "INBOX", "to": "Archive", "uids": [1, 2]},
    "/api/v1/delete": {"folder": "INBOX", "uids": [2], "expunge": False},
    "/api/v1/flags": {"folder": "INBOX", "uids": [1], "add": ["\\Seen"], "remove": []},
    "/api/v1/users": {"address": "carol@example.org", "password": "pw-carol-123"},
    "/api/v1/users/bob%40example.org/password": {"password": "pw-new-12345"},
}

METHODS = ("GET", "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE")

#: Hostile JSON values, put in place of a body's values.
JSON_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    2**31,
    2**64,
    10**30,
    1.5,
    1e308,
    "",
    "\u00b2",
    "\u0663",
    "1",
    "x" * 5000,
    "\0\r\n",
    "\udcff",
    [],
    [None],
    [0, -1],
    [2**70],
    {},
    {"folder": "INBOX", "uid": "\u00b2"},
    {"folder": 7, "uid": 1},
    ["\\Deleted", "$Junk", "bad keyword"],
)


BAD_REQUEST_LINES = (
    b"GET\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET / FOO\r\n\r\n",
    b" / HTTP/1.1\r\n\r\n",
    b"GET  / HTTP/1.1\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00",  # a TLS ClientHello
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET / HTTP/1.1\n\n",
)
BAD_FIELDS = (
    b"NoColon",
    b": empty",
    b"Bad Name: x",
    b" folded: x",
    b"X:\x00",
    b"Host: a\r\nHost: b",
    b"Content-Type: x;X+K*",
)
BAD_LENGTHS = (
    b"-1",
    b"1e3",
    b"0x10",
    b"99999999999999999999",
    b"5, 6",
    b"",
    b"1" + b"0" * 4400,
    "\u00b2".encode(),
)
CODINGS = (b"chunked", b"gzip, chunked", b"chunked, gzip", b"xchunked")
BAD_CHUNKS = (
    b"zz\r\nab\r\n0\r\n\r\n",
    b"-1\r\n",
    b"ffffffffffffffffffff\r\n",
    b"3\r\nabcdef\r\n0\r\n\r\n",
    b"3;ext=\x00\r\nabc\r\n0\r\n\r\n",
    b"0\r\nTrailer: \x00\r\n\r\n",
    b"1\r\n",
)
ODD_LINE_ENDS = (
    b"GET / HTTP/1.1\rHost: x\r\r",
    b"GET / HTTP/1.1\nHost: x\n\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\r\n",
    b"\0" * 50,
)
HEADER_NAMES = (
    "Range",
    "If-Modified-Since",
    "If-None-Match",
    "Accept-Encoding",
    "Cookie",
    "Connection",
    "Expect",
    "Origin",
    "Referer",
    "Sec-Fetch-Site",
    "X-CSRF-Token",
    "Authorization",
    "Host",
    "Content-Type",
    "X-Forwarded-For",
    "User-Agent",
)
HEADER_VALUES = (
    b"bytes=0-1",
    b"bytes=5-2,-0,9999999999999999999-",
    b"gzip, br",
    b"appnet_session=x; appnet_session=y",
    b"close",
    b"keep-alive",
    b"100-continue",
    b"null",
    b"http://evil.example",
    b"Thu, 01 Jan 1970 00:00:00 GMT",
    b"*",
    b"application/json",
    b"x;X+K*",
)
PATH_SUFFIXES = (
    b"/..",
    b"/../../etc/passwd",
    b"%2e%2e%2f",
    b"%00",
    b"%ff%fe",
    b"//x",
    b"?next=//evil.example",
    b"?folder=%00&uid=1",
    b";x=y",
    b"#frag",
)


class SQLiteIntegers:
    """
    Stands in front of a part of the memory store and refuses integers
    outside 64 bits as SQLite does (C{OverflowError}), where the memory
    store would take them: what reaches the store from a request must fit
    the real one.
    """

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._real, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            pending = list(args) + list(kwargs.values())
            while pending:
                item = pending.pop()
                if isinstance(item, (list, tuple, set, frozenset)):
                    pending.extend(item)
                elif isinstance(item, int) and not -(2**63) <= item < 2**63:
                    raise OverflowError("Python int too large for SQLite INTEGER")
            return value(*args, **kwargs)

        return call


#: Integers out of every range an API argument has.
JSON_INTEGERS = (0, -1, 2**31, 2**32, 2**32 + 1, 2**63, 2**64, 10**30, 1.0, 1e20)


@define
class Response:
    code: int
    headers: dict[bytes, list[bytes]]
    body: bytes


class HTTPFuzzTestCase(FuzzTestCase):
    """A site with alice, an admin and a message; and the checks."""

    def setUp(self) -> None:
        super().setUp()
        self.web = harness(self, mail={"max_message_size": "1M"})
        self.web.write("a.txt", b"static text\n")
        self.web.write("index.html", b"<p>index</p>\n")
        users = self.web.store.users
        for address, admin in (
            (ALICE, False),
            ("bob@example.org", False),
            (ADMIN, True),
        ):
            self.successResultOf(
                users.addUser(address, hashPassword(PASSWORD, log2n=4), admin)
            )
        mail = self.web.store.mail
        for _ in range(2):
            staged = mail.stage()
            staged.write(MESSAGE)
            self.successResultOf(mail.deliver(staged, [DeliveryTarget(ALICE)]))
        store: Any = self.web.store
        store.mail = SQLiteIntegers(store.mail)
        store.users = SQLiteIntegers(store.users)
        throttle = self.web.web.stack.auth.throttle
        throttle.maxFailures = throttle.maxAccountFailures = 10**6
        self.sessions = {account: self.session(account) for account in (ALICE, ADMIN)}

    def session(self, account: str) -> dict[str, str]:
        token, session = self.successResultOf(self.web.web.sessions.create(account))
        return {
            "Cookie": f"appnet_session={token}",
            "X-CSRF-Token": session.csrfToken,
            "Origin": "http://127.0.0.1:8080",
        }

    def parse(self, data: bytes, heads: list[bool], case: Case) -> list[Response]:
        """
        Every response in C{data}, checked; C{heads} says which requests,
        in order, were HEAD (their responses have no body).
        """
        self.assertNoLeak(data, case)
        responses: list[Response] = []
        rest = data
        while rest:
            head, sep, rest = rest.partition(b"\r\n\r\n")
            if not sep:
                self.fail(f"response head not ended: {head[:200]!r}\n{case.describe()}")
            lines = head.split(b"\r\n")
            match = _STATUS.match(lines[0])
            if match is None:
                self.fail(f"bad status line {lines[0]!r}\n{case.describe()}")
            code = int(match.group(1))
            headers: dict[bytes, list[bytes]] = {}
            for line in lines[1:]:
                if not _FIELD.match(line):
                    self.fail(f"bad header field {line!r}\n{case.describe()}")
                name, _, value = line.partition(b":")
                headers.setdefault(name.lower(), []).append(value.strip())
            if code < 200:
                continue  # 100 Continue: the final response follows.
            head_ = heads[len(responses)] if len(responses) < len(heads) else False
            length = headers.get(b"content-length")
            if head_ and length and len(rest) == int(length[0]):
                # A request line the server could not read is not known to
                # be HEAD: its 400 carries the error page.
                head_ = False
            if head_ or code in (204, 304):
                body = b""
            elif headers.get(b"transfer-encoding") == [b"chunked"]:
                body, rest = self.chunks(rest, case)
            elif length is not None:
                if len(length) != 1 or not length[0].isdigit():
                    self.fail(f"bad Content-Length {length!r}\n{case.describe()}")
                size = int(length[0])
                if len(rest) < size:
                    self.fail(f"body shorter than its length\n{case.describe()}")
                body, rest = rest[:size], rest[size:]
            else:
                body, rest = rest, b""  # Delimited by the end of the connection.
            if code == 500:
                self.fail(
                    f"500 Internal Server Error: {body[:300]!r}\n{case.describe()}"
                )
            responses.append(Response(code, headers, body))
        return responses

    def chunks(self, data: bytes, case: Case) -> tuple[bytes, bytes]:
        body = b""
        while True:
            line, sep, data = data.partition(b"\r\n")
            if not sep:
                self.fail(f"chunked body not ended\n{case.describe()}")
            size = int(line.split(b";")[0], 16)
            if size == 0:
                _, sep, data = data.partition(b"\r\n")
                return body, data
            body, data = body + data[:size], data[size + 2 :]

    def take(
        self, connection: Connection, heads: list[bool], case: Case
    ) -> list[Response]:
        transport: StringTransport = connection.transport
        data = bytes(transport.value())
        transport.clear()
        return self.parse(data, heads, case)

    def request(
        self, connection: Connection, data: bytes, head: bool, case: Case
    ) -> list[Response]:
        case.record(data)
        connection.send(data)
        self.web.clock.advance(0)
        if not connection.transport.value():
            # A failed login is answered after the failure delay.
            self.web.clock.advance(self.web.web.stack.config.auth.failure_delay)
        return self.take(connection, [head], case)

    def goesOn(self, connection: Connection, case: Case) -> None:
        """A good request is answered here, or on a new connection."""
        if connection.closed:
            connection.protocol.connectionLost(None)
            connection = self.web.connect()
        good = raw("GET", "/status")
        [response] = self.request(connection, good, False, case)
        self.assertEqual(response.code, 200, case.describe())
        json.loads(response.body)

    def path(self, garbage: Garbage) -> bytes:
        path = garbage.pick(PATHS).encode()
        kind = garbage.random.randrange(6)
        if kind == 0:
            return garbage.mutate(path)
        if kind == 1:
            return (
                garbage.renumber(path)
                if b"=" in path
                else path + b"?x=" + garbage.number()
            )
        if kind == 2:
            return path + garbage.pick(PATH_SUFFIXES)
        if kind == 3:
            return garbage.renumber(path)
        return path

    def query(self, garbage: Garbage) -> str:
        """API query arguments with hostile values, percent-encoded."""
        names = ("folder", "uid", "offset", "limit", "part", "mode", "images")
        values = NUMBERS + (b"INBOX", b"%ff", b"%00", b"Trash", b"")
        pairs = [
            f"{garbage.pick(names)}={quote(garbage.pick(values), safe='%')}"
            for _ in range(garbage.count(0, 4))
        ]
        return "&".join(pairs)

    def jsonBody(self, garbage: Garbage, template: Any) -> bytes:
        """C{template} as JSON with some values replaced by hostile ones."""

        def spoil(value: Any) -> Any:
            if isinstance(value, int) and garbage.chance(0.3):
                return garbage.pick(JSON_INTEGERS)
            if garbage.chance(0.2):
                return garbage.pick(JSON_VALUES)
            if isinstance(value, dict):
                return {
                    k: spoil(v) for k, v in value.items() if not garbage.chance(0.1)
                }
            if isinstance(value, list):
                return [spoil(v) for v in value]
            return value

        kind = garbage.random.randrange(8)
        if kind == 0:
            return garbage.blob(80)
        if kind == 1:  # nested deeper than the JSON parser recurses
            depth = garbage.pick((100, 2000, 20000))
            return b'{"a":' + b"[" * depth + b"]" * depth + b"}"
        if kind == 2:
            return json.dumps(garbage.pick(JSON_VALUES)).encode()
        body = json.dumps(spoil(template), ensure_ascii=garbage.chance(0.5))
        return body.encode("utf-8", "surrogatepass")


class RequestTests(HTTPFuzzTestCase):
    """Well-framed requests with hostile request lines, headers and bodies."""

    def headers(self, garbage: Garbage) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(garbage.count(0, 4)):
            name = garbage.pick(HEADER_NAMES)
            value = garbage.pick(HEADER_VALUES)
            if garbage.chance(0.4):
                value = garbage.mutate(value)
            headers[name] = value.decode("latin-1")
        return headers

    def test_requests(self) -> None:
        """
        Pipelined requests with mutated methods, paths, query strings,
        header values and bodies (each correctly framed) get one
        well-formed, non-500 response each, then the good request its 200.
        """
        for garbage, case in self.cases("http-requests", 300):
            connection = self.web.connect()
            data = b""
            heads = []
            for _ in range(garbage.count(1, 4)):
                method = garbage.pick(METHODS)
                path = self.path(garbage)
                headers = self.headers(garbage)
                if garbage.chance(0.5):
                    headers.update(self.sessions[garbage.pick((ALICE, ADMIN))])
                body = b""
                if method in ("POST", "PUT", "PATCH") or garbage.chance(0.1):
                    template = BODIES.get(path.split(b"?")[0].decode("latin-1"), {})
                    body = self.jsonBody(garbage, template)
                    headers.setdefault("Content-Type", "application/json")
                version = "HTTP/1.1" if garbage.chance(0.9) else "HTTP/1.0"
                request = raw(method, "PATH", headers, body, version)
                data += request.replace(b" PATH ", b" " + path + b" ", 1)
                heads.append(method == "HEAD")
            self.deliver(connection.protocol, data, garbage, case)
            self.web.clock.advance(0)
            responses = self.take(connection, heads, case)
            if not connection.closed:
                self.assertEqual(len(responses), len(heads), case.describe())
            self.goesOn(connection, case)

    def test_api(self) -> None:
        """
        Every API endpoint, as alice, an admin or nobody, with hostile
        query arguments and JSON bodies: JSON answers, never a 500.
        """
        endpoints = sorted(
            set(BODIES) | {p.split("?")[0] for p in PATHS if "/api/" in p}
        )
        for garbage, case in self.cases("http-api", 500):
            connection = self.web.connect()
            path = garbage.pick(endpoints)
            method = "POST" if path in BODIES and garbage.chance(0.8) else "GET"
            if "/users/" in path and garbage.chance(0.3):
                method = "DELETE"
            query = self.query(garbage)
            headers = {"Content-Type": "application/json"}
            who = garbage.random.randrange(4)
            if who < 3:
                headers.update(self.sessions[ADMIN if who == 2 else ALICE])
            body = (
                self.jsonBody(garbage, BODIES.get(path, {})) if method != "GET" else b""
            )
            target = path + ("?" + query if query else "")
            request = raw(method, "PATH", headers, body)
            request = request.replace(
                b" PATH ", b" " + target.encode("latin-1") + b" ", 1
            )
            responses = self.request(connection, request, False, case)
            self.assertEqual(len(responses), 1, case.describe())
            response = responses[0]
            download = response.code == 200 and path in (
                "/api/v1/raw",
                "/api/v1/attachment",
            )
            if not download:
                self.assertEqual(
                    response.headers.get(b"content-type"),
                    [b"application/json"],
                    (response, case.describe()),
                )
                json.loads(response.body)
            self.goesOn(connection, case)

    def test_loginForm(self) -> None:
        """
        The login form with hostile fields (bad percent escapes, bytes that
        are not UTF-8, missing or repeated fields, stale tokens) is answered
        with the form again (403) or a redirect, never a 500.
        """
        for garbage, case in self.cases("http-login", 200):
            connection = self.web.connect()
            [form] = self.request(connection, raw("GET", "/login"), False, case)
            cookie = form.headers[b"set-cookie"][0].split(b";")[0].decode()
            token = re.search(rb'name="csrf_token" value="([^"]*)"', form.body)
            assert token is not None
            fields = [
                b"csrf_token=" + token.group(1),
                b"username=" + ALICE.encode().replace(b"@", b"%40"),
                b"password=" + PASSWORD.encode(),
                b"next=/mail/",
            ]
            garbage.random.shuffle(fields)
            fields = [garbage.mutate(f) if garbage.chance(0.4) else f for f in fields]
            fields = fields[: garbage.count(0, len(fields))] + [
                garbage.blob(10)
            ] * garbage.count(0, 1)
            body = b"&".join(fields)
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if garbage.chance(0.8):
                headers["Cookie"] = cookie
            [response] = self.request(
                connection, raw("POST", "/login", headers, body), False, case
            )
            self.assertIn(response.code, (303, 400, 401, 403, 429), case.describe())
            self.goesOn(connection, case)


class FramingTests(HTTPFuzzTestCase):
    """What breaks HTTP's framing: heads, lengths, chunks, cut connections."""

    def attack(self, garbage: Garbage) -> bytes:
        g = garbage
        kind = g.random.randrange(12)
        if kind == 0:
            return g.blob(400)
        if kind == 1:
            return bytes(g.pick(BAD_REQUEST_LINES))
        if kind == 2:
            line = g.pick(BAD_FIELDS + (b"X-Long: " + g.long(16384),))
            return b"GET / HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n"
        if kind == 3:  # lengths that lie, conflict or overflow
            extra = g.pick(
                (b"", b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n")
            )
            return (
                b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: "
                + g.pick(BAD_LENGTHS)
                + b"\r\n"
                + extra
                + b"\r\n"
                + g.blob(20)
            )
        if kind == 4:  # chunked bodies that are not
            return (
                b"POST /api/v1/send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                + g.pick(CODINGS)
                + b"\r\n\r\n"
                + g.pick(BAD_CHUNKS)
            )
        if kind == 5:  # a body past the limit, announced
            size = self.web.site.config.max_body_size + 1
            return (
                b"POST /api/v1/send HTTP/1.1\r\nHost: x\r\nContent-Length: "
                + str(size).encode()
                + b"\r\n\r\n"
                + g.blob(100)
            )
        if kind == 6:  # a head past the limit, or too many fields
            if g.chance(0.5):
                return b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"
            return b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n"
        if kind == 7:  # multipart that is not
            boundary = g.pick((b"b", b"", b'"', b"x" * 200))
            return (
                b"POST /api/v1/send HTTP/1.1\r\nHost: x\r\nContent-Type: "
                b"multipart/form-data; boundary="
                + boundary
                + b"\r\nContent-Length: 40\r\n\r\n"
                + g.blob(40).ljust(40, b"-")
            )
        if kind == 8:  # a request cut anywhere
            body = json.dumps(BODIES["/api/v1/login"]).encode()
            whole = raw(
                "POST", "/api/v1/login", {"Content-Type": "application/json"}, body
            )
            return whole[: g.random.randrange(len(whole))]
        if kind == 9:
            return g.mutate(raw("GET", "/status", {"Connection": "keep-alive"}))
        if kind == 10:
            return bytes(g.pick(ODD_LINE_ENDS))
        return b"\r\n" * g.count(1, 3) + raw("GET", "/a.txt")

    def test_attacks(self) -> None:
        """
        Malformed heads, lying lengths, bad chunks, oversized bodies and
        heads, bare line ends: each is answered well-formed (a 4xx closes
        the connection) or waited for; after a disconnect and any timeout,
        nothing is logged and a new connection is served.
        """
        for garbage, case in self.cases("http-framing", 400):
            connection = self.web.connect()
            self.deliver(connection.protocol, self.attack(garbage), garbage, case)
            self.web.clock.advance(0)
            self.take(connection, [], case)
            if garbage.chance(0.5):
                self.web.clock.advance(self.web.site.config.request_timeout + 1)
                self.take(connection, [], case)
            self.disconnect(connection.protocol, case)
            self.web.clock.advance(5)
            self.goesOn(self.web.connect(), case)


class FindingTests(SynchronousTestCase):
    """
    What an adversarial run found, kept found: request targets with bytes
    that are not ASCII (or escapes that are not UTF-8) log one line each
    and never a failure; more than one Host field line is a 400.
    """

    def setUp(self) -> None:
        self.web = harness(self)
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def test_nonASCIITarget(self) -> None:
        """
        HEAD, GET, POST and methods the resources do not offer, on
        targets with non-ASCII bytes or non-UTF-8 escapes, on every
        application: an answer that is not a 500, and every log event one
        line without a failure.
        """
        targets = (
            b"/\xe9",
            b"/a\x82",
            b"/\x85",
            b"/API/V1/SESSIO\x82",
            b"/caf\xc3\xa9",
            b"/%ff",
            b"/?q=\xff",
            b"/mail/\xe9",
            b"/api/v1/\xe9",
            b"/api/v1/messages?folder=%ff",
            b"/login?next=%ff",
            b"/login?next=\xe9",
            b"/login?next=\x8a",
            b"\x8alogin",
            b"/status\x83",
            b"/status?\x83",
            b"/metrics?\x83",
            b"/logout?\x83",
            b"/mail/\x83",
            b"/mail/?\x83",
            b"/api/v1/session?\x83",
            b"/status?\xff",
        )
        for method in (b"HEAD", b"GET", b"POST", b"PATCH", b"TRACE"):
            for target in targets:
                del self.events[:]
                c = self.web.connect()
                c.send(
                    method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )
                self.web.clock.advance(5)
                head = bytes(c.transport.value()).split(b"\r\n", 1)[0]
                self.assertRegex(head, rb"^HTTP/1\.1 (?!500)\d\d\d ", (method, target))
                for event in self.events:
                    self.assertNotIn("log_failure", event, (method, target))
                    text = formatEvent(event)
                    self.assertNotIn("\n", text, (method, target))
                    self.assertNotIn("MESSAGE LOST", text, (method, target))
                    self.assertNotIn("Unable to format", text, (method, target))
                    self.assertLess(len(text), 1000, (method, target))

    def test_duplicateHost(self) -> None:
        """Two Host field lines, alike or not, or a list in one, get 400."""
        for hosts in ([b"a", b"b"], [b"a", b"a"], [b"a, b"]):
            c = self.web.connect()
            fields = b"".join(b"Host: " + h + b"\r\n" for h in hosts)
            c.send(b"GET /status HTTP/1.1\r\n" + fields + b"\r\n")
            self.assertEqual(c.responses()[0].status, 400, hosts)
        c = self.web.connect()
        c.send(b"GET /status HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(c.responses()[0].status, 200)
