"""
Tests for L{appnet.auth}: password hashing, the checker, throttling.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import CramMD5Credentials, UsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.mail.pop3 import APOPCredentials
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import Interface, implementer
from zope.interface.verify import verifyObject

from appnet.auth import (
    APOPChecker,
    Authenticator,
    CredentialsCache,
    HashingThreads,
    LoginThrottle,
    LoginThrottled,
    UserChecker,
    addressKey,
    apopDigest,
    hashPassword,
    verifyPassword,
)
from appnet.store.memory import MemoryUserStore
from tests.helpers import Pending

COST = 4


def inline(f: Any, *args: Any) -> Deferred[Any]:
    """Run 'in a thread' synchronously, for deterministic tests."""
    return succeed(f(*args))


class PasswordTests(SynchronousTestCase):
    """
    scrypt hashing with a per-user salt.
    """

    def test_roundTrip(self) -> None:
        """A hash verifies its own password and no other."""
        encoded = hashPassword("correct horse", log2n=COST)
        self.assertTrue(verifyPassword("correct horse", encoded))
        self.assertFalse(verifyPassword("correct horse!", encoded))

    def test_format(self) -> None:
        """The encoding names the scheme and its parameters."""
        encoded = hashPassword("pw", log2n=COST)
        self.assertTrue(encoded.startswith("$scrypt$ln=4,r=8,p=1$"))

    def test_defaultCost(self) -> None:
        """Production hashes use N = 2**15."""
        self.assertTrue(hashPassword("pw").startswith("$scrypt$ln=15,"))

    def test_saltPerHash(self) -> None:
        """Two hashes of one password differ (random salt)."""
        self.assertNotEqual(
            hashPassword("pw", log2n=COST), hashPassword("pw", log2n=COST)
        )

    def test_malformed(self) -> None:
        """Malformed or foreign hashes never verify."""
        for bad in (
            "",
            "plain",
            "$scrypt$",
            "$bcrypt$ln=4,r=8,p=1$AAAA$AAAA",
            "$scrypt$ln=99,r=8,p=1$AAAA$AAAA",
            "$scrypt$ln=x,r=8,p=1$AAAA$AAAA",
            "$scrypt$ln=4$AAAA$AAAA",
        ):
            self.assertFalse(verifyPassword("pw", bad), bad)

    def test_unicode(self) -> None:
        """Non-ASCII passwords work."""
        encoded = hashPassword("pässwörd-ü", log2n=COST)
        self.assertTrue(verifyPassword("pässwörd-ü", encoded))


class CheckerTests(SynchronousTestCase):
    """
    L{UserChecker} over a user store.
    """

    def setUp(self) -> None:
        self.users = MemoryUserStore()
        self.users.addUser("alice@example.org", hashPassword("secret-1", log2n=COST))
        self.checker = UserChecker(self.users, "example.org", inline)

    def check(self, user: str | bytes, password: str | bytes) -> Deferred[str]:
        return self.checker.requestAvatarId(UsernamePassword(user, password))

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker))

    def test_right(self) -> None:
        """The right password gives the canonical address."""
        self.assertEqual(
            self.successResultOf(self.check(b"Alice@Example.ORG", b"secret-1")),
            "alice@example.org",
        )

    def test_bareLocalPart(self) -> None:
        """A bare local part logs in to the default domain."""
        self.assertEqual(
            self.successResultOf(self.check("alice", "secret-1")), "alice@example.org"
        )

    def test_wrong(self) -> None:
        self.failureResultOf(self.check("alice@example.org", "nope"), UnauthorizedLogin)

    def test_unknownUser(self) -> None:
        self.failureResultOf(
            self.check("bob@example.org", "secret-1"), UnauthorizedLogin
        )

    def test_garbageName(self) -> None:
        """A name that cannot be an address fails like a wrong password."""
        self.failureResultOf(self.check(b"\xff\xfe", "x"), UnauthorizedLogin)
        self.failureResultOf(self.check("a b@c", "x"), UnauthorizedLogin)


class ThrottleTests(SynchronousTestCase):
    """
    L{LoginThrottle} counts attempts per (account, address), per address
    and per account.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.throttle = LoginThrottle(
            self.clock,
            maxFailures=3,
            maxAccountFailures=5,
            window=60,
            maxAddressFailures=6,
        )

    def test_pairThrottled(self) -> None:
        """
        After maxFailures for one account from one address, that pair is
        refused; the address may still try another account, and the
        account may still be tried from another address.
        """
        for _ in range(3):
            self.assertIsNotNone(self.throttle.begin("a@x.org", "10.0.0.1"))
        self.assertIsNone(self.throttle.begin("a@x.org", "10.0.0.1"))
        self.assertTrue(self.throttle.allowed("b@x.org", "10.0.0.1"))
        self.assertTrue(self.throttle.allowed("a@x.org", "10.0.0.2"))

    def test_addressThrottled(self) -> None:
        """After maxAddressFailures over any accounts the address is refused."""
        for i in range(6):
            self.assertIsNotNone(self.throttle.begin(f"u{i}@x.org", "10.0.0.1"))
        self.assertIsNone(self.throttle.begin("fresh@x.org", "10.0.0.1"))
        self.assertIsNone(self.throttle.begin(None, "10.0.0.1"))
        self.assertTrue(self.throttle.allowed("fresh@x.org", "10.0.0.2"))

    def test_beginCountsAtOnce(self) -> None:
        """
        An attempt counts when it begins, before its outcome is known, so
        parallel attempts cannot pass the limit.
        """
        started = [self.throttle.begin("a@x.org", "10.0.0.1") for _ in range(10)]
        self.assertEqual(sum(a is not None for a in started), 3)

    def test_accountSpreadSparesKnownAddress(self) -> None:
        """
        Failures for one account spread over many addresses refuse only
        addresses that never logged in to it: the owner's known address is
        still let through.
        """
        owner = self.throttle.begin("a@x.org", "192.0.2.7")
        assert owner is not None
        self.throttle.succeeded(owner)
        for i in range(5):
            self.throttle.failed("a@x.org", f"10.0.0.{i}")
        self.assertFalse(self.throttle.allowed("a@x.org", "10.0.0.99"))
        self.assertTrue(self.throttle.allowed("b@x.org", "10.0.0.99"))
        self.assertIsNotNone(self.throttle.begin("a@x.org", "192.0.2.7"))

    def test_knownExpires(self) -> None:
        """An address is known to an account for rememberFor seconds."""
        self.throttle.rememberFor = 100
        attempt = self.throttle.begin("a@x.org", "192.0.2.7")
        assert attempt is not None
        self.throttle.succeeded(attempt)
        self.assertTrue(self.throttle.known("a@x.org", "192.0.2.7"))
        self.clock.advance(101)
        self.assertFalse(self.throttle.known("a@x.org", "192.0.2.7"))

    def test_windowSlides(self) -> None:
        """Failures older than the window no longer count."""
        for _ in range(3):
            self.throttle.failed("a@x.org", "10.0.0.1")
        self.clock.advance(59)
        self.assertFalse(self.throttle.allowed("a@x.org", "10.0.0.1"))
        self.clock.advance(2)
        self.assertTrue(self.throttle.allowed("a@x.org", "10.0.0.1"))

    def test_successTakesBack(self) -> None:
        """
        A success takes its own attempt back and clears its account's
        failures from that address.
        """
        for _ in range(2):
            self.throttle.failed("a@x.org", "10.0.0.1")
        attempt = self.throttle.begin("a@x.org", "10.0.0.1")
        assert attempt is not None
        self.throttle.succeeded(attempt)
        for _ in range(2):
            self.throttle.failed("a@x.org", "10.0.0.1")
        self.assertTrue(self.throttle.allowed("a@x.org", "10.0.0.1"))

    def test_successTakenBackOnRealClock(self) -> None:
        """
        A success takes back exactly the attempt it began as, on a clock
        that moves between calls (as the real one does).
        """

        class Ticking(Clock):
            def seconds(self) -> float:
                self.rightNow += 0.001
                return self.rightNow

        throttle = LoginThrottle(Ticking(), maxFailures=3, maxAddressFailures=3)
        for _ in range(10):
            attempt = throttle.begin("a@x.org", "10.0.0.1")
            assert attempt is not None
            throttle.succeeded(attempt)
        self.assertEqual(throttle.verdict("b@x.org", "10.0.0.1"), "go")

    def test_withdrawn(self) -> None:
        """
        An attempt that ended in neither a login nor a wrong password (the
        session could not start) no longer counts.
        """
        for _ in range(3):
            attempt = self.throttle.begin("a@x.org", "10.0.0.1")
            assert attempt is not None
            self.throttle.withdrawn(attempt)
        self.assertTrue(self.throttle.allowed("a@x.org", "10.0.0.1"))
        self.assertFalse(self.throttle.known("a@x.org", "10.0.0.1"))

    def test_waitForInFlight(self) -> None:
        """
        At a limit reached only by attempts in progress, a login is told to
        wait, and L{LoginThrottle.settled} fires when one ends.
        """
        attempts = [self.throttle.begin("a@x.org", "10.0.0.1") for _ in range(3)]
        self.assertEqual(self.throttle.verdict("a@x.org", "10.0.0.1"), "wait")
        settled = self.throttle.settled()
        self.assertNoResult(settled)
        first = attempts[0]
        assert first is not None
        self.throttle.finished(first)
        self.successResultOf(settled)
        self.assertEqual(self.throttle.verdict("a@x.org", "10.0.0.1"), "wait")
        for attempt in attempts[1:]:
            assert attempt is not None
            self.throttle.finished(attempt)
        self.assertEqual(self.throttle.verdict("a@x.org", "10.0.0.1"), "refuse")

    def test_successKeepsAddressCount(self) -> None:
        """
        Logging in to one's own account does not reset the address's count
        of failures on others.
        """
        for i in range(5):
            self.throttle.failed(f"v{i}@x.org", "10.0.0.1")
        attempt = self.throttle.begin("mine@x.org", "10.0.0.1")
        assert attempt is not None
        self.throttle.succeeded(attempt)
        self.assertIsNotNone(self.throttle.begin("victim@x.org", "10.0.0.1"))
        self.assertIsNone(self.throttle.begin("victim2@x.org", "10.0.0.1"))

    def test_ipv6PerPrefix(self) -> None:
        """
        IPv6 clients are throttled per /64: stepping through the addresses
        of one /64 does not help, another /64 is not affected.
        """
        for i in range(3):
            self.throttle.failed("a@x.org", f"2001:db8:1:2::{i + 1}")
        self.assertFalse(self.throttle.allowed("a@x.org", "2001:db8:1:2:ffff::9"))
        self.assertTrue(self.throttle.allowed("a@x.org", "2001:db8:1:3::1"))

    def test_addressKey(self) -> None:
        """IPv4 as is, IPv6 as its /64, IPv4-mapped as IPv4, others as given."""
        self.assertEqual(addressKey("192.0.2.1"), "192.0.2.1")
        self.assertEqual(addressKey("2001:db8::1:2:3:4"), "2001:db8::/64")
        self.assertEqual(addressKey("fe80::1%eth0"), "fe80::/64")
        self.assertEqual(addressKey("::ffff:192.0.2.1"), "192.0.2.1")
        self.assertEqual(addressKey("unix"), "unix")

    def test_boundedMemory(self) -> None:
        """Stale entries are swept once the table passes its bound."""
        throttle = LoginThrottle(self.clock, maxFailures=3, window=10, maxEntries=100)
        for i in range(100):
            throttle.failed(None, f"10.0.{i // 250}.{i % 250}")
        self.clock.advance(11)
        throttle.failed(None, "192.0.2.1")
        self.assertLessEqual(len(throttle._failures), 1)

    def test_knownBounded(self) -> None:
        """The table of known addresses keeps at most maxEntries."""
        throttle = LoginThrottle(self.clock, maxEntries=10)
        for i in range(30):
            attempt = throttle.begin(f"u{i}@x.org", f"10.0.0.{i}")
            assert attempt is not None
            throttle.succeeded(attempt)
        self.assertEqual(len(throttle._known), 10)
        self.assertTrue(throttle.known("u29@x.org", "10.0.0.29"))
        self.assertFalse(throttle.known("u0@x.org", "10.0.0.0"))


