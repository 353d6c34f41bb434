"""
Message files: the bytes behind the mail store's and the queue's index rows.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import BinaryIO
from urllib.parse import quote

from twisted.python.threadable import isInIOThread
from zope.interface import implementer

from appnet.store.interfaces import IStagedMessage

__all__ = [
    "MessageFiles",
    "Placement",
    "StagedFile",
    "Syncer",
    "Syncs",
    "fsyncDirectory",
]

_CHUNK = 1 << 16


def fsyncDirectory(path: str) -> None:
    """
    Make a directory's entries (new names, renames) durable.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncData(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _writeNew(path: str, pieces: list[bytes], keep: bool = False) -> int | None:
    """
    Make a new file holding C{pieces}; remove it if that fails.

    @param keep: return the file's descriptor, open, for the caller to
        sync through and close (else it is closed).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if len(pieces) > 64:
            pieces = [b"".join(pieces)]  # Well under any IOV_MAX.
        total = sum(map(len, pieces))
        written = os.writev(fd, pieces) if pieces else 0
        if written < total:
            view = memoryview(b"".join(pieces))[written:]
            while view:
                view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    if keep:
        return fd
    os.close(fd)
    return None


class Syncer:
    """
    The file-system syncs a group commit makes; tests record them.
    """

    def data(self, path: str) -> None:
        """Make a file's bytes durable (C{fdatasync})."""
        _syncData(path)

    def descriptor(self, fd: int, path: str) -> None:
        """
        Make the bytes of a file still open (at C{path}) durable: through
        the descriptor that wrote them, no second open.
        """
        os.fdatasync(fd)

    def directory(self, path: str) -> None:
        """Make a directory's entries durable."""
        fsyncDirectory(path)


class Syncs:
    """
    What one group commit pass must make durable: files' data first, then
    directories' entries, each once however many jobs share it.

    @ivar descriptors: files still open, by path (synced through their
        descriptor); L{close} closes them.
    """

    def __init__(self) -> None:
        self.files: dict[str, list[Callable[[], None]]] = {}
        self.directories: dict[str, None] = {}
        self.descriptors: dict[str, int] = {}

    def file(
        self,
        path: str,
        synced: Callable[[], None] | None = None,
        descriptor: int | None = None,
    ) -> None:
        """
        Sync this file's data; then call C{synced}.

        @param descriptor: the file, still open: synced through it, and
            closed by L{close} (whatever happens).
        """
        callbacks = self.files.setdefault(path, [])
        if synced is not None:
            callbacks.append(synced)
        if descriptor is not None:
            old = self.descriptors.pop(path, None)
            if old is not None:
                os.close(old)
            self.descriptors[path] = descriptor

    def sync(self, syncer: Syncer) -> None:
        """
        Sync every file's data, in turn, each through its descriptor if it
        has one; call each file's callbacks once it is synced.
        """
        for path, callbacks in self.files.items():
            fd = self.descriptors.get(path)
            if fd is None:
                syncer.data(path)
            else:
                syncer.descriptor(fd, path)
            for callback in callbacks:
                callback()

    def close(self) -> None:
        """Close the descriptors still open."""
        descriptors, self.descriptors = self.descriptors, {}
        for fd in descriptors.values():
            os.close(fd)

    def directory(self, path: str) -> None:
        """Sync this directory's entries."""
        self.directories[path] = None


#: What makes this process's file names its own (64 random bits), and
#: the counter that tells its names apart.
_PROCESS = uuid.uuid4().hex[:16]
_names = itertools.count()


def _newName() -> str:
    """
    A unique file name that sorts by arrival time.
    """
    return f"{time.time_ns() // 1_000_000}.{_PROCESS}{next(_names):x}"


