"""
Durable state: accounts now; mailboxes, the queue and web sessions as their
protocols land. Protocol code depends on the interfaces only.
"""

from appnet.store.interfaces import (
    ISessionStore,
    IStore,
    IUserStore,
    SessionRecord,
    User,
)
from appnet.store.memory import MemorySessionStore, MemoryStore, MemoryUserStore
from appnet.store.sqlite import SQLiteSessionStore, SQLiteStore, SQLiteUserStore

__all__ = [
    "ISessionStore",
    "IStore",
    "IUserStore",
    "MemorySessionStore",
    "MemoryStore",
    "MemoryUserStore",
    "SQLiteSessionStore",
    "SQLiteStore",
    "SQLiteUserStore",
    "SessionRecord",
    "User",
]
