"""
L{appnet.web.proxy.store.CacheStore}: memory and disk tiers, LRU limits,
restart, and crash safety (file work runs inline here).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from appnet.web.proxy.interfaces import ICacheStore
from appnet.web.proxy.policy import StoredResponse
from appnet.web.proxy.store import CacheStore, entryId


def inline(f: Any, *args: Any) -> Deferred[Any]:
    """Run file work at once, as the thread pool would later."""
    return maybeDeferred(f, *args)


def response(
    key: bytes, size: int, vary: tuple[tuple[bytes, bytes], ...] = ()
) -> StoredResponse:
    """A stored response of C{size} bytes."""
    return StoredResponse(
        key=key,
        vary=vary,
        status=200,
        fields=((b"cache-control", b"max-age=60"), (b"content-length", b"%d" % size)),
        requestTime=1.0,
        responseTime=2.0,
        initialAge=1.0,
        size=size,
    )


class StoreTests(SynchronousTestCase):
    """The store keeps what fits and forgets the least recently used."""

    def make(self, directory: str | None, **kw: int) -> CacheStore:
        """A store with small limits."""
        limits = {"memoryLimit": 100, "memoryObjectLimit": 50, "diskLimit": 300}
        limits.update(kw)
        return CacheStore(directory, inThread=inline, **limits)

    def body(self, store: CacheStore, stored: StoredResponse) -> bytes | None:
        """The body (read whole if it came as a file), or None when gone."""
        d = store.body(stored)
        if d is None:
            return None
        result = self.successResultOf(d)
        if isinstance(result, bytes):
            return result
        with result:
            return result.read()

    def test_largeBodyAsFile(self) -> None:
        """
        A body on disk larger than the memory tier's objects comes as an
        open file, to be streamed; a smaller one as bytes.
        """
        directory = self.mktemp()
        store = self.make(directory, memoryLimit=0)
        self.successResultOf(store.load())
        big, small = response(b"big", 120), response(b"small", 10)
        store.put(big, b"b" * 120)
        store.put(small, b"s" * 10)
        d = store.body(big)
        assert d is not None
        f = self.successResultOf(d)
        self.assertNotIsInstance(f, bytes)
        f.close()
        d = store.body(small)
        assert d is not None
        self.assertEqual(self.successResultOf(d), b"s" * 10)

    def test_interface(self) -> None:
        """CacheStore provides ICacheStore."""
        self.assertTrue(verifyObject(ICacheStore, self.make(None)))

    def test_memoryOnly(self) -> None:
        """Without a directory, bodies live in memory under an LRU byte cap."""
        store = self.make(None)
        a, b, c = (response(k, 40) for k in (b"a", b"b", b"c"))
        for r in (a, b):
            store.put(r, b"x" * 40)
        self.assertEqual(self.body(store, a), b"x" * 40)  # a is now recent
        store.put(c, b"y" * 40)
        self.assertIsNone(self.body(store, b))
        self.assertEqual(self.body(store, a), b"x" * 40)
        self.assertEqual(store.variants(b"b"), [])
        self.assertEqual(store.variants(b"c"), [c])

    def test_diskSurvivesRestart(self) -> None:
        """Entries on disk are found again by a new store over the directory."""
        directory = self.mktemp()
        store = self.make(directory)
        self.successResultOf(store.load())
        big = response(b"http://h/big", 120)
        small = response(b"http://h/s", 10, vary=((b"accept-encoding", b"gzip"),))
        store.put(big, b"b" * 120)
        store.put(small, b"s" * 10)
        again = self.make(directory)
        self.successResultOf(again.load())
        self.assertEqual(again.variants(b"http://h/big"), [big])
        self.assertEqual(self.body(again, big), b"b" * 120)
        self.assertEqual(self.body(again, small), b"s" * 10)
        self.assertEqual(again.stats()["memory_bytes"], 10)

    def test_diskLimit(self) -> None:
        """Over the disk cap, the least recently used entries are removed."""
        directory = self.mktemp()
        store = self.make(directory)
        self.successResultOf(store.load())
        rs = [response(b"k%d" % i, 100) for i in range(4)]
        for r in rs:
            store.put(r, b"z" * 100)
        self.assertEqual(store.variants(b"k0"), [])
        self.assertEqual(store.stats()["disk_bytes"], 300)
        self.assertEqual(
            len([n for n in os.listdir(directory) if n.endswith(".body")]), 3
        )

    def test_truncatedBodyDropped(self) -> None:
        """
        An entry whose body file is shorter than its metadata says (a crash
        in the middle of a write) is removed at load, never served; stray
        temporary files are removed too.
        """
        directory = self.mktemp()
        store = self.make(directory)
        self.successResultOf(store.load())
        r = response(b"http://h/t", 100)
        store.put(r, b"t" * 100)
        ident = entryId(r.key, r.vary)
        [bodyName] = [n for n in os.listdir(directory) if n.endswith(".body")]
        with open(os.path.join(directory, bodyName), "r+b") as f:
            f.truncate(60)
        with open(os.path.join(directory, "junk.1234.tmp"), "wb") as f:
            f.write(b"partial")
        again = self.make(directory)
        self.successResultOf(again.load())
        self.assertEqual(again.variants(b"http://h/t"), [])
        self.assertEqual(os.listdir(directory), [])
        self.assertFalse(os.path.exists(os.path.join(directory, ident + ".meta")))

    def test_orphanBody(self) -> None:
        """A body whose metadata was never committed is removed at load."""
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "abc.123.body"), "wb") as f:
            f.write(b"orphan")
        store = self.make(directory)
        self.successResultOf(store.load())
        self.assertEqual(os.listdir(directory), [])

    def test_replaceAndRemove(self) -> None:
        """A new response for the same keys replaces the old; remove drops all."""
        directory = self.mktemp()
        store = self.make(directory)
        self.successResultOf(store.load())
        first = response(b"k", 100)
        store.put(first, b"1" * 100)
        store.put(first, b"2" * 100)
        self.assertEqual(self.body(store, first), b"2" * 100)
        self.assertEqual(len(os.listdir(directory)), 2)
        self.assertEqual(store.remove(b"k"), 1)
        self.assertEqual(os.listdir(directory), [])
        self.assertEqual(store.stats()["disk_bytes"], 0)

    def test_update(self) -> None:
        """Updated metadata (after a 304) is what a restart finds."""
        directory = self.mktemp()
        store = self.make(directory)
        self.successResultOf(store.load())
        r = response(b"k", 100)
        store.put(r, b"u" * 100)
        newer = StoredResponse(
            key=r.key,
            vary=r.vary,
            status=200,
            fields=r.fields + ((b"x-new", b"1"),),
            requestTime=9.0,
            responseTime=9.0,
            initialAge=0.0,
            size=100,
        )
        store.update(newer)
        again = self.make(directory)
        self.successResultOf(again.load())
        self.assertEqual(again.variants(b"k"), [newer])
