"""
The FTP server: Twisted's protocol interpreter, extended where it is
missing something and replaced where it is wrong.

L{FTPServer} subclasses L{twisted.protocols.ftp.FTP} and keeps its line
handling (L{LineReceiver}), its idle timeout (L{TimeoutMixin}), its login
states and its small settled commands (C{TYPE}, C{STRU}, C{MODE}, C{SYST},
C{NOOP}, answered from Twisted's reply table). What it replaces, and why:

  - Command processing. Twisted pauses the control connection until each
    command's Deferred fires, and PASV's Deferred fires only when a client
    connects, so every command after PASV stalls (Twisted issue 4819; REST
    after PASV deadlocks); it also decodes commands as Latin-1 and calls
    the global reactor. Here commands run one at a time from a bounded
    queue; PASV answers at once; ABOR, STAT and QUIT are answered even
    while a transfer runs; commands are UTF-8 (RFC 2640) with undecodable
    bytes kept as they are (surrogate escapes), so any name on disk can be
    named.
  - Data connections (L{appnet.ftp.data}): bound to the client's own
    address in both directions, with a port range, an announced public
    address, IPv6 (EPSV/EPRT), TLS under C{PROT P}, and a timeout that ends
    in one C{425} reply without desynchronising the replies after it.
  - Every file command. Twisted's replies format Python lists into the text
    (C{550 ['a', 'b']: No such file}); here errors are the typed
    L{appnet.ftp.errors} mapped to RFC 959 codes with the virtual path as
    the client wrote it. Transfers stream through producers with bounded
    memory (L{appnet.ftp._files}), uploads become visible only when durable
    (L{appnet.ftp.shell}).
  - What Twisted lacks: C{REST} (both directions), C{APPE}, C{STOU},
    C{ABOR}, C{STAT}, C{MLSD}/C{MLST}, C{HELP}, C{ALLO}, C{ACCT}, C{REIN},
    C{OPTS UTF8}/C{OPTS MLST}, a C{FEAT} listing only what works, and FTPS
    (RFC 4217: C{AUTH TLS}, C{PBSZ}, C{PROT}) with the plaintext pipelined
    behind C{AUTH} discarded.

Logins go through the stack's L{GuardedPortal} (shared scrypt checker,
throttling). Passwords are accepted in the clear only from loopback clients;
everyone else must C{AUTH TLS} first (and with C{require_tls}, loopback too).
"""

from __future__ import annotations

import fnmatch
import inspect
import ipaddress
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
from attrs import define, field, frozen
from twisted.application.service import Service
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, ISSLTransport
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols.ftp import FTP, RESPONSE, FTPCmdError
from twisted.python.failure import Failure
from zope.interface import implementer

