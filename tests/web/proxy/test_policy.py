"""
The RFC 9111 rules of L{appnet.web.proxy.policy}, one test per rule, with
times passed explicitly (no clock, no sleeps).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from appnet.web.proxy.policy import (
    Fields,
    StoredResponse,
    Verdict,
    cacheKey,
    cacheStatus,
    canServeStaleOnError,
    correctedInitialAge,
    currentAge,
    decide,
    freshness,
    invalidations,
    matchesNotModified,
    mergeNotModified,
    parseCacheControl,
    selectVariant,
    storable,
    storedFields,
    validators,
    varyKey,
)
from appnet.web.validators import httpDate

T0 = 1_800_000_000.0


def f(*pairs: tuple[str, str]) -> Fields:
    """Fields from text pairs."""
    return tuple((n.lower().encode(), v.encode()) for n, v in pairs)


def stored(
    *pairs: tuple[str, str],
    status: int = 200,
    at: float = T0,
    request: Fields = (),
) -> StoredResponse:
    """A response received at C{at} with a zero round trip."""
    fields = f(("Date", httpDate(at).decode()), *pairs)
    return StoredResponse(
        key=b"http://example.org/x",
        vary=varyKey(fields, request) or (),
        status=status,
        fields=fields,
        requestTime=at,
        responseTime=at,
        initialAge=correctedInitialAge(fields, at, at),
        size=0,
    )


class CacheControlTests(SynchronousTestCase):
    """Parsing C{Cache-Control} (RFC 9111 5.2)."""

    def test_directives(self) -> None:
        """Names are case-insensitive, arguments may be quoted, lists split."""
        cc = parseCacheControl([b'Max-Age=60, no-cache="Set-Cookie, X-A"', b"public"])
        self.assertEqual(cc.seconds(b"max-age"), 60)
        self.assertEqual(cc.fields(b"no-cache"), {b"set-cookie", b"x-a"})
        self.assertTrue(cc.has(b"public"))

    def test_invalidSeconds(self) -> None:
        """A bad delta-seconds is -1 (stale); a huge one is capped at 2**31."""
        self.assertEqual(parseCacheControl([b"max-age=abc"]).seconds(b"max-age"), -1)
        cc = parseCacheControl([b"max-age=99999999999999"])
        self.assertEqual(cc.seconds(b"max-age"), 2**31)

    def test_firstDuplicateWins(self) -> None:
        """Of duplicated directives the first is used."""
        cc = parseCacheControl([b"max-age=5, max-age=500"])
        self.assertEqual(cc.seconds(b"max-age"), 5)


class StorableTests(SynchronousTestCase):
    """What a shared cache may store (RFC 9111 3, 3.5, 5.2)."""

    def test_plainOK(self) -> None:
        """A 200 to GET with max-age is storable."""
        self.assertIsNone(storable(b"GET", 200, (), f(("Cache-Control", "max-age=60"))))

    def test_methods(self) -> None:
        """Only GET responses are stored."""
        cc = f(("Cache-Control", "max-age=60"))
        self.assertEqual(storable(b"POST", 200, (), cc), "method")
        self.assertEqual(storable(b"HEAD", 200, (), cc), "method")

    def test_noStore(self) -> None:
        """no-store in the response or the request forbids storing."""
        self.assertEqual(
            storable(b"GET", 200, (), f(("Cache-Control", "no-store, max-age=6"))),
            "no-store",
        )
        self.assertEqual(
            storable(b"GET", 200, f(("Cache-Control", "no-store")), ()),
            "request-no-store",
        )

    def test_private(self) -> None:
        """private forbids a shared cache; private="field" only drops the field."""
        self.assertEqual(
            storable(b"GET", 200, (), f(("Cache-Control", "private, max-age=6"))),
            "private",
        )
        fields = f(
            ("Cache-Control", 'private="Set-Cookie", max-age=6'),
            ("Set-Cookie", "a=b"),
            ("ETag", '"1"'),
        )
        self.assertIsNone(storable(b"GET", 200, (), fields))
        self.assertNotIn(b"set-cookie", dict(storedFields(fields)))

    def test_authorization(self) -> None:
        """
        A response to a request with Authorization is stored only with
        public, must-revalidate or s-maxage (3.5).
        """
        auth = f(("Authorization", "Basic eDp5"))
        self.assertEqual(
            storable(b"GET", 200, auth, f(("Cache-Control", "max-age=6"))),
            "authorization",
        )
        for directive in ("public", "must-revalidate", "s-maxage=6"):
            self.assertIsNone(
                storable(b"GET", 200, auth, f(("Cache-Control", directive)))
            )

    def test_status(self) -> None:
        """
        Heuristically cacheable statuses store without explicit freshness;
        other final statuses (302, 500) need it (RFC 9111 3); 206 is never
        stored (passed through).
        """
        self.assertIsNone(storable(b"GET", 404, (), ()))
        self.assertEqual(storable(b"GET", 302, (), ()), "not-cacheable")
        self.assertIsNone(storable(b"GET", 302, (), f(("Cache-Control", "max-age=6"))))
        self.assertIsNone(storable(b"GET", 500, (), f(("Cache-Control", "max-age=6"))))
        self.assertEqual(storable(b"GET", 500, (), ()), "not-cacheable")
        self.assertEqual(
            storable(b"GET", 206, (), f(("Cache-Control", "max-age=6"))), "partial"
        )

    def test_mustUnderstand(self) -> None:
        """must-understand overrides no-store for understood statuses (5.2.2.3)."""
        cc = f(("Cache-Control", "must-understand, no-store, max-age=6"))
        self.assertIsNone(storable(b"GET", 200, (), cc))
        self.assertEqual(storable(b"GET", 299, (), cc), "status")

    def test_varyStar(self) -> None:
        """Vary: * can never be matched, so it is not stored (4.1)."""
        self.assertEqual(
            storable(b"GET", 200, (), f(("Vary", "*"), ("Cache-Control", "max-age=6"))),
            "vary-star",
        )

    def test_hopByHop(self) -> None:
        """Connection and the fields it names are not stored (3.1)."""
        fields = f(
            ("Connection", "X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "5"), ("A", "b")
        )
        self.assertEqual(storedFields(fields), f(("A", "b")))


class KeyTests(SynchronousTestCase):
    """The cache key and Vary's secondary key (RFC 9111 2, 4.1)."""

    def test_primary(self) -> None:
        """Scheme and host are case-insensitive; the target is not."""
        self.assertEqual(
            cacheKey(b"HTTP", b"Example.ORG", b"/A?b"), b"http://example.org/A?b"
        )

    def test_vary(self) -> None:
        """Requests match a variant only on the fields Vary names."""
        response = f(("Vary", "Accept-Encoding, Accept-Language"))
        gz = f(("Accept-Encoding", "gzip,  br"), ("Accept-Language", "en"))
        a = stored(("Vary", "Accept-Encoding, Accept-Language"), request=gz)
        self.assertEqual(varyKey(response, gz), a.vary)
        self.assertIs(
            selectVariant(
                [a], f(("Accept-Encoding", "GZIP, br"), ("Accept-Language", "en"))
            ),
            a,
        )
        self.assertIsNone(selectVariant([a], f(("Accept-Language", "en"))))
        self.assertIsNone(selectVariant([a], f(("Accept-Encoding", "gzip, br"))))

    def test_absentDiffersFromEmpty(self) -> None:
        """A field absent from the request is not the same as an empty one."""
        response = f(("Vary", "X-A"))
        self.assertNotEqual(varyKey(response, ()), varyKey(response, f(("X-A", ""))))

    def test_mostRecent(self) -> None:
        """Of several matching variants the most recent is selected."""
        old = stored(("Cache-Control", "max-age=6"), at=T0)
        new = stored(("Cache-Control", "max-age=6"), at=T0 + 5)
        self.assertIs(selectVariant([old, new], ()), new)


