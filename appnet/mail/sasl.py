"""
SASL mechanisms shared by SMTP AUTH, POP3 AUTH and IMAP AUTHENTICATE:
PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login), both only over
TLS or loopback.

Twisted's C{PLAINCredentials} ignores the authorization identity, so a
client asking to act as another user would be logged in as itself without
being told; here an authorization identity other than the authentication
identity is refused.
"""

from __future__ import annotations

import base64
import binascii

from attrs import define, field

__all__ = [
    "MECHANISMS",
    "LoginExchange",
    "SASLDialogue",
    "SASLCancelled",
    "SASLError",
    "decodeBase64",
    "decodePlain",
]

#: Mechanisms offered, in order of preference.
MECHANISMS = (b"PLAIN", b"LOGIN")

#: The LOGIN mechanism's prompts, base64-encoded.
LOGIN_USERNAME = base64.b64encode(b"Username:")
LOGIN_PASSWORD = base64.b64encode(b"Password:")


class SASLError(ValueError):
    """
    A client's SASL response is malformed.
    """


def decodeBase64(data: bytes) -> bytes:
    """
    Decode a base64 SASL response strictly; C{=} alone is empty.

    @raise SASLError: if it is not base64.
    """
    data = data.strip()
    if data == b"=":
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise SASLError("response is not base64") from None


def decodePlain(response: bytes) -> tuple[bytes, bytes]:
    """
    Decode a PLAIN response: C{authzid NUL authcid NUL password}.

    @return: the user name and password.
    @raise SASLError: if it is malformed or asks to act as another user.
    """
    parts = response.split(b"\0")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise SASLError("PLAIN response must be authzid NUL user NUL password")
    authzid, authcid, password = parts
    if authzid and authzid.lower() != authcid.lower():
        raise SASLError("acting as another user is not allowed")
    return authcid, password


class SASLCancelled(Exception):
    """
    The client cancelled the exchange (a response of C{*}).
    """


@define
class LoginExchange:
    """
    The server side of one PLAIN or LOGIN exchange, for a line protocol
    (SMTP AUTH, POP3 AUTH) that feeds it the client's responses a line at
    a time and sends the prompts it returns in its own reply format.

    @ivar mechanism: C{b"PLAIN"} or C{b"LOGIN"} (one of L{MECHANISMS}).
    """

    mechanism: bytes
    _user: bytes | None = field(default=None, init=False)

    @property
    def firstPrompt(self) -> bytes:
        """The prompt when the command carried no initial response."""
        return b"" if self.mechanism == b"PLAIN" else LOGIN_USERNAME

    def respond(self, line: bytes) -> bytes | tuple[bytes, bytes]:
        """
        Take the client's next response.

        @return: the next prompt to send, or the user name and password
            once the exchange is complete.
        @raise SASLCancelled: if the client cancelled.
        @raise SASLError: if the response is malformed.
        """
        if line.strip() == b"*":
            raise SASLCancelled()
        decoded = decodeBase64(line)
        if self.mechanism == b"PLAIN":
            return decodePlain(decoded)
        if self._user is None:
            if not decoded:
                raise SASLError("empty user name")
            self._user = decoded
            return LOGIN_PASSWORD
        return self._user, decoded


class SASLDialogue:
    """
    One AUTH exchange on a line protocol (SMTP AUTH, POP3 AUTH): the
    protocol calls L{beginSASL} for the command and L{continueSASL} for each
    later line, and answers in its own reply format through L{saslPrompt},
    L{saslRefused} and L{saslComplete}, which end its AUTH mode.
    """

    _sasl: LoginExchange | None = None

    def beginSASL(self, mechanism: bytes, initial: bytes) -> None:
        """Start an exchange, with the command's initial response if any."""
        self._sasl = LoginExchange(mechanism)
        if initial.strip():
            self.continueSASL(initial.strip())
        else:
            self.saslPrompt(self._sasl.firstPrompt)

    def continueSASL(self, line: bytes) -> None:
        """Take the client's next response line."""
        exchange = self._sasl
        assert exchange is not None
        try:
            step = exchange.respond(line)
        except (SASLCancelled, SASLError) as e:
            self._sasl = None
            self.saslRefused(e)
            return
        if isinstance(step, bytes):
            self.saslPrompt(step)
            return
        self._sasl = None
        self.saslComplete(*step)

    def abortSASL(self) -> None:
        """Forget an exchange in progress (a line too long, say)."""
        self._sasl = None

    def saslPrompt(self, prompt: bytes) -> None:
        """Send a base64 prompt (C{334 ...}, C{+ ...})."""
        raise NotImplementedError

    def saslRefused(self, error: SASLCancelled | SASLError) -> None:
        """The client cancelled or sent a malformed response."""
        raise NotImplementedError

    def saslComplete(self, user: bytes, password: bytes) -> None:
        """The exchange gave a user name and password: log in."""
        raise NotImplementedError
