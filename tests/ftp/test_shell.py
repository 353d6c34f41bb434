"""
Tests for L{appnet.ftp.shell}: the jail, uploads that land by rename,
quotas, the realm, and the interfaces every implementation provides.
"""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.protocols.ftp import IFTPShell, IReadFile, IWriteFile
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from appnet.ftp._files import inline
from appnet.ftp.errors import (
    BadRestart,
    DirectoryNotEmpty,
    FileBusy,
    FileExists,
    IsADirectory,
    NotADirectory,
    NotFound,
    OutsideHome,
    PermissionDenied,
    QuotaExceeded,
    ReadOnly,
)
from appnet.ftp.interfaces import IFTPFilesystem, IReadHandle, IWriteHandle
from appnet.ftp.shell import (
    Account,
    Accounts,
    FileLocks,
    FTPRealm,
    HomeShell,
    Jail,
    Quota,
    homeName,
    usage,
)
from appnet.store.memory import MemoryUserStore


class _Sink:
    def __init__(self) -> None:
        self.data = b""
        self.producer: object = None

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.data += data


class JailTests(SynchronousTestCase):
    """
    L{Jail}: blocking operations confined to a home.
    """

    def setUp(self) -> None:
        base = os.path.realpath(os.path.abspath(self.mktemp()))
        self.root = os.path.join(base, "home")
        self.staging = os.path.join(base, "staging")
        os.makedirs(self.root)
        os.makedirs(self.staging)
        self.outside = os.path.join(base, "outside")
        with open(self.outside, "wb") as f:
            f.write(b"secret")
        self.jail = Jail(self.root, self.staging)

    def put(self, relative: str, content: bytes = b"") -> str:
        path = os.path.join(self.root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def test_real(self) -> None:
        """Segments map below the root."""
        self.assertEqual(self.jail.real(("a", "b")), os.path.join(self.root, "a", "b"))
        self.assertEqual(self.jail.real(()), self.root)

    def test_symlinkOut(self) -> None:
        """A link whose target is outside the root is refused."""
        os.symlink(self.outside, os.path.join(self.root, "out"))
        os.symlink("..", os.path.join(self.root, "up"))
        self.assertRaises(OutsideHome, self.jail.real, ("out",))
        self.assertRaises(OutsideHome, self.jail.real, ("up", "outside"))
        self.assertRaises(OutsideHome, self.jail.openRead, ("out",), 0)

    def test_prefixSibling(self) -> None:
        """
        A sibling whose name starts with the root's (C{home2} beside
        C{home}) is outside, not inside.
        """
        sibling = self.root + "2"
        os.makedirs(sibling)
        os.symlink(sibling, os.path.join(self.root, "s"))
        self.assertRaises(OutsideHome, self.jail.real, ("s",))

    def test_entries(self) -> None:
        """
        Entries are sorted, typed and sized; links out are left out, links
        inside show their target.
        """
        self.put("b.txt", b"12")
        os.makedirs(os.path.join(self.root, "a"))
        os.symlink(self.outside, os.path.join(self.root, "out"))
        os.symlink("b.txt", os.path.join(self.root, "c"))
        entries = self.jail.entries(())
        self.assertEqual(
            [(e.name, e.kind, e.size) for e in entries if e.kind != "dir"],
            [("b.txt", "file", 2), ("c", "file", 2)],
        )
        self.assertEqual([e.name for e in entries], ["a", "b.txt", "c"])

    def test_entriesOfFile(self) -> None:
        """The entries of a file are that file."""
        self.put("f", b"abc")
        [entry] = self.jail.entries(("f",))
        self.assertEqual((entry.name, entry.size), ("f", 3))

    def test_mkdirRmdir(self) -> None:
        """mkdir and rmdir map errors to typed replies."""
        self.jail.mkdir(("d",))
        self.assertRaises(FileExists, self.jail.mkdir, ("d",))
        self.assertRaises(NotFound, self.jail.mkdir, ("x", "y"))
        self.put("d/f")
        self.assertRaises(DirectoryNotEmpty, self.jail.rmdir, ("d",))
        self.assertRaises(NotADirectory, self.jail.rmdir, ("d", "f"))
        self.assertRaises(PermissionDenied, self.jail.rmdir, ())

    def test_rmdirSymlink(self) -> None:
        """rmdir of a link to a directory does not remove the directory."""
        os.makedirs(os.path.join(self.root, "real"))
        os.symlink("real", os.path.join(self.root, "alias"))
        self.assertRaises(NotADirectory, self.jail.rmdir, ("alias",))
        self.assertTrue(os.path.isdir(os.path.join(self.root, "real")))

    def test_remove(self) -> None:
        """remove deletes files and links, returns the bytes freed."""
        self.put("f", b"12345")
        self.assertEqual(self.jail.remove(("f",)), 5)
        os.makedirs(os.path.join(self.root, "d"))
        self.assertRaises(IsADirectory, self.jail.remove, ("d",))
        os.symlink(self.outside, os.path.join(self.root, "out"))
        self.assertEqual(self.jail.remove(("out",)), 0)
        self.assertTrue(os.path.exists(self.outside), "the target survives")

    def test_rename(self) -> None:
        """rename moves within the root and reports bytes freed."""
        self.put("a", b"1")
        self.put("b", b"22")
        self.assertEqual(self.jail.rename(("a",), ("b",)), 2)
        self.assertRaises(NotFound, self.jail.rename, ("a",), ("c",))
        self.assertRaises(PermissionDenied, self.jail.rename, ("b",), ())

    def test_openRead(self) -> None:
        """openRead gives a descriptor at the offset; directories refused."""
        self.put("f", b"0123456789")
        opened = self.jail.openRead(("f",), 3)
        self.assertEqual((opened.fd, opened.size, opened.data), (None, 10, b"3456789"))
        big = self.put("big", b"x" * 100_000)
        opened = self.jail.openRead(("big",), 10)
        assert opened.fd is not None
        try:
            self.assertEqual(len(os.read(opened.fd, 200_000)), 99_990)
        finally:
            os.close(opened.fd)
        self.assertTrue(big)
        os.makedirs(os.path.join(self.root, "d"))
        self.assertRaises(IsADirectory, self.jail.openRead, ("d",), 0)
        self.assertRaises(BadRestart, self.jail.openRead, ("f",), 11)

    def test_openReadFifo(self) -> None:
        """A FIFO is refused, without hanging."""
        os.mkfifo(os.path.join(self.root, "fifo"))
        self.assertRaises(PermissionDenied, self.jail.openRead, ("fifo",), 0)

    def test_replaceUsesStaging(self) -> None:
        """
        A replacing upload is written in the staging directory and renamed
        over the target on commit; discarding leaves the target alone.
        """
        self.put("f", b"old")
        plan = self.jail.openWrite(("f",), "replace", 0)
        self.assertEqual(os.path.dirname(plan.temp or ""), self.staging)
        os.write(plan.fd, b"new")
        self.assertEqual(open(os.path.join(self.root, "f"), "rb").read(), b"old")
        self.jail.commit(plan)
        self.assertEqual(open(os.path.join(self.root, "f"), "rb").read(), b"new")
        self.assertEqual(os.listdir(self.staging), [])
        plan = self.jail.openWrite(("f",), "replace", 0)
        os.write(plan.fd, b"broken")
        self.jail.discard(plan)
        self.assertEqual(open(os.path.join(self.root, "f"), "rb").read(), b"new")
        self.assertEqual(os.listdir(self.staging), [])

    def test_writeRefusesLinks(self) -> None:
        """No upload mode writes through a link in the last segment."""
        self.put("target", b"keep")
        os.symlink("target", os.path.join(self.root, "alias"))
        for mode in ("replace", "append", "resume"):
            self.assertRaises(
                PermissionDenied, self.jail.openWrite, ("alias",), mode, 1
            )
        self.assertEqual(open(os.path.join(self.root, "target"), "rb").read(), b"keep")

    def test_writeThroughLinkedParentOut(self) -> None:
        """A parent directory that links out of the root is refused."""
        os.symlink(os.path.dirname(self.root), os.path.join(self.root, "up"))
        self.assertRaises(OutsideHome, self.jail.openWrite, ("up", "x"), "replace", 0)

    def test_resume(self) -> None:
        """resume truncates at the offset and writes from there."""
        self.put("f", b"0123456789")
        plan = self.jail.openWrite(("f",), "resume", 4)
        os.write(plan.fd, b"ab")
        self.jail.commit(plan)
        self.assertEqual(open(os.path.join(self.root, "f"), "rb").read(), b"0123ab")
        self.assertRaises(BadRestart, self.jail.openWrite, ("f",), "resume", 99)
        self.assertRaises(BadRestart, self.jail.openWrite, ("new",), "resume", 1)

    def test_unique(self) -> None:
        """unique picks a free name, reserving it until commit or discard."""
        self.put("r", b"1")
        plan = self.jail.openWrite(("r",), "unique", 0)
        self.assertEqual(plan.name, ("r.1",))
        second = self.jail.openWrite(("r",), "unique", 0)
        self.assertEqual(second.name, ("r.2",))
        self.jail.discard(second)
        self.assertFalse(os.path.exists(os.path.join(self.root, "r.2")))
        os.write(plan.fd, b"2")
        self.jail.commit(plan)
        self.assertEqual(open(os.path.join(self.root, "r.1"), "rb").read(), b"2")

    def test_inPlaceUploadMakesBusy(self) -> None:
        """
        While an in-place upload (append, resume) is open, the file may not
        be opened for reading or writing, removed, renamed (nor the
        directory holding it), or be a rename's target: L{FileBusy}. Its
        commit lets the file go.
        """
        self.put("d/f", b"0123")
        self.put("g", b"g")
        for mode, after in (("append", b"0123"), ("resume", b"01")):
            plan = self.jail.openWrite(("d", "f"), mode, 2)
            self.assertRaises(FileBusy, self.jail.openRead, ("d", "f"), 0)
            for other in ("append", "resume", "replace"):
                self.assertRaises(FileBusy, self.jail.openWrite, ("d", "f"), other, 1)
            self.assertRaises(FileBusy, self.jail.remove, ("d", "f"))
            self.assertRaises(FileBusy, self.jail.movable, ("d", "f"))
            self.assertRaises(FileBusy, self.jail.movable, ("d",))
            self.assertRaises(FileBusy, self.jail.rename, ("d",), ("e",))
            self.assertRaises(FileBusy, self.jail.rename, ("g",), ("d", "f"))
            self.assertEqual(self.jail.movable(("g",)).name, "g")
            self.jail.commit(plan)
            self.assertEqual(self.jail.openRead(("d", "f"), 0).data, after)

    def test_downloadHoldsFile(self) -> None:
        """
        An open download of a large file keeps in-place uploads out until
        its claim is released; other downloads and a replacing upload may
        go. A small file is read whole and held for no time at all.
        """
        self.put("big", b"x" * 100_000)
        self.put("small", b"x")
        opened = self.jail.openRead(("big",), 0)
        assert opened.fd is not None and opened.claim is not None
        os.close(opened.fd)
        self.assertRaises(FileBusy, self.jail.openWrite, ("big",), "append", 0)
        second = self.jail.openRead(("big",), 0)
        assert second.fd is not None and second.claim is not None
        os.close(second.fd)
        second.claim.release()
        self.jail.discard(self.jail.openWrite(("big",), "replace", 0))
        self.assertRaises(FileBusy, self.jail.openWrite, ("big",), "resume", 5)
        opened.claim.release()
        self.jail.discard(self.jail.openWrite(("big",), "append", 0))
        self.assertIsNone(self.jail.openRead(("small",), 0).claim)
        self.jail.discard(self.jail.openWrite(("small",), "append", 0))

    def test_claimsEndWithTheUpload(self) -> None:
        """
        Discarding an upload, or failing to open one, lets its file go.
        """
        self.put("f", b"0123")
        self.jail.discard(self.jail.openWrite(("f",), "append", 0))
        self.assertRaises(BadRestart, self.jail.openWrite, ("f",), "resume", 99)
        self.assertRaises(BadRestart, self.jail.openWrite, ("new",), "resume", 1)
        self.assertEqual(self.jail.remove(("f",)), 4)
        self.jail.commit(self.jail.openWrite(("new",), "resume", 0))

    def test_uniqueSkipsBusyName(self) -> None:
        """
        STOU treats a name an in-place upload holds as taken, even before
        the file appears.
        """
        self.jail.locks.claim(os.path.join(self.root, "r"), ("r",), exclusive=True)
        plan = self.jail.openWrite(("r",), "unique", 0)
        self.assertEqual(plan.name, ("r.1",))
        self.jail.discard(plan)


class FileLocksTests(SynchronousTestCase):
    """
    L{FileLocks}: shared claims for downloads and replacing uploads,
    exclusive ones for in-place uploads, refused with C{450} on conflict.
    """

    def setUp(self) -> None:
        self.locks = FileLocks()

    def test_sharedAndExclusive(self) -> None:
        """
        Shared claims coexist; an exclusive one waits for none of them and
        is refused while any is held, and refuses everyone while it is.
        """
        first = self.locks.claim("/h/f", ("f",), exclusive=False)
        second = self.locks.claim("/h/f", ("f",), exclusive=False)
        self.assertRaises(FileBusy, self.locks.claim, "/h/f", ("f",), True)
        first.release()
        self.assertRaises(FileBusy, self.locks.claim, "/h/f", ("f",), True)
        second.release()
        exclusive = self.locks.claim("/h/f", ("f",), exclusive=True)
        for kind in (False, True):
            self.assertRaises(FileBusy, self.locks.claim, "/h/f", ("f",), kind)
        self.locks.claim("/h/g", ("g",), exclusive=True).release()
        exclusive.release()
        self.locks.claim("/h/f", ("f",), exclusive=True).release()

    def test_releaseTwice(self) -> None:
        """Releasing a claim again does not drop someone else's."""
        first = self.locks.claim("/h/f", ("f",), exclusive=False)
        self.locks.claim("/h/f", ("f",), exclusive=False)
        first.release()
        first.release()
        self.assertRaises(FileBusy, self.locks.claim, "/h/f", ("f",), True)

    def test_reply(self) -> None:
        """The refusal is 450 and names the client's path, not the real one."""
        self.locks.claim("/srv/ftp/alice/d/f", ("d", "f"), exclusive=True)
        with self.assertRaises(FileBusy) as caught:
            self.locks.claim("/srv/ftp/alice/d/f", ("d", "f"), exclusive=False)
        self.assertEqual(
            caught.exception.reply(),
            (450, "/d/f: file busy: an upload is changing it; try again later"),
        )

    def test_unclaimed(self) -> None:
        """
        L{FileLocks.unclaimed} runs its block unless an exclusive claim
        holds one of the paths or something below it; shared claims and a
        sibling with the same prefix do not count.
        """
        self.locks.claim("/h/d/f", ("d", "f"), exclusive=True)
        self.locks.claim("/h/g", ("g",), exclusive=False)
        ran = []
        with self.locks.unclaimed(("/h/g", ("g",)), ("/h/dx", ("dx",))):
            ran.append(True)
        self.assertEqual(ran, [True])
        for real, name in (("/h/d/f", ("d", "f")), ("/h/d", ("d",)), ("/h", ())):
            with self.assertRaises(FileBusy):
                with self.locks.unclaimed((real, name)):
                    ran.append(False)
        self.assertEqual(ran, [True])
        self.assertRaises(FileBusy, self.locks.check, "/h/d", ("d",))


class HandleTests(SynchronousTestCase):
    """
    L{HomeShell} and its read and write handles.
    """

    def setUp(self) -> None:
        base = os.path.abspath(self.mktemp())
        self.root = os.path.join(base, "home")
        self.staging = os.path.join(base, "staging")
        os.makedirs(self.root)
        os.makedirs(self.staging)
        self.clock = Clock()

    def shell(self, readOnly: bool = False, quota: Quota | None = None) -> HomeShell:
        account = Account("alice@example.org", quota)
        return HomeShell(
            Jail(self.root, self.staging),
            inline,
            self.clock,
            account=account,
            readOnly=readOnly,
        )

    def test_interfaces(self) -> None:
        """The shell and its handles provide the interfaces they claim."""
        with open(os.path.join(self.root, "f"), "wb") as f:
            f.write(b"x")
        shell = self.shell()
        self.assertTrue(verifyObject(IFTPFilesystem, shell))
        self.assertTrue(verifyObject(IFTPShell, shell))
        reader = self.successResultOf(shell.openRead(("f",)))
        self.assertTrue(verifyObject(IReadHandle, reader))
        self.assertTrue(verifyObject(IReadFile, reader))
        self.successResultOf(reader.close())
        writer = self.successResultOf(shell.openWrite(("g",)))
        self.assertTrue(verifyObject(IWriteHandle, writer))
        self.assertTrue(verifyObject(IWriteFile, writer))
        self.successResultOf(writer.discard())

    def test_twistedInterface(self) -> None:
        """
        Twisted's IFTPShell methods work: list with keys, stat, access,
        and a whole write and read through IWriteFile and IReadFile.
        """
        shell = self.shell()
        writer = self.successResultOf(shell.openForWriting(["f"]))
        consumer = self.successResultOf(writer.receive())
        consumer.write(b"hello")
        self.successResultOf(writer.close())
        [(name, [size, isDir])] = self.successResultOf(
            shell.list([], ("size", "directory"))
        )
        self.assertEqual((name, size, isDir), ("f", 5, False))
        self.assertEqual(self.successResultOf(shell.stat(["f"], ("size",))), [5])
        self.failureResultOf(shell.access(["f"]), NotADirectory)
        reader = self.successResultOf(shell.openForReading(["f"]))
        sink = _Sink()
        self.successResultOf(reader.send(sink))
        self.assertEqual(sink.data, b"hello")

    def test_readOnly(self) -> None:
        """A read-only shell refuses every change with L{ReadOnly}."""
        os.makedirs(os.path.join(self.root, "d"))
        shell = self.shell(readOnly=True)
        self.failureResultOf(shell.makeDirectory(["x"]), ReadOnly)
        self.failureResultOf(shell.removeDirectory(["d"]), ReadOnly)
        self.failureResultOf(shell.removeFile(["d"]), ReadOnly)
        self.failureResultOf(shell.rename(["d"], ["e"]), ReadOnly)
        self.failureResultOf(shell.openWrite(["x"]), ReadOnly)
        self.assertTrue(os.path.isdir(os.path.join(self.root, "d")))

    def test_quotaEnforced(self) -> None:
        """The receiver refuses bytes beyond the quota."""
        quota = Quota(10, 4)
        shell = self.shell(quota=quota)
        writer = self.successResultOf(shell.openWrite(["f"]))
        receiver = writer.receiver()
        receiver.write(b"123456")
        self.assertIsNone(receiver.error)
        receiver.write(b"7")
        self.assertIsInstance(receiver.error, QuotaExceeded)
        self.failureResultOf(writer.commit(), QuotaExceeded)
        self.assertEqual(quota.used, 4)
        self.assertFalse(os.path.exists(os.path.join(self.root, "f")))

    def test_quotaAccounting(self) -> None:
        """Commits add to the usage, deletions take away."""
        quota = Quota(100, 0)
        shell = self.shell(quota=quota)
        writer = self.successResultOf(shell.openWrite(["f"]))
        writer.receiver().write(b"x" * 30)
        self.successResultOf(writer.commit())
        self.assertEqual(quota.used, 30)
        self.successResultOf(shell.removeFile(["f"]))
        self.assertEqual(quota.used, 0)

    def test_parallelUploadsShareQuota(self) -> None:
        """Two uploads in flight cannot together pass the quota."""
        quota = Quota(10, 0)
        shell = self.shell(quota=quota)
        first = self.successResultOf(shell.openWrite(["a"])).receiver()
        second = self.successResultOf(shell.openWrite(["b"])).receiver()
        first.write(b"x" * 6)
        second.write(b"y" * 6)
        self.assertIsNone(first.error)
        self.assertIsInstance(second.error, QuotaExceeded)

    def test_readHandleReleases(self) -> None:
        """
        A download's claim on a large file ends when its handle is closed.
        """
        with open(os.path.join(self.root, "f"), "wb") as f:
            f.write(b"x" * 100_000)
        shell = self.shell()
        reader = self.successResultOf(shell.openRead(["f"]))
        self.failureResultOf(shell.openWrite(["f"], "append"), FileBusy)
        self.assertEqual(self.successResultOf(shell.movable(["f"])).size, 100_000)
        self.successResultOf(reader.close())
        writer = self.successResultOf(shell.openWrite(["f"], "append"))
        self.failureResultOf(shell.movable(["f"]), FileBusy)
        self.successResultOf(writer.discard())
        self.assertEqual(self.successResultOf(shell.movable(["f"])).size, 100_000)

    def test_commitOnlyOnce(self) -> None:
        """Discarding after a commit changes nothing."""
        shell = self.shell()
        writer = self.successResultOf(shell.openWrite(["f"]))
        writer.receiver().write(b"data")
        self.successResultOf(writer.commit())
        self.successResultOf(writer.discard())
        with open(os.path.join(self.root, "f"), "rb") as f:
            self.assertEqual(f.read(), b"data")


class AccountTests(SynchronousTestCase):
    """
    L{Accounts}, L{Quota}, L{usage}, L{homeName}.
    """

    def test_usage(self) -> None:
        """usage sums regular files below a directory, not following links."""
        root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(root, "a", "b"))
        for path, size in (("x", 3), ("a/y", 4), ("a/b/z", 5)):
            with open(os.path.join(root, path), "wb") as f:
                f.write(b"_" * size)
        os.symlink("/", os.path.join(root, "rootlink"))
        self.assertEqual(usage(root), 12)

    def test_homeName(self) -> None:
        """A home's name is one path segment, whatever the address."""
        self.assertEqual(homeName("alice@example.org"), "alice@example.org")
        self.assertEqual(homeName("a/b%c@example.org"), "a%2Fb%25c@example.org")

    def test_sharedBetweenSessions(self) -> None:
        """
        Sessions of one account share its quota and rate limit; the last
        logout forgets it.
        """
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        accounts = Accounts(inline, Clock(), rateLimit=1000)
        one = self.successResultOf(accounts.attach("a@b.org", root, 50))
        two = self.successResultOf(accounts.attach("a@b.org", root, 50))
        self.assertIs(one, two)
        self.assertIsNotNone(one.bucket)
        accounts.detach(one)
        three = self.successResultOf(accounts.attach("a@b.org", root, 50))
        self.assertIs(three, one)
        accounts.detach(one)
        accounts.detach(one)
        four = self.successResultOf(accounts.attach("a@b.org", root, 50))
        self.assertIsNot(four, one)


