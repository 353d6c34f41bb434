"""
C{appnet ftp}: list, download, upload, make and remove directories, and
mirror trees, with a progress bar on transfers::

    appnet ftp ls ftp://alice%40example.org@localhost:2121/docs/
    appnet ftp get ftp://alice%40example.org@localhost:2121/docs/a.pdf --resume
    appnet ftp put report.pdf ftp://alice%40example.org@localhost:2121/docs/
    appnet ftp mirror ftp://alice%40example.org@localhost:2121/docs/ ./docs
    appnet ftp mirror --reverse ./docs ftp://alice%40example.org@localhost:2121/docs

URLs are C{ftp://} (C{--tls} adds AUTH TLS), C{ftpes://} (explicit TLS) or
C{ftps://} (implicit TLS, port 990). The password comes from the URL, from
standard input (C{--password-stdin}) or from a prompt; without a user name
the login is anonymous.
"""

from __future__ import annotations

import os
from typing import TextIO
from urllib.parse import unquote, urlsplit

from attrs import frozen
from twisted.internet.threads import deferToThread
from twisted.python import usage

from appnet.cli import Command, CommandError, Context, SubOptions, readSecret
from appnet.errors import CannotConnect
from appnet.ftp.client import FTPClient, clientTLS, connectFTP
from appnet.ftp.errors import FTPClientError, FTPError
from appnet.ftp.listing import Listed
from appnet.progress import Progress

__all__ = ["FTPOptions"]


@frozen
class Location:
    """A parsed FTP URL."""

    scheme: str
    host: str
    port: int
    user: str | None
    password: str | None
    path: str

    @property
    def directory(self) -> bool:
        """Does the path end with C{/} (so it names a directory)?"""
        return self.path.endswith("/")


def parseURL(text: str) -> Location:
    """
    Read C{ftp://user:password@host:port/path}.

    @raise CommandError: naming what is wrong.
    """
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("ftp", "ftpes", "ftps"):
        raise CommandError(f"not an FTP URL: {text} (use ftp://host/path)")
    if not parts.hostname:
        raise CommandError(f"no host in {text}")
    try:
        port = parts.port or (990 if scheme == "ftps" else 21)
    except ValueError:
        raise CommandError(f"bad port in {text}") from None
    return Location(
        scheme,
        parts.hostname,
        port,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password is not None else None,
        unquote(parts.path) or "/",
    )


class _FTPCommand(Command):
    """Options every C{appnet ftp} subcommand has."""

    optFlags = [
        ["tls", None, "Use explicit TLS (AUTH TLS) on an ftp:// URL."],
        ["insecure", "k", "Do not verify the server's certificate."],
        ["active", None, "Active data connections (PORT/EPRT), not passive."],
        ["password-stdin", None, "Read the password from standard input."],
        ["progress", None, "Show progress even when not on a terminal."],
        ["no-progress", None, "Never show progress."],
    ]
    optParameters = [
        ["cacert", None, None, "Trust the certificate(s) in this PEM file."],
    ]
    password: str | None = None

    def location(self) -> Location:
        raise NotImplementedError

    def prepare(self, stdin: TextIO) -> None:
        where = self.location()
        if where.password is not None or where.user is None:
            return
        self.password = readSecret(
            stdin, self["password-stdin"], f"Password for {where.user}: "
        )

    def progress(self, context: Context, label: str, total: int | None) -> Progress:
        enabled = not self["no-progress"] and (
            self["progress"] or getattr(context.err, "isatty", lambda: False)()
        )
        return Progress(context.err, label, total, enabled)

    async def connect(self, context: Context) -> FTPClient:
        where = self.location()
        tls = None
        if where.scheme in ("ftpes", "ftps") or self["tls"] or self["cacert"]:
            ca = None
            if self["cacert"]:
                try:
                    with open(self["cacert"], "rb") as f:
                        ca = f.read()
                except OSError as e:
                    problem = f"cannot read {self['cacert']}: {e.strerror}"
                    raise CommandError(problem) from None
            tls = clientTLS(where.host, ca, verify=not self["insecure"])
        user = where.user or "anonymous"
        password = where.password or self.password or "anonymous@"
        try:
            return await connectFTP(
                context.reactor,
                where.host,
                where.port,
                user=user,
                password=password,
                tls=tls,
                passive=not self["active"],
                implicit=where.scheme == "ftps",
            )
        except FTPClientError as e:
            if where.user is None and e.code == 530:
                raise CommandError(
                    f"{e} (anonymous FTP: give a user, as in ftp://USER@{where.host}/)"
                ) from None
            raise CommandError(str(e)) from None
        except (FTPError, CannotConnect) as e:
            raise CommandError(str(e)) from None
        except Exception as e:
            raise CommandError(f"{where.host}:{where.port}: {e}") from None

    async def run(self, context: Context) -> None:
        client = await self.connect(context)
        try:
            await self.work(client, context)
        except FTPError as e:
            raise CommandError(str(e)) from None
        finally:
            await client.quit()

    async def work(self, client: FTPClient, context: Context) -> None:
        raise NotImplementedError


