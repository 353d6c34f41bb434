"""
An HTTP client on treq: C{appnet fetch} and helpers for programs and tests.

L{makeClient} builds a treq C{HTTPClient} whose HTTPS connections are
verified the usual way (the system's trust store, host names checked by
service-identity), or against given CA certificates only (C{--cacert}, for
a server using a certificate made by C{appnet cert}), or not at all
(C{--insecure}, which still sends SNI). Redirects are followed (up to 20,
as browsers do) by treq's browser-like redirect agent.

L{download} saves a URL to a file, resuming a partial file with C{Range}:
a 206 whose C{Content-Range} starts where the file ends is appended; a 200
(the server ignored the range, or the file changed) replaces the file; a
416 saying the file already has that size means it is complete. The file
is fsynced (in a thread) before the result is reported. L{fetch} streams a
body to any callable (standard output). Both stream with bounded memory
and report progress to a callback; L{ProgressBar} draws it on a terminal.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import IO, Any, TextIO

import treq
from attrs import frozen
from hyperlink import DecodedURL
from OpenSSL import SSL
from service_identity import VerificationError
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError, TimeoutError
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.internet.threads import deferToThread
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.error import InfiniteRedirection, SchemeNotSupported
from twisted.web.iweb import IPolicyForHTTPS, IResponse
from zope.interface import implementer

from appnet.errors import AppnetError, CannotConnect
from appnet.progress import Progress as _Bar

__all__ = [
    "Download",
    "FetchError",
    "ProgressBar",
    "download",
    "fetch",
    "makeClient",
]


@frozen(eq=False)
class FetchError(AppnetError):
    """
    A fetch failed: the server answered with an error status, or the
    connection or TLS verification failed.

    @ivar url: the URL.
    @ivar problem: what went wrong, one line.
    @ivar code: the HTTP status, if there was a response.
    """

    url: str
    problem: str
    code: int | None = None
    #: The problem names the server already (C{cannot connect to ...}).
    standalone: bool = False

    def __str__(self) -> str:
        return self.problem if self.standalone else f"{self.url}: {self.problem}"


@implementer(IPolicyForHTTPS)
class TrustPolicy:
    """
    Verify servers against the given CA certificates only (PEM, one or
    more), checking the host name with service-identity.
    """

    def __init__(self, pem: bytes) -> None:
        blocks = re.findall(
            rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S
        )
        if not blocks:
            raise ValueError("no PEM certificate found")
        self._root = trustRootFromCertificates([Certificate.loadPEM(b) for b in blocks])

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return optionsForClientTLS(hostname.decode("idna"), trustRoot=self._root)


@implementer(IOpenSSLClientConnectionCreator)
class _Unverified:
    def __init__(self, hostname: bytes) -> None:
        self._hostname = hostname
        self._context = CertificateOptions(verify=False).getContext()

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_tlsext_host_name(self._hostname)
        connection.set_connect_state()
        return connection


@implementer(IPolicyForHTTPS)
class InsecurePolicy:
    """
    Do not verify servers at all (C{--insecure}); SNI is still sent.
    """

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return _Unverified(hostname)


def makeClient(
    reactor: Any,
    *,
    insecure: bool = False,
    trust: bytes | None = None,
    pool: HTTPConnectionPool | None = None,
    connectTimeout: float = 30.0,
) -> HTTPClient:
    """
    A treq client.

    @param insecure: skip TLS verification.
    @param trust: PEM CA certificates to trust instead of the system's.
    @param pool: a connection pool (persistent connections); default none.
    """
    policy: Any
    if insecure:
        policy = InsecurePolicy()
    elif trust is not None:
        policy = TrustPolicy(trust)
    else:
        policy = BrowserLikePolicyForHTTPS()
    agent = Agent(
        reactor, contextFactory=policy, pool=pool, connectTimeout=connectTimeout
    )
    return HTTPClient(agent)


@frozen
class Download:
    """
    What L{download} did.

    @ivar url: the URL finally fetched (after redirects).
    @ivar code: the final response's status.
    @ivar size: the file's size afterwards.
    @ivar received: body bytes received this time.
    @ivar resumed: whether it continued a partial file.
    """

    url: str
    code: int
    size: int
    received: int
    resumed: bool


Progress = Callable[[int, int | None], None]


def _finalURL(response: IResponse, fallback: str) -> str:
    request = getattr(response, "request", None)
    uri = getattr(request, "absoluteURI", None)
    return uri.decode("utf-8", "replace") if isinstance(uri, bytes) else fallback


def _describe(url: str, failure: BaseException) -> FetchError:
    reasons = getattr(failure, "reasons", None)
    if reasons:
        inner = reasons[0].value
        if isinstance(inner, SSL.Error):
            return FetchError(url, f"TLS failed: {_sslText(inner)}")
        failure = inner
    if isinstance(failure, VerificationError):
        return FetchError(url, f"TLS failed: {_mismatch(failure)}")
    if isinstance(failure, SSL.Error):
        return FetchError(url, f"TLS failed: {_sslText(failure)}")
    if isinstance(failure, ConnectError | TimeoutError):
        where = DecodedURL.from_text(url)
        unreachable = CannotConnect.explain(where.host, where.port or 80, failure)
        if unreachable is not None:
            return FetchError(url, str(unreachable), standalone=True)
    if isinstance(failure, InfiniteRedirection):
        return FetchError(url, "too many redirects")
    if isinstance(failure, SchemeNotSupported):
        return FetchError(url, "only http and https URLs are supported")
    return FetchError(url, str(failure) or type(failure).__name__)


def _mismatch(error: VerificationError) -> str:
    """
    One line for a certificate that chains to a trusted root but names
    another host (service-identity's own text is a repr).
    """
    for mismatch in error.errors:
        identity = getattr(mismatch, "mismatched_id", None)
        name = getattr(identity, "hostname", None) or getattr(identity, "ip", None)
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        if name is not None:
            return f"the certificate is not for {name}"
    return "the certificate is not for this host"


def _sslText(error: SSL.Error) -> str:
    for item in error.args[0] if error.args and isinstance(error.args[0], list) else []:
        if isinstance(item, tuple) and len(item) == 3:
            return str(item[2])
    return str(error) or "handshake failed"


async def _get(client: HTTPClient, url: str, headers: Mapping[str, str]) -> IResponse:
    try:
        sent: dict[bytes | str, bytes | str] = {k: v for k, v in headers.items()}
        response: IResponse = await client.get(
            url, headers=sent, unbuffered=True, allow_redirects=True
        )
    except Exception as e:
        raise _describe(url, e) from None
    return response


def _phrase(response: IResponse) -> str:
    phrase = response.phrase
    return phrase.decode("latin-1") if isinstance(phrase, bytes) else str(phrase)


async def _failure(response: IResponse, url: str) -> FetchError:
    response.deliverBody(_Discard())
    return FetchError(
        _finalURL(response, url),
        f"HTTP {response.code} {_phrase(response)}",
        response.code,
    )


class _Discard:
    def makeConnection(self, transport: Any) -> None:
        self.transport = transport

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        pass


def _length(response: IResponse) -> int | None:
    length = response.length
    return length if isinstance(length, int) else None


def fetch(
    client: HTTPClient,
    url: str,
    sink: Callable[[bytes], object],
    *,
    headers: Mapping[str, str] = {},
    progress: Progress | None = None,
) -> Deferred[IResponse]:
    """
    GET C{url} (following redirects) and pass the body to C{sink} as it
    arrives.

    @raise FetchError: (as a failure) for a status other than 2xx, or a
        connection or TLS failure; C{sink} then receives nothing.
    """
    return Deferred.fromCoroutine(_fetch(client, url, sink, headers, progress))


async def _fetch(
    client: HTTPClient,
    url: str,
    sink: Callable[[bytes], object],
    headers: Mapping[str, str],
    progress: Progress | None,
) -> IResponse:
    response = await _get(client, url, headers)
    if not 200 <= response.code < 300:
        raise await _failure(response, url)
    total = _length(response)
    received = 0

    def write(data: bytes) -> None:
        nonlocal received
        received += len(data)
        sink(data)
        if progress is not None:
            progress(received, total)

    try:
        await treq.collect(response, write)
    except Exception as e:
        raise FetchError(url, f"transfer failed after {received} bytes: {e}") from None
    return response


_CONTENT_RANGE = re.compile(rb"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_UNSATISFIED = re.compile(rb"^\s*bytes\s+\*/(\d+)\s*$")


def download(
    client: HTTPClient,
    url: str,
    path: str,
    *,
    resume: bool = False,
    headers: Mapping[str, str] = {},
    progress: Progress | None = None,
) -> Deferred[Download]:
    """
    Save C{url} to C{path}; with C{resume}, continue a partial file.

    The file is only opened once the response is known to be good, so a
    failed fetch never clobbers it.

    @raise FetchError: (as a failure) as for L{fetch}.
    """
    return Deferred.fromCoroutine(
        _download(client, url, path, resume, headers, progress)
    )


async def _download(
    client: HTTPClient,
    url: str,
    path: str,
    resume: bool,
    headers: Mapping[str, str],
    progress: Progress | None,
) -> Download:
    offset = 0
    if resume and os.path.isfile(path):
        offset = os.path.getsize(path)
    request = dict(headers)
    if offset:
        request["Range"] = f"bytes={offset}-"
    response = await _get(client, url, request)
    final = _finalURL(response, url)
    if offset and response.code == 416:
        values = response.headers.getRawHeaders(b"content-range") or [b""]
        m = _UNSATISFIED.match(values[0])
        response.deliverBody(_Discard())
        if m is not None and int(m.group(1)) == offset:
            return Download(final, 416, offset, 0, True)
        raise FetchError(final, "the server has less than the partial file holds")
    if not 200 <= response.code < 300:
        raise await _failure(response, url)
    resumed = False
    if offset and response.code == 206:
        values = response.headers.getRawHeaders(b"content-range") or [b""]
        m = _CONTENT_RANGE.match(values[0])
        if m is None or int(m.group(1)) != offset:
            response.deliverBody(_Discard())
            raise FetchError(final, "the server resumed at the wrong offset")
        resumed = True
    else:
        offset = 0
    length = _length(response)
    total = None if length is None else offset + length
    received = 0
    out: IO[bytes] = open(path, "ab" if resumed else "wb")  # noqa: SIM115

    def write(data: bytes) -> None:
        nonlocal received
        out.write(data)
        received += len(data)
        if progress is not None:
            progress(offset + received, total)

    try:
        try:
            await treq.collect(response, write)
        except Exception as e:
            raise FetchError(
                final,
                f"transfer failed after {received} bytes: {e}; "
                "run again with --continue to resume",
            ) from None
        out.flush()
        await deferToThread(os.fsync, out.fileno())
    finally:
        out.close()
    return Download(final, response.code, offset + received, received, resumed)


class ProgressBar:
    """
    A L{Progress} callback drawing a one-line progress bar (percentage,
    bar, bytes, rate) on a terminal with L{appnet.progress.Progress}.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bar: _Bar | None = None

    def __call__(self, received: int, total: int | None) -> None:
        if self._bar is None:
            self._bar = _Bar(self._stream, "", total)
        self._bar.done = received

    def done(self) -> None:
        """End the line."""
        if self._bar is not None:
            self._bar.close()
