"""
Tests for L{appnet.mail.routing.Router}: how many store reads a recipient
costs, that the shortcut for accounts decides as the full rules do, and
that remembered accounts are forgotten when accounts change.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appnet.auth import hashPassword
from appnet.mail import routing
from appnet.mail.envelope import Mailbox
from appnet.mail.routing import Rejected, Route, Router
from appnet.store.memory import MemoryStore

BOB = "bob@example.org"


class CountingUsers:
    """A user store that counts the lookups made through it."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.lookups: list[str] = []

    def getUser(self, address: str) -> Deferred[Any]:
        self.lookups.append(address)
        return self.real.getUser(address)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class AccountShortcutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = MemoryStore()
        self.store.users.addUser(BOB, hashPassword("pw", log2n=4))
        self.users = CountingUsers(self.store.users)
        self.domainReads = 0

        async def localDomains() -> frozenset[str]:
            self.domainReads += 1
            return frozenset({"example.org"}) | await self.store.users.domains()

        self.clock = Clock()
        self.router = Router(
            self.users,
            localDomains,
            5000,
            {"info": (BOB,), "plus+tag": (BOB,)},
            now=self.clock.seconds,
        )

    def route(self, local: str, domain: str = "example.org") -> Route:
        return self.successResultOf(
            self.router.route(Mailbox(local, domain), relay=False)
        )

    def refused(self, local: str, domain: str = "example.org") -> Rejected:
        failure = self.failureResultOf(
            self.router.route(Mailbox(local, domain), relay=False), Rejected
        )
        assert isinstance(failure.value, Rejected)
        return failure.value

    def test_accountOneRead(self) -> None:
        """
        An account's own address (or a +tag of it) costs one user lookup
        and no read of the local domains; once found, the account is
        remembered and the next recipient for it costs no lookup.
        """
        self.assertEqual(self.route("bob"), Route(((BOB, 5000),)))
        self.assertEqual(self.route("Bob+news"), Route(((BOB, 5000),)))
        self.assertEqual(self.users.lookups, [BOB])
        self.assertEqual(self.domainReads, 0)

    def test_routeNow(self) -> None:
        """
        L{Router.routeNow} decides only what memory knows: nothing before
        the account was read, its route after (as L{Router.route} gives
        it), and never an alias, an unknown address or a remote one.
        """
        self.assertIsNone(
            self.router.routeNow(Mailbox("bob", "example.org"), relay=False)
        )
        self.route("bob")
        self.assertEqual(
            self.router.routeNow(Mailbox("Bob+x", "example.org"), relay=False),
            Route(((BOB, 5000),)),
        )
        self.assertIsNone(
            self.router.routeNow(Mailbox("info", "example.org"), relay=False)
        )
        self.refused("nobody")
        self.assertIsNone(
            self.router.routeNow(Mailbox("nobody", "example.org"), relay=False)
        )
        self.assertIsNone(
            self.router.routeNow(Mailbox("a%b", "example.org"), relay=False)
        )
        self.assertEqual(self.users.lookups, [BOB, "nobody@example.org"])

    def test_rememberedForTTL(self) -> None:
        """
        A remembered account is read again once C{accountTTL} seconds
        have passed (a change made by another process is seen by then).
        """
        self.route("bob")
        self.clock.advance(self.router.accountTTL - 0.1)
        self.route("bob")
        self.assertEqual(self.users.lookups, [BOB])
        self.clock.advance(0.1)
        self.assertIsNone(
            self.router.routeNow(Mailbox("bob", "example.org"), relay=False)
        )
        self.route("bob")
        self.assertEqual(self.users.lookups, [BOB, BOB])

    def test_unknownNotRemembered(self) -> None:
        """
        An address without an account is asked for every time: an
        account added by another process gets its mail at once.
        """
        self.refused("carol")
        other = MemoryStore()
        other.users.addUser("carol@example.org", hashPassword("pw", log2n=4))
        self.store.users = other.users  # The same file, changed elsewhere.
        self.users.real = other.users
        self.assertEqual(self.route("carol"), Route((("carol@example.org", 5000),)))

    def test_changeWhileReading(self) -> None:
        """
        An account read while accounts changed is not remembered: what was
        read may already be out of date.
        """
        pending: Deferred[Any] = Deferred()
        real = self.users.real
        self.users.real = type("Slow", (), {"getUser": lambda _, a: pending})()
        self.users.real.generation = real.generation  # type: ignore[attr-defined]
        d = Deferred.fromCoroutine(
            self.router.route(Mailbox("bob", "example.org"), relay=False)
        )
        self.assertEqual(self.users.lookups, [BOB])
        self.users.real.generation += 1  # type: ignore[attr-defined]
        pending.callback(self.successResultOf(real.getUser(BOB)))
        self.assertEqual(self.successResultOf(d), Route(((BOB, 5000),)))
        self.assertIsNone(
            self.router.routeNow(Mailbox("bob", "example.org"), relay=False)
        )

    def test_bounded(self) -> None:
        """
        At most C{MAX_CACHED_ACCOUNTS} accounts are remembered: then all
        are forgotten at once.
        """
        self.patch(routing, "MAX_CACHED_ACCOUNTS", 2)
        for name in ("carol", "dave"):
            self.store.users.addUser(f"{name}@example.org", "x")
        for name in ("bob", "carol", "dave"):
            self.route(name)
        self.assertIsNone(
            self.router.routeNow(Mailbox("bob", "example.org"), relay=False)
        )
        self.assertIsNotNone(
            self.router.routeNow(Mailbox("dave", "example.org"), relay=False)
        )

    def test_unknownLooksUpOnce(self) -> None:
        """
        An unknown user is still 550 5.1.1, after one user lookup and one
        read of the local domains.
        """
        self.assertEqual(self.refused("nobody").code, 550)
        self.assertEqual(self.refused("nobody").enhanced, "5.1.1")
        self.assertEqual(self.users.lookups, ["nobody@example.org"] * 2)
        self.assertEqual(self.domainReads, 2)

    def test_deletedUser(self) -> None:
        """
        A remembered account is forgotten when accounts change through the
        store (its C{generation} moves): once the account is deleted, its
        address is unknown.
        """
        self.route("bob")
        self.store.users.deleteUser(BOB)
        self.assertIsNone(
            self.router.routeNow(Mailbox("bob", "example.org"), relay=False)
        )
        self.assertEqual(self.refused("bob").code, 550)

    def test_quotaChange(self) -> None:
        """An account's changed quota is seen by the next recipient."""
        self.route("bob")
        self.store.users.deleteUser(BOB)
        self.store.users.addUser(BOB, hashPassword("pw", log2n=4), quota=10)
        self.assertEqual(self.route("bob"), Route(((BOB, 10),)))

    def test_aliasesFirst(self) -> None:
        """
        An alias matching the address (whole, or without its +tag) still
        wins over the shortcut: its domains are read to expand it.
        """
        self.assertEqual(self.route("info"), Route(((BOB, 5000),)))
        self.assertEqual(self.route("plus+tag"), Route(((BOB, 5000),)))
        self.assertEqual(self.domainReads, 2)

    def test_sourceRouteRefused(self) -> None:
        """A local part holding % is a relay attempt, account or not."""
        self.store.users.addUser("a%b@example.org", hashPassword("pw", log2n=4))
        self.assertEqual(self.refused("a%b").code, 554)

    def test_remoteDomain(self) -> None:
        """An address in a domain without accounts is not relayed."""
        self.assertEqual(self.refused("bob", "remote.example").code, 554)