class _OneURL(_FTPCommand):
    def parseArgs(self, url: str) -> None:  # type: ignore[override]
        self["url"] = url

    def location(self) -> Location:
        return parseURL(self["url"])


class List(_OneURL):
    """List a directory."""

    synopsis = "URL [--long]"
    optFlags = _FTPCommand.optFlags + [
        ["long", "l", "The server's long listing (LIST), as it sends it."]
    ]

    async def work(self, client: FTPClient, context: Context) -> None:
        path = self.location().path
        if self["long"]:
            for line in await client.list(path):
                context.say(line)
            return
        for entry in await client.entries(path):
            context.say(entry.name + ("/" if entry.kind == "dir" else ""))


class Get(_FTPCommand):
    """Download a file."""

    synopsis = "URL [LOCAL] [--resume]"
    optFlags = _FTPCommand.optFlags + [
        ["resume", "c", "Continue a partial download (REST)."]
    ]

    def parseArgs(self, url: str, local: str | None = None) -> None:  # type: ignore[override]
        self["url"] = url
        self["local"] = local

    def location(self) -> Location:
        return parseURL(self["url"])

    async def work(self, client: FTPClient, context: Context) -> None:
        path = self.location().path
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if not name:
            raise CommandError("the URL names a directory; use mirror")
        local = self["local"] or name
        if os.path.isdir(local):
            local = os.path.join(local, name)
        try:
            total: int | None = await client.size(path)
        except FTPError:
            total = None
        have = os.path.getsize(local) if self["resume"] and os.path.exists(local) else 0
        if total is not None and have == total:
            context.say(f"{local} is complete ({total} bytes)")
            return
        progress = self.progress(context, name, total)
        progress.done = have
        count = await client.retrieveFile(path, local, self["resume"], progress)
        progress.finish()
        context.say(f"{local}: {have + count} bytes")


class Put(_FTPCommand):
    """Upload a file."""

    synopsis = "LOCAL URL [--resume]"
    optFlags = _FTPCommand.optFlags + [
        ["resume", "c", "Continue a partial upload (SIZE, then APPE)."]
    ]

    def parseArgs(self, local: str, url: str) -> None:  # type: ignore[override]
        self["local"] = local
        self["url"] = url

    def location(self) -> Location:
        return parseURL(self["url"])

    async def work(self, client: FTPClient, context: Context) -> None:
        local = self["local"]
        if not os.path.isfile(local):
            raise CommandError(f"{local}: not a file")
        where = self.location()
        path = where.path
        if where.directory:
            path += os.path.basename(local)
        total = os.path.getsize(local)
        progress = self.progress(context, os.path.basename(local), total)
        if self["resume"]:
            try:
                progress.done = await client.size(path)
            except FTPError:
                pass
        count = await client.storeFile(local, path, self["resume"], progress)
        progress.finish()
        context.say(f"{path}: {count} bytes sent")


class MakeDirectory(_OneURL):
    """Make a directory."""

    synopsis = "URL"

    async def work(self, client: FTPClient, context: Context) -> None:
        await client.mkdir(self.location().path)
        context.say(f"created {self.location().path}")


class Remove(_OneURL):
    """Delete a file (or, with --dir, an empty directory)."""

    synopsis = "URL [--dir]"
    optFlags = _FTPCommand.optFlags + [["dir", "d", "Remove an empty directory."]]

    async def work(self, client: FTPClient, context: Context) -> None:
        path = self.location().path
        if self["dir"]:
            await client.rmdir(path)
        else:
            await client.delete(path)
        context.say(f"removed {path}")


