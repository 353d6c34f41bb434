"""
Mail clients: submitting a message over SMTP and fetching a maildrop over
POP3, as Deferred APIs.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.mail.pop3client import POP3Client
from twisted.mail.smtp import (
    SUCCESS,
    ESMTPClient,
    ESMTPSender,
    ESMTPSenderFactory,
    LOGINAuthenticator,
    PLAINAuthenticator,
    SMTPClientError,
)
from twisted.python.failure import Failure

from appnet.address import isLoopback
from appnet.errors import AppnetError, CannotConnect
from appnet.files import InThread, ThreadedFileSender
from appnet.mail.lines import DotStuffer

__all__ = [
    "FetchedMessage",
    "MailClientError",
    "RecipientResult",
    "SendResult",
    "fetch",
    "send",
    "tlsOptions",
]

TLS_MODES = ("require", "auto", "none")


class MailClientError(AppnetError):
    """
    Sending or fetching failed.

    @ivar code: the server's reply code, if it gave one.
    @ivar results: per-recipient results, when the server answered some.
    """

    def __init__(
        self,
        message: str,
        code: int | None = None,
        results: tuple[RecipientResult, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.results = results


@frozen
class RecipientResult:
    """What the server said to one RCPT."""

    address: str
    code: int
    response: str

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300


@frozen
class SendResult:
    """
    A submitted message: every recipient's reply.
    """

    results: tuple[RecipientResult, ...]

    @property
    def accepted(self) -> list[str]:
        return [r.address for r in self.results if r.accepted]

    @property
    def refused(self) -> list[RecipientResult]:
        return [r for r in self.results if not r.accepted]


def tlsOptions(host: str, trustRoot: bytes | None = None, verify: bool = True) -> Any:
    """
    A client TLS context for C{host}: verified with service-identity against
    the platform's trust store, or only against C{trustRoot} (PEM
    certificates) if given; C{verify=False} turns verification off.
    """
    if not verify:
        return CertificateOptions(verify=False)
    if trustRoot is None:
        return optionsForClientTLS(host)
    certificates = [
        Certificate.loadPEM(b"-----BEGIN CERTIFICATE-----" + part)
        for part in trustRoot.split(b"-----BEGIN CERTIFICATE-----")[1:]
    ]
    return optionsForClientTLS(host, trustRoot=trustRootFromCertificates(certificates))


class StuffingClient(ESMTPClient):
    """
    Twisted's ESMTP client with a correct body transform: its
    C{transformChunk} expects LF line ends (CRLF would become CR CR LF)
    and misses a dot at the start of a chunk; messages here are stored
    with CRLF, so L{DotStuffer} does line ends and dot-stuffing across
    chunks, and what it holds back goes out before the final dot.
    """

    _stuffer: DotStuffer

    #: Runs the body's reads (L{appnet.files.InThread}): the relay sets
    #: it, so a message file is read in threads with back-pressure; when
    #: C{None} (a body in memory), Twisted's C{FileSender} sends it.
    fileThreads: InThread | None = None

    def smtpState_data(self, code: int, resp: bytes) -> None:
        self._stuffer = DotStuffer(lineEnds=True)
        if self.fileThreads is None:
            super().smtpState_data(code, resp)
            return
        assert self.transport is not None
        sender = ThreadedFileSender(
            self.fileThreads,
            self.getMailData().read,
            self.transport,  # type: ignore[arg-type]
            transform=self.transformChunk,
        )

        def sent(_: int) -> None:
            self.finishedFileTransfer(sender.last)

        def failed(failure: Failure) -> None:
            self.sendError(failure.value)

        sender.start().addCallbacks(sent, failed)
        # What SMTPClient.smtpState_data expects next: the reply to the
        # final dot (private state, no public hook: pinned by
        # tests/mail/test_twistedpins.py).
        self._expected = SUCCESS
        self._okresponse = self.smtpState_msgSent

    def transformChunk(self, chunk: bytes) -> bytes:
        self.resetTimeout()
        return self._stuffer(chunk)

    def finishedFileTransfer(self, lastsent: bytes) -> None:
        rest = self._stuffer.flush()
        if rest:
            assert self.transport is not None
            self.transport.write(rest)
            lastsent = rest[-1:]
        super().finishedFileTransfer(lastsent)


class _Sender(StuffingClient, ESMTPSender):
    """
    Twisted's ESMTP sender with a correct body transform, offering AUTH
    PLAIN and LOGIN only.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The public list, replaced: Twisted's own choice is made in a
        # private method we do not override.
        self.authenticators = [
            PLAINAuthenticator(self.username),
            LOGINAuthenticator(self.username),
        ]


class _SenderFactory(ESMTPSenderFactory):
    protocol = _Sender


def _results(
    addresses: Sequence[tuple[Any, int, Any]] | None,
) -> tuple[RecipientResult, ...]:
    def text(value: Any) -> str:
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return str(value)

    return tuple(
        RecipientResult(text(address), int(code), text(response))
        for address, code, response in addresses or ()
    )


