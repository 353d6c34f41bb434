"""
Authentication shared by every protocol: password hashing, the
C{twisted.cred} checker over the user store, and login throttling.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from attrs import define, field, frozen
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernameHashedPassword, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.mail.pop3 import APOPCredentials
from zope.interface import Interface, implementer

from appnet.address import ipAddress, normalizeAccount
from appnet.errors import BadAddress
from appnet.store.interfaces import IUserStore
from appnet.threads import PoolService

__all__ = [
    "APOPChecker",
    "Attempt",
    "Authenticator",
    "CredentialsCache",
    "GuardedPortal",
    "HashingThreads",
    "LoginThrottle",
    "LoginThrottled",
    "UserChecker",
    "addressKey",
    "apopDigest",
    "hashPassword",
    "verifyPassword",
]

T = TypeVar("T")

#: scrypt cost: N = 2**15, r = 8, p = 1 — 32 MiB and tens of milliseconds
#: per check (the parameters OWASP recommends for scrypt).
DEFAULT_LOG2_N = 15
_R = 8
_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hashPassword(
    password: str, *, log2n: int = DEFAULT_LOG2_N, salt: bytes | None = None
) -> str:
    """
    Hash a password with scrypt under a fresh random salt.

    @param log2n: the scrypt CPU/memory cost as a power of two. Tests and
        fixtures lower it; production keeps the default.
    @return: C{$scrypt$ln=15,r=8,p=1$<salt>$<key>} (base64, unpadded).
    """
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    key = _scrypt(password.encode("utf-8"), salt, log2n, _R, _P)
    return f"$scrypt$ln={log2n},r={_R},p={_P}${_b64(salt)}${_b64(key)}"


def _scrypt(password: bytes, salt: bytes, log2n: int, r: int, p: int) -> bytes:
    n = 1 << log2n
    return hashlib.scrypt(
        password,
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * r * n + (1 << 20) + 128 * r * p,
        dklen=_KEY_BYTES,
    )


def verifyPassword(password: str | bytes, encoded: str) -> bool:
    """
    Check a password against an encoded hash, in constant time.

    A password given as C{bytes} is checked as exactly those bytes (a
    C{str} as its UTF-8). A malformed hash never matches, nor does a
    password with a NUL in it: scrypt's HMAC pads short keys with zero
    bytes, so C{pw} and C{pw\\0} would otherwise be one password (and SASL
    PLAIN, RFC 4616, cannot carry a NUL anyway).
    """
    if b"\0" in _bytes(password):
        return False
    try:
        empty, scheme, params, salt, key = encoded.split("$")
        if empty or scheme != "scrypt":
            return False
        settings = dict(item.split("=", 1) for item in params.split(","))
        log2n, r, p = int(settings["ln"]), int(settings["r"]), int(settings["p"])
        if not (1 <= log2n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        expected = _unb64(key)
        actual = _scrypt(_bytes(password), _unb64(salt), log2n, r, p)
    except (ValueError, KeyError):
        return False
    return hmac.compare_digest(actual, expected)


_dummyHash: str | None = None


def _dummy() -> str:
    """
    A hash to check against when the account does not exist, so a failed
    login for an unknown user costs as much as one for a known user. Made
    on first use, not at import.
    """
    global _dummyHash
    if _dummyHash is None:
        _dummyHash = hashPassword("appnet-dummy", salt=b"\0" * _SALT_BYTES)
    return _dummyHash


def _bytes(password: str | bytes) -> bytes:
    if isinstance(password, bytes):
        return password
    return password.encode("utf-8", "surrogatepass")


def _verifyOrDummy(password: str | bytes, encoded: str | None) -> bool:
    """
    L{verifyPassword}, or the same work against a dummy hash (always
    false) when there is no account.
    """
    if encoded is None:
        verifyPassword(password, _dummy())
        return False
    return verifyPassword(password, encoded)


def _text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _canonical(username: str | bytes, defaultDomain: str | None) -> str:
    name = _text(username).strip()
    if "@" not in name and defaultDomain:
        name = f"{name}@{defaultDomain}"
    return normalizeAccount(name)


def apopDigest(timestamp: bytes, secret: str) -> bytes:
    """
    The APOP digest (RFC 1939 section 7): MD5 of the greeting's timestamp
    (angle brackets included) followed by the shared secret in UTF-8, as 32
    lower-case hex digits.
    """
    return hashlib.md5(timestamp + secret.encode("utf-8")).hexdigest().encode()


#: What an account without an APOP secret (or no account) is checked
#: against, so that such a failure does the same work as a wrong digest.
_DUMMY_APOP_SECRET = "appnet-no-apop-secret"


InThread = Callable[..., Deferred[Any]]


class HashingThreads(PoolService):
    """
    The threads password hashes are checked in: a pool of their own, sized
    to the cores that may hash at once, so a burst of logins queues here and
    never delays the store's or the file threads' work (nor the reactor's
    default pool, which library code does not use).
    """

    def __init__(self, reactor: IReactorFromThreads, maxThreads: int = 2) -> None:
        super().__init__(reactor, "appnet-auth", maxThreads)


@define
class CredentialsCache:
    """
    Recently verified passwords, so a client that logs in every few
    seconds does not pay the hash each time (Dovecot's auth cache).

    Nothing in it reveals a password: an entry is found by an HMAC, under a
    random key made for this process, of the account and the password, and
    holds the account, when it expires and an HMAC of the stored hash it
    was verified against. A hit needs that hash to be the account's current
    one, so a password change (here or by another process through the
    store) or a deleted account invalidates it at once; L{forget} drops an
    account's entries outright. Only successes are cached.

    @ivar ttl: seconds an entry is good for; 0 turns the cache off.
    """

    _clock: IReactorTime
    ttl: float = 300.0
    maxEntries: int = 10_000
    _key: bytes = field(factory=lambda: os.urandom(32))
    _entries: dict[bytes, tuple[str, float, bytes]] = field(factory=dict)

    def _mac(self, *parts: str | bytes) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in parts:
            data = _bytes(part)
            mac.update(b"%d:" % len(data) + data)
        return mac.digest()

    def hit(self, account: str, password: str | bytes, encoded: str) -> bool:
        """
        Was C{password} verified for C{account} against C{encoded} within
        the TTL?
        """
        if self.ttl <= 0:
            return False
        key = self._mac(account, password)
        entry = self._entries.get(key)
        if entry is None:
            return False
        if entry[1] <= self._clock.seconds():
            del self._entries[key]
            return False
        return hmac.compare_digest(entry[2], self._mac(encoded))

    def remember(self, account: str, password: str | bytes, encoded: str) -> None:
        """
        Record that C{password} matched C{account}'s hash C{encoded}.
        """
        if self.ttl <= 0:
            return
        now = self._clock.seconds()
        key = self._mac(account, password)
        self._entries.pop(key, None)
        self._entries[key] = (account, now + self.ttl, self._mac(encoded))
        if len(self._entries) > self.maxEntries:
            for stale in [k for k, e in self._entries.items() if e[1] <= now]:
                del self._entries[stale]
            while len(self._entries) > self.maxEntries:
                del self._entries[next(iter(self._entries))]

    def forget(self, account: str) -> None:
        """
        Drop every entry of C{account} (its password changed, or it was
        deleted).
        """
        for key in [k for k, e in self._entries.items() if e[0] == account]:
            del self._entries[key]


@implementer(ICredentialsChecker)
@define
class UserChecker:
    """
    Checks user name and password against the user store.

    The user name is the account's address; C{defaultDomain}, when set,
    completes a bare local part (C{alice} logs in as C{alice@example.org}).
    The avatar ID is the canonical address, as C{str}. The password is the
    exact bytes given (as UTF-8). Hashes are checked through C{inThread}
    (L{HashingThreads.run} in a stack); a L{CredentialsCache}, when given,
    spares the hash for a password verified recently.
    """

    credentialInterfaces = (IUsernamePassword,)

    _users: IUserStore
    _defaultDomain: str | None
    _inThread: InThread
    _cache: CredentialsCache | None = None

    def canonical(self, username: str | bytes) -> str:
        """
        The account address a login name stands for.

        @raise BadAddress: if it cannot name an account.
        """
        return _canonical(username, self._defaultDomain)

    def requestAvatarId(  # type: ignore[override]
        self, credentials: IUsernamePassword
    ) -> Deferred[str]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IUsernamePassword) -> str:
        password = credentials.password
        try:
            address = self.canonical(credentials.username)
        except BadAddress:
            address = None
        user = None if address is None else await self._users.getUser(address)
        encoded = None if user is None else user.passwordHash
        cache = self._cache
        if user is not None and encoded and cache is not None:
            if cache.hit(user.address, password, encoded):
                return user.address
        matches = await self._inThread(_verifyOrDummy, password, encoded)
        if user is None or not matches:
            raise UnauthorizedLogin("bad user name or password")
        if cache is not None and encoded:
            cache.remember(user.address, password, encoded)
        return user.address


@implementer(ICredentialsChecker)
@define
class APOPChecker:
    """
    Checks POP3 APOP credentials (L{twisted.mail.pop3.APOPCredentials}:
    the greeting's timestamp, a user name and the client's digest) against
    the account's APOP secret.

    Twisted's C{APOPCredentials.checkPassword} is not used: it compares
    digests with C{==}, and compares a C{str} with the C{bytes} its own
    server passes, so on Python 3 it never matches. This compares them
    with L{hmac.compare_digest}. An unknown
    account, one without an APOP secret and a wrong digest fail alike,
    after the same work (one store read, one MD5). Other credentials that
    provide C{IUsernameHashedPassword} (CRAM-MD5's, say) are refused: the
    APOP secret is for APOP only.
    """

    credentialInterfaces = (IUsernameHashedPassword,)

    _users: IUserStore
    _defaultDomain: str | None = None

    def requestAvatarId(  # type: ignore[override]
        self, credentials: IUsernameHashedPassword
    ) -> Deferred[str]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IUsernameHashedPassword) -> str:
        if not isinstance(credentials, APOPCredentials):
            raise UnauthorizedLogin("only APOP credentials are checked here")
        timestamp, digest = credentials.magic, credentials.digest
        if not isinstance(timestamp, bytes) or not isinstance(digest, bytes):
            raise UnauthorizedLogin("malformed APOP credentials")
        try:
            address: str | None = _canonical(credentials.username, self._defaultDomain)
        except BadAddress:
            address = None
        secret = None if address is None else await self._users.getAPOPSecret(address)
        expected = apopDigest(
            timestamp, _DUMMY_APOP_SECRET if secret is None else secret
        )
        matches = hmac.compare_digest(expected, digest.lower())
        if address is None or secret is None or not matches:
            raise UnauthorizedLogin("bad user name or APOP digest")
        return address


class LoginThrottled(UnauthorizedLogin):
    """
    A login was refused without checking the password: too many recent
    failures from this address or for this account.
    """


def addressKey(address: str) -> str:
    """
    The unit a client address is throttled as: an IPv4 address itself, an
    IPv6 address's /64 (one subscriber's usual allocation, so an attacker
    cannot step through its own addresses), an IPv4-mapped IPv6 address as
    its IPv4 address, and anything that is not an IP address (a UNIX
    socket's name) as given.
    """
    ip = ipAddress(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@frozen
class Attempt:
    """
    A login attempt that L{LoginThrottle.begin} let through and counted.

    @ivar account: the canonical account, or C{None} when the name given
        cannot be one.
    @ivar client: the client's L{addressKey}.
    @ivar started: when it was counted.
    """

    account: str | None
    client: str
    started: float


@define
class LoginThrottle:
    """
    Counts login attempts over a sliding window and says when to refuse.

    An attempt counts as a failure from the moment it starts (so attempts
    sent in parallel count while their password checks run) and is taken
    back when it succeeds. A login that would pass a limit only because of
    attempts still being checked waits for them (L{verdict}, L{settled}),
    so a client opening several connections at once with the right
    password is not refused. Three limits apply, within C{window} seconds:

      - C{maxFailures} per account from one client (its L{addressKey});
      - C{maxAddressFailures} per client, whatever the accounts;
      - C{maxAccountFailures} per account from all clients, which refuses
        only clients that have never logged in to that account: a client
        that has (within C{rememberFor}) is never refused by it, so spreading
        guesses over many addresses cannot lock the owner out.

    A success clears its account's count for that client, not the client's
    own count. Memory is bounded: entries older than the window are dropped
    as they are met, all stale entries are swept when a table grows past
    C{maxEntries}, and the oldest known clients are forgotten past it.
    """

    _clock: IReactorTime
    maxFailures: int = 5
    maxAccountFailures: int = 20
    window: float = 900.0
    maxEntries: int = 100_000
    maxAddressFailures: int = 20
    rememberFor: float = 90 * 86400.0
    _failures: dict[str, deque[float]] = field(factory=dict)
    _known: dict[tuple[str, str], float] = field(factory=dict)
    _inFlight: dict[str, int] = field(factory=dict)
    _waiters: list[Deferred[None]] = field(factory=list)

    def _recent(self, key: str) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        horizon = self._clock.seconds() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        return len(times)

    def _keys(self, account: str | None, client: str) -> list[tuple[str, int]]:
        keys = [("ip:" + client, self.maxAddressFailures)]
        if account:
            keys.append((f"pair:{account}\0{client}", self.maxFailures))
            keys.append(("user:" + account, self.maxAccountFailures))
        return keys

    def known(self, account: str, address: str) -> bool:
        """
        Has C{address} logged in to C{account} within C{rememberFor}?
        """
        when = self._known.get((account, addressKey(address)))
        return when is not None and self._clock.seconds() - when < self.rememberFor

    def verdict(self, account: str | None, address: str) -> str:
        """
        May C{address} try to log in to C{account} now: C{"go"}; C{"wait"}
        when a limit is reached only by attempts still being checked (one
        of them may yet succeed and be taken back, see L{settled}); else
        C{"refuse"}.
        """
        client = addressKey(address)
        result = "go"
        for key, limit in self._keys(account, client):
            if key[0] == "u" and account and self.known(account, address):
                continue
            recent = self._recent(key)
            if recent >= limit:
                if recent - self._inFlight.get(key, 0) >= limit:
                    return "refuse"
                result = "wait"
        return result

    def allowed(self, account: str | None, address: str) -> bool:
        """
        May C{address} start a login to C{account} now?
        """
        return self.verdict(account, address) == "go"

    def settled(self) -> Deferred[None]:
        """
        Fires when the next attempt in progress ends, for a login told to
        C{"wait"} to ask again.
        """
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def begin(self, account: str | None, address: str) -> Attempt | None:
        """
        Start an attempt: if it is allowed, count it (as a failure until
        L{succeeded} says otherwise) and return it; else C{None}. End it
        with L{succeeded} or L{finished}.
        """
        if not self.allowed(account, address):
            return None
        client = addressKey(address)
        attempt = Attempt(account, client, self._clock.seconds())
        self._record(account, client, attempt.started)
        for key, _ in self._keys(account, client):
            self._inFlight[key] = self._inFlight.get(key, 0) + 1
        return attempt

    def failed(self, account: str | None, address: str) -> None:
        """
        Record a failed login that did not go through L{begin}.
        """
        self._record(account, addressKey(address), self._clock.seconds())

    def _record(self, account: str | None, client: str, now: float) -> None:
        for key, limit in self._keys(account, client):
            times = self._failures.setdefault(key, deque())
            times.append(now)
            # A throttled key never needs more entries than its limit.
            while len(times) > limit:
                times.popleft()
        if len(self._failures) > self.maxEntries:
            for key in list(self._failures):
                self._recent(key)

    def finished(self, attempt: Attempt) -> None:
        """
        An attempt from L{begin} ended without logging in: it stays counted
        as a failure. Logins waiting on it ask again.
        """
        for key, _ in self._keys(attempt.account, attempt.client):
            count = self._inFlight.get(key, 0) - 1
            if count > 0:
                self._inFlight[key] = count
            else:
                self._inFlight.pop(key, None)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def withdrawn(self, attempt: Attempt) -> None:
        """
        An attempt from L{begin} ended in neither a login nor a wrong
        password (the store failed, or the password was right but the
        session could not start, say a POP3 maildrop in use): it no
        longer counts.
        """
        for key, _ in self._keys(attempt.account, attempt.client):
            times = self._failures.get(key)
            if times is not None and attempt.started in times:
                times.remove(attempt.started)
        self.finished(attempt)

    def succeeded(self, attempt: Attempt) -> None:
        """
        An attempt from L{begin} logged in: take it back, clear its
        account's failures from that client and remember the client.
        """
        if attempt.account is not None:
            self._failures.pop(f"pair:{attempt.account}\0{attempt.client}", None)
            pair = (attempt.account, attempt.client)
            self._known.pop(pair, None)
            self._known[pair] = self._clock.seconds()
            while len(self._known) > self.maxEntries:
                del self._known[next(iter(self._known))]
        self.withdrawn(attempt)


@define
class GuardedPortal:
    """
    The portal one connection logs in through: it knows the client's
    address and applies the L{LoginThrottle} around a real L{Portal}.

    It offers the two methods Twisted's protocols call on their C{portal}
    attribute, so it drops in wherever they expect a L{Portal}.
    """

    _portal: Portal
    _throttle: LoginThrottle
    _clock: IReactorTime
    _clientAddress: str
    _canonical: Callable[[str | bytes], str]
    failureDelay: float = 2.0
    _log = Logger()

    def listCredentialsInterfaces(self) -> list[type[Interface]]:
        return self._portal.listCredentialsInterfaces()

    def login(
        self, credentials: Any, mind: object, *interfaces: type[Interface]
    ) -> Deferred[tuple[type[Interface], object, Callable[[], None]]]:
        return Deferred.fromCoroutine(self._login(credentials, mind, interfaces))

    def _account(self, credentials: Any) -> str | None:
        try:
            return self._canonical(credentials.username)
        except (BadAddress, AttributeError):
            return None

    async def _login(
        self, credentials: Any, mind: object, interfaces: tuple[type[Interface], ...]
    ) -> tuple[type[Interface], object, Callable[[], None]]:
        account = self._account(credentials)
        throttle, client = self._throttle, self._clientAddress
        while (verdict := throttle.verdict(account, client)) == "wait":
            await throttle.settled()
        attempt = throttle.begin(account, client) if verdict == "go" else None
        if attempt is None:
            self._log.warn(
                "Refused login for {account} from {client}: too many failures",
                account=account,
                client=client,
            )
            await self._delay()
            raise LoginThrottled("too many failed logins; try again later")
        try:
            result = await self._portal.login(credentials, mind, *interfaces)
        except UnauthorizedLogin:
            throttle.finished(attempt)
            self._log.info(
                "Failed login for {account} from {client}",
                account=account,
                client=client,
            )
            await self._delay()
            raise
        except BaseException:
            throttle.withdrawn(attempt)
            raise
        throttle.succeeded(attempt)
        return result

    async def _delay(self) -> None:
        if self.failureDelay > 0:
            await deferLater(self._clock, self.failureDelay, lambda: None)


@frozen
class Authenticator:
    """
    Everything a protocol needs to authenticate users: one checker over the
    user store, one throttle for the whole stack.
    """

    checker: UserChecker
    throttle: LoginThrottle
    clock: IReactorTime
    failureDelay: float = 2.0
    #: Checks APOP logins; C{None} (the default) when APOP is off, so no
    #: portal consults APOP secrets at all.
    apop: APOPChecker | None = None

    def portalFor(self, realm: IRealm, clientAddress: str) -> GuardedPortal:
        """
        The portal for one connection from C{clientAddress} into C{realm}.
        """
        checkers: list[ICredentialsChecker] = [self.checker]
        if self.apop is not None:
            checkers.append(self.apop)
        return GuardedPortal(
            Portal(realm, checkers),
            self.throttle,
            self.clock,
            clientAddress,
            self.checker.canonical,
            self.failureDelay,
        )