class FreshnessTests(SynchronousTestCase):
    """Freshness lifetime (RFC 9111 4.2.1, 4.2.2)."""

    def test_order(self) -> None:
        """s-maxage beats max-age beats Expires."""
        expires = ("Expires", httpDate(T0 + 1000).decode())
        date = ("Date", httpDate(T0).decode())
        self.assertEqual(
            freshness(
                200, f(date, expires, ("Cache-Control", "max-age=5, s-maxage=7"))
            ).lifetime,
            7,
        )
        self.assertEqual(
            freshness(200, f(date, expires, ("Cache-Control", "max-age=5"))).lifetime, 5
        )
        self.assertEqual(freshness(200, f(date, expires)).lifetime, 1000)

    def test_invalidExpires(self) -> None:
        """An invalid Expires (like "0") means already expired."""
        self.assertEqual(
            freshness(
                200, f(("Date", httpDate(T0).decode()), ("Expires", "0"))
            ).lifetime,
            0,
        )

    def test_heuristic(self) -> None:
        """10% of the time since Last-Modified, for heuristically cacheable statuses."""
        fields = f(
            ("Date", httpDate(T0).decode()),
            ("Last-Modified", httpDate(T0 - 1000).decode()),
        )
        result = freshness(200, fields)
        self.assertEqual(result.lifetime, 100)
        self.assertTrue(result.heuristic)
        self.assertEqual(freshness(302, fields).lifetime, 0)

    def test_heuristicCap(self) -> None:
        """The heuristic is capped at a day."""
        fields = f(
            ("Date", httpDate(T0).decode()),
            ("Last-Modified", httpDate(T0 - 10**8).decode()),
        )
        self.assertEqual(freshness(200, fields).lifetime, 86400)


