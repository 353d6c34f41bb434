"""
DKIM (RFC 6376, RFC 8463) over dkimpy: signing keys in the data
directory, signing, and verification of every signature of a message.

dkimpy is synchronous and asks its DNS function for key records as it
goes. L{keyNames} lists the names a message needs, L{fetchTexts} looks
them up with appnet's resolver (asynchronously, all at once), and
L{verifySignatures} then runs dkimpy in a thread with a DNS function that
answers from those results (L{TextAnswers}).
"""

from __future__ import annotations

import base64
import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dkim as dkimpy
from attrs import frozen
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from twisted.internet.defer import DeferredList
from twisted.python.filepath import FilePath

from appnet.dns.errors import NameNotFound, NoRecords
from appnet.dns.interfaces import IDNSResolver
from appnet.errors import AppnetError

__all__ = [
    "ALGORITHMS",
    "DKIMKey",
    "DKIMKeyError",
    "DKIMResult",
    "TextAnswers",
    "fetchTexts",
    "generateKey",
    "headerFields",
    "keyNames",
    "loadKeys",
    "signMessage",
    "verifySignatures",
]

#: Algorithm names for C{appnet dkim keygen --algorithm}.
ALGORITHMS = ("rsa", "ed25519")

#: The header fields signed when present (RFC 6376 5.4.1), From twice so
#: that no From can be added (oversigning).
SIGNED_FIELDS = (
    b"from",
    b"sender",
    b"reply-to",
    b"subject",
    b"date",
    b"message-id",
    b"to",
    b"cc",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"content-id",
    b"content-description",
    b"resent-date",
    b"resent-from",
    b"resent-sender",
    b"resent-to",
    b"resent-cc",
    b"resent-message-id",
    b"in-reply-to",
    b"references",
    b"list-id",
    b"list-help",
    b"list-unsubscribe",
    b"list-subscribe",
    b"list-post",
    b"list-owner",
    b"list-archive",
)

_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")

#: Marker of a selector that no longer signs (its record stays published).
RETIRED = ".retired"


class DKIMKeyError(AppnetError, ValueError):
    """A key file or key name that cannot be used."""


@frozen
class DKIMKey:
    """
    One signing key: C{SELECTOR._domainkey.DOMAIN}.

    @ivar private: what dkimpy signs with: PEM for RSA, the base64 seed
        for Ed25519.
    @ivar public: the base64 public key of the TXT record's C{p=}.
    @ivar active: signs new mail (a retired key only stays published).
    """

    domain: str
    selector: str
    algorithm: str
    private: bytes
    public: str
    mtime: float = 0.0
    active: bool = True

    @property
    def signatureAlgorithm(self) -> bytes:
        """dkimpy's name of the signing algorithm (C{a=})."""
        return b"ed25519-sha256" if self.algorithm == "ed25519" else b"rsa-sha256"

    @property
    def recordName(self) -> str:
        """Where the TXT record lives."""
        return f"{self.selector}._domainkey.{self.domain}"

    def record(self) -> str:
        """The TXT record (RFC 6376 3.6.1): C{v=DKIM1; k=...; p=...}."""
        return f"v=DKIM1; k={self.algorithm}; p={self.public}"

    def zoneLine(self, ttl: int = 3600) -> str:
        """The record as a zone file line, in strings of at most 255 bytes."""
        text = self.record()
        strings = " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))
        return f"{self.recordName}. {ttl} IN TXT {strings}"


def _validName(domain: str, selector: str) -> None:
    if not _DOMAIN.match(domain):
        raise DKIMKeyError(f"not a domain name: {domain!r}")
    if not _SELECTOR.match(selector):
        raise DKIMKeyError(f"not a selector (letters, digits, hyphens): {selector!r}")