from appnet.address import isLoopback
from appnet.auth import LoginThrottled
from appnet.config import FTPConfig
from appnet.faults import NO_FAULTS, Faults
from appnet.ftp._files import (
    AsciiDecoder,
    AsciiEncoder,
    FileReceiver,
    FileThreads,
    InThread,
)
from appnet.ftp.data import (
    ActiveChannel,
    DataConnection,
    PassiveChannel,
    _Channel,
    noDelay,
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
from appnet.ftp.listing import FACTS, formatFacts, formatList, listable, mdtm
from appnet.ftp.paths import Segments, quote, render, resolve
from appnet.ftp.shell import Accounts, Entry, FTPRealm
from appnet.stack import Component, Listening, StackContext
from appnet.status import Status
from appnet.tls import LiveTLS
from appnet.trace import MaskRule

__all__ = ["FTPServer", "FTPServerFactory", "ServerSettings", "build"]

#: Commands allowed before login.
_PUBLIC = frozenset(
    "USER PASS ACCT QUIT REIN AUTH PBSZ PROT FEAT HELP NOOP OPTS SYST".split()
)
#: Commands answered at once, even while a transfer is running.
_URGENT = frozenset({"ABOR", "STAT", "QUIT"})
#: Commands that need an argument.
_NEEDS_ARG = frozenset(
    "USER CWD MKD RMD DELE RNFR RNTO RETR STOR APPE SIZE MDTM REST TYPE MODE"
    " STRU PORT EPRT AUTH PBSZ PROT OPTS".split()
)
#: Old spellings (RFC 775).
_ALIASES = {"XPWD": "PWD", "XCWD": "CWD", "XCUP": "CDUP", "XMKD": "MKD", "XRMD": "RMD"}
#: Known commands this server does not do.
_UNSUPPORTED = frozenset("SMNT CCC ADAT MIC CONF ENC SITE MFMT MFCT MFF LANG".split())
#: Lines queued before the control connection is paused.
_QUEUE_LIMIT = 32
_ANONYMOUS = ("anonymous", "ftp")

Handler = Callable[[str], "Awaitable[None] | None"]


@frozen
class ServerSettings:
    """
    Per-listener policy of the FTP server.

    @ivar passivePorts: the passive port range; C{(0, 0)} for any port.
    @ivar publicAddress: the IPv4 address PASV announces to non-loopback
        clients (behind NAT).
    @ivar requireTLS: refuse logins before AUTH TLS and transfers without
        PROT P even from loopback.
    @ivar maxPassivePerAccount: passive listeners one account may have
        open at once over all its sessions (a session has at most one: a
        new PASV or EPSV closes its previous one).
    """

    hostname: str = "localhost"
    idleTimeout: float = 900.0
    dataTimeout: float = 60.0
    passivePorts: tuple[int, int] = (0, 0)
    publicAddress: str | None = None
    requireTLS: bool = False
    anonymous: bool = False
    maxPassivePerAccount: int = 4

    @classmethod
    def fromConfig(cls, config: FTPConfig, hostname: str) -> ServerSettings:
        return cls(
            hostname=hostname,
            idleTimeout=config.idle_timeout,
            dataTimeout=config.data_timeout,
            passivePorts=config.passive_ports,
            publicAddress=config.public_address,
            requireTLS=config.require_tls,
            anonymous=config.anonymous,
            maxPassivePerAccount=config.max_passive_per_account,
        )


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


class FTPServer(FTP):
    """
    One FTP control connection (see the module docstring).
    """

    _log = Logger()
    delimiter = b"\n"
    MAX_LENGTH = 8192

    def __init__(self, factory: FTPServerFactory) -> None:
        self.factory = factory
        self.settings = factory.settings
        self._clock = factory.reactor
        self.callLater = self._clock.callLater  # type: ignore[method-assign]
        self.timeOut = self.settings.idleTimeout  # type: ignore[assignment]
        self._queue: deque[tuple[str, str]] = deque()
        self._busy = False
        self._transfer: Transfer | None = None
        self._channel: _Channel | None = None
        self._pendingUser: str | None = None
        self.shell: IFTPFilesystem | None = None  # type: ignore[assignment]
        self._logout: Callable[[], None] | None = None
        self.workingDirectory: Segments = ()
        self._rest = 0
        self._renameFrom: Segments | None = None
        self._tls = False
        self._pbsz = False
        self._protected = False
        self._facts: tuple[str, ...] = FACTS
        self._epsvAll = False
        self._peer = ""
        self._dataTLS: Any = None
        self.state = self.UNAUTH

    # -- connection --------------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        self._peer = normalHost(getattr(transport.getPeer(), "host", ""))
        # An ssl: endpoint (implicit FTPS) is TLS from the first byte; its
        # data connections use the same certificate.
        self._tls = ISSLTransport.providedBy(transport)
        self._dataTLS = self.factory.tlsOptions
        if self._tls and self._dataTLS is None:
            self._dataTLS = _ControlContext.of(transport)
        handle = getattr(transport, "getHandle", None)
        if handle is not None:
            try:
                # ABOR may be sent as TCP urgent data (Python's ftplib does);
                # keep that byte in the stream instead of losing it.
                handle().setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
            except (OSError, AttributeError):
                pass
        noDelay(transport)
        self.setTimeout(self.timeOut)
        self._log.info("FTP connection from {client}", client=self._peer)
        self.respond(220, f"{self.settings.hostname} appnet FTP server ready")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)
        self.disconnected = True
        self._queue.clear()
        if self._transfer is not None:
            self._transfer.abort()
        self._closeChannel()
        self._endLogin()
        self.transport = None

    def _endLogin(self) -> None:
        logout, self._logout = self._logout, None
        self.shell = None
        self.state = self.UNAUTH
        if logout is not None:
            logout()

    def timeoutConnection(self) -> None:
        if self._transfer is not None:
            return
        idle = int(self.settings.idleTimeout)
        self.respond(421, f"Idle for {idle} seconds; closing connection")
        if self.transport is not None:
            self.transport.loseConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        self.respond(500, "Command line too long; closing connection")
        if self.transport is not None:
            self.transport.loseConnection()

    # -- replies -----------------------------------------------------------

    def sendLine(self, line: str | bytes) -> None:
        if isinstance(line, str):
            line = line.replace("\r", " ").replace("\n", " ")
            line = line.encode("utf-8", "surrogateescape")
        if self.transport is not None:
            self.transport.write(line + b"\r\n")

    def respond(self, code: int, text: str) -> None:
        """Send a one-line reply."""
        self.sendLine(f"{code} {text}")

    def respondLines(
        self, code: int, first: str, lines: Sequence[str], last: str
    ) -> None:
        """
        Send a multi-line reply; the middle lines start with a space, so
        none can be mistaken for the last.
        """
        self.sendLine(f"{code}-{first}")
        for line in lines:
            self.sendLine(" " + line if not line.startswith(" ") else line)
        self.sendLine(f"{code} {last}")

    def _legacy(self, result: Any) -> None:
        """Send a reply in the form Twisted's FTP command methods return."""
        if isinstance(result, Deferred):

            def failed(f: Failure) -> None:
                if f.check(FTPCmdError):
                    self.sendLine(f.value.response())
                else:
                    self._log.failure("FTP command failed", f)
                    self.respond(451, "local error in processing")

            result.addCallbacks(self._legacy, failed)
            return
        if result is None:
            return
        if isinstance(result, tuple):
            key, args = result[0], tuple(result[1:])
        else:
            key, args = result, ()
        template: Any = RESPONSE[key]
        self.sendLine(template % args)

    # -- command dispatch --------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        self.resetTimeout()
        line = _telnet(line.rstrip(b"\r"))
        if not line.strip():
            return
        text = line.decode("utf-8", "surrogateescape")
        verb, _, arg = text.lstrip().partition(" ")
        verb = verb.upper()
        verb = _ALIASES.get(verb, verb)
        if verb in _URGENT and self._transfer is not None:
            self._track(self._execute(verb, arg))
            return
        self._queue.append((verb, arg))
        if len(self._queue) > _QUEUE_LIMIT and not self.paused:
            self.pauseProducing()
        self._pump()

    def _pump(self) -> None:
        while not self._busy and self._queue and not self.disconnected:
            verb, arg = self._queue.popleft()
            # Busy first: resuming delivers buffered lines at once, and they
            # must queue behind this command, not run beside it.
            self._busy = True
            if self.paused and len(self._queue) < _QUEUE_LIMIT // 2:
                self.resumeProducing()
            d = self._track(self._execute(verb, arg))
            if not d.called:
                d.addBoth(self._commandDone)
                return
            self._busy = False

    def _commandDone(self, _: object) -> None:
        self._busy = False
        self._pump()

    def _track(self, coroutine: Awaitable[None]) -> Deferred[None]:
        d: Deferred[None] = Deferred.fromCoroutine(coroutine)  # type: ignore[arg-type]

        def failed(f: Failure) -> None:
            self._log.failure("FTP command failed unexpectedly", f)
            self.respond(451, "local error in processing")

        return d.addErrback(failed)

    async def _execute(self, verb: str, arg: str) -> None:
        if verb != "RNTO":
            self._renameFrom = None
        handler: Handler | None = None
        if verb in COMMANDS:
            handler = getattr(self, "ftp_" + verb)
        if handler is None:
            if verb in _UNSUPPORTED:
                self.respond(502, f"{verb} is not implemented")
            else:
                self.respond(500, f"{showName(verb[:20])}: command not understood")
            return
        if self.shell is None and verb not in _PUBLIC:
            self.respond(530, "Please log in with USER and PASS")
            return
        if verb in _NEEDS_ARG and not arg:
            self.respond(501, f"{verb} needs an argument")
            return
        try:
            result = handler(arg)
            if inspect.isawaitable(result):
                await result
        except _Reply as r:
            self.respond(r.code, r.text)
        except FTPCommandError as e:
            self.respond(*e.reply())

    # -- paths ---------------------------------------------------------------

    def _path(self, arg: str) -> Segments:
        return resolve(self.workingDirectory, arg)

    @property
    def _shell(self) -> IFTPFilesystem:
        assert self.shell is not None
        return self.shell

    # -- login -------------------------------------------------------------

    def _tlsNeeded(self) -> bool:
        """Must this client use TLS before sending a password?"""
        if self._tls:
            return False
        return self.settings.requireTLS or not isLoopback(self._peer)

    def ftp_USER(self, arg: str = "") -> None:
        if self.shell is not None:
            raise _Reply(503, "Already logged in; use REIN to log in again")
        if arg.lower() in _ANONYMOUS and not self.settings.anonymous:
            # No account is called "anonymous" (accounts are addresses):
            # say that anonymous FTP is off instead of asking for a
            # password that can only fail and count as a failed login.
            raise _Reply(530, "Anonymous FTP is off on this server; log in as a user")
        anonymous = arg.lower() in _ANONYMOUS and self.settings.anonymous
        if not anonymous and self._tlsNeeded():
            if self.factory.tlsOptions is None:
                raise _Reply(530, "Logins need TLS, which this server does not offer")
            raise _Reply(530, "Log in over TLS: send AUTH TLS first")
        self._pendingUser = arg
        self.state = self.INAUTH
        if anonymous:
            self.respond(
                331, "Anonymous login ok; send your e-mail address as password"
            )
        else:
            self.respond(331, f"Password required for {showName(arg)}")

    async def ftp_PASS(self, arg: str = "") -> None:
        user, self._pendingUser = self._pendingUser, None
        if user is None:
            raise _Reply(503, "Send USER first")
        self.state = self.UNAUTH
        anonymous = user.lower() in _ANONYMOUS and self.settings.anonymous
        try:
            if anonymous:
                shell = await self.factory.realm.anonymous()
                logout = shell.logout
                greeting = (230, "Anonymous login ok; access is read-only")
            else:
                portal = self.factory.portalFor(self._peer)
                credentials = UsernamePassword(
                    user.encode("utf-8", "surrogateescape"),
                    arg.encode("utf-8", "surrogateescape"),
                )
                _, avatar, logout = await portal.login(
                    credentials, None, IFTPFilesystem
                )
                shell = avatar
                greeting = (230, f"User {shell.account} logged in")
        except LoginThrottled:
            raise _Reply(530, "Too many failed logins; try again later") from None
        except UnauthorizedLogin:
            raise _Reply(530, "Login incorrect") from None
        if self.disconnected:
            logout()
            return
        self.shell = shell
        self._logout = logout
        self.workingDirectory = ()
        self.state = self.AUTHED
        self._log.info(
            "FTP login {account} from {client}{tls}",
            account=shell.account,
            client=self._peer,
            tls=" (TLS)" if self._tls else "",
        )
        self.respond(*greeting)

    def ftp_ACCT(self, arg: str = "") -> None:
        self.respond(202, "ACCT not needed")

    def ftp_REIN(self, arg: str = "") -> None:
        if self._transfer is not None:
            self._transfer.abort()
        self._closeChannel()
        self._endLogin()
        self._pendingUser = None
        self._rest = 0
        self._renameFrom = None
        self.workingDirectory = ()
        self.binary = True
        self._facts = FACTS
        self._epsvAll = False
        self.respond(220, "Service ready for new user")

    def ftp_QUIT(self, arg: str = "") -> Awaitable[None] | None:
        if self._transfer is not None:
            return self._quitAfterAbort()
        self._quit()
        return None

    async def _quitAfterAbort(self) -> None:
        transfer = self._transfer
        if transfer is not None:
            transfer.abort()
            await transfer.waitDone()
        self._quit()

    def _quit(self) -> None:
        self.respond(221, "Goodbye")
        self.disconnected = True
        self._queue.clear()
        if self.transport is not None:
            self.transport.loseConnection()

    # -- TLS (RFC 4217) ------------------------------------------------------

    def ftp_AUTH(self, arg: str = "") -> None:
        mechanism = arg.strip().upper()
        if self.factory.tlsOptions is None:
            raise _Reply(502, "TLS is not configured on this server")
        if mechanism not in ("TLS", "TLS-C", "SSL", "TLS-P"):
            raise _Reply(504, f"Unknown security mechanism {showName(arg[:20])}")
        if self._tls:
            raise _Reply(503, "TLS is already on")
        if self.shell is not None:
            raise _Reply(503, "AUTH must come before login")
        # A fresh session: nothing from before the handshake carries over,
        # and nothing pipelined after AUTH in the clear is executed.
        self._closeChannel()
        self._pendingUser = None
        self._rest = 0
        self._renameFrom = None
        self._queue.clear()
        self.clearLineBuffer()
        self.respond(234, f"AUTH {mechanism} ok; start the TLS handshake")
        self.transport.startTLS(self.factory.tlsOptions)  # type: ignore[union-attr]
        self._tls = True

    def ftp_PBSZ(self, arg: str = "") -> None:
        if not self._tls:
            raise _Reply(503, "PBSZ needs AUTH TLS first")
        self._pbsz = True
        self.respond(200, "PBSZ=0")

    def ftp_PROT(self, arg: str = "") -> None:
        level = arg.strip().upper()
        if not self._tls or not self._pbsz:
            raise _Reply(503, "PROT needs AUTH TLS and PBSZ first")
        if level == "P":
            self._protected = True
            self.respond(200, "Protection level set to Private")
        elif level == "C":
            if self.settings.requireTLS:
                raise _Reply(534, "Data connections must be encrypted (PROT P)")
            self._protected = False
            self.respond(200, "Protection level set to Clear")
        elif level in ("S", "E"):
            raise _Reply(536, "Protection level not supported; use C or P")
        else:
            raise _Reply(504, "Unknown protection level")

    # -- simple commands -----------------------------------------------------

    def ftp_SYST(self, arg: str = "") -> None:
        self._legacy(FTP.ftp_SYST(self))

    def ftp_NOOP(self, arg: str = "") -> None:
        self._legacy(FTP.ftp_NOOP(self))

    # TYPE, STRU and MODE are decided by Twisted, whose error replies quote
    # the argument: control characters become "?" first (as everywhere a
    # client's text is echoed), so a reply stays one printable line.

    def ftp_TYPE(self, arg: str = "") -> None:
        code = showName(arg.replace(" ", "").upper())
        if not code:
            # Twisted answers an empty type with a reply template it gives
            # no text for (a TypeError out of the command).
            raise _Reply(501, "Syntax: TYPE A, I or L 8")
        if code == "L8":
            self.binary = True
            self.respond(200, "Type set to L 8")
            return
        self._legacy(FTP.ftp_TYPE(self, code))

    def ftp_STRU(self, arg: str = "") -> None:
        self._legacy(FTP.ftp_STRU(self, showName(arg.strip())))

    def ftp_MODE(self, arg: str = "") -> None:
        self._legacy(FTP.ftp_MODE(self, showName(arg.strip())))

    def ftp_ALLO(self, arg: str = "") -> None:
        self.respond(202, "ALLO not needed")

    def ftp_FEAT(self, arg: str = "") -> None:
        features = []
        if self._dataTLS is not None:
            features += ["AUTH TLS", "PBSZ", "PROT"]
        features += [
            "EPRT",
            "EPSV",
            "MDTM",
            "MLST " + "".join(f"{f}{'*' if f in self._facts else ''};" for f in FACTS),
            "REST STREAM",
            "SIZE",
            "TVFS",
            "UTF8",
        ]
        self.respondLines(211, "Features:", features, "End")

    def ftp_OPTS(self, arg: str = "") -> None:
        name, _, value = arg.strip().partition(" ")
        name = name.upper()
        if name == "UTF8":
            if value.strip().upper() in ("", "ON"):
                self.respond(200, "UTF8 set to on")
                return
            raise _Reply(504, "UTF8 is always on")
        if name == "MLST":
            chosen = [f.lower() for f in value.split(";") if f]
            self._facts = tuple(f for f in FACTS if f in chosen)
            self.respond(200, "MLST OPTS " + "".join(f"{f};" for f in self._facts))
            return
        raise _Reply(501, f"Option {showName(name[:20])} not understood")

    def ftp_HELP(self, arg: str = "") -> None:
        commands = sorted(COMMANDS)
        if arg:
            verb = arg.strip().upper()
            if verb in commands or verb in _ALIASES:
                self.respond(214, f"{verb} is supported")
            else:
                self.respond(502, f"{showName(verb[:20])} is not supported")
            return
        rows = [
            " ".join(f"{c:<5}" for c in commands[i : i + 8])
            for i in range(0, len(commands), 8)
        ]
        self.respondLines(
            214, "The following commands are recognized:", rows, "Help OK"
        )

    def ftp_STAT(self, arg: str = "") -> Awaitable[None] | None:
        if arg:
            if self._transfer is not None:
                raise _Reply(450, "A transfer is in progress; try again after it")
            if self.shell is None:
                raise _Reply(530, "Please log in with USER and PASS")
            return self._statPath(arg)
        lines = [f"Connected from {self._peer}"]
        if self.shell is not None:
            lines.append(f"Logged in as {self.shell.account}")
        else:
            lines.append("Not logged in")
        lines.append(
            f"TYPE: {'BINARY' if self.binary else 'ASCII'}, STRU: File, MODE: Stream"
        )
        lines.append(
            "Control connection: "
            + ("TLS" if self._tls else "plain")
            + "; data connections: "
            + ("private (PROT P)" if self._protected else "clear")
        )
        transfer = self._transfer
        if transfer is not None:
            lines.append(
                f"{transfer.command} {showName(transfer.path)}:"
                f" {transfer.bytes} bytes transferred"
            )
        else:
            lines.append("No transfer in progress")
        self.respondLines(211, "FTP server status:", lines, "End of status")
        return None

    async def _statPath(self, arg: str) -> None:
        _, path = _listArguments(arg)
        segments = self._path(path)
        entries = await self._shell.entries(segments)
        now = self._clock.seconds()
        # On the control connection, unlike a listing on a data
        # connection, names are shown with control characters replaced.
        lines = [showName(formatList(e, now)) for e in entries if listable(e.name)]
        info = await self._shell.info(segments)
        code = 212 if info.kind == "dir" else 213
        self.respondLines(
            code, f"Status of {showName(render(segments))}:", lines, "End of status"
        )

    # -- directories -----------------------------------------------------------

    def ftp_PWD(self, arg: str = "") -> None:
        where = quote(showName(render(self.workingDirectory)))
        self.respond(257, f"{where} is the current directory")

    async def ftp_CWD(self, arg: str = "") -> None:
        segments = self._path(arg)
        await self._shell.access(segments)
        self.workingDirectory = segments
        self.respond(250, f"Directory changed to {showName(render(segments))}")

    async def ftp_CDUP(self, arg: str = "") -> None:
        await self.ftp_CWD("..")

    async def ftp_MKD(self, arg: str = "") -> None:
        segments = self._path(arg)
        await self._shell.makeDirectory(segments)
        self.respond(257, f"{quote(showName(render(segments)))} created")

    async def ftp_RMD(self, arg: str = "") -> None:
        segments = self._path(arg)
        await self._shell.removeDirectory(segments)
        self.respond(250, f"Directory {showName(render(segments))} removed")

    async def ftp_DELE(self, arg: str = "") -> None:
        segments = self._path(arg)
        await self._shell.removeFile(segments)
        self.respond(250, f"{showName(render(segments))} deleted")

    async def ftp_RNFR(self, arg: str = "") -> None:
        segments = self._path(arg)
        await self._shell.movable(segments)
        self._renameFrom = segments
        self.respond(350, "Ready for RNTO")

    async def ftp_RNTO(self, arg: str = "") -> None:
        source, self._renameFrom = self._renameFrom, None
        if source is None:
            raise _Reply(503, "Send RNFR first")
        dest = self._path(arg)
        await self._shell.rename(source, dest)
        self.respond(250, f"Renamed to {showName(render(dest))}")

    async def ftp_SIZE(self, arg: str = "") -> None:
        segments = self._path(arg)
        if not self.binary:
            raise _Reply(550, "SIZE is not answered in ASCII mode; use TYPE I")
        entry = await self._shell.info(segments)
        if entry.kind != "file":
            raise _Reply(550, f"{showName(render(segments))}: not a regular file")
        self.respond(213, str(entry.size))

    async def ftp_MDTM(self, arg: str = "") -> None:
        segments = self._path(arg)
        entry = await self._shell.info(segments)
        self.respond(213, mdtm(entry.modified))

    async def ftp_MLST(self, arg: str = "") -> None:
        segments = self._path(arg)
        entry = await self._shell.info(segments)
        line = formatFacts(entry, self._shell.readOnly, self._facts, render(segments))
        line = showName(line)
        self.respondLines(
            250, f"Listing {showName(render(segments))}", [" " + line], "End"
        )

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
            self._clock,
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
            self._clock,
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
            await deferLater(self._clock, 0, lambda: None)
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
                self._clock,
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


