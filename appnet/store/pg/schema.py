"""
The PostgreSQL store's schema, as migrations per component (the same
components as SQLite's, in their own C{schema_version} table).

Message bytes are rows of C{bodies}/C{body_chunks} (256 KiB each), shared
by every folder row and queue row that holds the same message, rather
than large objects: chunks are ordinary rows, so they follow transactions,
replication, C{pg_dump} and permissions like the rest, stream with COPY,
and leave no unlinked objects behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from appnet.store._db import Migration

__all__ = ["SCHEMAS"]

USERS = [
    Migration(
        1,
        """
        CREATE TABLE users (
            address TEXT PRIMARY KEY,
            domain TEXT NOT NULL,
            password TEXT NOT NULL,
            admin BOOLEAN NOT NULL DEFAULT FALSE,
            quota BIGINT,
            created DOUBLE PRECISION NOT NULL,
            apop_secret TEXT
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
            created DOUBLE PRECISION NOT NULL,
            expires DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX web_sessions_account ON web_sessions (account);
        CREATE INDEX web_sessions_expires ON web_sessions (expires)
        """,
    ),
]

BODIES = [
    Migration(
        1,
        """
        CREATE TABLE bodies (
            id BIGSERIAL PRIMARY KEY,
            size BIGINT NOT NULL,
            created DOUBLE PRECISION NOT NULL
                DEFAULT extract(epoch FROM now())
        );
        CREATE TABLE body_chunks (
            body BIGINT NOT NULL REFERENCES bodies (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (body, seq)
        );
        ALTER TABLE body_chunks ALTER COLUMN data SET STORAGE EXTERNAL
        """,
    ),
]

MAIL = [
    Migration(
        1,
        """
        CREATE TABLE mail_accounts (
            owner TEXT PRIMARY KEY,
            bytes BIGINT NOT NULL DEFAULT 0,
            messages BIGINT NOT NULL DEFAULT 0,
            last_uidvalidity BIGINT NOT NULL DEFAULT 0
        );
        CREATE TABLE mail_folders (
            id BIGSERIAL PRIMARY KEY,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            uidvalidity BIGINT NOT NULL,
            uidnext BIGINT NOT NULL DEFAULT 1,
            modseq BIGINT NOT NULL DEFAULT 1,
            subscribed BOOLEAN NOT NULL DEFAULT TRUE,
            first_recent_uid BIGINT NOT NULL DEFAULT 1,
            UNIQUE (owner, name)
        );
        CREATE TABLE mail_messages (
            folder BIGINT NOT NULL REFERENCES mail_folders (id) ON DELETE CASCADE,
            uid BIGINT NOT NULL,
            body BIGINT NOT NULL REFERENCES bodies (id),
            size BIGINT NOT NULL,
            flags TEXT NOT NULL DEFAULT '',
            internaldate DOUBLE PRECISION NOT NULL,
            modseq BIGINT NOT NULL,
            PRIMARY KEY (folder, uid)
        );
        CREATE INDEX mail_messages_modseq ON mail_messages (folder, modseq);
        CREATE INDEX mail_messages_body ON mail_messages (body);
        CREATE TABLE mail_expunged (
            folder BIGINT NOT NULL REFERENCES mail_folders (id) ON DELETE CASCADE,
            uid BIGINT NOT NULL,
            modseq BIGINT NOT NULL,
            PRIMARY KEY (folder, uid)
        );
        CREATE TABLE mail_locks (
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            holder TEXT NOT NULL,
            expires DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (owner, name)
        )
        """,
    ),
    Migration(
        2,
        """
        CREATE INDEX mail_messages_date
            ON mail_messages (folder, internaldate DESC, uid DESC)
        """,
    ),
]

QUEUE = [
    Migration(
        1,
        """
        CREATE TABLE queue_messages (
            id BIGSERIAL PRIMARY KEY,
            sender TEXT NOT NULL,
            submitter TEXT,
            body BIGINT NOT NULL REFERENCES bodies (id),
            size BIGINT NOT NULL,
            created DOUBLE PRECISION NOT NULL,
            next_attempt DOUBLE PRECISION NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            held BOOLEAN NOT NULL DEFAULT FALSE,
            last_error TEXT,
            warned BOOLEAN NOT NULL DEFAULT FALSE,
            claimed_by TEXT,
            claimed_until DOUBLE PRECISION NOT NULL DEFAULT 0
        );
        CREATE INDEX queue_messages_due ON queue_messages (held, next_attempt);
        CREATE INDEX queue_messages_claimed ON queue_messages (claimed_by);
        CREATE INDEX queue_messages_body ON queue_messages (body);
        CREATE TABLE queue_recipients (
            message BIGINT NOT NULL REFERENCES queue_messages (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            address TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'deferred', 'bounced')),
            response TEXT,
            updated DOUBLE PRECISION NOT NULL,
            notified BOOLEAN NOT NULL DEFAULT FALSE,
            PRIMARY KEY (message, address)
        )
        """,
    ),
]

#: Every component's migrations, applied in this order at start.
SCHEMAS: Mapping[str, Sequence[Migration]] = {
    "users": USERS,
    "sessions": SESSIONS,
    "bodies": BODIES,
    "mail": MAIL,
    "queue": QUEUE,
}
