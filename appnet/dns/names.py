"""
Domain names as the rest of the package keeps them: lower-case C{bytes}
without the trailing dot, the root being C{b""}.

Comparisons in DNS ignore ASCII case (RFC 1035 section 2.3.3, RFC 4343), so
every name is folded once, where it enters (a zone file, a question, an
upstream reply), and plain C{bytes} equality and C{dict} lookups work from
then on.
"""

from __future__ import annotations

import ipaddress

from twisted.names import dns

__all__ = [
    "ancestors",
    "display",
    "isSubdomain",
    "normalize",
    "parent",
    "reverseName",
]

_PRINTABLE = frozenset(range(0x21, 0x7F)) - {ord("."), ord("\\"), ord(";")}


def normalize(name: bytes | str | dns.Name) -> bytes:
    """
    The folded form of a name: lower case, no trailing dot.
    """
    if isinstance(name, dns.Name):
        name = name.name
    if isinstance(name, str):
        name = name.encode("idna") if not name.isascii() else name.encode("ascii")
    return name.rstrip(b".").lower()


def isSubdomain(name: bytes, zone: bytes) -> bool:
    """
    Is C{name} at or below C{zone}? Both folded. Everything is below the
    root.
    """
    return not zone or name == zone or name.endswith(b"." + zone)


def parent(name: bytes) -> bytes | None:
    """
    The name one label up (C{b"b.c"} for C{b"a.b.c"}), the root for a
    top-level name, C{None} for the root itself.
    """
    if not name:
        return None
    _, dot, rest = name.partition(b".")
    return rest if dot else b""


def ancestors(name: bytes) -> list[bytes]:
    """
    C{name} and every name above it, ending with the root.
    """
    result = [name]
    up = parent(name)
    while up is not None:
        result.append(up)
        up = parent(up)
    return result


def display(name: bytes | dns.Name) -> str:
    """
    A name in presentation format, fully qualified: C{www.example.org.},
    C{.} for the root. Bytes that are not printable are written C{\\DDD}
    (RFC 1035 section 5.1).
    """
    if isinstance(name, dns.Name):
        name = name.name
    if not name:
        return "."
    out = []
    for label in name.split(b"."):
        out.append("".join(chr(b) if b in _PRINTABLE else f"\\{b:03d}" for b in label))
    return ".".join(out) + "."


def reverseName(address: str) -> bytes:
    """
    The name a PTR lookup for C{address} asks about: C{4.3.2.1.in-addr.arpa}
    or the nibble form under C{ip6.arpa}.

    @raise ValueError: if C{address} is not an IP address.
    """
    return ipaddress.ip_address(address).reverse_pointer.encode("ascii")