def _fromPEM(domain: str, selector: str, pem: bytes, **kw: Any) -> DKIMKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise DKIMKeyError(
            f"{selector}._domainkey.{domain}: bad key file: {e}"
        ) from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return DKIMKey(
            domain,
            selector,
            "ed25519",
            base64.b64encode(seed),
            base64.b64encode(raw).decode(),
            **kw,
        )
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return DKIMKey(
            domain, selector, "rsa", private, base64.b64encode(der).decode(), **kw
        )
    raise DKIMKeyError(f"{selector}._domainkey.{domain}: neither RSA nor Ed25519")


def generateKey(
    directory: FilePath[str], domain: str, selector: str, algorithm: str = "rsa"
) -> DKIMKey:
    """
    Make a key and write it to C{directory/DOMAIN/SELECTOR.pem} (mode
    0600; the directories 0700). Blocking: run it in a thread.

    @raise DKIMKeyError: for a bad name, an unknown algorithm or a selector
        that already has a key.
    """
    domain = domain.lower().rstrip(".")
    selector = selector.lower()
    _validName(domain, selector)
    if algorithm not in ALGORITHMS:
        raise DKIMKeyError(f"unknown algorithm {algorithm!r} (rsa or ed25519)")
    folder = directory.child(domain)
    path = folder.child(selector + ".pem")
    if path.exists() or FilePath(path.path + RETIRED).exists():
        raise DKIMKeyError(f"{selector}._domainkey.{domain} already has a key")
    key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    os.makedirs(folder.path, mode=0o700, exist_ok=True)
    fd = os.open(path.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return _fromPEM(domain, selector, pem)


def loadKeys(directory: FilePath[str]) -> list[DKIMKey]:
    """
    Every key under C{directory} (C{DOMAIN/SELECTOR.pem}, and retired
    ones C{SELECTOR.pem.retired}). Blocking: start-up or a thread.

    @raise DKIMKeyError: naming a key file that cannot be read.
    """
    keys: list[DKIMKey] = []
    if not directory.isdir():
        return keys
    for folder in sorted(directory.children()):
        if not folder.isdir():
            continue
        domain = folder.basename().lower()
        for path in sorted(folder.children()):
            name = path.basename()
            active = name.endswith(".pem")
            if not (active or name.endswith(".pem" + RETIRED)):
                continue
            selector = name.split(".", 1)[0].lower()
            try:
                _validName(domain, selector)
                pem = path.getContent()
            except OSError as e:
                raise DKIMKeyError(f"cannot read {path.path}: {e.strerror}") from None
            keys.append(
                _fromPEM(
                    domain,
                    selector,
                    pem,
                    mtime=path.getModificationTime(),
                    active=active,
                )
            )
    return keys


_PURE_SIGN = dkimpy.RSASSA_PKCS1_v1_5_sign
_HASHES = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}


@functools.lru_cache(maxsize=64)
def _opensslKey(numbers: tuple[int, ...]) -> rsa.RSAPrivateKey:
    n, e, d, p, q, dmp1, dmq1, iqmp = numbers
    return rsa.RSAPrivateNumbers(
        p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, n)
    ).private_key(unsafe_skip_rsa_key_validation=True)


def _opensslSign(hash: Any, privateKey: dict[str, int]) -> bytes:
    """
    dkimpy's RSASSA-PKCS1-v1_5 signing done by OpenSSL: the same bytes
    (the scheme is deterministic), without holding the GIL for the
    pure-Python modular exponentiation.
    """
    algorithm = _HASHES.get(hash.name.lower())
    if algorithm is None:
        return bytes(_PURE_SIGN(hash, privateKey))
    key = _opensslKey(
        tuple(
            privateKey[name]
            for name in (
                "modulus",
                "publicExponent",
                "privateExponent",
                "prime1",
                "prime2",
                "exponent1",
                "exponent2",
                "coefficient",
            )
        )
    )
    return key.sign(hash.digest(), padding.PKCS1v15(), Prehashed(algorithm()))


