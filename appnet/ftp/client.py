"""
An FTP client with a Deferred API: login, directories, listings (MLSD or
LIST), downloads and uploads with resume, passive (EPSV, then PASV) or
active data connections, and explicit TLS (AUTH TLS, PROT P)::

    client = await connectFTP(reactor, "ftp.example.org", 21,
                              user="alice@example.org", password="...",
                              tls=clientTLS("ftp.example.org"))
    for entry in await client.entries("/docs"):
        print(entry.name, entry.size)
    await client.retrieveFile("/docs/a.pdf", "a.pdf", resume=True)
    await client.quit()

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IConsumer,
    IHandshakeListener,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.ssl import Certificate, CertificateOptions, optionsForClientTLS
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from appnet.errors import CannotConnect
from appnet.ftp._files import FileReceiver, FileSender
from appnet.ftp.data import noDelay, normalHost
from appnet.ftp.errors import FTPClientError, FTPError
from appnet.ftp.errors import TransferAborted as FTPTransferAborted
from appnet.ftp.listing import Listed, parseFacts, parseList

__all__ = [
    "FTPClient",
    "FTPControl",
    "Reply",
    "clientTLS",
    "connectFTP",
]

_log = Logger()


@frozen
class Reply:
    """
    A server reply: its code and its lines, the codes stripped.
    """

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The first line's text."""
        return self.lines[0] if self.lines else ""


def clientTLS(
    hostname: str, caCertificate: bytes | None = None, verify: bool = True
) -> Any:
    """
    TLS settings for L{connectFTP}: the server's certificate must name
    C{hostname} and chain to the platform's roots (or to C{caCertificate},
    PEM); with C{verify=False}, anything is accepted (development only).
    """
    if not verify:
        return CertificateOptions()
    trust = Certificate.loadPEM(caCertificate) if caCertificate else None
    return optionsForClientTLS(hostname, trustRoot=trust)


class FTPControl(LineReceiver):
    """
    The control connection: sends commands one at a time and parses replies
    (RFC 959 multi-line replies, 1xx preliminaries).
    """

    delimiter = b"\n"
    MAX_LENGTH = 65536

    def __init__(self) -> None:
        self.greeting: Deferred[Reply] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self._pending: deque[tuple[str, Deferred[Reply], Callable[[Reply], None]]]
        self._pending = deque()
        self._current: tuple[str, Deferred[Reply], Callable[[Reply], None]] | None
        self._current = None
        self._lines: list[str] = []
        self._code: str | None = None
        self._greeted = False
        self.lost: Failure | None = None

    def connectionMade(self) -> None:
        noDelay(self.transport)

    def sendLine(self, line: bytes) -> None:
        # Replies may end in a bare LF (the delimiter), commands always CRLF.
        self.transport.write(line + b"\r\n")  # type: ignore[union-attr]

    def lineReceived(self, raw: bytes) -> None:
        line = raw.rstrip(b"\r").decode("utf-8", "surrogateescape")
        if self._code is None:
            code = line[:3]
            if not code.isdigit():
                return
            if line[3:4] == "-":
                self._code = code
                self._lines = [line[4:]]
                return
            self._deliver(Reply(int(code), (line[4:],)))
            return
        if line.startswith(self._code + " "):
            lines = tuple(self._lines + [line[4:]])
            number = int(self._code)
            self._code = None
            self._lines = []
            self._deliver(Reply(number, lines))
        else:
            self._lines.append(line[1:] if line.startswith(" ") else line)

    def _deliver(self, reply: Reply) -> None:
        if not self._greeted:
            if reply.code < 200:
                return
            self._greeted = True
            if reply.code >= 400:
                self.greeting.errback(FTPClientError(reply.code, reply.lines))
            else:
                self.greeting.callback(reply)
            return
        current = self._current
        if current is None:
            return
        text, d, preliminary = current
        if reply.code < 200:
            preliminary(reply)
            return
        self._current = None
        if reply.code >= 400:
            d.errback(FTPClientError(reply.code, reply.lines, _masked(text)))
        else:
            d.callback(reply)
        self._next()

    def command(
        self, text: str, preliminary: Callable[[Reply], None] | None = None
    ) -> Deferred[Reply]:
        """
        Send C{text} once earlier commands are answered.

        @param preliminary: called with 1xx replies (C{150 Opening...}).
        @return: fires with the final reply (2xx or 3xx); fails with
            L{FTPClientError} for 4xx and 5xx.
        """
        d: Deferred[Reply] = Deferred()
        if self.lost is not None:
            d.errback(FTPError(f"connection closed: {self.lost.getErrorMessage()}"))
            return d
        if any(c in text for c in "\r\n"):
            d.errback(FTPError("a command cannot hold CR or LF"))
            return d
        self._pending.append((text, d, preliminary or (lambda r: None)))
        if self._current is None:
            self._next()
        return d

    def _next(self) -> None:
        if self._current is not None or not self._pending or self.lost is not None:
            return
        self._current = self._pending.popleft()
        self.sendLine(self._current[0].encode("utf-8", "surrogateescape"))

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.lost = reason
        error = FTPError(f"connection closed: {reason.getErrorMessage()}")
        if not self.greeting.called:
            self.greeting.errback(error)
        waiting = ([self._current] if self._current else []) + list(self._pending)
        self._current = None
        self._pending.clear()
        for _, d, _ in waiting:
            d.errback(error)
        self.closed.callback(None)


