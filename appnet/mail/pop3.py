"""
The POP3 server (RFC 1939) over the mail store, with CAPA (RFC 2449),
STLS (RFC 2595), AUTH PLAIN and LOGIN (RFC 5034) and response codes
(RFC 2449, 3206: C{[IN-USE]}, C{[AUTH]}, C{[SYS/TEMP]}).

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import itertools
import os
import secrets
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, BinaryIO

from twisted.cred.credentials import ICredentials, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import ISSLTransport, ITLSTransport
from twisted.internet.protocol import ServerFactory
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.mail.interfaces import IMailboxPOP3
from twisted.mail.pop3 import POP3, APOPCredentials
from twisted.python.failure import Failure
from zope.interface import implementer

from appnet.address import isLoopback
from appnet.auth import Authenticator, LoginThrottled
from appnet.errors import AppnetError, NoSuchMessage
from appnet.faults import NO_FAULTS, Faults
from appnet.files import InThread, SendingStopped, ThreadedFileSender
from appnet.listen import hostOf
from appnet.mail.lines import DotStuffer, LineQueue, noDelay
from appnet.mail.realm import AvatarFactory, MailRealm
from appnet.mail.sasl import (
    MECHANISMS,
    SASLCancelled,
    SASLDialogue,
    SASLError,
)
from appnet.status import Status
from appnet.store.interfaces import INBOX, FolderInfo, IMailStore, MessageInfo
from appnet.tls import LiveTLS
from appnet.trace import MaskRule

__all__ = [
    "Maildrop",
    "MaildropInUse",
    "POP3Server",
    "POP3ServerFactory",
    "POP3_MASK",
    "maildropFactory",
]

#: What C{--trace pop3} must not log: PASS, APOP's digest, AUTH's initial
#: response and the responses after a C{+} challenge.
POP3_MASK = MaskRule(
    secretCommands={b"PASS": 0, b"APOP": 1, b"AUTH": 1},
    challenges=(b"+ ",),
)

#: The store lock every POP3 session takes on its maildrop.
LOCK_NAME = "pop3"

_log = Logger()

#: Serial numbers for APOP timestamps: one per connection in this process.
_serials = itertools.count(1)


class MaildropInUse(AppnetError):
    """
    Another session holds this maildrop (RFC 3206 C{[IN-USE]}).
    """


@implementer(IMailboxPOP3)
class Maildrop:
    """
    One POP3 session's view of an account's INBOX: the messages present at
    login, numbered from 1 (0-based here, as Twisted's interface has it),
    with deletions kept in the session until L{sync}.
    """

    loginDelay = 0
    messageExpiration = None

    def __init__(
        self,
        store: IMailStore,
        owner: str,
        folder: FolderInfo,
        messages: list[MessageInfo],
        logout: Callable[[], None],
    ) -> None:
        self.store = store
        self.owner = owner
        self.folder = folder
        self.messages = messages
        self.deleted: set[int] = set()
        self.retrieved: set[int] = set()
        self.logout = logout

    def _check(self, i: int) -> MessageInfo:
        if not 0 <= i < len(self.messages) or i in self.deleted:
            raise ValueError(f"no message {i + 1}")
        return self.messages[i]

    def present(self) -> list[int]:
        """Indexes of the messages not marked deleted."""
        return [i for i in range(len(self.messages)) if i not in self.deleted]

    def listMessages(self, i: int | None = None) -> Any:
        if i is None:
            return [
                0 if n in self.deleted else m.size for n, m in enumerate(self.messages)
            ]
        return self._check(i).size

    def getMessage(self, i: int) -> Deferred[BinaryIO]:
        uid = self._check(i).uid

        async def open() -> BinaryIO:
            body = await self.store.openMessage(self.owner, INBOX, uid)
            return body.open()

        return Deferred.fromCoroutine(open())

    def getUidl(self, i: int) -> bytes:
        """
        C{UIDVALIDITY.UID}: stable across sessions, so clients that leave
        mail on the server recognise what they already have.
        """
        message = self._check(i)
        return b"%d.%d" % (self.folder.uidValidity, message.uid)

    def deleteMessage(self, i: int) -> None:
        self._check(i)
        self.deleted.add(i)

    def undeleteMessages(self) -> None:
        self.deleted.clear()

    def sync(self) -> Deferred[int]:
        """
        The UPDATE state: mark retrieved messages seen, remove deleted ones.

        @return: how many were removed.
        """

        async def run() -> int:
            seen = [self.messages[i].uid for i in self.retrieved - self.deleted]
            if seen:
                await self.store.setFlags(
                    self.owner, INBOX, seen, frozenset({"\\Seen"}), "add"
                )
            if not self.deleted:
                return 0
            uids = [self.messages[i].uid for i in sorted(self.deleted)]
            removed = await self.store.expunge(self.owner, INBOX, uids)
            return len(removed)

        return Deferred.fromCoroutine(run())


def maildropFactory(store: IMailStore, clock: Any, ttl: float) -> AvatarFactory:
    """
    How the realm makes a L{Maildrop}: take the account's POP3 lock (held
    for C{ttl} seconds, refreshed every C{ttl / 3} while the session
    lives), then read the INBOX listing.

    @raise MaildropInUse: if another session holds the lock.
    """

    async def make(owner: str, mind: Any) -> tuple[object, Callable[[], None]]:
        holder = str(mind) if mind else uuid.uuid4().hex
        if not await store.lock(owner, LOCK_NAME, holder, ttl):
            raise MaildropInUse(owner)
        timer: list[Any] = []

        def refresh() -> None:
            maybeDeferred(store.refreshLock, owner, LOCK_NAME, holder, ttl).addErrback(
                lambda f: _log.failure(
                    "Refreshing the POP3 lock of {owner}", f, owner=owner
                )
            )
            timer[:] = [clock.callLater(ttl / 3, refresh)]

        def logout() -> None:
            for call in timer:
                if call.active():
                    call.cancel()
            timer.clear()
            # If this fails (the store is closing), the lock expires.
            maybeDeferred(store.unlock, owner, LOCK_NAME, holder).addErrback(
                lambda f: _log.failure(
                    "Releasing the POP3 lock of {owner}", f, owner=owner
                )
            )

        try:
            folder = await store.folder(owner, INBOX)
            messages = list(await store.listMessages(owner, INBOX))
        except BaseException:
            logout()
            raise
        timer.append(clock.callLater(ttl / 3, refresh))
        return Maildrop(store, owner, folder, messages, logout), logout

    return make


def _isDigest(text: str) -> bool:
    """
    Is C{text} an APOP digest: 32 hex digits (RFC 1939 asks lower case;
    upper case is taken too)?
    """
    return len(text) == 32 and all(c in "0123456789abcdefABCDEF" for c in text)


def _isNumber(text: str) -> bool:
    """
    Is C{text} a decimal argument? ASCII digits only (C{str.isdigit} also
    takes C{"\u00b2"}, which C{int} refuses) and at most 40 characters,
    the longest argument RFC 1939 allows (C{int} refuses thousands of
    digits).
    """
    return text.isascii() and text.isdigit() and len(text) <= 40


#: Bytes of a message read (in a thread) at a time for RETR and TOP.
READ_CHUNK = 64 * 1024


class _Top:
    """
    A file-like view of a message's header section and its first C{lines}
    body lines (for TOP).
    """

    def __init__(self, file: BinaryIO, lines: int) -> None:
        self._file = file
        self._lines = lines
        self._inHeaders = True
        self._done = False

    def read(self, size: int) -> bytes:
        out: list[bytes] = []
        total = 0
        while not self._done and total < size:
            line = self._file.readline(1 << 16)
            if not line:
                self._done = True
                break
            if self._inHeaders:
                if line in (b"\r\n", b"\n"):
                    self._inHeaders = False
                    if self._lines == 0:
                        self._done = True
            else:
                self._lines -= 1
                if self._lines <= 0:
                    self._done = True
            out.append(line)
            total += len(line)
        return b"".join(out)

    def close(self) -> None:
        self._file.close()


class POP3Server(LineQueue, SASLDialogue, POP3):
    """
    One POP3 session.
    """

    factory: POP3ServerFactory  # type: ignore[assignment]
    mbox: Any
    maxLineLength = 4096
    _log = Logger()

    # Commands allowed in each RFC 1939 state.
    _AUTHORIZATION = {"CAPA", "USER", "PASS", "APOP", "AUTH", "STLS", "QUIT"}
    _TRANSACTION = {
        "CAPA", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "NOOP", "RSET", "QUIT",
    }  # fmt: skip

    def __init__(self, factory: POP3ServerFactory) -> None:
        self.factory = factory
        self.timeOut = int(factory.idleTimeout)
        self.callLater = factory.clock.callLater  # type: ignore[method-assign]
        self.magic = b""
        self._client = "unknown"
        self._tls = False
        self._holder = uuid.uuid4().hex
        self._closed = False
        # Our own state, not Twisted's private _userIs and _onLogout.
        self._user: bytes | None = None
        self._logout: Callable[[], None] | None = None

    @property
    def maildrop(self) -> Maildrop | None:
        mbox = self.mbox
        return mbox if isinstance(mbox, Maildrop) else None

    # Connection.

    def connectionMade(self) -> None:
        self._client = hostOf(self.transport.getPeer())
        noDelay(self.transport)
        self._tls = ISSLTransport.providedBy(self.transport)
        self.state = "COMMAND"
        greeting = f"{self.factory.hostname} POP3 server ready"
        if self.factory.apop:
            self.magic = self.generateMagic()
            greeting += " " + self.magic.decode("ascii")
        self.successResponse(greeting)
        self.setTimeout(self.timeOut)
        self._log.info("pop3 connection from {client}", client=self._client)

    def connectionLost(self, reason: Failure | None = None) -> None:
        # A dropped connection deletes nothing: no sync, only logout.
        self._closed = True
        logout, self._logout = self._logout, None
        if logout is not None:
            logout()
        POP3.connectionLost(self, reason)

    def generateMagic(self) -> bytes:
        """
        The APOP timestamp of this connection (RFC 1939 section 7), in
        message-id form: the process, a serial number and 64 random bits,
        at the configured host name.
        """
        return (
            f"<{os.getpid()}.{next(_serials)}"
            f".{secrets.token_hex(8)}@{self.factory.hostname}>"
        ).encode("ascii")

    def timeoutConnection(self) -> None:
        self.failResponse(b"[SYS/TEMP] Idle timeout, closing")
        self.transport.loseConnection()

    def lineTooLong(self) -> None:
        if self.state == "AUTH":
            self.state = "COMMAND"
            self.abortSASL()
        self.failResponse(b"Line too long")

    @property
    def _plaintextAllowed(self) -> bool:
        return self._tls or isLoopback(self._client)

    @property
    def _canSTLS(self) -> bool:
        return (
            self.factory.tlsOptions is not None
            and not self._tls
            and ITLSTransport.providedBy(self.transport)
        )

    def _async(self, work: Coroutine[Any, Any, None], what: str) -> None:
        self.hold()
        d = Deferred.fromCoroutine(work)

        def failed(failure: Failure) -> None:
            self._log.failure("POP3 {what} failed", failure, what=what)
            if not self._closed:
                self.failResponse(b"[SYS/TEMP] Internal error, try again later")

        d.addErrback(failed)
        d.addBoth(lambda _: self.release())

    # Dispatch.

    def state_COMMAND(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self.failResponse(b"Command is not UTF-8")
            return
        verb, _, rest = text.lstrip(" ").partition(" ")
        verb = verb.upper()
        if verb != "PASS":
            # A password is the exact bytes given, trailing spaces included;
            # every other argument may carry stray spaces.
            rest = rest.strip(" ")
        allowed = self._TRANSACTION if self.mbox else self._AUTHORIZATION
        handler = getattr(self, "pop3_" + verb, None)
        if handler is None:
            self.failResponse(b"Unknown command")
            return
        if verb not in allowed:
            state = "after login" if self.mbox else "before login"
            self.failResponse(f"{verb} not allowed {state}")
            return
        fault = self.factory.faults.take(
            "pop3", "command", verb, transport=self.transport
        )
        if fault is not None:
            if fault.action == "drop":
                self.transport.loseConnection()
            else:
                self.failResponse(fault.text or "[SYS/TEMP] Try again later")
            return
        handler(rest)

    def _number(self, text: str) -> int | None:
        """
        A message number argument as a 0-based index of a present message,
        or C{None} after answering -ERR.
        """
        drop = self.maildrop
        assert drop is not None
        if not _isNumber(text):
            self.failResponse(b"Syntax: a message number is required")
            return None
        index = int(text) - 1
        if not 0 <= index < len(drop.messages):
            self.failResponse(f"No such message {text}")
            return None
        if index in drop.deleted:
            self.failResponse(f"Message {text} is deleted")
            return None
        return index

    # AUTHORIZATION.

    def pop3_CAPA(self, rest: str) -> None:
        caps = ["TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"]
        if self._plaintextAllowed and not self.mbox:
            caps += ["USER", "SASL " + b" ".join(MECHANISMS).decode()]
        if self._canSTLS and not self.mbox:
            caps.append("STLS")
        caps += ["EXPIRE NEVER", "IMPLEMENTATION appnet"]
        self.successResponse("Capability list follows")
        for cap in caps:
            self.sendLine(cap.encode())
        self.sendLine(b".")

    def pop3_STLS(self, rest: str) -> None:
        if self._tls:
            self.failResponse(b"Already using TLS")
            return
        if not self._canSTLS:
            self.failResponse(b"STLS not available")
            return
        if rest:
            self.failResponse(b"Syntax: STLS")
            return
        self.successResponse("Begin TLS negotiation")
        # Same rule as SMTP's STARTTLS: nothing pipelined in plaintext after
        # STLS may run inside the TLS session; forget the USER given.
        self.discardInput()
        self._user = None
        self._tls = True
        self.transport.startTLS(self.factory.tlsOptions)

    def pop3_USER(self, rest: str) -> None:
        if not self._plaintextAllowed:
            self.failResponse(b"[AUTH] Plain-text login needs TLS: use STLS first")
            return
        if not rest:
            self.failResponse(b"Syntax: USER name")
            return
        self._user = rest.encode()
        self.successResponse("Send PASS")

    def pop3_PASS(self, rest: str) -> None:
        if self._user is None:
            self.failResponse(b"USER first")
            return
        user, self._user = self._user, None
        self._async(self._login(UsernamePassword(user, rest.encode())), "login")

    def pop3_APOP(self, rest: str) -> None:
        """
        C{APOP name digest}: log in with the account's APOP secret. Allowed
        without TLS (the secret itself is never sent), only when the
        factory offers APOP.
        """
        if not self.factory.apop:
            self.failResponse(
                b"[AUTH] APOP is off on this server;"
                b" use STLS then USER/PASS or AUTH PLAIN"
            )
            return
        name, _, digest = rest.strip(" ").rpartition(" ")
        name = name.strip(" ")
        if not name or not _isDigest(digest):
            self.failResponse(b"Syntax: APOP name digest")
            return
        self._user = None
        credentials = APOPCredentials(
            self.magic, name.encode(), digest.lower().encode("ascii")
        )
        self._async(self._login(credentials), "login")

    def pop3_AUTH(self, rest: str) -> None:
        if not rest:
            self.successResponse("Mechanisms follow")
            if self._plaintextAllowed:
                for mechanism in MECHANISMS:
                    self.sendLine(mechanism)
            self.sendLine(b".")
            return
        if not self._plaintextAllowed:
            self.failResponse(b"[AUTH] Authentication needs TLS: use STLS first")
            return
        name, _, initial = rest.partition(" ")
        mechanism = name.upper().encode()
        if mechanism not in MECHANISMS:
            self.failResponse(b"Unsupported SASL mechanism")
            return
        self.state = "AUTH"
        self.beginSASL(mechanism, initial.encode())

    def state_AUTH(self, line: bytes) -> None:
        self.continueSASL(line)

    def saslPrompt(self, prompt: bytes) -> None:
        self.sendLine(b"+ " + prompt)

    def saslRefused(self, error: SASLCancelled | SASLError) -> None:
        self.state = "COMMAND"
        if isinstance(error, SASLCancelled):
            self.failResponse(b"Authentication cancelled")
        else:
            self.failResponse(f"[AUTH] {error}")

    def saslComplete(self, user: bytes, password: bytes) -> None:
        self.state = "COMMAND"
        self._async(self._login(UsernamePassword(user, password)), "login")

    async def _login(self, credentials: ICredentials) -> None:
        """
        Log in (USER/PASS, AUTH or APOP) through the throttled portal and
        take the maildrop, or answer why not.
        """
        portal = self.factory.auth.portalFor(self.factory.realm, self._client)
        try:
            _, avatar, logout = await portal.login(
                credentials, self._holder, IMailboxPOP3
            )
        except LoginThrottled:
            self.failResponse(b"[SYS/TEMP] Too many failed logins; try again later")
            return
        except UnauthorizedLogin:
            self.failResponse(b"[AUTH] Authentication failed")
            return
        except MaildropInUse:
            self.failResponse(b"[IN-USE] Mailbox is in use by another session")
            return
        if self._closed:
            logout()
            return
        assert isinstance(avatar, Maildrop)
        self.mbox = avatar
        self._logout = logout
        count, size = self._stat()
        self._log.info(
            "pop3: {client} logged in as {account} ({count} messages)",
            client=self._client,
            account=avatar.owner,
            count=count,
        )
        self.successResponse(f"Logged in, {count} messages ({size} octets)")

    # TRANSACTION.

    def _stat(self) -> tuple[int, int]:
        drop = self.maildrop
        assert drop is not None
        present = drop.present()
        return len(present), sum(drop.messages[i].size for i in present)

    def pop3_STAT(self, rest: str) -> None:
        count, size = self._stat()
        self.successResponse(f"{count} {size}")

    def pop3_LIST(self, rest: str) -> None:
        drop = self.maildrop
        assert drop is not None
        if rest:
            index = self._number(rest)
            if index is not None:
                self.successResponse(f"{index + 1} {drop.messages[index].size}")
            return
        count, size = self._stat()
        lines = [f"+OK {count} messages ({size} octets)\r\n".encode()]
        lines += [b"%d %d\r\n" % (i + 1, drop.messages[i].size) for i in drop.present()]
        lines.append(b".\r\n")
        self.transport.write(b"".join(lines))

    def pop3_UIDL(self, rest: str) -> None:
        drop = self.maildrop
        assert drop is not None
        if rest:
            index = self._number(rest)
            if index is not None:
                self.successResponse(b"%d %s" % (index + 1, drop.getUidl(index)))
            return
        lines = [b"+OK\r\n"]
        lines += [b"%d %s\r\n" % (i + 1, drop.getUidl(i)) for i in drop.present()]
        lines.append(b".\r\n")
        self.transport.write(b"".join(lines))

    def pop3_RETR(self, rest: str) -> None:
        index = self._number(rest.strip())
        if index is not None:
            self._async(self._send(index, None), "RETR")

    def pop3_TOP(self, rest: str) -> None:
        number, _, count = rest.strip().partition(" ")
        count = count.strip()
        if not _isNumber(count):
            self.failResponse(b"Syntax: TOP message lines")
            return
        index = self._number(number)
        if index is not None:
            self._async(self._send(index, int(count)), "TOP")

    async def _send(self, index: int, lines: int | None) -> None:
        drop = self.maildrop
        assert drop is not None
        try:
            file = await drop.getMessage(index)
        except NoSuchMessage:
            self.failResponse(f"Message {index + 1} was removed by another session")
            return
        source: Any = file if lines is None else _Top(file, lines)
        sender: ThreadedFileSender | None = None
        try:
            if lines is None:
                self.successResponse(f"{drop.messages[index].size} octets")
            else:
                self.successResponse("Top of message follows")
            sender = ThreadedFileSender(
                self.factory.blocking,
                source.read,
                self.transport,
                chunkSize=READ_CHUNK,
                transform=DotStuffer(),
            )
            try:
                await sender.start()
            except SendingStopped:
                self._log.info(
                    "pop3: {client} disconnected during a download",
                    client=self._client,
                )
                return
            except Exception:
                # Logged by the sender; the message cannot be finished.
                self.transport.loseConnection()
                return
        finally:
            if sender is not None:
                # No read may still be running on the file being closed.
                await sender.quiet()
            source.close()
        last = sender.last
        self.transport.write(b".\r\n" if last == b"\n" else b"\r\n.\r\n")
        if lines is None:
            drop.retrieved.add(index)
            self.factory.status.increment("pop3", "retrieved")

    def pop3_DELE(self, rest: str) -> None:
        index = self._number(rest.strip())
        if index is not None:
            assert self.maildrop is not None
            self.maildrop.deleteMessage(index)
            self.successResponse(f"Message {index + 1} deleted")

    def pop3_NOOP(self, rest: str) -> None:
        self.successResponse("")

    def pop3_RSET(self, rest: str) -> None:
        assert self.maildrop is not None
        self.maildrop.undeleteMessages()
        count, size = self._stat()
        self.successResponse(f"Maildrop has {count} messages ({size} octets)")

    def pop3_QUIT(self, rest: str) -> None:
        drop = self.maildrop
        if drop is None:
            self.successResponse("Bye")
            self.transport.loseConnection()
            return
        self._async(self._update(drop), "QUIT")

    async def _update(self, drop: Maildrop) -> None:
        try:
            removed = await drop.sync()
        except Exception:
            self._log.failure(
                "pop3: deleting messages of {owner} failed", owner=drop.owner
            )
            self.failResponse(b"[SYS/TEMP] Some deleted messages were not removed")
        else:
            self.factory.status.increment("pop3", "deleted", removed)
            self.successResponse(f"Bye, {removed} messages deleted")
        self.transport.loseConnection()


class POP3ServerFactory(LiveTLS, ServerFactory):
    """
    Makes POP3 sessions; holds what they share.
    """

    #: The command that upgrades a session to TLS (start-up lines name it).
    tlsUpgrade = "STLS"

    protocol = POP3Server  # type: ignore[assignment]
    #: Scripted faults (set by the stack).
    faults: Faults = NO_FAULTS

    def __init__(
        self,
        *,
        hostname: str,
        store: IMailStore,
        auth: Authenticator,
        realm: MailRealm,
        status: Status,
        clock: Any,
        tlsOptions: Any = None,
        idleTimeout: float = 600,
        apop: bool = False,
        blocking: InThread | None = None,
    ) -> None:
        """
        @param apop: offer APOP (a timestamp in the greeting); the
            C{auth} portal must then have an APOP checker
            (L{appnet.auth.Authenticator.apop}).
        @param blocking: runs message file reads (RETR, TOP) in a thread;
            default: the reactor's (C{clock}'s) thread pool. Unit tests
            pass L{appnet.files.inline}.
        """
        if blocking is None:
            reactor = clock

            def threaded(fn: Any, *args: Any) -> Deferred[Any]:
                return deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)

            blocking = threaded
        self.blocking: InThread = blocking
        self.hostname = hostname
        self.store = store
        self.auth = auth
        self.realm = realm
        self.status = status
        self.clock = clock
        self.tlsOptions = tlsOptions
        self.idleTimeout = idleTimeout
        self.apop = apop

    def buildProtocol(self, addr: Any) -> POP3Server:  # type: ignore[override]
        return POP3Server(self)


def refusal(hostname: str) -> bytes:
    """What a client over the per-address connection limit is told."""
    return f"-ERR [SYS/TEMP] {hostname}: too many connections from you\r\n".encode()
