"""
The jailed filesystem behind an FTP session.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat as statmod
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from attrs import define, field, frozen
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.logger import Logger
from twisted.protocols.ftp import IFTPShell
from twisted.python.failure import Failure
from twisted.python.filepath import Permissions
from zope.interface import Interface, implementer

from appnet.ftp._files import (
    FileReceiver,
    FileSender,
    InThread,
    TokenBucket,
    errorFor,
)
from appnet.ftp.errors import (
    BadRestart,
    DirectoryNotEmpty,
    FileBusy,
    FileExists,
    FTPCommandError,
    IsADirectory,
    LocalError,
    NameTooLong,
    NotADirectory,
    NotFound,
    OutsideHome,
    PermissionDenied,
    QuotaExceeded,
    ReadOnly,
    TransferAborted,
    UploadTooLarge,
    logName,
)
from appnet.ftp.interfaces import IFTPFilesystem, IReadHandle, IWriteHandle, WriteMode
from appnet.ftp.paths import Segments, render
from appnet.store.interfaces import IUserStore

__all__ = [
    "Accounts",
    "Entry",
    "FTPRealm",
    "FileLocks",
    "HomeShell",
    "Jail",
    "Quota",
    "homeName",
    "usage",
]

_log = Logger()


@frozen
class Entry:
    """
    One directory entry, as listings need it.

    @ivar kind: C{"file"}, C{"dir"} or C{"other"} (a device, a FIFO...).
    @ivar unique: an identifier stable while the file exists (device and
        inode), for MLSx's C{unique} fact.
    """

    name: str
    kind: str
    size: int
    modified: float
    mode: int
    links: int
    unique: str

    @classmethod
    def fromStat(cls, name: str, st: os.stat_result) -> Entry:
        if statmod.S_ISDIR(st.st_mode):
            kind = "dir"
        elif statmod.S_ISREG(st.st_mode):
            kind = "file"
        else:
            kind = "other"
        return cls(
            name=name,
            kind=kind,
            size=st.st_size,
            modified=st.st_mtime,
            mode=st.st_mode,
            links=st.st_nlink,
            unique=f"{st.st_dev:x}g{st.st_ino:x}",
        )


def homeName(address: str) -> str:
    """
    The directory name of an account's home: its canonical address, with
    C{%} and C{/} (legal in an address's local part) percent-encoded so the
    name is always one path segment.
    """
    return address.replace("%", "%25").replace("/", "%2F")


def usage(root: str) -> int:
    """
    Bytes used by the regular files below C{root} (blocking: call in a
    thread). Symbolic links are not followed.
    """
    total = 0
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if statmod.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    elif statmod.S_ISREG(st.st_mode):
                        total += st.st_size
        except OSError:
            continue
    return total


_ERRORS: dict[int, type[FTPCommandError]] = {
    errno.ENOENT: NotFound,
    errno.ENOTDIR: NotADirectory,
    errno.EISDIR: IsADirectory,
    errno.EEXIST: FileExists,
    errno.ENOTEMPTY: DirectoryNotEmpty,
    errno.EACCES: PermissionDenied,
    errno.EPERM: PermissionDenied,
    errno.ELOOP: PermissionDenied,
    errno.EINVAL: PermissionDenied,
    errno.EBUSY: PermissionDenied,
    errno.EXDEV: PermissionDenied,
}


def _mapped(e: OSError, path: Segments) -> FTPCommandError:
    if e.errno == errno.ENAMETOOLONG:
        name = logName(render(path))
        _log.warn(
            "File name too long ({length} characters): {start}...",
            length=len(name),
            start=name[:60],
        )
        return NameTooLong()
    kind = _ERRORS.get(e.errno or 0)
    if kind is None:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return errorFor(e)
        _log.error(
            "Unexpected file system error on {path}: {error}",
            path=logName(render(path)),
            error=e,
        )
        return LocalError()
    return kind(render(path))


#: Files up to this size are read whole when opened.
SMALL_FILE = 64 * 1024
#: Uploads are written once this much is waiting (or at the end), so a
#: small file is written, fsynced and renamed in one trip to a thread.
LAZY_WRITE = 256 * 1024


class Claim:
    """
    One transfer's hold on one file in L{FileLocks}, until L{release}.
    """

    def __init__(self, locks: FileLocks, real: str, exclusive: bool) -> None:
        self._locks = locks
        self.real = real
        self.exclusive = exclusive
        self._held = True

    def release(self) -> None:
        """Let the file go (again is nothing). Safe from any thread."""
        self._locks._release(self)


class FileLocks:
    """
    The files transfers are using right now, over every session of one
    server, keyed by real path (so two names of one file, such as a path
    through a linked directory, meet).

    vsftpd's C{lock_upload_files} does this with C{fcntl} locks: uploads
    take a write lock, downloads a read lock, each waiting for the other.
    Here nothing waits (the wait could last a whole transfer, holding a
    file thread): a conflicting claim is refused at once with
    L{FileBusy}, RFC 959's 450 "file busy", and the client tries again.

      - A download holds a I{shared} claim, and so does an upload that
        replaces its target: it is written aside and renamed over the
        target at the end, so until then the old file stays whole and
        may be read, deleted or replaced by others.
      - An upload that changes the file in place (C{APPE}, C{REST} +
        C{STOR}) holds an I{exclusive} claim: while it runs the file is
        incomplete. Reading it would give a torn file; a second in-place
        upload would interleave with it; a replacing upload's rename, a
        delete or a rename would leave it writing into a file nobody
        sees, then answer 226 all the same.

    The methods may be called from any thread: L{Jail} uses them in the
    file threads, and holds L{unclaimed} across the unlink or rename it
    guards, so no claim slips in between the check and the change.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._shared: dict[str, int] = {}
        self._exclusive: set[str] = set()

    def claim(self, real: str, name: Segments, exclusive: bool) -> Claim:
        """
        Claim the file at C{real} (the client's C{name} for errors).

        @raise FileBusy: an exclusive claim holds it, or, for an exclusive
            claim, any claim does.
        """
        with self._mutex:
            if real in self._exclusive or (exclusive and self._shared.get(real)):
                raise FileBusy(render(name))
            if exclusive:
                self._exclusive.add(real)
            else:
                self._shared[real] = self._shared.get(real, 0) + 1
        return Claim(self, real, exclusive)

    def _release(self, claim: Claim) -> None:
        with self._mutex:
            if not claim._held:
                return
            claim._held = False
            if claim.exclusive:
                self._exclusive.discard(claim.real)
                return
            left = self._shared.get(claim.real, 0) - 1
            if left > 0:
                self._shared[claim.real] = left
            else:
                self._shared.pop(claim.real, None)

    def _changing(self, real: str) -> bool:
        if real in self._exclusive:
            return True
        below = real.rstrip(os.sep) + os.sep
        return any(path.startswith(below) for path in self._exclusive)

    def check(self, real: str, name: Segments) -> None:
        """
        Raise L{FileBusy} if an upload is changing C{real} (or, for a
        directory, a file below it) in place.
        """
        with self.unclaimed((real, name)):
            pass

    @contextmanager
    def unclaimed(self, *paths: tuple[str, Segments]) -> Iterator[None]:
        """
        Run the block while no upload changes any of C{paths} (real path,
        client's name) in place, and none may start to.

        @raise FileBusy: one is being changed.
        """
        with self._mutex:
            for real, name in paths:
                if self._changing(real):
                    raise FileBusy(render(name))
            yield


@frozen
class Opened:
    """
    A file opened for reading: a descriptor positioned at the offset, or,
    for a small file, its bytes from the offset (and no descriptor).

    @ivar claim: the download's claim on the file, while it holds the
        descriptor.
    """

    fd: int | None
    size: int
    data: bytes | None
    claim: Claim | None = None


@frozen
class WritePlan:
    """
    An upload opened by L{Jail.openWrite}: where it goes and how it ends.

    @ivar fd: the descriptor to write.
    @ivar target: the real path the file ends up at.
    @ivar temp: the temporary file renamed over C{target} on success, if
        the upload replaces the target.
    @ivar reserved: C{target} was created empty to reserve a unique name.
    @ivar created: C{target} did not exist before (its directory needs an
        fsync once it does).
    @ivar oldSize: the target's size before the upload.
    @ivar base: the file's size before the first received byte (the REST
        offset, the old size for APPE, 0 otherwise).
    @ivar name: the virtual path written.
    @ivar claim: the upload's claim on C{target}, released when it ends.
    """

    fd: int
    target: str
    temp: str | None
    reserved: bool
    created: bool
    oldSize: int
    base: int
    name: Segments
    claim: Claim | None = None


@frozen
class Jail:
    """
    Blocking filesystem operations confined to one real directory. Every
    method runs in a thread and raises an L{FTPCommandError} naming the
    virtual path.

    @ivar root: the real (resolved) home directory.
    @ivar staging: where replacing uploads are written before the rename.
    @ivar locks: the files transfers are using (shared by every session).
    """

    root: str
    staging: str | None
    locks: FileLocks = field(factory=FileLocks)

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root + os.sep)

    def real(self, path: Segments) -> str:
        """
        The real path for C{path}, following symbolic links, which must stay
        inside the root.
        """
        real = os.path.realpath(os.path.join(self.root, *path))
        if not self._inside(real):
            raise OutsideHome(render(path))
        return real

    def parent(self, path: Segments) -> tuple[str, str]:
        """
        The real parent directory of C{path} (links followed and checked)
        and its last segment (not followed).
        """
        if not path:
            raise PermissionDenied("/")
        return self.real(path[:-1]), path[-1]

    def info(self, path: Segments) -> Entry:
        real = self.real(path)
        try:
            st = os.stat(real)
        except OSError as e:
            raise _mapped(e, path) from None
        return Entry.fromStat(path[-1] if path else "/", st)

    def directory(self, path: Segments) -> None:
        """Raise unless C{path} is a directory one may enter."""
        entry = self.info(path)
        if entry.kind != "dir":
            raise NotADirectory(render(path))
        if not os.access(self.real(path), os.X_OK):
            raise PermissionDenied(render(path))

    def entries(self, path: Segments) -> list[Entry]:
        return self.listing(path)[1]

    def listing(self, path: Segments) -> tuple[Entry, list[Entry]]:
        """
        The entry for C{path} and its entries (itself, for a file).
        """
        real = self.real(path)
        try:
            st = os.stat(real)
        except OSError as e:
            raise _mapped(e, path) from None
        itself = Entry.fromStat(path[-1] if path else "/", st)
        if not statmod.S_ISDIR(st.st_mode):
            return itself, [itself]
        result = []
        try:
            with os.scandir(real) as it:
                for entry in it:
                    try:
                        if entry.is_symlink():
                            target = os.path.realpath(entry.path)
                            if not self._inside(target):
                                continue
                            st = os.stat(target)
                        else:
                            st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    result.append(Entry.fromStat(entry.name, st))
        except OSError as e:
            raise _mapped(e, path) from None
        result.sort(key=lambda e: e.name)
        return itself, result

    def mkdir(self, path: Segments) -> None:
        directory, name = self.parent(path)
        try:
            os.mkdir(os.path.join(directory, name), 0o755)
        except OSError as e:
            raise _mapped(e, path) from None

    def rmdir(self, path: Segments) -> None:
        directory, name = self.parent(path)
        target = os.path.join(directory, name)
        try:
            if statmod.S_ISLNK(os.lstat(target).st_mode):
                raise NotADirectory(render(path))
            os.rmdir(target)
        except OSError as e:
            raise _mapped(e, path) from None

    def remove(self, path: Segments) -> int:
        """
        Delete a file (or a symbolic link); return the bytes it freed.
        """
        directory, name = self.parent(path)
        target = os.path.join(directory, name)
        try:
            with self.locks.unclaimed((target, path)):
                st = os.lstat(target)
                if statmod.S_ISDIR(st.st_mode):
                    raise IsADirectory(render(path))
                os.unlink(target)
        except OSError as e:
            raise _mapped(e, path) from None
        return _freed(st)

    def movable(self, path: Segments) -> Entry:
        """
        The entry C{RNFR} names, if nothing keeps it from being renamed.

        @raise FileBusy: an upload is changing it (or, for a directory, a
            file in it) in place.
        """
        entry = self.info(path)
        directory, name = self.parent(path)
        self.locks.check(os.path.join(directory, name), path)
        return entry

    def rename(self, source: Segments, dest: Segments) -> int:
        """
        Rename; return the bytes freed by replacing an existing file.
        """
        fromDir, fromName = self.parent(source)
        toDir, toName = self.parent(dest)
        fromPath = os.path.join(fromDir, fromName)
        toPath = os.path.join(toDir, toName)
        try:
            os.lstat(fromPath)
        except OSError as e:
            raise _mapped(e, source) from None
        freed = 0
        try:
            existing = os.lstat(toPath)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise _mapped(e, dest) from None
        else:
            freed = _freed(existing)
        try:
            with self.locks.unclaimed((fromPath, source), (toPath, dest)):
                os.rename(fromPath, toPath)
        except OSError as e:
            raise _mapped(e, dest if e.errno != errno.ENOENT else source) from None
        return freed

    def openRead(self, path: Segments, offset: int) -> Opened:
        """
        Open a regular file for reading at C{offset}. A small file is read
        whole right away and closed (one trip to a thread instead of three
        for the many small files of a mirror).
        """
        real = self.real(path)
        claim = self.locks.claim(real, path, exclusive=False)
        try:
            # O_NONBLOCK: opening a FIFO must not hang the thread.
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            claim.release()
            raise _mapped(e, path) from None
        try:
            st = os.fstat(fd)
            if statmod.S_ISDIR(st.st_mode):
                raise IsADirectory(render(path))
            if not statmod.S_ISREG(st.st_mode):
                raise PermissionDenied(render(path))
            os.set_blocking(fd, True)
            if offset > st.st_size:
                raise BadRestart(offset, st.st_size)
            if offset:
                os.lseek(fd, offset, os.SEEK_SET)
            wanted = st.st_size - offset
            if wanted <= SMALL_FILE:
                chunks = []
                while wanted > 0:
                    chunk = os.read(fd, wanted)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    wanted -= len(chunk)
                os.close(fd)
                claim.release()
                return Opened(None, st.st_size, b"".join(chunks))
        except BaseException:
            os.close(fd)
            claim.release()
            raise
        return Opened(fd, st.st_size, None, claim)

    def openWrite(self, path: Segments, mode: WriteMode, offset: int) -> WritePlan:
        """
        Open an upload; see L{WriteMode}. The upload claims its target in
        L{locks} (exclusively if it writes in place) until L{commit} or
        L{discard}.

        @raise FileBusy: another upload is changing the target in place,
            or, for one in place, anything is using it.
        """
        directory, name = self.parent(path)
        try:
            if not statmod.S_ISDIR(os.stat(directory).st_mode):
                raise NotADirectory(render(path[:-1]))
        except OSError as e:
            raise _mapped(e, path[:-1]) from None
        if mode == "resume" and offset == 0:
            mode = "replace"
        target = os.path.join(directory, name)
        claim = None
        if mode != "unique":
            inPlace = mode in ("append", "resume")
            claim = self.locks.claim(target, path, exclusive=inPlace)
        try:
            return self._openWrite(directory, target, path, mode, offset, claim)
        except BaseException:
            if claim is not None:
                claim.release()
            raise

    def _openWrite(
        self,
        directory: str,
        target: str,
        path: Segments,
        mode: WriteMode,
        offset: int,
        claim: Claim | None,
    ) -> WritePlan:
        try:
            existing: os.stat_result | None = os.lstat(target)
        except FileNotFoundError:
            existing = None
        except OSError as e:
            raise _mapped(e, path) from None
        if existing is not None and mode != "unique":
            if statmod.S_ISDIR(existing.st_mode):
                raise IsADirectory(render(path))
            if not statmod.S_ISREG(existing.st_mode):
                raise PermissionDenied(render(path))
        oldSize = existing.st_size if existing is not None else 0
        flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        created = existing is None
        try:
            if mode == "append":
                fd = os.open(target, flags | os.O_CREAT | os.O_APPEND, 0o644)
                base = os.fstat(fd).st_size
                return WritePlan(
                    fd, target, None, False, created, oldSize, base, path, claim
                )
            if mode == "resume":
                if existing is None:
                    raise BadRestart(offset, 0)
                if offset > oldSize:
                    raise BadRestart(offset, oldSize)
                fd = os.open(target, flags)
                try:
                    os.ftruncate(fd, offset)
                    os.lseek(fd, offset, os.SEEK_SET)
                except BaseException:
                    os.close(fd)
                    raise
                return WritePlan(
                    fd, target, None, False, False, oldSize, offset, path, claim
                )
            reserved = False
            final = path
            if mode == "unique":
                target, final, claim = self._reserve(directory, path)
                reserved = True
                oldSize = 0
            temp = self._temp(directory)
            try:
                fd = os.open(temp, flags | os.O_CREAT | os.O_EXCL, 0o644)
            except BaseException:
                if reserved:
                    os.unlink(target)
                    if claim is not None:
                        claim.release()
                raise
            return WritePlan(
                fd, target, temp, reserved, created, oldSize, 0, final, claim
            )
        except OSError as e:
            raise _mapped(e, path) from None

    def _reserve(self, directory: str, path: Segments) -> tuple[str, Segments, Claim]:
        """
        Create an empty file under a name nothing has yet, and claim it:
        the requested name, else the name with C{.1}, C{.2}... appended.
        A name an upload is writing in place counts as taken.
        """
        base = path[-1]
        for n in range(1000):
            name = base if n == 0 else f"{base}.{n}"
            target = os.path.join(directory, name)
            final = path[:-1] + (name,)
            try:
                claim = self.locks.claim(target, final, exclusive=False)
            except FileBusy:
                continue
            try:
                fd = os.open(
                    target,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                    0o644,
                )
            except FileExistsError:
                claim.release()
                continue
            except BaseException:
                claim.release()
                raise
            os.close(fd)
            return target, final, claim
        raise FileExists(render(path))

    def _temp(self, directory: str) -> str:
        where = self.staging or directory
        return os.path.join(where, f".appnet-upload-{secrets.token_hex(8)}")

    def commit(self, plan: WritePlan) -> None:
        """
        Close an upload whose data is fsynced, put it in place and make the
        directory entry durable; let its claim go.
        """
        try:
            os.close(plan.fd)
            if plan.temp is not None:
                try:
                    os.rename(plan.temp, plan.target)
                except OSError as e:
                    _unlink(plan.temp)
                    if plan.reserved:
                        _unlink(plan.target)
                    raise _mapped(e, plan.name) from None
            if plan.temp is not None or plan.created:
                _fsyncDirectory(os.path.dirname(plan.target))
        finally:
            if plan.claim is not None:
                plan.claim.release()

    def discard(self, plan: WritePlan) -> None:
        """
        Close an upload that failed; remove what only it created; let its
        claim go.
        """
        try:
            os.close(plan.fd)
            if plan.temp is not None:
                _unlink(plan.temp)
            if plan.reserved:
                _unlink(plan.target)
        finally:
            if plan.claim is not None:
                plan.claim.release()


def _freed(st: os.stat_result) -> int:
    if statmod.S_ISREG(st.st_mode) and st.st_nlink <= 1:
        return st.st_size
    return 0


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsyncDirectory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@define
class Quota:
    """
    One account's disk usage against its limit, shared by its sessions.

    Uploads in progress hold reservations, so two parallel uploads cannot
    together pass the limit.
    """

    limit: int
    used: int
    _inflight: dict[object, int] = field(factory=dict)

    def allows(self, upload: object, delta: int) -> bool:
        """
        May C{upload} grow the usage by C{delta} bytes in total? If so, it
        is reserved.
        """
        others = sum(v for k, v in self._inflight.items() if k is not upload)
        if self.used + others + max(delta, 0) > self.limit:
            return False
        self._inflight[upload] = max(delta, 0)
        return True

    def settle(self, upload: object, delta: int) -> None:
        """C{upload} ended, having changed the usage by C{delta}."""
        self._inflight.pop(upload, None)
        self.used = max(0, self.used + delta)

    def freed(self, amount: int) -> None:
        """A deletion freed C{amount} bytes."""
        self.used = max(0, self.used - amount)


@define
class Account:
    """
    What all sessions of one account share.
    """

    name: str
    quota: Quota | None = None
    bucket: TokenBucket | None = None
    sessions: int = 0


@define
class Accounts:
    """
    The accounts with open sessions, each with its quota and rate limit.
    An account is forgotten when its last session ends, so a quota is
    recounted from the disk at the next login.
    """

    _run: InThread
    _clock: IReactorTime
    rateLimit: int = 0
    _open: dict[str, Account] = field(factory=dict)
    _waiting: dict[str, list[Deferred[Account]]] = field(factory=dict)

    async def attach(self, name: str, root: str, limit: int | None) -> Account:
        """
        The shared state of account C{name}, counting its usage below
        C{root} if it has a quota and no other session has (sessions logging
        in meanwhile wait for that one count).
        """
        account = self._open.get(name)
        if account is None:
            waiters = self._waiting.get(name)
            if waiters is not None:
                waiter: Deferred[Account] = Deferred()
                waiters.append(waiter)
                account = await waiter
            else:
                self._waiting[name] = []
                try:
                    account = await self._create(name, root, limit)
                except BaseException:
                    failure = Failure()
                    for waiter in self._waiting.pop(name):
                        waiter.errback(failure)
                    raise
                for waiter in self._waiting.pop(name):
                    waiter.callback(account)
        account.sessions += 1
        return account

    async def _create(self, name: str, root: str, limit: int | None) -> Account:
        quota = None
        if limit is not None:
            quota = Quota(limit, await self._run(usage, root))
        bucket = TokenBucket(self._clock, self.rateLimit) if self.rateLimit else None
        account = Account(name, quota, bucket)
        self._open[name] = account
        return account

    def detach(self, account: Account) -> None:
        """One of C{account}'s sessions ended."""
        account.sessions -= 1
        if account.sessions <= 0 and self._open.get(account.name) is account:
            del self._open[account.name]


