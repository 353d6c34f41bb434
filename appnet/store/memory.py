"""
In-memory implementations of the store interfaces, for tests.

They keep the same contracts as the SQLite store (errors included) and
answer synchronously through already-fired Deferreds, so tests built on them
need no threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from attrs import define, evolve, field
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from appnet.errors import NoSuchUser, UserExists
from appnet.store.interfaces import (
    ISessionStore,
    IStore,
    IUserStore,
    SessionRecord,
    User,
)
from appnet.store.mailmemory import MemoryMailStore, MemoryQueueStore

__all__ = ["MemorySessionStore", "MemoryStore", "MemoryUserStore"]


@implementer(IUserStore)
@define
class MemoryUserStore:
    """
    Accounts in a dict.
    """

    _users: dict[str, User] = field(factory=dict)
    _now: Callable[[], float] = lambda: 0.0
    _apop: dict[str, str] = field(factory=dict)
    generation: int = field(default=0, init=False)

    def addUser(
        self,
        address: str,
        passwordHash: str,
        admin: bool = False,
        quota: int | None = None,
    ) -> Deferred[User]:
        if address in self._users:
            return fail(UserExists(address))
        user = User(address, passwordHash, admin, quota, self._now())
        self._users[address] = user
        self.generation += 1
        return succeed(user)

    def getUser(self, address: str) -> Deferred[User | None]:
        return succeed(self._users.get(address))

    def setPasswordHash(self, address: str, passwordHash: str) -> Deferred[None]:
        user = self._users.get(address)
        if user is None:
            return fail(NoSuchUser(address))
        self._users[address] = evolve(user, passwordHash=passwordHash)
        return succeed(None)

    def setAPOPSecret(self, address: str, secret: str | None) -> Deferred[None]:
        user = self._users.get(address)
        if user is None:
            return fail(NoSuchUser(address))
        if secret is None:
            self._apop.pop(address, None)
        else:
            self._apop[address] = secret
        self._users[address] = evolve(user, apop=secret is not None)
        return succeed(None)

    def getAPOPSecret(self, address: str) -> Deferred[str | None]:
        return succeed(self._apop.get(address))

    def deleteUser(self, address: str) -> Deferred[None]:
        if self._users.pop(address, None) is None:
            return fail(NoSuchUser(address))
        self._apop.pop(address, None)
        self.generation += 1
        return succeed(None)

    def listUsers(self) -> Deferred[Sequence[User]]:
        return succeed(
            sorted(self._users.values(), key=lambda u: (u.domain, u.address))
        )

    def domains(self) -> Deferred[frozenset[str]]:
        return succeed(frozenset(u.domain for u in self._users.values()))


@implementer(ISessionStore)
@define
class MemorySessionStore:
    """
    Web sessions in a dict.
    """

    _sessions: dict[str, SessionRecord] = field(factory=dict)

    def addSession(self, record: SessionRecord) -> Deferred[None]:
        self._sessions[record.key] = record
        return succeed(None)

    def getSession(self, key: str) -> Deferred[SessionRecord | None]:
        return succeed(self._sessions.get(key))

    def touchSession(self, key: str, expires: float) -> Deferred[bool]:
        record = self._sessions.get(key)
        if record is None:
            return succeed(False)
        self._sessions[key] = SessionRecord(
            record.key, record.account, record.csrfToken, record.created, expires
        )
        return succeed(True)

    def deleteSession(self, key: str) -> Deferred[bool]:
        return succeed(self._sessions.pop(key, None) is not None)

    def deleteAccountSessions(self, account: str) -> Deferred[int]:
        keys = [k for k, r in self._sessions.items() if r.account == account]
        for key in keys:
            del self._sessions[key]
        return succeed(len(keys))

    def purgeExpired(self, now: float) -> Deferred[int]:
        keys = [k for k, r in self._sessions.items() if r.expires <= now]
        for key in keys:
            del self._sessions[key]
        return succeed(len(keys))


@implementer(IStore)
@define
class MemoryStore:
    """
    Every seam of the store, in memory.
    """

    users: MemoryUserStore = field(factory=MemoryUserStore)
    sessions: MemorySessionStore = field(factory=MemorySessionStore)
    mail: MemoryMailStore = field(factory=MemoryMailStore)
    queue: MemoryQueueStore = field(factory=MemoryQueueStore)

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)
