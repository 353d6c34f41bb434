"""
The SMTP server: the MX role (mail for local domains, no AUTH) and the
submission role (RFC 6409: AUTH required, any destination).

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import attrs
from attrs import frozen
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ISSLTransport, ITLSTransport
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from appnet.address import isLoopback
from appnet.auth import Authenticator, LoginThrottled
from appnet.errors import QuotaExceeded
from appnet.faults import NO_FAULTS, Faults
from appnet.listen import hostOf
from appnet.mail.catcher import envelopeHeader
from appnet.mail.data import DataDecoder
from appnet.mail.delivery import (
    Delivered,
    Delivery,
    Envelope,
    newId,
    receivedHeader,
    rfc5322Date,
)
from appnet.mail.envelope import (
    EnvelopeSyntaxError,
    Mailbox,
    parseParameters,
    parsePath,
)
from appnet.mail.lines import LineQueue, noDelay
from appnet.mail.mailauth import MailAuth
from appnet.mail.realm import IMailAccount, MailRealm
from appnet.mail.routing import Rejected, Route, Router
from appnet.mail.sasl import (
    MECHANISMS,
    SASLCancelled,
    SASLDialogue,
    SASLError,
)
from appnet.mail.spf import SPFPolicy, SPFResult
from appnet.status import Status
from appnet.store.interfaces import IStagedMessage, IStore
from appnet.tls import LiveTLS
from appnet.trace import MaskRule

__all__ = ["SMTPRole", "SMTPServer", "SMTPServerFactory", "SMTP_MASK", "UsageCache"]

#: What C{--trace smtp} must not log: AUTH's initial response, the
#: responses after C{334}, and message bodies after C{354}.
SMTP_MASK = MaskRule(
    secretCommands={b"AUTH": 1},
    challenges=(b"334",),
    bodyStart=(b"354",),
)

#: Errors after which a client is disconnected.
MAX_ERRORS = 20

#: Collected messages larger than this are written to the staged file
#: in a thread.
INLINE_WRITE = 256 * 1024

#: Reply lines written in one piece at most (C{--trace} logs a dozen lines
#: of one write and counts the rest).
MAX_BATCHED_LINES = 12


@frozen
class SMTPRole:
    """
    What distinguishes the MX role from submission.

    @ivar service: the service name (C{"smtp"} or C{"submission"}).
    @ivar submission: AUTH is offered and required; remote recipients are
        queued; missing Date and Message-ID are added (RFC 6409 8.2, 8.3).
    @ivar senderMustMatch: an authenticated sender may only use its own
        addresses in MAIL FROM.
    @ivar catching: the mail catcher's role (L{appnet.mail.catcher}): AUTH
        offered but not required, the envelope kept in the message.
    """

    service: str
    submission: bool
    maxRecipients: int = 100
    senderMustMatch: bool = True
    catching: bool = False


class _Transaction:
    """One mail transaction: MAIL, RCPTs, DATA."""

    def __init__(self, sender: Mailbox | None, size: int | None) -> None:
        self.sender = sender
        self.declaredSize = size
        self.local: dict[str, int | None] = {}
        self.remote: dict[str, None] = {}
        self.recipients: list[str] = []
        self.attempts = 0
        self.spfHeader = b""
        self.spf: SPFResult | None = None
        self.spfIdentity: tuple[str, str] | None = None


def _overQuota(owner: str, quota: int, used: int, size: int | None) -> Rejected | None:
    """
    RCPT's quota check (a courtesy: the delivery's, in its transaction, is
    the authoritative one): the refusal when C{owner}'s mailbox is full,
    or too full for the size MAIL declared.
    """
    if used >= quota:
        return Rejected(452, "4.2.2", f"<{owner}>: Mailbox full")
    if size is not None and used + size > quota:
        return Rejected(552, "5.2.2", f"<{owner}>: Mailbox full: message too large")
    return None


def _printable(text: str) -> str:
    """
    Client text fit to echo in a reply: RFC 5321 reply text is printable
    ASCII, so control characters (DEL, NUL, ESC) become C{?}.
    """
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


class SMTPServer(LineQueue, SASLDialogue, TimeoutMixin, Protocol):
    """
    One SMTP session, in either role.

    @ivar mode: the state a line is handed to (C{state_COMMAND} or
        C{state_AUTH}); message bodies are read raw (L{LineQueue.readRaw}).
    """

    factory: SMTPServerFactory
    maxLineLength = 12288  # RFC 4954 4: AUTH lines up to 12288 octets.
    _log = Logger()

    def __init__(self, factory: SMTPServerFactory) -> None:
        self.factory = factory
        self.host = factory.hostname.encode("ascii")
        self.timeout = factory.idleTimeout
        self.callLater = factory.clock.callLater  # type: ignore[method-assign]
        self.mode = "COMMAND"
        self._heloName: str | None = None
        self._esmtp = False
        self._tls = False
        self._account: str | None = None
        self._transaction: _Transaction | None = None
        self._errors = 0
        self._staged: IStagedMessage | None = None
        self._client = "unknown"
        self._closed = False
        self._greeting: Any = None
        self._replies: list[bytes] = []
        self._spf: SPFPolicy | None = None
        self._verify = False

    # Connection.

    def connectionMade(self) -> None:
        self._client = hostOf(self.transport.getPeer())
        noDelay(self.transport)
        self._tls = ISSLTransport.providedBy(self.transport)
        spf = self.factory.spf
        if not self.factory.role.submission and spf is not None:
            # Decided once: a client in [mail] spf_skip is never checked,
            # and its MAIL is answered without a detour.
            self._spf = None if spf.skipped(self._client) else spf
        auth = self.factory.mailauth
        if not self.factory.role.submission and auth is not None and auth.verify:
            self._verify = not auth.skipped(self._client)
        self.mode = "COMMAND"
        faults = self.factory.faults
        slow = faults.take("smtp", "greeting", transport=self.transport)
        if slow is not None:
            self._greeting = faults.clock.callLater(slow.delay, self._greet)
        else:
            self._greet()
        self.setTimeout(self.timeout)
        self._log.info(
            "{service} connection from {client}",
            service=self.factory.role.service,
            client=self._client,
        )

    def _greet(self) -> None:
        self._greeting = None
        self.sendCode(220, self.host + b" ESMTP appnet")

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._closed = True
        if self._greeting is not None and self._greeting.active():
            self._greeting.cancel()
        self._replies = []
        self.setTimeout(None)
        self._dropStaged()

    def timeoutConnection(self) -> None:
        self.sendCode(421, b"4.4.2 " + self.host + b" Error: timeout exceeded")
        self._close()

    def _close(self) -> None:
        self.flushReplies()
        self.transport.loseConnection()

    # Replies.

    def sendCode(self, code: int, message: bytes = b"") -> None:
        """
        Send a reply, or keep it to send with the next ones while input is
        being handled (L{flushReplies}).
        """
        lines = message.splitlines() or [b""]
        last = len(lines) - 1
        data = [
            b"%03d%s%s\r\n" % (code, b" " if i == last else b"-", line)
            for i, line in enumerate(lines)
        ]
        if len(self._replies) + len(data) > MAX_BATCHED_LINES:
            self.flushReplies()
        self._replies += data
        if not (self._draining or self._held):
            self.flushReplies()

    def flushReplies(self) -> None:
        """
        Write the replies kept so far, in one piece.
        """
        if self._replies and not self._closed and self.transport is not None:
            data, self._replies = b"".join(self._replies), []
            self.transport.write(data)

    def _drain(self) -> None:
        outer = not self._draining
        super()._drain()
        if outer and not self._held:
            # Waiting for the client now: it must have every reply.
            self.flushReplies()

    def reply(self, code: int, enhanced: str, text: str) -> None:
        """
        Send a reply with its enhanced status code on every line.
        """
        lines = text.split("\n")
        encoded = "\n".join(f"{enhanced} {line}" for line in lines)
        self.sendCode(code, encoded.encode("utf-8", "replace"))

    def error(self, code: int, enhanced: str, text: str) -> None:
        """
        Send an error reply; disconnect after too many.
        """
        self.reply(code, enhanced, text)
        self._errors += 1
        if self._errors >= MAX_ERRORS:
            self.reply(421, "4.7.0", f"{self.factory.hostname} Error: too many errors")
            self._close()

    def lineTooLong(self) -> None:
        if self.mode == "AUTH":
            self.mode = "COMMAND"
            self.abortSASL()
        self.error(500, "5.5.6", "Error: line too long")

    # Dispatch.

    def lineReceived(self, line: bytes) -> None:
        self.resetTimeout()
        getattr(self, "state_" + self.mode)(line)

    def state_COMMAND(self, line: bytes) -> None:
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError:
            self.error(500, "5.5.2", "Error: command contains non-ASCII bytes")
            return
        if not text:
            self.error(500, "5.5.2", "Error: bad syntax")
            return
        verb, _, rest = text.partition(" ")
        handler = getattr(self, "smtp_" + verb.upper(), None)
        if handler is None:
            self.error(500, "5.5.2", "Error: command not recognized")
            return
        if verb.upper() in ("MAIL", "RCPT", "DATA") and self._faulted(verb.upper()):
            return
        handler(rest.strip())

    def _faulted(self, point: str) -> bool:
        """Answer a scripted fault (L{appnet.faults}) at C{point}, if any."""
        fault = self.factory.faults.take("smtp", point, transport=self.transport)
        if fault is None:
            return False
        if fault.action == "drop":
            self.transport.loseConnection()
            return True
        code = fault.code or 451
        enhanced = f"{code // 100}.0.0"
        self.reply(code, enhanced, fault.text or "Error: scripted failure")
        return True

    def _async(self, work: Coroutine[Any, Any, None], what: str) -> Deferred[None]:
        """
        Run a command's asynchronous part with input held, so pipelined
        commands wait their turn; an unexpected failure is logged and
        answered 451 (nothing acknowledged, nothing lost).
        """
        return self._holding(lambda: Deferred.fromCoroutine(work), what)

    def _holding(self, start: Callable[[], Deferred[Any]], what: str) -> Deferred[None]:
        """
        L{_async} for work given as a function starting it (C{start}) and
        returning its Deferred: input is held first (the work may end at
        once, releasing it).
        """
        self.hold()
        d = start()
        d.addErrback(self._failed, what)
        d.addBoth(self._released)
        return d

    def _failed(self, failure: Failure, what: str) -> None:
        self._log.failure("{what} failed", failure, what=what)
        if not self._closed:
            self.reply(451, "4.3.0", "Error: local error in processing")

    def _released(self, result: object) -> None:
        self.release()

    @property
    def _authOffered(self) -> bool:
        role = self.factory.role
        return role.submission and (
            self._tls or isLoopback(self._client) or role.catching
        )

    @property
    def _canStartTLS(self) -> bool:
        return (
            self.factory.tlsOptions is not None
            and not self._tls
            and ITLSTransport.providedBy(self.transport)
        )

    def _reset(self) -> None:
        self._transaction = None
        self._dropStaged()

    def _dropStaged(self) -> None:
        if self._staged is not None:
            self._staged.discard()
            self._staged = None

    # Session commands.

    def smtp_HELO(self, rest: str) -> None:
        if not rest or " " in rest:
            self.error(501, "5.5.4", "Syntax: HELO hostname")
            return
        self._heloName, self._esmtp = rest, False
        self._reset()
        self.reply(250, "2.0.0", f"{self.factory.hostname}")

    def smtp_EHLO(self, rest: str) -> None:
        if not rest or " " in rest:
            self.error(501, "5.5.4", "Syntax: EHLO hostname")
            return
        self._heloName, self._esmtp = rest, True
        self._reset()
        lines = [
            f"{self.factory.hostname} Hello {_printable(rest)} [{self._client}]",
            "PIPELINING",
            f"SIZE {self.factory.maxMessageSize}",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
        ]
        if self._canStartTLS:
            lines.append("STARTTLS")
        if self._authOffered and self._account is None:
            lines.append("AUTH " + b" ".join(MECHANISMS).decode())
        self.sendCode(250, "\n".join(lines).encode())

    def smtp_RSET(self, rest: str) -> None:
        if rest:
            self.error(501, "5.5.4", "Syntax: RSET")
            return
        self._reset()
        self.reply(250, "2.0.0", "Ok")

    def smtp_NOOP(self, rest: str) -> None:
        self.reply(250, "2.0.0", "Ok")

    def smtp_VRFY(self, rest: str) -> None:
        if not rest:
            self.error(501, "5.5.4", "Syntax: VRFY address")
            return
        # No address harvesting (RFC 5321 3.5.3 allows 252).
        self.reply(252, "2.5.0", "Cannot VRFY user, but will accept message")

    def smtp_EXPN(self, rest: str) -> None:
        self.error(502, "5.5.1", "Error: EXPN not available")

    def smtp_HELP(self, rest: str) -> None:
        self.reply(
            214,
            "2.0.0",
            "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY QUIT"
            + (" STARTTLS" if self._canStartTLS else "")
            + (" AUTH" if self.factory.role.submission else ""),
        )

    def smtp_QUIT(self, rest: str) -> None:
        self.reply(221, "2.0.0", f"{self.factory.hostname} Bye")
        self._close()

    def smtp_BDAT(self, rest: str) -> None:
        self.error(502, "5.5.1", "Error: CHUNKING not offered; use DATA")

    # STARTTLS.

    def smtp_STARTTLS(self, rest: str) -> None:
        if self.factory.tlsOptions is None or not ITLSTransport.providedBy(
            self.transport
        ):
            self.error(502, "5.5.1", "Error: STARTTLS not available")
            return
        if self._tls:
            self.error(503, "5.5.1", "Error: TLS already active")
            return
        if rest:
            self.error(501, "5.5.4", "Syntax: STARTTLS")
            return
        self.reply(220, "2.0.0", "Ready to start TLS")
        # RFC 3207 4.2: forget what was pipelined after STARTTLS (it would
        # otherwise run inside the TLS session) and everything learned from
        # the client so far.
        self.discardInput()
        self._heloName, self._esmtp = None, False
        self._account = None
        self._reset()
        self._tls = True
        self.flushReplies()  # The 220 goes out in the clear.
        self.transport.startTLS(self.factory.tlsOptions)

    # AUTH (RFC 4954).

    def smtp_AUTH(self, rest: str) -> None:
        if not self.factory.role.submission:
            self.error(503, "5.5.1", "Error: authentication not enabled")
            return
        if not self._esmtp:
            self.error(503, "5.5.1", "Error: send EHLO first")
            return
        if self._account is not None:
            self.error(503, "5.5.1", "Error: already authenticated")
            return
        if self._transaction is not None:
            self.error(503, "5.5.1", "Error: MAIL transaction in progress")
            return
        if not self._authOffered:
            self.error(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            )
            return
        mechanism, _, initial = rest.partition(" ")
        mechanism = mechanism.upper()
        if mechanism.encode() not in MECHANISMS:
            self.error(504, "5.5.4", "Unrecognized authentication type")
            return
        self.mode = "AUTH"
        self.beginSASL(mechanism.encode(), initial.encode())

    def state_AUTH(self, line: bytes) -> None:
        self.continueSASL(line)

    def saslPrompt(self, prompt: bytes) -> None:
        self.sendCode(334, prompt)

    def saslRefused(self, error: SASLCancelled | SASLError) -> None:
        self.mode = "COMMAND"
        if isinstance(error, SASLCancelled):
            self.error(501, "5.7.0", "Authentication cancelled")
        else:
            self.error(501, "5.5.2", f"Cannot decode response: {error}")

    def saslComplete(self, user: bytes, password: bytes) -> None:
        self.mode = "COMMAND"
        self._async(self._login(user, password), "SMTP AUTH")

    async def _login(self, username: bytes, password: bytes) -> None:
        portal = self.factory.auth.portalFor(self.factory.realm, self._client)
        try:
            _, avatar, _ = await portal.login(
                UsernamePassword(username, password), None, IMailAccount
            )
        except LoginThrottled:
            self.error(454, "4.7.0", "Too many failed logins; try again later")
            return
        except UnauthorizedLogin:
            self.error(535, "5.7.8", "Authentication credentials invalid")
            return
        assert IMailAccount.providedBy(avatar)
        self._account = avatar.address
        self._log.info(
            "{service}: {client} authenticated as {account}",
            service=self.factory.role.service,
            client=self._client,
            account=self._account,
        )
        self.reply(235, "2.7.0", "Authentication successful")

    # The mail transaction.

    def smtp_MAIL(self, rest: str) -> None:
        if self._heloName is None:
            self.error(503, "5.5.1", "Error: send HELO/EHLO first")
            return
        if self._transaction is not None:
            self.error(503, "5.5.1", "Error: nested MAIL command")
            return
        role = self.factory.role
        if role.submission and self._account is None and not role.catching:
            self.error(530, "5.7.0", "Authentication required")
            return
        if rest[:5].upper() != "FROM:":
            self.error(501, "5.5.4", "Syntax: MAIL FROM:<address>")
            return
        try:
            sender, params = parsePath(rest[5:].lstrip(), allowNull=True)
            parameters = parseParameters(params)
        except EnvelopeSyntaxError as e:
            self.error(501, e.enhanced, f"Bad sender address syntax: {e}")
            return
        if parameters and not self._esmtp:
            self.error(555, "5.5.4", "Error: parameters need EHLO")
            return
        size: int | None = None
        for key, value in parameters.items():
            if key == "SIZE":
                # RFC 1870: size-value = 1*20DIGIT (and int() refuses
                # thousands of digits).
                if value is None or not value.isdigit() or len(value) > 20:
                    self.error(501, "5.5.4", "Bad SIZE parameter")
                    return
                size = int(value)
                if size > self.factory.maxMessageSize:
                    self.error(552, "5.3.4", "Message size exceeds fixed limit")
                    return
            elif key == "BODY":
                if (value or "").upper() not in ("7BIT", "8BITMIME"):
                    self.error(501, "5.5.4", "Bad BODY parameter")
                    return
            elif key == "AUTH":
                pass  # RFC 4954 5: accepted; the identity is not trusted.
            else:
                self.error(555, "5.5.4", f"Unsupported option: {key}")
                return
        if (
            self.factory.role.submission
            and self.factory.role.senderMustMatch
            and sender is not None
        ):
            self._async(self._checkSender(sender, size), "MAIL FROM")
            return
        spf = self._spf
        if spf is not None:
            self._async(self._checkSPF(spf, sender, size), "SPF")
            return
        self._transaction = _Transaction(sender, size)
        self.reply(250, "2.1.0", "Ok")

    async def _checkSPF(
        self, spf: SPFPolicy, sender: Mailbox | None, size: int | None
    ) -> None:
        address = "" if sender is None else str(sender)
        decision = await spf.decide(self._client, self._heloName or "", address)
        if self._closed or self._heloName is None:
            return  # Gone, or STARTTLS reset the session meanwhile.
        if decision is not None and decision.refuse is not None:
            self.error(*decision.refuse)
            return
        transaction = _Transaction(sender, size)
        if decision is not None:
            transaction.spfHeader = decision.header
            transaction.spf = decision.result
            transaction.spfIdentity = (
                ("mailfrom", address) if address else ("helo", self._heloName)
            )
        self._transaction = transaction
        self.reply(250, "2.1.0", "Ok")

    async def _checkSender(self, sender: Mailbox, size: int | None) -> None:
        assert self._account is not None
        if not await self.factory.router.owns(self._account, sender):
            self.error(
                553,
                "5.7.1",
                f"<{sender}>: Sender address rejected: not owned by user"
                f" {self._account}",
            )
            return
        self._transaction = _Transaction(sender, size)
        self.reply(250, "2.1.0", "Ok")

    def smtp_RCPT(self, rest: str) -> None:
        transaction = self._transaction
        if transaction is None:
            self.error(503, "5.5.1", "Error: need MAIL command")
            return
        transaction.attempts += 1
        if rest[:3].upper() != "TO:":
            self.error(501, "5.5.4", "Syntax: RCPT TO:<address>")
            return
        try:
            mailbox, params = parsePath(
                rest[3:].lstrip(), allowNull=False, allowPostmaster=True
            )
            parameters = parseParameters(params)
        except EnvelopeSyntaxError as e:
            self.error(501, e.enhanced, f"Bad recipient address syntax: {e}")
            return
        if parameters:
            key = next(iter(parameters))
            self.error(555, "5.5.4", f"Unsupported option: {key}")
            return
        assert mailbox is not None
        if len(transaction.recipients) >= self.factory.role.maxRecipients:
            self.error(452, "4.5.3", "Error: too many recipients")
            return
        factory = self.factory
        relay = factory.role.submission and self._account is not None
        # The common case, decided from memory (a remembered account and
        # its usage): answered at once, no store read, nothing held.
        route = factory.router.routeNow(mailbox, relay=relay)
        if route is not None:
            usage = factory.usage
            known = True
            for owner, quota in route.local:
                if quota is not None:
                    used = usage.usedNow(owner)
                    if used is None:
                        known = False
                        break
                    refusal = _overQuota(owner, quota, used, transaction.declaredSize)
                    if refusal is not None:
                        self.error(refusal.code, refusal.enhanced, refusal.text)
                        return
            if known:
                self._accepted(transaction, mailbox, route)
                return
        self._async(self._addRecipient(transaction, mailbox, relay), "RCPT TO")

    async def _addRecipient(
        self, transaction: _Transaction, mailbox: Mailbox, relay: bool
    ) -> None:
        try:
            route = await self.factory.router.route(mailbox, relay=relay)
            await self._checkQuota(route, transaction.declaredSize)
        except Rejected as e:
            self.error(e.code, e.enhanced, e.text)
            return
        if self._transaction is not transaction:
            return  # The session moved on (it closed, or STARTTLS).
        self._accepted(transaction, mailbox, route)

    def _accepted(
        self, transaction: _Transaction, mailbox: Mailbox, route: Route
    ) -> None:
        transaction.local.update(route.local)
        transaction.remote.update(dict.fromkeys(route.remote))
        transaction.recipients.append(str(mailbox))
        self.reply(250, "2.1.5", "Ok")

    async def _checkQuota(self, route: Route, size: int | None) -> None:
        for owner, quota in route.local:
            if quota is None:
                continue
            used = await self.factory.usage.used(owner)
            refusal = _overQuota(owner, quota, used, size)
            if refusal is not None:
                raise refusal

    def smtp_DATA(self, rest: str) -> None:
        transaction = self._transaction
        if transaction is None:
            self.error(503, "5.5.1", "Error: need MAIL command")
            return
        if not transaction.recipients:
            if transaction.attempts:
                self.error(554, "5.5.1", "Error: no valid recipients")
            else:
                self.error(503, "5.5.1", "Error: need RCPT command")
            return
        if rest:
            self.error(501, "5.5.4", "Syntax: DATA")
            return
        factory = self.factory
        id = newId()
        staged = self._staged = factory.delivery.stage()
        if factory.role.catching:
            staged.write(envelopeHeader(transaction.recipients))
        held = self._authHold(transaction)
        write = staged.write if held is None else held.append
        write(transaction.spfHeader)
        write(
            receivedHeader(
                helo=self._heloName or "unknown",
                peer=self._client,
                hostname=factory.hostname,
                protocol=self._protocolName(),
                id=id,
                when=factory.clock.seconds(),
                recipient=(
                    transaction.recipients[0]
                    if len(transaction.recipients) == 1
                    else None
                ),
                tls=self._tlsDescription(),
            )
        )
        addHeaders = self._missingHeaders if factory.role.submission else None
        decoder = DataDecoder(write, factory.maxMessageSize, addHeaders)

        def feed(data: bytes) -> bytes | None:
            rest = decoder.feed(data)
            if rest is not None:
                self._endOfData(transaction, decoder, id, held)
            return rest

        self.readRaw(feed)
        self.reply(354, "2.0.0", "End data with <CR><LF>.<CR><LF>")

    def _authHold(self, transaction: _Transaction) -> list[bytes] | None:
        """
        A list to collect the trace fields and body in, when mail
        authentication needs the whole message before it is stored.
        """
        auth = self.factory.mailauth
        if auth is None:
            return None
        if self.factory.role.submission:
            if self._account is None or not auth.signs(self._ownDomains(transaction)):
                return None
            return []
        return [] if self._verify else None

    def _ownDomains(self, transaction: _Transaction) -> list[str]:
        """
        The domains an authenticated sender may sign for: its account's,
        and its MAIL FROM's when that is checked to be its own.
        """
        domains = []
        if self._account is not None:
            domains.append(self._account.rpartition("@")[2].lower())
        if transaction.sender is not None and self.factory.role.senderMustMatch:
            domains.append(str(transaction.sender).rpartition("@")[2].lower())
        return domains

    def _missingHeaders(self, decoder: DataDecoder) -> bytes:
        """
        A submission server completes messages (RFC 6409 8.2, 8.3).
        """
        added = b""
        if "date" not in decoder.headers:
            added += f"Date: {rfc5322Date(self.factory.clock.seconds())}\r\n".encode()
        if "message-id" not in decoder.headers:
            added += f"Message-ID: <{newId()}@{self.factory.hostname}>\r\n".encode()
        return added

    def _protocolName(self) -> str:
        name = "ESMTP" if self._esmtp else "SMTP"
        if self._tls:
            name += "S"
        if self._account is not None:
            name += "A"
        return name

    def _tlsDescription(self) -> str | None:
        if not self._tls:
            return None
        try:
            handle = self.transport.getHandle()
            version = handle.get_protocol_version_name()
            cipher = handle.get_cipher_name()
        except Exception:
            return "using TLS"
        return f"using {version} with cipher {cipher}"

    def _endOfData(
        self,
        transaction: _Transaction,
        decoder: DataDecoder,
        id: str,
        held: list[bytes] | None = None,
    ) -> None:
        self._transaction = None
        staged, self._staged = self._staged, None
        assert staged is not None
        if self._faulted("message"):
            staged.discard()
            return
        if decoder.tooBig:
            staged.discard()
            self.error(552, "5.3.4", "Error: message size exceeds fixed limit")
            return
        if decoder.hops > self.factory.hopLimit:
            staged.discard()
            self.error(554, "5.4.6", "Error: too many hops (mail loop?)")
            return
        envelope = Envelope(
            id=id,
            sender=transaction.sender,
            local=tuple(transaction.local.items()),
            remote=tuple(transaction.remote),
            submitter=self._account,
        )
        if held is not None:
            work = self._authenticated(transaction, envelope, staged, held)
            self._async(work, "mail authentication")
            return

        # Every message's path: a Deferred chain, not a coroutine.
        def deliver() -> Deferred[None]:
            d = self.factory.delivery.deliver(envelope, staged)
            return d.addBoth(self._delivered, envelope, staged)

        self._holding(deliver, "delivery")

    async def _authenticated(
        self,
        transaction: _Transaction,
        envelope: Envelope,
        staged: IStagedMessage,
        held: list[bytes],
    ) -> None:
        """
        The mail authentication hook at the end of DATA: sign (submission)
        or verify (MX) the collected message, then store it.
        """
        auth = self.factory.mailauth
        assert auth is not None
        trace = held[0] + held[1]
        message = b"".join(held[2:])
        del held[:]
        try:
            if self.factory.role.submission:
                head = await self._signed(auth, transaction, message)
            else:
                verdict = await self._verified(
                    auth, transaction, envelope, trace, message
                )
                if verdict is None:
                    staged.discard()
                    return
                head, message, envelope = verdict
        except BaseException:
            staged.discard()
            raise
        # Our trace fields stay above a signature (it is made before they
        # are seen downstream), below the MX's Authentication-Results.
        if self.factory.role.submission:
            parts = [trace, head, message]
        else:
            parts = [head, trace, message]
        if len(message) > INLINE_WRITE:
            await auth.blocking(_writeAll, staged, parts)
        else:
            _writeAll(staged, parts)  # As DATA's own writes: a small file write.
        await self._deliver(envelope, staged)

    async def _signed(
        self, auth: MailAuth, transaction: _Transaction, message: bytes
    ) -> bytes:
        """The submission hook: DKIM signatures to put before the message."""
        return await auth.signMessage(message, self._ownDomains(transaction))

    async def _verified(
        self,
        auth: MailAuth,
        transaction: _Transaction,
        envelope: Envelope,
        trace: bytes,
        message: bytes,
    ) -> tuple[bytes, bytes, Envelope] | None:
        """
        The MX hook: the fields to put on top (Authentication-Results, and
        an ARC seal when forwarding), the message without forged
        Authentication-Results, and the envelope (Junk for quarantine);
        C{None} once refused.
        """
        verdict = await auth.check(message, transaction.spf, transaction.spfIdentity)
        if verdict.action == "reject" and verdict.reply is not None:
            self.error(*verdict.reply)
            return None
        head = verdict.header
        if envelope.remote:
            domains = [r.rpartition("@")[2] for r in transaction.recipients]
            arcSet = await auth.sealMessage(head + trace + verdict.message, domains)
            head = arcSet + head
        if verdict.action == "quarantine":
            envelope = attrs.evolve(envelope, folder="Junk")
        return head, verdict.message, envelope

    async def _deliver(self, envelope: Envelope, staged: IStagedMessage) -> None:
        try:
            result: Delivered | Failure = await self.factory.delivery.deliver(
                envelope, staged
            )
        except BaseException:
            result = Failure()
        self._delivered(result, envelope, staged)

    def _delivered(
        self, result: Delivered | Failure, envelope: Envelope, staged: IStagedMessage
    ) -> None:
        """
        The end of a delivery: the reply (250 only now that it is durable),
        the counters and the log line.
        """
        staged.discard()
        if isinstance(result, Failure):
            if result.check(QuotaExceeded):
                owner = result.value.owner
                self.error(552, "5.2.2", f"<{owner}>: Mailbox full")
                return
            result.raiseException()
        delivered = result
        factory = self.factory
        factory.usage.added([owner for owner, _ in envelope.local], staged.size)
        service = factory.role.service
        factory.status.increment(service, "messages")
        factory.status.increment(service, "delivered", len(delivered.uids))
        if delivered.queued is not None:
            factory.status.increment(service, "queued")
        sender = "" if envelope.sender is None else str(envelope.sender)
        local = [owner for owner, _ in envelope.local]
        remote = list(envelope.remote)
        # The line made here, once: the observer formats one field, not
        # seven (the fields stay in the event for other observers).
        self._log.info(
            "{line}",
            line=f"{service} {envelope.id}: from=<{sender}> local={local}"
            f" remote={remote} size={staged.size} client={self._client}",
            service=service,
            id=envelope.id,
            sender=sender,
            local=local,
            remote=remote,
            size=staged.size,
            client=self._client,
        )
        self.reply(250, "2.0.0", f"Ok: queued as {envelope.id}")


class UsageCache:
    """
    Mailbox usage for RCPT's quota check (a courtesy: the authoritative
    check is the delivery's, in its transaction), read from the store at
    most once per C{ttl} seconds per account and kept up to date with
    this server's own deliveries. Mail removed meanwhile, or delivered by
    another process, shows after at most C{ttl} seconds.
    """

    #: Accounts remembered at most (then all are forgotten at once).
    MAX_ACCOUNTS = 10_000

    def __init__(self, store: IStore, clock: Any, ttl: float = 1.0) -> None:
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._entries: dict[str, tuple[float, int]] = {}

    def usedNow(self, owner: str) -> int | None:
        """
        The bytes C{owner}'s mailbox holds, if known without a store read;
        else C{None} (ask L{used}).
        """
        entry = self._entries.get(owner)
        if entry is not None and self._clock.seconds() < entry[0]:
            return entry[1]
        return None

    async def used(self, owner: str) -> int:
        """The bytes C{owner}'s mailbox holds."""
        now = self._clock.seconds()
        entry = self._entries.get(owner)
        if entry is not None and now < entry[0]:
            return entry[1]
        used = (await self._store.mail.usage(owner)).bytes
        if len(self._entries) >= self.MAX_ACCOUNTS:
            self._entries.clear()
        self._entries[owner] = (now + self._ttl, used)
        return used

    def added(self, owners: list[str], size: int) -> None:
        """This server delivered C{size} bytes to each of C{owners}."""
        for owner in owners:
            entry = self._entries.get(owner)
            if entry is not None:
                self._entries[owner] = (entry[0], entry[1] + size)


