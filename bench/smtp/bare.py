"""
The limit for appnet's MX port: the smallest Twisted program that accepts
SMTP mail as durably, with group commit.

A C{LineReceiver} answers EHLO, MAIL, RCPT, DATA and QUIT with no checks;
a message body is read raw up to its C{.} line. Messages that end while a
batch is being stored wait for the next one; a batch, in one thread, stores
as appnet's SQLite store does: a message of at most L{INLINE} bytes as a
row, a larger one in a file of its own (the batch's files fdatasynced at
once by a few threads, their directory fsynced once), then one index row
per message, all in one SQLite transaction (WAL, C{synchronous=FULL});
only then are the batch's 250s sent. ``bench/smtp/run.py`` runs it
beside appnet and aiosmtpd.

Usage: ``python bench/smtp/bare.py DIRECTORY``; prints ``listening PORT``
and serves until its standard input closes.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor

from twisted.internet import reactor, stdio
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.protocols.basic import LineReceiver
from twisted.python.threadpool import ThreadPool

__all__ = ["BareSMTP", "Store"]

#: Messages at most this long are stored in the database, as appnet does.
INLINE = 16 << 10


class Store:
    """Message files in one directory, an index in SQLite, group commit."""

    def __init__(self, root: str) -> None:
        self.directory = os.path.join(root, "new")
        os.makedirs(self.directory, exist_ok=True)
        self.db = sqlite3.connect(
            os.path.join(root, "index.sqlite"),
            isolation_level=None,
            check_same_thread=False,
        )
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS messages"
            " (id INTEGER PRIMARY KEY, file TEXT, size INTEGER, body INTEGER)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS bodies (id INTEGER PRIMARY KEY, data BLOB)"
        )
        self.names = itertools.count()
        self.waiting: list[tuple[bytes, BareSMTP]] = []
        self.busy = False
        self.pool = ThreadPool(1, 1, name="bare-store")
        self.pool.start()
        self.syncs = ThreadPoolExecutor(8)

    def add(self, message: bytes, session: BareSMTP) -> None:
        self.waiting.append((message, session))
        self._next()

    def _next(self) -> None:
        if self.busy or not self.waiting:
            return
        batch, self.waiting = self.waiting, []
        self.busy = True
        d = deferToThreadPool(reactor, self.pool, self._store, batch)
        d.addBoth(self._stored, batch)

    def _store(self, batch: list[tuple[bytes, BareSMTP]]) -> None:
        rows, fds, small = [], [], []
        try:
            for message, _ in batch:
                if len(message) <= INLINE:
                    small.append(message)
                    continue
                name = f"{os.getpid()}.{next(self.names)}"
                fd = os.open(
                    os.path.join(self.directory, name),
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                    0o600,
                )
                fds.append(fd)
                os.write(fd, message)
                rows.append((name, len(message)))
            if len(fds) == 1:
                os.fdatasync(fds[0])
            else:
                list(self.syncs.map(os.fdatasync, fds))
        finally:
            for fd in fds:
                os.close(fd)
        if fds:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT INTO messages (file, size) VALUES (?, ?)", rows)
        for message in small:
            body = self.db.execute(
                "INSERT INTO bodies (data) VALUES (?)", (message,)
            ).lastrowid
            self.db.execute(
                "INSERT INTO messages (file, size, body) VALUES ('', ?, ?)",
                (len(message), body),
            )
        self.db.execute("COMMIT")

    def _stored(self, result: object, batch: list[tuple[bytes, BareSMTP]]) -> None:
        self.busy = False
        reply = b"451 4.3.0 Error\r\n" if result is not None else b"250 2.0.0 Ok\r\n"
        for _, session in batch:
            session.transport.write(reply)
        self._next()


class BareSMTP(LineReceiver):
    """One SMTP session: no checks, no limits."""

    store: Store
    _body: list[bytes]
    _tail = b""

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.transport.write(b"220 bare ESMTP\r\n")

    def lineReceived(self, line: bytes) -> None:
        verb = line[:4].upper()
        if verb == b"EHLO":
            self.transport.write(b"250-bare\r\n250 PIPELINING\r\n")
        elif verb == b"DATA":
            self._body, self._tail = [], b""
            self.setRawMode()
            self.transport.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"QUIT":
            self.transport.write(b"221 Bye\r\n")
            self.transport.loseConnection()
        else:
            self.transport.write(b"250 Ok\r\n")

    def rawDataReceived(self, data: bytes) -> None:
        # Look for the end across chunk boundaries: the last 4 bytes of
        # the previous chunk lead the search.
        joined = self._tail + data
        end = joined.find(b"\r\n.\r\n")
        if end == -1:
            self._body.append(data)
            self._tail = joined[-4:]
            return
        cut = end + 2 - len(self._tail)
        self._body.append(data[:cut] if cut >= 0 else b"")
        message = b"".join(self._body)
        if cut < 0:
            message = message[:cut]
        rest = data[end + 5 - len(self._tail) :]
        self._body = []
        self.store.add(message.replace(b"\r\n..", b"\r\n."), self)
        self.setLineMode(rest)


class _Stop(Protocol):
    def connectionLost(self, reason: object) -> None:
        if reactor.running:  # type: ignore[attr-defined]
            reactor.stop()  # type: ignore[attr-defined]


def main() -> None:
    factory = Factory.forProtocol(BareSMTP)
    BareSMTP.store = Store(sys.argv[1])
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    print("listening", port.getHost().port, flush=True)
    stdio.StandardIO(_Stop())
    # Stopped by closing its stdin (then SIGTERM, whose default action
    # ends it without a second reactor.stop()).
    reactor.run(installSignalHandlers=False)  # type: ignore[attr-defined]
    BareSMTP.store.pool.stop()


if __name__ == "__main__":
    main()
