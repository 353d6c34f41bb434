"""
Message bytes in PostgreSQL: staged locally, stored as chunk rows, read
back in chunks.

A message being received is kept in memory up to 256 KiB, then in an
anonymous temporary file; storing it streams 256 KiB chunks into
C{body_chunks} with COPY, and reading fetches one chunk at a time, so a
25 MiB message is never whole in memory on either side.
"""

from __future__ import annotations

import io
import os
import tempfile
import weakref
from collections.abc import Iterator
from typing import IO, Any, BinaryIO

from zope.interface import implementer

from appnet.store.interfaces import IStagedMessage, MessageBody
from appnet.store.pg.database import Connection, PGDatabase

__all__ = [
    "CHUNK",
    "SPOOL_PREFIX",
    "ChunkReader",
    "StagedBody",
    "insertBody",
    "spoolBody",
]

#: Bytes per stored chunk, and the most a staged message keeps in memory.
CHUNK = 1 << 18

#: The name prefix of bodies spooled for readers.
SPOOL_PREFIX = "appnet-body-"


@implementer(IStagedMessage)
class StagedBody:
    """
    A message being received: in memory while small, then in an unnamed
    temporary file (written on the reactor thread into the page cache,
    read back in a database thread).
    """

    def __init__(self, directory: str | None = None) -> None:
        self.size = 0
        self._directory = directory
        self._memory: list[bytes] = []
        self._file: IO[bytes] | None = None
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("staged message is closed")
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._memory.append(data)
        if self.size > CHUNK:
            self._file = tempfile.TemporaryFile(dir=self._directory)
            for piece in self._memory:
                self._file.write(piece)
            self._memory = []

    def chunks(self, skip: int = 0) -> Iterator[bytes]:
        """
        The bytes after the first C{skip}, in pieces of L{CHUNK}
        (blocking when the message spilled to its file).
        """
        if self._closed:
            raise ValueError("staged message is closed")
        if self._file is None:
            data = b"".join(self._memory)[skip:]
            for start in range(0, len(data), CHUNK):
                yield data[start : start + CHUNK]
            return
        self._file.flush()
        fd = self._file.fileno()
        offset = skip
        while offset < self.size:
            piece = os.pread(fd, min(CHUNK, self.size - offset), offset)
            if not piece:
                break
            offset += len(piece)
            yield piece

    def discard(self) -> None:
        self._closed = True
        self._memory = []
        if self._file is not None:
            self._file.close()
            self._file = None


def insertBody(
    conn: Connection, staged: StagedBody, skip: int = 0, prefix: bytes = b""
) -> int:
    """
    Store a staged message's bytes (after C{skip}) as a new body, after
    C{prefix} (the Return-Path line the mail store's readers see first).

    @return: the body's id.
    """
    size = len(prefix) + staged.size - skip
    row = conn.execute(
        "INSERT INTO bodies (size) VALUES (%s) RETURNING id", (size,)
    ).fetchone()
    assert row is not None
    body = int(row[0])
    chunks = staged.chunks(skip)
    if prefix:
        chunks = _rechunked(prefix, chunks)
    with conn.cursor().copy("COPY body_chunks (body, seq, data) FROM STDIN") as copy:
        for seq, chunk in enumerate(chunks):
            copy.write_row((body, seq, chunk))
    return body


def _rechunked(prefix: bytes, pieces: Iterator[bytes]) -> Iterator[bytes]:
    """C{prefix} then C{pieces}, cut again into L{CHUNK}-sized chunks."""
    pending = prefix
    for piece in pieces:
        pending += piece
        while len(pending) >= CHUNK:
            yield pending[:CHUNK]
            pending = pending[CHUNK:]
    if pending:
        yield pending


def dropBodies(conn: Connection, ids: list[int]) -> None:
    """
    Delete these bodies if nothing refers to them any more.
    """
    if ids:
        conn.execute(
            "DELETE FROM bodies b WHERE b.id = ANY(%s)"
            " AND NOT EXISTS (SELECT 1 FROM mail_messages m WHERE m.body = b.id)"
            " AND NOT EXISTS (SELECT 1 FROM queue_messages q WHERE q.body = b.id)",
            (ids,),
        )


class ChunkReader(io.RawIOBase):
    """
    A stored body read one chunk per query, through the database's pool
    (blocking: for threads, never the reactor).
    """

    def __init__(self, db: PGDatabase, body: int, size: int) -> None:
        self._db = db
        self._body = body
        self._size = size
        self._offset = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset += self._offset
        elif whence == 2:
            offset += self._size
        self._offset = max(0, offset)
        return self._offset

    def tell(self) -> int:
        return self._offset

    def readinto(self, buffer: Any) -> int:
        if self._offset >= self._size:
            return 0
        seq, within = divmod(self._offset, CHUNK)
        with self._db.pool.connection() as conn:
            row = conn.execute(
                "SELECT data FROM body_chunks WHERE body = %s AND seq = %s",
                (self._body, seq),
            ).fetchone()
        if row is None:
            raise OSError(f"message body {self._body} is gone")
        data = bytes(row[0])[within : within + len(buffer)]
        buffer[: len(data)] = data
        self._offset += len(data)
        return len(data)


def openChunks(db: PGDatabase, body: int, size: int) -> BinaryIO:
    """A buffered reader over a stored body (blocking reads)."""
    return io.BufferedReader(ChunkReader(db, body, size), CHUNK)


class _Spooled:
    """
    A body copied to a local temporary file, deleted when the last
    L{MessageBody} using it is gone (open files stay readable).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        weakref.finalize(self, _unlink, path)

    def open(self) -> BinaryIO:
        return open(self.path, "rb")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def spoolBody(
    conn: Connection, body: int, size: int, directory: str | None = None
) -> MessageBody:
    """
    Copy a stored body out of the database (blocking, in a database
    thread): into memory when small, else chunk by chunk into a local
    temporary file; the L{MessageBody} then opens without a query, so
    readers on the reactor thread (POP3's RETR, the relay) never wait on
    the database, and it stays readable after an expunge.
    """
    if size <= CHUNK:
        row = conn.execute(
            "SELECT data FROM body_chunks WHERE body = %s AND seq = 0", (body,)
        ).fetchone()
        data = b"" if row is None else bytes(row[0])
        return MessageBody(len(data), lambda: io.BytesIO(data))
    fd, path = tempfile.mkstemp(prefix=SPOOL_PREFIX, dir=directory)
    spooled = _Spooled(path)
    written = 0
    with os.fdopen(fd, "wb") as out:
        seq = 0
        while written < size:
            row = conn.execute(
                "SELECT data FROM body_chunks WHERE body = %s AND seq = %s",
                (body, seq),
            ).fetchone()
            if row is None:
                break
            out.write(row[0])
            written += len(row[0])
            seq += 1
    return MessageBody(written, spooled.open)
