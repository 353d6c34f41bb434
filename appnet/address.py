"""
Addresses: the one spelling of C{alice@example.org} everything uses, and
the one test of whether a peer or server is on this machine (loopback).

An account is named by its mail address. Addresses are compared in lower
case (RFC 5321 leaves local-part case to the receiving host; every common
server folds it). C{+} is reserved for plus-addressing (C{alice+tag@} is
delivered to C{alice@}), so it cannot appear in an account's name.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from appnet.errors import BadAddress

__all__ = [
    "IPAddress",
    "IPNetwork",
    "inNetworks",
    "ipAddress",
    "isLoopback",
    "normalizeAccount",
    "splitAddress",
]

#: An IPv4 or IPv6 address.
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: An IPv4 or IPv6 network.
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LOCAL = re.compile(r"^[a-z0-9!#$%&'*/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def splitAddress(address: str) -> tuple[str, str]:
    """
    Split C{local@domain} at the last C{@}.

    @raise BadAddress: if there is no C{@} or either side is empty.
    """
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise BadAddress(address, "expected local@domain")
    return local, domain


def normalizeAccount(address: str | bytes) -> str:
    """
    The canonical form of an account address: stripped, lower case, with a
    valid local part (no C{+}) and a valid domain name.

    @raise BadAddress: naming the problem.
    """
    if isinstance(address, bytes):
        try:
            address = address.decode("utf-8")
        except UnicodeDecodeError:
            raise BadAddress(repr(address), "not UTF-8") from None
    text = address.strip().lower()
    local, domain = splitAddress(text)
    domain = domain.rstrip(".")
    if len(local) > 64 or not _LOCAL.match(local):
        raise BadAddress(
            address, "bad local part (letters, digits, . _ - allowed; no +)"
        )
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or not all(_LABEL.match(x) for x in labels):
        raise BadAddress(address, "bad domain")
    return f"{local}@{domain}"


def isLoopback(host: str) -> bool:
    """
    Is C{host} this machine: a loopback address (IPv4-mapped and scoped
    IPv6 spellings included), C{localhost}, or C{unix} (how appnet names a
    peer on a UNIX socket)? Servers relax TLS-before-AUTH for such peers;
    clients accept plain text to such servers.
    """
    if host in ("localhost", "unix"):
        return True
    address = ipAddress(host)
    return address is not None and address.is_loopback


def ipAddress(host: str) -> IPAddress | None:
    """
    C{host} as an IP address, in the one spelling a peer is judged by: an
    IPv4-mapped IPv6 address (as dual-stack sockets report IPv4 peers) as
    IPv4, an IPv6 scope dropped; C{None} if it is not an IP address.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def inNetworks(host: str, networks: Iterable[IPNetwork]) -> bool:
    """Is C{host} an IP address inside one of C{networks}?"""
    address = ipAddress(host)
    return address is not None and any(address in n for n in networks)
