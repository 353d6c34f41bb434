"""
Group commit: durable writes that arrive together share their file-system
syncs and their database commit.
"""

from __future__ import annotations

import sqlite3
import threading
from functools import partial
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from attrs import define, field, frozen
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from appnet.store._files import Syncer, Syncs

__all__ = ["Direct", "FileJob", "GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class FileJob(Protocol[R_co]):
    """
    The file-system half of a durable write (see L{appnet.store._files}
    C{Placement}): all blocking, run in a file thread.
    """

    def prepare(self, syncs: Syncs) -> None:
        """Write data out (no fsync); name in C{syncs} the files to sync."""

    def place(self, syncs: Syncs) -> R_co:
        """After the data syncs: make names; name their directories."""

    def undo(self) -> None:
        """Remove what L{prepare} and L{place} made (a later step failed)."""


class _Writer(Protocol):
    def write(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]: ...


@frozen
class Direct:
    """
    The hand-offs of a group commit whose stages pass each job straight
    on, thread to thread: a file thread that has made a job's files
    durable hands it to the database's writer thread itself, and the
    reactor hears of a batch once, when it is committed. (Without them,
    each job's file stage reports to the reactor, which then submits the
    batch: two more reactor wake-ups and thread hand-offs per message.)

    @ivar inFileThread: calls C{fn(*args)} in a file thread, later, for
        no result (L{appnet.store.threads.Threads.call}).
    @ivar inWriterThread: calls C{fn()} in the database's writer thread,
        later, for no result; thread-safe (C{Database.callInWriter}).
    @ivar transaction: in the writer thread, runs C{fn(connection)} in
        one committed transaction, blocking (C{Database.transaction}).
    @ivar inReactor: calls C{fn(*args)} in the reactor thread, later;
        thread-safe (C{reactor.callFromThread}).
    @ivar filesInWriter: whether jobs skip the file threads: the writer
        thread then makes a batch's files durable itself, one job after
        another, before its commit (one thread fewer touching each
        message: measured cheaper in CPU, and no slower, for the mail
        store's deliveries; see BENCHMARKS.rst).
    """

    inFileThread: Callable[..., object]
    inWriterThread: Callable[[Callable[[], None]], object]
    transaction: Callable[[Callable[[sqlite3.Connection], Any]], Any]
    inReactor: Callable[..., object]
    filesInWriter: bool = False


@define
class _Job:
    files: FileJob[Any] | None
    commit: Callable[[sqlite3.Connection, Any], Any]
    done: Deferred[Any]
    ok: bool = True
    filed: bool = False
    value: Any = None
    directories: Sequence[str] = ()


@define
class GroupCommit:
    """
    Batches durable writes. A job runs in this order:

      1. in a file thread of its own, at once: its data written out and
         fdatasynced, then its names made (hard links, renames). Jobs
         arriving together run this side by side, and the file system's
         journal commits their syncs together (measured faster, on ext4,
         than one thread syncing a batch's files in turn: see
         BENCHMARKS.rst);
      2. with every job whose files are synced when the database is
         free: the directories holding their names fsynced, each once,
         then one transaction, each job in its own savepoint (one
         failing rolls back only itself); both in the database's thread;
      3. only then its Deferred fires (a job whose commit failed first
         has its files removed).

    Ten connections delivering at once so share one directory sync and
    one commit, their data syncs overlap, and a success still means
    durable.

    With L{Direct} hand-offs, a job's file thread hands it to the writer
    thread (which commits whatever has arrived, and asks itself for the
    next batch if more arrived meanwhile) and the reactor thread only
    submits jobs and fires a committed batch's Deferreds; without them,
    each stage reports to the reactor, which starts the next.

    @ivar inFileThread: runs a blocking call in the file threads (the
        path without L{Direct} hand-offs).
    """

    #: At most how many threads sync one batch's files (the writer and
    #: the file threads; see L{_sideBySide}).
    SIDE_BY_SIDE = 4

    _db: _Writer
    _inFileThread: Callable[..., Deferred[Any]]
    _syncer: Syncer = field(factory=Syncer)
    _direct: Direct | None = field(default=None, kw_only=True)
    _filed: list[_Job] = field(factory=list, init=False)
    _committing: bool = field(default=False, init=False)
    #: Guards L{_filed} and L{_committing} on the direct path (file
    #: threads, the writer thread and the reactor all touch them).
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
        job = _Job(files, fn, d)
        if self._direct is not None:
            if files is None or self._direct.filesInWriter:
                self._handOver(job)
            else:
                self._direct.inFileThread(self._fileStageDirect, job)
            return d
        if files is None:
            # Nothing to sync or place: it joins the next commit.
            self._filed.append(job)
            self._pump()
            return d

        def durable(result: object) -> None:
            if isinstance(result, Failure):
                job.ok, job.value = False, result.value
            else:
                job.value, job.directories = result  # type: ignore[misc]
            self._filed.append(job)
            self._pump()

        self._inFileThread(self._fileStage, job).addBoth(durable)
        return d

    def _fileStage(self, job: _Job) -> tuple[Any, Sequence[str]]:
        """
        Stage 1, in a file thread: write the job's data out and sync it,
        make its names.

        @return: what the job's C{place} returned, and the directories to
            sync before the commit.
        """
        assert job.files is not None
        syncs = Syncs()
        try:
            job.files.prepare(syncs)
            syncs.sync(self._syncer)
            placed = job.files.place(syncs)
        except BaseException:
            job.files.undo()
            raise
        finally:
            syncs.close()
        return placed, list(syncs.directories)

    def _fileStages(self, jobs: Sequence[_Job]) -> None:
        """
        Stage 1 for a batch of jobs, in one thread: every job's data
        written out; then, side by side (L{_sideBySide}), their data syncs
        and the syncs of the directories their files were written in (a
        file written at its final name needs both, in either order), so
        the file system's journal commits them together, as it cannot
        when one thread syncs one file after another; then every job's
        names made (their directories synced at the commit). A job that
        fails is undone and marked failed; the others go on.
        """
        staged: list[tuple[_Job, Syncs]] = []
        for job in jobs:
            assert job.files is not None
            job.filed = True
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
        for which, failure in zip(directories.values(), failures[len(staged) :]):
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

    def _sideBySide(self, work: Sequence[Callable[[], None]]) -> list[BaseException | None]:
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

        assert self._direct is not None
        for _ in range(min(len(work), self.SIDE_BY_SIDE) - 1):
            self._direct.inFileThread(takeTurns)
        takeTurns()
        with taken:
            while running:
                taken.wait()
        return failures

    def _fileStageDirect(self, job: _Job) -> None:
        """
        Stage 1 on the direct path, in a file thread: the job's files made
        durable, then the job handed to the writer thread.
        """
        try:
            job.value, job.directories = self._fileStage(job)
        except BaseException as e:
            job.ok, job.value = False, e
        job.filed = True
        self._handOver(job)

    def _handOver(self, job: _Job) -> None:
        """
        Queue a job for the next commit, and ask the writer thread for
        one unless a commit is under way (which asks for the next itself
        when it ends). Any thread.
        """
        with self._lock:
            self._filed.append(job)
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
        assert self._direct is not None
        try:
            self._direct.inWriterThread(self._commitBatch)
        except BaseException as e:
            # The database is stopped: nothing can commit, and what the
            # jobs filed is removed (in a file or the writer thread,
            # usually: only a race at shutdown leaves files to a write()
            # on the reactor thread).
            with self._lock:
                batch, self._filed = self._filed, []
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
        Stages 2 and 3 on the direct path, in the writer thread (and
        stage 1 for jobs that skipped the file threads): commit the jobs
        that have arrived; the reactor fires their Deferreds; if more
        arrived meanwhile, ask for the next batch.
        """
        direct = self._direct
        assert direct is not None
        with self._lock:
            batch, self._filed = self._filed, []
        try:
            self._fileStages([j for j in batch if j.files is not None and not j.filed])
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
                more = bool(self._filed)
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

    def _pump(self) -> None:
        if not self._committing and self._filed:
            batch, self._filed = self._filed, []
            self._committing = True
            self._background(self._commit(batch), "Group commit failed")

    def _background(self, work: Any, what: str) -> None:
        Deferred.fromCoroutine(work).addErrback(lambda f: self._log.failure(what, f))

    async def _commit(self, batch: list[_Job]) -> None:
        try:
            ready = [job for job in batch if job.ok]
            if ready:
                try:
                    await self._db.write(_commitAll(ready, self._syncer))
                except BaseException as e:
                    for job in ready:
                        job.ok, job.value = False, e
            undo = [job.files for job in batch if not job.ok and job.files]
            if undo:
                try:
                    await self._inFileThread(_undoAll, undo)
                except BaseException:
                    self._log.failure("Removing files of a failed commit")
        finally:
            self._committing = False
            self._pump()
        self._fire(batch)


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
