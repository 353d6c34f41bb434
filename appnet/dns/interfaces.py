"""
The seams of the DNS package.

L{IDNSResolver} is what other parts of appnet (the mail relay, SPF) look
names up through; L{appnet.dns.client.DNSClient} provides it over the
network and L{appnet.dns.testing.StaticResolver} from a table, for tests.

L{IRecursiveResolver} is how the server answers names outside its zones:
L{appnet.dns.recursion.ForwardingResolver} asks configured upstreams,
L{appnet.dns.recursion.IterativeResolver} walks down from the root.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from zope.interface import Interface

if TYPE_CHECKING:
    from appnet.dns.answer import Answer
    from appnet.dns.client import MailExchanger, Response

__all__ = ["IDNSResolver", "IRecursiveResolver"]


class IDNSResolver(Interface):
    """
    Looks names up for appnet's own use.
    """

    def query(name: str, type: int | str = ...) -> Deferred[Response]:
        """
        Ask one question; the full response, whatever its rcode.

        @raise appnet.dns.errors.TemporaryFailure: (as the Deferred's
            failure) if no server answered.
        """

    def lookupMX(domain: str) -> Deferred[list[MailExchanger]]:
        """
        The mail exchangers of C{domain}, most preferred first.

        @raise appnet.dns.errors.NameNotFound: NXDOMAIN.
        @raise appnet.dns.errors.NoRecords: no MX; use the domain's own
            address (RFC 5321 section 5.1).
        @raise appnet.dns.errors.NullMX: the domain accepts no mail.
        @raise appnet.dns.errors.TemporaryFailure: try again later.
        """

    def lookupText(name: str) -> Deferred[list[bytes]]:
        """
        The TXT records of C{name}, each its strings joined.

        @raise appnet.dns.errors.NameNotFound: NXDOMAIN.
        @raise appnet.dns.errors.NoRecords: no TXT records.
        @raise appnet.dns.errors.TemporaryFailure: try again later.
        """

    def lookupAddresses(host: str) -> Deferred[list[str]]:
        """
        The IPv4 then IPv6 addresses of C{host}.

        @raise appnet.dns.errors.NameNotFound: NXDOMAIN.
        @raise appnet.dns.errors.NoRecords: neither A nor AAAA records.
        @raise appnet.dns.errors.TemporaryFailure: try again later.
        """


class IRecursiveResolver(Interface):
    """
    Answers questions about names outside our zones, through a cache.
    """

    def cached(name: bytes, type: int) -> Answer | None:
        """
        The whole answer from the cache alone, or C{None} if some of it
        must be fetched.
        """

    def resolve(name: bytes, type: int) -> Deferred[Answer]:
        """
        The answer, from the cache or fetched.

        @raise appnet.dns.errors.ResolutionFailed: (as the Deferred's
            failure) when no upstream gives a usable answer; the server
            answers SERVFAIL, never NXDOMAIN.
        """

    def stop() -> Deferred[None]:
        """
        Abandon the queries in flight and close their sockets.
        """
