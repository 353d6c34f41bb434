"""
The relay: where a domain's mail goes (MX selection) and the SMTP client
that takes it there, one connection carrying several messages.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import ipaddress
import re
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from attrs import define, field, frozen
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
)
from twisted.internet.error import ConnectError, ConnectionDone
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.ssl import CertificateOptions
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.mail.smtp import (
    SUCCESS,
    ESMTPClient,
    LOGINAuthenticator,
    PLAINAuthenticator,
    SMTPClientError,
)
from twisted.python.failure import Failure

from appnet.dns.client import MailExchanger
from appnet.dns.errors import NameNotFound, NoRecords, NullMX, TemporaryFailure
from appnet.dns.interfaces import IDNSResolver
from appnet.errors import AppnetError
from appnet.files import InThread, inline
from appnet.mail.client import StuffingClient, tlsOptions
from appnet.mail.lines import DotStuffer, noDelay

__all__ = [
    "DestinationFailed",
    "Hop",
    "Relay",
    "RelayClient",
    "RelaySettings",
    "Reply",
    "SessionFailed",
    "Transaction",
]

#: Messages up to this size are read whole, in a file thread, while the
#: server answers MAIL, RCPT and DATA, and go out with their final dot in
#: one write; larger ones stream with back-pressure.
SMALL = 64 * 1024

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")
_REPLY = re.compile(
    r"^(\d{3}) ([245]\.\d{1,3}\.\d{1,3}) (.*?)(?: \(remote ([^\s\[]+)\[([^\]]*)\]\))?$",
    re.DOTALL,
)


@frozen
class Reply:
    """
    What became of a recipient at one attempt, as an SMTP reply: a remote
    server's, or one this node made up for a local failure (C{host} is
    then C{None}).

    @ivar enhanced: the RFC 3463 status code (C{"5.1.1"}).
    @ivar host: the remote server's name and address, if it replied.
    """

    code: int
    enhanced: str
    text: str
    host: tuple[str, str] | None = None

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def success(self) -> bool:
        return 200 <= self.code < 300

    @classmethod
    def fromServer(cls, code: int, response: bytes | str, hop: Hop | None) -> Reply:
        """
        A server's reply: its enhanced code if it gave one (RFC 2034),
        else the class's generic one.
        """
        if isinstance(response, bytes):
            response = response.decode("utf-8", "replace")
        text = " ".join(line.strip() for line in response.splitlines()).strip()
        match = _ENHANCED.match(text)
        if match is not None and match.group(1) == str(code)[0]:
            enhanced = ".".join(match.group(1, 2, 3))
            text = text[match.end() :]
        else:
            enhanced = f"{str(code)[0]}.0.0" if code >= 200 else "4.0.0"
        host = (hop.host, hop.address) if hop is not None else None
        return cls(code, enhanced, text or "(no text)", host)

    def __str__(self) -> str:
        tail = f" (remote {self.host[0]}[{self.host[1]}])" if self.host else ""
        return f"{self.code} {self.enhanced} {self.text}{tail}"

    @classmethod
    def parse(cls, stored: str) -> Reply:
        """Read back a reply stored as C{str(reply)}."""
        match = _REPLY.match(stored)
        if match is None:
            return cls(451, "4.0.0", stored)
        host = (match.group(4), match.group(5)) if match.group(4) else None
        return cls(int(match.group(1)), match.group(2), match.group(3), host)


def temporary(enhanced: str, text: str) -> Reply:
    """A local temporary failure."""
    return Reply(451, enhanced, text)


def permanent(enhanced: str, text: str) -> Reply:
    """A local permanent failure."""
    return Reply(550, enhanced, text)


class DestinationFailed(AppnetError):
    """
    No mail server of a destination can be tried now, or ever.

    @ivar reply: what to record for its recipients.
    """

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class SessionFailed(AppnetError):
    """
    A connection to one mail server did not reach the point of taking
    mail (refused, timed out, greeting or EHLO refused, TLS or AUTH
    failed).

    @ivar reply: what to record if no other server is left.
    @ivar tlsBroken: the TLS handshake itself failed (retry in plain
        text, opportunistic TLS only).
    """

    def __init__(self, reply: Reply, tlsBroken: bool = False) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.tlsBroken = tlsBroken


@frozen
class Hop:
    """
    One mail server to try: its name (for logs, DSNs and TLS), an address
    and a port.
    """

    host: str
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}[{self.address}]:{self.port}"


@frozen
class Transaction:
    """
    One message for some recipients at one destination.

    @ivar open: opens the message (CRLF line ends) for reading.
    @ivar after: when given, the body (and so the final dot, after which
        the server has the message) waits for it to fire; MAIL, RCPT and
        DATA go out meanwhile.
    @ivar data: the message's bytes, when the queue holds them already
        (then C{open} is not called).
    """

    sender: str
    recipients: tuple[str, ...]
    size: int
    open: Callable[[], BinaryIO]
    after: Deferred[None] | None = None
    data: bytes | None = None


@frozen
class TransactionResult:
    """
    Every recipient's reply, and whether the message should be tried at
    another server (the session failed before the message was taken).
    """

    replies: dict[str, Reply]
    tryElsewhere: bool = False


@frozen
class RelaySettings:
    """
    How the relay talks to other servers (from C{[mail]}).
    """

    hostname: str
    port: int = 25
    connectTimeout: float = 30.0
    timeout: float = 300.0
    reuse: int = 100
    tls: str = "may"
    bindAddress: str | None = None
    smarthost: tuple[str, int] | None = None
    smarthostUser: str | None = None
    smarthostPassword: str | None = None
    smarthostTLS: str = "verify"
    smarthostTrust: bytes | None = None


class RelayClient(StuffingClient):
    """
    One outbound SMTP session that sends messages one after another.

    L{ready} fires once the session can take a message (or fails with
    L{SessionFailed}); L{send} runs one transaction; L{quit} ends the
    session politely; L{closed} fires when the connection is gone.

    Twisted offers no public hook for C{SMTPClient}'s reply dispatch, so
    this sets its C{_expected}/C{_okresponse}/C{_failresponse}, C{_from}
    and calls C{_disconnectFromServer}; C{tests/mail/test_twistedpins.py}
    fails if Twisted changes them.
    """

    _log = Logger()
    debug = True

    def __init__(
        self,
        hop: Hop,
        settings: RelaySettings,
        clock: Any,
        context: Any,
        requireTLS: bool,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        secret = password.encode() if password is not None else None
        ESMTPClient.__init__(self, secret, context, settings.hostname)
        self.hop = hop
        self.heloFallback = True
        self.requireTransportSecurity = requireTLS
        self.requireAuthentication = username is not None
        self.timeout = settings.timeout  # type: ignore[assignment]
        self.callLater = clock.callLater  # type: ignore[method-assign]
        self.reuse = settings.reuse
        if username is not None:
            self.registerAuthenticator(PLAINAuthenticator(username.encode()))
            self.registerAuthenticator(LOGINAuthenticator(username.encode()))
        self.ready: Deferred[RelayClient] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self.serverExtensions: dict[bytes, bytes | None] = {}
        self.sent = 0
        self.usable = False
        self.tlsActive = False
        self._startedTLS = False
        self._transaction: Transaction | None = None
        self._result: Deferred[TransactionResult] | None = None
        self._pending: tuple[Transaction, Deferred[TransactionResult]] | None = None
        self._phase = "idle"
        self._file: BinaryIO | None = None
        #: A small message's bytes, being read (see L{SMALL}).
        self._small: Deferred[bytes] | None = None
        self._quitting = False
        #: The replies still owed to a pipelined batch, in order: what
        #: each answers, and the recipient for RCPT.
        self._awaiting: deque[tuple[str, bytes | None]] = deque()
        #: The message's outcome is known (MAIL refused); the replies
        #: left in the batch are read and dropped.
        self._draining = False

    # Session set-up.

    def connectionMade(self) -> None:
        # The final dot follows the body while it is still unacknowledged:
        # with Nagle's algorithm it would wait for the server's delayed
        # ACK, some 40 ms per message.
        noDelay(self.transport)
        super().connectionMade()

    def esmtpState_serverConfig(self, code: int, resp: bytes) -> None:
        self.serverExtensions = {}
        for line in resp.splitlines()[1:]:
            words = line.split(None, 1)
            if words:
                key = words[0].upper()
                self.serverExtensions[key] = words[1] if len(words) > 1 else None
        super().esmtpState_serverConfig(code, resp)

    def esmtpState_starttls(self, code: int, resp: bytes) -> None:
        # Whatever the server sent after its 220 came before the handshake
        # and cannot be trusted (a reply injected in plain text would be
        # read as the answer to the EHLO that follows): it is dropped.
        self.clearLineBuffer()
        self._startedTLS = True
        self.tlsActive = True
        super().esmtpState_starttls(code, resp)

    def smtpState_from(self, code: int, resp: bytes) -> None:
        # Twisted calls this once the session is set up and after every
        # RSET: the session is idle until send() gives it a message.
        self._phase = "idle"
        self._failresponse = self._failedIdle
        if not self.usable:
            self.usable = True
            self.ready.callback(self)
        if self._quitting and self._pending is None:
            # quit() came while RSET was unanswered.
            self.usable = False
            self._disconnectFromServer()
            return
        if self._pending is not None:
            transaction, result = self._pending
            self._pending = None
            self._start(transaction, result)

    def _failedIdle(self, code: int, resp: bytes) -> None:
        self.sendError(SMTPClientError(code, resp))

    # One transaction.

    def send(self, transaction: Transaction) -> Deferred[TransactionResult]:
        """
        Send one message over this session: at once if it is idle, else
        as soon as the previous message's RSET is answered.
        """
        if not self.usable or self._quitting or self._busy:
            raise RuntimeError("the session cannot take a message now")
        result: Deferred[TransactionResult] = Deferred()
        if self._phase == "idle" or (self._phase == "reset" and self.pipelining):
            self._start(transaction, result)
        else:
            self._pending = (transaction, result)
        return result

    @property
    def _busy(self) -> bool:
        return self._result is not None or self._pending is not None

    def _start(
        self, transaction: Transaction, result: Deferred[TransactionResult]
    ) -> None:
        self._transaction = transaction
        self._result = result
        limit = self.serverExtensions.get(b"SIZE")
        if limit and limit.isdigit() and 0 < int(limit) < transaction.size:
            text = f"5.3.4 message size exceeds the server's limit of {int(limit)}"
            reply = Reply.fromServer(552, text, self.hop)
            self._finish({r: reply for r in transaction.recipients})
            return
        if transaction.data is not None and len(transaction.data) <= SMALL:
            self._small = succeed(transaction.data)
        elif self.fileThreads is not None and transaction.size <= SMALL:
            self._small = self.fileThreads(_readAll, transaction.open)
        params = b""
        if b"SIZE" in self.serverExtensions:
            params += b" SIZE=%d" % transaction.size
        if b"8BITMIME" in self.serverExtensions:
            params += b" BODY=8BITMIME"
        self._from = transaction.sender.encode("utf-8")
        mail = b"MAIL FROM:<" + self._from + b">" + params
        if self.pipelining:
            self._startPipelined(mail)
            return
        self._phase = "mail"
        self._expected = [250]
        self._okresponse = self.smtpState_to
        self._failresponse = self.smtpTransferFailed
        self.sendLine(mail)

    @property
    def pipelining(self) -> bool:
        """Whether the server's last EHLO (over TLS, if started) offered PIPELINING."""
        return b"PIPELINING" in self.serverExtensions

    # Pipelining (RFC 2920).

    def _startPipelined(self, mail: bytes) -> None:
        """
        Send MAIL, every RCPT and DATA in one write (after the previous
        message's RSET if its reply is still owed) and read the replies
        in order in L{_pipelinedReply}.
        """
        recipients = self.getMailTo()
        lines = [mail, *(b"RCPT TO:<" + r + b">" for r in recipients), b"DATA"]
        awaiting: list[tuple[str, bytes | None]] = [("mail", None)]
        awaiting += [("rcpt", r) for r in recipients]
        awaiting.append(("data", None))
        if self._phase == "reset":
            awaiting.insert(0, ("rset", None))
        self._awaiting = deque(awaiting)
        self._draining = False
        self.toAddressesResult = []
        self.successAddresses = []
        self._phase = "mail"
        self._expected = range(0, 1000)
        self._okresponse = self._pipelinedReply
        self._failresponse = self._pipelinedReply
        self._writeLines(lines)

    def _writeLines(self, lines: Sequence[bytes]) -> None:
        assert self.transport is not None
        if self.debug:
            for line in lines:
                self.log.append(b">>> " + line)
        self.transport.write(b"".join(line + b"\r\n" for line in lines))

    def _pipelinedReply(self, code: int, resp: bytes) -> None:
        kind, address = self._awaiting.popleft()
        if code == 421:
            self._closing(kind, code, resp)
            return
        if kind == "rset":
            if code not in SUCCESS:
                # The server lost track of the session: it is not used
                # again; the message is tried again (elsewhere first).
                self.sendError(SMTPClientError(code, resp, self.log.str()))
            return
        if kind == "mail":
            if code == 250:
                self._phase = "rcpt"
                return
            # Every recipient gets the MAIL reply; the RCPT and DATA
            # replies that follow answer commands the server refused to
            # take in this transaction, and are read and dropped.
            self._phase = "mail"
            self._draining = True
            self.sentMail(code, resp, 0, [], self.log)
            return
        if kind == "rcpt":
            if not self._draining:
                assert address is not None
                self.toAddressesResult.append((address, code, resp))
                if code in SUCCESS:
                    self.successAddresses.append(address)
            if self._awaiting[0][0] != "rcpt":
                self._phase = "data"
            return
        if kind == "data" and code == 354:
            if self.successAddresses and not self._draining:
                self._failresponse = self.smtpTransferFailed
                self.smtpState_data(code, resp)
                return
            # RFC 2920 section 3.1: a server that takes DATA although no
            # recipient was accepted gets an empty message (a lone dot),
            # whose reply is read and dropped.
            self._writeLines([b"."])
            self._awaiting.append(("dot", None))
            return
        # DATA refused (as it must be when no RCPT was accepted), or the
        # reply to the lone dot.
        if not self.successAddresses:
            self._phase = "rcpt"
        self.smtpState_msgSent(code, resp)

    def _closing(self, kind: str, code: int, resp: bytes) -> None:
        """
        The server said 421 in the middle of a batch: it is closing the
        connection. Recipients it refused keep their replies; the others
        get the 421 and the message may be tried elsewhere.
        """
        self._awaiting.clear()
        self.usable = False
        self._expected = []
        self._okresponse = self._failresponse = self._ignore
        if self._result is not None and self._transaction is not None:
            reply = Reply.fromServer(code, resp, self.hop)
            refused = {} if kind in ("rset", "mail") else self._refused()
            self._finish(
                {r: refused.get(r, reply) for r in self._transaction.recipients},
                tryElsewhere=True,
            )
        assert self.transport is not None
        self.transport.loseConnection()

    def _refused(self) -> dict[str, Reply]:
        return {
            address.decode("utf-8"): Reply.fromServer(c, r, self.hop)
            for address, c, r in self.toAddressesResult
            if c not in SUCCESS
        }

    def _ignore(self, code: int, resp: bytes) -> None:
        pass

    def getMailTo(self) -> list[bytes]:
        assert self._transaction is not None
        return [r.encode("utf-8") for r in self._transaction.recipients]

    def getMailData(self) -> BinaryIO:
        assert self._transaction is not None
        self._file = self._transaction.open()
        return self._file

    def smtpState_to(self, code: int, resp: bytes) -> None:
        self._phase = "rcpt"
        super().smtpState_to(code, resp)

    def smtpState_toOrData(self, code: int, resp: bytes) -> None:
        super().smtpState_toOrData(code, resp)
        if self._expected == [354]:
            self._phase = "data"

    def smtpState_data(self, code: int, resp: bytes) -> None:
        self._phase = "dot"
        transaction = self._transaction
        after = transaction.after if transaction is not None else None
        if after is not None and not after.called:
            # Waited on, never given a result of ours: a callback of our
            # own that passes the result on.
            def opened(result: object) -> object:
                self._dataNow(transaction, code, resp)
                return result

            after.addBoth(opened)
            return
        self._dataNow(transaction, code, resp)

    def _dataNow(self, transaction: Transaction | None, code: int, resp: bytes) -> None:
        if self.transport is None or self._transaction is not transaction:
            return  # Gone, or the transaction ended, while waiting.
        small, self._small = self._small, None
        if small is None:
            super().smtpState_data(code, resp)
            return
        # As SMTPClient.smtpState_data leaves it: the final reply next.
        self._expected = SUCCESS
        self._okresponse = self.smtpState_msgSent
        small.addCallbacks(self._sendSmall, self._smallFailed)

    def _sendSmall(self, data: bytes) -> None:
        """The whole body, dot-stuffed, and the final dot: one write."""
        if self.transport is None or self._result is None:
            return
        self.resetTimeout()
        stuffer = DotStuffer(lineEnds=True)
        body = stuffer(data) + stuffer.flush()
        end = b".\r\n" if body.endswith(b"\n") else b"\r\n.\r\n"
        self.transport.write(body + end)

    def _smallFailed(self, failure: Failure) -> None:
        if self._result is not None:
            self.sendError(failure.value)

    def _dropSmall(self) -> None:
        small, self._small = self._small, None
        if small is not None:
            # Read for a transaction that ended before DATA: unused.
            small.addErrback(lambda _: None)

    def finishedFileTransfer(self, lastsent: bytes) -> None:
        self._closeFile()
        super().finishedFileTransfer(lastsent)

    def _closeFile(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def sentMail(
        self,
        code: int,
        resp: bytes,
        numOk: int,
        addresses: Sequence[tuple[bytes, int, bytes]],
        log: Any,
    ) -> None:
        transaction = self._transaction
        assert transaction is not None
        final = Reply.fromServer(code, resp, self.hop)
        rcpt = {
            address.decode("utf-8"): Reply.fromServer(c, r, self.hop)
            for address, c, r in addresses
        }
        replies: dict[str, Reply] = {}
        for recipient in transaction.recipients:
            own = rcpt.get(recipient)
            if self._phase == "mail" or own is None:
                replies[recipient] = final
            elif not own.success:
                replies[recipient] = own
            else:
                replies[recipient] = final
        # A refused MAIL or DATA, or a temporary failure of the whole
        # message, may go better at another server.
        tryElsewhere = self._phase in ("mail", "data", "dot") and 400 <= code < 500
        self._finish(replies, tryElsewhere)

    def _finish(self, replies: dict[str, Reply], tryElsewhere: bool = False) -> None:
        self._closeFile()
        self._dropSmall()
        result, self._result = self._result, None
        self._transaction = None
        self.sent += 1
        if result is not None:
            result.callback(TransactionResult(replies, tryElsewhere))

    def smtpState_msgSent(self, code: int, resp: bytes) -> None:
        # The server took the message: RFC 5321 4.1.1.4 has the end of
        # the data clear the transaction, so the next MAIL needs no RSET.
        completed = self._phase == "dot" and code in SUCCESS
        if self._from is not None and self._result is not None:
            self.sentMail(
                code, resp, len(self.successAddresses), self.toAddressesResult, self.log
            )
        self.toAddressesResult = []
        self._from = None
        self._phase = "reset"
        self._draining = False
        if self._quitting and self._pending is None:
            self.usable = False
            self._disconnectFromServer()
            return
        if completed:
            self.smtpState_from(code, resp)
            return
        self.sendLine(b"RSET")
        self._expected = list(SUCCESS)
        self._okresponse = self.smtpState_from
        self._failresponse = self._failedIdle
        if self._pending is not None and self.pipelining:
            # The next message's batch follows the RSET at once.
            transaction, result = self._pending
            self._pending = None
            self._start(transaction, result)

    # Ending.

    def quit(self) -> None:
        """Say QUIT now if idle, else after the message being sent."""
        self._quitting = True
        if self._phase == "idle" and not self._busy and self.transport is not None:
            self.usable = False
            self._disconnectFromServer()

    def abort(self) -> None:
        """Drop the connection."""
        self.usable = False
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def sendError(self, exc: Exception) -> None:
        self._fail(exc)
        super().sendError(exc)

    def _fail(self, exc: Exception | Failure) -> None:
        self.usable = False
        error = exc.value if isinstance(exc, Failure) else exc
        text = _describe(error)
        where = (self.hop.host, self.hop.address)
        if not self.ready.called:
            code = getattr(error, "code", -1)
            if isinstance(code, int) and code >= 400:
                said = Reply.fromServer(code, getattr(error, "resp", b""), self.hop)
                enhanced = "4" + said.enhanced[1:]
                reply = Reply(451, enhanced, f"server said {code} {said.text}", where)
            else:
                reply = Reply(451, "4.4.2", f"{text} with {self.hop}")
            broken = self._startedTLS and code == -1
            self.ready.errback(SessionFailed(reply, tlsBroken=broken))
            return
        if self._result is not None:
            assert self._transaction is not None
            # Lost before the final reply. After the final dot it is
            # unknown whether the server took the message: it is tried
            # again later (see appnet.mail.queue on the duplicate this can
            # make), never at another server at once.
            phase = self._phase.upper()
            reply = Reply(451, "4.4.2", f"{text} during {phase}", where)
            self._finish(
                dict.fromkeys(self._transaction.recipients, reply),
                tryElsewhere=self._phase != "dot",
            )
        if self._pending is not None:
            transaction, result = self._pending
            self._pending = None
            reply = Reply(451, "4.4.2", f"{text} before MAIL", where)
            result.callback(
                TransactionResult(dict.fromkeys(transaction.recipients, reply), True)
            )

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        super().connectionLost(reason)
        self._closeFile()
        self._fail(reason)
        if not self.closed.called:
            self.closed.callback(None)


def _readAll(open: Callable[[], BinaryIO]) -> bytes:
    """A small message's bytes (in a file thread; its size is known)."""
    with open() as f:
        return f.read()


def _describe(error: BaseException) -> str:
    if isinstance(error, SMTPClientError):
        resp: Any = error.resp
        text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
        return " ".join(text.split()) or type(error).__name__
    if isinstance(error, ConnectionDone):
        return "connection closed"
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


@define
class Relay:
    """
    Finds the mail servers of a destination and opens sessions to them.

    @ivar isSelf: tells whether a hop is this node (its MX listener).
    """

    _reactor: Any
    _resolver: IDNSResolver
    _settings: RelaySettings
    _isSelf: Callable[[Hop], bool] = lambda hop: False
    #: Runs message file reads (default: the reactor's thread pool, or
    #: inline for a reactor without threads, such as a test's Clock).
    _blocking: InThread | None = None
    _noTLS: dict[str, float] = field(factory=dict)
    #: The lookups in flight, by domain: connections opened together
    #: for one destination share one.
    _looking: dict[str, list[Deferred[list[Hop]]]] = field(factory=dict)
    _log = Logger()

    #: A host whose TLS handshake failed is talked to in plain text for
    #: this long.
    NO_TLS_FOR = 3600.0

    @property
    def settings(self) -> RelaySettings:
        return self._settings

    async def stop(self) -> None:
        """Abandon DNS lookups in flight."""
        stop = getattr(self._resolver, "stop", None)
        if stop is not None:
            await stop()

    def destination(self, domain: str) -> str:
        """
        The key grouping a recipient domain's mail: the domain, or the
        smarthost that takes everything.
        """
        smarthost = self._settings.smarthost
        if smarthost is not None:
            return f"[{smarthost[0]}]:{smarthost[1]}"
        return domain

    async def hops(self, domain: str) -> list[Hop]:
        """
        The servers to try for C{domain}, in order; a lookup already in
        flight for C{domain} is shared.

        @raise DestinationFailed: permanent (no such domain, null MX, mail
            loops back here) or temporary (DNS failed; no server address).
        """
        waiters = self._looking.get(domain)
        if waiters is not None:
            waiter: Deferred[list[Hop]] = Deferred()
            waiters.append(waiter)
            return await waiter
        self._looking[domain] = waiters = []
        try:
            found = await self._hops(domain)
        except BaseException:
            failure = Failure()
            del self._looking[domain]
            for waiter in waiters:
                waiter.errback(failure)
            raise
        del self._looking[domain]
        for waiter in waiters:
            waiter.callback(list(found))
        return found

    async def _hops(self, domain: str) -> list[Hop]:
        smarthost = self._settings.smarthost
        if smarthost is not None:
            host, port = smarthost
            addresses = self._usable(await self._addresses(host))
            return [Hop(host, a, port) for a in addresses]
        try:
            exchangers = await self._resolver.lookupMX(domain)
        except NoRecords:
            exchangers = [MailExchanger(0, domain)]
        except NullMX:
            raise DestinationFailed(
                Reply(556, "5.1.10", f"domain {domain} accepts no mail (null MX)")
            ) from None
        except NameNotFound:
            raise DestinationFailed(
                permanent(
                    "5.1.2",
                    f"DNS lookup of MX for {domain} failed: no such domain (NXDOMAIN)",
                )
            ) from None
        except TemporaryFailure as e:
            raise DestinationFailed(
                temporary("4.4.3", f"DNS lookup of MX for {domain} failed: {e.reason}")
            ) from None
        port = self._settings.port
        hops: list[Hop] = []
        cutoff: int | None = None
        problems: list[Reply] = []
        for mx in exchangers:
            if cutoff is not None and mx.preference >= cutoff:
                break
            if mx.host.lower() == self._settings.hostname.lower():
                cutoff = mx.preference
                break
            try:
                addresses = self._usable(
                    list(mx.addresses) or await self._addresses(mx.host)
                )
            except DestinationFailed as e:
                problems.append(e.reply)
                continue
            these = [Hop(mx.host, a, port) for a in addresses]
            if any(self._isSelf(hop) for hop in these):
                cutoff = mx.preference
                break
            hops.extend(these)
        if hops:
            return hops
        if cutoff is not None:
            raise DestinationFailed(
                permanent("5.4.6", f"mail for {domain} loops back to myself")
            )
        if problems and all(p.permanent for p in problems):
            raise DestinationFailed(
                permanent("5.4.4", f"no address for any mail server of {domain}")
            )
        raise DestinationFailed(
            problems[0] if problems else temporary("4.4.3", f"no server for {domain}")
        )

    async def _addresses(self, host: str) -> list[str]:
        try:
            addresses = await self._resolver.lookupAddresses(host)
        except (NameNotFound, NoRecords) as e:
            why = (
                "no such domain (NXDOMAIN)"
                if isinstance(e, NameNotFound)
                else "no A or AAAA records"
            )
            raise DestinationFailed(
                permanent("5.4.4", f"DNS lookup of the address of {host} failed: {why}")
            ) from None
        except TemporaryFailure as e:
            raise DestinationFailed(
                temporary(
                    "4.4.3", f"DNS lookup of the address of {host} failed: {e.reason}"
                )
            ) from None
        return addresses

    def _usable(self, addresses: Sequence[str]) -> list[str]:
        """Those addresses a socket bound to C{bind_address} can reach."""
        bind = self._settings.bindAddress
        if bind is None:
            return list(addresses)
        version = ipaddress.ip_address(bind).version
        return [a for a in addresses if ipaddress.ip_address(a).version == version]

    async def connect(self, hop: Hop) -> RelayClient:
        """
        A session with C{hop}, ready to take mail.

        @raise SessionFailed: if it cannot be had.
        """
        try:
            return await self._connect(hop, plain=self._plainOnly(hop))
        except SessionFailed as e:
            if not e.tlsBroken or self._settings.smarthost is not None:
                raise
        self._log.info("TLS with {hop} failed; retrying in plain text", hop=str(hop))
        self._noTLS[hop.address] = self._reactor.seconds() + self.NO_TLS_FOR
        return await self._connect(hop, plain=True)

    def _fileThreads(self) -> InThread:
        if self._blocking is not None:
            return self._blocking
        reactor = self._reactor
        if not IReactorThreads.providedBy(reactor):
            return inline

        def threaded(fn: Any, *args: Any) -> Deferred[Any]:
            return deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)

        return threaded

    def _plainOnly(self, hop: Hop) -> bool:
        until = self._noTLS.get(hop.address)
        if until is None:
            return False
        if until < self._reactor.seconds():
            del self._noTLS[hop.address]
            return False
        return True

    async def _connect(self, hop: Hop, plain: bool) -> RelayClient:
        settings = self._settings
        if settings.smarthost is not None:
            mode = settings.smarthostTLS
            context = (
                None
                if mode == "none"
                else tlsOptions(hop.host, settings.smarthostTrust, mode == "verify")
            )
            client = RelayClient(
                hop,
                settings,
                self._reactor,
                context,
                requireTLS=mode != "none",
                username=settings.smarthostUser,
                password=settings.smarthostPassword,
            )
        else:
            context = None
            if settings.tls == "may" and not plain:
                context = CertificateOptions(verify=False)
            client = RelayClient(hop, settings, self._reactor, context, False)
        client.fileThreads = self._fileThreads()
        version = ipaddress.ip_address(hop.address).version
        endpointType = TCP6ClientEndpoint if version == 6 else TCP4ClientEndpoint
        bind = (settings.bindAddress, 0) if settings.bindAddress else None
        endpoint = endpointType(
            self._reactor,
            hop.address,
            hop.port,
            timeout=settings.connectTimeout,
            bindAddress=bind,
        )
        try:
            await connectProtocol(endpoint, client)
        except ConnectError as e:
            reason = _describe(e)
            raise SessionFailed(
                temporary("4.4.1", f"connect to {hop} failed: {reason}")
            ) from None
        # The greeting, EHLO, STARTTLS and AUTH each have the reply
        # timeout; a session that never gets there fails with it.
        return await client.ready
