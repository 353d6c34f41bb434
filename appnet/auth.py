"""
Authentication shared by every protocol: password hashing, the
C{twisted.cred} checker over the user store, and login throttling.

Each protocol keeps its own realm (what a logged-in user gets: a mailbox, an
FTP shell, a web session) but checks passwords through one L{UserChecker}.
A protocol instance never sees the plain L{Portal}: it gets a L{GuardedPortal}
that knows the client's address, refuses logins from an address or for an
account with too many recent failures, and answers failures only after a
delay, all driven by an L{IReactorTime} so tests use a L{Clock}.

Passwords are hashed with scrypt (C{hashlib.scrypt}) under a per-user random
salt; the encoded form records its parameters, so the cost can rise without
invalidating old hashes. Hashing is deliberately slow, so it runs in a
thread, never on the reactor.

POP3's APOP (RFC 1939 section 7) cannot work from a hash: the client sends
MD5 of the server's timestamp and a shared secret, so the server needs the
secret itself. L{APOPChecker} checks it against an account's APOP secret
(L{IUserStore.getAPOPSecret}), a second secret the account opts into and
never the login password; L{Authenticator} puts it in the portal only when
the stack offers APOP, and its logins are throttled like any other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.mail.pop3 import APOPCredentials
from zope.interface import Interface, implementer

from appnet.address import normalizeAccount
from appnet.errors import BadAddress
from appnet.store.interfaces import IUserStore

__all__ = [
    "APOPChecker",
    "Authenticator",
    "GuardedPortal",
    "LoginThrottle",
    "LoginThrottled",
    "UserChecker",
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


def verifyPassword(password: str, encoded: str) -> bool:
    """
    Check a password against an encoded hash, in constant time.

    A malformed hash never matches.
    """
    try:
        empty, scheme, params, salt, key = encoded.split("$")
        if empty or scheme != "scrypt":
            return False
        settings = dict(item.split("=", 1) for item in params.split(","))
        log2n, r, p = int(settings["ln"]), int(settings["r"]), int(settings["p"])
        if not (1 <= log2n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        expected = _unb64(key)
        actual = _scrypt(password.encode("utf-8"), _unb64(salt), log2n, r, p)
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


def _verifyOrDummy(password: str, encoded: str | None) -> bool:
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


@implementer(ICredentialsChecker)
@define
class UserChecker:
    """
    Checks user name and password against the user store.

    The user name is the account's address; C{defaultDomain}, when set,
    completes a bare local part (C{alice} logs in as C{alice@example.org}).
    The avatar ID is the canonical address, as C{str}.
    """

    credentialInterfaces = (IUsernamePassword,)

    _users: IUserStore
    _defaultDomain: str | None = None
    _inThread: InThread = deferToThread

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
        password = _text(credentials.password)
        try:
            address = self.canonical(credentials.username)
        except BadAddress:
            address = None
        user = None if address is None else await self._users.getUser(address)
        encoded = None if user is None else user.passwordHash
        matches = await self._inThread(_verifyOrDummy, password, encoded)
        if user is None or not matches:
            raise UnauthorizedLogin("bad user name or password")
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


@define
class LoginThrottle:
    """
    Counts failed logins per client address and per account over a sliding
    window, and says when to refuse.

    An address is throttled after C{maxFailures} failures within C{window}
    seconds; an account after C{maxAccountFailures} (higher, so one
    attacker cannot lock a user out as cheaply). A success clears the
    address's and the account's count. Memory is bounded: entries older
    than the window are dropped as they are met, and all stale entries are
    swept when the table grows past C{maxEntries}.
    """

    _clock: IReactorTime
    maxFailures: int = 5
    maxAccountFailures: int = 20
    window: float = 900.0
    maxEntries: int = 100_000
    _failures: dict[str, deque[float]] = field(factory=dict)

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

    def allowed(self, account: str | None, address: str) -> bool:
        """
        May C{address} try to log in to C{account} now?
        """
        if self._recent("ip:" + address) >= self.maxFailures:
            return False
        if account and self._recent("user:" + account) >= self.maxAccountFailures:
            return False
        return True

    def failed(self, account: str | None, address: str) -> None:
        """
        Record a failed login.
        """
        now = self._clock.seconds()
        keys = ["ip:" + address] + (["user:" + account] if account else [])
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)
            # A throttled key never needs more entries than its limit.
            limit = self.maxAccountFailures if key[0] == "u" else self.maxFailures
            times = self._failures[key]
            while len(times) > limit:
                times.popleft()
        if len(self._failures) > self.maxEntries:
            for key in list(self._failures):
                self._recent(key)

    def succeeded(self, account: str | None, address: str) -> None:
        """
        Record a successful login: forget the failures it outlived.
        """
        self._failures.pop("ip:" + address, None)
        if account:
            self._failures.pop("user:" + account, None)


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
        if not self._throttle.allowed(account, self._clientAddress):
            self._log.warn(
                "Refused login for {account} from {client}: too many failures",
                account=account,
                client=self._clientAddress,
            )
            await self._delay()
            raise LoginThrottled("too many failed logins; try again later")
        try:
            result = await self._portal.login(credentials, mind, *interfaces)
        except UnauthorizedLogin:
            self._throttle.failed(account, self._clientAddress)
            self._log.info(
                "Failed login for {account} from {client}",
                account=account,
                client=self._clientAddress,
            )
            await self._delay()
            raise
        self._throttle.succeeded(account, self._clientAddress)
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
