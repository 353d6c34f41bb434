"""
Group commit: durable writes that arrive together share their file-system
syncs and their database commit.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from attrs import define, field, frozen
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from appnet.store._files import Syncer, Syncs

if TYPE_CHECKING:
    from appnet.store._db import Database
    from appnet.store.threads import Threads

__all__ = ["Direct", "FileJob", "GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class FileJob(Protocol[R_co]):
    """
    The file-system half of a durable write (see L{appnet.store._files}
    C{Placement}): all blocking, run in the database's writer thread.
    """

    def prepare(self, syncs: Syncs) -> None:
        """Write data out (no fsync); name in C{syncs} the files to sync."""

    def place(self, syncs: Syncs) -> R_co:
        """After the data syncs: make names; name their directories."""

    def undo(self) -> None:
        """Remove what L{prepare} and L{place} made (a later step failed)."""


@frozen
class Direct:
    """
    The hand-offs of a group commit, thread to thread: the reactor thread
    hands each job to the database's writer thread, which makes a batch's
    files durable and commits it, and the reactor hears of a batch once,
    when it is committed.

    @ivar inFileThread: calls C{fn(*args)} in a file thread, later, for
        no result (L{appnet.store.threads.Threads.call}): the syncs of a
        batch's files are offered to file threads.
    @ivar inWriterThread: calls C{fn()} in the database's writer thread,
        later, for no result; thread-safe (C{Database.callInWriter}).
    @ivar transaction: in the writer thread, runs C{fn(connection)} in
        one committed transaction, blocking (C{Database.transaction}).
    @ivar inReactor: calls C{fn(*args)} in the reactor thread, later;
        thread-safe (C{reactor.callFromThread}).
    """

    inFileThread: Callable[..., object]
    inWriterThread: Callable[[Callable[[], None]], object]
    transaction: Callable[[Callable[[sqlite3.Connection], Any]], Any]
    inReactor: Callable[..., object]

    @classmethod
    def of(cls, database: Database, fileThreads: Threads, reactor: Any) -> Direct:
        """The hand-offs of a store over C{database} and C{fileThreads}."""
        return cls(
            fileThreads.call,
            database.callInWriter,
            database.transaction,
            reactor.callFromThread,
        )


@define
class _Job:
    files: FileJob[Any] | None
    commit: Callable[[sqlite3.Connection, Any], Any]
    done: Deferred[Any]
    ok: bool = True
    value: Any = None
    directories: Sequence[str] = ()


@define
class GroupCommit:
    """
    Batches durable writes. A job, handed to the database's writer thread
    at once, runs there in this order, with every other job that arrived
    while the writer thread was busy with the previous batch:

      1. its data written out; then its data sync and the syncs of the
         directories its files were written in, side by side with the
         other jobs' (L{_fileStages}); then its names made (hard links,
         renames);
      2. the directories holding those names fsynced, each once for the
         batch, then one transaction, each job in its own savepoint (one
         failing rolls back only itself);
      3. only then its Deferred fires, on the reactor thread, with the
         rest of its batch's (a job whose commit failed first has its
         files removed).

    Ten connections delivering at once so share their syncs and one
    commit, and a success still means durable. The writer thread asks
    itself for the next batch, one batch per call, so other writes queued
    for it meanwhile take their turn between batches.
    """

    #: At most how many threads sync one batch's files (the writer and
    #: the file threads; see L{_sideBySide}).
    SIDE_BY_SIDE = 4

    _direct: Direct
    _syncer: Syncer = field(factory=Syncer)
    _waiting: list[_Job] = field(factory=list, init=False)
    _committing: bool = field(default=False, init=False)
    #: File threads asked to take turns (L{_sideBySide}) not yet come.
    _offered: int = field(default=0, init=False)
    #: Guards L{_waiting}, L{_committing} and L{_offered} (the reactor,
    #: the writer thread and the file threads touch them).
    _lock: threading.Lock = field(factory=threading.Lock, init=False)
    _log = Logger()

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """Like L{Database.write}, sharing a transaction with others."""
        return self._submit(None, lambda conn, _: fn(conn))

    def commit(
        self, files: FileJob[R], fn: Callable[[sqlite3.Connection, R], T]
    ) -> Deferred[T]:
        """
        Make C{files} durable, then run C{fn(connection, files.place(...))}
        in a committed transaction, both shared with the writes of the
        same batch.
        """
        return self._submit(files, fn)

    def _submit(
        self, files: FileJob[Any] | None, fn: Callable[[sqlite3.Connection, Any], Any]
    ) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._handOver(_Job(files, fn, d))
        return d

    def _fileStages(self, jobs: Sequence[_Job]) -> None:
        """
        Stage 1 for a batch of jobs, in the writer thread: every job's data
        written out; then, side by side (L{_sideBySide}), their data syncs
        and the syncs of the directories their files were written in (a
        file written at its final name needs both, in either order), so
        the file system and the disk take them together (one cache flush
        serving many), where one thread syncing one file after another
        makes each wait for its own; then every job's
        names made (their directories synced at the commit). A job that
        fails is undone and marked failed; the others go on.
        """
        staged: list[tuple[_Job, Syncs]] = []
        for job in jobs:
            assert job.files is not None
            syncs = Syncs()
            try:
                job.files.prepare(syncs)
            except BaseException as e:
                self._failFiles(job, syncs, e)
            else:
                staged.append((job, syncs))
        # Each directory once, for every job that named it.
        directories: dict[str, list[int]] = {}
        for k, (_, syncs) in enumerate(staged):
            for directory in syncs.directories:
                directories.setdefault(directory, []).append(k)
            syncs.directories.clear()
        work: list[Callable[[], None]] = [
            partial(syncs.sync, self._syncer) for _, syncs in staged
        ]
        work += [partial(self._syncer.directory, d) for d in directories]
        failures = self._sideBySide(work)
        dirFailures = failures[len(staged) :]
        for which, failure in zip(directories.values(), dirFailures, strict=True):
            if failure is not None:
                for k in which:
                    failures[k] = failures[k] or failure
        for (job, syncs), failure in zip(staged, failures, strict=False):
            assert job.files is not None
            try:
                if failure is not None:
                    raise failure
                job.value = job.files.place(syncs)
                job.directories = list(syncs.directories)
            except BaseException as e:
                self._failFiles(job, syncs, e)
            else:
                syncs.close()

    @staticmethod
    def _failFiles(job: _Job, syncs: Syncs, reason: BaseException) -> None:
        assert job.files is not None
        job.ok, job.value = False, reason
        try:
            job.files.undo()
        finally:
            syncs.close()

    def _sideBySide(
        self, work: Sequence[Callable[[], None]]
    ) -> list[BaseException | None]:
        """
        Run blocking calls (syncs) side by side: this thread and up to
        L{SIDE_BY_SIDE} - 1 file threads take them one at a time; blocks
        until all are done. This thread takes whatever no file thread has
        taken, so a file thread that never comes (its pool busy, or
        stopped) delays nothing and loses nothing.

        @return: per call, in order, what it raised, or C{None}.
        """
        failures: list[BaseException | None] = [None] * len(work)
        waiting = list(range(len(work) - 1, -1, -1))
        taken = threading.Condition()
        running = 0

        def takeTurns() -> None:
            nonlocal running
            while True:
                with taken:
                    if not waiting:
                        return
                    i = waiting.pop()
                    running += 1
                try:
                    work[i]()
                except BaseException as e:
                    failures[i] = e
                finally:
                    with taken:
                        running -= 1
                        taken.notify_all()

        # Offers still queued from earlier batches (the file threads busy
        # with reads) count against this one's: the queue never grows.
        with self._lock:
            offers = min(len(work), self.SIDE_BY_SIDE) - 1 - self._offered
            self._offered += max(offers, 0)
        for _ in range(offers):
            try:
                self._direct.inFileThread(self._cameToTakeTurns, takeTurns)
            except BaseException:
                # No file thread to offer it to: this thread does it.
                self._log.failure("Offering a file thread a batch's syncs")
                with self._lock:
                    self._offered -= 1
        takeTurns()
        with taken:
            while running:
                taken.wait()
        return failures

    def _cameToTakeTurns(self, takeTurns: Callable[[], None]) -> None:
        """A file thread answering an offer of L{_sideBySide}'s."""
        with self._lock:
            self._offered -= 1
        takeTurns()

    def _handOver(self, job: _Job) -> None:
        """
        Queue a job for the next commit, and ask the writer thread for
        one unless a commit is under way (which asks for the next itself
        when it ends). Any thread.
        """
        with self._lock:
            self._waiting.append(job)
            if self._committing:
                return
            self._committing = True
        self._askWriter()

    def _askWriter(self) -> None:
        """
        Have the writer thread commit what waits (L{_committing} is set).
        One batch per call, so other writes queued for the writer thread
        meanwhile take their turn between batches.
        """
        try:
            self._direct.inWriterThread(self._commitBatch)
        except BaseException as e:
            # The database is stopped: nothing can commit, and nothing
            # was filed (the writer thread files a batch before its
            # commit), but a job may have failed half-way: undo all.
            with self._lock:
                batch, self._waiting = self._waiting, []
                self._committing = False
            for each in batch:
                each.ok, each.value = False, e
            try:
                _undoAll([each.files for each in batch if each.files])
            except BaseException:
                self._log.failure("Removing files of a failed commit")
            self._direct.inReactor(self._fire, batch)

    def _commitBatch(self) -> None:
        """
        The writer thread: file and commit the jobs that have arrived; the
        reactor fires their Deferreds; if more arrived meanwhile, ask for
        the next batch.
        """
        direct = self._direct
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            filing = [job for job in batch if job.files is not None]
            try:
                self._fileStages(filing)
            except BaseException as e:
                # Not a job's own failure (those are the job's): none of
                # the batch's files is known to be durable.
                self._log.failure("Filing a batch")
                for job in filing:
                    if job.ok:
                        job.ok, job.value = False, e
            ready = [job for job in batch if job.ok]
            if ready:
                try:
                    direct.transaction(_commitAll(ready, self._syncer))
                except BaseException as e:
                    for job in ready:
                        job.ok, job.value = False, e
            undo = [job.files for job in batch if not job.ok and job.files]
            if undo:
                try:
                    _undoAll(undo)
                except BaseException:
                    self._log.failure("Removing files of a failed commit")
        finally:
            if batch:
                direct.inReactor(self._fire, batch)
            with self._lock:
                more = bool(self._waiting)
                if not more:
                    self._committing = False
            if more:
                self._askWriter()

    @staticmethod
    def _fire(batch: list[_Job]) -> None:
        for job in batch:
            if job.ok:
                job.done.callback(job.value)
            else:
                job.done.errback(job.value)