def _masked(text: str) -> str:
    return "PASS ********" if text.upper().startswith("PASS ") else text


@implementer(IHandshakeListener)
class _DataProtocol(Protocol):
    """
    The client's end of one data connection.

    @ivar secured: fires when data can be sent without piling up in memory:
        at once without TLS, after the handshake with it.
    """

    def __init__(self, tls: bool) -> None:
        self._tls = tls
        self.connected_: Deferred[_DataProtocol] = Deferred()
        self.secured: Deferred[None] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self.sink: IConsumer | None = None
        self._early: list[bytes] = []
        self.reason: Failure | None = None

    def connectionMade(self) -> None:
        noDelay(self.transport)
        self.connected_.callback(self)
        if not self._tls:
            self.secured.callback(None)

    def handshakeCompleted(self) -> None:
        if not self.secured.called:
            self.secured.callback(None)

    def dataReceived(self, data: bytes) -> None:
        if self.sink is None:
            self._early.append(data)
        else:
            self.sink.write(data)

    def attach(self, sink: IConsumer) -> None:
        self.sink = sink
        if self.reason is None:
            sink.registerProducer(self.transport, True)  # type: ignore[arg-type]
        early, self._early = self._early, []
        for chunk in early:
            sink.write(chunk)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.reason = reason
        if self.sink is not None:
            self.sink.unregisterProducer()
        if not self.connected_.called:
            self.connected_.errback(reason)
        if not self.secured.called:
            self.secured.errback(FTPError("the data connection closed before TLS"))
        self.closed.callback(None)


class _OneShot(Factory):
    """Builds exactly one data protocol, for a peer the check allows."""

    noisy = False

    def __init__(self, protocol: _DataProtocol, allowed: Callable[[Any], bool]):
        self._protocol = protocol
        self._allowed = allowed
        self._used = False

    def buildProtocol(self, addr: Any) -> Protocol | None:
        if self._used or not self._allowed(addr):
            return None
        self._used = True
        return self._protocol


class _OneShotClient(_OneShot, ClientFactory):
    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self._protocol.connected_.called:
            self._protocol.connected_.errback(reason)