class RealmTests(SynchronousTestCase):
    """
    L{FTPRealm}: homes made at first login, quotas from the store.
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        self.users = MemoryUserStore()
        self.realm = FTPRealm(
            homes=os.path.join(self.base, "ftp"),
            staging=os.path.join(self.base, "ftp", ".partial"),
            users=self.users,
            run=inline,
            clock=Clock(),
            accounts=Accounts(inline, Clock()),
            defaultQuota=1000,
        )

    def test_home(self) -> None:
        """The avatar's home is DATA/ftp/<address>, made on first login."""
        self.users.addUser("a@b.org", "x", quota=None)
        iface, shell, logout = self.successResultOf(
            self.realm.requestAvatar("a@b.org", None, IFTPFilesystem)
        )
        self.assertIs(iface, IFTPFilesystem)
        home = os.path.join(self.base, "ftp", "a@b.org")
        self.assertTrue(os.path.isdir(home))
        self.assertEqual(shell.jail.root, os.path.realpath(home))
        self.assertEqual(shell.quota.limit, 1000, "the configured default")
        logout()

    def test_ownQuota(self) -> None:
        """An account's own quota wins over the default."""
        self.users.addUser("a@b.org", "x", quota=5)
        _, shell, _ = self.successResultOf(
            self.realm.requestAvatar("a@b.org", None, IFTPShell)
        )
        self.assertEqual(shell.quota.limit, 5)

    def test_otherInterfaces(self) -> None:
        """The realm only makes FTP shells."""
        self.assertRaises(
            NotImplementedError, self.realm.requestAvatar, "a@b.org", None, IReadFile
        )

    def test_sessionsShareLocks(self) -> None:
        """
        Every shell the realm makes, of any account, consults the realm's
        one L{FileLocks}: a file is busy for all sessions at once.
        """
        self.users.addUser("a@b.org", "x", quota=None)
        first = self.successResultOf(
            Deferred.fromCoroutine(self.realm.shellFor("a@b.org"))
        )
        second = self.successResultOf(
            Deferred.fromCoroutine(self.realm.shellFor("a@b.org"))
        )
        self.assertIs(first.jail.locks, self.realm.locks)
        self.assertIs(second.jail.locks, self.realm.locks)

    def test_noAnonymous(self) -> None:
        """Without an anonymous area, anonymous shells are refused."""
        self.failureResultOf(
            Deferred.fromCoroutine(self.realm.anonymous()),
            PermissionDenied,
        )
