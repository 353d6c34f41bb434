"""
The rules of an RFC 9111 shared cache, as pure functions over header
values and times: what may be stored, under which key, for how long, when a
stored response may answer a request, how a 304 updates it, what an unsafe
method invalidates, and the C{Cache-Status} field (RFC 9211) that says what
happened. Nothing here does I/O or reads a clock: callers pass C{now}.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urljoin, urlsplit

from attrs import frozen

from appnet.web.validators import parseDate

__all__ = [
    "CacheControl",
    "Decision",
    "Fields",
    "Freshness",
    "HEURISTIC_STATUS",
    "StoredResponse",
    "Verdict",
    "cacheKey",
    "cacheStatus",
    "canServeStaleOnError",
    "correctedInitialAge",
    "currentAge",
    "decide",
    "freshness",
    "invalidations",
    "mergeNotModified",
    "parseCacheControl",
    "selectVariant",
    "storable",
    "storedFields",
    "validators",
    "varyKey",
]

#: Header fields as an ordered tuple of C{(lowercase name, value)} pairs.
Fields = tuple[tuple[bytes, bytes], ...]

#: Status codes heuristically cacheable (RFC 9110 15.1).
HEURISTIC_STATUS = frozenset(
    {200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501}
)

#: Status codes this cache understands, for C{must-understand} (RFC 9111
#: 5.2.2.3). Other final statuses are stored only with explicit freshness;
#: 206 is never stored: partial responses pass through.
UNDERSTOOD_STATUS = frozenset(
    {200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501}
)

#: The largest delta-seconds value (RFC 9111 1.2.2).
MAX_DELTA = 2**31

#: Heuristic freshness: this fraction of the time since Last-Modified
#: (RFC 9111 4.2.2 suggests 10%), capped.
HEURISTIC_FRACTION = 0.1
HEURISTIC_CAP = 86400.0

#: Fields never stored or forwarded from a stored response (RFC 9111 3.1,
#: RFC 9110 7.6.1 hop-by-hop fields).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)

_UNSAFE_OK = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})


def get(fields: Fields, name: bytes) -> list[bytes]:
    """Every value of field C{name} (lowercase), in order."""
    return [v for n, v in fields if n == name]


def joined(fields: Fields, name: bytes) -> bytes | None:
    """The values of C{name} joined by commas, or C{None} if absent."""
    values = get(fields, name)
    return b", ".join(values) if values else None


def without(fields: Fields, names: Iterable[bytes]) -> Fields:
    """C{fields} without the named ones."""
    drop = set(names)
    return tuple((n, v) for n, v in fields if n not in drop)


def _splitList(value: bytes) -> list[bytes]:
    """
    Split a comma-separated list, keeping commas inside quoted strings.
    """
    items: list[bytes] = []
    current = bytearray()
    quoted = False
    escaped = False
    for byte in value:
        char = bytes((byte,))
        if escaped:
            escaped = False
        elif quoted and char == b"\\":
            escaped = True
        elif char == b'"':
            quoted = not quoted
        elif char == b"," and not quoted:
            items.append(bytes(current).strip())
            current = bytearray()
            continue
        current += char
    items.append(bytes(current).strip())
    return [i for i in items if i]


def _fieldNames(value: bytes | None) -> frozenset[bytes]:
    if not value:
        return frozenset()
    return frozenset(n.strip().lower() for n in value.split(b",") if n.strip())


_DELTA = re.compile(rb"^\d+$")


@frozen
class CacheControl:
    """
    Parsed C{Cache-Control} directives (RFC 9111 5.2): names lowercased,
    quoted arguments unquoted, the first of duplicated directives kept.

    @ivar directives: C{{name: argument or None}}.
    """

    directives: dict[bytes, bytes | None]

    def has(self, name: bytes) -> bool:
        """Whether directive C{name} is present."""
        return name in self.directives

    def argument(self, name: bytes) -> bytes | None:
        """The argument of C{name}, or C{None}."""
        return self.directives.get(name)

    def seconds(self, name: bytes) -> int | None:
        """
        The delta-seconds argument of C{name}: C{None} if absent, C{-1} if
        present but not a valid number (RFC 9111 1.2.2 caps at 2**31).
        """
        if name not in self.directives:
            return None
        value = self.directives[name]
        if value is None or not _DELTA.match(value):
            return -1
        return min(int(value), MAX_DELTA)

    def fields(self, name: bytes) -> frozenset[bytes]:
        """The field names argument of C{no-cache} or C{private}."""
        return _fieldNames(self.directives.get(name))


def parseCacheControl(values: Sequence[bytes]) -> CacheControl:
    """Parse every C{Cache-Control} value of a message (RFC 9111 5.2)."""
    directives: dict[bytes, bytes | None] = {}
    for value in values:
        for item in _splitList(value):
            name, eq, argument = item.partition(b"=")
            key = name.strip().lower()
            if not key or key in directives:
                continue
            arg: bytes | None = argument.strip() if eq else None
            if arg is not None and arg[:1] == b'"' and arg[-1:] == b'"':
                arg = re.sub(rb"\\(.)", rb"\1", arg[1:-1])
            directives[key] = arg
    return CacheControl(directives)


@functools.lru_cache(maxsize=4096)
def responseControl(fields: Fields) -> CacheControl:
    """The response's C{Cache-Control} (memoized: stored fields repeat)."""
    return parseCacheControl(get(fields, b"cache-control"))