class Avatar(Interface):
    """What the test realm hands out."""


@implementer(IRealm)
class Realm:
    def requestAvatar(self, avatarId: str, mind: object, *interfaces: Any) -> Any:
        return (Avatar, avatarId, lambda: None)


class GuardedPortalTests(SynchronousTestCase):
    """
    The per-connection portal throttles and delays failures on the clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        users = MemoryUserStore()
        users.addUser("alice@example.org", hashPassword("secret-1", log2n=COST))
        self.auth = Authenticator(
            UserChecker(users, None, inline),
            LoginThrottle(self.clock, maxFailures=2, maxAccountFailures=10, window=300),
            self.clock,
            failureDelay=2.0,
        )

    def login(self, password: str, client: str = "192.0.2.1") -> Deferred[Any]:
        portal = self.auth.portalFor(Realm(), client)
        return portal.login(
            UsernamePassword(b"alice@example.org", password.encode()), None, Avatar
        )

    def loginAndWait(self, password: str) -> Deferred[Any]:
        d = self.login(password)
        self.clock.advance(2)
        return d

    def test_success(self) -> None:
        """A right password logs in at once with the canonical avatar."""
        iface, avatar, logout = self.successResultOf(self.login("secret-1"))
        self.assertEqual(avatar, "alice@example.org")

    def test_failureDelayed(self) -> None:
        """A failure is answered only after the failure delay."""
        d = self.login("wrong")
        self.assertNoResult(d)
        self.clock.advance(2)
        self.failureResultOf(d, UnauthorizedLogin)

    def test_throttledEvenWithRightPassword(self) -> None:
        """Once throttled, the right password is refused too, as throttled."""
        for _ in range(2):
            d = self.login("wrong")
            self.clock.advance(2)
            self.failureResultOf(d, UnauthorizedLogin)
        d = self.login("secret-1")
        self.clock.advance(2)
        self.failureResultOf(d, LoginThrottled)
        # Another address is unaffected.
        self.successResultOf(self.login("secret-1", client="192.0.2.2"))

    def test_throttleExpires(self) -> None:
        """After the window, the address may log in again."""
        for _ in range(2):
            self.failureResultOf(self.loginAndWait("wrong"), UnauthorizedLogin)
        self.clock.advance(300)
        self.successResultOf(self.login("secret-1"))

    def test_listCredentialsInterfaces(self) -> None:
        """The guarded portal reports the checker's credential interfaces."""
        portal = self.auth.portalFor(Realm(), "192.0.2.1")
        self.assertEqual(len(portal.listCredentialsInterfaces()), 1)