class AgeTests(SynchronousTestCase):
    """Age (RFC 9111 4.2.3)."""

    def test_ageHeaderAndDelay(self) -> None:
        """
        corrected_initial_age = max(apparent_age, age_value + response_delay).
        """
        fields = f(("Date", httpDate(T0).decode()), ("Age", "30"))
        self.assertEqual(correctedInitialAge(fields, T0 + 1, T0 + 3), 32)

    def test_apparentAge(self) -> None:
        """A Date in the past counts when it exceeds the Age header."""
        fields = f(("Date", httpDate(T0 - 100).decode()), ("Age", "10"))
        self.assertEqual(correctedInitialAge(fields, T0, T0), 100)

    def test_clockAhead(self) -> None:
        """A Date in the future gives an apparent age of 0, not negative."""
        fields = f(("Date", httpDate(T0 + 100).decode()))
        self.assertEqual(correctedInitialAge(fields, T0, T0), 0)

    def test_residentTime(self) -> None:
        """The current age grows with the time resident in the cache."""
        s = stored(("Age", "5"))
        self.assertEqual(currentAge(s, T0 + 10), 15)


class DecideTests(SynchronousTestCase):
    """When a stored response may be used (RFC 9111 4.2, 5.2, RFC 5861)."""

    def test_freshStale(self) -> None:
        """Fresh until max-age, then revalidated."""
        s = stored(("Cache-Control", "max-age=60"))
        self.assertIs(decide(s, (), T0 + 59).verdict, Verdict.SERVE)
        d = decide(s, (), T0 + 61)
        self.assertIs(d.verdict, Verdict.REVALIDATE)
        self.assertTrue(d.stale)

    def test_requestNoCache(self) -> None:
        """Request no-cache (or Pragma: no-cache) forces validation (5.2.1.4, 5.4)."""
        s = stored(("Cache-Control", "max-age=60"))
        self.assertIs(
            decide(s, f(("Cache-Control", "no-cache")), T0).verdict, Verdict.REVALIDATE
        )
        self.assertIs(
            decide(s, f(("Pragma", "no-cache")), T0).verdict, Verdict.REVALIDATE
        )
        self.assertIs(
            decide(
                s, f(("Pragma", "no-cache"), ("Cache-Control", "max-age=60")), T0
            ).verdict,
            Verdict.SERVE,
        )

    def test_requestMaxAge(self) -> None:
        """Request max-age bounds the acceptable age (5.2.1.1)."""
        s = stored(("Cache-Control", "max-age=600"))
        self.assertIs(
            decide(s, f(("Cache-Control", "max-age=10")), T0 + 5).verdict, Verdict.SERVE
        )
        self.assertIs(
            decide(s, f(("Cache-Control", "max-age=10")), T0 + 11).verdict,
            Verdict.REVALIDATE,
        )
        self.assertIs(
            decide(s, f(("Cache-Control", "max-age=0")), T0 + 1).verdict,
            Verdict.REVALIDATE,
        )

    def test_minFresh(self) -> None:
        """min-fresh asks for that much freshness left (5.2.1.3)."""
        s = stored(("Cache-Control", "max-age=100"))
        self.assertIs(
            decide(s, f(("Cache-Control", "min-fresh=50")), T0 + 40).verdict,
            Verdict.SERVE,
        )
        self.assertIs(
            decide(s, f(("Cache-Control", "min-fresh=50")), T0 + 60).verdict,
            Verdict.REVALIDATE,
        )

    def test_maxStale(self) -> None:
        """max-stale accepts stale responses, by so much or by any amount (5.2.1.2)."""
        s = stored(("Cache-Control", "max-age=10"))
        self.assertIs(
            decide(s, f(("Cache-Control", "max-stale=5")), T0 + 14).verdict,
            Verdict.SERVE,
        )
        self.assertIs(
            decide(s, f(("Cache-Control", "max-stale=5")), T0 + 16).verdict,
            Verdict.REVALIDATE,
        )
        self.assertIs(
            decide(s, f(("Cache-Control", "max-stale")), T0 + 9999).verdict,
            Verdict.SERVE,
        )

    def test_revalidateDirectives(self) -> None:
        """
        must-revalidate, proxy-revalidate and s-maxage forbid serving stale
        even with max-stale (5.2.2.2, 5.2.2.8, 5.2.2.10).
        """
        for directive in (
            "max-age=10, must-revalidate",
            "max-age=10, proxy-revalidate",
            "s-maxage=10",
        ):
            s = stored(("Cache-Control", directive))
            self.assertIs(
                decide(s, f(("Cache-Control", "max-stale")), T0 + 20).verdict,
                Verdict.REVALIDATE,
                directive,
            )

    def test_responseNoCache(self) -> None:
        """
        no-cache without field names: always validate; with field names:
        serve, without those fields (5.2.2.4).
        """
        s = stored(("Cache-Control", "no-cache, max-age=60"))
        self.assertIs(decide(s, (), T0).verdict, Verdict.REVALIDATE)
        s = stored(("Cache-Control", 'no-cache="Set-Cookie", max-age=60'))
        d = decide(s, (), T0)
        self.assertIs(d.verdict, Verdict.SERVE)
        self.assertEqual(d.hide, {b"set-cookie"})

    def test_staleWhileRevalidate(self) -> None:
        """Within stale-while-revalidate: serve and revalidate behind (RFC 5861 3)."""
        s = stored(("Cache-Control", "max-age=10, stale-while-revalidate=30"))
        self.assertIs(decide(s, (), T0 + 20).verdict, Verdict.SERVE_STALE_REVALIDATE)
        self.assertIs(decide(s, (), T0 + 41).verdict, Verdict.REVALIDATE)

    def test_staleIfError(self) -> None:
        """stale-if-error (response or request) allows stale on errors (RFC 5861 4)."""
        s = stored(("Cache-Control", "max-age=10, stale-if-error=60"))
        self.assertTrue(canServeStaleOnError(s, (), T0 + 50))
        self.assertFalse(canServeStaleOnError(s, (), T0 + 71))
        plain = stored(("Cache-Control", "max-age=10"))
        self.assertFalse(canServeStaleOnError(plain, (), T0 + 50))
        self.assertTrue(
            canServeStaleOnError(
                plain, f(("Cache-Control", "stale-if-error=100")), T0 + 50
            )
        )
        strict = stored(
            ("Cache-Control", "max-age=10, must-revalidate, stale-if-error=60")
        )
        self.assertFalse(canServeStaleOnError(strict, (), T0 + 50))