class SMTPServerFactory(LiveTLS, ServerFactory):
    """
    Makes SMTP sessions of one role; holds what they share.
    """

    #: The command that upgrades a session to TLS (start-up lines name it).
    tlsUpgrade = "STARTTLS"

    protocol = SMTPServer  # type: ignore[assignment]
    #: Scripted faults (set by the stack).
    faults: Faults = NO_FAULTS

    def __init__(
        self,
        *,
        role: SMTPRole,
        hostname: str,
        store: IStore,
        router: Router,
        auth: Authenticator,
        realm: MailRealm,
        status: Status,
        clock: Any,
        tlsOptions: Any = None,
        idleTimeout: float = 300,
        maxMessageSize: int = 25 * 1024**2,
        hopLimit: int = 50,
        delivery: Delivery | None = None,
        spf: SPFPolicy | None = None,
        mailauth: MailAuth | None = None,
    ) -> None:
        self.role = role
        self.hostname = hostname
        self.store = store
        self.router = router
        self.auth = auth
        self.realm = realm
        self.status = status
        self.clock = clock
        self.tlsOptions = tlsOptions
        self.idleTimeout = idleTimeout
        self.maxMessageSize = maxMessageSize
        self.hopLimit = hopLimit
        self.delivery = delivery or Delivery(store, clock.seconds)
        self.spf = spf
        self.mailauth = mailauth
        self.usage = UsageCache(store, clock)

    def buildProtocol(self, addr: Any) -> SMTPServer:  # type: ignore[override]
        return SMTPServer(self)


def _writeAll(staged: IStagedMessage, parts: list[bytes]) -> None:
    for part in parts:
        staged.write(part)


def refusal(hostname: str) -> bytes:
    """What a client over the per-address connection limit is told."""
    return f"421 4.7.0 {hostname} Error: too many connections from you\r\n".encode()