def send(
    reactor: Any,
    host: str,
    port: int,
    *,
    sender: str,
    recipients: Sequence[str],
    message: bytes | EmailMessage,
    username: str | None = None,
    password: str | None = None,
    tls: str = "require",
    trustRoot: bytes | None = None,
    verify: bool = True,
    helo: str = "localhost",
    timeout: float = 60.0,
) -> Deferred[SendResult]:
    """
    Submit one message.

    @param sender: the envelope sender (C{""} for the null sender).
    @param message: the message, CRLF or LF line ends.
    @param username: log in with AUTH (PLAIN, else LOGIN) if given.
    @param tls: C{"require"}, C{"auto"} or C{"none"} (see the module).
    @param trustRoot: PEM certificates to trust instead of the platform's
        (a development server's self-signed certificate).
    @return: fires with every recipient's reply if at least one was
        accepted and the message was stored; fails with
        L{MailClientError} (carrying the per-recipient replies) otherwise.
    """
    if tls not in TLS_MODES:
        raise ValueError(f"tls must be one of {TLS_MODES}")
    data = bytes(message) if isinstance(message, EmailMessage) else message
    result: Deferred[tuple[int, list[Any]]] = Deferred()
    useTLS = tls != "none"
    context = tlsOptions(host, trustRoot, verify) if useTLS else None
    factory = _SenderFactory(
        username.encode() if username else None,
        password.encode() if password else None,
        sender,
        list(recipients),
        io.BytesIO(data),
        result,
        retries=0,
        contextFactory=context,
        heloFallback=False,
        requireAuthentication=bool(username),
        requireTransportSecurity=tls == "require"
        or (tls == "auto" and not isLoopback(host)),
    )
    factory.domain = helo.encode()
    connector = reactor.connectTCP(host, port, factory, timeout=timeout)
    timedOut: list[bool] = []

    def expire() -> None:
        timedOut.append(True)
        connector.disconnect()

    call = reactor.callLater(timeout, expire)

    def done(outcome: Any) -> SendResult:
        if call.active():
            call.cancel()
        if isinstance(outcome, Failure):
            if timedOut:
                raise MailClientError(f"timed out after {timeout:g}s")
            error = outcome.value
            unreachable = CannotConnect.explain(host, port, error)
            if unreachable is not None:
                raise unreachable
            if isinstance(error, SMTPClientError):
                raise MailClientError(
                    _describe(error),
                    error.code if error.code and error.code > 0 else None,
                    _results(getattr(error, "addresses", None)),
                )
            raise MailClientError(str(error) or type(error).__name__)
        _, addresses = outcome
        return SendResult(_results(addresses))

    return result.addBoth(done)


def _describe(error: SMTPClientError) -> str:
    raw: Any = error.resp
    response = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if error.code and error.code > 0:
        return f"{error.code} {response}"
    return response


@frozen
class FetchedMessage:
    """
    One message fetched over POP3.

    @ivar uidl: its unique id on the server (stable across sessions).
    """

    uidl: str
    data: bytes


class _Fetcher(POP3Client):
    """Twisted's POP3 client, telling when the greeting has arrived."""

    def __init__(self) -> None:
        self.greeted: Deferred[bytes] = Deferred()

    def serverGreeting(self, greeting: bytes) -> None:
        super().serverGreeting(greeting)
        self.greeted.callback(greeting)


def fetch(
    reactor: Any,
    host: str,
    port: int,
    *,
    username: str,
    password: str,
    delete: bool = False,
    skip: Callable[[str], bool] = lambda uidl: False,
    sink: Callable[[FetchedMessage], None] | None = None,
    tls: str = "require",
    trustRoot: bytes | None = None,
    verify: bool = True,
    timeout: float = 60.0,
) -> Deferred[list[FetchedMessage]]:
    """
    Fetch a maildrop: download-and-keep (default) or download-and-delete.

    @param skip: messages whose UIDL it accepts are not downloaded (the
        ones already kept from an earlier fetch); with C{delete} they are
        still deleted.
    @param sink: receives each message as it arrives; the result list is
        then empty, so memory does not grow with the maildrop.
    @return: the messages (if no C{sink}), in maildrop order.
    """
    if tls not in TLS_MODES:
        raise ValueError(f"tls must be one of {TLS_MODES}")

    async def run() -> list[FetchedMessage]:
        client = _Fetcher()
        client.timeout = int(timeout)
        endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
        await CannotConnect.during(host, port, connectProtocol(endpoint, client))
        try:
            await client.greeted.addTimeout(timeout, reactor)
            capabilities = await client.capabilities(useCache=False)
            if tls != "none" and b"STLS" in capabilities:
                await client.startTLS(tlsOptions(host, trustRoot, verify))
            elif tls == "require" or (tls == "auto" and not isLoopback(host)):
                raise MailClientError(f"{host} does not offer STLS")
            else:
                client.allowInsecureLogin = True
            await client.login(username.encode(), password.encode())
            uids = [u.decode() for u in await client.listUID()]
            fetched: list[FetchedMessage] = []
            for index, uidl in enumerate(uids):
                if not skip(uidl):
                    lines = await client.retrieve(index)
                    message = FetchedMessage(uidl, b"".join(x + b"\r\n" for x in lines))
                    if sink is None:
                        fetched.append(message)
                    else:
                        sink(message)
                if delete:
                    await client.delete(index)
            await client.quit()
            return fetched
        except BaseException:
            if client.transport is not None:
                client.transport.loseConnection()
            raise

    def translate(failure: Failure) -> Failure:
        if failure.check(MailClientError, CannotConnect):
            return failure
        error = failure.value
        text = error.args[0] if getattr(error, "args", None) else str(error)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return Failure(MailClientError(f"POP3: {text or type(error).__name__}"))

    return Deferred.fromCoroutine(run()).addErrback(translate)


#: The IMAP client lives in L{appnet.mail.imapclient}; it is part of this
#: API, imported on first use (that module builds on this one).
_IMAP_NAMES = (
    "FolderEntry",
    "FolderStatus",
    "IMAPMessage",
    "IMAPSession",
    "MessageSummary",
    "connectIMAP",
)
__all__ += _IMAP_NAMES


def __getattr__(name: str) -> Any:
    if name in _IMAP_NAMES:
        from appnet.mail import imapclient

        return getattr(imapclient, name)
    raise AttributeError(name)