def requestControl(fields: Fields) -> CacheControl:
    """
    The request's C{Cache-Control}; C{Pragma: no-cache} counts as
    C{no-cache} when there is no C{Cache-Control} (RFC 9111 5.4).
    """
    control = parseCacheControl(get(fields, b"cache-control"))
    if not get(fields, b"cache-control"):
        pragma = b",".join(get(fields, b"pragma")).lower()
        if b"no-cache" in pragma:
            return CacheControl({b"no-cache": None})
    return control


def storable(
    method: bytes, status: int, requestFields: Fields, responseFields: Fields
) -> str | None:
    """
    May a shared cache store this response (RFC 9111 3, 3.5)? C{None} if
    it may, else the reason, for C{Cache-Status}'s C{detail}.
    """
    if method != b"GET":
        return "method"
    if status == 206:
        return "partial"
    reqCC = requestControl(requestFields)
    resCC = responseControl(responseFields)
    if status < 200 or status == 304:
        # Only final responses; a 304 is only used to update (4.3.4).
        return "status"
    if resCC.has(b"must-understand"):
        # 5.2.2.3: no-store is overridden only for understood statuses.
        if status not in UNDERSTOOD_STATUS:
            return "status"
    else:
        if reqCC.has(b"no-store"):
            return "request-no-store"
        if resCC.has(b"no-store"):
            return "no-store"
    if resCC.has(b"private") and resCC.argument(b"private") is None:
        return "private"
    if get(requestFields, b"authorization") and not (
        resCC.has(b"must-revalidate") or resCC.has(b"public") or resCC.has(b"s-maxage")
    ):
        return "authorization"
    if joined(responseFields, b"vary") is not None and b"*" in [
        v.strip() for v in _splitList(joined(responseFields, b"vary") or b"")
    ]:
        return "vary-star"
    explicit = (
        resCC.has(b"public")
        or resCC.has(b"max-age")
        or resCC.has(b"s-maxage")
        or get(responseFields, b"expires")
    )
    if not explicit and status not in HEURISTIC_STATUS:
        return "not-cacheable"
    return None


def storedFields(fields: Fields) -> Fields:
    """
    The header fields to store (RFC 9111 3.1): hop-by-hop fields, those
    C{Connection} names, and those a qualified C{private} names, removed.
    """
    drop = set(HOP_BY_HOP)
    for value in get(fields, b"connection"):
        drop |= _fieldNames(value)
    drop |= responseControl(fields).fields(b"private")
    return without(fields, drop)


def cacheKey(scheme: bytes, host: bytes, target: bytes) -> bytes:
    """
    The primary cache key (RFC 9111 2): the target URI of a GET, with the
    scheme and host lowercased.
    """
    return scheme.lower() + b"://" + host.lower() + target


_SPACES = re.compile(rb"\s*,\s*|\s+")


@functools.lru_cache(maxsize=4096)
def _varyNames(responseFields: Fields) -> tuple[bytes, ...] | None:
    """The field names C{Vary} lists, sorted; C{None} for C{*}."""
    names: list[bytes] = []
    for value in get(responseFields, b"vary"):
        for name in value.split(b","):
            name = name.strip().lower()
            if name == b"*":
                return None
            if name and name not in names:
                names.append(name)
    return tuple(sorted(names))