class ParallelAttackTests(SynchronousTestCase):
    """
    The throttle holds when attempts arrive while earlier password checks
    are still running, with the documented defaults (5 per account and
    address, 20 per address, 20 per account from unknown addresses).
    """

    def setUp(self) -> None:
        self.clock = Clock()
        users = MemoryUserStore()
        users.addUser("alice@example.org", hashPassword("secret-1", log2n=COST))
        self.threads = Pending()
        self.auth = Authenticator(
            UserChecker(users, None, self.threads),
            LoginThrottle(self.clock),
            self.clock,
            failureDelay=2.0,
        )

    def login(self, password: str, client: str = "192.0.2.1") -> Deferred[Any]:
        portal = self.auth.portalFor(Realm(), client)
        return portal.login(
            UsernamePassword(b"alice@example.org", password.encode()), None, Avatar
        )

    def test_burstWithRightPassword(self) -> None:
        """
        31 wrong passwords sent at once plus the right one as the 21st,
        from one address: only the first 5 are checked, and the right one
        is refused as throttled.
        """
        attempts = [self.login("wrong") for _ in range(20)]
        right = self.login("secret-1")
        attempts += [self.login("wrong") for _ in range(11)]
        self.threads.runAll()
        self.clock.advance(2)
        self.failureResultOf(right, LoginThrottled)
        for d in attempts:
            self.failureResultOf(d, UnauthorizedLogin)
        self.assertEqual(self.threads.ran, 5)

    def test_concurrentRightLogins(self) -> None:
        """
        More logins with the right password at once than the limit (a
        client opening many connections): those past it wait for the
        checks in progress instead of being refused, and all log in.
        """
        logins = [self.login("secret-1") for _ in range(12)]
        for _ in range(12):
            self.threads.runAll()
        for d in logins:
            self.successResultOf(d)

    def test_sequentialThrottledAfterDocumentedCount(self) -> None:
        """
        One wrong password after another: exactly 5 are checked, the rest
        refused without a check.
        """
        for i in range(100):
            d = self.login("wrong")
            self.threads.runAll()
            self.clock.advance(2)
            failure = self.failureResultOf(d, UnauthorizedLogin)
            self.assertEqual(isinstance(failure.value, LoginThrottled), i >= 5, i)
        self.assertEqual(self.threads.ran, 5)

    def test_spreadDoesNotLockOutOwner(self) -> None:
        """
        100 wrong passwords spread over 25 addresses refuse new addresses
        but not the address alice logged in from before.
        """
        d = self.login("secret-1", client="198.51.100.7")
        self.threads.runAll()
        self.successResultOf(d)
        for i in range(100):
            d = self.login("wrong", client=f"203.0.113.{i % 25}")
            self.threads.runAll()
            self.clock.advance(2)
            self.failureResultOf(d, UnauthorizedLogin)
        d = self.login("secret-1", client="192.0.2.200")
        self.threads.runAll()
        self.clock.advance(2)
        self.failureResultOf(d, LoginThrottled)
        d = self.login("secret-1", client="198.51.100.7")
        self.threads.runAll()
        self.successResultOf(d)