# dkimpy signs RSA in pure Python (pow on 2048-bit numbers, ~4x slower
# than OpenSSL and holding the GIL, so the reactor thread waits); its
# module-level function is replaced by one giving identical signatures
# (tests/mail/test_dkim.py pins that).
dkimpy.RSASSA_PKCS1_v1_5_sign = _opensslSign


def signMessage(
    message: bytes, keys: Sequence[DKIMKey], now: float | None = None
) -> bytes:
    """
    The C{DKIM-Signature} fields for C{message}, one per key
    (relaxed/relaxed, L{SIGNED_FIELDS} present in the message plus From
    once more). CPU-bound: run it in a thread.
    """
    out = b""
    for key in keys:
        signer = dkimpy.DKIM(message, signature_algorithm=key.signatureAlgorithm)
        present = {name.lower() for name, _ in signer.headers}
        include = [f for f in SIGNED_FIELDS if f in present] + [b"from"]
        out += signer.sign(
            key.selector.encode(),
            key.domain.encode(),
            key.private,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )
    return out


# Verification.

#: What a name's lookup gave: its TXT strings, or an error kind.
MISSING = "missing"
TEMPFAIL = "tempfail"


@frozen
class DKIMResult:
    """
    One signature's outcome (RFC 8601 2.7.1 result names).

    @ivar result: C{pass}, C{fail}, C{neutral}, C{temperror} or
        C{permerror}.
    """

    result: str
    domain: str
    selector: str
    algorithm: str
    identity: str
    reason: str = ""
    #: The first 8 characters of C{b=} (RFC 6008 C{header.b}).
    b: str = ""


def _tags(value: bytes) -> dict[bytes, bytes]:
    tags: dict[bytes, bytes] = {}
    for part in value.split(b";"):
        name, eq, rest = part.partition(b"=")
        if eq:
            tags[name.strip().lower()] = re.sub(rb"\s+", b"", rest)
    return tags


