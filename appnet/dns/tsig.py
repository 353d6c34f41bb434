"""
Transaction signatures (TSIG, RFC 8945): shared-secret HMACs over whole
DNS messages, for UPDATE, NOTIFY and zone transfers.

Twisted's C{dns.Record_TSIG} decodes the record and is used for that;
the MAC is computed here over the raw bytes of the message, since the
digest covers the message exactly as it travelled (with the original ID
and without the TSIG record), which a decoded C{dns.Message} cannot give
back. The TSIG record is written here too, uncompressed, as section
4.2 requires for its names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Iterable, Mapping

from attrs import field, frozen
from twisted.names import dns

from appnet.dns.errors import DNSError

__all__ = [
    "ALGORITHMS",
    "algorithmName",
    "badTime",
    "BADKEY",
    "BADSIG",
    "BADTIME",
    "Key",
    "Keyring",
    "StreamSigner",
    "StreamVerifier",
    "TSIGFormatError",
    "TSIGRejected",
    "Verified",
    "find",
    "formatKey",
    "newKey",
    "parseKeys",
    "sign",
    "unsignedError",
    "verify",
]

BADSIG, BADKEY, BADTIME = dns.EBADSIG, dns.EBADKEY, dns.EBADTIME

#: Algorithm name to hash (RFC 8945 section 6).
ALGORITHMS: dict[bytes, str] = {
    b"hmac-md5.sig-alg.reg.int": "md5",
    b"hmac-sha1": "sha1",
    b"hmac-sha224": "sha224",
    b"hmac-sha256": "sha256",
    b"hmac-sha384": "sha384",
    b"hmac-sha512": "sha512",
}
_SHORT = {b"hmac-md5": b"hmac-md5.sig-alg.reg.int"}

#: Seconds of clock skew allowed (RFC 8945 section 10 recommends 300).
FUDGE = 300

_HEADER = struct.Struct("!H2B4H")


class TSIGFormatError(DNSError):
    """A TSIG record in the wrong place or that does not decode."""


@frozen(eq=False)
class TSIGRejected(DNSError):
    """
    A signed message whose signature does not verify.

    @ivar error: BADKEY, BADSIG or BADTIME.
    @ivar record: the TSIG record as received.
    @ivar keyName: the key it named.
    """

    error: int
    record: dns.Record_TSIG
    keyName: bytes

    def __str__(self) -> str:
        what = {BADKEY: "BADKEY", BADSIG: "BADSIG", BADTIME: "BADTIME"}
        return f"TSIG {what.get(self.error, self.error)} for key {self.keyName!r}"


@frozen
class Key:
    """
    One shared secret.

    @ivar name: the key's name, folded, without the trailing dot.
    @ivar algorithm: the algorithm's name (C{b"hmac-sha256"}).
    @ivar secret: the secret's bytes.
    """

    name: bytes
    algorithm: bytes
    secret: bytes = field(repr=False)

    @property
    def size(self) -> int:
        """The length of this key's MACs."""
        return hashlib.new(ALGORITHMS[self.algorithm]).digest_size

    def mac(self, data: bytes) -> bytes:
        """The HMAC of C{data}."""
        return hmac.new(self.secret, data, ALGORITHMS[self.algorithm]).digest()


def algorithmName(text: str | bytes) -> bytes:
    """An algorithm's canonical name (C{hmac-md5} is the long one).

    @raise ValueError: for an algorithm we do not know.
    """
    name = (text.encode() if isinstance(text, str) else text).lower().rstrip(b".")
    name = _SHORT.get(name, name)
    if name not in ALGORITHMS:
        raise ValueError(f"unknown TSIG algorithm {name.decode('ascii', 'replace')}")
    return name


def newKey(name: str, algorithm: str = "hmac-sha256") -> Key:
    """A new key with a random secret as long as the algorithm's MAC."""
    alg = algorithmName(algorithm)
    size = hashlib.new(ALGORITHMS[alg]).digest_size
    return Key(name.lower().rstrip(".").encode("ascii"), alg, os.urandom(size))


