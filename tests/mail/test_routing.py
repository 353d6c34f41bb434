"""
Tests for L{appnet.mail.routing.Router}: how many store reads a recipient
costs, and that the shortcut for accounts decides as the full rules do.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from appnet.auth import hashPassword
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

        self.router = Router(
            self.users,
            localDomains,
            5000,
            {"info": (BOB,), "plus+tag": (BOB,)},
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
        and no read of the local domains.
        """
        self.assertEqual(self.route("bob"), Route(((BOB, 5000),)))
        self.assertEqual(self.route("Bob+news"), Route(((BOB, 5000),)))
        self.assertEqual(self.users.lookups, [BOB, BOB])
        self.assertEqual(self.domainReads, 0)

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
        Nothing is remembered between recipients: once the account is
        deleted, its address is unknown.
        """
        self.route("bob")
        self.store.users.deleteUser(BOB)
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
