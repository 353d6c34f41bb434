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

__all__ = ["SASLError", "decodeBase64", "decodePlain", "MECHANISMS"]

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