def headerFields(message: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields of a message (names as written, values unfolded)."""
    end = message.find(b"\r\n\r\n")
    head = message if end == -1 else message[: end + 2]
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b" " + line.strip())
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name.strip(), value.strip()))
    return fields


def signatureTags(message: bytes, field: bytes) -> list[dict[bytes, bytes]]:
    """The tags of every C{field} (DKIM-Signature, ARC-Seal ...), in order."""
    return [
        _tags(value)
        for name, value in headerFields(message)
        if name.lower() == field.lower()
    ]


def keyNames(message: bytes, limit: int, arc: bool = True) -> list[str]:
    """
    The key record names the signatures of C{message} need: the first
    C{limit} DKIM signatures, and with C{arc} every ARC-Seal and
    ARC-Message-Signature.
    """
    names: list[str] = []
    fields = [b"dkim-signature"]
    if arc:
        fields += [b"arc-seal", b"arc-message-signature"]
    for field in fields:
        tags = signatureTags(message, field)
        if field == b"dkim-signature":
            tags = tags[:limit]
        for t in tags:
            s, d = t.get(b"s"), t.get(b"d")
            if s and d:
                name = (s + b"._domainkey." + d).decode("ascii", "replace").lower()
                if name not in names:
                    names.append(name)
    return names


async def fetchTexts(
    resolver: IDNSResolver, names: Iterable[str]
) -> dict[str, list[bytes] | str]:
    """
    Look up the TXT records of C{names} at once: each name's strings, or
    L{MISSING} (NXDOMAIN or no TXT), or L{TEMPFAIL}.
    """
    names = list(dict.fromkeys(n.lower().rstrip(".") for n in names))
    lookups = [resolver.lookupText(name) for name in names]
    results = await DeferredList(lookups, consumeErrors=True)
    out: dict[str, list[bytes] | str] = {}
    for name, (ok, value) in zip(names, results, strict=True):
        if ok:
            out[name] = list(value)
        elif value.check(NameNotFound, NoRecords):  # type: ignore[attr-defined]
            out[name] = MISSING
        else:
            out[name] = TEMPFAIL
    return out


class _TempFail(dkimpy.DnsTimeoutError):
    pass


class TextAnswers:
    """
    A dkimpy DNS function answering from L{fetchTexts}' results: for a
    key record, the one TXT record that looks like one.
    """

    def __init__(self, texts: Mapping[str, list[bytes] | str]) -> None:
        self._texts = texts

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        answer = self._texts.get(name.lower().rstrip("."), MISSING)
        if answer == TEMPFAIL:
            raise _TempFail(f"no answer for {name}")
        if isinstance(answer, str) or not answer:
            return None
        keys = [t for t in answer if b"p=" in t]
        return keys[0] if len(keys) == 1 else None

    def state(self, name: str) -> list[bytes] | str:
        """What the lookup of C{name} gave."""
        return self._texts.get(name.lower().rstrip("."), MISSING)


def verifySignatures(
    message: bytes, texts: Mapping[str, list[bytes] | str], limit: int = 5
) -> list[DKIMResult]:
    """
    Verify the first C{limit} DKIM signatures of C{message} with the key
    records in C{texts}. CPU-bound: run it in a thread.
    """
    answers = TextAnswers(texts)
    tags = signatureTags(message, b"dkim-signature")[:limit]
    if not tags:
        return []
    try:
        verifier = dkimpy.DKIM(message, minkey=1024)
    except Exception as e:  # dkimpy's header parser refuses the message
        reason = f"message not parseable: {e}"[:200]
        return [
            DKIMResult(
                "permerror",
                t.get(b"d", b"").decode("ascii", "replace").lower(),
                t.get(b"s", b"").decode("ascii", "replace").lower(),
                t.get(b"a", b"").decode("ascii", "replace"),
                "",
                reason,
            )
            for t in tags
        ]
    results = []
    for index, t in enumerate(tags):
        results.append(_verifyOne(verifier, index, t, answers))
    return results


def _verifyOne(
    verifier: Any, index: int, t: dict[bytes, bytes], answers: TextAnswers
) -> DKIMResult:
    def text(tag: bytes) -> str:
        return t.get(tag, b"").decode("ascii", "replace")

    domain, selector = text(b"d").lower(), text(b"s").lower()

    def result(kind: str, reason: str = "") -> DKIMResult:
        identity = text(b"i") or ("@" + domain if domain else "")
        return DKIMResult(
            kind, domain, selector, text(b"a"), identity, reason, text(b"b")[:8]
        )

    if not domain or not selector:
        return result("permerror", "signature without d= or s=")
    hSigned = [h.strip().lower() for h in t.get(b"h", b"").split(b":")]
    if b"from" not in hSigned:
        return result("permerror", "From is not signed")
    name = f"{selector}._domainkey.{domain}"
    state = answers.state(name)
    if state == TEMPFAIL:
        return result("temperror", f"key lookup of {name} failed")
    if state == MISSING:
        return result("permerror", f"no key record at {name}")
    record = answers(name)
    if record is None:
        return result("permerror", f"no usable key record at {name}")
    try:
        dkimpy.evaluate_pk(name.encode(), record)
    except dkimpy.DKIMException as e:
        return result("permerror", f"bad key record: {e}")
    try:
        ok = verifier.verify(idx=index, dnsfunc=answers)
    except dkimpy.ValidationError as e:
        reason = str(e)
        if "x= value is past" in reason:
            reason = "signature expired"
        elif reason.startswith("body hash mismatch"):
            reason = "body hash mismatch"
        return result("fail", reason)
    except dkimpy.DnsTimeoutError:
        return result("temperror", f"key lookup of {name} failed")
    except dkimpy.DKIMException as e:
        return result("permerror", str(e))
    except Exception as e:  # the crypto libraries on hostile input
        return result("permerror", f"unusable signature or key: {e}")
    if ok:
        return result("pass")
    return result("fail", "signature did not verify")