class CacheTests(SynchronousTestCase):
    """
    L{CredentialsCache} spares the hash for recently verified passwords.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.users = MemoryUserStore()
        self.users.addUser("alice@example.org", hashPassword("secret-1", log2n=COST))
        self.threads = Pending()
        self.cache = CredentialsCache(self.clock, ttl=60)
        self.checker = UserChecker(self.users, None, self.threads, self.cache)

    def check(self, password: bytes) -> Deferred[str]:
        d = self.checker.requestAvatarId(
            UsernamePassword(b"alice@example.org", password)
        )
        self.threads.runAll()
        return d

    def test_hitSparesHash(self) -> None:
        """A second login within the TTL is checked without a hash."""
        self.successResultOf(self.check(b"secret-1"))
        self.successResultOf(self.check(b"secret-1"))
        self.assertEqual(self.threads.ran, 1)

    def test_expires(self) -> None:
        """After the TTL the hash is checked again."""
        self.successResultOf(self.check(b"secret-1"))
        self.clock.advance(61)
        self.successResultOf(self.check(b"secret-1"))
        self.assertEqual(self.threads.ran, 2)

    def test_wrongNotCached(self) -> None:
        """Wrong passwords are never cached, and never hit."""
        self.successResultOf(self.check(b"secret-1"))
        for _ in range(2):
            self.failureResultOf(self.check(b"secret-2"), UnauthorizedLogin)
        self.assertEqual(self.threads.ran, 3)

    def test_passwordChange(self) -> None:
        """A changed password makes the cached one fail at once."""
        self.successResultOf(self.check(b"secret-1"))
        self.successResultOf(
            self.users.setPasswordHash(
                "alice@example.org", hashPassword("secret-9", log2n=COST)
            )
        )
        self.failureResultOf(self.check(b"secret-1"), UnauthorizedLogin)
        self.successResultOf(self.check(b"secret-9"))

    def test_deletedUser(self) -> None:
        """A deleted account cannot log in from the cache."""
        self.successResultOf(self.check(b"secret-1"))
        self.successResultOf(self.users.deleteUser("alice@example.org"))
        self.failureResultOf(self.check(b"secret-1"), UnauthorizedLogin)

    def test_forget(self) -> None:
        """L{CredentialsCache.forget} drops an account's entries."""
        self.successResultOf(self.check(b"secret-1"))
        self.cache.forget("alice@example.org")
        self.successResultOf(self.check(b"secret-1"))
        self.assertEqual(self.threads.ran, 2)

    def test_noPasswordInside(self) -> None:
        """The cache holds neither the password nor the stored hash."""
        self.successResultOf(self.check(b"secret-1"))
        dump = repr(self.cache._entries).encode()
        self.assertNotIn(b"secret-1", dump)
        self.assertNotIn(b"scrypt", dump)

    def test_off(self) -> None:
        """A TTL of 0 turns the cache off."""
        self.cache.ttl = 0
        self.successResultOf(self.check(b"secret-1"))
        self.successResultOf(self.check(b"secret-1"))
        self.assertEqual(self.threads.ran, 2)

    def test_bounded(self) -> None:
        """The cache keeps at most maxEntries."""
        self.cache.maxEntries = 5
        for i in range(20):
            self.cache.remember(f"u{i}@x.org", b"pw", "$scrypt$h")
        self.assertEqual(len(self.cache._entries), 5)
        self.assertTrue(self.cache.hit("u19@x.org", b"pw", "$scrypt$h"))


