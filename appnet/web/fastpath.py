"""
The static fast path: plain GET and HEAD requests for small files answered
from a bounded in-memory cache with the response head built once, without
twisted.web's request objects or resource traversal.

L{FileCache} holds small files under their URL path, loaded (and later
revalidated) in threads, never on the reactor. L{FastStatic.serve} reads
the requests at the start of a chunk of bytes a connection received and
answers those it can (200 or 304), handing the rest, from the first
request it cannot answer, to the full path. It answers only what the full
path would answer the same way; anything else (ranges, compression,
preconditions other than C{If-None-Match}/C{If-Modified-Since}, unusual
headers or targets, HTTP/1.0, mounted applications) goes the full way.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.http import datetimeToLogString, datetimeToString
from twisted.web.http_headers import Headers

from appnet.web.pages import GZIP_MIN_SIZE
from appnet.web.static import FileResource, StaticFiles, entityTag
from appnet.web.validators import Condition, evaluate, httpDate

__all__ = ["FastStatic", "FileCache"]

#: Targets answered fast: absolute paths of unreserved characters, with no
#: empty, C{.}-led (dotfile, dot-segment) segment.
_TARGET = re.compile(rb"/(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*(?:/(?=.)|$))*")

#: Request header fields the fast path reads or may ignore; any other
#: field sends the request the full way.
_FIELDS = frozenset(
    {
        b"host",
        b"user-agent",
        b"accept",
        b"accept-language",
        b"accept-encoding",
        b"connection",
        b"if-none-match",
        b"if-modified-since",
        b"referer",
        b"cache-control",
        b"pragma",
        b"dnt",
        b"cookie",
        b"upgrade-insecure-requests",
        b"priority",
        b"sec-fetch-dest",
        b"sec-fetch-mode",
        b"sec-fetch-site",
        b"sec-fetch-user",
    }
)

#: Most responses one read of the connection is answered with here; the
#: rest go through the full path, which applies back-pressure.
MAX_PIPELINED = 32

Runner = Callable[..., "Deferred[Any]"]


class _File:
    """A cached file: its body and its response heads without Date."""

    __slots__ = (
        "body",
        "ok",
        "notModified",
        "etag",
        "lastModified",
        "gzippable",
        "identity",
        "path",
        "checked",
    )

    def __init__(
        self,
        body: bytes,
        ok: bytes,
        notModified: bytes,
        etag: Any,
        lastModified: int,
        gzippable: bool,
        identity: tuple[int, int, int, int],
        path: str,
        checked: float,
    ) -> None:
        self.body = body
        self.ok = ok
        self.notModified = notModified
        self.etag = etag
        self.lastModified = lastModified
        self.gzippable = gzippable
        self.identity = identity
        self.path = path
        self.checked = checked


def _load(
    static: StaticFiles, target: bytes, maxFileSize: int
) -> tuple[FileResource, bytes, os.stat_result] | None:
    """
    Resolve C{target} as the full path does and read the file, if it is a
    small regular file (runs in a thread).
    """
    segments = target[1:].split(b"/") if target != b"/" else [b""]
    resource = static.resolve(segments)
    if not isinstance(resource, FileResource):
        return None
    resource.close()
    try:
        with open(resource.path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > maxFileSize:
                return None
            body = f.read(maxFileSize + 1)
            if len(body) != st.st_size or os.fstat(f.fileno()) != st:
                return None
    except OSError:
        return None
    return resource, body, st


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _unchanged(
    static: StaticFiles, target: bytes, path: str, identity: tuple[int, int, int, int]
) -> bool:
    """Does C{target} still resolve to the same, unchanged file (a thread)?"""
    segments = target[1:].split(b"/") if target != b"/" else [b""]
    resource = static.resolve(segments)
    if not isinstance(resource, FileResource) or resource.path != path:
        return False
    try:
        return _identity(os.stat(path)) == identity
    except OSError:
        return False


class FileCache:
    """
    Small files by URL path, at most C{maxBytes} of bodies in all, each
    revalidated (a C{stat} in a thread) once it is C{valid} seconds old;
    until the revalidation answers, it is not served.

    @ivar static: the full path's view of the web root.
    """

    _log = Logger()

    def __init__(
        self,
        static: StaticFiles,
        clock: Any,
        runner: Runner,
        maxBytes: int = 16 * 1024 * 1024,
        maxFileSize: int = 256 * 1024,
        valid: float = 1.0,
    ) -> None:
        self.static = static
        self.clock = clock
        self.runner = runner
        self.maxBytes = maxBytes
        self.maxFileSize = maxFileSize
        self.valid = valid
        self._files: dict[bytes, _File] = {}
        self._bytes = 0
        self._busy: set[bytes] = set()
        #: Targets that are not cacheable files, and when that was seen.
        self._misses: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._files)

    def get(self, target: bytes) -> _File | None:
        """
        The cached file for C{target}, if it is fresh; otherwise start
        loading or revalidating it and return C{None}.
        """
        found = self._files.get(target)
        now = self.clock.seconds()
        if found is not None and now - found.checked < self.valid:
            return found
        if target in self._busy:
            return None
        if found is None:
            missed = self._misses.get(target)
            if missed is not None and now - missed < self.valid:
                return None
        self._start(target, found)
        # A runner without threads (unit tests) has finished already.
        found = self._files.get(target)
        if found is not None and self.clock.seconds() - found.checked < self.valid:
            return found
        return None

    def _start(self, target: bytes, found: _File | None) -> None:
        self._busy.add(target)
        if found is not None:
            d = self.runner(_unchanged, self.static, target, found.path, found.identity)
            d.addCallback(self._revalidated, target, found)
        else:
            d = self.runner(_load, self.static, target, self.maxFileSize)
            d.addCallback(self._loaded, target)
        d.addErrback(self._failed, target)

    def _failed(self, failure: Any, target: bytes) -> None:
        self._busy.discard(target)
        self._log.failure(
            "loading {target} into the file cache", failure, target=target
        )
        self._forget(target)

    def _revalidated(self, unchanged: bool, target: bytes, entry: _File) -> None:
        self._busy.discard(target)
        if unchanged and self._files.get(target) is entry:
            entry.checked = self.clock.seconds()
            return
        self._forget(target)
        self._start(target, None)

    def _forget(self, target: bytes) -> None:
        gone = self._files.pop(target, None)
        if gone is not None:
            self._bytes -= len(gone.body)

    def _loaded(
        self,
        result: tuple[FileResource, bytes, os.stat_result] | None,
        target: bytes,
    ) -> None:
        self._busy.discard(target)
        now = self.clock.seconds()
        self._forget(target)
        if result is None:
            if len(self._misses) > 10000:
                self._misses.clear()
            self._misses[target] = now
            return
        self._misses.pop(target, None)
        resource, body, st = result
        while self._files and self._bytes + len(body) > self.maxBytes:
            oldest = next(iter(self._files))
            self._forget(oldest)
        if len(body) > self.maxBytes:
            return
        etag = entityTag(st)
        lastModified = int(st.st_mtime)
        common = b"Accept-Ranges: bytes\r\nETag: %s\r\nLast-Modified: %s\r\n" % (
            etag.header(),
            httpDate(lastModified),
        )
        if resource.compressible:
            common += b"Vary: Accept-Encoding\r\n"
        ok = common + (
            b"Content-Type: %s\r\nContent-Length: %d\r\n"
            b"X-Content-Type-Options: nosniff\r\n\r\n"
            % (resource.mediaType.encode("ascii"), len(body))
        )
        notModified = common + b"X-Content-Type-Options: nosniff\r\n\r\n"
        self._files[target] = _File(
            body,
            ok,
            notModified,
            etag,
            lastModified,
            resource.compressible and len(body) >= GZIP_MIN_SIZE,
            _identity(st),
            resource.path,
            now,
        )
        self._bytes += len(body)


class FastStatic:
    """
    Answers plain requests for cached files on a connection's behalf.

    @ivar reserved: names of the root's children (applications, status):
        paths under them never take the fast path.
    """

    def __init__(
        self,
        cache: FileCache,
        clock: Any,
        reserved: Callable[[bytes], bool],
        server: bytes,
        count: Callable[[int], None],
        log: Callable[[str], None] | None,
    ) -> None:
        self.cache = cache
        self.clock = clock
        self.reserved = reserved
        self.server = server
        self.count = count
        self.log = log
        self._second = -1
        self._date = b""
        self._logDate = ""
        self._ok = b""
        self._notModified = b""
        self._parsed: dict[bytes, Any] = {}

    def _dates(self) -> None:
        now = self.clock.seconds()
        second = int(now)
        if second != self._second:
            self._second = second
            self._date = datetimeToString(now)
            self._logDate = datetimeToLogString(now)
            self._ok = b"HTTP/1.1 200 OK\r\nServer: %s\r\nDate: %s\r\n" % (
                self.server,
                self._date,
            )
            self._notModified = (
                b"HTTP/1.1 304 Not Modified\r\nServer: %s\r\nDate: %s\r\n"
                % (self.server, self._date)
            )

    def serve(self, data: bytes, write: Callable[[bytes], None], client: str) -> int:
        """
        Answer the complete plain requests at the start of C{data}.

        @return: how many bytes of C{data} were consumed; the rest is for
            the full path.
        """
        pos = 0
        size = len(data)
        served = 0
        while pos < size and served < MAX_PIPELINED:
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            answered = self._one(data[pos:end], write, client)
            if not answered:
                break
            pos = end + 4
            served += 1
        return pos

    def _one(self, head: bytes, write: Callable[[bytes], None], client: str) -> bool:
        parsed = self._parsed.get(head)
        if parsed is None:
            parsed = _parse(head)
            if parsed is None:
                return False
            if len(head) <= _PARSED_HEAD:
                if len(self._parsed) >= _PARSED:
                    self._parsed.clear()
                self._parsed[head] = parsed
        method, target, first, conditions, encoding, logged = parsed
        if self.reserved(first):
            return False
        found = self.cache.get(target)
        if found is None:
            return False
        if encoding and found.gzippable:
            return False
        code = 200
        if conditions is not None:
            condition = evaluate(method, conditions, found.etag, found.lastModified)
            if condition is Condition.NOT_MODIFIED:
                code = 304
            elif condition is not Condition.PROCEED:
                return False
        self._dates()
        sent = 0
        if code == 304:
            write(self._notModified + found.notModified)
        elif method == b"HEAD":
            write(self._ok + found.ok)
        else:
            write(self._ok + found.ok + found.body)
            sent = len(found.body)
        self.count(code)
        if self.log is not None:
            self.log(
                f"{client} - - {self._logDate} {logged[0]} {code} {sent or '-'} "
                f"{logged[1]}"
            )
        return True


#: Request heads remembered with what they parse to (clients send the same
#: head again and again).
_PARSED = 4096
#: Longer heads are parsed every time (bounds that memory to 8 MiB).
_PARSED_HEAD = 2048


def _parse(
    head: bytes,
) -> tuple[bytes, bytes, bytes, Headers | None, bool, tuple[str, str]] | None:
    """
    Read a request head the fast path may answer: the method, target, its
    first segment, the conditional headers, whether it names encodings,
    and the access log's request line and referer/agent parts (escaped);
    C{None} for anything else.
    """
    if not head.isascii() or head.count(b"\n") != head.count(b"\r\n"):
        return None
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    if (
        version != b"HTTP/1.1"
        or method not in (b"GET", b"HEAD")
        or not _TARGET.fullmatch(target)
    ):
        return None
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name[-1:] in (b" ", b"\t"):
            return None
        if line[:1] in (b" ", b"\t"):
            return None
        name = name.lower()
        if name not in _FIELDS or name in fields:
            return None
        fields[name] = value.strip(b" \t")
    if not fields.get(b"host"):
        return None
    connection = fields.get(b"connection")
    if connection is not None and connection.lower() != b"keep-alive":
        return None
    conditions = None
    if b"if-none-match" in fields or b"if-modified-since" in fields:
        conditions = Headers()
        for name in (b"if-none-match", b"if-modified-since"):
            if name in fields:
                conditions.setRawHeaders(name, [fields[name]])
    logLine = _combined(
        "C", "W", lines[0], 0, 0, fields.get(b"referer"), fields.get(b"user-agent")
    )
    # "C - - W "<request line>" 0 - "<referer>" "<agent>"": keep the parts.
    requestLine, _, rest = logLine[len("C - - W ") :].partition(" 0 - ")
    first = target[1:].split(b"/", 1)[0]
    return (
        method,
        target,
        first,
        conditions,
        b"accept-encoding" in fields,
        (requestLine, rest),
    )


def _combined(
    client: str,
    when: str,
    requestLine: bytes,
    code: int,
    length: int,
    referer: bytes | None,
    agent: bytes | None,
) -> str:
    from appnet.web.server import combinedLine

    return combinedLine(
        client=client,
        user="",
        when=when,
        requestLine=requestLine,
        code=code,
        length=length,
        referer=referer,
        agent=agent,
    )
