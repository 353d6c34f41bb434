"""
FTP data transfers: the data-connection commands (PASV, EPSV, PORT, EPRT,
REST, ABOR) over the channels of L{appnet.ftp.data}, and the transfers run
on them (RETR, STOR, APPE, STOU, LIST, NLST, MLSD) with their stall
watchdog, upload rate limit and C{TYPE A} line-end conversion.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols.ftp import FTP
from zope.interface import implementer

from appnet.address import isLoopback
from appnet.ftp._files import AsciiDecoder, AsciiEncoder, FileReceiver
from appnet.ftp.data import (
    ActiveChannel,
    DataConnection,
    PassiveChannel,
    _Channel,
    normalHost,
)
from appnet.ftp.errors import (
    CannotOpenData,
    FTPCommandError,
    LocalError,
    NotFound,
    TransferAborted,
    logName,
    showName,
)
from appnet.ftp.interfaces import IFTPFilesystem, IReadHandle, IWriteHandle, WriteMode
from appnet.ftp.listing import formatFacts, formatList, listable
from appnet.ftp.paths import Segments, render
from appnet.ftp.shell import Entry

if TYPE_CHECKING:
    from appnet.ftp.server import ServerSettings

__all__ = ["DataTransfers", "Transfer"]


def _ipv4(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(normalHost(host)), ipaddress.IPv4Address)
    except ValueError:
        return False


class _Reply(Exception):
    """Raised inside a handler to answer with a code and text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


