"""
Tests for cookie sessions, CSRF protection, the login and logout forms and
the session gate, over the real site in memory.
"""

from __future__ import annotations

import json
import re
from http.cookies import SimpleCookie

from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from appnet.web import csrf
from appnet.web.login import safeNext
from appnet.web.sessions import TOUCH_INTERVAL, sessionOf
from tests.web.helpers import Harness, Response, harness

ALICE = "alice@example.org"
PASSWORD = "correct-horse"


class Whoami(Resource):
    """Shows the session and method a request arrived with."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        session = sessionOf(request)
        assert session is not None
        return f"{session.account} {request.method.decode()}".encode()


def cookies(response: Response) -> dict[str, str]:
    """Every Set-Cookie of a response, name to the whole header."""
    found = {}
    for header in response.headers.get("set-cookie", []):
        found[header.split("=", 1)[0]] = header
    return found


def cookieValue(header: str) -> str:
    parsed: SimpleCookie = SimpleCookie()
    parsed.load(header.split(";")[0])
    return next(iter(parsed.values())).value


class SessionTestCase(TestCase):
    async def setUp(self) -> None:
        self.web: Harness = harness(self, {"session_lifetime": "1h"})
        await self.web.addUser(ALICE, PASSWORD)
        root = self.web.web.root
        root.putChild(b"app", self.web.web.gate(Whoami()))
        root.putChild(b"api", self.web.web.gate(Whoami(), json=True))

    def loginForm(self, secure: bool = False) -> tuple[str, str]:
        """GET /login: the login cookie header and the form's token."""
        r = self.web.request("GET", "/login", secure=secure)
        self.assertEqual(r.status, 200)
        name = "__Host-appnet_login" if secure else "appnet_login"
        cookie = cookies(r)[name]
        m = re.search(rb'name="csrf_token" value="([^"]+)"', r.body)
        assert m is not None
        return f"{name}={cookieValue(cookie)}", m.group(1).decode()

    def postLogin(
        self,
        password: str = PASSWORD,
        nextPath: str = "/app",
        secure: bool = False,
        token: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> Response:
        cookie, formToken = self.loginForm(secure)
        body = (
            f"username={ALICE}&password={password}&next={nextPath}"
            f"&csrf_token={formToken if token is None else token}"
        ).encode()
        headers = {
            "Cookie": cookie,
            "Content-Type": "application/x-www-form-urlencoded",
            **(extra or {}),
        }
        connection = self.web.connect(secure=secure)
        connection.send(_raw("POST", "/login", headers, body))
        self.web.clock.advance(5)
        return connection.responses()[0]

    def login(self, secure: bool = False) -> str:
        """Log in; return the session cookie for a Cookie header."""
        r = self.postLogin(secure=secure)
        self.assertEqual(r.status, 303)
        name = "__Host-appnet_session" if secure else "appnet_session"
        return f"{name}={cookieValue(cookies(r)[name])}"


def _raw(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    from tests.web.helpers import raw

    return raw(method, path, headers, body)


class LoginTests(SessionTestCase):
    def test_form(self) -> None:
        """The login page has the form and sets a strict login-token cookie."""
        r = self.web.request("GET", "/login?next=/app")
        self.assertIn(b'<form method="post" action="/login">', r.body)
        self.assertIn(b'name="next" value="/app"', r.body)
        cookie = cookies(r)["appnet_login"]
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=strict", cookie)
        self.assertEqual(r.header("cache-control"), "no-store")

    def test_success(self) -> None:
        """
        A good password starts a session: 303 to next and a session
        cookie that is HttpOnly, SameSite=Lax, Path=/, not Secure on HTTP.
        """
        r = self.postLogin()
        self.assertEqual(r.status, 303)
        self.assertEqual(r.header("location"), "/app")
        cookie = cookies(r)["appnet_session"]
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=lax", cookie)
        self.assertIn("Path=/", cookie)
        self.assertNotIn("Secure", cookie)

    def test_secureCookie(self) -> None:
        """Over TLS the cookie is Secure and __Host- prefixed."""
        r = self.postLogin(secure=True)
        self.assertEqual(r.status, 303)
        cookie = cookies(r)["__Host-appnet_session"]
        self.assertIn("Secure", cookie)
        self.assertNotIn("Domain", cookie)

    def test_wrongPassword(self) -> None:
        """
        A wrong password gets 401, with a challenge naming the form (RFC
        9110 asks one of every 401), the form again, and no session.
        """
        r = self.postLogin(password="wrong-password")
        self.assertEqual(r.status, 401)
        self.assertEqual(
            r.headers["www-authenticate"],
            ['Cookie realm="appnet" form-action="/login"'],
        )
        self.assertIn(b"Wrong user name or password.", r.body)
        self.assertIn(b"<title>Log in to appnet</title>", r.body)
        self.assertNotIn("appnet_session", cookies(r))

    def test_throttled(self) -> None:
        """Too many failures from one address get 429 with Retry-After."""
        for _ in range(5):
            self.postLogin(password="wrong-password")
        r = self.postLogin()
        self.assertEqual(r.status, 429)
        self.assertEqual(r.header("retry-after"), "60")

    def test_missingToken(self) -> None:
        """A login without the form's token is refused (login CSRF)."""
        r = self.postLogin(token="forged")
        self.assertEqual(r.status, 403)
        self.assertNotIn("appnet_session", cookies(r))

    def test_crossOrigin(self) -> None:
        """A login posted from another site's page is refused."""
        r = self.postLogin(extra={"Origin": "http://evil.example"})
        self.assertEqual(r.status, 403)

    def test_safeNext(self) -> None:
        """Only local paths are followed after login."""
        self.assertEqual(safeNext(b"/mail/?a=1"), b"/mail/?a=1")
        for bad in (b"//evil.example/", b"/\\evil.example", b"http://x/", b"", b"/a b"):
            self.assertEqual(safeNext(bad), b"/", bad)


class GateTests(SessionTestCase):
    def test_noSession(self) -> None:
        """Without a session the gate redirects to the login page."""
        r = self.web.request("GET", "/app/inbox?page=2")
        self.assertEqual(r.status, 303)
        self.assertEqual(r.header("location"), "/login?next=/app/inbox%3Fpage%3D2")

    def test_noSessionJSON(self) -> None:
        """A JSON gate answers 401 in JSON."""
        r = self.web.request("GET", "/api/x")
        self.assertEqual(r.status, 401)
        self.assertEqual(json.loads(r.body), {"error": "login required"})

    def test_session(self) -> None:
        """With the session cookie the wrapped resource sees the session."""
        cookie = self.login()
        r = self.web.request("GET", "/app/x", {"Cookie": cookie})
        self.assertEqual((r.status, r.body), (200, ALICE.encode() + b" GET"))
        self.assertEqual(r.header("cache-control"), "no-store")

    def test_csrf(self) -> None:
        """Unsafe methods need the session's token, in a header or a form."""
        cookie = self.login()
        session = self.web.request("GET", "/logout", {"Cookie": cookie})
        m = re.search(rb'name="csrf_token" value="([^"]+)"', session.body)
        assert m is not None
        token = m.group(1).decode()
        no = self.web.request("POST", "/app/x", {"Cookie": cookie}, b"a=1")
        self.assertEqual(no.status, 403)
        self.assertIn(b"CSRF token missing", no.body)
        wrong = self.web.request(
            "POST", "/api/x", {"Cookie": cookie, "X-CSRF-Token": "nope"}, b"{}"
        )
        self.assertEqual(
            (wrong.status, json.loads(wrong.body)["error"]), (403, "CSRF token wrong")
        )
        header = self.web.request(
            "DELETE", "/api/x", {"Cookie": cookie, "X-CSRF-Token": token}
        )
        self.assertEqual(header.body, ALICE.encode() + b" DELETE")
        form = self.web.request(
            "POST",
            "/app/x",
            {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
            f"csrf_token={token}".encode(),
        )
        self.assertEqual(form.body, ALICE.encode() + b" POST")
        query = self.web.request(
            "POST",
            f"/app/x?csrf_token={token}",
            {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
            b"a=1",
        )
        self.assertEqual(query.status, 403, "a token in the URL is not accepted")

    def test_crossSiteRefused(self) -> None:
        """A token is not enough when the browser says the request is cross-site."""
        cookie = self.login()
        token = self.csrfToken(cookie)
        for extra in (
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Referer": "http://evil.example/page"},
        ):
            r = self.web.request(
                "POST", "/app/x", {"Cookie": cookie, "X-CSRF-Token": token, **extra}
            )
            self.assertEqual(r.status, 403, extra)
        same = self.web.request(
            "POST",
            "/app/x",
            {
                "Cookie": cookie,
                "X-CSRF-Token": token,
                "Origin": "http://127.0.0.1:8080",
                "Sec-Fetch-Site": "same-origin",
            },
        )
        self.assertEqual(same.status, 200)

    def csrfToken(self, cookie: str) -> str:
        page = self.web.request("GET", "/logout", {"Cookie": cookie}).body
        m = re.search(rb'name="csrf_token" value="([^"]+)"', page)
        assert m is not None
        return m.group(1).decode()

    def test_garbageCookie(self) -> None:
        """An unknown or oversized cookie is no session."""
        for value in ("nope", "x" * 1000):
            r = self.web.request("GET", "/app/", {"Cookie": f"appnet_session={value}"})
            self.assertEqual(r.status, 303)

    def test_plainCookieNotOverTLS(self) -> None:
        """A session made over plain HTTP is not valid over HTTPS."""
        cookie = self.login()
        r = self.web.request("GET", "/app/", {"Cookie": cookie}, secure=True)
        self.assertEqual(r.status, 303)


class LifecycleTests(SessionTestCase):
    def test_expiry(self) -> None:
        """A session unused for its lifetime ends, and its row is deleted."""
        cookie = self.login()
        self.web.clock.advance(3601)
        r = self.web.request("GET", "/app/", {"Cookie": cookie})
        self.assertEqual(r.status, 303)
        self.assertEqual(self.web.store.sessions._sessions, {})

    def test_sliding(self) -> None:
        """Using a session moves its expiry forward."""
        cookie = self.login()
        for _ in range(3):
            self.web.clock.advance(2400)
            r = self.web.request("GET", "/app/", {"Cookie": cookie})
            self.assertEqual(r.status, 200)

    def test_touchThrottled(self) -> None:
        """The expiry is rewritten only after it has slid noticeably."""
        cookie = self.login()
        (record,) = self.web.store.sessions._sessions.values()
        first = record.expires
        self.web.clock.advance(10)
        self.web.request("GET", "/app/", {"Cookie": cookie})
        (record,) = self.web.store.sessions._sessions.values()
        self.assertEqual(record.expires, first)
        self.web.clock.advance(TOUCH_INTERVAL)
        self.web.request("GET", "/app/", {"Cookie": cookie})
        (record,) = self.web.store.sessions._sessions.values()
        self.assertEqual(record.expires, self.web.clock.seconds() + 3600)

    def test_logout(self) -> None:
        """Logging out deletes the session and clears the cookie."""
        cookie = self.login()
        token = GateTests.csrfToken(self, cookie)  # type: ignore[arg-type]
        r = self.web.request(
            "POST",
            "/logout",
            {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
            f"csrf_token={token}".encode(),
        )
        self.assertEqual(r.status, 303)
        self.assertEqual(r.header("location"), "/login")
        self.assertIn("Max-Age=0", cookies(r)["appnet_session"])
        self.assertEqual(
            self.web.request("GET", "/app/", {"Cookie": cookie}).status, 303
        )
        self.assertEqual(self.web.store.sessions._sessions, {})

    def test_logoutNeedsToken(self) -> None:
        """A forged logout (no token) is refused."""
        cookie = self.login()
        r = self.web.request("POST", "/logout", {"Cookie": cookie})
        self.assertEqual(r.status, 403)
        self.assertEqual(
            self.web.request("GET", "/app/", {"Cookie": cookie}).status, 200
        )

    def test_newLoginReplacesOld(self) -> None:
        """Logging in again ends the browser's previous session (no fixation)."""
        old = self.login()
        cookie, token = self.loginForm()
        connection = self.web.connect()
        connection.send(
            _raw(
                "POST",
                "/login",
                {
                    "Cookie": f"{cookie}; {old}",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                f"username={ALICE}&password={PASSWORD}&csrf_token={token}".encode(),
            )
        )
        self.assertEqual(connection.responses()[0].status, 303)
        self.assertEqual(self.web.request("GET", "/app/", {"Cookie": old}).status, 303)
        self.assertEqual(len(self.web.store.sessions._sessions), 1)

    async def test_deletedAccount(self) -> None:
        """A session of a deleted account is refused."""
        cookie = self.login()
        await self.web.store.users.deleteUser(ALICE)
        self.assertEqual(
            self.web.request("GET", "/app/", {"Cookie": cookie}).status, 303
        )

    async def test_endAllAndPurge(self) -> None:
        """Every session of an account can be ended; expired ones purged."""
        self.login()
        self.login()
        self.assertEqual(await self.web.web.sessions.endAll(ALICE), 2)
        self.login()
        self.web.clock.advance(3601)
        self.assertEqual(await self.web.web.sessions.purge(), 1)

    async def test_storeKeepsNoToken(self) -> None:
        """The store holds a hash of the cookie value, never the value."""
        cookie = self.login()
        value = cookie.split("=", 1)[1]
        (record,) = self.web.store.sessions._sessions.values()
        self.assertNotEqual(record.key, value)
        self.assertNotIn(value, repr(record))


class CSRFUnitTests(TestCase):
    def request(self, headers: dict[bytes, bytes], secure: bool = False) -> Request:
        from twisted.web.test.requesthelper import DummyChannel

        channel = DummyChannel()
        if secure:
            channel.transport = DummyChannel.SSL()
        r = Request(channel)
        for name, value in headers.items():
            r.requestHeaders.setRawHeaders(name, [value])
        r.args = {}
        return r

    def test_safe(self) -> None:
        """GET, HEAD, OPTIONS and TRACE are safe; the rest are not."""
        self.assertTrue(all(csrf.isSafe(m) for m in (b"GET", b"head", b"OPTIONS")))
        self.assertFalse(any(csrf.isSafe(m) for m in (b"POST", b"PUT", b"DELETE")))

    def test_ownOriginDefaultPorts(self) -> None:
        """Default ports are dropped when comparing origins."""
        r = self.request(
            {b"host": b"Example.org:443", b"origin": b"https://example.org"}, True
        )
        self.assertEqual(csrf.ownOrigin(r), "https://example.org")
        csrf.verifyOrigin(r)

    def test_schemeMatters(self) -> None:
        """An http origin does not match an https server."""
        r = self.request(
            {b"host": b"example.org", b"origin": b"http://example.org"}, True
        )
        self.assertRaises(csrf.CSRFError, csrf.verifyOrigin, r)

    def test_noOriginHeaders(self) -> None:
        """Without Origin or Referer (curl), only the token is checked."""
        r = self.request({b"host": b"h", b"x-csrf-token": b"tok"})
        csrf.verify(r, "tok")
        self.assertRaises(csrf.CSRFError, csrf.verify, r, "other")