class _ListSink:
    """A consumer collecting a listing (bounded by the listing's size)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.data += data


class _Counting:
    """Passes writes on to a consumer, counting them."""

    def __init__(self, consumer: IConsumer, progress: Callable[[int], None] | None):
        self._consumer = consumer
        self._progress = progress
        self.count = 0

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._consumer.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._consumer.unregisterProducer()

    def write(self, data: bytes) -> None:
        self.count += len(data)
        if self._progress is not None:
            self._progress(len(data))
        self._consumer.write(data)


_EPSV = re.compile(r"\((.)\1\1(\d+)\1\)")
_PASV = re.compile(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")


class FTPClient:
    """
    A logged-in (or about to be) FTP session. Every method returns a
    Deferred; commands are sent one after another.

    @ivar features: the server's FEAT lines, upper-cased, once known.
    """

    def __init__(
        self,
        reactor: Any,
        control: FTPControl,
        *,
        passive: bool = True,
        timeout: float = 60.0,
    ) -> None:
        self._reactor = reactor
        self.control = control
        self.passive = passive
        self.timeout = timeout
        self._tls: Any = None
        self._protected = False
        self._epsv = True
        self.features: frozenset[str] = frozenset()

    # -- plumbing ------------------------------------------------------------

    def command(self, text: str) -> Deferred[Reply]:
        """Send a raw command; fires with the final reply."""
        return self.control.command(text)

    def _run(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), f, *args)

    @property
    def _peer(self) -> str:
        assert self.control.transport is not None
        return normalHost(self.control.transport.getPeer().host)  # type: ignore[attr-defined]

    @property
    def _local(self) -> str:
        assert self.control.transport is not None
        return normalHost(self.control.transport.getHost().host)  # type: ignore[attr-defined]

    def _wrap(self, factory: Any) -> Any:
        if not self._protected:
            return factory
        return TLSMemoryBIOFactory(self._tls, True, factory, self._reactor)

    # -- session -------------------------------------------------------------

    def startTLS(self, options: Any) -> Deferred[None]:
        """
        AUTH TLS on the control connection, then PBSZ 0 and PROT P so data
        connections are encrypted too.
        """

        async def run() -> None:
            await self.command("AUTH TLS")
            self.control.transport.startTLS(options)  # type: ignore[union-attr]
            await self.protect(options)

        return Deferred.fromCoroutine(run())

    def protect(self, options: Any) -> Deferred[None]:
        """
        PBSZ 0 and PROT P on a control connection that is already TLS:
        data connections are encrypted with C{options} from now on.
        """

        async def run() -> None:
            await self.command("PBSZ 0")
            await self.command("PROT P")
            self._tls = options
            self._protected = True

        return Deferred.fromCoroutine(run())

    def login(self, user: str, password: str) -> Deferred[None]:
        """USER, PASS; then FEAT, UTF-8 and TYPE I."""

        async def run() -> None:
            reply = await self.command(f"USER {user}")
            if reply.code == 331:
                await self.command(f"PASS {password}")
            try:
                feat = await self.command("FEAT")
            except FTPClientError:
                feat = Reply(211, ())
            self.features = frozenset(line.strip().upper() for line in feat.lines[1:-1])
            if "UTF8" in self.features:
                await self.command("OPTS UTF8 ON")
            await self.command("TYPE I")

        return Deferred.fromCoroutine(run())

    def quit(self) -> Deferred[None]:
        """QUIT and close."""

        async def run() -> None:
            try:
                await self.command("QUIT")
            except FTPError:
                pass
            if self.control.transport is not None and self.control.lost is None:
                self.control.transport.loseConnection()
                await self.control.closed

        return Deferred.fromCoroutine(run())

    def pwd(self) -> Deferred[str]:
        """The working directory."""

        async def run() -> str:
            reply = await self.command("PWD")
            m = re.match(r'\s*"((?:[^"]|"")*)"', reply.text)
            if m is None:
                raise FTPError(f"cannot read a PWD reply: {reply.text}")
            return m.group(1).replace('""', '"')

        return Deferred.fromCoroutine(run())

    def cwd(self, path: str) -> Deferred[Reply]:
        """Change the working directory."""
        return self.command(f"CWD {path}")

    def mkdir(self, path: str) -> Deferred[Reply]:
        """MKD."""
        return self.command(f"MKD {path}")

    def rmdir(self, path: str) -> Deferred[Reply]:
        """RMD."""
        return self.command(f"RMD {path}")

    def delete(self, path: str) -> Deferred[Reply]:
        """DELE."""
        return self.command(f"DELE {path}")

    def rename(self, source: str, dest: str) -> Deferred[Reply]:
        """RNFR then RNTO."""

        async def run() -> Reply:
            await self.command(f"RNFR {source}")
            return await self.command(f"RNTO {dest}")

        return Deferred.fromCoroutine(run())

    def size(self, path: str) -> Deferred[int]:
        """SIZE (in TYPE I)."""
        return self.command(f"SIZE {path}").addCallback(lambda r: int(r.text.strip()))

    # -- data connections ----------------------------------------------------

    async def _dataConnection(self) -> tuple[_DataProtocol, Callable[[], None]]:
        """
        Set up a data connection for the next transfer command; return its
        protocol and a function that gives up on it.
        """
        protocol = _DataProtocol(self._protected)
        if self.passive:
            port = await self._passivePort()
            factory = _OneShotClient(protocol, lambda addr: True)
            connector = self._reactor.connectTCP(
                self._peer, port, self._wrap(factory), timeout=int(self.timeout)
            )
            return protocol, connector.disconnect
        peer = self._peer

        def fromPeer(addr: Any) -> bool:
            return normalHost(getattr(addr, "host", "")) == peer

        listener = self._reactor.listenTCP(
            0, self._wrap(_OneShot(protocol, fromPeer)), interface=self._local
        )
        port = listener.getHost().port
        if ":" in self._local:
            await self.command(f"EPRT |2|{self._local}|{port}|")
        else:
            numbers = self._local.split(".") + [str(port >> 8), str(port & 0xFF)]
            await self.command("PORT " + ",".join(numbers))
        protocol.connected_.addBoth(lambda r: (listener.stopListening(), r)[1])

        def cancel() -> None:
            listener.stopListening()
            if protocol.transport is not None:
                protocol.transport.abortConnection()  # type: ignore[attr-defined]

        return protocol, cancel

    async def _passivePort(self) -> int:
        if self._epsv:
            try:
                reply = await self.command("EPSV")
            except FTPClientError as e:
                if e.code < 500:
                    raise
                self._epsv = False
            else:
                m = _EPSV.search(reply.text)
                if m is None:
                    raise FTPError(f"cannot read an EPSV reply: {reply.text}")
                return int(m.group(2))
        reply = await self.command("PASV")
        m = _PASV.search(reply.text)
        if m is None:
            raise FTPError(f"cannot read a PASV reply: {reply.text}")
        return int(m.group(5)) << 8 | int(m.group(6))

    async def _transfer(
        self, command: str, work: Callable[[_DataProtocol], Deferred[Any]]
    ) -> Any:
        """
        Run one transfer: set up the data connection, send C{command}, and
        once the server has said 1xx, run C{work} on the connection. Fires
        when both the work and the server's final reply are done.
        """
        protocol, cancel = await self._dataConnection()
        started: Deferred[None] = Deferred()

        def begin(_: object) -> None:
            if not started.called:
                started.callback(None)

        def ended(result: Any) -> Any:
            if not started.called:
                if isinstance(result, Failure):
                    started.errback(result)
                    return None
                started.callback(None)
            return result

        final = self.control.command(command, begin)
        final.addBoth(ended)
        try:
            await started
            await _timeout(protocol.connected_, self.timeout, self._reactor)
            result = await work(protocol)
            await final
        except BaseException as e:
            cancel()
            refusal = None
            if started.called and not isinstance(e, FTPClientError):
                # A server that refuses a transfer midway (552 over quota)
                # closes the data connection and then says why: prefer its
                # reply to "data connection closed".
                refusal = await self._refusal(final)
            final.addErrback(lambda _: None)
            if refusal is not None:
                raise refusal from None
            raise
        return result

    async def _refusal(self, final: Deferred[Any]) -> FTPClientError | None:
        """The server's error reply to a failed transfer, if it sends one."""
        waiter: Deferred[Any] = Deferred()

        def relay(result: Any) -> Any:
            if not waiter.called:
                waiter.callback(result)
            return result

        final.addBoth(relay)
        waiter.addTimeout(min(self.timeout, 5.0), self._reactor)
        try:
            await waiter
        except FTPClientError as e:
            return e
        except Exception:
            return None
        return None

    def _receive(self, command: str, sink: IConsumer) -> Deferred[None]:
        async def run() -> None:
            async def work(protocol: _DataProtocol) -> None:
                protocol.attach(sink)
                await protocol.closed
                reason = protocol.reason
                if reason is not None and not reason.check(ConnectionDone):
                    raise FTPError(f"data connection lost: {reason.getErrorMessage()}")

            await self._transfer(command, lambda p: Deferred.fromCoroutine(work(p)))

        return Deferred.fromCoroutine(run())

    # -- listings --------------------------------------------------------------

    def nlst(self, path: str = "") -> Deferred[list[str]]:
        """NLST: names."""
        return self._lines(f"NLST {path}".rstrip())

    def mlsd(self, path: str = "") -> Deferred[list[Listed]]:
        """MLSD: entries with their facts (no C{.} and C{..})."""

        async def run() -> list[Listed]:
            lines = await self._lines(f"MLSD {path}".rstrip())
            entries = [parseFacts(line) for line in lines]
            return [
                e for e in entries if e is not None and e.kind not in ("cdir", "pdir")
            ]

        return Deferred.fromCoroutine(run())

    def entries(self, path: str = "") -> Deferred[list[Listed]]:
        """
        A directory's entries: MLSD when the server has it (exact sizes and
        times), else LIST parsed as C{ls -l}.
        """
        if any(f.startswith("MLST") for f in self.features):
            return self.mlsd(path)

        async def run() -> list[Listed]:
            lines = await self.list(path)
            entries = [parseList(line) for line in lines]
            return [e for e in entries if e is not None and e.name not in (".", "..")]

        return Deferred.fromCoroutine(run())

    def _lines(self, command: str) -> Deferred[list[str]]:
        async def run() -> list[str]:
            sink = _ListSink()
            await self._receive(command, sink)  # type: ignore[arg-type]
            text = bytes(sink.data).decode("utf-8", "surrogateescape")
            return [line.rstrip("\r") for line in text.split("\n") if line.strip()]

        return Deferred.fromCoroutine(run())

    # -- files -----------------------------------------------------------------

    def retrieve(
        self,
        path: str,
        consumer: IConsumer,
        offset: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> Deferred[int]:
        """
        RETR into C{consumer} (which may pause the connection), from
        C{offset} (REST) on.

        @return: fires with the bytes received.
        """

        async def run() -> int:
            if offset:
                await self.command(f"REST {offset}")
            counting = _Counting(consumer, progress)
            await self._receive(f"RETR {path}", counting)  # type: ignore[arg-type]
            return counting.count

        return Deferred.fromCoroutine(run())

    def retrieveFile(
        self,
        path: str,
        local: str,
        resume: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> Deferred[int]:
        """
        Download C{path} to the file C{local}. With C{resume}, an existing
        local file is continued from its size (REST). Otherwise the download
        goes to C{local.appnet-part}, renamed over C{local} only once
        complete: a failed download leaves an existing C{local} alone.

        @return: fires with the bytes received in this call.
        """

        async def run() -> int:
            offset, fd, part = await self._run(_openLocal, local, resume)
            receiver = FileReceiver(self._run, fd, fsync=False)
            done = False
            try:
                count = await self.retrieve(path, receiver, offset, progress)
                await receiver.finish()
                done = True
            finally:
                if not done:
                    receiver.fail(FTPTransferAborted("download failed"))
                await receiver.quiet()
                await self._run(_closeLocal, fd, part, local, done)
            return count

        return Deferred.fromCoroutine(run())

    def store(
        self,
        path: str,
        local: str,
        offset: int = 0,
        append: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> Deferred[int]:
        """
        Upload the file C{local} to C{path}: STOR, or APPE with C{append},
        sending the local file from C{offset} on.

        @return: fires with the bytes sent.
        """

        async def run() -> int:
            fd = await self._run(_openForSending, local, offset)
            sender: list[FileSender] = []
            try:

                async def work(protocol: _DataProtocol) -> int:
                    await protocol.secured
                    assert protocol.transport is not None
                    s = FileSender(
                        self._run,
                        fd,
                        protocol.transport,  # type: ignore[arg-type]
                        self._reactor,
                        progress=progress,
                    )
                    sender.append(s)
                    sent = await s.start()
                    protocol.transport.loseConnection()
                    await protocol.closed
                    return sent

                verb = "APPE" if append else "STOR"
                return int(
                    await self._transfer(
                        f"{verb} {path}", lambda p: Deferred.fromCoroutine(work(p))
                    )
                )
            finally:
                if sender:
                    await sender[0].quiet()
                await self._run(os.close, fd)

        return Deferred.fromCoroutine(run())

    def storeFile(
        self,
        local: str,
        path: str,
        resume: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> Deferred[int]:
        """
        Upload C{local} to C{path}. With C{resume}, ask the server how much
        it has (SIZE) and append the rest (APPE).

        @return: fires with the bytes sent in this call.
        """

        async def run() -> int:
            offset = 0
            if resume:
                try:
                    offset = await self.size(path)
                except FTPClientError as e:
                    if e.code != 550:
                        raise
            if progress is not None and offset:
                progress(0)
            return await self.store(
                path, local, offset, append=offset > 0, progress=progress
            )

        return Deferred.fromCoroutine(run())

    # Last in the class: below this, "list" in annotations would mean it.
    def list(self, path: str = "") -> Deferred[list[str]]:
        """LIST: the server's lines, as text."""
        return self._lines(f"LIST {path}".rstrip())


def _openLocal(path: str, resume: bool) -> tuple[int, int, str | None]:
    """
    Open a download's local file (in a thread): the file itself to resume
    it, else a C{.appnet-part} file beside it.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    if resume:
        fd = os.open(path, flags, 0o644)
        return os.lseek(fd, 0, os.SEEK_END), fd, None
    part = path + ".appnet-part"
    return 0, os.open(part, flags | os.O_TRUNC, 0o644), part


def _closeLocal(fd: int, part: str | None, path: str, ok: bool) -> None:
    """Close a download's file; put a complete part file in place."""
    os.close(fd)
    if part is None:
        return
    if ok:
        os.replace(part, path)
    else:
        try:
            os.unlink(part)
        except FileNotFoundError:
            pass


def _openForSending(path: str, offset: int) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    if offset:
        os.lseek(fd, offset, os.SEEK_SET)
    return fd


def _timeout(d: Deferred[Any], seconds: float, clock: IReactorTime) -> Deferred[Any]:
    if d.called:
        return d
    waiter: Deferred[Any] = Deferred()

    def fire(result: object) -> object:
        if not waiter.called:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)
        return result

    d.addBoth(fire)

    def expire() -> None:
        if not waiter.called:
            waiter.errback(FTPError("timed out waiting for the data connection"))

    call = clock.callLater(seconds, expire)

    def stop(result: object) -> object:
        if call.active():
            call.cancel()
        return result

    waiter.addBoth(stop)
    return waiter


async def _connect(
    reactor: Any,
    host: str,
    port: int,
    user: str,
    password: str,
    tls: Any,
    passive: bool,
    timeout: float,
    implicit: bool,
) -> FTPClient:
    endpoint: Any = HostnameEndpoint(reactor, host, port, timeout=int(timeout))
    if implicit:
        endpoint = wrapClientTLS(tls, endpoint)
    control = FTPControl()
    await CannotConnect.during(host, port, connectProtocol(endpoint, control))
    client = FTPClient(reactor, control, passive=passive, timeout=timeout)
    try:
        await _timeout(control.greeting, timeout, reactor)
        if implicit:
            await client.protect(tls)
        elif tls is not None:
            await client.startTLS(tls)
        await client.login(user, password)
    except BaseException:
        if control.transport is not None:
            control.transport.loseConnection()
        raise
    return client


def connectFTP(
    reactor: IReactorTCP,
    host: str,
    port: int = 21,
    *,
    user: str = "anonymous",
    password: str = "anonymous@",
    tls: Any = None,
    passive: bool = True,
    timeout: float = 60.0,
    implicit: bool = False,
) -> Deferred[FTPClient]:
    """
    Connect, optionally AUTH TLS (C{tls}: see L{clientTLS}), log in.

    @param implicit: TLS from the first byte (C{ftps://}, port 990)
        instead of AUTH TLS; needs C{tls}.
    @return: fires with the logged-in L{FTPClient}; fails with
        L{FTPClientError} if the server refuses the login.
    """
    if implicit and tls is None:
        raise ValueError("implicit TLS needs tls settings")
    return Deferred.fromCoroutine(
        _connect(reactor, host, port, user, password, tls, passive, timeout, implicit)
    )
