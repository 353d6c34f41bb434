"""
The journal of a zone changed by dynamic update or incremental transfer:
every L{Diff}, appended and fsynced before the change is acknowledged,
read back at start-up to roll the zone file forward, and kept as the
history incremental transfers (IXFR out) are answered from.

The file sits beside the zone file (C{example.org.zone.jnl}, as BIND
names it). Each entry is a length, a CRC-32 and the diff's records in
wire format; a torn last entry (a crash mid-write, never acknowledged)
is cut off when the journal is read.

Appends are group-committed: L{JournalWriter} writes every entry queued
while the previous fsync ran, then fsyncs once, in a thread.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from io import BytesIO
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.names import dns

from appnet.dns.errors import ZoneError
from appnet.dns.names import display
from appnet.dns.records import recordClass, recordText
from appnet.dns.update import Diff, applyDiffs
from appnet.dns.zones import Zone
from appnet.durable import fsyncDirectory, writeDurably

__all__ = ["Journal", "JournalWriter", "rollForward", "writeDurably", "zoneText"]

MAGIC = b"appnet-journal 1\n"
_ENTRY = struct.Struct("!II")


def _encodeRecord(out: BytesIO, record: dns.RRHeader) -> None:
    record.encode(out, None)


def _decodeRecord(stream: BytesIO) -> dns.RRHeader:
    header = dns.RRHeader(auth=True)
    header.decode(stream)
    payload = recordClass(header.type)(ttl=header.ttl)
    payload.decode(stream, header.rdlength)
    header.payload = payload
    return header


def encodeDiff(diff: Diff) -> bytes:
    """A diff as one journal entry's payload."""
    out = BytesIO()
    _encodeRecord(out, diff.oldSOA)
    out.write(struct.pack("!I", len(diff.deleted)))
    for record in diff.deleted:
        _encodeRecord(out, record)
    _encodeRecord(out, diff.newSOA)
    out.write(struct.pack("!I", len(diff.added)))
    for record in diff.added:
        _encodeRecord(out, record)
    return out.getvalue()


def decodeDiff(data: bytes) -> Diff:
    """The diff of one journal entry's payload."""
    stream = BytesIO(data)
    oldSOA = _decodeRecord(stream)
    (count,) = struct.unpack("!I", stream.read(4))
    deleted = tuple(_decodeRecord(stream) for _ in range(count))
    newSOA = _decodeRecord(stream)
    (count,) = struct.unpack("!I", stream.read(4))
    added = tuple(_decodeRecord(stream) for _ in range(count))
    return Diff(oldSOA, deleted, newSOA, added)