class ExactPasswordTests(SynchronousTestCase):
    """
    The password is the exact bytes given.
    """

    def test_trailingSpace(self) -> None:
        """A password with a trailing space is not the password."""
        users = MemoryUserStore()
        users.addUser("alice@example.org", hashPassword("secret-1", log2n=COST))
        checker = UserChecker(users, None, inline)
        for wrong in (b"secret-1 ", b" secret-1", b"secret-1\t", b"secret-1\0"):
            self.failureResultOf(
                checker.requestAvatarId(UsernamePassword(b"alice@example.org", wrong)),
                UnauthorizedLogin,
            )

    def test_undecodableBytes(self) -> None:
        """Bytes that are not UTF-8 are compared as themselves."""
        encoded = hashPassword("\ufffd", log2n=COST)
        self.assertFalse(verifyPassword(b"\xff", encoded))
        self.assertTrue(verifyPassword("\ufffd".encode(), encoded))


class HashingThreadsTests(TestCase):
    """
    L{HashingThreads} runs checks in a pool of its own.
    """

    def test_runsInItsThreads(self) -> Deferred[None]:
        """Work runs in an appnet-auth thread, not the reactor's pool."""
        from twisted.internet import reactor

        threads = HashingThreads(reactor, 1)
        threads.startService()
        self.addCleanup(threads.stopService)

        async def run() -> None:
            name = await threads.run(lambda: threading.current_thread().name)
            self.assertIn("appnet-auth", name)

        return Deferred.fromCoroutine(run())

    def test_service(self) -> None:
        """The threads are a service of the stack."""
        from twisted.application.service import IService
        from twisted.internet import reactor

        self.assertTrue(verifyObject(IService, HashingThreads(reactor, 1)))

    def test_stopped(self) -> Deferred[None]:
        """Work submitted after the service stopped fails."""
        from twisted.internet import reactor

        threads = HashingThreads(reactor, 1)
        threads.startService()
        stopped = threads.stopService()

        def check(_: object) -> None:
            self.failureResultOf(threads.run(lambda: None), RuntimeError)

        return stopped.addCallback(check)


