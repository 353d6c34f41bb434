"""
Tests for L{appnet.auth}: password hashing, the checker, throttling.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import CramMD5Credentials, UsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.mail.pop3 import APOPCredentials
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import Interface, implementer
from zope.interface.verify import verifyObject

from appnet.auth import (
    APOPChecker,
    Authenticator,
    LoginThrottle,
    LoginThrottled,
    UserChecker,
    apopDigest,
    hashPassword,
    verifyPassword,
)
from appnet.store.memory import MemoryUserStore

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
    L{LoginThrottle} counts failures per address and per account.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.throttle = LoginThrottle(
            self.clock, maxFailures=3, maxAccountFailures=5, window=60
        )

    def test_addressThrottled(self) -> None:
        """After maxFailures from one address it is refused, others are not."""
        for _ in range(3):
            self.assertTrue(self.throttle.allowed("a@x.org", "10.0.0.1"))
            self.throttle.failed("a@x.org", "10.0.0.1")
        self.assertFalse(self.throttle.allowed("b@x.org", "10.0.0.1"))
        self.assertTrue(self.throttle.allowed("a@x.org", "10.0.0.2"))

    def test_accountThrottled(self) -> None:
        """Failures for one account from many addresses throttle the account."""
        for i in range(5):
            self.throttle.failed("a@x.org", f"10.0.0.{i}")
        self.assertFalse(self.throttle.allowed("a@x.org", "10.0.0.99"))
        self.assertTrue(self.throttle.allowed("b@x.org", "10.0.0.99"))

    def test_windowSlides(self) -> None:
        """Failures older than the window no longer count."""
        for _ in range(3):
            self.throttle.failed("a@x.org", "10.0.0.1")
        self.clock.advance(59)
        self.assertFalse(self.throttle.allowed("a@x.org", "10.0.0.1"))
        self.clock.advance(2)
        self.assertTrue(self.throttle.allowed("a@x.org", "10.0.0.1"))

    def test_successClears(self) -> None:
        for _ in range(2):
            self.throttle.failed("a@x.org", "10.0.0.1")
        self.throttle.succeeded("a@x.org", "10.0.0.1")
        self.throttle.failed("a@x.org", "10.0.0.1")
        self.assertTrue(self.throttle.allowed("a@x.org", "10.0.0.1"))

    def test_boundedMemory(self) -> None:
        """Stale entries are swept once the table passes its bound."""
        throttle = LoginThrottle(self.clock, maxFailures=3, window=10, maxEntries=100)
        for i in range(100):
            throttle.failed(None, f"10.0.{i // 250}.{i % 250}")
        self.clock.advance(11)
        throttle.failed(None, "192.0.2.1")
        self.assertLessEqual(len(throttle._failures), 1)


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
