"""
Configuration: built-in defaults, then a TOML file, then command-line options.

The result is one immutable L{Config}. Every setting is declared once, as a
field of a frozen attrs class with the parser that validates it; the loader
walks those declarations, so an unknown key, a wrong type or a bad value is
reported as a L{ConfigError} naming the key (C{smtp.listen[1]}) and where it
came from (the file, or the command-line option). Nothing here listens,
binds or starts anything; the only I/O is reading the TOML file and, for
C{ssl:} endpoints, the certificate files they name (so an unreadable
certificate is a configuration error, found before anything starts).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import socket
import tomllib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs
from attrs import field, frozen
from twisted.internet.endpoints import serverFromString

from appnet.datadir import findDataDir
from appnet.errors import ConfigError

__all__ = [
    "Config",
    "DNSConfig",
    "FTPConfig",
    "HTTPConfig",
    "IMAPConfig",
    "ListenerConfig",
    "POP3Config",
    "ProxyRoute",
    "SMTPConfig",
    "SubmissionConfig",
    "MailConfig",
    "AuthConfig",
    "TLSConfig",
    "StoreConfig",
    "checkStoreURL",
    "SERVICES",
    "TRACEABLE",
    "loadConfig",
    "mergeTables",
    "parseHostPort",
    "parseSize",
]

#: Every service of the stack, in start order.
SERVICES = ("dns", "smtp", "submission", "pop3", "imap", "ftp", "http")

#: Protocols whose dialogue C{--trace} can log.
TRACEABLE = ("smtp", "pop3", "imap", "ftp", "http", "dns")

T = TypeVar("T")
Parser = Callable[[Any], Any]


class _Invalid(Exception):
    """
    Raised by a value parser; the loader adds the key and the source.
    """


def _setting(default: Any, parse: Parser, doc: str) -> Any:
    """
    Declare one setting: its default, the parser that validates a raw TOML
    (or command-line) value, and a one-line description for C{--help}.
    """
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for defaults")
    return field(default=default, metadata={"parse": parse, "doc": doc})


# Value parsers. Each takes a raw value and returns the typed value or raises
# _Invalid with a short description of the problem.


def _typeName(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_typeName(value)}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_typeName(value)}")
    return value


def _optStr(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _str(value)


def _int(lo: int, hi: int) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer, got {_typeName(value)}")
        if not lo <= value <= hi:
            raise _Invalid(f"must be between {lo} and {hi}, got {value}")
        return value

    return parse


_SIZE = re.compile(r"^\s*(\d+)\s*([kmgKMG]?)i?[bB]?\s*$")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _size(value: Any) -> int:
    """
    A byte count: an integer, or a string like C{"25M"}, C{"512KiB"}.
    """
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m is None:
            raise _Invalid(f"expected a size like 10M, got {value!r}")
        return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid(f"expected a size like 10M, got {value!r}")
    return value


def parseSize(text: str | int) -> int:
    """
    A byte count from C{"25M"}, C{"512K"}, C{"1G"} or an integer.

    @raise ValueError: if it is not one.
    """
    try:
        return _size(text)
    except _Invalid as e:
        raise ValueError(str(e)) from None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any) -> float:
    """
    Seconds: a string like C{"30s"}, C{"5m"}, C{"4h"}, C{"5d"}, or a bare
    number, which is seconds (as the example config and README say).
    """
    problem = (
        f"expected a duration like 30s or 5m (a bare number is seconds), got {value!r}"
    )
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise _Invalid(problem)
        return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _Invalid(problem)
    return float(value)


def _listOf(item: Parser) -> Parser:
    def parse(value: Any) -> tuple[Any, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise _Invalid(f"expected a list, got {_typeName(value)}")
        result = []
        for i, each in enumerate(value):
            try:
                result.append(item(each))
            except _Invalid as e:
                raise _Invalid(f"[{i}]: {e}") from None
        return tuple(result)

    return parse


class _ParseOnlyReactor:
    """
    Stands in for the reactor while endpoint descriptions are parsed:
    parsing builds endpoint objects but never calls the reactor.
    """


def parseEndpoint(value: Any) -> str:
    """
    Check a Twisted server endpoint description (C{tcp:2525},
    C{ssl:8443:privateKey=key.pem}) by parsing it, without listening.
    """
    desc = _str(value)
    try:
        serverFromString(_ParseOnlyReactor(), desc)
    except Exception as e:
        detail = str(e) or type(e).__name__
        option = _UNEXPECTED.search(detail)
        if option is not None:
            detail = f"unknown option {option.group(1)!r}"
        elif isinstance(e, TypeError):
            detail = "wrong options for this kind of endpoint"
        raise _Invalid(f"bad endpoint {desc!r}: {detail}") from None
    return desc


#: How Python words a keyword argument the endpoint parser does not take;
#: the parser's own (private) function name is never shown to the user.
_UNEXPECTED = re.compile(r"unexpected keyword argument '([^']*)'")


def parseHostPort(value: str, defaultPort: int | None = None) -> tuple[str, int]:
    """
    Parse C{HOST:PORT} (C{[v6addr]:PORT} for IPv6) into a host and a port.

    @raise ValueError: if it is malformed.
    """
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$", value) or re.match(
        r"^([^:\[\]]+)(?::(\d+))?$", value
    )
    if m is None:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host, port = m.group(1), m.group(2)
    if port is None:
        if defaultPort is None:
            raise ValueError(f"expected HOST:PORT, got {value!r}")
        return host, defaultPort
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"port out of range in {value!r}")
    return host, number


def _hostPort(defaultPort: int | None) -> Parser:
    def parse(value: Any) -> tuple[str, int]:
        try:
            return parseHostPort(_str(value), defaultPort)
        except ValueError as e:
            raise _Invalid(str(e)) from None

    return parse


def _network(value: Any) -> str:
    try:
        return str(ipaddress.ip_network(_str(value), strict=False))
    except ValueError:
        raise _Invalid(f"expected a network like 127.0.0.0/8, got {value!r}") from None


def _ipAddress(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(_str(value)))
    except ValueError:
        raise _Invalid(f"expected an IP address, got {value!r}") from None


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _domain(value: Any) -> str:
    name = _str(value).strip().rstrip(".").lower()
    if (
        not name
        or len(name) > 253
        or not all(_LABEL.match(label) for label in name.split("."))
    ):
        raise _Invalid(f"not a domain name: {value!r}")
    return name


_MAILBOX = re.compile(r"^[^@\s]+@[^@\s]+$")
_ALIAS_NAME = re.compile(r"^[^@\s]+(@[^@\s]+)?$")


def _address(value: Any) -> str:
    text = _str(value).strip()
    if not _MAILBOX.match(text):
        raise _Invalid(f"expected an address like alice@example.org, got {text!r}")
    local, _, domain = text.rpartition("@")
    return f"{local.lower()}@{_domain(domain)}"


def _optAddress(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _address(value)


def _aliases(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(value, Mapping):
        raise _Invalid(f"expected a table of alias = [targets], got {_typeName(value)}")
    result = []
    for name, targets in value.items():
        if not _ALIAS_NAME.match(name):
            raise _Invalid(f"bad alias name {name!r}")
        try:
            parsed = _listOf(_address)(targets)
        except _Invalid as e:
            raise _Invalid(f"alias {name!r}: {e}") from None
        if not parsed:
            raise _Invalid(f"alias {name!r} has no targets")
        result.append((name.lower(), parsed))
    return tuple(result)


def _zoneKeys(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(value, Mapping):
        raise _Invalid(
            f"expected a table of zone = [key names], got {_typeName(value)}"
        )
    result = []
    for zone, keys in value.items():
        try:
            result.append((_domain(zone), _listOf(_domain)(keys)))
        except _Invalid as e:
            raise _Invalid(f"zone {zone!r}: {e}") from None
    return tuple(result)


@frozen
class SecondaryZone:
    """
    A zone copied from primaries by zone transfer.

    @ivar zone: its origin.
    @ivar primaries: the servers it is copied from (and whose NOTIFY is
        heeded).
    @ivar key: the TSIG key transfers are signed with, if any.
    """

    zone: str
    primaries: tuple[tuple[str, int], ...]
    key: str | None = None


def _secondary(value: Any) -> SecondaryZone:
    if not isinstance(value, Mapping):
        raise _Invalid(
            f"expected a table with zone, primaries and key, got {_typeName(value)}"
        )
    unknown = set(value) - {"zone", "primaries", "key"}
    if unknown:
        raise _Invalid(f"unknown setting {sorted(unknown)[0]!r}")
    if "zone" not in value or "primaries" not in value:
        raise _Invalid("a secondary zone needs zone and primaries")
    primaries = _listOf(_hostPort(53))(value["primaries"])
    for host, _ in primaries:
        _ipAddress(host)
    if not primaries:
        raise _Invalid("a secondary zone needs at least one primary")
    key = value.get("key")
    return SecondaryZone(
        _domain(value["zone"]), primaries, _domain(key) if key else None
    )


def _positiveDuration(value: Any) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise _Invalid(f"must be more than 0, got {value!r}")
    return seconds


def _durationOrOff(value: Any) -> float:
    if value in ("off", False):
        return 0.0
    return _duration(value)


def _retrySchedule(value: Any) -> tuple[float, ...]:
    waits: tuple[float, ...] = _listOf(_positiveDuration)(value)
    if not waits:
        raise _Invalid('needs at least one wait, like ["5m", "1h"]')
    return waits


def _optIPAddress(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _ipAddress(value)


def _optHostPort(defaultPort: int) -> Parser:
    def parse(value: Any) -> tuple[str, int] | None:
        if value is None or value == "":
            return None
        result: tuple[str, int] = _hostPort(defaultPort)(value)
        return result

    return parse


def _choice(choices: Sequence[str]) -> Parser:
    def parse(value: Any) -> str:
        text = _str(value)
        if text not in choices:
            raise _Invalid(f"expected one of {', '.join(choices)}, got {text!r}")
        return text

    return parse


def _portRange(value: Any) -> tuple[int, int]:
    text = _str(value)
    m = re.match(r"^(\d+)\s*-\s*(\d+)$", text)
    if m is None:
        raise _Invalid(f"expected a port range like 30000-30099, got {text!r}")
    lo, hi = int(m.group(1)), int(m.group(2))
    if not (1 <= lo <= hi <= 65535):
        raise _Invalid(f"bad port range {text!r}")
    return lo, hi


# The settings. A table's class lists its keys; the defaults are the
# zero-config defaults (tap/example.toml shows them).


def _listen(endpoint: str) -> Any:
    return _setting(
        (endpoint,), _listOf(parseEndpoint), "Twisted endpoint strings to listen on"
    )


def _idle(seconds: float) -> Any:
    return _setting(seconds, _duration, "close a connection idle this long")


@frozen
class ListenerConfig:
    """
    The settings every endpoint-based service has; each service's table
    below sets its own defaults and adds its own keys.
    """

    enabled: bool = _setting(True, _bool, "run this service")
    listen: tuple[str, ...] = _listen("tcp:0:interface=127.0.0.1")
    idle_timeout: float = _idle(300)


@frozen
class ProxyRoute:
    """
    One C{[[http.proxy]]} entry: requests whose path starts with C{prefix}
    (and whose C{Host} is C{host}, when set) go to C{upstream}.
    """

    upstream: str
    prefix: str = "/"
    host: str | None = None
    cache: bool = True
    ca: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


_ROUTE_KEYS = {
    "upstream": _str,
    "prefix": _str,
    "host": _optStr,
    "cache": _bool,
    "ca": _optStr,
    "connect_timeout": _positiveDuration,
    "read_timeout": _positiveDuration,
}


def _proxyRoute(value: Any) -> ProxyRoute:
    if not isinstance(value, Mapping):
        raise _Invalid(f"expected a table, got {_typeName(value)}")
    values: dict[str, Any] = {}
    for key, raw in value.items():
        parse = _ROUTE_KEYS.get(key)
        if parse is None:
            raise _Invalid(f"unknown key {key!r} in a proxy route")
        try:
            values[key] = parse(raw)
        except _Invalid as e:
            raise _Invalid(f"{key}: {e}") from None
    upstream = values.get("upstream")
    if upstream is None:
        raise _Invalid("a proxy route needs an upstream")
    m = re.match(r"^(https?)://(\[[0-9A-Fa-f:.]+\]|[^/:\[\]]+)(:\d+)?/?$", upstream)
    if m is None:
        raise _Invalid(
            "upstream: expected http://HOST:PORT or https://HOST:PORT, "
            f"got {upstream!r}"
        )
    if not values.get("prefix", "/").startswith("/"):
        raise _Invalid("prefix: must start with /")
    ca = values.get("ca")
    if ca is not None:
        try:
            with open(ca, "rb") as f:
                pem = f.read()
        except OSError as e:
            raise _Invalid(f"ca: cannot read {ca}: {e.strerror}") from None
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            raise _Invalid(f"ca: no PEM certificate in {ca}")
    if values.get("host"):
        values["host"] = values["host"].lower()
    return ProxyRoute(**values)


@frozen
class HTTPConfig(ListenerConfig):
    """The web server."""

    listen: tuple[str, ...] = _listen("tcp:8080:interface=127.0.0.1")
    idle_timeout: float = _idle(60)
    root: str | None = _setting(None, _optStr, "web root (default DATA/www)")
    listing: bool = _setting(
        True, _bool, "show an index page for directories without index.html"
    )
    test_api: bool = _setting(
        False,
        _bool,
        "serve the testing API at /_appnet/ (faults, caught mail) to the"
        " status_allow networks; never on a real server",
    )
    max_body_size: int = _setting(
        25 * 1024**2, _size, "largest request body (else 413)"
    )
    max_header_size: int = _setting(
        16 * 1024, _size, "largest request line plus headers (else 414 or 431)"
    )
    request_timeout: float = _setting(
        30.0, _duration, "time allowed to send a request's headers (else 408)"
    )
    hsts: float = _setting(
        0.0, _duration, "Strict-Transport-Security max-age on TLS (0: off)"
    )
    session_lifetime: float = _setting(
        12 * 3600.0, _duration, "a web login expires after this long unused"
    )
    access_log: str = _setting(
        "", _str, "combined-format access log file ('': the daemon log, 'off')"
    )
    gzip: bool = _setting(True, _bool, "compress responses when clients accept it")
    gzip_types: tuple[str, ...] = _setting(
        (
            "text/*",
            "application/javascript",
            "application/json",
            "application/xml",
            "application/wasm",
            "image/svg+xml",
        ),
        _listOf(_str),
        "media types worth compressing (type/* allowed)",
    )
    status_allow: tuple[str, ...] = _setting(
        ("127.0.0.0/8", "::1/128"),
        _listOf(_network),
        "client networks allowed to read /status and /metrics",
    )
    proxy: tuple[ProxyRoute, ...] = _setting(
        (),
        _listOf(_proxyRoute),
        "reverse proxy routes ([[http.proxy]] tables: upstream, prefix, host, "
        "cache, ca, connect_timeout, read_timeout)",
    )
    cache_dir: str | None = _setting(
        None, _optStr, "the proxy cache's directory (default DATA/cache/http)"
    )
    cache_memory: int = _setting(
        64 * 1024**2, _size, "bytes of small cached bodies kept in memory"
    )
    cache_memory_object: int = _setting(
        256 * 1024, _size, "cached bodies up to this size are also kept in memory"
    )
    cache_disk: int = _setting(
        1024**3, _size, "bytes of cached bodies on disk (least recently used go)"
    )
    cache_max_object: int = _setting(
        16 * 1024**2, _size, "larger responses stream through uncached"
    )
    forward_proxy: bool = _setting(
        False, _bool, "serve as a forward proxy (absolute-form and CONNECT)"
    )
    forward_allow: tuple[str, ...] = _setting(
        ("127.0.0.0/8", "::1/128"),
        _listOf(_network),
        "client networks allowed to use the forward proxy",
    )
    forward_deny: tuple[str, ...] = _setting(
        ("0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "fe80::/10", "ff00::/8"),
        _listOf(_network),
        "destination networks the forward proxy never connects to",
    )
    forward_connect_ports: tuple[int, ...] = _setting(
        (443,), _listOf(_int(1, 65535)), "ports CONNECT may reach"
    )
    forward_cache: bool = _setting(
        True, _bool, "forward proxy responses go through the cache"
    )
    file_cache_size: int = _setting(
        16 * 1024**2, _size, "small files kept in memory for the fast path (0: off)"
    )
    file_cache_max_file: int = _setting(
        256 * 1024, _size, "largest file the fast path's cache holds"
    )
    file_cache_valid: float = _setting(
        1.0, _duration, "a cached file is checked again (stat) after this long"
    )


def _passivePorts(value: Any) -> tuple[int, int]:
    """
    A passive port range, or C{"0"}: any free port the system picks.
    """
    if isinstance(value, str) and value.strip() == "0":
        return 0, 0
    return _portRange(value)


def _ipv4(value: Any) -> str | None:
    text = _optStr(value)
    if text is None:
        return None
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise _Invalid(f"expected an IPv4 address, got {text!r}") from None


@frozen
class FTPConfig(ListenerConfig):
    """The FTP server."""

    listen: tuple[str, ...] = _listen("tcp:2121:interface=127.0.0.1")
    idle_timeout: float = _idle(900)
    passive_ports: tuple[int, int] = _setting(
        (30000, 30099),
        _passivePorts,
        'port range for passive data connections ("0": any free port)',
    )
    public_address: str | None = _setting(
        None, _ipv4, "address announced in PASV replies (behind NAT)"
    )
    max_passive_per_account: int = _setting(
        4,
        _int(1, 65535),
        "passive data ports one account may hold open over all its sessions",
    )
    data_timeout: float = _setting(
        60.0, _duration, "wait this long for a data connection or transfer progress"
    )
    require_tls: bool = _setting(
        False,
        _bool,
        "refuse password logins before AUTH TLS, and their transfers without "
        "PROT P, even from loopback (other addresses always need TLS to log in)",
    )
    anonymous: bool = _setting(
        False, _bool, "allow read-only anonymous logins (user anonymous or ftp)"
    )
    anonymous_root: str | None = _setting(
        None, _optStr, "the anonymous area (default DATA/ftp/anonymous)"
    )
    quota: int = _setting(
        0, _size, "quota for accounts that set none, e.g. 1G (0: unlimited)"
    )
    max_upload: int = _setting(
        0, _size, "largest file one upload may write (0: no limit)"
    )
    rate_limit: int = _setting(
        0, _size, "bytes per second per user across sessions, e.g. 10M (0: no limit)"
    )


def _maxRecipients() -> Any:
    return _setting(100, _int(1, 100000), "recipients accepted per message (then 452)")


@frozen
class SMTPConfig(ListenerConfig):
    """The MX role: mail for local domains, no AUTH."""

    listen: tuple[str, ...] = _listen("tcp:2525:interface=127.0.0.1")
    max_recipients: int = _maxRecipients()


@frozen
class SubmissionConfig(ListenerConfig):
    """The submission role: AUTH required, relays anywhere."""

    listen: tuple[str, ...] = _listen("tcp:2587:interface=127.0.0.1")
    max_recipients: int = _maxRecipients()
    sender_must_match: bool = _setting(
        True,
        _bool,
        "the envelope sender must be the logged-in account (or its alias)",
    )


@frozen
class POP3Config(ListenerConfig):
    """The POP3 server."""

    listen: tuple[str, ...] = _listen("tcp:1110:interface=127.0.0.1")
    idle_timeout: float = _idle(600)
    apop: bool = _setting(
        False,
        _bool,
        "offer APOP (timestamp in the greeting) to accounts given an APOP"
        " secret with 'appnet user apop'; the secret is stored in the clear",
    )


@frozen
class IMAPConfig(ListenerConfig):
    """The IMAP server."""

    listen: tuple[str, ...] = _listen("tcp:1143:interface=127.0.0.1")
    idle_timeout: float = _idle(1800)
    max_literal_size: int = _setting(
        64 * 1024,
        _size,
        "largest literal in a command other than APPEND"
        " (APPEND: mail.max_message_size)",
    )
    idle_keepalive: float = _setting(
        120.0, _duration, "send '* OK Still here' this often during IDLE (0: never)"
    )


@frozen
class DNSConfig:
    """
    The DNS service: one address for UDP and TCP, and how it recurses.
    """

    enabled: bool = _setting(True, _bool, "run this service")
    listen: tuple[str, int] = _setting(
        ("127.0.0.1", 1053), _hostPort(53), "HOST:PORT for UDP and TCP"
    )
    forward: tuple[tuple[str, int], ...] = _setting(
        (), _listOf(_hostPort(53)), "forward recursion to these upstreams"
    )
    root_hints: str | None = _setting(
        None, _optStr, "iterate from the root servers named in this file"
    )
    upstream_port: int = _setting(53, _int(1, 65535), "port for iterative queries")
    resolver: tuple[str, int] | None = _setting(
        None,
        _hostPort(53),
        "DNS server appnet's own lookups use (default: its own DNS service "
        "if it recurses, else the system's resolvers)",
    )
    resolv_conf: str = _setting(
        "/etc/resolv.conf",
        _str,
        "the system's resolvers, used by mail when neither resolver nor recursion is",
    )
    zones: tuple[str, ...] = _setting(
        (), _listOf(_str), "zone files served besides DATA/zones/*.zone"
    )
    allow_recursion: tuple[str, ...] = _setting(
        ("127.0.0.0/8", "::1/128"),
        _listOf(_network),
        "client networks allowed to recurse",
    )
    allow_transfer: tuple[str, ...] = _setting(
        (), _listOf(_ipAddress), "addresses allowed to AXFR our zones"
    )
    cache_size: int = _setting(
        10000, _int(0, 10_000_000), "RRsets and negative answers the cache holds"
    )
    cache_max_ttl: float = _setting(
        86400.0, _duration, "longest time an answer is cached, whatever its TTL"
    )
    cache_max_negative_ttl: float = _setting(
        3600.0, _duration, "longest time NXDOMAIN/NODATA is cached (RFC 2308)"
    )
    upstream_timeout: float = _setting(
        2.0, _duration, "wait this long for an upstream server before the next"
    )
    recursion_timeout: float = _setting(
        10.0, _duration, "answer SERVFAIL when recursion takes longer"
    )
    rate_limit: int = _setting(
        200, _int(0, 1_000_000), "UDP responses per second per client (0: no limit)"
    )
    max_udp_size: int = _setting(
        1232, _int(512, 4096), "largest UDP reply, if the client's EDNS allows"
    )
    idle_timeout: float = _setting(
        30.0, _duration, "close a TCP connection idle this long"
    )
    keys: str | None = _setting(
        None, _optStr, "directory of TSIG key files (default DATA/keys)"
    )
    update: tuple[tuple[str, tuple[str, ...]], ...] = _setting(
        (), _zoneKeys, "zone = [TSIG key names] that may UPDATE it"
    )
    transfer_keys: tuple[str, ...] = _setting(
        (), _listOf(_domain), "TSIG keys that may AXFR/IXFR our zones"
    )
    notify: tuple[tuple[str, int], ...] = _setting(
        (), _listOf(_hostPort(53)), "secondaries sent NOTIFY after every change"
    )
    journal_limit: int = _setting(
        10000,
        _int(2, 100_000_000),
        "changes a zone's journal holds before the zone file is rewritten",
    )
    secondary: tuple[SecondaryZone, ...] = _setting(
        (), _listOf(_secondary), "zones copied from primaries by AXFR/IXFR"
    )
    answer_cache_size: int = _setting(
        10000,
        _int(0, 10_000_000),
        "encoded responses kept for repeated questions (0: off)",
    )


@frozen
class MailConfig:
    """
    Mail identity and relay settings shared by SMTP, delivery and the queue.
    """

    domains: tuple[str, ...] = _setting(
        (), _listOf(_domain), "local mail domains besides the users' domains"
    )
    relay_port: int = _setting(25, _int(1, 65535), "port for outbound SMTP")
    max_message_size: int = _setting(
        25 * 1024**2, _size, "largest message accepted (SIZE), in bytes"
    )
    hop_limit: int = _setting(
        50, _int(1, 1000), "Received headers after which a message is a loop"
    )
    quota: int = _setting(
        1024**3, _size, "mailbox quota for users without their own (0: none)"
    )
    aliases: tuple[tuple[str, tuple[str, ...]], ...] = _setting(
        (),
        _aliases,
        "alias = [targets]; an alias without @domain applies to every local domain",
    )
    aliases_file: str | None = _setting(
        None, _optStr, "more aliases, one 'alias: target, target' per line"
    )
    catch_all: str | None = _setting(
        None, _optAddress, "receives mail for unknown local users"
    )
    catch: bool = _setting(
        False,
        _bool,
        "mail catcher: accept mail to any address (any AUTH) and keep it,"
        " relay nothing; list it at /_appnet/ (a testing tool)",
    )
    postmaster: str | None = _setting(
        None,
        _optAddress,
        "receives postmaster@ mail of every local domain"
        " (default: each domain's postmaster mailbox)",
    )
    # The outgoing queue and the relay (appnet.mail.queue, appnet.mail.relay).
    retry: tuple[float, ...] = _setting(
        (300.0, 600.0, 1200.0, 2400.0, 3600.0, 7200.0, 14400.0),
        _retrySchedule,
        "waits between delivery attempts; the last one repeats",
    )
    max_queue_age: float = _setting(
        5 * 86400.0, _positiveDuration, "bounce what is still undelivered after this"
    )
    delay_warning: float = _setting(
        4 * 3600.0, _durationOrOff, "tell the sender of a delay after this (0: never)"
    )
    relay_concurrency: int = _setting(
        20, _int(1, 10000), "outbound SMTP connections at once"
    )
    relay_destination_concurrency: int = _setting(
        10, _int(1, 1000), "outbound SMTP connections at once to one domain"
    )
    relay_connect_timeout: float = _setting(
        30.0, _positiveDuration, "give up connecting to a mail server after this"
    )
    relay_timeout: float = _setting(
        300.0, _positiveDuration, "give up on a mail server's reply after this"
    )
    relay_reuse: int = _setting(
        100, _int(1, 100000), "messages sent over one connection before a new one"
    )
    relay_idle: float = _setting(
        2.0, _duration, "keep an idle outbound connection open this long for more"
    )
    relay_tls: str = _setting(
        "may",
        _choice(("may", "none")),
        "STARTTLS to MX hosts: 'may' (when offered, unverified), 'none'",
    )
    bind_address: str | None = _setting(
        None, _optIPAddress, "source address of outbound SMTP connections"
    )
    smarthost: tuple[str, int] | None = _setting(
        None, _optHostPort(587), "HOST:PORT to relay all outgoing mail through"
    )
    smarthost_user: str | None = _setting(
        None, _optStr, "AUTH user name at the smarthost"
    )
    smarthost_password_file: str | None = _setting(
        None, _optStr, "file holding the smarthost password (first line)"
    )
    smarthost_tls: str = _setting(
        "verify",
        _choice(("verify", "encrypt", "none")),
        "TLS to the smarthost: required and verified, required only, or none",
    )
    smarthost_cafile: str | None = _setting(
        None, _optStr, "PEM certificates to verify the smarthost with"
    )
    queue_poll: float = _setting(
        10.0,
        _positiveDuration,
        "look for queue changes made by other processes this often",
    )
    spf: str = _setting(
        "mark",
        _choice(("mark", "reject", "off")),
        "SPF on the MX role: add Received-SPF, also reject on fail, or off",
    )
    spf_skip: tuple[str, ...] = _setting(
        ("127.0.0.0/8", "::1/128"),
        _listOf(_network),
        "client networks whose mail is not SPF-checked",
    )


@frozen
class DKIMConfig:
    """
    Mail authentication: DKIM signing of submitted mail, DKIM, DMARC and
    ARC verification on the MX role (appnet.mail.mailauth).
    """

    sign: bool = _setting(
        True, _bool, "DKIM-sign mail submitted from domains with a key in dkim/"
    )
    verify: bool = _setting(
        True,
        _bool,
        "verify DKIM, DMARC and ARC on the MX role (clients in mail.spf_skip"
        " are trusted and not checked)",
    )
    authserv_id: str = _setting(
        "", _str, "authserv-id of Authentication-Results (default: hostname)"
    )
    max_signatures: int = _setting(
        5, _int(1, 50), "DKIM signatures verified per message at most"
    )
    dns_timeout: float = _setting(
        20.0, _positiveDuration, "give up on the key and policy lookups after this"
    )
    dmarc_reject: str = _setting(
        "reject",
        _choice(("reject", "quarantine", "none")),
        "what a DMARC failure under p=reject gets: 550 5.7.1, Junk, or nothing",
    )
    dmarc_quarantine: str = _setting(
        "quarantine",
        _choice(("quarantine", "none")),
        "what a DMARC failure under p=quarantine gets: Junk, or nothing",
    )
    arc_seal: bool = _setting(
        True, _bool, "ARC-seal mail forwarded through aliases to other domains"
    )


@frozen
class TLSConfig:
    """
    The certificate and key for STARTTLS, STLS and AUTH TLS. When neither is
    set, DATA/tls/cert.pem and key.pem are used if present.
    """

    cert: str | None = _setting(None, _optStr, "certificate chain (PEM)")
    key: str | None = _setting(None, _optStr, "private key (PEM)")


@frozen
class AuthConfig:
    """
    Login throttling, shared by every protocol.
    """

    max_failures: int = _setting(
        5,
        _int(1, 10000),
        "failed logins to one account from one address (IPv6: /64) in the window",
    )
    max_address_failures: int = _setting(
        20, _int(1, 100000), "failed logins from one address, to any accounts"
    )
    max_account_failures: int = _setting(
        20,
        _int(1, 100000),
        "failed logins to one account before addresses that never logged in"
        " to it are refused",
    )
    window: float = _setting(
        900.0, _duration, "how long a failed login counts against its address"
    )
    failure_delay: float = _setting(
        2.0, _duration, "delay before a failed login is answered"
    )
    cache_ttl: float = _setting(
        300.0, _duration, "how long a verified password is cached; 0: no cache"
    )
    hash_threads: int = _setting(
        2, _int(1, 64), "threads that check password hashes at once"
    )


@frozen
class LimitsConfig:
    """
    Limits every listener applies.
    """

    connections_per_ip: int = _setting(
        32, _int(1, 100000), "simultaneous connections per client address"
    )


@frozen
class StackConfig:
    """
    How the stack runs on this machine.
    """

    workers: int = _setting(
        1, _int(1, 256), "processes sharing every listening socket (one per core)"
    )


def _storeURL(value: Any) -> str:
    """
    C{""} (SQLite in the data directory) or a C{postgresql://} URL
    without a password: a password belongs in C{password_file} or
    C{PGPASSFILE}, never in a command line or a config file others read.
    """
    text = _str(value).strip()
    if not text:
        return ""
    parsed = urlsplit(text)
    if parsed.scheme not in ("postgresql", "postgres"):
        raise _Invalid(f"expected a postgresql:// URL, got {text!r}")
    try:
        password = parsed.password
    except ValueError:
        raise _Invalid(f"not a valid URL: {text!r}") from None
    if password is not None or "password=" in parsed.query:
        raise _Invalid(
            "the URL holds a password; put it in store.password_file or PGPASSFILE"
        )
    return text


def checkStoreURL(text: str, option: str = "store.url") -> str:
    """
    A store URL as L{StoreConfig.url} accepts it.

    @raise ConfigError: naming C{option}, for a bad URL or one holding a
        password.
    """
    try:
        return _storeURL(text)
    except _Invalid as e:
        raise ConfigError(option, str(e)) from None


@frozen
class StoreConfig:
    """
    Where durable state lives: SQLite in the data directory (the default),
    or a PostgreSQL database shared by several nodes; and the store's
    thread pools.
    """

    url: str = _setting(
        "",
        _storeURL,
        "postgresql://user@host/db (sslmode and other libpq parameters"
        " pass through), or empty for SQLite in the data directory",
    )
    password_file: str | None = _setting(
        None, _optStr, "file holding the database password (else PGPASSFILE)"
    )
    connections: int = _setting(
        8, _int(1, 1000), "database connections (and threads) per node"
    )
    timeout: float = _setting(
        5.0,
        _positiveDuration,
        "how long a call waits for a database connection before failing"
        " (SMTP then answers 451)",
    )
    file_threads: int = _setting(
        4, _int(1, 256), "threads for message files (writes, fsyncs, reads)"
    )
    database_readers: int = _setting(
        2, _int(1, 64), "threads reading the database (one more writes)"
    )


def _trace(value: Any) -> frozenset[str]:
    names = _listOf(_choice(TRACEABLE))(
        value.split(",") if isinstance(value, str) else value
    )
    return frozenset(names)


@frozen
class Config:
    """
    The whole configuration of one appnet stack.
    """

    data: str = _setting(
        "", _str, "data directory (default $APPNET_DATA or ./appnet-data)"
    )
    hostname: str = _setting(
        "", _domain, "this host's name in greetings and Received headers"
    )
    trace: frozenset[str] = _setting(
        frozenset(), _trace, "protocols whose dialogue is logged"
    )
    tls: TLSConfig = field(factory=TLSConfig)
    store: StoreConfig = field(factory=StoreConfig)
    auth: AuthConfig = field(factory=AuthConfig)
    limits: LimitsConfig = field(factory=LimitsConfig)
    stack: StackConfig = field(factory=StackConfig)
    mail: MailConfig = field(factory=MailConfig)
    dkim: DKIMConfig = field(factory=DKIMConfig)
    dns: DNSConfig = field(factory=DNSConfig)
    smtp: SMTPConfig = field(factory=SMTPConfig)
    submission: SubmissionConfig = field(factory=SubmissionConfig)
    pop3: POP3Config = field(factory=POP3Config)
    imap: IMAPConfig = field(factory=IMAPConfig)
    ftp: FTPConfig = field(factory=FTPConfig)
    http: HTTPConfig = field(factory=HTTPConfig)

    def service(self, name: str) -> Any:
        """
        The settings table of service C{name} (one of L{SERVICES}).
        """
        return getattr(self, name)

    def enabled(self) -> list[str]:
        """
        The names of the services that will run, in start order.
        """
        return [name for name in SERVICES if self.service(name).enabled]


def _fields(cls: type) -> tuple[attrs.Attribute[Any], ...]:
    return attrs.fields(cls)


def _isTable(a: attrs.Attribute[Any]) -> bool:
    return "parse" not in a.metadata


def _tableClass(cls: type, a: attrs.Attribute[Any]) -> type:
    factory = a.default.factory  # type: ignore[union-attr]
    assert isinstance(factory, type)
    return factory


def _build(
    cls: type[T],
    raw: Mapping[str, Any],
    prefix: str,
    sourceOf: Callable[[str], str | None],
) -> T:
    """
    Build an instance of the settings class C{cls} from a raw mapping,
    naming every problem by its dotted key.
    """
    names = {a.name for a in _fields(cls)}
    for key in raw:
        if key not in names:
            path = prefix + key
            kind = "section" if isinstance(raw[key], Mapping) else "setting"
            problem = f"unknown {kind}"
            close = difflib.get_close_matches(key, sorted(names), n=1)
            if close:
                problem += f" (did you mean {prefix}{close[0]}?)"
            raise ConfigError(path, problem, sourceOf(path))
    values: dict[str, Any] = {}
    for a in _fields(cls):
        path = prefix + a.name
        if a.name not in raw:
            continue
        value = raw[a.name]
        if _isTable(a):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    path, f"expected a table, got {_typeName(value)}", sourceOf(path)
                )
            values[a.name] = _build(_tableClass(cls, a), value, path + ".", sourceOf)
            continue
        try:
            values[a.name] = a.metadata["parse"](value)
        except _Invalid as e:
            text = str(e)
            if text.startswith("["):
                index, _, text = text.partition(": ")
                path += index
            raise ConfigError(path, text, sourceOf(path)) from None
    return cls(**values)


def mergeTables(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """
    C{over} laid on C{base}, table by table (TOML-shaped dicts): a nested
    table merges key by key, any other value replaces.
    """
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = mergeTables(merged[key], value)
        else:
            merged[key] = value
    return merged


def readTOML(path: str) -> dict[str, Any]:
    """
    Read a TOML file.

    @raise ConfigError: if it cannot be read or parsed.
    """
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError("--config", f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("--config", f"{path} is not valid TOML: {e}") from None


def loadConfig(
    path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    optionNames: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """
    Build the configuration: defaults, then the TOML file at C{path}, then
    C{overrides} (the command-line options, in the TOML's shape).

    @param optionNames: maps a dotted key set by C{overrides} to the
        command-line option that set it, so errors name the option.
    @param env: environment for the data directory fallback.
    @raise ConfigError: naming the first bad key.
    """
    fromFile = readTOML(path) if path else {}
    raw = mergeTables(fromFile, overrides or {})
    options = dict(optionNames or {})

    def sourceOf(key: str) -> str | None:
        for dotted, option in options.items():
            if (
                key == dotted
                or key.startswith(dotted + "[")
                or key.startswith(dotted + ".")
            ):
                return option
        return path

    config = _build(Config, raw, "", sourceOf)
    if (config.tls.cert is None) != (config.tls.key is None):
        missing = "tls.key" if config.tls.key is None else "tls.cert"
        raise ConfigError(
            missing, "tls.cert and tls.key must be set together", sourceOf(missing)
        )
    if config.dns.forward and config.dns.root_hints:
        raise ConfigError(
            "dns.forward",
            "set either dns.forward or dns.root_hints, not both",
            sourceOf("dns.forward"),
        )
    return attrs.evolve(
        config,
        data=findDataDir(config.data or None, env),
        hostname=config.hostname or _defaultHostname(),
    )


def _defaultHostname() -> str:
    """
    The machine's own name, without a DNS lookup (which could block).
    """
    name = socket.gethostname().rstrip(".").lower()
    try:
        return _domain(name)
    except _Invalid:
        return "localhost"


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, Any, str]]:
    """
    Every setting as C{(dotted key, default, description)}, for help texts
    and the example config.
    """
    rows: list[tuple[str, Any, str]] = []
    for a in _fields(cls):
        if _isTable(a):
            rows.extend(describe(_tableClass(cls, a), prefix + a.name + "."))
        else:
            rows.append((prefix + a.name, a.default, a.metadata["doc"]))
    return rows
