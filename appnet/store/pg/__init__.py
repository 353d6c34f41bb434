"""
The PostgreSQL store: many appnet nodes over one database.
"""

from appnet.store.pg.database import StoreUnavailable
from appnet.store.pg.store import PostgreSQLStore

__all__ = ["PostgreSQLStore", "StoreUnavailable", "isDatabaseURL"]


def isDatabaseURL(value: str) -> bool:
    """Whether a store setting names a PostgreSQL database."""
    return value.startswith(("postgresql://", "postgres://"))
