"""
The root of appnet's exception hierarchy.

Every exception appnet raises on purpose derives from L{AppnetError}, so a
caller can catch appnet's failures without catching programming errors.
Protocol packages add their own subclasses next to their code; the ones
shared across packages live here.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from attrs import frozen
from twisted.internet import error as ierror

__all__ = [
    "AppnetError",
    "BadAddress",
    "CannotConnect",
    "ConfigError",
    "FolderExists",
    "ListenError",
    "NoSuchFolder",
    "NoSuchMessage",
    "NoSuchUser",
    "QuotaExceeded",
    "StoreError",
    "StoreUnavailable",
    "UserExists",
]

T = TypeVar("T")


class AppnetError(Exception):
    """
    Base class of every error appnet raises deliberately.
    """


@frozen(eq=False)
class ConfigError(AppnetError):
    """
    A configuration setting or command-line option is wrong.

    @ivar key: the dotted config key or the command-line option at fault
        (C{"smtp.listen[0]"}, C{"--http"}).
    @ivar problem: what is wrong with it, one short sentence.
    @ivar source: where the setting came from (a file name, or C{None} for
        the command line or the built-in defaults).
    """

    key: str
    problem: str
    source: str | None = None

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.key}: {self.problem}"


@frozen(eq=False)
class ListenError(AppnetError):
    """
    A service could not start listening on one of its endpoints.

    @ivar service: the service name (C{"smtp"}).
    @ivar endpoint: the endpoint description that failed.
    @ivar reason: why, as reported by the operating system.
    """

    service: str
    endpoint: str
    reason: str

    def __str__(self) -> str:
        return f"{self.service}: cannot listen on {self.endpoint}: {self.reason}"


class StoreError(AppnetError):
    """
    Base class for errors raised by the durable store.
    """


class StoreUnavailable(StoreError):
    """
    The store's database cannot be reached (down, restarting, or out of
    connections); the operation did nothing and may be retried.
    """


@frozen(eq=False)
class UserExists(StoreError):
    """
    An account with this address already exists.
    """

    address: str

    def __str__(self) -> str:
        return f"user {self.address} already exists"


@frozen(eq=False)
class NoSuchUser(StoreError):
    """
    No account has this address.
    """

    address: str

    def __str__(self) -> str:
        return f"no such user: {self.address}"


@frozen(eq=False)
class BadAddress(AppnetError):
    """
    A string is not a usable account or mail address.
    """

    address: str
    problem: str

    def __str__(self) -> str:
        return f"bad address {self.address!r}: {self.problem}"


@frozen(eq=False)
class NoSuchFolder(StoreError):
    """
    An account has no folder of this name.
    """

    owner: str
    name: str

    def __str__(self) -> str:
        return f"no folder {self.name!r} for {self.owner}"


@frozen(eq=False)
class FolderExists(StoreError):
    """
    An account already has a folder of this name.
    """

    owner: str
    name: str

    def __str__(self) -> str:
        return f"folder {self.name!r} of {self.owner} already exists"


@frozen(eq=False)
class NoSuchMessage(StoreError):
    """
    No stored message has this UID (or queue id).
    """

    where: str
    uid: int

    def __str__(self) -> str:
        return f"no message {self.uid} in {self.where}"


@frozen(eq=False)
class QuotaExceeded(StoreError):
    """
    Storing a message would take an account past its quota.

    @ivar owner: the account.
    @ivar quota: its quota in bytes.
    @ivar used: what it holds now.
    @ivar size: what the refused message(s) would add.
    """

    owner: str
    quota: int
    used: int
    size: int

    def __str__(self) -> str:
        return (
            f"{self.owner} is over quota: {self.used} + {self.size} bytes"
            f" > {self.quota}"
        )


def _hostPort(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@frozen(eq=False)
class CannotConnect(AppnetError):
    """
    A client could not reach a server. Every client and the C{appnet}
    command word it the same way: C{cannot connect to HOST:PORT: REASON}.

    @ivar host: the server's name or address.
    @ivar port: its port.
    @ivar reason: a short reason (C{"connection refused"}).
    """

    host: str
    port: int
    reason: str

    def __str__(self) -> str:
        return f"cannot connect to {_hostPort(self.host, self.port)}: {self.reason}"

    @classmethod
    async def during(cls, host: str, port: int, attempt: Awaitable[T]) -> T:
        """
        Await a connection attempt; a failure that is a connection failure
        (see L{explain}) is raised as L{CannotConnect}, others as they are.
        """
        try:
            return await attempt
        except Exception as e:
            raise cls.explain(host, port, e) or e from None

    @classmethod
    def explain(
        cls, host: str, port: int, error: BaseException
    ) -> CannotConnect | None:
        """
        The L{CannotConnect} for a failed connection attempt, or C{None}
        if C{error} (or the error it wraps) is not one.
        """
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            if isinstance(current, CannotConnect):
                return current
            if isinstance(
                current, ierror.ConnectionRefusedError | ConnectionRefusedError
            ):
                return cls(host, port, "connection refused")
            if isinstance(current, ierror.DNSLookupError):
                return cls(host, port, "host name not found")
            if isinstance(current, ierror.NoRouteError):
                return cls(host, port, "no route to host")
            if isinstance(
                current, ierror.TCPTimedOutError | ierror.TimeoutError | TimeoutError
            ):
                return cls(host, port, "timed out")
            if isinstance(current, ierror.ConnectError):
                reason = current.osError or str(current)
                return cls(host, port, str(reason).strip(" .:") or "failed")
            inner = getattr(current, "value", None)  # a Failure inside an error
            if not isinstance(inner, BaseException):
                inner = current.__cause__ or current.__context__
            if inner is None and current.args:
                last = current.args[-1]
                inner = last if isinstance(last, BaseException) else None
                inner = inner or getattr(last, "value", None)
            current = inner
        return None
