"""
The IMAP server (RFC 3501 IMAP4rev1) over the mail store, with IDLE
(2177), NAMESPACE (2342), ID (2971), UNSELECT (3691), CHILDREN (3348),
UIDPLUS (4315), SASL-IR (4959), ENABLE (5161), response codes (5530),
SPECIAL-USE (6154), MOVE (6851), LITERAL+ (7888) and APPENDLIMIT (7889).

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from attrs import frozen
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, ISSLTransport, ITLSTransport
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.mail.imap4 import IMAP4Server
from twisted.python.failure import Failure
from zope.interface import implementer

from appnet import __version__
from appnet.address import isLoopback
from appnet.auth import Authenticator, LoginThrottled
from appnet.errors import NoSuchFolder, StoreUnavailable
from appnet.faults import NO_FAULTS, Faults
from appnet.listen import hostOf
from appnet.mail.imap import fetch as fetching
from appnet.mail.imap import search as searching
from appnet.mail.imap.account import DELIMITER, IIMAPAccount, IMAPAccount
from appnet.mail.imap.errors import BadCommand, CommandFailed, IMAPError
from appnet.mail.imap.mailbox import SelectedMailbox
from appnet.mail.imap.parse import TAG_CHARS, Arguments, Literal
from appnet.mail.imap.wire import (
    atoms,
    encode,
    encodeMailbox,
    parseDateTime,
    string,
    uidSet,
)
from appnet.mail.lines import LineQueue, noDelay
from appnet.mail.realm import MailRealm
from appnet.mail.sasl import (
    LOGIN_PASSWORD,
    LOGIN_USERNAME,
    MECHANISMS,
    SASLError,
    decodeBase64,
    decodePlain,
)
from appnet.status import Status
from appnet.store.interfaces import Changes, IMailStore
from appnet.tls import LiveTLS
from appnet.trace import MaskRule

__all__ = ["IMAP_MASK", "IMAPServer", "IMAPServerFactory", "refusal"]

#: What C{--trace imap} must not log: LOGIN's password, AUTHENTICATE's
#: initial response and the responses after a C{+} challenge; literals
#: (APPEND's message) are summarised.
IMAP_MASK = MaskRule(
    secretCommands={b"LOGIN": 1, b"AUTHENTICATE": 1},
    tagged=True,
    challenges=(b"+",),
    literals=True,
)

#: BAD replies in a row after which the client is disconnected.
MAX_BAD = 20

#: The system flags, for the FLAGS and PERMANENTFLAGS responses.
_SYSTEM = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")

_LITERAL = re.compile(rb"\{(\d{1,20})(\+?)\}\Z")

#: Messages FETCH or SEARCH works on per batch: at most this many, and
#: (for contents) at most this many bytes, more than one message permitting.
_BATCH = 64
_BATCH_BYTES = 2 << 20
#: Index-only FETCH responses written per batch.
_INDEX_BATCH = 512
#: Contents larger than this are streamed from the file in chunks of it.
_CHUNK = 256 << 10

Blocking = Callable[..., Deferred[Any]]


@frozen
class Done:
    """
    How a command completed: the text after C{tag OK}.
    """

    text: bytes


class _Literal(Literal):
    """A literal being refused: read (LITERAL+) and thrown away."""

    def write(self, data: bytes) -> None:
        self.received += len(data)


@implementer(IPushProducer)
class IMAPServer(LineQueue, IMAP4Server):
    """
    One IMAP session.
    """

    factory: IMAPServerFactory
    #: A scripted fault's BYE, sent after the first FETCH responses.
    _byeMidFetch: bytes | None = None
    maxLineLength = 65536
    maxBuffered = 1 << 18
    IDENT = b"appnet IMAP4rev1 ready"
    timeOut = 60
    account: IMAPAccount | None = None  # type: ignore[assignment]
    _log = Logger()

    def __init__(self, factory: IMAPServerFactory) -> None:
        IMAP4Server.__init__(self, chal={}, contextFactory=factory.tlsOptions)
        self.factory = factory
        self.callLater = factory.clock.callLater  # type: ignore[method-assign]
        self.timeOut = int(min(factory.loginTimeout, factory.idleTimeout))
        self.POSTAUTH_TIMEOUT = int(factory.idleTimeout)
        self.selected: SelectedMailbox | None = None
        self._client = "unknown"
        self._tls = False
        self._closed = False
        self._parts: list[bytes | Literal] | None = None
        self._inMemory = 0
        self._refused: IMAPError | None = None
        self._waiter: Deferred[bytes] | None = None
        self._idling = False
        self._announcing = False
        self._announceAgain = False
        self._bad = 0
        self._writePaused = False
        self._drainWaiters: list[Deferred[None]] = []
        # Our own, not Twisted's private _onLogout.
        self._logout: Callable[[], None] | None = None

    # Connection.

    def connectionMade(self) -> None:
        self._client = hostOf(self.transport.getPeer())
        noDelay(self.transport)
        self._tls = ISSLTransport.providedBy(self.transport)
        self.canStartTLS = ITLSTransport.providedBy(self.transport)
        self.setTimeout(self.timeOut)
        self.sendServerGreeting()
        self._log.info("imap connection from {client}", client=self._client)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        self._discardCommand()
        self._deselect()
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.errback(reason)
        self._fireDrained()
        logout, self._logout = self._logout, None
        if logout is not None:
            logout()
        IMAP4Server.connectionLost(self, reason)

    def timeoutConnection(self) -> None:
        self.sendUntaggedResponse(b"BYE Autologout; idle for too long")
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        LineQueue.dataReceived(self, data)

    def sendContinuationRequest(self, msg: bytes | None = b"") -> None:
        # RFC 3501 9: continue-req is "+" SP text; Twisted omits the space
        # when there is no text.
        self.sendLine(b"+ " + (msg or b""))

    def lineTooLong(self) -> None:
        self._discardCommand()
        self.sendBadResponse(None, b"[TOOBIG] Command line too long")

    # Capabilities.

    @property
    def _plaintextAllowed(self) -> bool:
        return self._tls or isLoopback(self._client)

    @property
    def _canSTARTTLS(self) -> bool:
        return (
            self.factory.tlsOptions is not None
            and not self._tls
            and ITLSTransport.providedBy(self.transport)
        )

    def capabilities(self) -> dict[bytes, list[bytes] | None]:
        caps: dict[bytes, list[bytes] | None] = {}
        for name in (b"LITERAL+", b"SASL-IR", b"ID", b"ENABLE", b"IDLE",
                     b"NAMESPACE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE",
                     b"UNSELECT", b"CHILDREN"):  # fmt: skip
            caps[name] = None
        caps[b"APPENDLIMIT"] = [b"%d" % self.factory.maxAppendSize]
        if self.state == "unauth":
            if self._canSTARTTLS:
                caps[b"STARTTLS"] = None
            if self._plaintextAllowed:
                caps[b"AUTH"] = list(MECHANISMS)
            else:
                caps[b"LOGINDISABLED"] = None
        return caps

    # Receiving commands: lines and literals.

    def lineReceived(self, line: bytes) -> None:
        if self._waiter is not None:
            # A continuation: an AUTHENTICATE response, IDLE's DONE.
            waiter, self._waiter = self._waiter, None
            self.hold()
            waiter.callback(line)
            return
        if self._parts is None:
            self._parts = []
            self._inMemory = 0
            self._refused = None
        self._inMemory += len(line)
        marker = _LITERAL.search(line)
        if marker is None:
            self._parts.append(line)
            self._complete()
            return
        self._parts.append(line[: marker.start()])
        size, sync = int(marker.group(1)), not marker.group(2)
        self._announced(size, sync)

    def _tag(self) -> bytes | None:
        """The tag of the command being received, if it has a valid one."""
        if not self._parts:
            return None
        first = self._parts[0]
        tag = first.split(b" ", 1)[0] if isinstance(first, bytes) else b""
        if not tag or any(c not in TAG_CHARS for c in tag):
            return None
        return tag

    def _answerRefusal(self, error: IMAPError) -> None:
        if error.status == b"BAD":
            self._bad += 1
        self._sendError(self._tag(), error)
        self._discardCommand()
        self._checkBad()

    def _sendError(self, tag: bytes | None, error: IMAPError) -> None:
        if error.status == b"BAD":
            self.sendBadResponse(tag, error.detail())
        else:
            self.sendNegativeResponse(tag, error.detail())

    def _announced(self, size: int, sync: bool) -> None:
        """
        A literal of C{size} bytes was announced: accept it (for a
        synchronising literal, invite it), or refuse the command.
        """
        if self._refused is not None:
            if sync:
                # The client waits for "+": it gets the refusal instead.
                self._answerRefusal(self._refused)
            else:
                self._read(_Literal(size))
            return
        box = self._appendTarget()
        if box is not None:
            self._announcedMessage(box, size, sync)
            return
        self._inMemory += size
        if size > self.factory.maxLiteralSize or self._inMemory > (
            4 * self.factory.maxLiteralSize
        ):
            self._refuse(BadCommand("Literal too large", "TOOBIG"), size, sync)
            return
        if sync:
            self.sendContinuationRequest(b"Ready for literal data")
        self._read(Literal(size))

    def _announcedMessage(self, box: str, size: int, sync: bool) -> None:
        if size == 0:
            error = CommandFailed("An empty message cannot be stored", "CANNOT")
            self._refuse(error, size, sync)
            return
        if size > self.factory.maxAppendSize:
            limit = self.factory.maxAppendSize
            error = CommandFailed(f"Message larger than {limit} bytes", "TOOBIG")
            self._refuse(error, size, sync)
            return
        if not sync:
            self._read(Literal(size, self.factory.store.stage()))
            return
        account = self.account
        assert account is not None
        self.hold()

        def accepted(_: object) -> None:
            if self._closed:
                return
            self.sendContinuationRequest(b"Ready for literal data")
            self._read(Literal(size, self.factory.store.stage()))

        def refused(failure: Failure) -> None:
            if self._closed:
                return
            if failure.check(IMAPError):
                self._refuse(failure.value, size, sync)
            else:
                self._log.failure("imap: checking an APPEND", failure)
                self._refuse(CommandFailed("Internal error", "SERVERBUG"), size, sync)

        d = account.checkAppend(box, size)
        d.addCallbacks(accepted, refused).addBoth(lambda _: self.release())

    def _appendTarget(self) -> str | None:
        """
        If the literal just announced is an APPEND's message (not its
        mailbox name): the mailbox it goes to.
        """
        if self.account is None or not self._parts:
            return None
        args = Arguments(self._parts)
        try:
            args.atom("a tag", TAG_CHARS)
            args.sp()
            if args.atom("a command").upper() != b"APPEND":
                return None
            args.sp()
            if args.atEnd():
                return None
            return args.mailbox()
        except BadCommand:
            return None

    def _refuse(self, error: IMAPError, size: int, sync: bool) -> None:
        if sync:
            self._answerRefusal(error)
            return
        self._refused = error
        self._read(_Literal(size))

    def _read(self, literal: Literal) -> None:
        """Take the next C{literal.size} bytes as the literal."""
        if literal.size == 0:
            self._gotLiteral(literal)
            return

        def consume(data: bytes) -> bytes | None:
            need = literal.size - literal.received
            literal.write(data[:need])
            if literal.received < literal.size:
                return None
            self._gotLiteral(literal)
            return data[need:]

        self.readRaw(consume)

    def _gotLiteral(self, literal: Literal) -> None:
        if self._parts is None:
            literal.discard()
            return
        self._parts.append(literal)

    def _complete(self) -> None:
        """A whole command has arrived."""
        parts, self._parts = self._parts, None
        assert parts is not None
        if self._refused is not None:
            self._parts = parts
            self._answerRefusal(self._refused)
            return
        self.hold()
        d = Deferred.fromCoroutine(self._run(parts))
        d.addErrback(lambda f: self._log.failure("imap: command failed", f))
        d.addBoth(lambda _: self.release())

    def _discardCommand(self) -> None:
        parts, self._parts = self._parts, None
        self._refused = None
        for part in parts or ():
            if isinstance(part, Literal):
                part.discard()

    def _nextLine(self) -> Deferred[bytes]:
        """
        Wait for the client's next line (outside the command framing),
        letting input flow meanwhile.
        """
        waiter: Deferred[bytes] = Deferred()
        self._waiter = waiter
        self.release()
        return waiter

    # Running commands.

    async def _run(self, parts: list[bytes | Literal]) -> None:
        args = Arguments(parts)
        try:
            tag = args.atom("a tag", TAG_CHARS)
        except BadCommand:
            self._bad += 1
            self.sendBadResponse(None, b"Invalid tag")
            self._checkBad()
            return
        try:
            try:
                if not args.maybe(b" "):
                    raise BadCommand("Missing command")
                name = args.atom("a command").upper().decode("ascii")
                uid = False
                if name == "UID":
                    args.sp()
                    name = args.atom("a command").upper().decode("ascii")
                    uid = True
                    if name not in _UID_COMMANDS:
                        raise BadCommand(f"UID {name} is not a command")
                command = _COMMANDS.get(name)
                if command is None:
                    raise BadCommand(f"Unknown command {name}")
                if self.state not in command.states:
                    raise BadCommand(f"{name} is not allowed now")
                if self._faulted(tag, name):
                    return
                if not args.atEnd():
                    args.sp()
                result = await command.run(self, tag, args, uid)
            finally:
                for part in parts:
                    if isinstance(part, Literal):
                        part.discard()
            if self._closed:
                return
            if self.selected is not None:
                await self._announce(command.expunges or uid)
            if result is not None:
                self.sendPositiveResponse(tag, result.text)
            self._bad = 0
        except IMAPError as e:
            if self._closed:
                return
            if e.status == b"BAD":
                self._bad += 1
            elif self.selected is not None:
                await self._announce(False)
            self._sendError(tag, e)
            self._checkBad()
        except NoSuchFolder:
            if self._closed:
                return
            if self.selected is not None:
                self._mailboxGone()
            else:
                self.sendNegativeResponse(tag, b"[NONEXISTENT] No such mailbox")
        except StoreUnavailable:
            if self._closed:
                return
            self._log.warn(
                "imap: {client}: the store is unavailable", client=self._client
            )
            self.sendNegativeResponse(
                tag, b"[UNAVAILABLE] Mail store unavailable, try again later"
            )
        except Exception:
            if self._closed:
                return
            self._log.failure("imap: {client} command failed", client=self._client)
            self.sendNegativeResponse(tag, b"[SERVERBUG] Internal error")

    def _faulted(self, tag: bytes, name: str) -> bool:
        """Answer a scripted fault (L{appnet.faults}) for C{name}, if any."""
        faults = self.factory.faults
        fault = faults.take("imap", "command", name, transport=self.transport)
        if fault is None:
            return False
        text = (fault.text or "Scripted failure").encode("utf-8", "replace")
        if fault.action == "bye" and name == "FETCH":
            # Mid-FETCH: after the first batch of responses (L{_fetch}).
            self._byeMidFetch = text
            return False
        if fault.action == "bye":
            self.sendUntaggedResponse(b"BYE " + text)
            self.transport.loseConnection()
        else:
            self.sendNegativeResponse(tag, text)
        return True

    def _checkBad(self) -> None:
        if self._bad >= MAX_BAD and not self._closed:
            self.sendUntaggedResponse(b"BYE Too many invalid commands")
            self.transport.loseConnection()

    def _mailboxGone(self) -> None:
        self.sendUntaggedResponse(b"BYE Selected mailbox was deleted or renamed")
        self._deselect()
        self.transport.loseConnection()

    # Telling the client what changed.

    def _folderChanged(self, info: Any) -> None:
        mailbox = self.selected
        if mailbox is None:
            return
        mailbox.dirty = True
        if self._idling:
            d = Deferred.fromCoroutine(self._announce(True))
            d.addErrback(self._announceFailed)

    def _announceFailed(self, failure: Failure) -> None:
        if failure.check(NoSuchFolder) and not self._closed:
            self._mailboxGone()
            return
        self._log.failure("imap: announcing changes failed", failure)

    async def _announce(self, allowExpunge: bool) -> None:
        """
        Catch up with the store and send what changed: EXPUNGE (if
        allowed), EXISTS, FETCH FLAGS.
        """
        if self._announcing:
            self._announceAgain = True
            return
        self._announcing = True
        try:
            while True:
                self._announceAgain = False
                await self._announceOnce(allowExpunge)
                if not self._announceAgain:
                    return
        finally:
            self._announcing = False

    async def _announceOnce(self, allowExpunge: bool) -> None:
        mailbox = self.selected
        if mailbox is None:
            return
        store = self.factory.store
        changes = Changes(mailbox.modseq)
        if mailbox.dirty:
            mailbox.dirty = False
            changes = await store.changesSince(
                mailbox.owner, mailbox.name, mailbox.modseq
            )
        if self.selected is not mailbox or self._closed:
            return
        if mailbox.claimDue(changes):
            claimed = await store.claimRecent(mailbox.owner, mailbox.name)
            if self.selected is not mailbox or self._closed:
                return
            mailbox.claimed(*claimed)
        updates = mailbox.catchUp(changes, allowExpunge)
        lines = [b"%d EXPUNGE" % seq for seq in updates.expunged]
        if updates.exists is not None:
            lines.append(b"%d EXISTS" % updates.exists)
        if updates.recent is not None:
            lines.append(b"%d RECENT" % updates.recent)
        self._announceKeywords(mailbox, [row.flags for _, row in updates.flags])
        for seq, row in updates.flags:
            flags = atoms(sorted(mailbox.flagsOf(row)))
            lines.append(b"%d FETCH (UID %d FLAGS %s)" % (seq, row.uid, flags))
        for line in lines:
            self.sendUntaggedResponse(line)

    def _sendFlags(self, mailbox: SelectedMailbox) -> None:
        """The FLAGS and PERMANENTFLAGS responses for the keywords known."""
        keywords = sorted(mailbox.keywords)
        self.sendUntaggedResponse(b"FLAGS " + atoms([*_SYSTEM, *keywords]))
        permanent = atoms([*_SYSTEM, *keywords, "\\*"])
        if mailbox.readOnly:
            permanent = b"()"
        self.sendUntaggedResponse(
            b"OK [PERMANENTFLAGS " + permanent + b"] Flags permitted"
        )

    def _announceKeywords(
        self, mailbox: SelectedMailbox, flagSets: Sequence[frozenset[str]]
    ) -> None:
        """
        Before flags are reported, announce keywords the client has not
        been told of (RFC 3501 section 7.2.6) with new FLAGS and
        PERMANENTFLAGS responses.
        """
        new = mailbox.newKeywords(flagSets)
        if new and not self._closed:
            self._sendFlags(mailbox)

    def _deselect(self) -> None:
        mailbox, self.selected = self.selected, None
        if mailbox is not None:
            mailbox.stopWatching()
            self.state = "auth"

    # Writing with back-pressure (FETCH registers as the producer).

    def pauseProducing(self) -> None:
        self._writePaused = True

    def resumeProducing(self) -> None:
        self._writePaused = False
        self._fireDrained()

    def stopProducing(self) -> None:
        self._writePaused = False
        self._fireDrained()

    def _fireDrained(self) -> None:
        waiters, self._drainWaiters = self._drainWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    async def _drained(self) -> None:
        if self._byeMidFetch is not None:
            # A scripted fault: BYE after the first FETCH responses.
            bye, self._byeMidFetch = self._byeMidFetch, None
            self.sendUntaggedResponse(b"BYE " + bye)
            self.transport.loseConnection()
            self._closed = True
        if self._writePaused and not self._closed:
            waiter: Deferred[None] = Deferred()
            self._drainWaiters.append(waiter)
            await waiter

    def _blocking(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return self.factory.blocking(fn, *args)

    # Any state.

    async def cmd_CAPABILITY(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.end()
        caps = b" ".join(self.listCapabilities())
        self.sendUntaggedResponse(b"CAPABILITY " + caps)
        return Done(b"CAPABILITY completed")

    async def cmd_NOOP(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.end()
        if self.selected is not None:
            self.selected.dirty = True
        return Done(b"NOOP completed")

    async def cmd_LOGOUT(self, tag: bytes, args: Arguments, uid: bool) -> None:
        args.end()
        self._deselect()
        self.do_LOGOUT(tag)

    async def cmd_ID(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        fields: dict[str, str] = {}
        if args.peekWord() == b"NIL":
            args.atom()
        else:
            values = args.parenthesised(lambda a: a.nstring() or b"")
            if len(values) % 2 or len(values) > 60:
                raise BadCommand("ID takes up to 30 name and value pairs")
            for i in range(0, len(values), 2):
                name, value = values[i], values[i + 1]
                if len(name) > 30 or len(value) > 1024:
                    raise BadCommand("ID field too long")
                fields[name.decode("utf-8", "replace")] = value.decode(
                    "utf-8", "replace"
                )
        args.end()
        if fields:
            self._log.info(
                "imap: {client} identifies as {fields}",
                client=self._client,
                fields=fields,
            )
        self.sendUntaggedResponse(
            b"ID " + encode(["name", "appnet", "version", __version__])
        )
        return Done(b"ID completed")

    # Not authenticated.

    async def cmd_STARTTLS(self, tag: bytes, args: Arguments, uid: bool) -> None:
        args.end()
        if self._tls:
            raise BadCommand("TLS is already active")
        if not self._canSTARTTLS:
            raise CommandFailed("TLS is not available")
        self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
        # Nothing pipelined in plain text after STARTTLS may run inside
        # the TLS session (command injection); forget the session state.
        self.discardInput()
        self._discardCommand()
        self._tls = True
        self.transport.startTLS(self.factory.tlsOptions)

    async def cmd_LOGIN(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        username = args.astring("a user name")
        args.sp()
        password = args.astring("a password")
        args.end()
        if not self._plaintextAllowed:
            raise CommandFailed(
                "Login needs TLS: use STARTTLS first", "PRIVACYREQUIRED"
            )
        return await self._login(username, password)

    async def cmd_AUTHENTICATE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        mechanism = args.atom("a mechanism").upper()
        initial: bytes | None = None
        if args.maybe(b" "):
            initial = args.atom("an initial response", frozenset(b"=+/0123456789"
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))  # fmt: skip
        args.end()
        if not self._plaintextAllowed:
            raise CommandFailed(
                "Authentication needs TLS: use STARTTLS first", "PRIVACYREQUIRED"
            )
        if mechanism not in MECHANISMS:
            raise CommandFailed("Unsupported authentication mechanism", "CANNOT")
        try:
            if mechanism == b"PLAIN":
                response = (
                    initial if initial is not None else await self._challenge(b"")
                )
                username, password = decodePlain(decodeBase64(response))
            else:
                if initial is not None:
                    username = decodeBase64(initial)
                else:
                    username = decodeBase64(await self._challenge(LOGIN_USERNAME))
                password = decodeBase64(await self._challenge(LOGIN_PASSWORD))
                if not username:
                    raise SASLError("empty user name")
        except SASLError as e:
            raise BadCommand(f"Authentication failed: {e}") from None
        return await self._login(username, password)

    async def _challenge(self, prompt: bytes) -> bytes:
        self.sendContinuationRequest(prompt or None)
        line = await self._nextLine()
        if line.strip() == b"*":
            raise BadCommand("Authentication cancelled")
        return line

    async def _login(self, username: bytes, password: bytes) -> Done:
        portal = self.factory.auth.portalFor(self.factory.realm, self._client)
        try:
            _, avatar, logout = await portal.login(
                UsernamePassword(username, password), None, IIMAPAccount
            )
        except LoginThrottled:
            raise CommandFailed(
                "Too many failed logins; try again later", "UNAVAILABLE"
            ) from None
        except UnauthorizedLogin:
            raise CommandFailed(
                "Authentication failed", "AUTHENTICATIONFAILED"
            ) from None
        if self._closed:
            logout()
            return Done(b"")
        assert isinstance(avatar, IMAPAccount)
        self.account = avatar
        self._logout = logout
        self.state = "auth"
        self.setTimeout(self.POSTAUTH_TIMEOUT)
        self.factory.status.increment("imap", "logins")
        self._log.info(
            "imap: {client} logged in as {account}",
            client=self._client,
            account=avatar.address,
        )
        caps = b" ".join(self.listCapabilities())
        return Done(b"[CAPABILITY " + caps + b"] Logged in")

    # Authenticated.

    def _account(self) -> IMAPAccount:
        assert self.account is not None
        return self.account

    async def cmd_ENABLE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.atom("a capability")
        while args.maybe(b" "):
            args.atom("a capability")
        args.end()
        # None of the extensions ENABLE turns on is offered, so none is
        # enabled (RFC 5161 3.1: unknown names are ignored).
        self.sendUntaggedResponse(b"ENABLED")
        return Done(b"ENABLE completed")

    async def cmd_NAMESPACE(self, tag: bytes, args: Arguments, uid: bool) -> None:
        args.end()
        self.do_NAMESPACE(tag)

    async def cmd_SELECT(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        return await self._select(args, readOnly=False)

    async def cmd_EXAMINE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        return await self._select(args, readOnly=True)

    async def _select(self, args: Arguments, readOnly: bool) -> Done:
        name = args.mailbox()
        args.end()
        # A failed SELECT leaves no mailbox selected (RFC 3501 6.3.1).
        self._deselect()
        account = self._account()
        info = await account.status(name)
        store = self.factory.store
        rows = await store.listMessages(account.address, info.name)
        if self._closed:
            return Done(b"")
        mailbox = SelectedMailbox.open(info, rows, readOnly)
        if mailbox.claimDue():
            claimed = await store.claimRecent(account.address, info.name)
            if self._closed:
                return Done(b"")
            mailbox.claimed(*claimed)
        mailbox.stopWatching = store.watch(
            account.address, info.name, self._folderChanged
        )
        # Anything between the listing and the watch is caught up on the
        # next command.
        mailbox.dirty = True
        self.selected = mailbox
        self.state = "select"
        mailbox.keywords = mailbox.flagsInUse()
        self._sendFlags(mailbox)
        self.sendUntaggedResponse(b"%d EXISTS" % mailbox.count)
        mailbox.reportedRecent = mailbox.recentCount
        self.sendUntaggedResponse(b"%d RECENT" % mailbox.reportedRecent)
        unseen = mailbox.firstUnseen()
        if unseen is not None:
            self.sendUntaggedResponse(b"OK [UNSEEN %d] First unseen" % unseen)
        self.sendUntaggedResponse(b"OK [UIDVALIDITY %d] UIDs valid" % info.uidValidity)
        self.sendUntaggedResponse(
            b"OK [UIDNEXT %d] Predicted next UID" % mailbox.uidNext
        )
        mode = b"READ-ONLY" if readOnly else b"READ-WRITE"
        verb = b"EXAMINE" if readOnly else b"SELECT"
        return Done(b"[" + mode + b"] " + verb + b" completed")

    async def cmd_CREATE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        name = args.mailbox()
        args.end()
        await self._account().create(name)
        return Done(b"CREATE completed")

    async def cmd_DELETE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        name = args.mailbox()
        args.end()
        if self.selected is not None and self.selected.name == name:
            self._deselect()
        await self._account().delete(name)
        return Done(b"DELETE completed")

    async def cmd_RENAME(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        old = args.mailbox()
        args.sp()
        new = args.mailbox()
        args.end()
        if self.selected is not None and (
            self.selected.name == old or self.selected.name.startswith(old + DELIMITER)
        ):
            self._deselect()
        await self._account().rename(old, new)
        return Done(b"RENAME completed")

    async def cmd_SUBSCRIBE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        name = args.mailbox()
        args.end()
        await self._account().subscribe(name, True)
        return Done(b"SUBSCRIBE completed")

    async def cmd_UNSUBSCRIBE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        name = args.mailbox()
        args.end()
        await self._account().subscribe(name, False)
        return Done(b"UNSUBSCRIBE completed")

    async def cmd_LIST(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        return await self._list(args, b"LIST")

    async def cmd_LSUB(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        return await self._list(args, b"LSUB")

    async def _list(self, args: Arguments, verb: bytes) -> Done:
        if args.peek() == ord("("):
            raise BadCommand("LIST selection options are not supported")
        reference = args.listMailbox() if not args.maybe(b'""') else ""
        args.sp()
        pattern = args.listMailbox() if not args.maybe(b'""') else ""
        args.end()
        delimiter = string(DELIMITER)
        if not pattern:
            if verb == b"LIST":
                self.sendUntaggedResponse(b'LIST (\\Noselect) %s ""' % delimiter)
            return Done(verb + b" completed")
        listed = await self._account().list(reference, pattern, verb == b"LSUB")
        for folder in listed:
            self.sendUntaggedResponse(
                b"%s %s %s %s"
                % (
                    verb,
                    atoms(folder.attributes),
                    delimiter,
                    string(encodeMailbox(folder.name)),
                )
            )
        return Done(verb + b" completed")

    async def cmd_STATUS(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        name = args.mailbox()
        args.sp()
        items = args.parenthesised(lambda a: a.atom("a status item").upper(), False)
        args.end()
        for item in items:
            if item not in _STATUS_ITEMS:
                raise BadCommand(f"Unknown status item {item.decode('ascii')}")
        info = await self._account().status(name)
        values = {
            b"MESSAGES": info.messages,
            b"RECENT": info.recent,
            b"UIDNEXT": info.uidNext,
            b"UIDVALIDITY": info.uidValidity,
            b"UNSEEN": info.unseen,
            b"SIZE": info.size,
        }
        answer = b" ".join(b"%s %d" % (item, values[item]) for item in items)
        self.sendUntaggedResponse(
            b"STATUS %s (%s)" % (string(encodeMailbox(info.name)), answer)
        )
        return Done(b"STATUS completed")

    async def cmd_APPEND(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        name = args.mailbox()
        args.sp()
        flags: list[str] = []
        if args.peek() == ord("("):
            flags = args.flagList()
            args.sp()
        date = None
        if args.peek() == ord('"'):
            text = args.quoted().decode("ascii", "replace")
            try:
                date = parseDateTime(text)
            except ValueError:
                raise BadCommand(f"Invalid date-time {text!r}") from None
            args.sp()
        if not args.atLiteral():
            raise BadCommand("The message must be a literal")
        literal = args.literal()
        args.end()
        if literal.size == 0:
            raise CommandFailed("An empty message cannot be stored", "CANNOT")
        staged = literal.staged
        if staged is None:
            staged = self.factory.store.stage()
            staged.write(literal.data)
        try:
            account = self._account()
            validity, newUID = await account.append(
                name, staged, frozenset(flags), date
            )
        finally:
            staged.discard()
        self.factory.status.increment("imap", "appended")
        if self.selected is not None and self.selected.name == name:
            self.selected.dirty = True
        return Done(b"[APPENDUID %d %d] APPEND completed" % (validity, newUID))

    # Selected.

    def _mailbox(self) -> SelectedMailbox:
        assert self.selected is not None
        return self.selected

    def _writable(self) -> SelectedMailbox:
        mailbox = self._mailbox()
        if mailbox.readOnly:
            raise CommandFailed("The mailbox is read-only (EXAMINE)", "READ-ONLY")
        return mailbox

    async def cmd_CHECK(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.end()
        self._mailbox().dirty = True
        return Done(b"CHECK completed")

    async def cmd_CLOSE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.end()
        mailbox = self._mailbox()
        if not mailbox.readOnly:
            uids = [row.uid for _, row in mailbox.rows()]
            await self.factory.store.expunge(
                mailbox.owner, mailbox.name, uids, onlyDeleted=True
            )
        self._deselect()
        return Done(b"CLOSE completed")

    async def cmd_UNSELECT(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.end()
        self._deselect()
        return Done(b"UNSELECT completed")

    async def cmd_EXPUNGE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        mailbox = self._mailbox()
        if uid:
            numbers = args.sequenceSet()
            args.end()
            rows = mailbox.select(numbers, uid=True)
        else:
            args.end()
            rows = mailbox.rows()
        mailbox = self._writable()
        uids = [row.uid for _, row in rows]
        if uids:
            await self.factory.store.expunge(
                mailbox.owner, mailbox.name, uids, onlyDeleted=True
            )
        mailbox.dirty = True
        return Done(b"EXPUNGE completed")

    async def cmd_SEARCH(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        criterion = searching.parseSearch(args)
        await self._announce(uid)
        mailbox = self._mailbox()
        limits = searching.Limits(mailbox.count, mailbox.lastUID)
        rows = mailbox.rows()
        found: list[searching.Candidate] = []
        recent = mailbox.isRecent
        if criterion.needs == searching.INDEX:
            candidates = [
                searching.Candidate(seq, row, None, recent(row.uid))
                for seq, row in rows
            ]
            found = searching.evaluate(criterion, candidates, limits)
        else:
            size = searching.BATCH[criterion.needs]
            store = self.factory.store
            for i in range(0, len(rows), size):
                batch = rows[i : i + size]
                bodies = await store.openMessages(
                    mailbox.owner, mailbox.name, [row.uid for _, row in batch]
                )
                candidates = [
                    searching.Candidate(seq, row, bodies.get(row.uid), recent(row.uid))
                    for seq, row in batch
                ]
                found += await self._blocking(
                    searching.evaluate, criterion, candidates, limits
                )
                if self._closed or self.selected is not mailbox:
                    return Done(b"")
        numbers = [c.info.uid if uid else c.seq for c in found]
        self.sendUntaggedResponse(b"SEARCH" + b"".join(b" %d" % n for n in numbers))
        return Done(b"SEARCH completed")

    async def cmd_FETCH(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        numbers = args.sequenceSet()
        args.sp()
        items = fetching.parseFetch(args)
        # Flags other sessions changed are reported fresh (and expunges, in
        # a UID FETCH, which may announce them).
        await self._announce(uid)
        mailbox = self._mailbox()
        messages = mailbox.select(numbers, uid)
        producer = self.transport
        producer.registerProducer(self, True)
        try:
            missing = await self._fetch(mailbox, messages, items, uid)
        finally:
            if not self._closed:
                producer.unregisterProducer()
        if missing:
            raise CommandFailed(
                "Some messages were expunged by another session", "EXPUNGEISSUED"
            )
        return Done(b"FETCH completed")

    async def _fetch(
        self,
        mailbox: SelectedMailbox,
        messages: list[tuple[int, Any]],
        items: list[fetching.FetchItem],
        uid: bool,
    ) -> bool:
        """
        Send the FETCH responses, a batch at a time.

        @return: whether some messages' contents were gone.
        """
        needs = max(item.needs for item in items)
        setsSeen = not mailbox.readOnly and any(item.setsSeen for item in items)
        withFlags = [*items, fetching.FetchItem("FLAGS")]
        hasFlags = any(item.name == "FLAGS" for item in items)
        store = self.factory.store
        missing = False
        i = 0
        while i < len(messages):
            if self._closed or self.selected is not mailbox:
                return missing
            if needs == fetching.INDEX:
                batch = messages[i : i + _INDEX_BATCH]
                i += len(batch)
                render, flagsOf = fetching.renderIndex, mailbox.flagsOf
                self._announceKeywords(mailbox, [row.flags for _, row in batch])
                self.transport.write(
                    b"".join(
                        [
                            render(seq, row, items, uid, flagsOf(row))
                            for seq, row in batch
                        ]
                    )
                )
                await self._drained()
                continue
            batch, total = [], 0
            while i < len(messages) and len(batch) < _BATCH:
                size = messages[i][1].size
                if batch and total + size > _BATCH_BYTES:
                    break
                batch.append(messages[i])
                total += size
                i += 1
            bodies = await store.openMessages(
                mailbox.owner, mailbox.name, [row.uid for _, row in batch]
            )
            seen: set[int] = set()
            if setsSeen:
                unseen = [
                    row.uid
                    for _, row in batch
                    if "\\Seen" not in row.flags and row.uid in bodies
                ]
                if unseen:
                    changed = await store.setFlags(
                        mailbox.owner,
                        mailbox.name,
                        unseen,
                        frozenset({"\\Seen"}),
                        "add",
                    )
                    mailbox.updated(changed)
                    seen = {row.uid for row in changed}
            jobs = []
            for seq, row in batch:
                current = mailbox.row(row.uid) or row
                body = bodies.get(row.uid)
                wanted = withFlags if row.uid in seen and not hasFlags else items
                flags = mailbox.flagsOf(current)
                jobs.append((seq, current, body, wanted, flags, uid, _CHUNK))
            self._announceKeywords(mailbox, [job[4] for job in jobs])
            rendered = await self._blocking(_renderAll, jobs)
            try:
                for pieces, gone in rendered:
                    missing = missing or gone
                    for piece in pieces:
                        if self._closed:
                            return missing
                        if isinstance(piece, bytes):
                            self.transport.write(piece)
                        else:
                            await self._stream(piece)
                    await self._drained()
            finally:
                for pieces, _ in rendered:
                    fetching.closeFiles(pieces)
        return missing

    async def _stream(self, piece: fetching.Range) -> None:
        """
        Send a range of a message file (open since rendering) in chunks,
        as the client reads.
        """
        file = piece.file
        position, left = piece.start, piece.length
        while left > 0 and not self._closed:
            chunk = await self._blocking(
                fetching.readRange, file, position, min(left, _CHUNK)
            )
            if not chunk:
                # The file is shorter than its index row says: pad, so
                # the literal keeps its announced length.
                chunk = b" " * min(left, _CHUNK)
            self.transport.write(chunk)
            position += len(chunk)
            left -= len(chunk)
            await self._drained()

    async def cmd_STORE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        mailbox = self._mailbox()
        numbers = args.sequenceSet()
        args.sp()
        action = args.atom("+FLAGS, -FLAGS or FLAGS").upper()
        args.sp()
        flags = args.storeFlags()
        args.end()
        mode = {b"FLAGS": "replace", b"+FLAGS": "add", b"-FLAGS": "remove"}
        silent = action.endswith(b".SILENT")
        how = mode.get(action[:-7] if silent else action)
        if how is None:
            raise BadCommand(f"Unknown STORE action {action.decode('ascii')}")
        messages = mailbox.select(numbers, uid)
        mailbox = self._writable()
        uids = [row.uid for _, row in messages]
        # \Recent was left out of the flags: STORE neither sets nor
        # clears it, so "+FLAGS (\Recent)" alone changes nothing.
        if uids and (flags or how == "replace"):
            changed = await self.factory.store.setFlags(
                mailbox.owner, mailbox.name, uids, frozenset(flags), how
            )
            mailbox.updated(changed)
        if not silent:
            rows = [mailbox.row(row.uid) for _, row in messages]
            self._announceKeywords(mailbox, [r.flags for r in rows if r is not None])
            for seq, row in messages:
                current = mailbox.row(row.uid)
                if current is None or mailbox.isGone(row.uid):
                    continue
                extra = b" UID %d" % row.uid if uid else b""
                self.sendUntaggedResponse(
                    b"%d FETCH (FLAGS %s%s)"
                    % (seq, atoms(sorted(mailbox.flagsOf(current))), extra)
                )
        return Done(b"STORE completed")

    async def cmd_COPY(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        return await self._copy(args, uid, move=False)

    async def cmd_MOVE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        return await self._copy(args, uid, move=True)

    async def _copy(self, args: Arguments, uid: bool, move: bool) -> Done:
        mailbox = self._mailbox()
        numbers = args.sequenceSet()
        args.sp()
        target = args.mailbox()
        args.end()
        messages = mailbox.select(numbers, uid)
        if move:
            mailbox = self._writable()
        uids = [row.uid for _, row in messages if not mailbox.isGone(row.uid)]
        verb = b"MOVE" if move else b"COPY"
        if not uids:
            return Done(verb + b" completed (no messages)")
        validity, mapping = await self._account().copy(mailbox.name, uids, target, move)
        if not mapping:
            raise CommandFailed(
                "The messages were expunged by another session", "EXPUNGEISSUED"
            )
        sources = sorted(mapping)
        code = b"[COPYUID %d %s %s]" % (
            validity,
            uidSet(sources),
            b",".join(b"%d" % mapping[s] for s in sources),
        )
        if target == mailbox.name:
            mailbox.dirty = True
        if move:
            mailbox.dirty = True
            self.sendUntaggedResponse(b"OK " + code + b" Moved")
            return Done(b"MOVE completed")
        return Done(code + b" COPY completed")

    async def cmd_IDLE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.end()
        self.sendContinuationRequest(b"idling")
        self._idling = True
        keepalive = self._keepalive()
        try:
            await self._announce(True)
            line = await self._nextLine()
        finally:
            self._idling = False
            keepalive()
        if line.strip().upper() != b"DONE":
            raise BadCommand("Expected DONE to end IDLE")
        return Done(b"IDLE terminated")

    def _keepalive(self) -> Callable[[], None]:
        """
        Send C{* OK Still here} now and then during IDLE, so that idle
        NAT mappings and firewalls keep the connection open.
        """
        interval = self.factory.idleKeepalive
        calls: list[Any] = []

        def tick() -> None:
            if self._idling and not self._closed:
                self.sendUntaggedResponse(b"OK Still here")
                calls[:] = [self.callLater(interval, tick)]

        if interval > 0:
            calls.append(self.callLater(interval, tick))

        def cancel() -> None:
            for call in calls:
                if call.active():
                    call.cancel()

        return cancel


def _renderAll(
    jobs: Sequence[tuple[Any, ...]],
) -> list[tuple[list[fetching.Piece], bool]]:
    """
    Render a batch of FETCH responses (blocking): each message's pieces,
    and whether its content was gone.
    """
    return [fetching.renderMessage(*job) for job in jobs]


_STATUS_ITEMS = {b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN", b"SIZE"}

Handler = Callable[[IMAPServer, bytes, Arguments, bool], Awaitable[Done | None]]


@frozen
class _Command:
    """
    A command: the states it is allowed in, and whether it may announce
    expunges (not FETCH, STORE, SEARCH: RFC 3501 7.4.1).
    """

    states: frozenset[str]
    run: Handler
    expunges: bool = True


_ANY = frozenset({"unauth", "auth", "select"})
_UNAUTH = frozenset({"unauth"})
_AUTH = frozenset({"auth", "select"})
_SELECT = frozenset({"select"})

_COMMANDS: dict[str, _Command] = {
    "CAPABILITY": _Command(_ANY, IMAPServer.cmd_CAPABILITY),
    "NOOP": _Command(_ANY, IMAPServer.cmd_NOOP),
    "LOGOUT": _Command(_ANY, IMAPServer.cmd_LOGOUT),
    "ID": _Command(_ANY, IMAPServer.cmd_ID),
    "STARTTLS": _Command(_UNAUTH, IMAPServer.cmd_STARTTLS),
    "LOGIN": _Command(_UNAUTH, IMAPServer.cmd_LOGIN),
    "AUTHENTICATE": _Command(_UNAUTH, IMAPServer.cmd_AUTHENTICATE),
    "ENABLE": _Command(frozenset({"auth"}), IMAPServer.cmd_ENABLE),
    "NAMESPACE": _Command(_AUTH, IMAPServer.cmd_NAMESPACE),
    "SELECT": _Command(_AUTH, IMAPServer.cmd_SELECT),
    "EXAMINE": _Command(_AUTH, IMAPServer.cmd_EXAMINE),
    "CREATE": _Command(_AUTH, IMAPServer.cmd_CREATE),
    "DELETE": _Command(_AUTH, IMAPServer.cmd_DELETE),
    "RENAME": _Command(_AUTH, IMAPServer.cmd_RENAME),
    "SUBSCRIBE": _Command(_AUTH, IMAPServer.cmd_SUBSCRIBE),
    "UNSUBSCRIBE": _Command(_AUTH, IMAPServer.cmd_UNSUBSCRIBE),
    "LIST": _Command(_AUTH, IMAPServer.cmd_LIST),
    "LSUB": _Command(_AUTH, IMAPServer.cmd_LSUB),
    "STATUS": _Command(_AUTH, IMAPServer.cmd_STATUS),
    "APPEND": _Command(_AUTH, IMAPServer.cmd_APPEND),
    "IDLE": _Command(_AUTH, IMAPServer.cmd_IDLE),
    "CHECK": _Command(_SELECT, IMAPServer.cmd_CHECK),
    "CLOSE": _Command(_SELECT, IMAPServer.cmd_CLOSE),
    "UNSELECT": _Command(_SELECT, IMAPServer.cmd_UNSELECT),
    "EXPUNGE": _Command(_SELECT, IMAPServer.cmd_EXPUNGE),
    "SEARCH": _Command(_SELECT, IMAPServer.cmd_SEARCH, expunges=False),
    "FETCH": _Command(_SELECT, IMAPServer.cmd_FETCH, expunges=False),
    "STORE": _Command(_SELECT, IMAPServer.cmd_STORE, expunges=False),
    "COPY": _Command(_SELECT, IMAPServer.cmd_COPY),
    "MOVE": _Command(_SELECT, IMAPServer.cmd_MOVE),
}
#: Commands that have a UID form; C{UID EXPUNGE} is UIDPLUS's.
_UID_COMMANDS = {"FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE"}


class IMAPServerFactory(LiveTLS, ServerFactory):
    """
    Makes IMAP sessions; holds what they share.

    @ivar blocking: runs a blocking function in a worker thread (message
        file reads, MIME parsing, search), returning a Deferred.
    """

    #: The command that upgrades a session to TLS (start-up lines name it).
    tlsUpgrade = "STARTTLS"

    protocol = IMAPServer  # type: ignore[assignment]
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
        blocking: Blocking,
        tlsOptions: Any = None,
        idleTimeout: float = 1800,
        loginTimeout: float = 60,
        idleKeepalive: float = 120,
        maxAppendSize: int = 25 << 20,
        maxLiteralSize: int = 64 << 10,
    ) -> None:
        self.hostname = hostname
        self.store = store
        self.auth = auth
        self.realm = realm
        self.status = status
        self.clock = clock
        self.blocking = blocking
        self.tlsOptions = tlsOptions
        self.idleTimeout = idleTimeout
        self.loginTimeout = loginTimeout
        self.idleKeepalive = idleKeepalive
        self.maxAppendSize = maxAppendSize
        self.maxLiteralSize = maxLiteralSize

    def buildProtocol(self, addr: Any) -> IMAPServer:  # type: ignore[override]
        return IMAPServer(self)


def refusal(hostname: str) -> bytes:
    """What a client over the per-address connection limit is told."""
    return f"* BYE {hostname}: too many connections from you\r\n".encode()