def _telnet(line: bytes) -> bytes:
    """
    Remove Telnet commands (IAC IP, IAC DM... that clients send before
    ABOR); C{IAC IAC} stands for one 0xFF byte.
    """
    if b"\xff" not in line:
        return line
    out = bytearray()
    i = 0
    while i < len(line):
        byte = line[i]
        if byte == 0xFF and i + 1 < len(line):
            following = line[i + 1]
            if following == 0xFF:
                out.append(0xFF)
            i += 2
            continue
        if byte == 0xFF:
            i += 1
            continue
        out.append(byte)
        i += 1
    return bytes(out)


#: The commands this server answers: its own C{ftp_} methods, never one of
#: Twisted's that this class did not review.
COMMANDS = frozenset(name[4:] for name in vars(FTPServer) if name.startswith("ftp_"))


class FTPServerFactory(LiveTLS, ServerFactory):
    """
    Makes L{FTPServer} protocols sharing one listener's policy.

    Twisted's C{FTPFactory} is not reused: it applies its own connection
    limit by wrapping every protocol (the stack's L{GuardedFactory} does
    that per address), and gives every connection the same portal, where
    here each gets one that knows the client's address.

    @ivar portalFor: makes the portal for one client address.
    @ivar tlsOptions: the TLS context factory for AUTH TLS and C{PROT P}
        data connections, or C{None} without TLS.
    """

    #: The command that upgrades a session to TLS (start-up lines name it).
    tlsUpgrade = "AUTH TLS"

    protocol = FTPServer
    #: Scripted faults (set by the stack).
    faults: Faults = NO_FAULTS

    def __init__(
        self,
        settings: ServerSettings,
        realm: FTPRealm,
        portalFor: Callable[[str], Any],
        reactor: Any,
        status: Status | None = None,
        tlsOptions: Any = None,
    ) -> None:
        self.settings = settings
        self.realm = realm
        self.portalFor = portalFor
        self.reactor = reactor
        self.status = status
        self.tlsOptions = tlsOptions
        self._passive: dict[str, set[PassiveChannel]] = {}

    def buildProtocol(self, addr: Any) -> FTPServer:
        return FTPServer(self)

    def passiveOpen(self, account: str) -> int:
        """How many passive listeners C{account}'s sessions have open."""
        channels = self._passive.get(account)
        if not channels:
            return 0
        channels.difference_update([c for c in channels if not c.listening])
        if not channels:
            del self._passive[account]
        return len(channels)

    def passiveOpened(self, account: str, channel: PassiveChannel) -> None:
        """Count C{channel} against C{account} while it listens."""
        self._passive.setdefault(account, set()).add(channel)

    def counted(self, command: str, amount: int) -> None:
        """Count one transfer in the stack's counters."""
        if self.status is None:
            return
        self.status.increment("ftp", "transfers")
        direction = "data_in" if command in ("STOR", "APPE", "STOU") else "data_out"
        self.status.increment("ftp", direction, amount)