@define
class Transfer:
    """
    The transfer a session is running (one at a time).
    """

    command: str
    path: str
    clock: Any
    started: float
    channel: _Channel | None = None
    connection: DataConnection | None = None
    bytes: int = 0
    problem: FTPCommandError | None = None
    lastActivity: float = 0.0
    done: Deferred[None] = field(factory=Deferred)
    #: A scripted fault (L{appnet.faults}) cuts the transfer here.
    cutAfter: int | None = None

    def touch(self) -> None:
        self.lastActivity = self.clock.seconds()

    def count(self, amount: int) -> None:
        self.bytes += amount
        self.lastActivity = self.clock.seconds()
        if self.cutAfter is not None and self.bytes >= self.cutAfter:
            self.abort("cut by a scripted fault")

    @property
    def aborted(self) -> bool:
        """Was the transfer stopped (by ABOR, QUIT or a stall)?"""
        return self.problem is not None

    def abort(self, why: str = "aborted by client") -> None:
        """Stop it: close the data connection or stop waiting for it."""
        if self.problem is None:
            self.problem = TransferAborted(why)
        if self.connection is not None:
            self.connection.abort()
        if self.channel is not None:
            self.channel.close()

    def waitDone(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.done.called:
            d.callback(None)
        else:
            self.done.addCallback(lambda _: d.callback(None))
        return d


class _ControlContext:
    """
    The TLS context of an implicit-FTPS control connection, as a context
    factory for its data connections (when no [tls] settings give one).
    """

    def __init__(self, context: Any) -> None:
        self._context = context

    @classmethod
    def of(cls, transport: Any) -> _ControlContext | None:
        try:
            return cls(transport.getHandle().get_context())
        except AttributeError:
            return None

    def getContext(self) -> Any:
        return self._context


class _Watchdog:
    """
    Calls C{stalled} once a transfer has been idle for C{timeout} seconds.
    Cheap per chunk: the transfer only records the time of its last
    activity, and the one timer re-arms itself for the remaining time.
    """

    def __init__(
        self,
        clock: Any,
        timeout: float,
        transfer: Transfer,
        stalled: Callable[[float], None],
    ) -> None:
        self._clock = clock
        self._timeout = timeout
        self._transfer = transfer
        self._stalled = stalled
        self._call: IDelayedCall | None = clock.callLater(timeout, self._check)

    def _check(self) -> None:
        idle = self._clock.seconds() - self._transfer.lastActivity
        if idle >= self._timeout:
            self._call = None
            self._stalled(idle)
        else:
            self._call = self._clock.callLater(self._timeout - idle, self._check)

    def cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()


@implementer(IPushProducer)
class _Gate:
    """
    Stands between a data connection and what consumes it, so the rate
    limit and the disk can both pause it without resuming each other's
    pauses.
    """

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._reasons: set[str] = set()

    def pause(self, reason: str) -> None:
        if not self._reasons:
            self._producer.pauseProducing()
        self._reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self._reasons:
            self._reasons.discard(reason)
            if not self._reasons:
                self._producer.resumeProducing()

    def pauseProducing(self) -> None:
        self.pause("consumer")

    def resumeProducing(self) -> None:
        self.resume("consumer")

    def stopProducing(self) -> None:
        self._producer.stopProducing()


class _UploadSink:
    """
    The consumer a data connection feeds during an upload: counts bytes,
    converts C{TYPE A} line ends, applies the rate limit, and passes the
    rest to the L{FileReceiver}.
    """

    def __init__(
        self,
        receiver: FileReceiver,
        transfer: Transfer,
        decoder: AsciiDecoder | None,
        throttle: Callable[[int], float] | None,
        clock: Any,
    ) -> None:
        self._receiver = receiver
        self._transfer = transfer
        self._decoder = decoder
        self._throttle = throttle
        self._clock = clock
        self._gate: _Gate | None = None
        self._held: IDelayedCall | None = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._gate = _Gate(producer)
        self._receiver.registerProducer(self._gate, True)

    def unregisterProducer(self) -> None:
        self._receiver.unregisterProducer()
        self._gate = None
        if self._held is not None and self._held.active():
            self._held.cancel()
        self._held = None

    def write(self, data: bytes) -> None:
        self._transfer.count(len(data))
        self._receiver.write(self._decoder(data) if self._decoder else data)
        if self._throttle is not None and self._gate is not None:
            delay = self._throttle(len(data))
            if delay > 0 and self._held is None:
                gate = self._gate
                gate.pause("rate")

                def release() -> None:
                    self._held = None
                    gate.resume("rate")

                self._held = self._clock.callLater(delay, release)

    def end(self) -> None:
        """The data is complete: flush what the decoder holds."""
        if self._decoder is not None:
            rest = self._decoder.flush()
            if rest:
                self._receiver.write(rest)


class DataTransfers(FTP):
    """
    The data-connection and transfer commands of an FTP session;
    L{appnet.ftp.server.FTPServer} adds the rest and sets this state.
    """

    settings: ServerSettings
    shell: IFTPFilesystem | None  # type: ignore[assignment]
    workingDirectory: Segments
    _log: Logger
    _clock: Any
    #: Opens data connections and paces transfers (real time); C{_clock}
    #: runs the timeouts (a test's virtual clock, or the reactor).
    _reactor: Any
    _transfer: Transfer | None
    _channel: _Channel | None
    _rest: int
    _protected: bool
    _facts: tuple[str, ...]
    _epsvAll: bool
    _peer: str
    _dataTLS: Any

    if TYPE_CHECKING:

        def respond(self, code: int, text: str) -> None: ...

        def _path(self, arg: str) -> Segments: ...

        @property
        def _shell(self) -> IFTPFilesystem: ...

    # -- data connection setup -------------------------------------------------

    def _closeChannel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def _tlsForData(self) -> Any:
        return self._dataTLS if self._protected else None

    def _localHost(self) -> str:
        assert self.transport is not None
        return normalHost(getattr(self.transport.getHost(), "host", ""))

    def _passive(self) -> int:
        self._closeChannel()
        account = self.shell.account if self.shell is not None else "-"
        if self.factory.passiveOpen(account) >= self.settings.maxPassivePerAccount:
            self._log.warn(
                "Refused PASV for {account} from {peer}: {count} passive"
                " ports already open",
                account=account,
                peer=self._peer,
                count=self.settings.maxPassivePerAccount,
            )
            raise _Reply(
                425, "Too many passive data ports open for this account; try later"
            )
        channel = PassiveChannel(
            self._reactor,
            interface=self._localHost(),
            peer=self._peer,
            ports=self.settings.passivePorts,
            tls=self._tlsForData(),
            timeout=self.settings.dataTimeout,
        )
        port = channel.listen()
        self._channel = channel
        self.factory.passiveOpened(account, channel)
        return port

    def ftp_PASV(self, arg: str = "") -> None:
        if self._epsvAll:
            raise _Reply(503, "PASV is not allowed after EPSV ALL")
        local = self._localHost()
        if not _ipv4(local):
            raise _Reply(502, "PASV is for IPv4 only; use EPSV")
        port = self._passive()
        announced = local
        if self.settings.publicAddress and not isLoopback(self._peer):
            announced = self.settings.publicAddress
        numbers = announced.split(".") + [str(port >> 8), str(port & 0xFF)]
        self.respond(227, f"Entering Passive Mode ({','.join(numbers)})")

    def ftp_EPSV(self, arg: str = "") -> None:
        argument = arg.strip().upper()
        if argument == "ALL":
            self._epsvAll = True
            self.respond(200, "EPSV ALL ok")
            return
        if argument:
            family = "1" if _ipv4(self._localHost()) else "2"
            if argument not in ("1", "2"):
                if argument.isdigit():
                    raise _Reply(522, f"Network protocol not supported, use ({family})")
                raise _Reply(501, "EPSV takes 1, 2 or ALL")
            if argument != family:
                raise _Reply(522, f"Network protocol not supported, use ({family})")
        port = self._passive()
        self.respond(229, f"Entering Extended Passive Mode (|||{port}|)")

    def _active(self, host: str, port: int) -> None:
        if normalHost(host) != self._peer:
            raise _Reply(501, "Data connections go only to your own address")
        if port < 1024:
            raise _Reply(501, "Data connections to privileged ports are refused")
        self._closeChannel()
        self._channel = ActiveChannel(
            self._reactor,
            host=normalHost(host),
            port=port,
            bindHost=self._localHost(),
            tls=self._tlsForData(),
            timeout=self.settings.dataTimeout,
        )

    def ftp_PORT(self, arg: str = "") -> None:
        if self._epsvAll:
            raise _Reply(503, "PORT is not allowed after EPSV ALL")
        parts = arg.strip().split(",")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) != 6 or not all(0 <= n <= 255 for n in numbers):
            raise _Reply(501, "PORT wants h1,h2,h3,h4,p1,p2")
        host = ".".join(str(n) for n in numbers[:4])
        self._active(host, numbers[4] << 8 | numbers[5])
        self.respond(200, "PORT command successful")

    def ftp_EPRT(self, arg: str = "") -> None:
        if self._epsvAll:
            raise _Reply(503, "EPRT is not allowed after EPSV ALL")
        text = arg.strip()
        if len(text) < 2 or not 33 <= ord(text[0]) <= 126:
            raise _Reply(501, "EPRT wants |family|address|port|")
        fields = text[1:].split(text[0])
        if len(fields) != 4 or fields[3] != "":
            raise _Reply(501, "EPRT wants |family|address|port|")
        family, host, portText, _ = fields
        if family not in ("1", "2"):
            raise _Reply(522, "Network protocol not supported, use (1,2)")
        try:
            address = ipaddress.ip_address(host)
            port = int(portText)
        except ValueError:
            raise _Reply(501, "EPRT wants |family|address|port|") from None
        if (family == "1") != isinstance(address, ipaddress.IPv4Address):
            raise _Reply(501, "EPRT address does not match its family")
        if not 0 < port <= 65535:
            raise _Reply(501, "EPRT port out of range")
        self._active(str(address), port)
        self.respond(200, "EPRT command successful")

    def ftp_REST(self, arg: str = "") -> None:
        text = arg.strip()
        # ASCII digits only (str.isdigit also takes "\u00b2", which int()
        # refuses), and no more than 20 of them (2**64 has 20; int()
        # refuses thousands).
        if not (text.isascii() and text.isdigit()) or len(text) > 20:
            raise _Reply(501, "REST wants a byte offset")
        self._rest = int(text)
        self.respond(350, f"Restarting at {self._rest}; send STOR or RETR")

    def ftp_ABOR(self, arg: str = "") -> Awaitable[None] | None:
        transfer = self._transfer
        if transfer is None:
            self._closeChannel()
            self.respond(225, "No transfer to abort")
            return None
        return self._abort(transfer)

    async def _abort(self, transfer: Transfer) -> None:
        transfer.abort()
        await transfer.waitDone()
        self.respond(226, "ABOR successful")

    # -- transfers -------------------------------------------------------------

    def _takeRest(self) -> int:
        offset, self._rest = self._rest, 0
        return offset

    def _dataNeedsProtection(self) -> bool:
        anonymous = self.shell is not None and self.shell.readOnly
        return self.settings.requireTLS and not anonymous

    async def _transferring(
        self,
        command: str,
        path: str,
        preface: str,
        work: Callable[[DataConnection, Transfer], Awaitable[str]],
    ) -> None:
        """
        Run one transfer on the session's data channel: wait for the
        connection, send the preliminary reply, run C{work}, and answer
        with its summary (226) or the failure.
        """
        channel, self._channel = self._channel, None
        if channel is None:
            raise _Reply(425, "Use PORT, EPRT, PASV or EPSV first")
        faults = self.factory.faults
        refused = faults.take("ftp", "data", command, transport=self.transport)
        if refused is not None:
            channel.close()
            raise _Reply(
                refused.code or 425, refused.text or "Can't open data connection"
            )
        cut = faults.take("ftp", "transfer", command, transport=self.transport)
        if self._dataNeedsProtection() and not self._protected:
            channel.close()
            raise _Reply(521, "Data connections must be encrypted: use PROT P")
        transfer = self._transfer = Transfer(
            command, path, self._clock, self._clock.seconds(), channel
        )
        if cut is not None:
            transfer.cutAfter = cut.after
        self.setTimeout(None)
        stall: _Watchdog | None = None
        outcome = "failed"
        try:
            already = channel.established
            connection = await channel.connection()
            transfer.connection = connection
            connection.activity = transfer.touch
            transfer.touch()
            stall = self._watch(transfer)
            self.respond(125 if already else 150, preface)
            # Data starts a reactor turn after the preliminary reply, so the
            # reply leaves first: clients (lftp) slow down badly when a
            # small file and its end arrive before the 150.
            await deferLater(self._reactor, 0, lambda: None)
            await connection.whenSecured()
            summary = await work(connection, transfer)
            if transfer.problem is not None:
                raise transfer.problem
            outcome = "complete"
            self.respond(226, summary)
        except FTPCommandError as e:
            if transfer.problem is not None and isinstance(
                e, (TransferAborted, CannotOpenData)
            ):
                e = transfer.problem
                outcome = "aborted"
            self.respond(*e.reply())
        finally:
            if stall is not None:
                stall.cancel()
            channel.close()
            self._transfer = None
            self.factory.counted(command, transfer.bytes)
            self._log.info(
                "FTP {account} {client} {command} {path}: {bytes} bytes in"
                " {seconds:.2f}s, {outcome}",
                account=self.shell.account if self.shell else "-",
                client=self._peer,
                command=command,
                path=logName(path),
                bytes=transfer.bytes,
                seconds=self._clock.seconds() - transfer.started,
                outcome=outcome,
            )
            if not self.disconnected:
                self.setTimeout(self.timeOut)
            transfer.done.callback(None)

    def _watch(self, transfer: Transfer) -> _Watchdog | None:
        """
        Abort the transfer if no data moves for the data timeout.
        """
        if self.settings.dataTimeout <= 0:
            return None

        def stalled(idle: float) -> None:
            self._log.info(
                "FTP {client}: {command} made no progress for {seconds}s; aborting",
                client=self._peer,
                command=transfer.command,
                seconds=int(idle),
            )
            transfer.abort(f"no progress for {int(idle)} seconds")

        return _Watchdog(self._clock, self.settings.dataTimeout, transfer, stalled)

    async def ftp_RETR(self, arg: str = "") -> None:
        offset = self._takeRest()
        segments = self._path(arg)
        if self._channel is None:
            raise _Reply(425, "Use PORT, EPRT, PASV or EPSV first")
        shell = self._shell
        handle = await shell.openRead(segments, offset)
        try:
            name = render(segments)
            mode = "BINARY" if self.binary else "ASCII"
            preface = (
                f"Opening {mode} mode data connection for {showName(name)}"
                f" ({handle.size} bytes)"
            )
            await self._transferring("RETR", name, preface, self._sender(handle, shell))
        finally:
            await handle.close()

    def _sender(
        self, handle: IReadHandle, shell: IFTPFilesystem
    ) -> Callable[[DataConnection, Transfer], Awaitable[str]]:
        # The shell is the one the command started with: the session may
        # have ended (and dropped its shell) while the file was opened.

        async def send(connection: DataConnection, transfer: Transfer) -> str:
            if connection.reason is not None or connection.transport is None:
                raise TransferAborted("data connection closed")
            sent = await handle.sendTo(
                connection.transport,  # type: ignore[arg-type]
                transform=None if self.binary else AsciiEncoder(),
                throttle=shell.throttle,
                progress=transfer.count,
            )
            await connection.finish()
            return f"Transfer complete; {sent} bytes sent"

        return send

    async def _upload(self, command: str, arg: str, mode: WriteMode) -> None:
        offset = self._takeRest()
        segments = self._path(arg) if arg else self.workingDirectory + ("file",)
        if self._channel is None:
            raise _Reply(425, "Use PORT, EPRT, PASV or EPSV first")
        if offset and mode == "replace":
            mode = "resume"
        shell = self._shell
        handle = await shell.openWrite(segments, mode, offset)
        try:
            if mode == "unique":
                preface = f"FILE: {showName(handle.path.rsplit('/', 1)[-1])}"
            else:
                preface = f"Ready to receive {showName(handle.path)}"
            await self._transferring(
                command, handle.path, preface, self._receiver(handle, shell)
            )
        finally:
            # Nothing if the upload was committed.
            await handle.discard()

    def _receiver(
        self, handle: IWriteHandle, shell: IFTPFilesystem
    ) -> Callable[[DataConnection, Transfer], Awaitable[str]]:
        # As for _sender: the shell the command started with.

        async def receive(connection: DataConnection, transfer: Transfer) -> str:
            receiver: FileReceiver = handle.receiver()  # type: ignore[assignment]
            sink = _UploadSink(
                receiver,
                transfer,
                None if self.binary else AsciiDecoder(),
                shell.throttle,
                self._reactor,
            )
            try:
                await connection.receiveInto(sink)  # type: ignore[arg-type]
            except TransferAborted as e:
                # The receiver's own refusal (quota, full disk) says more
                # than the connection it closed.
                problem: FTPCommandError = receiver.error or e
                await handle.discard()
                raise problem from None
            sink.end()
            stopped = transfer.problem or receiver.error
            if stopped is not None:
                await handle.discard()
                raise stopped
            try:
                written = await handle.commit()
            except FTPCommandError:
                raise
            except Exception:
                self._log.failure("Committing an upload failed")
                raise LocalError() from None
            return (
                f"Transfer complete; {written} bytes stored as {showName(handle.path)}"
            )

        return receive

    async def ftp_STOR(self, arg: str = "") -> None:
        await self._upload("STOR", arg, "replace")

    async def ftp_APPE(self, arg: str = "") -> None:
        self._rest = 0
        await self._upload("APPE", arg, "append")

    async def ftp_STOU(self, arg: str = "") -> None:
        self._rest = 0
        await self._upload("STOU", arg, "unique")

    async def _listing(
        self,
        command: str,
        arg: str,
        format: Callable[[Entry], str],
        globs: bool = True,
    ) -> None:
        """
        LIST, NLST and MLSD: find the entries (errors before the data
        connection opens), then send one line per entry.

        A directory lists its entries; a file lists itself under the name
        given (MLSD refuses files with 501); with C{globs}, a last segment
        with C{*?[} that names nothing filters its directory (C{NLST *.txt}),
        and NLST then prefixes the directory as given, as C{ls} does.
        """
        self._takeRest()
        _, path = _listArguments(arg) if globs else ("", arg.strip())
        segments = self._path(path) if path else self.workingDirectory
        shell = self._shell
        prefix = ""
        try:
            info, entries = await shell.listing(segments)
        except NotFound:
            if not (globs and segments and _isGlob(segments[-1])):
                raise
            pattern, segments = segments[-1], segments[:-1]
            entries = [
                e
                for e in await shell.entries(segments)
                if fnmatch.fnmatchcase(e.name, pattern)
            ]
            if command == "NLST" and "/" in path:
                prefix = path.rsplit("/", 1)[0] + "/"
        else:
            if info.kind != "dir":
                if not globs:
                    where = showName(render(segments))
                    raise _Reply(501, f"{where}: not a directory")
                entries = [attrs.evolve(info, name=path or info.name)]
        if self._channel is None:
            raise _Reply(425, "Use PORT, EPRT, PASV or EPSV first")
        lines = [prefix + format(e) for e in entries if listable(e.name)]
        payload = "".join(line + "\r\n" for line in lines).encode(
            "utf-8", "surrogateescape"
        )

        async def send(connection: DataConnection, transfer: Transfer) -> str:
            if connection.reason is not None:
                raise TransferAborted("data connection closed")
            connection.write(payload)
            transfer.count(len(payload))
            await connection.finish()
            return f"{len(lines)} entries listed"

        where = showName(render(segments))
        await self._transferring(
            command, render(segments), f"Here comes the listing of {where}", send
        )

    async def ftp_LIST(self, arg: str = "") -> None:
        now = self._clock.seconds()
        await self._listing("LIST", arg, lambda e: formatList(e, now))

    async def ftp_NLST(self, arg: str = "") -> None:
        await self._listing("NLST", arg, lambda e: e.name)

    async def ftp_MLSD(self, arg: str = "") -> None:
        readOnly = self._shell.readOnly
        facts = self._facts
        await self._listing(
            "MLSD", arg, lambda e: formatFacts(e, readOnly, facts), globs=False
        )


def _isGlob(name: str) -> bool:
    return any(c in name for c in "*?[")


def _listArguments(arg: str) -> tuple[str, str]:
    """
    Split C{LIST -la dir} into options and path. Options are only taken from
    the front, as C{ls} would; a name starting with C{-} can follow C{--}.
    """
    text = arg.strip()
    options = []
    while text.startswith("-"):
        word, _, rest = text.partition(" ")
        if word == "--":
            text = rest.strip()
            break
        options.append(word)
        text = rest.strip()
    return " ".join(options), text
