"""
The seams between protocol code and durable state.

Protocol code talks to storage only through these interfaces, so tests use
the in-memory fakes of L{appnet.store.memory} and a PostgreSQL store can
replace SQLite. Every method returns a Deferred: implementations must not
block the reactor.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

__all__ = ["ISessionStore", "IUserStore", "IStore", "SessionRecord", "User"]


@frozen
class User:
    """
    One account, shared by every protocol.

    @ivar address: the canonical address (L{appnet.address.normalizeAccount}).
    @ivar passwordHash: the encoded scrypt hash (L{appnet.auth.hashPassword}).
    @ivar admin: may use the admin parts of the web API.
    @ivar quota: mailbox and FTP quota in bytes, or C{None} for the default.
    @ivar created: creation time, seconds since the epoch.
    """

    address: str
    passwordHash: str
    admin: bool = False
    quota: int | None = None
    created: float = 0.0

    @property
    def domain(self) -> str:
        """The domain part of the address."""
        return self.address.rpartition("@")[2]

    def __repr__(self) -> str:
        # Never print the hash into logs by accident.
        return f"User({self.address!r}, admin={self.admin}, quota={self.quota})"


class IUserStore(Interface):
    """
    The accounts.
    """

    def addUser(
        address: str, passwordHash: str, admin: bool = False, quota: int | None = None
    ) -> Deferred[User]:
        """
        Create an account. C{address} must already be canonical.

        @raise appnet.errors.UserExists: (as a failure) if it exists.
        """

    def getUser(address: str) -> Deferred[User | None]:
        """
        The account with this canonical address, or C{None}.
        """

    def setPasswordHash(address: str, passwordHash: str) -> Deferred[None]:
        """
        Replace an account's password hash.

        @raise appnet.errors.NoSuchUser: (as a failure) if it does not exist.
        """

    def deleteUser(address: str) -> Deferred[None]:
        """
        Delete an account.

        @raise appnet.errors.NoSuchUser: (as a failure) if it does not exist.
        """

    def listUsers() -> Deferred[Sequence[User]]:
        """
        Every account, ordered by domain then address.
        """

    def domains() -> Deferred[frozenset[str]]:
        """
        Every domain that has at least one account.
        """


@frozen
class SessionRecord:
    """
    One web session, as stored.

    @ivar key: the session's lookup key: the SHA-256 (hex) of the secret
        cookie value. The store never sees the cookie value itself, so a
        copy of the database does not hand out live sessions.
    @ivar account: the canonical address of the logged-in account.
    @ivar csrfToken: the session's anti-CSRF token (L{appnet.web.csrf}).
    @ivar created: when the session was created, seconds since the epoch.
    @ivar expires: when it stops being valid unless extended.
    """

    key: str
    account: str
    csrfToken: str
    created: float
    expires: float

    def __repr__(self) -> str:
        # Keys and tokens stay out of logs.
        return f"SessionRecord({self.account!r}, expires={self.expires})"


class ISessionStore(Interface):
    """
    Web sessions (L{appnet.web.sessions}), so that a login survives a
    restart and is seen by every node sharing the store.
    """

    def addSession(record: SessionRecord) -> Deferred[None]:
        """
        Store a new session. Its key is random and new.
        """

    def getSession(key: str) -> Deferred[SessionRecord | None]:
        """
        The session with this key, expired or not, or C{None}.
        """

    def touchSession(key: str, expires: float) -> Deferred[bool]:
        """
        Move a session's expiry to C{expires}.

        @return: whether the session existed.
        """

    def deleteSession(key: str) -> Deferred[bool]:
        """
        Delete one session (logout).

        @return: whether it existed.
        """

    def deleteAccountSessions(account: str) -> Deferred[int]:
        """
        Delete every session of one account.

        @return: how many were deleted.
        """

    def purgeExpired(now: float) -> Deferred[int]:
        """
        Delete every session whose expiry is at or before C{now}.

        @return: how many were deleted.
        """


class IStore(Interface):
    """
    All durable state of one appnet node, one attribute per seam. Protocol
    issues add their seams (mail store, queue, sessions) here.
    """

    users = Attribute("The L{IUserStore}.")
    sessions = Attribute("The L{ISessionStore}.")

    def start() -> Deferred[None]:
        """
        Open the store; fires when it is ready.
        """

    def stop() -> Deferred[None]:
        """
        Close the store after finishing queued work.
        """