def varyKey(responseFields: Fields, requestFields: Fields) -> Fields | None:
    """
    The secondary key (RFC 9111 4.1): for each field C{Vary} names, the
    request's value, whitespace-normalized; C{None} for C{Vary: *}.
    """
    names = _varyNames(responseFields)
    if names is None:
        return None
    key = []
    for field in names:
        requested = joined(requestFields, field)
        normal = b"" if requested is None else _SPACES.sub(b" ", requested.strip())
        if field == b"accept-encoding":
            normal = normal.lower()
        key.append((field, normal if requested is not None else b"\x00absent"))
    return tuple(key)


def selectVariant(
    candidates: Sequence[StoredResponse], requestFields: Fields
) -> StoredResponse | None:
    """
    The most recent stored response whose secondary key matches the request
    (RFC 9111 4.1: "the most recent one is used").
    """
    best: StoredResponse | None = None
    for candidate in candidates:
        wanted = varyKey(candidate.fields, requestFields)
        if wanted is None or wanted != candidate.vary:
            continue
        if best is None or candidate.responseTime > best.responseTime:
            best = candidate
    return best


@frozen
class StoredResponse:
    """
    A response in the cache: its status, stored fields, the times of RFC
    9111 4.2.3 and its secondary key.

    @ivar key: the primary key.
    @ivar vary: the secondary key (L{varyKey}).
    @ivar requestTime: when the request that fetched it was sent.
    @ivar responseTime: when the response was received.
    @ivar initialAge: the corrected initial age (L{correctedInitialAge}).
    @ivar size: the body's length in bytes.
    """

    key: bytes
    vary: Fields
    status: int
    fields: Fields
    requestTime: float
    responseTime: float
    initialAge: float
    size: int


def correctedInitialAge(
    fields: Fields, requestTime: float, responseTime: float
) -> float:
    """
    RFC 9111 4.2.3: the age of a response when it arrived, from its C{Age}
    and C{Date} fields and the request's round trip.
    """
    ageValue = 0
    ages = get(fields, b"age")
    if ages:
        text = ages[0].split(b",")[0].strip()
        if _DELTA.match(text):
            ageValue = min(int(text), MAX_DELTA)
    dates = get(fields, b"date")
    dateValue = parseDate(dates[0]) if dates else None
    apparentAge = max(
        0.0, responseTime - (responseTime if dateValue is None else dateValue)
    )
    responseDelay = responseTime - requestTime
    correctedAgeValue = ageValue + responseDelay
    return max(apparentAge, correctedAgeValue)


def currentAge(stored: StoredResponse, now: float) -> float:
    """RFC 9111 4.2.3: the stored response's age now."""
    return stored.initialAge + (now - stored.responseTime)


@frozen
class Freshness:
    """
    A freshness lifetime (RFC 9111 4.2.1).

    @ivar lifetime: seconds, 0 when stale on arrival.
    @ivar heuristic: computed from C{Last-Modified} (4.2.2).
    """

    lifetime: float
    heuristic: bool = False


@functools.lru_cache(maxsize=4096)
def freshness(status: int, fields: Fields) -> Freshness:
    """
    The freshness lifetime of a response in a shared cache (RFC 9111
    4.2.1): C{s-maxage}, else C{max-age}, else C{Expires} minus C{Date},
    else a heuristic from C{Last-Modified} for heuristically cacheable
    statuses (4.2.2). Invalid values make the response stale.
    """
    control = responseControl(fields)
    for name in (b"s-maxage", b"max-age"):
        seconds = control.seconds(name)
        if seconds is not None:
            return Freshness(float(max(seconds, 0)))
    expires = get(fields, b"expires")
    if expires:
        expiry = parseDate(expires[0])
        if expiry is None or len(expires) > 1:
            return Freshness(0.0)
        dates = get(fields, b"date")
        date = parseDate(dates[0]) if dates else None
        if date is None:
            return Freshness(0.0)
        return Freshness(float(max(0, expiry - date)))
    if status in HEURISTIC_STATUS and not control.has(b"no-cache"):
        modified = get(fields, b"last-modified")
        dates = get(fields, b"date")
        if modified and dates:
            lm = parseDate(modified[0])
            date = parseDate(dates[0])
            if lm is not None and date is not None and date > lm:
                lifetime = min(HEURISTIC_CAP, (date - lm) * HEURISTIC_FRACTION)
                return Freshness(lifetime, heuristic=True)
    return Freshness(0.0)


