"""
The IMAP session's framing: command lines and literals (synchronising and
LITERAL+), continuation requests, dispatch of a parsed command to its
handler by state, untagged announcements of mailbox changes, and write
back-pressure. The command handlers build on it, one module per state.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, ISSLTransport, ITLSTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.mail.imap4 import IMAP4Server
from twisted.python.failure import Failure
from zope.interface import implementer

from appnet.errors import NoSuchFolder, StoreUnavailable
from appnet.listen import hostOf
from appnet.mail.imap.account import IMAPAccount, checkName
from appnet.mail.imap.errors import BadCommand, CommandFailed, IMAPError
from appnet.mail.imap.mailbox import SelectedMailbox
from appnet.mail.imap.parse import TAG_CHARS, Arguments, Literal
from appnet.mail.imap.wire import atoms
from appnet.mail.lines import LineQueue, noDelay
from appnet.store.interfaces import Changes
from appnet.store.watching import Delta

if TYPE_CHECKING:
    from appnet.mail.imap.server import IMAPServerFactory

__all__ = ["MAX_BAD", "Command", "Done", "IMAPFraming", "quickAck"]

#: BAD replies in a row after which the client is disconnected.
MAX_BAD = 20

#: The system flags, for the FLAGS and PERMANENTFLAGS responses.
_SYSTEM = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")

_LITERAL = re.compile(rb"\{(\d{1,20})(\+?)\}\Z")

Handler = Callable[[Any, bytes, Arguments, bool], Awaitable["Done | None"]]


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


@frozen
class Command:
    """
    A command: the states it is allowed in, and whether it may announce
    expunges (not FETCH, STORE, SEARCH: RFC 3501 7.4.1).
    """

    states: frozenset[str]
    run: Handler
    expunges: bool = True


#: Commands that have a UID form; C{UID EXPUNGE} is UIDPLUS's.
_UID_COMMANDS = {"FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE"}


def quickAck(transport: Any) -> None:
    """
    Acknowledge what was received at once. A client that sends a literal
    and then, in a second write, the rest of its command line has that
    small write held back (Nagle) until the literal is acknowledged; a
    delayed ACK made every APPEND wait some 40 ms for its own CRLF.
    """
    option = getattr(socket, "TCP_QUICKACK", None)
    getHandle = getattr(transport, "getHandle", None)
    if option is None or getHandle is None:
        return
    try:
        getHandle().setsockopt(socket.IPPROTO_TCP, option, 1)
    except (OSError, AttributeError, TypeError):
        # Not a TCP socket (TLS in memory, a test transport).
        pass


@implementer(IPushProducer)
class IMAPFraming(LineQueue, IMAP4Server):
    """
    One IMAP session's framing and dispatch; L{IMAPServer} adds the
    command handlers.
    """

    #: The commands by name (set by L{IMAPServer}).
    commands: ClassVar[Mapping[str, Command]] = {}

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
        account = self.account
        assert account is not None
        if not sync or self._knownTarget(box, account, size):
            if sync:
                self.sendContinuationRequest(b"Ready for literal data")
            self._read(Literal(size, self.factory.store.stage()))
            return
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

    def _knownTarget(self, box: str, account: IMAPAccount, size: int) -> bool:
        """
        May an APPEND of C{size} bytes to C{box} be invited without asking
        the store first: it is the selected folder (it exists), and there
        is no quota or the message is small (no more than a literal held
        in memory)? The delivery decides in the end, and refuses as the
        check would, only after the message is sent.
        """
        selected = self.selected
        if selected is None or (
            account.quota is not None and size > self.factory.maxLiteralSize
        ):
            return False
        try:
            return selected.name == checkName(box)
        except CommandFailed:
            return False

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
            rest = data[need:]
            if not rest:
                quickAck(self.transport)
            self._gotLiteral(literal)
            return rest

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
                command = self.commands.get(name)
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
        self._wake()

    def _folderTold(self, delta: Delta) -> None:
        mailbox = self.selected
        if mailbox is None:
            return
        mailbox.told(delta)
        self._wake()

    def _wake(self) -> None:
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
            mailbox.reading()
            changes = await store.changesSince(
                mailbox.owner, mailbox.name, mailbox.modseq
            )
        if self.selected is not mailbox or self._closed:
            return
        changes = mailbox.withTold(changes)
        if mailbox.dirty:
            # A change was not told of: read again before answering.
            self._announceAgain = True
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
