"""
Where the cache keeps responses: an index in memory, small bodies in a
bounded in-memory LRU, and (when a directory is given) every entry on disk
under a size cap with LRU eviction, reloaded at start.

On disk an entry is two files: C{<id>.<gen>.body} and C{<id>.meta} (JSON
naming the C{gen}). Each is written to a temporary name, fsynced and
renamed in the thread pool; the meta's rename commits the entry, so a crash
leaves either the old entry, the new one, or an orphan body removed at the
next start, never a meta pointing at a truncated body (its size is checked
on load too).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any, BinaryIO

from attrs import define, field
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from appnet.durable import fsyncDirectory, writeDurably
from appnet.web.proxy.interfaces import ICacheStore
from appnet.web.proxy.policy import StoredResponse

__all__ = ["CacheStore", "entryId"]

InThread = Callable[..., "Deferred[Any]"]


def entryId(key: bytes, vary: tuple[tuple[bytes, bytes], ...]) -> str:
    """The file name stem of a response: a hash of both keys."""
    digest = hashlib.sha256(key)
    for name, value in vary:
        digest.update(b"\x00" + name + b"\x01" + value)
    return digest.hexdigest()[:40]


def _encode(stored: StoredResponse, gen: str) -> bytes:
    def text(value: bytes) -> str:
        return value.decode("latin-1")

    return json.dumps(
        {
            "key": text(stored.key),
            "vary": [[text(n), text(v)] for n, v in stored.vary],
            "status": stored.status,
            "fields": [[text(n), text(v)] for n, v in stored.fields],
            "requestTime": stored.requestTime,
            "responseTime": stored.responseTime,
            "initialAge": stored.initialAge,
            "size": stored.size,
            "gen": gen,
        }
    ).encode("utf-8")


def _decode(data: bytes) -> tuple[StoredResponse, str]:
    raw = json.loads(data)

    def pairs(items: list[list[str]]) -> tuple[tuple[bytes, bytes], ...]:
        return tuple((n.encode("latin-1"), v.encode("latin-1")) for n, v in items)

    stored = StoredResponse(
        key=raw["key"].encode("latin-1"),
        vary=pairs(raw["vary"]),
        status=int(raw["status"]),
        fields=pairs(raw["fields"]),
        requestTime=float(raw["requestTime"]),
        responseTime=float(raw["responseTime"]),
        initialAge=float(raw["initialAge"]),
        size=int(raw["size"]),
    )
    return stored, str(raw["gen"])


def _unlink(*paths: str) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


@define
class _Entry:
    stored: StoredResponse
    gen: str
    onDisk: bool = False


@implementer(ICacheStore)
@define
class CacheStore:
    """
    The cache's storage.

    @ivar directory: where entries live on disk, or C{None} for memory only.
    @ivar memoryLimit: total bytes of bodies kept in memory.
    @ivar memoryObjectLimit: bodies up to this size are kept in memory.
    @ivar diskLimit: total bytes of bodies on disk.
    @ivar inThread: runs blocking file work off the reactor.
    """

    directory: str | None
    memoryLimit: int
    memoryObjectLimit: int
    diskLimit: int
    inThread: InThread
    _entries: OrderedDict[str, _Entry] = field(factory=OrderedDict, init=False)
    _byKey: dict[bytes, set[str]] = field(factory=dict, init=False)
    _memory: OrderedDict[str, bytes] = field(factory=OrderedDict, init=False)
    _memoryBytes: int = field(default=0, init=False)
    _diskBytes: int = field(default=0, init=False)
    _log = Logger()

    # Reading.

    def variants(self, key: bytes) -> list[StoredResponse]:
        """The stored responses under primary key C{key}."""
        return [self._entries[i].stored for i in self._byKey.get(key, ())]

    def body(self, stored: StoredResponse) -> Deferred[bytes | BinaryIO] | None:
        """
        The body of C{stored}, or C{None} if it is no longer stored: bytes
        from memory, or read from disk in a thread when small; an open file
        (opened in a thread, its size checked) for larger bodies on disk,
        to be read in chunks.
        """
        ident = entryId(stored.key, stored.vary)
        entry = self._entries.get(ident)
        if entry is None:
            return None
        self._entries.move_to_end(ident)
        data = self._memory.get(ident)
        if data is not None:
            self._memory.move_to_end(ident)
            return succeed(data)
        if not entry.onDisk or self.directory is None:
            return None
        path = self._bodyPath(ident, entry.gen)
        expected = entry.stored.size
        whole = expected <= self.memoryObjectLimit

        def read() -> bytes | BinaryIO:
            f = open(path, "rb")
            try:
                if os.fstat(f.fileno()).st_size != expected:
                    raise OSError(f"cache body {path} has the wrong size")
                if not whole:
                    return f
                data = f.read(expected + 1)
            except BaseException:
                f.close()
                raise
            f.close()
            if len(data) != expected:
                raise OSError(f"cache body {path} has the wrong size")
            return data

        def warm(result: bytes | BinaryIO) -> bytes | BinaryIO:
            # A small body read from disk (after a restart) joins the
            # memory tier again, if its entry is still the same.
            current = self._entries.get(ident)
            if isinstance(result, bytes) and current is entry:
                if ident not in self._memory:
                    self._memory[ident] = result
                    self._memoryBytes += len(result)
                    self._evictMemory()
            return result

        d: Deferred[bytes | BinaryIO] = self.inThread(read)
        return d.addCallback(warm)

    def stats(self) -> dict[str, float]:
        """Entry count and bytes held."""
        return {
            "entries": float(len(self._entries)),
            "memory_bytes": float(self._memoryBytes),
            "disk_bytes": float(self._diskBytes),
        }

    # Writing.

    def put(self, stored: StoredResponse, body: bytes) -> Deferred[None]:
        """
        Store a response (replacing one with the same keys). The entry is
        visible at once from memory; on disk it is committed by a thread.
        """
        ident = entryId(stored.key, stored.vary)
        old = self._entries.pop(ident, None)
        if old is not None:
            self._forgetMemory(ident)
            if old.onDisk:
                self._diskBytes -= old.stored.size
        gen = secrets.token_hex(6)
        entry = _Entry(stored, gen)
        self._entries[ident] = entry
        self._byKey.setdefault(stored.key, set()).add(ident)
        if len(body) <= self.memoryObjectLimit:
            self._memory[ident] = body
            self._memoryBytes += len(body)
            self._evictMemory()
        if self.directory is None:
            if ident not in self._memory:
                self._drop(ident)
            return succeed(None)
        directory = self.directory
        bodyPath = self._bodyPath(ident, gen)
        metaPath = self._metaPath(ident)
        oldBody = self._bodyPath(ident, old.gen) if old is not None else None
        meta = _encode(stored, gen)

        def write() -> None:
            writeDurably(bodyPath, body, mode=0o600, syncDirectory=False)
            writeDurably(metaPath, meta, mode=0o600, syncDirectory=False)
            fsyncDirectory(directory)
            if oldBody is not None:
                _unlink(oldBody)

        def written(_: object) -> None:
            current = self._entries.get(ident)
            if current is entry:
                entry.onDisk = True
                self._diskBytes += stored.size
                self._evictDisk()
            else:
                # Replaced or purged while being written.
                self._removeFiles(ident, gen, meta=current is None)

        def failed(reason: Any) -> None:
            self._log.failure("Writing a cache entry failed", reason)
            if self._entries.get(ident) is entry and ident not in self._memory:
                self._drop(ident)

        d: Deferred[None] = self.inThread(write)
        d.addCallbacks(written, failed)
        return d

    def update(self, stored: StoredResponse) -> Deferred[None]:
        """Replace the metadata of a stored response (after a 304)."""
        ident = entryId(stored.key, stored.vary)
        entry = self._entries.get(ident)
        if entry is None:
            return succeed(None)
        entry.stored = stored
        self._entries.move_to_end(ident)
        if self.directory is None or not entry.onDisk:
            return succeed(None)
        metaPath = self._metaPath(ident)
        meta = _encode(stored, entry.gen)
        d: Deferred[None] = self.inThread(
            partial(writeDurably, mode=0o600, syncDirectory=False), metaPath, meta
        )
        d.addErrback(lambda f: self._log.failure("Updating a cache entry failed", f))
        return d

    def remove(self, key: bytes) -> int:
        """Remove every response under C{key}; how many there were."""
        idents = list(self._byKey.get(key, ()))
        for ident in idents:
            self._drop(ident)
        return len(idents)

    def clear(self) -> int:
        """Remove everything; how many responses there were."""
        count = len(self._entries)
        for ident in list(self._entries):
            self._drop(ident)
        return count

    # Starting.

    def load(self) -> Deferred[None]:
        """
        Read the entries on disk (in a thread), removing temporary files,
        orphan bodies and entries whose body is missing or truncated.
        """
        if self.directory is None:
            return succeed(None)
        directory = self.directory

        def scan() -> list[tuple[str, StoredResponse, str, float]]:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            names = os.listdir(directory)
            metas: list[tuple[str, StoredResponse, str, float]] = []
            keep: set[str] = set()
            for name in names:
                path = os.path.join(directory, name)
                if name.endswith(".tmp"):
                    _unlink(path)
                elif name.endswith(".meta"):
                    ident = name[: -len(".meta")]
                    try:
                        with open(path, "rb") as f:
                            stored, gen = _decode(f.read())
                        body = os.path.join(directory, f"{ident}.{gen}.body")
                        if os.stat(body).st_size != stored.size:
                            raise ValueError("truncated body")
                    except (OSError, ValueError, KeyError, TypeError):
                        _unlink(path)
                        continue
                    keep.add(f"{ident}.{gen}.body")
                    metas.append((ident, stored, gen, os.stat(path).st_mtime))
            for name in names:
                if name.endswith(".body") and name not in keep:
                    _unlink(os.path.join(directory, name))
            metas.sort(key=lambda m: m[3])
            return metas

        def loaded(metas: list[tuple[str, StoredResponse, str, float]]) -> None:
            for ident, stored, gen, _ in metas:
                self._entries[ident] = _Entry(stored, gen, onDisk=True)
                self._byKey.setdefault(stored.key, set()).add(ident)
                self._diskBytes += stored.size
            self._evictDisk()

        scanning: Deferred[list[tuple[str, StoredResponse, str, float]]]
        scanning = self.inThread(scan)
        return scanning.addCallback(loaded)

    # Internals.

    def _bodyPath(self, ident: str, gen: str) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, f"{ident}.{gen}.body")

    def _metaPath(self, ident: str) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, f"{ident}.meta")

    def _forgetMemory(self, ident: str) -> None:
        data = self._memory.pop(ident, None)
        if data is not None:
            self._memoryBytes -= len(data)

    def _drop(self, ident: str) -> None:
        entry = self._entries.pop(ident, None)
        if entry is None:
            return
        self._forgetMemory(ident)
        idents = self._byKey.get(entry.stored.key)
        if idents is not None:
            idents.discard(ident)
            if not idents:
                del self._byKey[entry.stored.key]
        if entry.onDisk:
            self._diskBytes -= entry.stored.size
            self._removeFiles(ident, entry.gen, meta=True)

    def _removeFiles(self, ident: str, gen: str, meta: bool) -> None:
        if self.directory is None:
            return
        paths = [self._bodyPath(ident, gen)]
        if meta:
            paths.insert(0, self._metaPath(ident))
        self.inThread(_unlink, *paths).addErrback(
            lambda f: self._log.failure("Removing a cache entry failed", f)
        )

    def _evictMemory(self) -> None:
        while self._memoryBytes > self.memoryLimit and self._memory:
            ident, data = self._memory.popitem(last=False)
            self._memoryBytes -= len(data)
            entry = self._entries.get(ident)
            if entry is not None and not entry.onDisk and self.directory is None:
                self._drop(ident)

    def _evictDisk(self) -> None:
        for ident in list(self._entries):
            if self._diskBytes <= self.diskLimit:
                break
            if self._entries[ident].onDisk:
                self._drop(ident)
