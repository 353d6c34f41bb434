"""
Errors IMAP commands end with: each maps to one tagged reply.
"""

from __future__ import annotations

from appnet.errors import AppnetError

__all__ = ["BadCommand", "CommandFailed", "IMAPError"]


class IMAPError(AppnetError):
    """
    A command cannot complete.

    @ivar code: the response code (RFC 5530: C{TRYCREATE}, C{OVERQUOTA},
        C{NONEXISTENT} ...), without brackets, or C{None}.
    @ivar text: the human-readable text of the reply.
    """

    status = b"NO"

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code

    def detail(self) -> bytes:
        """The reply after the status: C{[CODE] text}."""
        code = f"[{self.code}] " if self.code else ""
        return (code + self.text).encode("utf-8", "replace")

    def reply(self) -> bytes:
        """The reply after the tag: C{NO [CODE] text}."""
        return self.status + b" " + self.detail()


class CommandFailed(IMAPError):
    """
    The command was understood and refused or failed (tagged C{NO}).
    """


class BadCommand(IMAPError):
    """
    The command is malformed or not allowed now (tagged C{BAD}).
    """

    status = b"BAD"
