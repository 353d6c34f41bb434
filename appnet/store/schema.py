"""
The schema of every component of the SQLite store, as migrations.

Each component owns its tables and its version sequence; append a
L{Migration} to change a schema, never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from appnet.store._db import Migration

USERS = [
    Migration(
        1,
        """
        CREATE TABLE users (
            address TEXT PRIMARY KEY,
            domain TEXT NOT NULL,
            password TEXT NOT NULL,
            admin INTEGER NOT NULL DEFAULT 0,
            quota INTEGER,
            created REAL NOT NULL
        );
        CREATE INDEX users_domain ON users (domain)
        """,
    ),
]

SESSIONS = [
    Migration(
        1,
        """
        CREATE TABLE web_sessions (
            key TEXT PRIMARY KEY,
            account TEXT NOT NULL,
            csrf TEXT NOT NULL,
            created REAL NOT NULL,
            expires REAL NOT NULL
        );
        CREATE INDEX web_sessions_account ON web_sessions (account);
        CREATE INDEX web_sessions_expires ON web_sessions (expires)
        """,
    ),
]

#: Every component's migrations, applied in this order at start.
SCHEMAS: Mapping[str, Sequence[Migration]] = {
    "users": USERS,
    "sessions": SESSIONS,
}
