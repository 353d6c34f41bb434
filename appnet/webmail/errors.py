"""
Errors of the webmail and its API, each carrying the HTTP status it is
answered with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from appnet.errors import AppnetError

__all__ = ["APIError", "SendRefused", "WebmailError"]


class WebmailError(AppnetError):
    """
    Base class of the webmail's deliberate errors.
    """


@frozen(eq=False)
class APIError(WebmailError):
    """
    A request the API refuses.

    @ivar code: the HTTP status.
    @ivar message: one sentence for the user (the JSON C{error} member).
    @ivar details: more JSON members (C{recipients} of a refused send).
    """

    code: int
    message: str
    details: Mapping[str, Any] = field(factory=dict)

    def __str__(self) -> str:
        return self.message


@frozen(eq=False)
class SendRefused(WebmailError):
    """
    A message was not sent (nothing was delivered or queued).

    @ivar code: the HTTP status (400 bad input, 413 too large, 422
        recipients refused, 507 mailbox full).
    @ivar message: why, for the user.
    @ivar recipients: per refused recipient: C{address}, the SMTP C{code}
        and C{reply} text the submission server would have given.
    """

    code: int
    message: str
    recipients: tuple[Mapping[str, Any], ...] = ()

    def __str__(self) -> str:
        return self.message
