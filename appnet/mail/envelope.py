"""
SMTP envelope syntax: the paths and parameters of MAIL FROM and RCPT TO
(RFC 5321 4.1.2, 4.1.3), parsed strictly enough to route safely and
leniently enough for real clients (a space after the colon, a path without
angle brackets).

Twisted's L{twisted.mail.smtp.Address} is not used: it accepts a bare local
part (and silently appends a domain), keeps quoting and backslashes in the
local part, and parses bytes into bytes, so every check that decides
"local or relay?" would have to be redone on its result anyway.
"""

from __future__ import annotations

import re

from attrs import frozen

from appnet.errors import AppnetError

__all__ = ["EnvelopeSyntaxError", "Mailbox", "parsePath", "parseParameters"]

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_STRING = re.compile(rf"^{_ATEXT}+(?:\.{_ATEXT}+)*$")
_QUOTED = re.compile(r'^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*)"$')
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_LITERAL = re.compile(r"^\[[\x21-\x5a\x5e-\x7e]+\]$")
_ADL = re.compile(r"^@[^,:]+(?:,@[^,:]+)*:")
_KEYWORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_VALUE = re.compile(r"^[\x21-\x3c\x3e-\x7e]+$")


@frozen(eq=False)
class EnvelopeSyntaxError(AppnetError):
    """
    A path or parameter is malformed.

    @ivar enhanced: the enhanced status code (RFC 3463) to reply with.
    """

    problem: str
    enhanced: str = "5.5.4"

    def __str__(self) -> str:
        return self.problem


@frozen
class Mailbox:
    """
    An envelope address: C{local@domain}.

    @ivar local: the local part, unquoted (C{"john doe"} for C{"john
        doe"@example.org}); its case is kept.
    @ivar domain: the domain in lower case without a trailing dot, or an
        address literal (C{[192.0.2.1]}); empty only for the special
        C{<postmaster>} recipient.
    @ivar quoted: the local part was a quoted string.
    """

    local: str
    domain: str
    quoted: bool = False

    def __str__(self) -> str:
        local = self.local
        if self.quoted or not _DOT_STRING.match(local):
            escaped = local.replace("\\", "\\\\").replace('"', '\\"')
            local = f'"{escaped}"'
        return f"{local}@{self.domain}" if self.domain else local

    @property
    def isLiteral(self) -> bool:
        """Is the domain an address literal?"""
        return self.domain.startswith("[")


def _domain(text: str) -> str:
    if _LITERAL.match(text):
        return text.lower()
    name = text.rstrip(".").lower()
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(x) for x in labels):
        raise EnvelopeSyntaxError(f"bad domain {text!r}", "5.1.2")
    return name


def _mailbox(text: str, allowPostmaster: bool) -> Mailbox:
    if allowPostmaster and text.lower() == "postmaster":
        # RFC 5321 4.1.1.3: RCPT TO:<Postmaster> without a domain.
        return Mailbox("postmaster", "")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise EnvelopeSyntaxError(f"address {text!r} needs local@domain", "5.1.3")
    quoted = _QUOTED.match(local)
    if quoted:
        unquoted = re.sub(r"\\(.)", r"\1", quoted.group(1))
        if not unquoted:
            raise EnvelopeSyntaxError("empty local part", "5.1.3")
        return Mailbox(unquoted, _domain(domain), quoted=True)
    if not _DOT_STRING.match(local) or len(local) > 64:
        raise EnvelopeSyntaxError(f"bad local part in {text!r}", "5.1.3")
    return Mailbox(local, _domain(domain))


def parsePath(
    text: str, *, allowNull: bool, allowPostmaster: bool = False
) -> tuple[Mailbox | None, str]:
    """
    Parse the path at the start of a MAIL FROM or RCPT TO argument.

    A source route (C{<@relay:user@domain>}) is accepted and ignored, as
    RFC 5321 4.1.1.3 allows.

    @param text: what follows C{FROM:} or C{TO:}, leading spaces removed.
    @param allowNull: accept C{<>} (the null reverse-path).
    @param allowPostmaster: accept C{<postmaster>} without a domain.
    @return: the mailbox (C{None} for C{<>}) and the rest of the line (the
        ESMTP parameters).
    @raise EnvelopeSyntaxError: if it is malformed.
    """
    if text.startswith("<"):
        end = _closing(text)
        inner, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(" "):
            raise EnvelopeSyntaxError("junk after the address")
    else:
        # Lenient: a path without brackets, as many clients send.
        inner, _, rest = text.partition(" ")
    if inner == "":
        if allowNull:
            return None, rest.strip()
        raise EnvelopeSyntaxError("empty address", "5.1.3")
    adl = _ADL.match(inner)
    if adl:
        inner = inner[adl.end() :]
    if len(inner) > 254:
        raise EnvelopeSyntaxError("address too long", "5.1.3")
    return _mailbox(inner, allowPostmaster), rest.strip()


def _closing(text: str) -> int:
    """
    The index of the C{>} closing the path, skipping quoted strings.
    """
    if '"' not in text:
        end = text.find(">")
        if end == -1:
            raise EnvelopeSyntaxError("unbalanced <>")
        return end
    inQuote = escaped = False
    for i, c in enumerate(text[1:], 1):
        if escaped:
            escaped = False
        elif c == "\\" and inQuote:
            escaped = True
        elif c == '"':
            inQuote = not inQuote
        elif c == ">" and not inQuote:
            return i
    raise EnvelopeSyntaxError("unbalanced <>")


def parseParameters(text: str) -> dict[str, str | None]:
    """
    ESMTP parameters (C{SIZE=1000 BODY=8BITMIME}) as upper-case keywords
    to values (C{None} for a keyword without C{=value}).

    @raise EnvelopeSyntaxError: if one is malformed or repeated.
    """
    result: dict[str, str | None] = {}
    for word in text.split():
        keyword, equals, value = word.partition("=")
        if not _KEYWORD.match(keyword) or (equals and not _VALUE.match(value)):
            raise EnvelopeSyntaxError(f"bad parameter {word!r}")
        key = keyword.upper()
        if key in result:
            raise EnvelopeSyntaxError(f"parameter {key} given twice")
        result[key] = value if equals else None
    return result
