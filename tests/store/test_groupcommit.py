"""
Tests for L{appnet.store.groupcommit}: writes that arrive together share
their file-system syncs and their commit, and fire only after both.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from appnet.errors import StoreError
from appnet.store._files import MessageFiles, StagedFile, Syncer
from appnet.store.groupcommit import Direct, GroupCommit

T = TypeVar("T")


class RecordingSyncer(Syncer):
    """Records syncs (without making them) in a shared log."""

    def __init__(self, log: list[tuple[str, str]], failData: bool = False) -> None:
        self.log = log
        self.failData = failData

    def data(self, path: str) -> None:
        if self.failData:
            raise OSError(5, "I/O error")
        self.log.append(("data", os.path.basename(path)))

    def descriptor(self, fd: int, path: str) -> None:
        os.fstat(fd)  # Still open.
        self.data(path)

    def directory(self, path: str) -> None:
        self.log.append(("directory", os.path.basename(path)))


class HeldThreads:
    """File 'threads' whose calls wait until the test pumps them."""

    def __init__(self) -> None:
        self.queue: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.queue.append((fn, args, d))
        return d

    def names(self) -> list[str]:
        """The names of the functions waiting, oldest first."""
        return [fn.__name__ for fn, _, _ in self.queue]

    def step(self) -> None:
        """Run the oldest waiting call."""
        fn, args, d = self.queue.pop(0)
        try:
            result = fn(*args)
        except Exception as e:
            d.errback(e)
        else:
            d.callback(result)

    def stepWhere(self, name: str) -> None:
        """Run the oldest waiting call of the function called C{name}."""
        [i] = [i for i, c in enumerate(self.queue) if c[0].__name__ == name][:1]
        self.queue.insert(0, self.queue.pop(i))
        self.step()

    def pump(self) -> None:
        """Run every call, and the calls those lead to."""
        while self.queue:
            self.step()


class FakeDatabase:
    """Runs writes in held 'threads' on an in-memory database, logging commits."""

    def __init__(self, log: list[tuple[str, str]], threads: HeldThreads) -> None:
        self.log = log
        self.threads = threads
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.execute("CREATE TABLE rows (name TEXT)")

    #: Called in each transaction, before its commit (a test's doings
    #: while the writer thread is busy).
    during: Callable[[], None] | None = None
    stopped = False

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        return self.threads(self._write, fn)

    def callInWriter(self, fn: Callable[[], object]) -> None:
        if self.stopped:
            raise StoreError("the store is not open")
        self.threads(fn)

    def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._write(fn)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        during, self.during = self.during, None
        if during is not None:
            during()
        self.conn.execute("BEGIN")
        try:
            result = fn(self.conn)
        except Exception:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        self.log.append(("commit", ""))
        return result


class GroupCommitTests(SynchronousTestCase):
    """
    Durability ordering and sharing of a file-system group commit: the
    reactor hands each job to the writer thread, which files and commits
    a batch, and the reactor hears of a batch once, when it is committed.
    """

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        self.files = MessageFiles(self.root)
        self.files.prepare()
        self.log: list[tuple[str, str]] = []
        self.threads = HeldThreads()
        self.db = FakeDatabase(self.log, self.threads)

    def group(self, **kw: Any) -> GroupCommit:
        threads = self.threads

        def inThread(fn: Callable[..., Any], *args: Any) -> None:
            threads(fn, *args)

        # (One queue here for the reactor and both kinds of thread.)
        direct = Direct(inThread, self.db.callInWriter, self.db.transaction, inThread)
        return GroupCommit(direct, RecordingSyncer(self.log, **kw))

    def assertStored(self, delivered: list[Deferred[list[str]]]) -> None:
        """Each delivery succeeded: its row committed, its file in place."""
        names = [self.successResultOf(d)[0] for d in delivered]
        stored = {r[0] for r in self.db.conn.execute("SELECT name FROM rows")}
        self.assertTrue(set(names) <= stored)
        for name in names:
            self.assertTrue(os.path.exists(self.files.absolute(name)))

    def staged(self, data: bytes) -> StagedFile:
        staged = self.files.stage()
        staged.write(data)
        self.addCleanup(staged.discard)
        return staged

    def deliver(
        self, group: GroupCommit, staged: StagedFile, fail: bool = False
    ) -> Deferred[list[str]]:
        owner = self.files.ownerDirectory("alice@example.org")
        placement = self.files.placement(staged, [owner], consume=True)

        def insert(conn: sqlite3.Connection, names: list[str]) -> list[str]:
            conn.executemany("INSERT INTO rows VALUES (?)", [(n,) for n in names])
            if fail:
                raise ValueError("refused")
            return names

        d = group.commit(placement, insert)
        d.addBoth(self.fired)
        return d

    def fired(self, result: T) -> T:
        self.log.append(("fired", ""))
        return result

    def test_failedCommitRemovesItsFiles(self) -> None:
        """
        A job whose database part fails rolls back alone, its file is
        removed and its Deferred fails; the others of the batch commit.
        """
        group = self.group()
        good = self.deliver(group, self.staged(b"good\r\n"))
        bad = self.deliver(group, self.staged(b"bad\r\n"), fail=True)
        self.threads.pump()
        self.failureResultOf(bad, ValueError)
        [name] = self.successResultOf(good)
        self.assertEqual(
            [r[0] for r in self.db.conn.execute("SELECT name FROM rows")], [name]
        )
        directory = self.files.absolute(self.files.ownerDirectory("alice@example.org"))
        self.assertEqual(os.listdir(directory), [os.path.basename(name)])

    def test_loneJobFails(self) -> None:
        """
        A job alone in its batch (committed without a savepoint) whose
        database part fails: nothing of it is committed, its file is
        removed, its Deferred fails; the next job commits.
        """
        group = self.group()
        bad = self.deliver(group, self.staged(b"bad\r\n"), fail=True)
        self.threads.pump()
        self.failureResultOf(bad, ValueError)
        self.assertEqual(list(self.db.conn.execute("SELECT name FROM rows")), [])
        directory = self.files.absolute(self.files.ownerDirectory("alice@example.org"))
        self.assertEqual(os.listdir(directory), [])
        good = self.deliver(group, self.staged(b"good\r\n"))
        self.threads.pump()
        [name] = self.successResultOf(good)
        self.assertEqual(
            [r[0] for r in self.db.conn.execute("SELECT name FROM rows")], [name]
        )

    def test_failedSyncFailsBatch(self) -> None:
        """
        A job whose data sync fails fails: nothing of it is committed and
        no name is made.
        """
        group = self.group(failData=True)
        ds = [self.deliver(group, self.staged(b"m%d\r\n" % i)) for i in range(3)]
        self.threads.pump()
        for d in ds:
            self.failureResultOf(d, OSError)
        self.assertNotIn(("commit", ""), self.log)
        directory = self.files.absolute(self.files.ownerDirectory("alice@example.org"))
        self.assertFalse(os.path.exists(directory) and os.listdir(directory))

    def test_databaseOnlyWrites(self) -> None:
        """
        Writes without files go straight to the writer thread, share its
        commit and make no syncs.
        """
        group = self.group()
        ds = [group.write(lambda conn: 1) for _ in range(3)]
        self.assertEqual(self.threads.names(), ["_commitBatch"])
        self.threads.pump()
        self.assertEqual([self.successResultOf(d) for d in ds], [1, 1, 1])
        self.assertEqual([k for k, _ in self.log], ["commit"])

    def test_otherWritesTakeTurns(self) -> None:
        """
        The writer thread commits one batch per call: a write queued for
        it meanwhile (not through this group commit) runs before the
        next batch, however busy the group commit is.
        """
        group = self.group()
        group.write(lambda conn: 1)
        other: list[Deferred[int]] = []

        def arrive() -> None:
            group.write(lambda conn: 2)
            other.append(self.db.write(lambda conn: 3))

        self.db.during = arrive
        self.threads.stepWhere("_commitBatch")
        # (One queue here for the reactor and both kinds of thread.)
        self.assertEqual(self.threads.names(), ["_write", "_fire", "_commitBatch"])
        self.threads.pump()
        self.assertEqual(self.successResultOf(other[0]), 3)

    def test_databaseStopped(self) -> None:
        """
        A job handed over once the database has stopped fails, and so do
        the others waiting with it; nothing is committed, and its file is
        removed.
        """
        group = self.group()
        self.db.stopped = True
        d = self.deliver(group, self.staged(b"late\r\n"))
        w = group.write(lambda conn: 1)
        self.threads.pump()
        self.failureResultOf(d, StoreError)
        self.failureResultOf(w, StoreError)
        self.assertNotIn(("commit", ""), self.log)
        directory = self.files.absolute(self.files.ownerDirectory("alice@example.org"))
        # (Never made, when the writer thread was to make the files.)
        self.assertFalse(os.path.exists(directory) and os.listdir(directory))

    def test_batchSharesCommit(self) -> None:
        """
        A job goes straight to the writer thread, which syncs each job's
        data, then the directories of their names once, then commits;
        jobs arriving meanwhile make the next batch, asked for by the
        writer thread itself. Each batch's Deferreds fire in one reactor
        call, only after its commit.
        """
        group = self.group()
        first = self.deliver(group, self.staged(b"first\r\n"))
        self.assertEqual(self.threads.names(), ["_commitBatch"])
        rest: list[Deferred[list[str]]] = []

        def arrive() -> None:
            rest.extend(
                self.deliver(group, self.staged(b"m%d\r\n" % i)) for i in range(10)
            )
            # Handed to the writer thread, which is busy: no new call
            # (but the file threads offered its syncs).
            self.assertEqual(self.threads.names(), ["_cameToTakeTurns"] * 2)

        self.db.during = arrive
        self.threads.step()
        # Its three syncs were offered to two file threads, which have
        # not come: the writer thread made them all itself.
        self.assertEqual(
            self.threads.names(), ["_cameToTakeTurns"] * 2 + ["_fire", "_commitBatch"]
        )
        self.assertEqual(
            [kind for kind, _ in self.log],
            # The first: its data, its directory and the parent's entry
            # (it made alice's directory), its commit.
            ["data", "directory", "directory", "commit"],
        )
        self.assertNoResult(first)
        del self.log[:]
        self.threads.stepWhere("_commitBatch")
        self.assertEqual(
            [kind for kind, _ in self.log],
            ["data"] * 10 + ["directory", "commit"],
        )
        # The file threads come late: nothing is left for them to do. The
        # second batch offered only one more turn, the first one's two
        # still waiting (the queue of offers never grows).
        self.assertEqual(self.threads.names().count("_cameToTakeTurns"), 3)
        for _ in range(3):
            self.threads.stepWhere("_cameToTakeTurns")
        self.assertEqual(self.log[-1], ("commit", ""))
        self.assertEqual(self.threads.names(), ["_fire", "_fire"])
        self.threads.step()
        self.successResultOf(first)
        for d in rest:
            self.assertNoResult(d)
        self.threads.step()
        self.assertStored(rest)

    def test_noFileThreads(self) -> None:
        """
        File threads that cannot be asked (their pool refuses) cost
        nothing: the writer thread makes the batch's syncs itself.
        """

        asked: list[object] = []

        def refuse(fn: Callable[..., Any], *args: Any) -> None:
            asked.append(fn)
            raise RuntimeError("no threads")

        direct = Direct(refuse, self.db.callInWriter, self.db.transaction, self.threads)
        group = GroupCommit(direct, RecordingSyncer(self.log))
        ds = [self.deliver(group, self.staged(b"m%d\r\n" % i)) for i in range(3)]
        self.threads.pump()
        self.assertStored(ds)
        self.assertTrue(self.flushLoggedErrors(RuntimeError))
        # Nothing is left counted as offered: the next batch offers again.
        more = [self.deliver(group, self.staged(b"n%d\r\n" % i)) for i in range(3)]
        self.threads.pump()
        self.assertStored(more)
        self.assertEqual(len(asked), 6)  # Three offers for each batch.
        self.assertTrue(self.flushLoggedErrors(RuntimeError))

    def test_filingFails(self) -> None:
        """
        Filing a batch failing outside any one job's steps fails every
        job of the batch that has files, and commits none of them: no
        success without durable files.
        """
        from appnet.store import groupcommit

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("cannot")

        group = self.group()
        self.patch(groupcommit, "partial", broken)
        ds = [self.deliver(group, self.staged(b"m%d\r\n" % i)) for i in range(2)]
        write = group.write(lambda conn: 1)
        self.threads.pump()
        for d in ds:
            self.failureResultOf(d, RuntimeError)
        self.assertEqual(self.successResultOf(write), 1)
        self.assertEqual(list(self.db.conn.execute("SELECT name FROM rows")), [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_fileThreadsTakeTurns(self) -> None:
        """
        File threads that come while the writer thread is syncing a batch
        take syncs off it one at a time; a data sync that fails (in
        whichever thread) fails its own job only, whose file is removed.
        """
        self.db.during = None
        held: list[Callable[[], None]] = []

        class FailOne(RecordingSyncer):
            def data(self, path: str) -> None:
                if "bad" in open(path, "rb").read().decode():
                    raise OSError(5, "I/O error")
                # A file thread comes in while the writer syncs: it takes
                # the rest of the batch's syncs.
                while held:
                    held.pop()()
                super().data(path)

        def inFileThread(fn: Callable[..., Any], *args: Any) -> None:
            held.append(lambda: fn(*args))

        direct = Direct(
            inFileThread, self.db.callInWriter, self.db.transaction, self.threads
        )
        group = GroupCommit(direct, FailOne(self.log))
        # One job alone first, so the next ones arrive together.
        first = self.deliver(group, self.staged(b"first\r\n"))
        ds = [
            self.deliver(group, self.staged(b"bad\r\n" if i == 1 else b"m%d\r\n" % i))
            for i in range(4)
        ]
        self.threads.pump()
        self.assertStored([first])
        self.assertStored([ds[0], ds[2], ds[3]])
        self.failureResultOf(ds[1], OSError)
        # Every good file synced once, the failed one's file removed.
        self.assertEqual(sorted(n for k, n in self.log if k == "data").__len__(), 4)
        directory = self.files.absolute(self.files.ownerDirectory("alice@example.org"))
        self.assertEqual(len(os.listdir(directory)), 4)