@implementer(IStagedMessage)
class StagedFile:
    """
    A message being received, to become a file under C{tmp/}.

    Small messages stay in memory until L{seal} (in a thread) writes,
    flushes and fsyncs the file, so the reactor never waits for the file
    system on their account; a message growing past L{MEMORY} spills to
    its file on the reactor thread (page cache, no fsync) and streams on.
    A delivery may move the file into place (L{consumed}): then there is
    nothing left to discard.
    """

    #: Bytes kept in memory before spilling to the file.
    MEMORY = 1 << 18

    def __init__(
        self, path: str, inThread: Callable[[Callable[[], None]], None] | None = None
    ) -> None:
        self.path = path
        self._inThread = inThread
        self.size = 0
        self.consumed = False
        #: Whether the file's data is known to be on disk (fsynced).
        self.durable = False
        self._memory: list[bytes] = []
        self._file: BinaryIO | None = None
        self._lock = threading.Lock()
        self._sealed = False
        self._discarded = False

    def _open(self) -> BinaryIO:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        file = os.fdopen(fd, "wb", buffering=_CHUNK)
        for piece in self._memory:
            file.write(piece)
        self._memory = []
        return file

    def write(self, data: bytes) -> None:
        if self._sealed or self._discarded:
            raise ValueError("staged message is closed")
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._memory.append(data)
        if self.size > self.MEMORY:
            self._file = self._open()

    def held(self, limit: int) -> bytes | None:
        """
        The message's bytes, if it is still all in memory (not written
        out) and at most C{limit} bytes long; else C{None}. A copy: a
        queue may keep it to relay the message without reading its file.
        """
        with self._lock:
            if self._file is not None or self._sealed or self._discarded:
                return None
            if self.size > limit:
                return None
            return b"".join(self._memory)

    def seal(self) -> None:
        """
        Write out, flush and fsync; no more writes. Idempotent and
        thread-safe. Blocking.
        """
        if self.writeOut():
            _syncData(self.path)
            self.durable = True

    def relocate(self, path: str) -> bool:
        """
        Move a message still held in memory to another future file name
        (a delivery writes it straight to its mailbox name: no rename).
        Thread-safe.

        @return: whether it moved (no file made, not sealed or discarded).
        """
        with self._lock:
            if self._file is not None or self._sealed or self._discarded:
                return False
            self.path = path
            return True

    def writeOut(self) -> bool:
        """
        Write out and flush to the page cache, without fsync; no more
        writes. Blocking; thread-safe.

        @return: whether the file's data still needs an fsync (neither
            L{seal} nor a group commit has synced it yet).
        """
        return self.writeOutOpen()[0]

    def writeOutOpen(self) -> tuple[bool, int | None]:
        """
        L{writeOut}, and if this call made the file from memory, its
        descriptor, left open for the caller to sync through (no second
        open) and close.

        @return: whether the data still needs an fsync, and the
            descriptor or C{None}.
        """
        fd = None
        with self._lock:
            if not self._sealed:
                if self._file is None:
                    # Still in memory: written in one call, no file
                    # object (each system call in a thread is a turn of
                    # the interpreter lock).
                    fd = _writeNew(self.path, self._memory, keep=True)
                    self._memory = []
                else:
                    self._file.flush()
                    self._file.close()
                self._sealed = True
            return not self.durable, fd

    def discard(self) -> None:
        with self._lock:
            if self._discarded:
                return
            self._discarded = True
            self._memory = []
            if self._file is None and not self._sealed:
                return  # Never written out.
            if self._file is not None and not self._file.closed:
                self._file.close()
            if self.consumed:
                return
        if self._inThread is not None and isInIOThread():
            self._inThread(self._unlink)
        else:
            self._unlink()

    def _unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Placement:
    """
    A staged message filed under new names in some directories, as one job
    of a group commit: L{prepare} writes it out and asks for its data sync,
    L{place} (after the data syncs) makes the names and asks for their
    directories' syncs, L{undo} removes the names again.
    """

    def __init__(
        self,
        files: MessageFiles,
        staged: StagedFile,
        directories: Sequence[str],
        consume: bool,
    ) -> None:
        """
        @param directories: relative directories, one name made in each.
        @param consume: whether the last name is the staged file itself,
            moved into place (else every name is a hard link).
        """
        self._files = files
        self._staged = staged
        self._directories = directories
        self._consume = consume
        self._written: str | None = None
        self.names: list[str] = []

    def prepare(self, syncs: Syncs) -> None:
        """
        Write the staged file out and ask for its data to be synced. One
        still in memory that is to be moved into place is written at its
        last name at once (its sync then covers the new name too, and no
        rename follows).
        """
        staged = self._staged
        files = self._files
        if self._consume and self._directories:
            relative = self._directories[-1]
            name = f"{relative}/{_newName()}"
            directory = files.ensureDirectory(relative, syncs)
            if staged.relocate(files.absolute(name)):
                self._written = name
                syncs.directory(directory)
        try:
            pending, fd = staged.writeOutOpen()
        except BaseException as e:
            if isinstance(e, FileNotFoundError):
                files.forgetDirectories()
            if self._written is not None:
                files.remove([self._written])
                self._written = None
            raise
        if pending:

            def synced() -> None:
                staged.durable = True

            syncs.file(staged.path, synced, fd)
        elif fd is not None:
            os.close(fd)

    def place(self, syncs: Syncs) -> list[str]:
        """
        Make the names and ask for their directories to be synced.

        @return: the relative names, one per directory in order.
        """
        files = self._files
        try:
            last = len(self._directories) - 1
            for i, relative in enumerate(self._directories):
                if self._consume and i == last and self._written is not None:
                    # Written there by prepare (which asked for the sync).
                    self.names.append(self._written)
                    self._written = None
                    self._staged.consumed = True
                    continue
                directory = files.ensureDirectory(relative, syncs)
                name = f"{relative}/{_newName()}"
                if self._consume and i == last:
                    os.rename(self._staged.path, files.absolute(name))
                    self._staged.consumed = True
                else:
                    os.link(self._staged.path, files.absolute(name))
                self.names.append(name)
                syncs.directory(directory)
        except BaseException as e:
            if isinstance(e, FileNotFoundError):
                files.forgetDirectories()
            self.undo()
            raise
        return self.names

    def undo(self) -> None:
        """Remove the names made (their commit failed)."""
        if self._written is not None:
            self.names.append(self._written)
            self._written = None
        self._files.remove(self.names)
        self.names = []


