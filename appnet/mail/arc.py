"""
ARC (RFC 8617) over dkimpy: chain validation of a received message, and
the seal a forwarder adds.

Like L{appnet.mail.dkim}, both run in a thread over key records fetched
beforehand (L{appnet.mail.dkim.keyNames} lists the ARC ones too).
"""

from __future__ import annotations

from collections.abc import Mapping

import dkim as dkimpy
from attrs import frozen

from appnet.mail.dkim import DKIMKey, TextAnswers, signatureTags

__all__ = ["ARCResult", "seal", "verifyChain"]


@frozen
class ARCResult:
    """
    A chain's validation: C{pass}, C{fail} or C{none}, and why.

    @ivar instances: how many ARC sets the message has.
    """

    result: str
    reason: str = ""
    instances: int = 0


def verifyChain(message: bytes, texts: Mapping[str, list[bytes] | str]) -> ARCResult:
    """
    Validate the ARC chain of C{message}. CPU-bound: run it in a thread.
    """
    instances = len(signatureTags(message, b"arc-seal"))
    if not instances:
        return ARCResult("none")
    answers = TextAnswers(texts)
    cv, _, reason = dkimpy.arc_verify(message, dnsfunc=answers)
    if cv is None:
        return ARCResult("fail", str(reason), instances)
    result = cv.decode("ascii") if isinstance(cv, bytes) else str(cv)
    return ARCResult(result, "" if result == "pass" else str(reason), instances)


def seal(message: bytes, key: DKIMKey, authservId: str) -> bytes:
    """
    The next ARC set (ARC-Seal, ARC-Message-Signature,
    ARC-Authentication-Results) for C{message}, which must carry our
    C{Authentication-Results} field with an C{arc=} result; C{b""} when
    the chain cannot be continued. ARC signs with RSA only. CPU-bound.
    """
    if key.algorithm != "rsa":
        return b""
    lines = dkimpy.arc_sign(
        message,
        key.selector.encode(),
        key.domain.encode(),
        key.private,
        authservId.lower().encode(),
    )
    return b"".join(lines)