#: The timestamp and digest of RFC 1939's APOP example (secret "tanstaaf").
RFC_TIMESTAMP = b"<1896.697170952@dbc.mtview.ca.us>"
RFC_DIGEST = b"c4c9334bac560ecc979e58001b3e22fb"


class APOPDigestTests(SynchronousTestCase):
    """
    L{apopDigest} is RFC 1939's digest.
    """

    def test_rfcExample(self) -> None:
        """The example of RFC 1939 section 7 gives its digest."""
        self.assertEqual(apopDigest(RFC_TIMESTAMP, "tanstaaf"), RFC_DIGEST)

    def test_utf8(self) -> None:
        """A non-ASCII secret is digested as UTF-8."""
        self.assertEqual(
            apopDigest(b"<1@x>", "s\u00e9same"),
            hashlib.md5(b"<1@x>s\xc3\xa9same").hexdigest().encode(),
        )


class APOPCheckerTests(SynchronousTestCase):
    """
    L{APOPChecker} checks APOP digests against the accounts' APOP secrets.
    """

    def setUp(self) -> None:
        self.users = MemoryUserStore()
        self.users.addUser("alice@example.org", hashPassword("secret-1", log2n=COST))
        self.users.setAPOPSecret("alice@example.org", "tanstaaf")
        self.users.addUser("bob@example.org", hashPassword("secret-2", log2n=COST))
        self.checker = APOPChecker(self.users, "example.org")

    def check(
        self, user: bytes, digest: bytes, timestamp: bytes = RFC_TIMESTAMP
    ) -> Deferred[str]:
        return self.checker.requestAvatarId(APOPCredentials(timestamp, user, digest))

    def test_interface(self) -> None:
        """The checker is a cred checker of hashed-password credentials."""
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker))

    def test_right(self) -> None:
        """The right digest gives the canonical address, from a bare name too."""
        self.assertEqual(
            self.successResultOf(self.check(b"Alice@Example.ORG", RFC_DIGEST)),
            "alice@example.org",
        )
        self.assertEqual(
            self.successResultOf(self.check(b"alice", RFC_DIGEST)),
            "alice@example.org",
        )

    def test_upperCaseDigest(self) -> None:
        """A digest in upper-case hex is accepted (RFC 1939 asks lower case)."""
        self.successResultOf(self.check(b"alice", RFC_DIGEST.upper()))

    def test_wrongDigest(self) -> None:
        """A wrong digest, or the right one for another timestamp, fails."""
        self.failureResultOf(self.check(b"alice", b"0" * 32), UnauthorizedLogin)
        self.failureResultOf(
            self.check(b"alice", RFC_DIGEST, b"<1897.1@dbc.mtview.ca.us>"),
            UnauthorizedLogin,
        )
        self.failureResultOf(self.check(b"alice", RFC_DIGEST[:-1]), UnauthorizedLogin)

    def test_loginPasswordIsNotTheSecret(self) -> None:
        """
        An account without an APOP secret cannot use APOP, not even with a
        digest made from its login password.
        """
        digest = apopDigest(RFC_TIMESTAMP, "secret-2")
        self.failureResultOf(self.check(b"bob", digest), UnauthorizedLogin)

    def test_unknownAndNoSecretAlike(self) -> None:
        """
        An unknown account and an account without an APOP secret fail the
        same way, even with the digest of the dummy secret.
        """
        digest = apopDigest(RFC_TIMESTAMP, "appnet-no-apop-secret")
        unknown = self.failureResultOf(self.check(b"carol", digest), UnauthorizedLogin)
        noSecret = self.failureResultOf(self.check(b"bob", digest), UnauthorizedLogin)
        self.assertEqual(str(unknown.value), str(noSecret.value))

    def test_unknownReadsTheStore(self) -> None:
        """
        An unknown account costs the same store read as a known one (so
        timing does not tell accounts apart).
        """
        read: list[str] = []
        users = self.users

        class Counting:
            def getAPOPSecret(self, address: str) -> Deferred[str | None]:
                read.append(address)
                return users.getAPOPSecret(address)

        self.checker = APOPChecker(Counting(), "example.org")  # type: ignore[arg-type]
        self.failureResultOf(self.check(b"carol", RFC_DIGEST), UnauthorizedLogin)
        self.failureResultOf(self.check(b"bob", RFC_DIGEST), UnauthorizedLogin)
        self.assertEqual(read, ["carol@example.org", "bob@example.org"])

    def test_garbage(self) -> None:
        """Names that cannot be addresses and non-bytes digests fail."""
        self.failureResultOf(self.check(b"\xff\xfe", RFC_DIGEST), UnauthorizedLogin)
        self.failureResultOf(self.check(b"a b@c", RFC_DIGEST), UnauthorizedLogin)
        self.failureResultOf(
            self.check(b"alice", RFC_DIGEST.decode()),  # type: ignore[arg-type]
            UnauthorizedLogin,
        )

    def test_otherHashedCredentialsRefused(self) -> None:
        """
        CRAM-MD5 credentials (also IUsernameHashedPassword) are refused:
        the APOP secret is for APOP only.
        """
        cram = CramMD5Credentials(b"example.org")
        cram.challenge = b"<1.2@example.org>"
        cram.username = b"alice@example.org"
        cram.response = hmac.HMAC(b"tanstaaf", cram.challenge, "md5").hexdigest()
        self.failureResultOf(self.checker.requestAvatarId(cram), UnauthorizedLogin)