class _StagingSweep(Service):
    """
    At start-up, removes upload temporaries a crash left in the staging
    directory (none of them was ever visible).
    """

    _log = Logger()

    def __init__(self, run: InThread, staging: str) -> None:
        self._run = run
        self._staging = staging
        self.swept: Deferred[int] | None = None

    def startService(self) -> None:
        super().startService()

        def swept(count: int) -> int:
            if count:
                self._log.info(
                    "Removed {count} unfinished uploads left by an earlier run",
                    count=count,
                )
            return count

        def failed(failure: Failure) -> int:
            self._log.failure("Sweeping FTP uploads failed", failure)
            return 0

        self.swept = self._run(_sweep, self._staging)
        self.swept.addCallbacks(swept, failed)


def _sweep(staging: str) -> int:
    removed = 0
    try:
        names = os.listdir(staging)
    except FileNotFoundError:
        return 0
    for name in names:
        if name.startswith(".appnet-upload-"):
            try:
                os.unlink(os.path.join(staging, name))
                removed += 1
            except OSError:
                pass
    return removed


def build(ctx: StackContext) -> Component:
    """
    The FTP component: the server behind C{config.ftp.listen}, its file
    threads, and a sweep of stale upload temporaries at start.
    """
    config = ctx.config.ftp
    threads = FileThreads(ctx.reactor)
    homes = ctx.dataDir.ftp.path
    staging = os.path.join(homes, ".partial")
    anonymousRoot = None
    if config.anonymous:
        anonymousRoot = config.anonymous_root or os.path.join(homes, "anonymous")
    accounts = Accounts(threads.run, ctx.reactor, config.rate_limit)
    realm = FTPRealm(
        homes=homes,
        staging=staging,
        users=ctx.store.users,
        run=threads.run,
        clock=ctx.reactor,
        accounts=accounts,
        defaultQuota=config.quota,
        maxUpload=config.max_upload,
        anonymousRoot=anonymousRoot,
    )
    factory = FTPServerFactory(
        ServerSettings.fromConfig(config, ctx.config.hostname),
        realm,
        lambda host: ctx.auth.portalFor(realm, host),
        ctx.reactor,
        ctx.status,
        ctx.tlsKeeper,
    )
    factory.faults = ctx.faults
    return Component(
        listening=[
            Listening(
                "ftp",
                factory,
                refusal=b"421 Too many connections from your address; try later\r\n",
                mask=MaskRule(secretCommands={b"PASS": 0}),
            )
        ],
        services=[threads, _StagingSweep(threads.run, staging)],
    )
