"""
What can go wrong in DNS, as a small typed hierarchy under
L{appnet.errors.AppnetError}.

Two families matter to callers:

  - the lookup outcomes a mail relay must tell apart
    (U{RFC 5321 section 5<https://www.rfc-editor.org/rfc/rfc5321#section-5>},
    U{RFC 7505<https://www.rfc-editor.org/rfc/rfc7505>}): the name does not
    exist (L{NameNotFound}, permanent), it exists without records of the
    type asked for (L{NoRecords}), it publishes a null MX (L{NullMX},
    permanent), or the answer could not be had right now
    (L{TemporaryFailure}: SERVFAIL, REFUSED, a timeout, a network error);
  - the server side: a zone file that cannot be loaded (L{ZoneError},
    naming file, line and problem) and a packet that cannot be decoded
    (L{MalformedMessage}).
"""

from __future__ import annotations

from attrs import frozen

from appnet.errors import AppnetError

__all__ = [
    "DNSError",
    "LookupFailed",
    "MalformedMessage",
    "NameNotFound",
    "NoRecords",
    "NullMX",
    "ResolutionFailed",
    "TemporaryFailure",
    "ZoneError",
]


class DNSError(AppnetError):
    """
    Base class of appnet's DNS errors.
    """


@frozen(eq=False)
class ZoneError(DNSError):
    """
    A zone (or root hints) file cannot be loaded.

    @ivar filename: the file at fault (an included file names itself).
    @ivar line: the 1-based line the problem starts on, or 0 for the file
        as a whole (an unreadable file, a missing SOA).
    @ivar problem: what is wrong, one short sentence.
    """

    filename: str
    line: int
    problem: str

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}" if self.line else self.filename
        return f"{where}: {self.problem}"


@frozen(eq=False)
class MalformedMessage(DNSError):
    """
    Bytes that are not a well-formed DNS message.

    @ivar id: the message ID, if at least the header could be read (a
        server answers FORMERR to it), else C{None} (nothing to answer).
    @ivar reason: what is wrong.
    """

    id: int | None
    reason: str

    def __str__(self) -> str:
        return f"malformed DNS message: {self.reason}"


class LookupFailed(DNSError):
    """
    A lookup did not produce the records asked for.
    """


@frozen(eq=False)
class NameNotFound(LookupFailed):
    """
    The name does not exist (NXDOMAIN). Permanent.
    """

    name: str

    def __str__(self) -> str:
        return f"{self.name}: no such domain (NXDOMAIN)"


@frozen(eq=False)
class NoRecords(LookupFailed):
    """
    The name exists but has no records of this type (NODATA). For MX this
    means the domain's own address is its implicit mail exchanger
    (RFC 5321 section 5.1).
    """

    name: str
    type: str

    def __str__(self) -> str:
        return f"{self.name}: no {self.type} records"


@frozen(eq=False)
class NullMX(LookupFailed):
    """
    The domain publishes a null MX (RFC 7505): it accepts no mail.
    Permanent.
    """

    name: str

    def __str__(self) -> str:
        return f"{self.name}: null MX, the domain accepts no mail (RFC 7505)"


@frozen(eq=False)
class TemporaryFailure(LookupFailed):
    """
    No usable answer right now: the server said SERVFAIL or REFUSED, or
    did not answer in time, or could not be reached. Try again later.

    @ivar name: the name looked up.
    @ivar reason: what happened, e.g. C{"SERVFAIL from 127.0.0.1:53"} or
        C{"timed out"}.
    """

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: temporary DNS failure: {self.reason}"


@frozen(eq=False)
class ResolutionFailed(DNSError):
    """
    The recursive resolver could not get an answer (every upstream failed,
    a referral loop, too many steps); the server answers SERVFAIL.
    """

    name: str
    reason: str

    def __str__(self) -> str:
        return f"cannot resolve {self.name}: {self.reason}"