class APOPPortalTests(SynchronousTestCase):
    """
    APOP logins go through the guarded portal: delayed on failure and
    throttled per address and per account, like password logins.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.users = MemoryUserStore()
        self.users.addUser("alice@example.org", hashPassword("secret-1", log2n=COST))
        self.users.setAPOPSecret("alice@example.org", "tanstaaf")
        self.users.addUser("bob@example.org", hashPassword("secret-2", log2n=COST))
        self.auth = Authenticator(
            UserChecker(self.users, None, inline),
            LoginThrottle(self.clock, maxFailures=2, maxAccountFailures=3, window=300),
            self.clock,
            failureDelay=2.0,
            apop=APOPChecker(self.users),
        )

    def login(
        self, user: str, digest: bytes, client: str = "192.0.2.1"
    ) -> Deferred[Any]:
        portal = self.auth.portalFor(Realm(), client)
        return portal.login(
            APOPCredentials(RFC_TIMESTAMP, user.encode(), digest), None, Avatar
        )

    def test_success(self) -> None:
        """The right digest logs in at once with the canonical avatar."""
        iface, avatar, logout = self.successResultOf(
            self.login("alice@example.org", RFC_DIGEST)
        )
        self.assertEqual(avatar, "alice@example.org")

    def test_failuresDelayedAlike(self) -> None:
        """
        A wrong digest, an unknown account and an account without a secret
        are each answered only after the failure delay, with the same
        error.
        """
        errors = []
        for user in ("alice@example.org", "carol@example.org", "bob@example.org"):
            d = self.login(user, b"0" * 32, client=f"192.0.2.{len(errors) + 10}")
            self.clock.advance(1.9)
            self.assertNoResult(d)
            self.clock.advance(0.1)
            failure = self.failureResultOf(d, UnauthorizedLogin)
            self.assertNotIsInstance(failure.value, LoginThrottled)
            errors.append(str(failure.value))
        self.assertEqual(len(set(errors)), 1, errors)

    def test_addressThrottled(self) -> None:
        """
        Wrong digests count against the address: then even the right one
        is refused from there, while another address may log in.
        """
        for _ in range(2):
            d = self.login("alice@example.org", b"0" * 32)
            self.clock.advance(2)
            self.failureResultOf(d, UnauthorizedLogin)
        d = self.login("alice@example.org", RFC_DIGEST)
        self.clock.advance(2)
        self.failureResultOf(d, LoginThrottled)
        self.successResultOf(
            self.login("alice@example.org", RFC_DIGEST, client="192.0.2.2")
        )

    def test_accountThrottled(self) -> None:
        """Wrong digests from many addresses throttle the account."""
        for i in range(3):
            d = self.login("alice@example.org", b"0" * 32, client=f"198.51.100.{i}")
            self.clock.advance(2)
            self.failureResultOf(d, UnauthorizedLogin)
        d = self.login("alice@example.org", RFC_DIGEST, client="203.0.113.9")
        self.clock.advance(2)
        self.failureResultOf(d, LoginThrottled)
        self.clock.advance(300)
        self.successResultOf(
            self.login("alice@example.org", RFC_DIGEST, client="203.0.113.9")
        )

    def test_sharedWithPasswords(self) -> None:
        """
        APOP and password failures count together: a wrong digest and a
        wrong password from one address throttle it for both.
        """
        d = self.login("alice@example.org", b"0" * 32)
        self.clock.advance(2)
        self.failureResultOf(d, UnauthorizedLogin)
        portal = self.auth.portalFor(Realm(), "192.0.2.1")
        d = portal.login(UsernamePassword(b"alice@example.org", b"bad"), None, Avatar)
        self.clock.advance(2)
        self.failureResultOf(d, UnauthorizedLogin)
        d = portal.login(
            UsernamePassword(b"alice@example.org", b"secret-1"), None, Avatar
        )
        self.clock.advance(2)
        self.failureResultOf(d, LoginThrottled)

    def test_offByDefault(self) -> None:
        """
        Without an APOP checker (APOP off) the portal does not handle APOP
        credentials at all.
        """
        auth = Authenticator(
            UserChecker(self.users, None, inline),
            LoginThrottle(self.clock),
            self.clock,
            failureDelay=0,
        )
        self.assertIsNone(auth.apop)
        portal = auth.portalFor(Realm(), "192.0.2.1")
        self.assertEqual(len(portal.listCredentialsInterfaces()), 1)
        d = portal.login(
            APOPCredentials(RFC_TIMESTAMP, b"alice@example.org", RFC_DIGEST),
            None,
            Avatar,
        )
        self.failureResultOf(d, UnhandledCredentials)