class ValidationTests(SynchronousTestCase):
    """Validation and 304 merging (RFC 9111 4.3)."""

    def test_validators(self) -> None:
        """The stored ETag and Last-Modified become the conditions (4.3.1)."""
        lm = httpDate(T0 - 50).decode()
        s = stored(("ETag", '"v1"'), ("Last-Modified", lm))
        self.assertEqual(
            validators(s), f(("If-None-Match", '"v1"'), ("If-Modified-Since", lm))
        )

    def test_merge(self) -> None:
        """
        A 304 replaces stored fields of the same names, except
        Content-Length, and restarts the age (4.3.4, 3.2).
        """
        s = stored(
            ("ETag", '"v1"'),
            ("Cache-Control", "max-age=10"),
            ("Content-Length", "5"),
            ("X-Keep", "1"),
        )
        notModified = f(
            ("Date", httpDate(T0 + 100).decode()),
            ("ETag", '"v1"'),
            ("Cache-Control", "max-age=20"),
            ("Content-Length", "0"),
            ("Connection", "close"),
        )
        self.assertTrue(matchesNotModified(s, notModified))
        merged = mergeNotModified(s, notModified, T0 + 100, T0 + 100)
        fields = dict(merged.fields)
        self.assertEqual(fields[b"cache-control"], b"max-age=20")
        self.assertEqual(fields[b"content-length"], b"5")
        self.assertEqual(fields[b"x-keep"], b"1")
        self.assertNotIn(b"connection", fields)
        self.assertIs(decide(merged, (), T0 + 110).verdict, Verdict.SERVE)

    def test_mismatch(self) -> None:
        """A 304 with another strong ETag does not select the response."""
        s = stored(("ETag", '"v1"'))
        self.assertFalse(matchesNotModified(s, f(("ETag", '"v2"'))))