class MessageFiles:
    """
    The message files under one mail directory.
    """

    def __init__(
        self, root: str, inThread: Callable[[Callable[[], None]], None] | None = None
    ) -> None:
        """
        @param inThread: runs a blocking call in a thread pool, later; for
            what the reactor thread would otherwise do itself (a discarded
            staged file's unlink). Without it, such calls run at once.
        """
        self.root = root
        self._inThread = inThread
        self.tmp = os.path.join(root, "tmp")
        self.store = os.path.join(root, "store")
        self.queue = os.path.join(root, "queue")
        #: Message directories known to exist (see L{ensureDirectory}).
        self._existing: set[str] = set()

    def prepare(self, staleAfter: float = 86400.0) -> None:
        """
        Make the directories (private to the daemon's user) and remove
        staged files a crash left behind. Blocking: call in a thread.
        """
        for path in (self.root, self.tmp, self.store, self.queue):
            if not os.path.isdir(path):
                os.makedirs(path, mode=0o700, exist_ok=True)
        horizon = time.time() - staleAfter
        for entry in os.scandir(self.tmp):
            try:
                if entry.stat().st_mtime < horizon:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass

    def stage(self) -> StagedFile:
        """
        A new staged message (its file is created on first write).
        """
        return StagedFile(os.path.join(self.tmp, _newName()), self._inThread)

    def absolute(self, relative: str) -> str:
        """The path of a file named by its index row."""
        return os.path.join(self.root, relative)

    def ownerDirectory(self, owner: str) -> str:
        """
        The relative directory of one account's message files: the address,
        quoted so that it is one safe path component.
        """
        return "store/" + quote(owner, safe="@.-_+=")

    def _ensureDirectory(self, relative: str) -> str:
        path = self.absolute(relative)
        if not os.path.isdir(path):
            os.makedirs(path, mode=0o700, exist_ok=True)
            fsyncDirectory(os.path.dirname(path))
        return path

    def ensureDirectory(self, relative: str, syncs: Syncs) -> str:
        """
        The absolute path of a message directory, made if missing (its
        parent's entry then synced with the rest of C{syncs}). Blocking.

        A directory found already there is remembered, and not looked for
        again until L{forgetDirectories}: one C{stat} fewer per message.
        """
        path = self.absolute(relative)
        if relative in self._existing:
            return path
        if os.path.isdir(path):
            self._existing.add(relative)
        else:
            os.makedirs(path, mode=0o700, exist_ok=True)
            syncs.directory(os.path.dirname(path))
        return path

    def forgetDirectories(self) -> None:
        """
        Look for every message directory again (one was missing where it
        was remembered: removed by hand).
        """
        self._existing.clear()

    def placement(
        self, staged: StagedFile, directories: Sequence[str], consume: bool
    ) -> Placement:
        """
        A group-commit job filing C{staged} once in each of C{directories}
        (relative, as L{ownerDirectory} or C{"queue"}).
        """
        return Placement(self, staged, directories, consume)

    def place(self, staged: StagedFile, owners: Sequence[str]) -> list[str]:
        """
        Make the staged message durable under a new name in each owner's
        directory (hard links: one copy of the bytes on disk; the last name
        is the staged file moved into place, which consumes it). Blocking.

        @return: the relative file names, one per owner in order.
        """
        staged.seal()
        names: list[str] = []
        directories: set[str] = set()
        try:
            for i, owner in enumerate(owners):
                relative = self.ownerDirectory(owner)
                directory = self._ensureDirectory(relative)
                name = f"{relative}/{_newName()}"
                if i == len(owners) - 1:
                    # The last copy takes the staged file itself.
                    os.rename(staged.path, self.absolute(name))
                    staged.consumed = True
                else:
                    os.link(staged.path, self.absolute(name))
                names.append(name)
                directories.add(directory)
            for directory in directories:
                fsyncDirectory(directory)
        except BaseException:
            self.remove(names)
            raise
        return names

    def link(self, sources: Sequence[str], owner: str) -> list[str]:
        """
        Durable new names in C{owner}'s directory for existing message
        files (an IMAP COPY). Blocking.
        """
        relative = self.ownerDirectory(owner)
        directory = self._ensureDirectory(relative)
        names: list[str] = []
        try:
            for source in sources:
                name = f"{relative}/{_newName()}"
                os.link(self.absolute(source), self.absolute(name))
                names.append(name)
            fsyncDirectory(directory)
        except BaseException:
            self.remove(names)
            raise
        return names

    def placeQueued(self, staged: StagedFile, skip: int) -> str:
        """
        Make a durable queue file from the staged message, without its
        first C{skip} bytes. Blocking.

        @return: its relative name.
        """
        staged.seal()
        name = f"queue/{_newName()}"
        path = self.absolute(name)
        if skip == 0:
            os.link(staged.path, path)
        else:
            with open(staged.path, "rb") as source:
                source.seek(skip)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as target:
                    while chunk := source.read(_CHUNK):
                        target.write(chunk)
                    target.flush()
                    os.fsync(target.fileno())
        fsyncDirectory(self.queue)
        return name

    def strays(
        self, directory: str, named: Collection[str], olderThan: float
    ) -> list[str]:
        """
        Remove the files in C{directory} (relative, as C{"queue"}) that no
        index row names (C{named}: relative names) and that last changed
        before C{olderThan} (see L{audit}). Blocking.

        @return: the relative names removed.
        """
        _, _, unnamed = self.audit(named, olderThan, (directory,))
        self.remove(unnamed)
        return unnamed

    def audit(
        self,
        named: Collection[str],
        olderThan: float,
        directories: Sequence[str] = ("store", "queue"),
    ) -> tuple[int, list[str], list[str]]:
        """
        Compare the message files under C{directories} (relative) with the
        relative names the index holds (C{named}). Blocking.

        @return: how many files there are; the names of the index that
            have no file; the files no name refers to that last changed
            before C{olderThan}: the inode's change time, which a new hard
            link or a rename also moves, so that a file being placed,
            copied or moved now is never taken for one.
        """
        present: set[str] = set()
        unnamed: list[str] = []
        for directory in directories:
            for top, _, names in os.walk(self.absolute(directory)):
                relative = os.path.relpath(top, self.root)
                for name in names:
                    path = f"{relative}/{name}"
                    present.add(path)
                    if path in named:
                        continue
                    try:
                        changed = os.lstat(os.path.join(top, name)).st_ctime
                    except FileNotFoundError:
                        continue
                    if changed < olderThan:
                        unnamed.append(path)
        missing = sorted(set(named) - present)
        return len(present), missing, sorted(unnamed)

    def exists(self, relative: str) -> bool:
        """Whether the message file named by an index row is there."""
        return os.path.lexists(self.absolute(relative))

    def remove(self, names: Sequence[str]) -> None:
        """
        Remove message files whose index rows are gone (or never were).
        Blocking; a missing file is not an error.
        """
        for name in names:
            try:
                os.unlink(self.absolute(name))
            except FileNotFoundError:
                pass

    def opener(self, relative: str) -> BinaryIO:
        """Open a message file for reading."""
        return open(self.absolute(relative), "rb")