class Verdict(enum.Enum):
    """What to do with a stored response for a request."""

    #: Fresh (or acceptably stale by the request's max-stale): serve it.
    SERVE = "serve"
    #: Stale, within C{stale-while-revalidate}: serve it and revalidate
    #: in the background.
    SERVE_STALE_REVALIDATE = "swr"
    #: Validate with the origin first.
    REVALIDATE = "revalidate"


@frozen
class Decision:
    """
    The result of L{decide}.

    @ivar verdict: what to do.
    @ivar age: the current age in seconds.
    @ivar ttl: freshness left (negative when stale).
    @ivar stale: whether the response is stale.
    @ivar forced: revalidation was asked for by the request (C{no-cache},
        C{max-age}, C{min-fresh}) rather than by staleness.
    @ivar hide: fields that must not be sent without revalidation
        (C{no-cache="field"}).
    """

    verdict: Verdict
    age: float
    ttl: float
    stale: bool
    forced: bool = False
    hide: frozenset[bytes] = frozenset()


def decide(stored: StoredResponse, requestFields: Fields, now: float) -> Decision:
    """
    May C{stored} answer a request with C{requestFields} at C{now} without
    contacting the origin (RFC 9111 4, 4.2, 5.2, RFC 5861)?
    """
    reqCC = requestControl(requestFields)
    resCC = responseControl(stored.fields)
    age = currentAge(stored, now)
    lifetime = freshness(stored.status, stored.fields).lifetime
    ttl = lifetime - age
    stale = ttl <= 0

    def result(verdict: Verdict, forced: bool = False) -> Decision:
        return Decision(verdict, age, ttl, stale, forced, resCC.fields(b"no-cache"))

    # 5.2.2.4: no-cache without field names: always validate.
    if resCC.has(b"no-cache") and resCC.argument(b"no-cache") is None:
        return result(Verdict.REVALIDATE)
    # 5.2.1.4: the request's no-cache.
    if reqCC.has(b"no-cache"):
        return result(Verdict.REVALIDATE, forced=True)
    maxAge = reqCC.seconds(b"max-age")
    if maxAge is not None and (maxAge < 0 or age > maxAge):
        return result(Verdict.REVALIDATE, forced=True)
    minFresh = reqCC.seconds(b"min-fresh")
    if minFresh is not None and ttl < max(minFresh, 0):
        return result(Verdict.REVALIDATE, forced=not stale)
    if not stale:
        return result(Verdict.SERVE)
    # Stale from here on. 5.2.2.2 / 5.2.2.8 / 5.2.2.10: must-revalidate,
    # proxy-revalidate and s-maxage forbid serving stale in a shared cache.
    if (
        resCC.has(b"must-revalidate")
        or resCC.has(b"proxy-revalidate")
        or resCC.has(b"s-maxage")
    ):
        return result(Verdict.REVALIDATE)
    if reqCC.has(b"max-stale"):
        limit = reqCC.seconds(b"max-stale")
        if reqCC.argument(b"max-stale") is None or (
            limit is not None and limit >= 0 and -ttl <= limit
        ):
            return result(Verdict.SERVE)
    swr = resCC.seconds(b"stale-while-revalidate")
    if swr is not None and swr >= 0 and -ttl <= swr:
        return result(Verdict.SERVE_STALE_REVALIDATE)
    return result(Verdict.REVALIDATE)


def canServeStaleOnError(
    stored: StoredResponse, requestFields: Fields, now: float
) -> bool:
    """
    RFC 5861 4 (C{stale-if-error}, in the response or the request) and RFC
    9111 4.2.4: may a stale response answer when the origin fails? Never
    under C{must-revalidate}, C{proxy-revalidate}, C{s-maxage} or
    C{no-cache}.
    """
    resCC = responseControl(stored.fields)
    if any(
        resCC.has(d)
        for d in (b"must-revalidate", b"proxy-revalidate", b"s-maxage", b"no-cache")
    ):
        return False
    staleness = -(
        freshness(stored.status, stored.fields).lifetime - currentAge(stored, now)
    )
    for control in (requestControl(requestFields), resCC):
        limit = control.seconds(b"stale-if-error")
        if limit is not None and limit >= 0 and staleness <= limit:
            return True
    return False


def validators(stored: StoredResponse) -> Fields:
    """
    The conditional fields that validate C{stored} (RFC 9111 4.3.1):
    C{If-None-Match} from its C{ETag}, C{If-Modified-Since} from its
    C{Last-Modified}.
    """
    result: list[tuple[bytes, bytes]] = []
    etags = get(stored.fields, b"etag")
    if etags:
        result.append((b"if-none-match", etags[0]))
    modified = get(stored.fields, b"last-modified")
    if modified:
        result.append((b"if-modified-since", modified[0]))
    return tuple(result)


