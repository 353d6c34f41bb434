"""
Group commit: many small database writes share one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from appnet.store._db import Database

__all__ = ["GroupCommit"]

T = TypeVar("T")


@define
class GroupCommit:
    """
    Commits many small writes in few transactions: writes submitted while
    a commit is in flight wait and then share the next transaction, each
    in its own savepoint (one failing rolls back only itself). Every
    commit costs an fsync, so ten connections delivering at once pay for
    a couple of fsyncs instead of ten. Each write's Deferred fires only
    after the commit that holds it.
    """

    _db: Database
    _pending: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any]]] = field(
        factory=list, init=False
    )
    _busy: bool = field(default=False, init=False)

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """Like L{Database.write}, sharing a transaction with others."""
        d: Deferred[T] = Deferred()
        self._pending.append((fn, d))
        if not self._busy:
            self._flush()
        return d

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._busy = True

        def run(conn: sqlite3.Connection) -> list[tuple[bool, Any]]:
            outcomes: list[tuple[bool, Any]] = []
            for fn, _ in batch:
                conn.execute("SAVEPOINT item")
                try:
                    result = fn(conn)
                except Exception as e:
                    conn.execute("ROLLBACK TO item")
                    conn.execute("RELEASE item")
                    outcomes.append((False, e))
                else:
                    conn.execute("RELEASE item")
                    outcomes.append((True, result))
            return outcomes

        def done(outcomes: list[tuple[bool, Any]] | Failure) -> None:
            self._busy = False
            if self._pending:
                self._flush()
            for i, (_, d) in enumerate(batch):
                if isinstance(outcomes, Failure):
                    d.errback(outcomes)
                elif outcomes[i][0]:
                    d.callback(outcomes[i][1])
                else:
                    d.errback(outcomes[i][1])

        self._db.write(run).addBoth(done)
