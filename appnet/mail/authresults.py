"""
The C{Authentication-Results} header field (RFC 8601), built with
C{authres}, and the removal of fields that claim to be ours.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import authres
from authres.arc import ARCAuthenticationResult
from authres.dmarc import DMARCAuthenticationResult

from appnet.mail.dkim import DKIMResult

__all__ = ["authenticationResults", "stripOwn"]


def _dkim(result: DKIMResult) -> authres.DKIMAuthenticationResult:
    return authres.DKIMAuthenticationResult(
        result=result.result,
        reason=result.reason or None,
        header_d=result.domain or None,
        header_i=result.identity or None,
        header_s=result.selector or None,
        header_a=result.algorithm or None,
        properties=(
            [authres.core.AuthenticationResultProperty("header", "b", result.b)]
            if result.b
            else None
        ),
    )


def authenticationResults(
    authservId: str,
    *,
    dkim: Sequence[DKIMResult] = (),
    spf: tuple[str, str, str] | None = None,
    dmarc: tuple[str, str, str] | None = None,
    arc: tuple[str, str] | None = None,
    dkimChecked: bool = True,
) -> bytes:
    """
    One C{Authentication-Results} field, folded, one result a line.

    @param spf: result, identity (C{mailfrom} or C{helo}) and its value.
    @param dmarc: result, policy asked for, From domain.
    @param arc: chain result and reason.
    @param dkimChecked: with no signature, say C{dkim=none}.
    """
    results: list[authres.core.AuthenticationResult] = []
    if dkim:
        results += [_dkim(r) for r in dkim]
    elif dkimChecked:
        results.append(
            authres.DKIMAuthenticationResult(result="none", reason="no signature")
        )
    if spf is not None:
        result, identity, value = spf
        if identity == "helo":
            results.append(
                authres.SPFAuthenticationResult(result=result, smtp_helo=value)
            )
        else:
            results.append(
                authres.SPFAuthenticationResult(result=result, smtp_mailfrom=value)
            )
    if dmarc is not None:
        result, policy, domain = dmarc
        results.append(
            DMARCAuthenticationResult(
                result=result,
                header_from=domain,
                policy=policy if result in ("pass", "fail") else None,
            )
        )
    if arc is not None:
        result, reason = arc
        results.append(ARCAuthenticationResult(result=result, reason=reason or None))
    header = authres.AuthenticationResultsHeader(
        authserv_id=authservId.lower(), results=results
    )
    value = header.header_value()
    # One result a line: "id;\r\n\tdkim=...;\r\n\tspf=..."
    folded = ";\r\n\t".join(_splitResults(value))
    return f"Authentication-Results: {folded}\r\n".encode("ascii", "replace")


def _splitResults(value: str) -> list[str]:
    parts: list[str] = []
    current = ""
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    parts.append(current.strip())
    return parts


_ID = re.compile(rb"^\s*(?:\([^)]*\)\s*)*([^\s;(]+)")


def stripOwn(message: bytes, authservId: str) -> bytes:
    """
    C{message} without the C{Authentication-Results} fields whose
    authserv-id is C{authservId} (RFC 8601 5: they may be forged). Only
    the header section is examined.
    """
    ours = authservId.lower().encode()
    end = message.find(b"\r\n\r\n")
    if end == -1:
        head, body = message, b""
    else:
        head, body = message[: end + 2], message[end + 2 :]
    if b"authentication-results" not in head.lower():
        return message
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        name, colon, value = line.partition(b":")
        dropping = False
        if colon and name.strip().lower() == b"authentication-results":
            match = _ID.match(value)
            if match is not None and match.group(1).lower() == ours:
                dropping = True
                continue
        kept.append(line)
    return b"".join(line + b"\r\n" for line in kept) + body