def _strongETag(fields: Fields) -> bytes | None:
    etags = get(fields, b"etag")
    if etags and not etags[0].startswith((b"W/", b"w/")):
        return etags[0]
    return None


def matchesNotModified(stored: StoredResponse, notModified: Fields) -> bool:
    """
    Does a 304 select C{stored} for update (RFC 9111 4.3.4)? By a strong
    entity tag, else by C{Last-Modified}, else when neither has a
    validator.
    """
    newTag = get(notModified, b"etag")
    if newTag:
        oldTags = get(stored.fields, b"etag")
        strong = _strongETag(notModified)
        if strong is not None:
            return bool(oldTags) and oldTags[0] == strong
        return bool(oldTags) and oldTags[0].lstrip(b"Ww/") == newTag[0].lstrip(b"Ww/")
    newLM = get(notModified, b"last-modified")
    if newLM:
        return get(stored.fields, b"last-modified")[:1] == newLM[:1]
    return True


#: Fields a 304 may not change in the stored response (RFC 9111 3.2).
_NOT_UPDATED = HOP_BY_HOP | {b"content-length", b"content-encoding", b"content-range"}


def mergeNotModified(
    stored: StoredResponse,
    notModified: Fields,
    requestTime: float,
    responseTime: float,
) -> StoredResponse:
    """
    The stored response updated by a 304 (RFC 9111 4.3.4 and 3.2): each
    field of the 304 replaces the stored ones of that name, except the
    framing and hop-by-hop fields; the ages restart from the 304.
    """
    incoming = storedFields(notModified)
    replaced = {n for n, _ in incoming if n not in _NOT_UPDATED}
    fields = tuple(
        [(n, v) for n, v in stored.fields if n not in replaced]
        + [(n, v) for n, v in incoming if n in replaced]
    )
    return StoredResponse(
        key=stored.key,
        vary=stored.vary,
        status=stored.status,
        fields=fields,
        requestTime=requestTime,
        responseTime=responseTime,
        initialAge=correctedInitialAge(notModified, requestTime, responseTime),
        size=stored.size,
    )


def invalidations(
    method: bytes,
    status: int,
    scheme: bytes,
    host: bytes,
    target: bytes,
    fields: Fields,
) -> list[bytes]:
    """
    The primary keys an unsafe request invalidates (RFC 9111 4.4): on a
    non-error response, the target URI, and the URIs in C{Location} and
    C{Content-Location} when they have the same origin.
    """
    if method in _UNSAFE_OK or not 200 <= status < 400:
        return []
    base = (scheme + b"://" + host + target).decode("latin-1")
    keys = [cacheKey(scheme, host, target)]
    for name in (b"location", b"content-location"):
        for value in get(fields, name):
            absolute = urlsplit(urljoin(base, value.decode("latin-1").strip()))
            if (
                absolute.scheme.encode() == scheme.lower()
                and absolute.netloc.encode("latin-1").lower() == host.lower()
            ):
                path = absolute.path or "/"
                if absolute.query:
                    path += "?" + absolute.query
                key = cacheKey(scheme, host, path.encode("latin-1"))
                if key not in keys:
                    keys.append(key)
    return keys


def cacheStatus(
    *,
    hit: bool,
    ttl: float | None = None,
    fwd: str | None = None,
    fwdStatus: int | None = None,
    stored: bool = False,
    collapsed: bool = False,
    detail: str | None = None,
    name: bytes = b"appnet",
) -> bytes:
    """
    One C{Cache-Status} member (RFC 9211 2): C{appnet; hit; ttl=12} or
    C{appnet; fwd=stale; fwd-status=304; stored}.
    """
    parts = [name]
    if hit:
        parts.append(b"hit")
    if fwd is not None:
        parts.append(b"fwd=" + fwd.encode("ascii"))
    if fwdStatus is not None:
        parts.append(b"fwd-status=%d" % (fwdStatus,))
    if ttl is not None:
        parts.append(b"ttl=%d" % (int(ttl),))
    if stored:
        parts.append(b"stored")
    if collapsed:
        parts.append(b"collapsed")
    if detail is not None:
        parts.append(b'detail="' + detail.encode("ascii") + b'"')
    return b"; ".join(parts)
