"""
The PostgreSQL store: many appnet nodes over one database.
"""

from appnet.store.pg.database import StoreUnavailable
from appnet.store.pg.store import PostgreSQLStore, conninfoFor, migrateDatabase

__all__ = [
    "PostgreSQLStore",
    "StoreUnavailable",
    "conninfoFor",
    "isDatabaseURL",
    "migrateDatabase",
]


def isDatabaseURL(value: str) -> bool:
    """Whether a store setting names a PostgreSQL database."""
    return value.startswith(("postgresql://", "postgres://"))