@implementer(IReadHandle)
class ReadHandle:
    """
    A file open for a download.
    """

    def __init__(
        self,
        run: InThread,
        clock: IReactorTime,
        opened: Opened,
        offset: int,
    ) -> None:
        self._run = run
        self._clock = clock
        self._fd: int | None = opened.fd
        self._claim = opened.claim
        self._data = opened.data
        self._sender: FileSender | None = None
        self.size = opened.size
        self.offset = offset

    def sendTo(
        self,
        consumer: IConsumer,
        transform: Callable[[bytes], bytes] | None = None,
        throttle: Callable[[int], float] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Deferred[int]:
        if self._data is not None:
            data, self._data = self._data, None
            if progress is not None:
                progress(len(data))
            if throttle is not None:
                throttle(len(data))
            consumer.write(transform(data) if transform else data)
            return succeed(len(data))
        assert self._fd is not None, "file already closed"
        assert self._sender is None, "sendTo called twice"
        self._sender = FileSender(
            self._run,
            self._fd,
            consumer,
            self._clock,
            transform=transform,
            throttle=throttle,
            progress=progress,
            length=self.size - self.offset,
        )
        return self._sender.start()

    def send(self, consumer: IConsumer) -> Deferred[int]:
        """L{IReadFile.send}: the whole file, then close it."""
        d = self.sendTo(consumer)

        def closed(result: object) -> Deferred[object]:
            return self.close().addCallback(lambda _: result)

        return d.addBoth(closed)

    def close(self) -> Deferred[None]:
        fd, self._fd = self._fd, None
        if fd is None:
            return succeed(None)

        async def close() -> None:
            try:
                if self._sender is not None:
                    await self._sender.quiet()
                await self._run(os.close, fd)
            finally:
                if self._claim is not None:
                    self._claim.release()

        return Deferred.fromCoroutine(close())


@implementer(IWriteHandle)
class WriteHandle:
    """
    A file open for an upload.
    """

    def __init__(self, shell: HomeShell, plan: WritePlan, mode: WriteMode) -> None:
        self._shell = shell
        self._plan = plan
        self._mode = mode
        self._receiver: FileReceiver | None = None
        self._ended = False
        self.path = render(plan.name)

    def _delta(self, received: int) -> int:
        """How much the account's usage grows once C{received} bytes land."""
        plan = self._plan
        if self._mode in ("append", "resume"):
            return max(0, plan.base + received - plan.oldSize)
        return received - plan.oldSize

    def _limit(self, received: int) -> FTPCommandError | None:
        shell = self._shell
        if shell.maxUpload and self._plan.base + received > shell.maxUpload:
            return UploadTooLarge(shell.maxUpload)
        quota = shell.quota
        if quota is not None and not quota.allows(self, self._delta(received)):
            return QuotaExceeded(quota.limit)
        return None

    def receiver(self) -> FileReceiver:
        if self._receiver is None:
            self._receiver = FileReceiver(
                self._shell.run, self._plan.fd, limit=self._limit, lazy=LAZY_WRITE
            )
        return self._receiver

    def receive(self) -> Deferred[IConsumer]:
        """L{IWriteFile.receive}."""
        return succeed(self.receiver())

    def close(self) -> Deferred[int]:
        """L{IWriteFile.close}: the same as L{commit}."""
        return self.commit()

    def commit(self) -> Deferred[int]:
        return Deferred.fromCoroutine(self._commit())

    async def _commit(self) -> int:
        assert not self._ended, "upload already ended"
        receiver = self.receiver()
        committing: list[bool] = []
        jail, plan = self._shell.jail, self._plan

        def commit() -> None:
            # In the thread, after the last write and the fsync: one trip
            # for the end of every upload.
            committing.append(True)
            jail.commit(plan)

        try:
            written = await receiver.finish(commit)
        except BaseException:
            if committing:
                # Jail.commit closed the file and cleaned up after itself.
                self._ended = True
                if self._shell.quota is not None:
                    self._shell.quota.settle(self, 0)
            else:
                await self._discard()
            raise
        self._ended = True
        if self._shell.quota is not None:
            self._shell.quota.settle(self, self._delta(receiver.received))
        return written

    def discard(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._discard())

    async def _discard(self) -> None:
        if self._ended:
            return
        self._ended = True
        quota = self._shell.quota
        if quota is not None:
            # Bytes already written in place stay there.
            inPlace = self._plan.temp is None
            written = self._receiver.written if self._receiver else 0
            quota.settle(self, self._delta(written) if inPlace else 0)
        try:
            if self._receiver is not None:
                # No further writes may start, and the one in flight must
                # end before the descriptor is closed.
                self._receiver.fail(TransferAborted("upload discarded"))
                await self._receiver.quiet()
            await self._shell.run(self._shell.jail.discard, self._plan)
        except OSError as e:
            _log.error("Could not discard an upload: {error}", error=e)


@implementer(IFTPFilesystem)
class HomeShell:
    """
    One session's view of its home: L{IFTPFilesystem} over a L{Jail}.

    @ivar account: the account name (C{anonymous} for the anonymous area).
    """

    def __init__(
        self,
        jail: Jail,
        run: InThread,
        clock: IReactorTime,
        *,
        account: Account,
        readOnly: bool = False,
        maxUpload: int = 0,
        onLogout: Callable[[], None] | None = None,
    ) -> None:
        self.jail = jail
        self.run = run
        self._clock = clock
        self._account = account
        self.account = account.name
        self.readOnly = readOnly
        self.maxUpload = maxUpload
        self._onLogout = onLogout

    @property
    def quota(self) -> Quota | None:
        return self._account.quota

    def _ro(self, path: Sequence[str]) -> Deferred[Any] | None:
        if self.readOnly:
            d: Deferred[Any] = Deferred()
            d.errback(ReadOnly(render(path)))
            return d
        return None

    # IFTPFilesystem

    def entries(self, path: Sequence[str]) -> Deferred[list[Entry]]:
        return self.run(self.jail.entries, tuple(path))

    def info(self, path: Sequence[str]) -> Deferred[Entry]:
        return self.run(self.jail.info, tuple(path))

    def movable(self, path: Sequence[str]) -> Deferred[Entry]:
        refused = self._ro(path)
        if refused is not None:
            return refused
        return self.run(self.jail.movable, tuple(path))

    def listing(self, path: Sequence[str]) -> Deferred[tuple[Entry, list[Entry]]]:
        return self.run(self.jail.listing, tuple(path))

    def openRead(self, path: Sequence[str], offset: int = 0) -> Deferred[IReadHandle]:
        async def opened() -> IReadHandle:
            opened = await self.run(self.jail.openRead, tuple(path), offset)
            return ReadHandle(self.run, self._clock, opened, offset)

        return Deferred.fromCoroutine(opened())

    def openWrite(
        self, path: Sequence[str], mode: WriteMode = "replace", offset: int = 0
    ) -> Deferred[IWriteHandle]:
        refused = self._ro(path)
        if refused is not None:
            return refused

        async def opened() -> IWriteHandle:
            plan = await self.run(self.jail.openWrite, tuple(path), mode, offset)
            return WriteHandle(self, plan, mode)

        return Deferred.fromCoroutine(opened())

    def throttle(self, amount: int) -> float:
        bucket = self._account.bucket
        if bucket is None:
            return 0.0
        return bucket.take(amount)

    def logout(self) -> None:
        callback, self._onLogout = self._onLogout, None
        if callback is not None:
            callback()

    # IFTPShell (Twisted's interface; the server uses the methods above)

    def makeDirectory(self, path: Sequence[str]) -> Deferred[None]:
        return self._ro(path) or self.run(self.jail.mkdir, tuple(path))

    def removeDirectory(self, path: Sequence[str]) -> Deferred[None]:
        return self._ro(path) or self.run(self.jail.rmdir, tuple(path))

    def removeFile(self, path: Sequence[str]) -> Deferred[None]:
        refused = self._ro(path)
        if refused is not None:
            return refused

        def freed(amount: int) -> None:
            if self.quota is not None:
                self.quota.freed(amount)

        return self.run(self.jail.remove, tuple(path)).addCallback(freed)

    def rename(self, fromPath: Sequence[str], toPath: Sequence[str]) -> Deferred[None]:
        refused = self._ro(fromPath)
        if refused is not None:
            return refused

        def freed(amount: int) -> None:
            if self.quota is not None:
                self.quota.freed(amount)

        return self.run(self.jail.rename, tuple(fromPath), tuple(toPath)).addCallback(
            freed
        )

    def access(self, path: Sequence[str]) -> Deferred[None]:
        return self.run(self.jail.directory, tuple(path))

    def stat(
        self, path: Sequence[str], keys: Sequence[str] = ()
    ) -> Deferred[list[Any]]:
        return self.info(path).addCallback(lambda entry: _keys(entry, keys))

    def list(
        self, path: Sequence[str], keys: Sequence[str] = ()
    ) -> Deferred[list[tuple[str, list[Any]]]]:
        return self.entries(path).addCallback(
            lambda entries: [(e.name, _keys(e, keys)) for e in entries]
        )

    def openForReading(self, path: Sequence[str]) -> Deferred[IReadHandle]:
        return self.openRead(path)

    def openForWriting(self, path: Sequence[str]) -> Deferred[IWriteHandle]:
        return self.openWrite(path)


def _keys(entry: Entry, keys: Sequence[str]) -> list[Any]:
    values = {
        "size": entry.size,
        "directory": entry.kind == "dir",
        "permissions": Permissions(statmod.S_IMODE(entry.mode)),
        "hardlinks": entry.links,
        "modified": entry.modified,
        "owner": "ftp",
        "group": "ftp",
    }
    return [values[k] for k in keys]


@implementer(IRealm)
@define
class FTPRealm:
    """
    Makes the shell a logged-in account gets: its home under C{homes}
    (created at first login), its quota (the account's, else
    C{defaultQuota}; 0 is none) and its share of the rate limit.

    @ivar anonymousRoot: the read-only area anonymous logins see, if any.
    """

    homes: str
    staging: str
    users: IUserStore
    run: InThread
    clock: IReactorTime
    accounts: Accounts
    defaultQuota: int = 0
    maxUpload: int = 0
    anonymousRoot: str | None = None
    locks: FileLocks = field(factory=FileLocks)

    def requestAvatar(
        self, avatarId: Any, mind: object, *interfaces: type[Interface]
    ) -> Deferred[tuple[type[Interface], object, Callable[[], None]]]:
        if IFTPShell not in interfaces and IFTPFilesystem not in interfaces:
            raise NotImplementedError("the FTP realm only makes FTP shells")
        iface = IFTPFilesystem if IFTPFilesystem in interfaces else IFTPShell

        async def make() -> tuple[type[Interface], object, Callable[[], None]]:
            shell = await self.shellFor(str(avatarId))
            return iface, shell, shell.logout

        return Deferred.fromCoroutine(make())

    async def shellFor(self, address: str) -> HomeShell:
        """
        The shell of account C{address}, creating its home if needed.
        """
        user = await self.users.getUser(address)
        limit = user.quota if user is not None else None
        if limit is None and self.defaultQuota:
            limit = self.defaultQuota
        home = os.path.join(self.homes, homeName(address))
        root = await self.run(_makeHome, home, self.staging)
        account = await self.accounts.attach(address, root, limit)
        return HomeShell(
            Jail(root, self.staging, self.locks),
            self.run,
            self.clock,
            account=account,
            maxUpload=self.maxUpload,
            onLogout=lambda: self.accounts.detach(account),
        )

    async def anonymous(self) -> HomeShell:
        """
        A read-only shell on the anonymous area.
        """
        if self.anonymousRoot is None:
            raise PermissionDenied("/")
        root = await self.run(_makeHome, self.anonymousRoot, None)
        account = await self.accounts.attach("anonymous", root, None)
        return HomeShell(
            Jail(root, None, self.locks),
            self.run,
            self.clock,
            account=account,
            readOnly=True,
            onLogout=lambda: self.accounts.detach(account),
        )


def _makeHome(home: str, staging: str | None) -> str:
    """
    Create a home (and the staging directory) if missing; return its real
    path.
    """
    os.makedirs(home, 0o750, exist_ok=True)
    if staging is not None:
        os.makedirs(staging, 0o700, exist_ok=True)
    return os.path.realpath(home)
