"""
What the robustness suite shares: a seeded generator of hostile input
(L{Garbage}) and a test case base (L{FuzzTestCase}) carrying the oracles
every protocol's fuzz tests apply.

Every case is derived from the test's name, a base seed and the case's
number, so a failure message names what reproduces it. The defaults keep
runs deterministic and quick; two environment variables explore further
without changing the code::

    APPNET_FUZZ_SEED=7 APPNET_FUZZ_SCALE=20 \\
        .venv/bin/python -m twisted.trial tests.robustness
"""

from __future__ import annotations

import os
import random
import re
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from attrs import define, field
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

__all__ = ["Case", "FuzzTestCase", "Garbage", "leak"]

#: The base seed; the suite's cases are the same on every run unless this
#: is changed (APPNET_FUZZ_SEED).
BASE_SEED = int(os.environ.get("APPNET_FUZZ_SEED", "20261") or 0)

#: Multiplies every test's case count (APPNET_FUZZ_SCALE).
SCALE = max(1, int(os.environ.get("APPNET_FUZZ_SCALE", "1") or 1))

#: Single tokens that break parsers: control characters, bytes that are not
#: UTF-8, digits that are not ASCII, quoting, format strings, escapes.
SPECIALS: tuple[bytes, ...] = (
    b"\0",
    b"\r",
    b"\n",
    b"\r\n",
    b"\t",
    b"\x7f",
    b"\x1b[2J",
    b"\x85",
    b"\xff",
    b"\xfe\xff",
    b"\xc3",  # a UTF-8 lead byte with no continuation
    b"\xc0\xaf",  # an overlong encoding of "/"
    b"\xed\xa0\x80",  # a UTF-16 surrogate, encoded
    "\u00b2".encode(),  # SUPERSCRIPT TWO: str.isdigit() but not int()
    "\u0663".encode(),  # ARABIC-INDIC DIGIT THREE
    "\u2028".encode(),  # LINE SEPARATOR
    "\ufeff".encode(),
    b" ",
    b"  ",
    b'"',
    b"'",
    b"\\",
    b"%s%n%x",
    b"{0}{}",
    b"<",
    b">",
    b"<>",
    b"(",
    b")",
    b"[",
    b"]",
    b"{",
    b"}",
    b"*",
    b"%",
    b"@",
    b":",
    b";",
    b",",
    b"=",
    b".",
    b"..",
    b"/",
    b"../../..",
    b"-",
    b"+",
    b"|",
    b"\xe9",
)

#: Numbers that are out of range, negative, huge, or not quite numbers.
NUMBERS: tuple[bytes, ...] = (
    b"0",
    b"-1",
    b"1",
    b"+1",
    b"01",
    b"65535",
    b"65536",
    b"2147483647",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"18446744073709551616",
    b"9" * 40,
    b"1" + b"0" * 4400,  # more digits than int() converts
    b"1e9",
    b"0x10",
    b"1.5",
    b" 1",
    b"1 ",
    "\u00b2".encode(),
    "\u0663".encode(),
    "\uff11".encode(),  # FULLWIDTH DIGIT ONE
    b"",
)

#: Ways a line may end, the usual one most often.
ENDINGS: tuple[bytes, ...] = (
    b"\r\n",
    b"\r\n",
    b"\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"",
    b"\r\r\n",
    b"\n\r",
)

_DIGITS = re.compile(rb"[0-9]+")
_BYTES_REPR = re.compile(rb"(^|[\s(\[{=:,])b['\"]")
_LEAKS: tuple[bytes, ...] = (
    b"Traceback",
    b" object at 0x",
    b'File "/',
    b"Failure instance",
    b"<twisted.",
    b"<appnet.",
    b"Unhandled Error",
)


def leak(data: bytes) -> str | None:
    """
    What in C{data} looks like Python talking to the client (a traceback,
    an object's or a byte string's repr), or C{None}.
    """
    for marker in _LEAKS:
        if marker in data:
            return marker.decode()
    match = _BYTES_REPR.search(data)
    if match is not None:
        return f"bytes repr near {data[match.start() : match.start() + 40]!r}"
    return None


class Garbage:
    """
    Hostile input from one seeded random source.
    """

    def __init__(self, seed: str) -> None:
        self.random = random.Random(seed)

    def chance(self, p: float) -> bool:
        """True with probability C{p}."""
        return self.random.random() < p

    def pick(self, options: Sequence[Any]) -> Any:
        """One of C{options}."""
        return options[self.random.randrange(len(options))]

    def count(self, low: int, high: int) -> int:
        """A number from C{low} to C{high} inclusive."""
        return self.random.randint(low, high)

    def blob(self, most: int = 64) -> bytes:
        """Random bytes, up to C{most}."""
        return self.random.randbytes(self.random.randrange(most + 1))

    def printable(self, most: int = 40) -> bytes:
        """Printable ASCII without spaces, up to C{most} characters."""
        n = self.random.randrange(most + 1)
        return bytes(self.random.randrange(0x21, 0x7F) for _ in range(n))

    def special(self) -> bytes:
        """One hostile token (L{SPECIALS})."""
        token: bytes = self.pick(SPECIALS)
        return token

    def number(self) -> bytes:
        """A number that is out of range or not quite a number."""
        if self.chance(0.2):
            return str(self.random.randrange(0, 100)).encode()
        value: bytes = self.pick(NUMBERS)
        return value

    def long(self, limit: int) -> bytes:
        """Filler of a length around C{limit} (either side of it) or far past."""
        length = self.pick(
            (limit - 1, limit, limit + 1, limit + 2, 2 * limit, limit * 4 + 7)
        )
        filler: bytes = self.pick((b"A", b"a.", b"\xff", b"0", b"x@", b"0 "))
        return (filler * (length // len(filler) + 1))[: max(0, length)]

    def ending(self) -> bytes:
        """A line ending, usually CRLF (L{ENDINGS})."""
        ending: bytes = self.pick(ENDINGS)
        return ending

    def argument(self) -> bytes:
        """An argument: random, special, numeric, long or empty."""
        kind = self.random.randrange(7)
        if kind == 0:
            return self.blob(24)
        if kind == 1:
            return self.printable(24)
        if kind == 2:
            return self.special() * self.count(1, 3)
        if kind == 3:
            return self.number()
        if kind == 4:
            return self.printable(8) + self.special() + self.printable(8)
        if kind == 5:
            return self.long(self.pick((64, 255, 256, 1024)))
        return b""

    def commandLine(
        self,
        valid: Sequence[tuple[bytes, bytes]],
        own: Callable[[bytes, bytes], bytes],
    ) -> bytes:
        """
        One command line of a line protocol: a valid C{(verb, argument)}
        from C{valid} as it is, with its argument or the whole line
        mutated, with a made-up argument, made by the protocol's C{own}
        twist, or random bytes; with an ending.
        """
        verb, argument = self.pick(valid)
        kind = self.random.randrange(6)
        if kind == 0:
            line = verb + (b" " + argument if argument else b"")
        elif kind == 1:
            line = verb + b" " + self.mutate(argument)
        elif kind == 2:
            line = self.mutate(verb + b" " + argument)
        elif kind == 3:
            line = verb + b" " + self.argument()
        elif kind == 4:
            line = own(verb, argument)
        else:
            line = self.blob(30)
        return line + self.ending()

    def renumber(self, valid: bytes) -> bytes:
        """C{valid} with its numbers replaced by hostile ones (L{number})."""
        return _DIGITS.sub(lambda _: self.number(), valid)

    def mutate(self, valid: bytes) -> bytes:
        """C{valid} with one to three random edits."""
        if _DIGITS.search(valid) and self.chance(0.25):
            return self.renumber(valid)
        data = bytearray(valid)
        for _ in range(self.count(1, 3)):
            where = self.random.randrange(len(data) + 1)
            kind = self.random.randrange(8)
            if kind == 0:
                data[where:where] = self.special()
            elif kind == 1:
                del data[where : where + self.count(1, 8)]
            elif kind == 2 and data:
                data[where : where + 1] = bytes([self.random.randrange(256)])
            elif kind == 3:
                data[where:where] = self.argument()
            elif kind == 4:
                data = data[:where]
            elif kind == 5:
                data[where:where] = data[where : where + self.count(1, 16)] * 2
            elif kind == 6:
                data = bytearray(data.swapcase())
            else:
                data[where:where] = self.number()
        return bytes(data)

    def chunks(self, data: bytes) -> list[bytes]:
        """
        C{data} split at arbitrary boundaries: whole, byte by byte, or in
        random pieces.
        """
        if not data:
            return [data]
        kind = self.random.randrange(4)
        if kind == 0:
            return [data]
        if kind == 1 and len(data) < 400:
            return [data[i : i + 1] for i in range(len(data))]
        pieces = []
        i = 0
        while i < len(data):
            size = self.count(1, max(1, min(len(data), 97)))
            pieces.append(data[i : i + size])
            i += size
        return pieces


@define
class Case:
    """
    One fuzz case: enough to reproduce it, and what it sent.
    """

    test: str
    seed: str
    sent: list[bytes] = field(factory=list)

    def record(self, data: bytes) -> None:
        """Remember bytes sent to the server."""
        self.sent.append(data)

    def describe(self) -> str:
        """Where a failure came from, with the input that caused it."""
        data = b"".join(self.sent)
        if len(data) > 2000:
            shown = f"{data[:500]!r} ... {data[-1500:]!r}"
        else:
            shown = repr(data)
        return f"[{self.test}, seed {self.seed!r}] input: {shown}"


class FuzzTestCase(SynchronousTestCase):
    """
    A test case whose cases are checked for unhandled errors, in the log
    and raised into the transport.
    """

    def setUp(self) -> None:
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def cases(self, name: str, count: int) -> Iterator[tuple[Garbage, Case]]:
        """
        C{count} (times L{SCALE}) cases; after each, no failure may have
        been logged.
        """
        for i in range(count * SCALE):
            seed = f"{name}:{BASE_SEED}:{i}"
            case = Case(name, seed)
            mark = len(self.logged)
            yield Garbage(seed), case
            self.assertNoFailureLogged(case, mark)

    def assertNoFailureLogged(self, case: Case, mark: int = 0) -> None:
        """No event since C{mark} carries a failure."""
        for i in range(mark, len(self.logged)):
            event = self.logged[i]
            failure = event.get("log_failure")
            if failure is not None:
                self.fail(
                    f"a failure was logged: {event.get('log_format')!r}\n"
                    f"{failure.getTraceback()}\n{case.describe()}"
                )
        self.assertEqual(self.flushLoggedErrors(), [], case.describe())

    def deliver(self, protocol: Any, data: bytes, garbage: Garbage, case: Case) -> None:
        """
        Hand C{data} to C{protocol} in arbitrary chunks, as a transport
        would; an exception out of C{dataReceived} (which a reactor would
        log as unhandled before dropping the connection) fails the test.
        """
        case.record(data)
        for chunk in garbage.chunks(data):
            if getattr(protocol.transport, "disconnecting", False):
                break
            try:
                protocol.dataReceived(chunk)
            except Exception:
                self.fail(
                    f"dataReceived raised:\n{traceback.format_exc()}\n{case.describe()}"
                )

    def disconnect(self, protocol: Any, case: Case) -> None:
        """
        The connection breaks, as a reset would: like Twisted's TCP
        transport, first stop whatever produces into it (a file being
        sent), then tell the protocol.
        """
        transport = protocol.transport
        try:
            if transport is not None:
                transport.connected = False
                producer = getattr(transport, "producer", None)
                if producer is not None:
                    transport.producer = None
                    producer.stopProducing()
            protocol.connectionLost(Failure(ConnectionLost("fuzz: reset")))
        except Exception:
            self.fail(
                f"connectionLost raised:\n{traceback.format_exc()}\n{case.describe()}"
            )

    def assertNoLeak(self, data: bytes, case: Case) -> None:
        """C{data} (what the server sent) shows no Python internals."""
        found = leak(data)
        if found is not None:
            self.fail(f"reply leaks {found}: {data[:600]!r}\n{case.describe()}")