def formatKey(key: Key) -> str:
    """The key in BIND's C{key} statement form (what C{nsupdate -k} reads)."""
    secret = base64.b64encode(key.secret).decode("ascii")
    return (
        f'key "{key.name.decode("ascii")}" {{\n'
        f"\talgorithm {key.algorithm.decode('ascii')};\n"
        f'\tsecret "{secret}";\n'
        "};\n"
    )


_KEY = re.compile(
    r'key\s+"?([A-Za-z0-9._-]+)"?\s*\{\s*(.*?)\}\s*;', re.DOTALL | re.IGNORECASE
)
_COMMENT = re.compile(r'("[^"\n]*")|(?:#|//)[^\n]*')
_STATEMENT = re.compile(r'(algorithm|secret)\s+"?([^";\s]+)"?\s*;', re.IGNORECASE)


def parseKeys(text: str, source: str) -> list[Key]:
    """
    The keys in BIND C{key} statements.

    @raise ValueError: naming C{source} and the problem.
    """
    keys = []
    # Comments go, but not inside quotes: a base64 secret may hold "//".
    text = _COMMENT.sub(lambda m: m.group(0) if m.group(1) else "", text)
    for m in _KEY.finditer(text):
        fields = {k.lower(): v for k, v in _STATEMENT.findall(m.group(2))}
        name = m.group(1)
        if "algorithm" not in fields or "secret" not in fields:
            raise ValueError(f"{source}: key {name} needs an algorithm and a secret")
        try:
            alg = algorithmName(fields["algorithm"])
            secret = base64.b64decode(fields["secret"], validate=True)
        except ValueError as e:
            raise ValueError(f"{source}: key {name}: {e}") from None
        keys.append(Key(name.lower().rstrip(".").encode("ascii"), alg, secret))
    if not keys and text.strip():
        raise ValueError(f"{source}: no key statement")
    return keys


class Keyring:
    """
    Keys by name.
    """

    def __init__(self, keys: Iterable[Key] = ()) -> None:
        self._keys: dict[bytes, Key] = {k.name: k for k in keys}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, name: bytes) -> Key | None:
        """The key named C{name} (any case, trailing dot or not)."""
        return self._keys.get(name.lower().rstrip(b"."))

    @classmethod
    def load(cls, directory: str) -> Keyring:
        """
        Every key in C{directory}/*.key (missing directory: no keys).
        Blocking: call it from a thread or before the reactor runs.

        @raise ValueError: for a file that is not a key statement.
        """
        keys: list[Key] = []
        if os.path.isdir(directory):
            for name in sorted(os.listdir(directory)):
                if name.endswith(".key"):
                    path = os.path.join(directory, name)
                    with open(path, encoding="utf-8") as f:
                        keys.extend(parseKeys(f.read(), path))
        return cls(keys)


def _name(name: bytes) -> bytes:
    """A name in canonical wire form: lower case, uncompressed."""
    out = b""
    for label in name.lower().rstrip(b".").split(b"."):
        if label:
            out += bytes([len(label)]) + label
    return out + b"\x00"