class Journal:
    """
    One zone's journal file (or none: C{path} C{None} keeps the history
    in memory only, for zones given as text).

    @ivar history: every diff, oldest first.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.history: list[Diff] = []

    def read(self) -> list[Diff]:
        """
        Read the journal (blocking: in a thread), cutting off a torn last
        entry.

        @raise ZoneError: if it is not a journal.
        """
        self.history = []
        if self.path is None or not os.path.exists(self.path):
            return self.history
        with open(self.path, "rb") as f:
            data = f.read()
        if not data.startswith(MAGIC):
            raise ZoneError(self.path, 0, "not an appnet journal")
        offset = len(MAGIC)
        good = offset
        while offset + _ENTRY.size <= len(data):
            length, crc = _ENTRY.unpack_from(data, offset)
            body = data[offset + _ENTRY.size : offset + _ENTRY.size + length]
            if len(body) != length or zlib.crc32(body) != crc:
                break
            try:
                self.history.append(decodeDiff(body))
            except (EOFError, ValueError, struct.error):
                break
            offset += _ENTRY.size + length
            good = offset
        if good != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
        return self.history

    def write(self, diffs: Sequence[Diff]) -> None:
        """
        Append C{diffs} and fsync (blocking: in a thread).
        """
        if self.path is None:
            return
        fresh = not os.path.exists(self.path)
        chunks = [MAGIC] if fresh else []
        chunks.extend(_entry(diff) for diff in diffs)
        with open(self.path, "ab") as f:
            f.write(b"".join(chunks))
            f.flush()
            os.fsync(f.fileno())
        if fresh:
            fsyncDirectory(os.path.dirname(self.path))

    def since(self, serial: int) -> list[Diff] | None:
        """
        The diffs from C{serial} to the newest, or C{None} if the history
        does not reach back to it.
        """
        for i, diff in enumerate(self.history):
            if diff.oldSerial == serial:
                chain = self.history[i:]
                if all(
                    a.newSerial == b.oldSerial
                    for a, b in zip(chain, chain[1:], strict=False)
                ):
                    return chain
        return None


def rollForward(zone: Zone, journal: Journal) -> Zone:
    """
    The zone file's zone brought up to date from the journal, as BIND
    does: the diffs from the file's serial on are applied. A journal that
    does not hold the file's serial (the file was edited by hand and its
    serial changed) is out of sync with it, and the zone is not loaded,
    so no acknowledged update is silently lost.

    @raise ZoneError: naming the journal.
    """
    history = journal.history
    if not history or history[-1].newSerial == zone.serial:
        return zone
    chain = journal.since(zone.serial)
    if chain is None:
        raise ZoneError(
            journal.path or zone.source,
            0,
            f"journal out of sync with zone (zone file serial {zone.serial}, "
            f"journal serials {history[0].oldSerial} to {history[-1].newSerial}); "
            "merge or remove the journal",
        )
    try:
        zone = applyDiffs(zone, chain)
    except ZoneError as e:
        raise ZoneError(
            journal.path or zone.source, 0, f"journal rollforward failed: {e.problem}"
        ) from None
    return zone


def zoneText(zone: Zone) -> str:
    """The zone as a zone file (every name absolute)."""
    lines = [f"; {display(zone.origin)} as served at serial {zone.serial}"]
    lines.extend(recordText(r) for r in zone.records()[:-1])
    return "\n".join(lines) + "\n"


def _entry(diff: Diff) -> bytes:
    body = encodeDiff(diff)
    return _ENTRY.pack(len(body), zlib.crc32(body)) + body


@frozen
class _Compaction:
    zone: Zone
    keep: int


class JournalWriter:
    """
    Group commit for one journal: L{append} returns a Deferred that fires
    once the diff is on disk; diffs queued while a write runs go in the
    next write, with one fsync for all.

    L{compact} bounds the journal, as BIND does with its zone files: the
    zone file is rewritten with the zone as served, and the journal keeps
    only its newest entries (the history IXFR answers from).
    """

    _log = Logger()

    def __init__(self, reactor: Any, journal: Journal) -> None:
        self._reactor = reactor
        self.journal = journal
        self._queue: list[tuple[Diff | _Compaction, Deferred[None]]] = []
        self._writing = False
        #: A compaction is queued or running.
        self.compacting = False

    def append(self, diff: Diff) -> Deferred[None]:
        """Write C{diff}; the Deferred fires once it is durable."""
        d: Deferred[None] = Deferred()
        self._queue.append((diff, d))
        if not self._writing:
            self._flush()
        return d

    def compact(self, zone: Zone, keep: int) -> Deferred[None]:
        """
        After the writes queued now, write C{zone} (a version the journal
        holds) to the zone file and cut the journal to its newest C{keep}
        entries (fewer never than those after C{zone}'s serial).
        """
        d: Deferred[None] = Deferred()
        self.compacting = True
        self._queue.append((_Compaction(zone, keep), d))
        if not self._writing:
            self._flush()
        return d

    def _run(self, function: Any, *args: Any) -> Deferred[None]:
        if self.journal.path is None:
            done: Deferred[None] = Deferred()
            done.callback(None)
            return done
        return deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), function, *args
        )

    def _flush(self) -> None:
        if not self._queue:
            self._writing = False
            return
        self._writing = True
        first = self._queue[0][0]
        if isinstance(first, _Compaction):
            self._compact(first, self._queue.pop(0)[1])
            return
        count = 0
        while count < len(self._queue) and isinstance(self._queue[count][0], Diff):
            count += 1
        batch, self._queue = self._queue[:count], self._queue[count:]
        diffs = [diff for diff, _ in batch if isinstance(diff, Diff)]
        done = self._run(self.journal.write, diffs)

        def written(result: object) -> None:
            self.journal.history.extend(diffs)
            for _, d in batch:
                d.callback(None)

        def failed(failure: Any) -> None:
            self._log.failure("dns: journal write failed", failure)
            # Changes queued since were prepared on top of these: they
            # fail too.
            later = [item for item in self._queue if isinstance(item[0], Diff)]
            self._queue = [i for i in self._queue if not isinstance(i[0], Diff)]
            for _, d in batch + later:
                d.errback(failure)

        done.addCallbacks(written, failed)
        done.addBoth(lambda _: self._flush())

    def _compact(self, job: _Compaction, d: Deferred[None]) -> None:
        history = list(self.journal.history)
        after = len(history)
        for i, diff in enumerate(history):
            if diff.newSerial == job.zone.serial:
                after = i + 1
        kept = history[min(after, max(0, len(history) - job.keep)) :]
        path = self.journal.path
        if path is None:
            done = self._run(lambda: None)
        else:
            done = self._run(self._rewrite, path, zoneText(job.zone), kept)

        def compacted(result: object) -> None:
            self.journal.history = kept
            self.compacting = False
            self._log.info(
                "dns: journal of {zone} compacted to {count} changes",
                zone=display(job.zone.origin),
                count=len(kept),
            )
            d.callback(None)

        def failed(failure: Any) -> None:
            self.compacting = False
            self._log.failure("dns: journal compaction failed", failure)
            d.errback(failure)

        done.addCallbacks(compacted, failed)
        done.addBoth(lambda _: self._flush())

    @staticmethod
    def _rewrite(path: str, text: str, kept: list[Diff]) -> None:
        # The zone file first: a crash between the two leaves a file at
        # the journal's newest serial, which loads as up to date.
        writeDurably(path[: -len(".jnl")], text.encode("utf-8"))
        writeDurably(path, MAGIC + b"".join(_entry(d) for d in kept))
