"""
TLS material: making a self-signed certificate for development and loading
a certificate chain and key for the servers.

Every protocol offers TLS with the same L{TLSMaterial}: STARTTLS, STLS and
AUTH TLS use L{TLSMaterial.serverOptions} as their context factory, and
C{ssl:} endpoints can name the same files. Certificates are built and
parsed with C{cryptography}; Twisted's L{CertificateOptions} serves them.

L{tolerateALPN} works around a Twisted 26.10 defect: every server context
gets an ALPN callback that, when none of the client's protocols is
acceptable (always, for a service that names none), returns C{b""}, which
OpenSSL turns into a fatal "internal error" alert. Any client offering ALPN
(curl, browsers, many mail clients) then fails the handshake. Our callback
declines ALPN instead and the handshake goes on, as nginx and Postfix do.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Callable
from typing import Any

from attrs import define, field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.logger import Logger

from appnet.errors import ConfigError

__all__ = [
    "LiveTLS",
    "TLSKeeper",
    "TLSMaterial",
    "loadTLS",
    "makeSelfSigned",
    "tolerateALPN",
    "writeSelfSigned",
]


def makeSelfSigned(
    hostname: str,
    *,
    days: int = 825,
    now: datetime.datetime | None = None,
    loopback: bool = True,
) -> tuple[bytes, bytes]:
    """
    Make a private key and a self-signed certificate for C{hostname}.

    The certificate names C{hostname}, C{localhost}, 127.0.0.1 and ::1 as
    subject alternative names, so the development stack can be reached by
    name or by loopback address with verification on (trusting this
    certificate).

    @param loopback: name C{localhost} and the loopback addresses too;
        with C{False}, only C{hostname}.

    @return: C{(keyPEM, certPEM)}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(minutes=5)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hostname),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "appnet self-signed"),
        ]
    )
    names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if loopback:
        if hostname != "localhost":
            names.append(x509.DNSName("localhost"))
        names += [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    keyPEM = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return keyPEM, cert.public_bytes(serialization.Encoding.PEM)


def writeSelfSigned(
    certPath: str, keyPath: str, hostname: str, *, force: bool = False
) -> None:
    """
    Write a new self-signed certificate and its key (mode 0600).

    @raise FileExistsError: if either file exists and C{force} is false.
    """
    if not force:
        for path in (certPath, keyPath):
            if os.path.exists(path):
                raise FileExistsError(path)
    keyPEM, certPEM = makeSelfSigned(hostname)
    for path in (certPath, keyPath):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _writePrivate(keyPath, keyPEM)
    _writePrivate(certPath, certPEM, mode=0o644)


def _writePrivate(path: str, data: bytes, mode: int = 0o600) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@frozen
class TLSMaterial:
    """
    A loaded certificate chain and private key.

    @ivar chain: the leaf certificate first, then intermediates.
    @ivar certPath: where the chain was read from (for log lines).
    """

    chain: tuple[x509.Certificate, ...]
    key: object
    certPath: str

    @property
    def leaf(self) -> x509.Certificate:
        """The server's own certificate."""
        return self.chain[0]

    def serverOptions(self) -> CertificateOptions:
        """
        A server context factory: TLS 1.2 and newer, Twisted's default
        ciphers, for STARTTLS and friends.
        """
        options = CertificateOptions(
            privateKey=self.key,  # type: ignore[arg-type]
            certificate=self.leaf,  # type: ignore[arg-type]
            extraCertChain=list(self.chain[1:]),  # type: ignore[arg-type]
            raiseMinimumTo=TLSVersion.TLSv1_2,
        )
        tolerateALPN(options)
        return options

    def certificatePEM(self) -> bytes:
        """The leaf certificate as PEM, for clients to trust in tests."""
        return self.leaf.public_bytes(serialization.Encoding.PEM)


def loadTLS(certPath: str, keyPath: str, source: str | None = None) -> TLSMaterial:
    """
    Load a PEM certificate chain and its private key.

    @param source: where the paths came from, for error messages.
    @raise ConfigError: naming C{tls.cert} or C{tls.key} and the problem:
        unreadable, not PEM, or a key that does not match the certificate.
    """
    try:
        with open(certPath, "rb") as f:
            certData = f.read()
    except OSError as e:
        problem = f"cannot read {certPath}: {e.strerror}"
        raise ConfigError("tls.cert", problem, source) from None
    try:
        with open(keyPath, "rb") as f:
            keyData = f.read()
    except OSError as e:
        problem = f"cannot read {keyPath}: {e.strerror}"
        raise ConfigError("tls.key", problem, source) from None
    try:
        chain = tuple(x509.load_pem_x509_certificates(certData))
    except ValueError:
        raise ConfigError(
            "tls.cert", f"{certPath} holds no PEM certificate", source
        ) from None
    try:
        key = serialization.load_pem_private_key(keyData, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            "tls.key", f"{keyPath} holds no unencrypted PEM private key", source
        ) from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ConfigError("tls.key", f"{keyPath}: only RSA and EC keys are supported")
    leafKey = (
        chain[0]
        .public_key()
        .public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    ownKey = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if leafKey != ownKey:
        raise ConfigError(
            "tls.key", f"{keyPath} does not match the certificate in {certPath}", source
        )
    return TLSMaterial(chain, key, certPath)


def _selectALPN(connection: SSL.Connection, offered: list[bytes]) -> object:
    """
    Pick the first protocol the wrapped factory accepts that the client
    offered; with none, decline ALPN and let the handshake continue.
    """
    acceptable: list[bytes] = []
    tlsProtocol = connection.get_app_data()
    factory = getattr(getattr(tlsProtocol, "factory", None), "wrappedFactory", None)
    negotiation = IProtocolNegotiationFactory(factory, None)
    if negotiation is not None:
        acceptable = list(negotiation.acceptableProtocols())
    for protocol in acceptable:
        if protocol in offered:
            return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS


def tolerateALPN(contextFactory: object) -> None:
    """
    Replace the ALPN callback of a server context factory's (cached) context
    with one that declines instead of failing the handshake (see the
    module docstring).

    @param contextFactory: a L{CertificateOptions}, or anything with a
        C{getContext()} returning the context its connections use.
    """
    context = contextFactory.getContext()  # type: ignore[attr-defined]
    context.set_alpn_select_callback(_selectALPN)


@define
class TLSKeeper:
    """
    The stack's current certificate for STARTTLS, STLS and AUTH TLS, which
    can be replaced while the stack runs (SIGHUP after C{appnet cert} or a
    renewal): sessions started afterwards use the new one, sessions
    already in TLS keep theirs. Before any certificate exists, no upgrade
    is offered; one loaded by L{reload} is offered from the next session.

    @ivar locate: returns the certificate and key paths and where they
        came from (for messages), or C{None} when there are none.
    """

    _locate: Callable[[], tuple[str, str, str | None] | None]
    material: TLSMaterial | None = None
    _options: CertificateOptions | None = field(default=None, init=False)
    _log = Logger()

    def __attrs_post_init__(self) -> None:
        if self.material is not None:
            self._options = self.material.serverOptions()

    @property
    def options(self) -> CertificateOptions | None:
        """The context factory for the next upgrade, or C{None} (no TLS)."""
        return self._options

    def reload(self) -> TLSMaterial | None:
        """
        Read the certificate and key again and serve them from now on.
        Two small PEM files: cheap enough to read at a signal.

        @raise ConfigError: if they cannot be loaded; the current ones stay.
        """
        where = self._locate()
        if where is None:
            self._log.info("tls: no certificate to load; keeping the current setting")
            return self.material
        cert, key, source = where
        material = loadTLS(cert, key, source)
        self.material, self._options = material, material.serverOptions()
        self._log.info(
            "tls: loaded {cert} for {name}, valid until {until}",
            cert=cert,
            name=material.leaf.subject.rfc4514_string(),
            until=material.leaf.not_valid_after_utc.date().isoformat(),
        )
        return material


class LiveTLS:
    """
    Mixin for server factories: C{tlsOptions} is read at each use, from a
    L{TLSKeeper} when one was given, so a reloaded certificate serves the
    next session. A plain context factory (tests, embedding) still works.
    """

    _tlsKeeper: TLSKeeper | None = None
    _tlsFixed: Any = None

    @property
    def tlsOptions(self) -> Any:
        if self._tlsKeeper is not None:
            return self._tlsKeeper.options
        return self._tlsFixed

    @tlsOptions.setter
    def tlsOptions(self, value: Any) -> None:
        if isinstance(value, TLSKeeper):
            self._tlsKeeper, self._tlsFixed = value, None
        else:
            self._tlsKeeper, self._tlsFixed = None, value
