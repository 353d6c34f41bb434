"""
Accounts and web sessions in PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from attrs import define, field
from psycopg import errors as pgerrors
from twisted.internet.defer import Deferred
from zope.interface import implementer

from appnet.errors import NoSuchUser, UserExists
from appnet.store.domains import CachedDomains
from appnet.store.interfaces import ISessionStore, IUserStore, SessionRecord, User
from appnet.store.pg.database import Connection, PGDatabase

__all__ = ["USERS_CHANNEL", "PGSessionStore", "PGUserStore"]

#: The NOTIFY channel of account changes (added, deleted); the payload is
#: the address.
USERS_CHANNEL = "appnet_users"

_COLUMNS = "address, password, admin, quota, created"
_SELECT = _COLUMNS + ", apop_secret IS NOT NULL"


def _user(row: Any) -> User:
    return User(row[0], row[1], bool(row[2]), row[3], row[4], bool(row[5]))


@implementer(IUserStore)
@define
class PGUserStore:
    """
    Accounts in the C{users} table.

    Adding or deleting an account notifies every node sharing the
    database (L{USERS_CHANNEL}); each node's listener then calls L{heard},
    which moves L{generation} on, so caches of account facts drop what
    they hold. The set of domains is cached the same way, and for at most
    C{domainsTTL} seconds (a notification missed while the listener
    reconnects).
    """

    _db: PGDatabase
    _now: Callable[[], float] = time.time
    domainsTTL: float = 5.0
    _domains: CachedDomains = field(init=False)

    def __attrs_post_init__(self) -> None:
        self._domains = CachedDomains(self._now, self.domainsTTL)

    @property
    def generation(self) -> int:
        return self._domains.generation

    def heard(self, payload: str = "") -> None:
        """
        Accounts changed, on this node or another (or notifications may
        have been missed): forget what was cached.
        """
        self._domains.changed()

    def _changed(self, conn: Connection, address: str) -> None:
        """In a changing transaction: tell every node when it commits."""
        conn.execute("SELECT pg_notify(%s, %s)", (USERS_CHANNEL, address))

    def _accountsChanged(self, result: Any) -> Any:
        # At once on this node; the notification follows for the others.
        self.heard()
        return result

    def addUser(
        self,
        address: str,
        passwordHash: str,
        admin: bool = False,
        quota: int | None = None,
    ) -> Deferred[User]:
        user = User(address, passwordHash, admin, quota, self._now())

        def insert(conn: Connection) -> User:
            try:
                conn.execute(
                    f"INSERT INTO users (domain, {_COLUMNS})"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (
                        user.domain,
                        address,
                        passwordHash,
                        bool(admin),
                        quota,
                        user.created,
                    ),
                )
            except pgerrors.UniqueViolation:
                raise UserExists(address) from None
            self._changed(conn, address)
            return user

        return self._db.run(insert).addCallback(self._accountsChanged)

    def getUser(self, address: str) -> Deferred[User | None]:
        def select(conn: Connection) -> User | None:
            row = conn.execute(
                f"SELECT {_SELECT} FROM users WHERE address = %s", (address,)
            ).fetchone()
            return None if row is None else _user(row)

        return self._db.run(select)

    def _update(self, sql: str, args: tuple[Any, ...], address: str) -> Deferred[None]:
        def update(conn: Connection) -> None:
            if conn.execute(sql, args).rowcount == 0:
                raise NoSuchUser(address)

        return self._db.run(update)

    def setPasswordHash(self, address: str, passwordHash: str) -> Deferred[None]:
        return self._update(
            "UPDATE users SET password = %s WHERE address = %s",
            (passwordHash, address),
            address,
        )

    def setAPOPSecret(self, address: str, secret: str | None) -> Deferred[None]:
        return self._update(
            "UPDATE users SET apop_secret = %s WHERE address = %s",
            (secret, address),
            address,
        )

    def getAPOPSecret(self, address: str) -> Deferred[str | None]:
        def select(conn: Connection) -> str | None:
            row = conn.execute(
                "SELECT apop_secret FROM users WHERE address = %s", (address,)
            ).fetchone()
            return None if row is None else row[0]

        return self._db.run(select)

    def deleteUser(self, address: str) -> Deferred[None]:
        def delete(conn: Connection) -> None:
            sql = "DELETE FROM users WHERE address = %s"
            if conn.execute(sql, (address,)).rowcount == 0:
                raise NoSuchUser(address)
            self._changed(conn, address)

        return self._db.run(delete).addCallback(self._accountsChanged)

    def listUsers(self) -> Deferred[Sequence[User]]:
        def select(conn: Connection) -> Sequence[User]:
            rows = conn.execute(
                f"SELECT {_SELECT} FROM users ORDER BY domain, address"
            ).fetchall()
            return [_user(row) for row in rows]

        return self._db.run(select)

    def domains(self) -> Deferred[frozenset[str]]:
        def select(conn: Connection) -> frozenset[str]:
            rows = conn.execute("SELECT DISTINCT domain FROM users").fetchall()
            return frozenset(row[0] for row in rows)

        return self._domains.get(lambda: self._db.run(select))


_SESSION_COLUMNS = "key, account, csrf, created, expires"


@implementer(ISessionStore)
@define
class PGSessionStore:
    """
    Web sessions in the C{web_sessions} table, shared by every node.
    """

    _db: PGDatabase

    def _count(self, sql: str, args: tuple[Any, ...]) -> Deferred[int]:
        def update(conn: Connection) -> int:
            return conn.execute(sql, args).rowcount

        return self._db.run(update)

    def addSession(self, record: SessionRecord) -> Deferred[None]:
        def insert(conn: Connection) -> None:
            conn.execute(
                f"INSERT INTO web_sessions ({_SESSION_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s)",
                (
                    record.key,
                    record.account,
                    record.csrfToken,
                    record.created,
                    record.expires,
                ),
            )

        return self._db.run(insert)

    def getSession(self, key: str) -> Deferred[SessionRecord | None]:
        def select(conn: Connection) -> SessionRecord | None:
            row = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM web_sessions WHERE key = %s", (key,)
            ).fetchone()
            return None if row is None else SessionRecord(*row)

        return self._db.run(select)

    def touchSession(self, key: str, expires: float) -> Deferred[bool]:
        return self._count(
            "UPDATE web_sessions SET expires = %s WHERE key = %s", (expires, key)
        ).addCallback(bool)

    def deleteSession(self, key: str) -> Deferred[bool]:
        return self._count(
            "DELETE FROM web_sessions WHERE key = %s", (key,)
        ).addCallback(bool)

    def deleteAccountSessions(self, account: str) -> Deferred[int]:
        return self._count("DELETE FROM web_sessions WHERE account = %s", (account,))

    def purgeExpired(self, now: float) -> Deferred[int]:
        return self._count("DELETE FROM web_sessions WHERE expires <= %s", (now,))