class Mirror(_FTPCommand):
    """Copy a directory tree down (or, with --reverse, up)."""

    synopsis = "URL LOCALDIR | --reverse LOCALDIR URL"
    optFlags = _FTPCommand.optFlags + [
        ["reverse", "R", "Upload LOCALDIR to the URL instead."]
    ]

    def parseArgs(self, first: str, second: str) -> None:  # type: ignore[override]
        self["first"] = first
        self["second"] = second

    def location(self) -> Location:
        return parseURL(self["second"] if self["reverse"] else self["first"])

    async def work(self, client: FTPClient, context: Context) -> None:
        if self["reverse"]:
            await self._upload(client, context, self["first"], self.location().path)
        else:
            await self._download(client, context, self.location().path, self["second"])

    async def _download(
        self, client: FTPClient, context: Context, remote: str, local: str
    ) -> None:
        files: list[tuple[str, str, Listed]] = []
        pending = [(remote.rstrip("/") or "/", local)]
        directories = []
        while pending:
            where, into = pending.pop()
            directories.append(into)
            for entry in await client.entries(where):
                if entry.name in (".", "..") or "/" in entry.name:
                    continue
                source = f"{where.rstrip('/')}/{entry.name}"
                target = os.path.join(into, entry.name)
                if entry.kind == "dir":
                    pending.append((source, target))
                elif entry.kind == "file":
                    files.append((source, target, entry))
        await deferToThread(_makeDirectories, directories)
        wanted = await deferToThread(_changed, files)
        total = sum(entry.size or 0 for _, _, entry in wanted)
        progress = self.progress(context, "mirror", total)
        for source, target, entry in wanted:
            await client.retrieveFile(source, target, progress=progress)
            if entry.modified is not None:
                await deferToThread(os.utime, target, (entry.modified, entry.modified))
        progress.finish()
        context.say(
            f"{len(wanted)} of {len(files)} files copied,"
            f" {len(directories)} directories"
        )

    async def _upload(
        self, client: FTPClient, context: Context, local: str, remote: str
    ) -> None:
        if not os.path.isdir(local):
            raise CommandError(f"{local}: not a directory")
        tree = await deferToThread(_walk, local)
        total = sum(size for _, _, size in tree.files)
        progress = self.progress(context, "mirror", total)
        base = remote.rstrip("/")
        for relative in tree.directories:
            try:
                await client.mkdir(f"{base}/{relative}" if relative else base or "/")
            except FTPError:
                pass  # it exists (or the upload below says why not)
        for relative, path, _ in tree.files:
            await client.storeFile(path, f"{base}/{relative}", progress=progress)
        progress.finish()
        context.say(
            f"{len(tree.files)} files sent, {len(tree.directories)} directories"
        )


@frozen
class _Tree:
    directories: list[str]
    files: list[tuple[str, str, int]]


def _walk(root: str) -> _Tree:
    directories = [""]
    files = []
    for here, subdirs, names in os.walk(root):
        relative = os.path.relpath(here, root)
        relative = "" if relative == "." else relative.replace(os.sep, "/")
        subdirs.sort()
        for d in subdirs:
            directories.append(f"{relative}/{d}" if relative else d)
        for name in sorted(names):
            path = os.path.join(here, name)
            if os.path.isfile(path):
                rel = f"{relative}/{name}" if relative else name
                files.append((rel, path, os.path.getsize(path)))
    return _Tree(directories, files)


def _makeDirectories(paths: list[str]) -> None:
    for path in paths:
        os.makedirs(path, exist_ok=True)


def _changed(files: list[tuple[str, str, Listed]]) -> list[tuple[str, str, Listed]]:
    """The files whose local copy is missing or differs in size or time."""
    wanted = []
    for source, target, entry in files:
        try:
            st = os.stat(target)
        except FileNotFoundError:
            wanted.append((source, target, entry))
            continue
        same = st.st_size == entry.size and (
            entry.modified is None or int(st.st_mtime) == int(entry.modified)
        )
        if not same:
            wanted.append((source, target, entry))
    return wanted


class FTPOptions(SubOptions):
    """Talk to FTP servers."""

    synopsis = "ls|get|put|mkdir|rm|mirror ..."
    subCommands = [
        ["ls", None, List, "List a directory."],
        ["get", None, Get, "Download a file."],
        ["put", None, Put, "Upload a file."],
        ["mkdir", None, MakeDirectory, "Make a directory."],
        ["rm", None, Remove, "Delete a file (or an empty directory)."],
        ["mirror", None, Mirror, "Copy a directory tree down or up."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("say ls, get, put, mkdir, rm or mirror")