def _skipName(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length == 0:
            return offset + 1
        offset += length + 1


def _lastRecord(data: bytes) -> tuple[int, int]:
    """
    The offset of the last record of C{data} and its type.

    @raise TSIGFormatError: if the message has no record or does not parse.
    """
    try:
        _, _, _, qd, an, ns, ar = _HEADER.unpack_from(data)
        offset = _HEADER.size
        for _ in range(qd):
            offset = _skipName(data, offset) + 4
        start, type = -1, 0
        for _ in range(an + ns + ar):
            start = offset
            offset = _skipName(data, offset)
            type, _, _, length = struct.unpack_from("!HHIH", data, offset)
            offset += 10 + length
    except (IndexError, struct.error):
        raise TSIGFormatError("message does not parse") from None
    if start < 0 or offset != len(data):
        raise TSIGFormatError("message does not parse")
    return start, type


def find(data: bytes) -> tuple[bytes, bytes, dns.Record_TSIG] | None:
    """
    Split a message into its bytes without the TSIG record (ARCOUNT one
    less, ID as originally signed), the key name, and the record.

    @return: C{None} if the message carries no TSIG record.
    @raise TSIGFormatError: if the TSIG record is not the last one of the
        additional section, or does not decode.
    """
    arcount = struct.unpack_from("!H", data, 10)[0]
    if arcount == 0:
        return None
    start, type = _lastRecord(data)
    if type != dns.TSIG:
        return None
    from io import BytesIO

    stream = BytesIO(data)
    stream.seek(start)
    header = dns.RRHeader()
    try:
        header.decode(stream)
        record = dns.Record_TSIG()
        record.decode(stream, header.rdlength)
    except (EOFError, struct.error, ValueError):
        raise TSIGFormatError("TSIG record does not decode") from None
    if header.cls != dns.ANY or header.ttl != 0:
        raise TSIGFormatError("TSIG record with a class other than ANY")
    stripped = (
        struct.pack("!H", record.originalID)
        + data[2:10]
        + struct.pack("!H", arcount - 1)
        + data[12:start]
    )
    return stripped, header.name.name.lower().rstrip(b"."), record


def _variables(
    keyName: bytes,
    algorithm: bytes,
    timeSigned: int,
    fudge: int,
    error: int,
    otherData: bytes,
) -> bytes:
    return (
        _name(keyName)
        + struct.pack("!HI", dns.ANY, 0)
        + _name(algorithm)
        + struct.pack("!Q", timeSigned)[2:]
        + struct.pack("!HHH", fudge, error, len(otherData))
        + otherData
    )


def _timers(timeSigned: int, fudge: int) -> bytes:
    return struct.pack("!Q", timeSigned)[2:] + struct.pack("!H", fudge)


def _prior(mac: bytes) -> bytes:
    return struct.pack("!H", len(mac)) + mac if mac else b""


def _record(
    message: bytes,
    keyName: bytes,
    algorithm: bytes,
    timeSigned: int,
    fudge: int,
    mac: bytes,
    error: int,
    otherData: bytes,
) -> bytes:
    """C{message} with a TSIG record appended (ARCOUNT one more)."""
    originalID = struct.unpack_from("!H", message)[0]
    rdata = (
        _name(algorithm)
        + struct.pack("!Q", timeSigned)[2:]
        + struct.pack("!HH", fudge, len(mac))
        + mac
        + struct.pack("!HHH", originalID, error, len(otherData))
        + otherData
    )
    arcount = struct.unpack_from("!H", message, 10)[0]
    return (
        message[:10]
        + struct.pack("!H", arcount + 1)
        + message[12:]
        + _name(keyName)
        + struct.pack("!HHIH", dns.TSIG, dns.ANY, 0, len(rdata))
        + rdata
    )


def sign(
    message: bytes,
    key: Key,
    now: float,
    requestMAC: bytes = b"",
    error: int = 0,
    otherData: bytes = b"",
    fudge: int = FUDGE,
    timeSigned: int | None = None,
) -> tuple[bytes, bytes]:
    """
    Sign one message (a request, or a response to the request whose MAC
    was C{requestMAC}), RFC 8945 section 4.3.

    @return: the signed message and its MAC.
    """
    when = int(now) if timeSigned is None else timeSigned
    digest = (
        _prior(requestMAC)
        + message
        + _variables(key.name, key.algorithm, when, fudge, error, otherData)
    )
    mac = key.mac(digest)
    return (
        _record(message, key.name, key.algorithm, when, fudge, mac, error, otherData),
        mac,
    )


def unsignedError(
    message: bytes, keyName: bytes, record: dns.Record_TSIG, error: int
) -> bytes:
    """
    A response carrying an unsigned TSIG record with C{error} (BADKEY,
    BADSIG: RFC 8945 sections 5.2.1 and 5.2.2).
    """
    return _record(
        message,
        keyName,
        record.algorithm.name.lower(),
        record.timeSigned,
        record.fudge,
        b"",
        error,
        b"",
    )


@frozen
class Verified:
    """
    A message whose signature checked out.

    @ivar key: the key that signed it.
    @ivar mac: its MAC (to sign the response with).
    @ivar record: its TSIG record.
    """

    key: Key
    mac: bytes
    record: dns.Record_TSIG


def verify(
    data: bytes,
    keys: Keyring | Mapping[bytes, Key],
    now: float,
    requestMAC: bytes = b"",
) -> Verified | None:
    """
    Check the TSIG record of a message (RFC 8945 section 5.2 for a
    request, 5.3 with C{requestMAC} for a response).

    @return: C{None} if the message is not signed.
    @raise TSIGFormatError: for a misplaced or malformed TSIG record.
    @raise TSIGRejected: unknown key or algorithm (BADKEY), wrong MAC
        (BADSIG), time outside the fudge (BADTIME).
    """
    found = find(data)
    if found is None:
        return None
    stripped, keyName, record = found
    key = keys.get(keyName)
    algorithm = record.algorithm.name.lower().rstrip(b".")
    if key is None or key.algorithm != _SHORT.get(algorithm, algorithm):
        raise TSIGRejected(BADKEY, record, keyName)
    if len(record.MAC) != key.size:
        # Truncated MACs (section 5.2.2.1) are not accepted.
        raise TSIGRejected(BADSIG, record, keyName)
    digest = (
        _prior(requestMAC)
        + stripped
        + _variables(
            keyName,
            record.algorithm.name,
            record.timeSigned,
            record.fudge,
            record.error,
            record.otherData,
        )
    )
    if not hmac.compare_digest(key.mac(digest), record.MAC):
        raise TSIGRejected(BADSIG, record, keyName)
    if abs(now - record.timeSigned) > record.fudge:
        raise TSIGRejected(BADTIME, record, keyName)
    return Verified(key, record.MAC, record)


def badTime(message: bytes, verified: TSIGRejected, key: Key, now: float) -> bytes:
    """
    A BADTIME response: signed, the request's time and the server's time
    in Other Data (RFC 8945 section 5.2.3).
    """
    signed, _ = sign(
        message,
        key,
        now,
        verified.record.MAC,
        error=BADTIME,
        otherData=struct.pack("!Q", int(now))[2:],
        fudge=verified.record.fudge,
        timeSigned=verified.record.timeSigned,
    )
    return signed


class StreamSigner:
    """
    Signs the messages of one TCP response stream (a zone transfer):
    the first like a single response, each next one over the previous
    MAC and the timers only (RFC 8945 section 5.3.1).
    """

    def __init__(self, key: Key, requestMAC: bytes, now: float) -> None:
        self._key = key
        self._prior = requestMAC
        self._now = int(now)
        self._first = True

    def sign(self, message: bytes) -> bytes:
        """Sign the next message of the stream."""
        key = self._key
        if self._first:
            self._first = False
            signed, self._prior = sign(message, key, self._now, self._prior)
            return signed
        digest = _prior(self._prior) + message + _timers(self._now, FUDGE)
        mac = key.mac(digest)
        self._prior = mac
        return _record(message, key.name, key.algorithm, self._now, FUDGE, mac, 0, b"")


class StreamVerifier:
    """
    Checks the messages of a signed TCP response stream: the first must
    be signed, then at least every 100th (RFC 8945 section 5.3.1), and
    the last.
    """

    def __init__(self, key: Key, requestMAC: bytes) -> None:
        self._key = key
        self._prior = requestMAC
        self._first = True
        self._pending = b""
        self._unsigned = 0

    @property
    def complete(self) -> bool:
        """Was the last message seen signed?"""
        return not self._pending

    def check(self, data: bytes, now: float) -> None:
        """
        Check the next message.

        @raise TSIGRejected: or L{TSIGFormatError}, if it does not verify.
        """
        found = find(data)
        if found is None:
            if self._first or self._unsigned >= 99:
                raise TSIGFormatError("unsigned message in a signed stream")
            self._pending += data
            self._unsigned += 1
            return
        stripped, keyName, record = found
        key = self._key
        if keyName != key.name:
            raise TSIGRejected(BADKEY, record, keyName)
        if self._first:
            self._first = False
            self._prior = verify(data, {key.name: key}, now, self._prior).mac  # type: ignore[union-attr]
            return
        digest = (
            _prior(self._prior)
            + self._pending
            + stripped
            + _timers(record.timeSigned, record.fudge)
        )
        if not hmac.compare_digest(key.mac(digest), record.MAC):
            raise TSIGRejected(BADSIG, record, keyName)
        if abs(now - record.timeSigned) > record.fudge:
            raise TSIGRejected(BADTIME, record, keyName)
        self._prior = record.MAC
        self._pending = b""
        self._unsigned = 0
