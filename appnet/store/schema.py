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
    # POP3 APOP: an optional shared secret per account, apart from the
    # scrypt-hashed login password. Existing accounts have none.
    Migration(2, "ALTER TABLE users ADD COLUMN apop_secret TEXT"),
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

#: Mailboxes: folders per account, one index row per message (its bytes are
#: an immutable file under DATA/mail/store/), usage for quota, tombstones of
#: expunged UIDs (for "changes since modseq"), and named locks with expiry.
MAIL = [
    Migration(
        1,
        """
        CREATE TABLE mail_accounts (
            owner TEXT PRIMARY KEY,
            bytes INTEGER NOT NULL DEFAULT 0,
            messages INTEGER NOT NULL DEFAULT 0,
            last_uidvalidity INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE mail_folders (
            id INTEGER PRIMARY KEY,
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            uidvalidity INTEGER NOT NULL,
            uidnext INTEGER NOT NULL DEFAULT 1,
            modseq INTEGER NOT NULL DEFAULT 1,
            subscribed INTEGER NOT NULL DEFAULT 1,
            UNIQUE (owner, name)
        );
        CREATE TABLE mail_messages (
            folder INTEGER NOT NULL REFERENCES mail_folders (id) ON DELETE CASCADE,
            uid INTEGER NOT NULL,
            file TEXT NOT NULL,
            size INTEGER NOT NULL,
            flags TEXT NOT NULL DEFAULT '',
            internaldate REAL NOT NULL,
            modseq INTEGER NOT NULL,
            PRIMARY KEY (folder, uid)
        ) WITHOUT ROWID;
        CREATE INDEX mail_messages_modseq ON mail_messages (folder, modseq);
        CREATE TABLE mail_expunged (
            folder INTEGER NOT NULL REFERENCES mail_folders (id) ON DELETE CASCADE,
            uid INTEGER NOT NULL,
            modseq INTEGER NOT NULL,
            PRIMARY KEY (folder, uid)
        ) WITHOUT ROWID;
        CREATE TABLE mail_locks (
            owner TEXT NOT NULL,
            name TEXT NOT NULL,
            holder TEXT NOT NULL,
            expires REAL NOT NULL,
            PRIMARY KEY (owner, name)
        )
        """,
    ),
    # IMAP's \Recent: the first UID no read-write session has claimed
    # (IMailStore.claimRecent). Folders that existed before have nothing
    # recent; a new folder starts at 1, its UIDNEXT.
    Migration(
        2,
        """
        ALTER TABLE mail_folders ADD COLUMN first_recent_uid INTEGER NOT NULL
            DEFAULT 1;
        UPDATE mail_folders SET first_recent_uid = uidnext
        """,
    ),
    # Bytes readers see before the message file's (the Return-Path line),
    # kept here so that a received file can be hard-linked into the queue
    # and the mailboxes alike. C{size} counts them. The index serves a
    # folder's newest-first pages (webmail).
    Migration(
        3,
        """
        ALTER TABLE mail_messages ADD COLUMN prefix BLOB NOT NULL DEFAULT x'';
        CREATE INDEX mail_messages_date ON mail_messages (folder, internaldate, uid)
        """,
    ),
    # Small messages' bytes in the database (SQLiteMailStore.inlineLimit):
    # a message row names either a file (C{body} NULL) or a body row of
    # its own (C{file} empty), removed with it. Rows made before keep
    # their files.
    Migration(
        4,
        """
        CREATE TABLE mail_bodies (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
        ALTER TABLE mail_messages ADD COLUMN body INTEGER
        """,
    ),
    # What was expunged after a modseq (catching up, and bringing a kept
    # folder listing up to date) without reading every expunge ever made.
    Migration(
        5,
        """
        CREATE INDEX mail_expunged_modseq ON mail_expunged (folder, modseq)
        """,
    ),
]

#: The outgoing queue: one row per message (its bytes are a file under
#: DATA/mail/queue/), one per envelope recipient with its own state.
QUEUE = [
    Migration(
        1,
        """
        CREATE TABLE queue_messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sender TEXT NOT NULL,
            submitter TEXT,
            file TEXT NOT NULL,
            size INTEGER NOT NULL,
            created REAL NOT NULL,
            next_attempt REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            held INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        );
        CREATE INDEX queue_messages_due ON queue_messages (held, next_attempt);
        CREATE TABLE queue_recipients (
            message INTEGER NOT NULL REFERENCES queue_messages (id) ON DELETE CASCADE,
            address TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'deferred', 'bounced')),
            response TEXT,
            updated REAL NOT NULL,
            PRIMARY KEY (message, address)
        )
        """,
    ),
    # The relay: claims with a lease (a crashed runner's claims run out),
    # the delay warning sent, and per recipient whether the sender was
    # told of its bounce.
    Migration(
        2,
        """
        ALTER TABLE queue_messages ADD COLUMN warned INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE queue_messages ADD COLUMN claimed_by TEXT;
        ALTER TABLE queue_messages ADD COLUMN claimed_until REAL NOT NULL DEFAULT 0;
        ALTER TABLE queue_recipients ADD COLUMN notified INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX queue_messages_claimed ON queue_messages (claimed_by)
        """,
    ),
]

#: Every component's migrations, applied in this order at start.
SCHEMAS: Mapping[str, Sequence[Migration]] = {
    "users": USERS,
    "sessions": SESSIONS,
    "mail": MAIL,
    "queue": QUEUE,
}