def _undoAll(jobs: Sequence[FileJob[Any]]) -> None:
    for job in jobs:
        job.undo()


def _commitAll(
    jobs: Sequence[_Job], syncer: Syncer
) -> Callable[[sqlite3.Connection], None]:
    """
    The database half of a batch: the directories of its names synced
    (each once), then its jobs under one savepoint; if one of them fails,
    that is rolled back and each job runs again in a savepoint of its own
    (one failing rolls back only itself).
    """

    def run(conn: sqlite3.Connection) -> None:
        directories = dict.fromkeys(d for job in jobs for d in job.directories)
        for directory in directories:
            syncer.directory(directory)
        if len(jobs) == 1:
            # Alone, a job needs no savepoint: if it fails, the whole
            # transaction rolls back, which is all of it.
            [job] = jobs
            job.value = job.commit(conn, job.value)
            return
        conn.execute("SAVEPOINT batch")
        try:
            results = [job.commit(conn, job.value) for job in jobs]
        except Exception:
            conn.execute("ROLLBACK TO batch")
            conn.execute("RELEASE batch")
        else:
            conn.execute("RELEASE batch")
            for job, result in zip(jobs, results, strict=True):
                job.value = result
            return
        for job in jobs:
            conn.execute("SAVEPOINT item")
            try:
                result = job.commit(conn, job.value)
            except Exception as e:
                conn.execute("ROLLBACK TO item")
                conn.execute("RELEASE item")
                job.ok, job.value = False, e
            else:
                conn.execute("RELEASE item")
                job.value = result

    return run
