"""
The FTP server: Twisted's protocol interpreter, extended where it is
missing something and replaced where it is wrong.
"""

from __future__ import annotations

import inspect
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from attrs import frozen
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols.ftp import FTP, RESPONSE, FTPCmdError
from twisted.python.failure import Failure

from appnet.address import isLoopback
from appnet.auth import LoginThrottled
from appnet.config import FTPConfig
from appnet.faults import NO_FAULTS, Faults
from appnet.ftp._files import FileThreads
from appnet.ftp.data import PassiveChannel, _Channel, noDelay, normalHost
from appnet.ftp.errors import FTPCommandError, showName
from appnet.ftp.interfaces import IFTPFilesystem
from appnet.ftp.listing import FACTS, formatFacts, formatList, listable, mdtm
from appnet.ftp.paths import Segments, quote, render, resolve
from appnet.ftp.shell import Accounts, FTPRealm
from appnet.ftp.staging import StagingSweep
from appnet.ftp.transfers import (
    DataTransfers,
    Transfer,
    _ControlContext,
    _listArguments,
    _Reply,
)
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


class FTPServer(DataTransfers):
    """
    One FTP control connection (see the module docstring).
    """

    _log = Logger()
    delimiter = b"\n"
    MAX_LENGTH = 8192

    def __init__(self, factory: FTPServerFactory) -> None:
        self.factory = factory
        self.settings = factory.settings
        self._reactor = factory.reactor
        self._clock = factory.clock
        self.callLater = self._clock.callLater  # type: ignore[method-assign]
        self.timeOut = self.settings.idleTimeout  # type: ignore[assignment]
        self._queue: deque[tuple[str, str]] = deque()
        self._busy = False
        self._transfer: Transfer | None = None
        self._channel: _Channel | None = None
        self._pendingUser: str | None = None
        self.shell: IFTPFilesystem | None = None
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
COMMANDS = frozenset(
    name[4:]
    for cls in (DataTransfers, FTPServer)
    for name in vars(cls)
    if name.startswith("ftp_")
)


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
        clock: Any = None,
    ) -> None:
        self.settings = settings
        self.realm = realm
        self.portalFor = portalFor
        self.reactor = reactor
        #: What runs the sessions' timeouts: the reactor, or a test's clock.
        self.clock = reactor if clock is None else clock
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


#: The name the sweep had here (tests import it).
_StagingSweep = StagingSweep


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
        clock=ctx.clock,
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
        services=[threads, StagingSweep(threads.run, staging)],
    )
