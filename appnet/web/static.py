"""
Static files from the web root.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import errno
import html
import mimetypes
import os
import secrets
import stat
import time
import zlib
from collections.abc import Callable, Sequence
from typing import IO, Any
from urllib.parse import quote

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from appnet.files import (
    FileSpans,
    SendingStopped,
    ThreadedFileSender,
    inline,
    zeroCopyTo,
)
from appnet.web.pages import (
    GZIP_MIN_SIZE,
    ErrorResource,
    FaviconResource,
    RedirectResource,
    page,
    sendBody,
)
from appnet.web.validators import (
    UNSATISFIABLE,
    Condition,
    ETag,
    acceptsEncoding,
    evaluate,
    httpDate,
    ifRangeAllows,
    parseRanges,
)

__all__ = ["FileResource", "StaticFiles", "contentType"]

#: Bytes read from a file per trip to a thread and written at once (the
#: connection pauses the producer whenever its send buffer is full, so
#: this bounds memory per response to about two of them).
CHUNK = 1024 * 1024

#: More ranges than this in one request and the Range header is ignored.
MAX_RANGES = 64

#: Index pages list at most this many entries.
MAX_LISTING = 10_000

_types = mimetypes.MimeTypes(filenames=())
for _ext, _type in {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".wasm": "application/wasm",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".md": "text/markdown",
    ".toml": "application/toml",
    ".gz": "application/gzip",
    ".tgz": "application/gzip",
    ".bz2": "application/x-bzip2",
    ".xz": "application/x-xz",
    ".zst": "application/zstd",
}.items():
    _types.add_type(_type, _ext)


def contentType(name: str) -> str:
    """
    The media type served for a file name: the extension's type from a
    fixed table (not the machine's C{/etc/mime.types}, so every host serves
    the same), with C{charset=utf-8} for text, and
    C{application/octet-stream} when unknown. A compressed file is served
    as what it is (C{application/gzip}), never with C{Content-Encoding}.
    """
    base, ext = os.path.splitext(name.lower())
    if ext in (".gz", ".tgz", ".bz2", ".xz", ".zst"):
        found = _types.types_map[True].get(ext)
    else:
        found, _ = _types.guess_type(name, strict=False)
    if found is None:
        return "application/octet-stream"
    if found.startswith("text/") or found in ("image/svg+xml", "application/xml"):
        return found + "; charset=utf-8"
    return found


def _matchesType(mediaType: str, patterns: Sequence[str]) -> bool:
    bare = mediaType.split(";", 1)[0].strip().lower()
    major = bare.split("/", 1)[0]
    for pattern in patterns:
        p = pattern.strip().lower()
        if p == bare or (p.endswith("/*") and p[:-2] == major):
            return True
    return False


def entityTag(st: os.stat_result) -> ETag:
    """
    A strong entity tag for a file's current bytes: inode, size and
    modification time in nanoseconds.
    """
    return ETag(f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}".encode("ascii"))


#: The root directories' real paths, resolved once.
_REAL_ROOTS: dict[str, str] = {}


def _inside(realRoot: str, path: str) -> bool:
    return path == realRoot or path.startswith(realRoot + os.sep)


def _confined(realRoot: str, names: Sequence[str]) -> str | None:
    """
    The real path of C{names} under C{realRoot}, following symbolic links
    met on the way, or C{None} if one leads out of the root. Only the
    components below the root are examined (one C{lstat} each), not the
    whole path as C{os.path.realpath} would.

    @raise OSError: if a component does not exist.
    """
    path = realRoot
    for name in names:
        path = os.path.join(path, name)
        if stat.S_ISLNK(os.lstat(path).st_mode):
            path = os.path.realpath(path)
            if not _inside(realRoot, path):
                return None
    return path


@frozen
class StaticFiles:
    """
    The web root: resolves URL paths to leaf resources.

    @ivar root: the root directory.
    @ivar listing: render an index page for a directory with no
        C{index.html} (else 403, as nginx does).
    @ivar gzipTypes: media types compressed on the fly (C{text/*} style
        wildcards allowed); empty to compress nothing.
    """

    root: str
    listing: bool = True
    gzipTypes: tuple[str, ...] = ()
    #: Runs blocking file-system work (path resolution, opening, reads)
    #: off the reactor thread; C{None} runs it inline.
    runner: Callable[..., Deferred[Any]] | None = None

    def resolveLater(self, segments: Sequence[bytes], query: bytes = b"") -> IResource:
        """
        L{resolve} in the runner's thread: a resource that renders what it
        resolves to once known, a file already opened (also in the
        thread).
        """
        if self.runner is None:
            return self._resolveOrIcon(segments, query)
        return _Resolving(self.runner(self._resolveAndOpen, list(segments), query))

    def _resolveOrIcon(self, segments: Sequence[bytes], query: bytes) -> IResource:
        """L{resolve}, with appnet's icon for a root that has no favicon.ico."""
        found = self.resolve(segments, query)
        if (
            list(segments) == [b"favicon.ico"]
            and isinstance(found, ErrorResource)
            and found.code == 404
        ):
            return FaviconResource()
        return found

    def _resolveAndOpen(self, segments: Sequence[bytes], query: bytes) -> IResource:
        resource = self._resolveOrIcon(segments, query)
        if isinstance(resource, FileResource):
            resource.openNow()
        return resource

    def resolve(self, segments: Sequence[bytes], query: bytes = b"") -> IResource:
        """
        The resource for a request path, given as its decoded segments
        (C{request.prepath[-1:] + request.postpath}).

        @param query: the request's query string (with its C{?}), kept
            when redirecting a directory URL to its slashed form.
        """
        names: list[str] = []
        for raw in segments:
            if raw == b"":
                # Empty segments (//) are merged, as nginx does; a trailing
                # one marks a directory URL.
                continue
            if raw in (b".", b"..") or b"/" in raw or b"\0" in raw:
                return ErrorResource(404, "No such file.")
            if raw.startswith(b"."):
                return ErrorResource(404, "No such file.")
            try:
                names.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                return ErrorResource(404, "No such file.")
        slashed = not segments or segments[-1] == b""
        realRoot = self._realRoot()
        try:
            real = _confined(realRoot, names)
            st = os.stat(real) if real is not None else None
        except (FileNotFoundError, NotADirectoryError):
            return ErrorResource(404, "No such file.")
        except PermissionError:
            return ErrorResource(403, "Not readable.")
        except OSError as e:
            # A name longer than the file system allows, or a symbolic link
            # loop: nothing to serve, not a server fault.
            if e.errno in (errno.ENAMETOOLONG, errno.ELOOP):
                return ErrorResource(404, "No such file.")
            raise
        if real is None or st is None:
            return ErrorResource(404, "No such file.")
        if stat.S_ISDIR(st.st_mode):
            if not slashed:
                where = "/" + "/".join(quote(n) for n in names) + "/"
                return RedirectResource(where.encode("ascii") + query, 301)
            return self._directory(real, names)
        if not stat.S_ISREG(st.st_mode):
            return ErrorResource(404, "No such file.")
        if slashed and names:
            return ErrorResource(404, "No such file.")
        return self._file(real)

    def _realRoot(self) -> str:
        cached = _REAL_ROOTS.get(self.root)
        if cached is None:
            cached = _REAL_ROOTS[self.root] = os.path.realpath(self.root)
        return cached

    def _file(self, path: str) -> FileResource:
        mediaType = contentType(os.path.basename(path))
        return FileResource(
            path, mediaType, _matchesType(mediaType, self.gzipTypes), self.runner
        )

    def _directory(self, path: str, names: list[str]) -> IResource:
        index = os.path.join(path, "index.html")
        real = os.path.realpath(index)
        realRoot = self._realRoot()
        if real.startswith(realRoot + os.sep) and os.path.isfile(real):
            return self._file(real)
        if not self.listing:
            return ErrorResource(403, "Directory listing is off.")
        return DirectoryListing(path, realRoot, "/" + "/".join(names))


class FileResource(Resource):
    """
    One regular file, with validators, ranges and compression.
    """

    isLeaf = True
    _log = Logger()

    def __init__(
        self,
        path: str,
        mediaType: str,
        compressible: bool,
        runner: Callable[..., Deferred[Any]] | None = None,
    ) -> None:
        super().__init__()
        self.path = path
        self.mediaType = mediaType
        self.compressible = compressible
        self.runner = runner
        self._opened: tuple[IO[bytes], os.stat_result] | OSError | None = None

    def openNow(self) -> None:
        """
        Open the file and read its status now (in a thread, before
        L{render} runs on the reactor).
        """
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed by the producer
        except OSError as e:
            self._opened = e
            return
        try:
            self._opened = (f, os.fstat(f.fileno()))
        except OSError as e:
            f.close()
            self._opened = e

    def close(self) -> None:
        """Close a file L{openNow} opened and nobody used."""
        opened, self._opened = self._opened, None
        if isinstance(opened, tuple):
            opened[0].close()

    def render(self, request: Request) -> bytes | int:
        opened, self._opened = self._opened, None
        if request.method not in (b"GET", b"HEAD"):
            if isinstance(opened, tuple):
                opened[0].close()
            request.setHeader(b"allow", b"GET, HEAD")
            return ErrorResource(405, "Only GET and HEAD are allowed here.").render(
                request
            )
        st = None
        try:
            if isinstance(opened, OSError):
                raise opened
            if opened is not None:
                f, st = opened
            else:
                f = open(self.path, "rb")  # noqa: SIM115 - closed by the producer
        except FileNotFoundError:
            return ErrorResource(404, "No such file.").render(request)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                return ErrorResource(403, "Not readable.").render(request)
            raise
        try:
            return self._respond(request, f, st or os.fstat(f.fileno()))
        except BaseException:
            f.close()
            raise

    def _respond(
        self, request: Request, f: IO[bytes], st: os.stat_result
    ) -> bytes | int:
        size = st.st_size
        lastModified = int(st.st_mtime)
        identity = entityTag(st)
        headers = request.requestHeaders
        rangeHeader = None
        if request.method == b"GET":
            values = headers.getRawHeaders(b"range")
            rangeHeader = values[0] if values else None
        gzipped = (
            self.compressible
            and size >= GZIP_MIN_SIZE
            and rangeHeader is None
            and acceptsEncoding(request.getHeader(b"accept-encoding"), b"gzip")
        )
        etag = ETag(identity.opaque + b"-gz") if gzipped else identity

        request.setHeader(b"accept-ranges", b"bytes")
        request.setHeader(b"etag", etag.header())
        request.setHeader(b"last-modified", httpDate(lastModified))
        if self.compressible:
            request.responseHeaders.addRawHeader(b"vary", b"Accept-Encoding")

        condition = evaluate(request.method, headers, etag, lastModified)
        if condition is Condition.NOT_MODIFIED:
            f.close()
            request.setResponseCode(304)
            return _empty(request)
        if condition is Condition.PRECONDITION_FAILED:
            f.close()
            request.responseHeaders.removeHeader(b"etag")
            request.responseHeaders.removeHeader(b"last-modified")
            return ErrorResource(412, "A precondition failed.").render(request)

        request.setHeader(b"content-type", self.mediaType.encode("ascii"))
        if rangeHeader is not None:
            ifRange = request.getHeader(b"if-range")
            if ifRange is not None and not ifRangeAllows(
                ifRange, identity, lastModified
            ):
                rangeHeader = None
        parts: list[bytes | tuple[int, int]]
        if rangeHeader is not None:
            ranges = parseRanges(rangeHeader, size, MAX_RANGES)
            if ranges is UNSATISFIABLE:
                f.close()
                request.setHeader(b"content-range", b"bytes */%d" % (size,))
                return ErrorResource(416, "No requested range is in the file.").render(
                    request
                )
            if ranges is not None and len(ranges) == 1:
                offset, length = ranges[0]
                request.setResponseCode(206)
                request.setHeader(
                    b"content-range",
                    b"bytes %d-%d/%d" % (offset, offset + length - 1, size),
                )
                request.setHeader(b"content-length", b"%d" % (length,))
                parts = [(offset, length)]
                return self._send(request, f, parts, None)
            if ranges is not None:
                parts = self._multipart(request, ranges, size)
                return self._send(request, f, parts, None)
        request.setResponseCode(200)
        if gzipped:
            request.setHeader(b"content-encoding", b"gzip")
            return self._send(
                request, f, [(0, size)], zlib.compressobj(6, zlib.DEFLATED, 31)
            )
        request.setHeader(b"content-length", b"%d" % (size,))
        return self._send(request, f, [(0, size)], None)

    def _multipart(
        self, request: Request, ranges: list[tuple[int, int]], size: int
    ) -> list[bytes | tuple[int, int]]:
        boundary = secrets.token_hex(16).encode("ascii")
        partType = self.mediaType.encode("ascii")
        parts: list[bytes | tuple[int, int]] = []
        total = 0
        for offset, length in ranges:
            head = (
                b"\r\n--%s\r\nContent-Type: %s\r\nContent-Range: bytes %d-%d/%d\r\n\r\n"
                % (boundary, partType, offset, offset + length - 1, size)
            )
            parts += [head, (offset, length)]
            total += len(head) + length
        tail = b"\r\n--%s--\r\n" % (boundary,)
        parts.append(tail)
        total += len(tail)
        request.setResponseCode(206)
        request.setHeader(
            b"content-type", b"multipart/byteranges; boundary=" + boundary
        )
        request.setHeader(b"content-length", b"%d" % (total,))
        return parts

    def _send(
        self,
        request: Request,
        f: IO[bytes],
        parts: list[bytes | tuple[int, int]],
        compressor: Any,
    ) -> bytes | int:
        if request.method == b"HEAD" or request.code in NO_BODY_CODES:
            f.close()
            return _empty(request)
        BodyProducer(request, f, parts, compressor, self.runner).start()
        return NOT_DONE_YET


class _Resolving(Resource):
    """
    A static path being resolved in a thread: renders the resource it
    resolves to once it is known, unless the client has gone.
    """

    isLeaf = True

    def __init__(self, resolving: Deferred[IResource]) -> None:
        super().__init__()
        self.resolving = resolving

    def render(self, request: Request) -> int:
        gone: list[object] = []
        request.notifyFinish().addErrback(gone.append)

        def resolved(resource: IResource) -> None:
            if gone:
                if isinstance(resource, FileResource):
                    resource.close()
                return
            request.render(resource)

        def failed(failure: Any) -> None:
            if not gone:
                request.processingFailed(failure)

        self.resolving.addCallback(resolved).addErrback(failed)
        return NOT_DONE_YET


def _empty(request: Request) -> int:
    """
    End a response that has no body (HEAD, 304) with the headers as set:
    returning C{b""} from C{render} would add C{Content-Length: 0}, which
    is wrong for both.
    """
    request.write(b"")
    request.finish()
    return NOT_DONE_YET


class BodyProducer(ThreadedFileSender):
    """
    Streams a response body, L{FileSpans} of an open file, with the shared
    L{ThreadedFileSender} (reads in the runner's threads, back-pressure),
    optionally through a compressor; a plain body on a plain TCP
    connection goes by C{sendfile} (L{ZeroCopy}). The file is closed at the
    end, and the response finished (or its connection dropped if the file
    cannot be read or shrank).
    """

    def __init__(
        self,
        request: Request,
        f: IO[bytes],
        parts: list[bytes | tuple[int, int]],
        compressor: Any = None,
        runner: Callable[..., Deferred[Any]] | None = None,
    ) -> None:
        spans = FileSpans(f, parts)
        zeroCopy = None
        # The first chunk always goes through the connection's buffer, so
        # a body of one chunk or less has nothing to send by sendfile; not
        # asking leaves the connection's direct writes on (appnet.listen).
        if compressor is None and runner is not None and spans.length > CHUNK:
            channel = getattr(request, "channel", None)
            zeroCopy = zeroCopyTo(
                getattr(channel, "transport", None), spans.sendfile, self._bypassed
            )
        super().__init__(
            runner or inline,
            spans.read,
            request,
            chunkSize=CHUNK,
            transform=None if compressor is None else compressor.compress,
            length=spans.length,
            zeroCopy=zeroCopy,
        )
        self._request = request
        self._file = f
        self._compressor = compressor

    def start(self) -> Deferred[int]:
        """Register with the request and begin sending."""
        self._request.notifyFinish().addErrback(lambda _: self.stopProducing())
        done = super().start()
        done.addCallbacks(self._sentAll, self._broken)
        return done

    def _bypassed(self, count: int) -> None:
        # Bytes sent past Request.write still count in the access log.
        self._request.sentLength += count

    def _sentAll(self, sent: int) -> int:
        request = self._request
        if self._compressor is not None:
            tail = self._compressor.flush()
            if tail:
                request.write(tail)
        self._file.close()
        request.finish()
        return sent

    def _broken(self, failure: Failure) -> None:
        # Closed once no read uses the descriptor any more.
        self.quiet().addCallback(lambda _: self._file.close())
        if not failure.check(SendingStopped):
            # The promised length cannot be met: end without a clean finish.
            self._request.loseConnection()


class DirectoryListing(Resource):
    """
    The index page of a directory: its visible entries, directories
    first, with sizes and modification times.
    """

    isLeaf = True

    def __init__(self, path: str, realRoot: str, urlPath: str) -> None:
        super().__init__()
        self.path = path
        self.realRoot = realRoot
        self.urlPath = urlPath.rstrip("/") + "/"

    def entries(self) -> tuple[list[tuple[str, bool, int, float]], int]:
        """
        The visible entries as C{(name, isDirectory, size, mtime)}, and how
        many more there were past L{MAX_LISTING}. Dotfiles and entries
        leading out of the root are left out.
        """
        rows: list[tuple[str, bool, int, float]] = []
        skipped = 0
        with os.scandir(self.path) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                real = os.path.realpath(entry.path)
                if not real.startswith(self.realRoot + os.sep):
                    continue
                try:
                    st = os.stat(real)
                except OSError:
                    continue
                isDir = stat.S_ISDIR(st.st_mode)
                if not isDir and not stat.S_ISREG(st.st_mode):
                    continue
                if len(rows) >= MAX_LISTING:
                    skipped += 1
                    continue
                rows.append((entry.name, isDir, st.st_size, st.st_mtime))
        rows.sort(key=lambda r: (not r[1], r[0].lower(), r[0]))
        return rows, skipped

    def render(self, request: Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return ErrorResource(405, "Only GET and HEAD are allowed here.").render(
                request
            )
        rows, skipped = self.entries()
        lines = []
        if self.urlPath != "/":
            lines.append('<tr><td><a href="../">../</a></td><td></td><td></td></tr>')
        for name, isDir, size, mtime in rows:
            href = quote(name) + ("/" if isDir else "")
            shown = html.escape(name) + ("/" if isDir else "")
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(mtime))
            sizeText = "-" if isDir else _humanSize(size)
            lines.append(
                f'<tr><td><a href="{html.escape(href)}">{shown}</a></td>'
                f'<td class="size">{sizeText}</td><td>{when}</td></tr>'
            )
        more = f"<p>{skipped} more entries not shown.</p>" if skipped else ""
        body = (
            "<table><thead><tr><th>Name</th><th>Size</th><th>Modified (UTC)</th>"
            "</tr></thead><tbody>\n" + "\n".join(lines) + "\n</tbody></table>" + more
        )
        request.setHeader(b"cache-control", b"no-cache")
        return sendBody(
            request,
            page(f"Index of {self.urlPath}", body),
            b"text/html; charset=utf-8",
        )


def _humanSize(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover
