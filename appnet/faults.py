"""
Scripted faults for test suites: make a running server misbehave on cue.

A L{Faults} registry belongs to a stack (C{StackContext.faults}); protocol
code asks it at a few fixed points (L{POINTS}) whether to fail this time.
A fault fires for its scripted number of uses, then clears itself; every
firing is logged (in the connection's C{--trace} transcript too), counted
in C{/status} under C{faults}, and kept in L{Faults.fired}::

    stack.faults.smtp("RCPT", 451, times=2)      # next two RCPTs: 451
    stack.faults.dns("mx.example.org", "servfail")
    stack.faults.http("/api/", status=503)

The same faults can be added over HTTP (C{POST /_appnet/faults}, see
L{appnet.testapi}) when the stack runs with C{[http] test_api = true}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.names import dns as _dns

from appnet.errors import AppnetError

__all__ = ["Fault", "FaultError", "Faults", "NO_FAULTS", "POINTS"]

#: protocol -> point -> the actions it supports. A point is where the
#: protocol asks; C{match} narrows it (a command, a name, a path prefix).
POINTS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "smtp": {
        "greeting": ("delay",),
        "MAIL": ("reply",),
        "RCPT": ("reply",),
        "DATA": ("reply",),
        "message": ("reply", "drop"),
    },
    "dns": {"query": ("servfail", "nxdomain", "refused", "timeout", "truncate")},
    "ftp": {"data": ("reply",), "transfer": ("cut",)},
    "http": {"request": ("status", "delay", "reset")},
    "imap": {"command": ("no", "bye")},
    "pop3": {"command": ("err", "drop")},
}


class FaultError(AppnetError, ValueError):
    """A fault description that cannot be scripted."""


@define
class Fault:
    """
    One scripted failure.

    @ivar protocol: C{smtp}, C{dns}, C{ftp}, C{http}, C{imap} or C{pop3}.
    @ivar point: where it fires (see L{POINTS}).
    @ivar action: what happens (C{reply}, C{drop}, C{servfail} ...).
    @ivar match: what it applies to, case-insensitive: an SMTP/IMAP/POP3
        command is given as the point or here, a DNS name, an FTP command,
        an HTTP path prefix; C{None} for any.
    @ivar qtype: for DNS, the query type name (C{"MX"}), or C{None}.
    @ivar code: the reply code or HTTP status.
    @ivar text: the reply text (a default fits the code).
    @ivar delay: seconds, on the stack's clock.
    @ivar after: bytes after which an FTP transfer is cut.
    @ivar times: how many uses before it clears itself.
    @ivar used: how many times it fired.
    """

    protocol: str
    point: str
    action: str
    match: str | None = None
    qtype: str | None = None
    code: int | None = None
    text: str | None = None
    delay: float = 0.0
    after: int = 0
    times: int = 1
    used: int = 0
    id: int = 0

    @property
    def remaining(self) -> int:
        """Uses left."""
        return max(self.times - self.used, 0)

    def describe(self) -> str:
        """One line for logs and transcripts."""
        parts = [self.protocol, self.point]
        if self.match:
            parts.append(self.match)
        if self.qtype:
            parts.append(self.qtype)
        parts.append(self.action)
        for name in ("code", "text"):
            value = getattr(self, name)
            if value is not None:
                parts.append(str(value))
        if self.delay:
            parts.append(f"{self.delay:g}s")
        if self.after:
            parts.append(f"after {self.after} bytes")
        return " ".join(parts)

    def asJSON(self) -> dict[str, Any]:
        """The fault as the JSON API shows it."""
        return {
            "id": self.id,
            "protocol": self.protocol,
            "point": self.point,
            "action": self.action,
            "match": self.match,
            "type": self.qtype,
            "code": self.code,
            "text": self.text,
            "delay": self.delay,
            "after": self.after,
            "times": self.times,
            "used": self.used,
        }


def _check(fault: Fault) -> Fault:
    points = POINTS.get(fault.protocol)
    if points is None:
        raise FaultError(f"unknown protocol {fault.protocol!r}")
    actions = points.get(fault.point)
    if actions is None:
        raise FaultError(f"{fault.protocol} has no fault point {fault.point!r}")
    if fault.action not in actions:
        raise FaultError(
            f"{fault.protocol} {fault.point} cannot {fault.action!r}"
            f" (one of {', '.join(actions)})"
        )
    if fault.times < 1:
        raise FaultError("times must be at least 1")
    if fault.delay < 0 or fault.after < 0:
        raise FaultError("delay and after cannot be negative")
    if fault.action == "reply" and not (fault.code and 400 <= fault.code <= 599):
        raise FaultError("a reply fault needs a 4xx or 5xx code")
    if fault.action == "status" and not (fault.code and 100 <= fault.code <= 599):
        raise FaultError("an HTTP status fault needs a status code")
    if fault.qtype is not None and fault.qtype.upper() not in _dns.QUERY_TYPES.values():
        raise FaultError(f"unknown DNS type {fault.qtype!r}")
    return fault


def _matches(fault: Fault, subject: str, qtype: str | None) -> bool:
    if fault.match is not None:
        wanted = fault.match.lower()
        if fault.protocol == "http":
            if not subject.startswith(fault.match):
                return False
        elif fault.protocol == "dns":
            if subject.lower().rstrip(".") != wanted.rstrip("."):
                return False
        elif subject.lower() != wanted:
            return False
    if fault.qtype is not None and (qtype or "").upper() != fault.qtype.upper():
        return False
    return True


@define
class Faults:
    """
    The faults scripted on one stack (or one fixture).

    @ivar clock: what delays run on (the stack's clock: a test's C{Clock}).
    @ivar status: counters (C{faults.fired}, C{faults.<protocol>}), if any.
    @ivar fired: a line per firing, oldest first.
    @ivar reactor: if given, L{waitFired} waiters hear a turn after the
        firing, when the protocol has applied the fault.
    """

    clock: Any = None
    status: Any = None
    enabled: bool = True
    #: Tells L{waitFired} waiters a turn later, once the fault is applied.
    reactor: Any = None
    fired: list[str] = field(factory=list)
    _pending: list[Fault] = field(factory=list)
    _next: int = 1
    _waiters: list[tuple[int, Deferred[None]]] = field(factory=list)

    _log = Logger()

    def add(self, fault: Fault) -> Fault:
        """
        Script C{fault}.

        @raise FaultError: if it names no protocol, point or action appnet
            has.
        """
        if not self.enabled:
            raise FaultError("faults cannot be scripted here")
        _check(fault)
        fault.id = self._next
        self._next += 1
        self._pending.append(fault)
        return fault

    def fromJSON(self, raw: Mapping[str, Any]) -> Fault:
        """
        Script a fault given as the JSON API's object.

        @raise FaultError: naming what is wrong with it.
        """
        known = {
            "protocol", "point", "action", "match", "type", "code", "text",
            "delay", "after", "times",
        }  # fmt: skip
        unknown = set(raw) - known
        if unknown:
            raise FaultError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        try:
            fault = Fault(
                protocol=str(raw["protocol"]),
                point=str(raw["point"]),
                action=str(raw["action"]),
                match=None if raw.get("match") is None else str(raw["match"]),
                qtype=None if raw.get("type") is None else str(raw["type"]),
                code=None if raw.get("code") is None else int(raw["code"]),
                text=None if raw.get("text") is None else str(raw["text"]),
                delay=float(raw.get("delay", 0)),
                after=int(raw.get("after", 0)),
                times=int(raw.get("times", 1)),
            )
        except KeyError as e:
            raise FaultError(f"a fault needs {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise FaultError(f"bad fault field: {e}") from None
        return self.add(fault)

    def has(self, protocol: str) -> bool:
        """
        Is a fault of C{protocol} scripted? (A fast path that answers
        before the protocol's fault points steps aside while one is.)
        """
        if not self._pending:
            return False
        return any(fault.protocol == protocol for fault in self._pending)

    def pending(self) -> list[Fault]:
        """Faults not yet used up, in the order they were scripted."""
        return list(self._pending)

    def remove(self, id: int) -> bool:
        """Drop one scripted fault; was it there?"""
        before = len(self._pending)
        self._pending = [f for f in self._pending if f.id != id]
        return len(self._pending) != before

    def clear(self) -> None:
        """Drop every scripted fault."""
        self._pending = []

    def take(
        self,
        protocol: str,
        point: str,
        subject: str = "",
        qtype: str | None = None,
        transport: Any = None,
    ) -> Fault | None:
        """
        The fault to apply now at C{protocol}'s C{point}, if one is
        scripted: it is used once, logged and counted.

        @param subject: what the point is about (a command, a name, a path).
        @param transport: the connection's transport, so the firing shows
            in its transcript.
        """
        if not self._pending:
            return None
        for fault in self._pending:
            if fault.protocol != protocol or fault.point != point:
                continue
            if not _matches(fault, subject, qtype):
                continue
            fault.used += 1
            if fault.remaining == 0:
                self._pending.remove(fault)
            line = f"{fault.describe()} ({fault.used} of {fault.times})"
            self.fired.append(line)
            self._log.info("fault: {fault}", fault=line)
            if self.status is not None:
                self.status.increment("faults", "fired")
                self.status.increment("faults", protocol)
            transcript = getattr(transport, "transcript", None)
            if transcript is not None:
                transcript.note(f"fault: {line}")
            ready = [w for w in self._waiters if w[0] <= len(self.fired)]
            for waiter in ready:
                self._waiters.remove(waiter)
                if self.reactor is None:
                    waiter[1].callback(None)
                else:
                    self.reactor.callLater(0, waiter[1].callback, None)
            return fault
        return None

    def waitFired(self, count: int = 1) -> Deferred[None]:
        """
        Fires once C{count} faults have fired in all (a test's way to know
        a delayed request has reached the server).
        """
        d: Deferred[None] = Deferred()
        if len(self.fired) >= count:
            d.callback(None)
        else:
            self._waiters.append((count, d))
        return d

    def count(self, protocol: str | None = None) -> int:
        """How many faults fired (of C{protocol}, or all)."""
        if protocol is None:
            return len(self.fired)
        return sum(1 for line in self.fired if line.startswith(protocol + " "))

    # Shortcuts, one per kind of fault.

    def smtp(
        self, command: str, code: int, text: str | None = None, times: int = 1
    ) -> Fault:
        """
        Answer the next C{times} C{MAIL}, C{RCPT} or C{DATA} commands with
        C{code} (4xx or 5xx); C{"message"} answers the end of the data.
        """
        point = command.upper() if command.lower() != "message" else "message"
        return self.add(
            Fault("smtp", point, "reply", code=code, text=text, times=times)
        )

    def smtpDropAfterData(self, times: int = 1) -> Fault:
        """Close the connection when a message's data ends, without a reply."""
        return self.add(Fault("smtp", "message", "drop", times=times))

    def smtpSlowGreeting(self, delay: float, times: int = 1) -> Fault:
        """Send the 220 greeting C{delay} seconds late."""
        return self.add(Fault("smtp", "greeting", "delay", delay=delay, times=times))

    def dns(
        self, name: str, action: str, type: str | None = None, times: int = 1
    ) -> Fault:
        """
        Answer queries for C{name} (of C{type}, else any) with C{action}:
        C{servfail}, C{nxdomain}, C{refused}, C{timeout} (no reply) or
        C{truncate} (an empty reply with TC set).
        """
        return self.add(
            Fault("dns", "query", action, match=name, qtype=type, times=times)
        )

    def ftpData(
        self,
        code: int = 425,
        text: str | None = None,
        command: str | None = None,
        times: int = 1,
    ) -> Fault:
        """Refuse the next data connection (of C{command}) with C{code}."""
        return self.add(
            Fault(
                "ftp", "data", "reply", match=command, code=code, text=text, times=times
            )
        )

    def ftpCut(self, after: int, command: str | None = None, times: int = 1) -> Fault:
        """Cut the next transfer's data connection once C{after} bytes moved."""
        return self.add(
            Fault("ftp", "transfer", "cut", match=command, after=after, times=times)
        )

    def http(
        self,
        path: str = "/",
        *,
        status: int | None = None,
        delay: float = 0.0,
        reset: bool = False,
        times: int = 1,
    ) -> Fault:
        """
        For requests whose path starts with C{path}: answer C{status}, or
        wait C{delay} seconds first, or reset the connection.
        """
        if reset:
            action = "reset"
        elif status is not None:
            action = "status"
        else:
            action = "delay"
        return self.add(
            Fault(
                "http",
                "request",
                action,
                match=path,
                code=status,
                delay=delay,
                times=times,
            )
        )

    def imap(
        self,
        command: str,
        no: str | None = None,
        bye: str | None = None,
        times: int = 1,
    ) -> Fault:
        """
        Answer the next C{command} (C{APPEND}) with a tagged C{NO no}, or
        with C{* BYE bye} and a closed connection (C{FETCH}).
        """
        action = "bye" if bye is not None else "no"
        text = bye if bye is not None else (no or "[UNAVAILABLE] Try again later")
        return self.add(
            Fault(
                "imap", "command", action, match=command.upper(), text=text, times=times
            )
        )

    def pop3(
        self, command: str, err: str | None = None, drop: bool = False, times: int = 1
    ) -> Fault:
        """Answer the next C{command} with C{-ERR err}, or drop the connection."""
        return self.add(
            Fault(
                "pop3",
                "command",
                "drop" if drop else "err",
                match=command.upper(),
                text=err or "[SYS/TEMP] Try again later",
                times=times,
            )
        )


#: The registry of code that runs outside a stack: nothing can be scripted.
NO_FAULTS = Faults(enabled=False)