class InvalidationTests(SynchronousTestCase):
    """Invalidation by unsafe methods (RFC 9111 4.4)."""

    def test_unsafe(self) -> None:
        """
        A non-error response to POST invalidates the target and the
        same-origin Location and Content-Location.
        """
        keys = invalidations(
            b"POST",
            201,
            b"http",
            b"example.org",
            b"/items",
            f(
                ("Location", "/items/7"),
                ("Content-Location", "http://other.example/x"),
            ),
        )
        self.assertEqual(
            keys, [b"http://example.org/items", b"http://example.org/items/7"]
        )

    def test_safeOrError(self) -> None:
        """GET, and error responses to unsafe methods, invalidate nothing."""
        self.assertEqual(invalidations(b"GET", 200, b"http", b"h", b"/", ()), [])
        self.assertEqual(invalidations(b"DELETE", 500, b"http", b"h", b"/", ()), [])
        self.assertEqual(
            invalidations(b"FROB", 204, b"http", b"h", b"/", ()), [b"http://h/"]
        )


class CacheStatusTests(SynchronousTestCase):
    """The Cache-Status field (RFC 9211)."""

    def test_members(self) -> None:
        """Hits carry ttl; forwards carry fwd, fwd-status, stored, detail."""
        self.assertEqual(cacheStatus(hit=True, ttl=12.7), b"appnet; hit; ttl=12")
        self.assertEqual(
            cacheStatus(hit=False, fwd="uri-miss", fwdStatus=200, stored=True),
            b"appnet; fwd=uri-miss; fwd-status=200; stored",
        )
        self.assertEqual(
            cacheStatus(hit=False, fwd="miss", collapsed=True, detail="x"),
            b'appnet; fwd=miss; collapsed; detail="x"',
        )
