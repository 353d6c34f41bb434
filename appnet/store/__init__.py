"""
Durable state: accounts now; mailboxes, the queue and web sessions as their
protocols land. Protocol code depends on the interfaces only.
"""

from appnet.store.interfaces import IStore, IUserStore, User
from appnet.store.memory import MemoryStore, MemoryUserStore
from appnet.store.sqlite import SQLiteStore, SQLiteUserStore

__all__ = [
    "IStore",
    "IUserStore",
    "MemoryStore",
    "MemoryUserStore",
    "SQLiteStore",
    "SQLiteUserStore",
    "User",
]
