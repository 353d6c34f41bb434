"""
The FTP control connection under hostile input, through the real server
with file I/O inline, a L{MemoryReactorClock} and string transports
(L{tests.ftp.helpers.Harness}).

Oracles, for every case: no exception out of the protocol and no failure
logged; every line the server sends is a reply line (C{ddd text},
C{ddd-text}, or inside a multi-line reply a line starting with a space,
ended by C{ddd text} with the same code) free of control characters and
Python internals; and afterwards the session goes on: ABOR, NOOP, a
login if the garbage logged out, an upload and its download over passive
data connections, and QUIT. The server closes the connection on its own
only after C{221} (QUIT) or after the C{500} that says an over-long
command line closes it (its documented behaviour).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import ConnectionDone
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from appnet.auth import hashPassword
from appnet.ftp.server import FTPServer
from tests.ftp.helpers import ALICE, PASSWORD, Harness
from tests.robustness.fuzz import NUMBERS, Case, FuzzTestCase, Garbage

BOB = "bob@example.org"

_LINE = re.compile(rb"^([1-5][0-9][0-9])([ -])")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")

VALID: tuple[tuple[bytes, bytes], ...] = (
    (b"USER", ALICE.encode()),
    (b"PASS", PASSWORD.encode()),
    (b"PASS", b"wrong"),
    (b"USER", b"anonymous"),
    (b"ACCT", b"x"),
    (b"REIN", b""),
    (b"AUTH", b"TLS"),
    (b"PBSZ", b"0"),
    (b"PROT", b"P"),
    (b"FEAT", b""),
    (b"HELP", b"RETR"),
    (b"NOOP", b""),
    (b"OPTS", b"UTF8 ON"),
    (b"OPTS", b"MLST type;size;"),
    (b"SYST", b""),
    (b"STAT", b""),
    (b"STAT", b"-la /"),
    (b"PWD", b""),
    (b"CWD", b"/dir"),
    (b"CWD", b".."),
    (b"CDUP", b""),
    (b"XCWD", b"dir/sub"),
    (b"MKD", b"dir"),
    (b"MKD", b"dir/sub"),
    (b"RMD", b"dir/sub"),
    (b"DELE", b"file.txt"),
    (b"RNFR", b"file.txt"),
    (b"RNTO", b"renamed.txt"),
    (b"SIZE", b"file.txt"),
    (b"MDTM", b"file.txt"),
    (b"MLST", b"file.txt"),
    (b"REST", b"3"),
    (b"TYPE", b"A"),
    (b"TYPE", b"I"),
    (b"TYPE", b"L 8"),
    (b"MODE", b"S"),
    (b"STRU", b"F"),
    (b"ALLO", b"100"),
    (b"PASV", b""),
    (b"EPSV", b""),
    (b"EPSV", b"ALL"),
    (b"EPSV", b"2"),
    (b"PORT", b"127,0,0,1,200,10"),
    (b"EPRT", b"|1|127.0.0.1|51210|"),
    (b"EPRT", b"|2|::1|51210|"),
    (b"RETR", b"file.txt"),
    (b"STOR", b"upload.bin"),
    (b"APPE", b"file.txt"),
    (b"STOU", b""),
    (b"LIST", b"-la"),
    (b"NLST", b"*.txt"),
    (b"MLSD", b"dir"),
    (b"ABOR", b""),
    (b"SITE", b"CHMOD 777 file.txt"),
)


class FTPFuzzTestCase(FuzzTestCase):
    """One server whose control connections are replaced per case."""

    def setUp(self) -> None:
        super().setUp()
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        self.h = Harness(root, connect=False)
        self.h.throttle.maxFailures = 10**6
        self.h.throttle.maxAccountFailures = 10**6
        self.continued = 0

    def open(self) -> Harness:
        """A fresh control connection; alice's home has a file and a dir."""
        h = self.h
        h.connect()
        h.write("file.txt", b"line one\r\nline two\n")
        os.makedirs(h.path("dir"), exist_ok=True)
        h.transport.clear()
        return h

    def command(self, garbage: Garbage) -> bytes:
        """One command line: valid, mutated, or made up."""
        return garbage.commandLine(
            VALID,
            # Telnet IP, DM before the command.
            lambda verb, argument: b"\xff\xf4\xff\xf2" + verb + b" " + argument,
        )

    def replies(self, case: Case) -> list[bytes]:
        """The final reply lines sent since the last call, all checked."""
        transport = self.h.transport
        data = bytes(transport.value())
        transport.clear()
        self.assertNoLeak(data, case)
        if data and not data.endswith(b"\r\n"):
            self.fail(f"unterminated reply {data[-80:]!r}\n{case.describe()}")
        finals = []
        multi: bytes | None = None
        for line in data.split(b"\r\n")[:-1]:
            if _CONTROL.search(line):
                self.fail(f"control character in {line!r}\n{case.describe()}")
            match = _LINE.match(line)
            if multi is not None:
                if match and match.group(1) == multi and match.group(2) == b" ":
                    multi = None
                    finals.append(line)
                elif not line.startswith(b" "):
                    self.fail(
                        f"bad line in a multi-line reply {line!r}\n{case.describe()}"
                    )
                continue
            if match is None:
                self.fail(f"malformed reply line {line!r}\n{case.describe()}")
            if match.group(2) == b"-":
                multi = match.group(1)
            else:
                finals.append(line)
        if multi is not None:
            self.fail(f"multi-line reply not ended\n{case.describe()}")
        return finals

    def say(self, line: bytes, case: Case) -> list[bytes]:
        case.record(line + b"\r\n")
        self.h.protocol.dataReceived(line + b"\r\n")
        self.h.clock.advance(0)
        return self.replies(case)

    def expect(self, line: bytes, code: bytes, case: Case) -> list[bytes]:
        lines = self.say(line, case)
        if not lines or not lines[-1].startswith(code + b" "):
            self.fail(f"{line!r} got {lines!r}, not {code!r}\n{case.describe()}")
        return lines

    def passive(self, case: Case) -> Any:
        """EPSV, and the client connects; the data connection's parts."""
        self.expect(b"EPSV", b"229", case)
        return self.h.acceptData()

    def goesOn(self, last: bytes, case: Case) -> None:
        """
        After the garbage, the session still works: abort what is pending,
        log in if needed, upload and download a file, quit.
        """
        h = self.h
        if h.transport.disconnecting:
            closing = last.startswith((b"221 ", b"500 Command line too long"))
            if not closing:
                self.fail(f"closed after {last!r}\n{case.describe()}")
            self.disconnect(h.protocol, case)
            return
        self.continued += 1
        # End a partial line (an empty line is ignored), stop any transfer.
        self.say(b"", case)
        for _ in range(40):
            # Each ABOR stops the transfer running; queued commands then
            # run, and may start another. Done when ABOR itself is
            # answered in turn (225), or needs a login.
            if any(r[:4] in (b"225 ", b"530 ") for r in self.say(b"ABOR", case)):
                break
        else:
            self.fail(f"ABOR never got to its turn\n{case.describe()}")
        self.expect(b"NOOP", b"200", case)
        if self.say(b"PWD", case)[-1][:4] != b"257 ":
            self.expect(b"USER " + ALICE.encode(), b"331", case)
            self.expect(b"PASS " + PASSWORD.encode(), b"230", case)
        self.expect(b"CWD /", b"250", case)
        self.expect(b"TYPE I", b"200", case)
        self.expect(b"REST 0", b"350", case)
        content = os.urandom(3000)
        data, _ = self.passive(case)
        self.say(b"STOR probe.bin", case)
        data.dataReceived(content)
        h.close(data)
        self.assertEqual(self.replies(case)[-1][:4], b"226 ", case.describe())
        data, transport = self.passive(case)
        lines = self.say(b"RETR probe.bin", case)
        h.close(data)
        lines += self.replies(case)
        self.assertEqual(lines[-1][:4], b"226 ", (lines, case.describe()))
        self.assertEqual(transport.value(), content, case.describe())
        self.expect(b"QUIT", b"221", case)
        self.disconnect(h.protocol, case)

    def finish(self, case: Case) -> None:
        self.h.clock.advance(0)
        lines = self.replies(case)
        self.goesOn(lines[-1] if lines else b"", case)


class CommandTests(FTPFuzzTestCase):
    """Commands with mutated arguments, in any order, in any chunks."""

    def test_beforeLogin(self) -> None:
        """
        Mutated and made-up commands before login get reply codes (530
        for what needs a login) and a login, upload and download follow.
        """
        for garbage, case in self.cases("ftp-anonymous", 250):
            self.open()
            data = b"".join(self.command(garbage) for _ in range(garbage.count(1, 10)))
            self.deliver(self.h.protocol, data, garbage, case)
            self.finish(case)
        self.assertGreater(self.continued, 200)

    def test_afterLogin(self) -> None:
        """
        The same logged in: paths with control characters, C{..}, odd
        bytes, numbers out of range; the home stays usable.
        """
        for garbage, case in self.cases("ftp-commands", 400):
            self.open()
            self.say(b"USER " + ALICE.encode(), case)
            self.say(b"PASS " + PASSWORD.encode(), case)
            data = b"".join(self.command(garbage) for _ in range(garbage.count(1, 10)))
            self.deliver(self.h.protocol, data, garbage, case)
            self.finish(case)

    def test_numbers(self) -> None:
        """
        Every hostile number as REST's offset, PORT's and EPRT's ports and
        EPSV's protocol gets an error reply, never an exception.
        """
        for garbage, case in self.cases("ftp-numbers", 1):
            for number in NUMBERS:
                self.open()
                self.say(b"USER " + ALICE.encode(), case)
                self.say(b"PASS " + PASSWORD.encode(), case)
                data = b"".join(
                    line + b"\r\n"
                    for line in (
                        b"REST " + number,
                        b"PORT 127,0,0,1," + number + b",1",
                        b"EPRT |1|127.0.0.1|" + number + b"|",
                        b"EPSV " + number,
                        b"ALLO " + number,
                        b"HELP " + number,
                    )
                )
                self.deliver(self.h.protocol, data, garbage, case)
                self.finish(case)

    def test_randomBytes(self) -> None:
        """Streams of random bytes are survived, logged in or not."""
        for garbage, case in self.cases("ftp-bytes", 150):
            self.open()
            if garbage.chance(0.5):
                self.say(b"USER " + ALICE.encode(), case)
                self.say(b"PASS " + PASSWORD.encode(), case)
            self.deliver(self.h.protocol, garbage.blob(600), garbage, case)
            self.finish(case)

    def test_overlongLines(self) -> None:
        """
        A command line past the 8192-byte limit gets 500 and the
        connection is closed (as documented); just under it, the long
        argument gets its reply and the session goes on.
        """
        limit = FTPServer.MAX_LENGTH
        for garbage, case in self.cases("ftp-long", 40):
            self.open()
            self.say(b"USER " + ALICE.encode(), case)
            self.say(b"PASS " + PASSWORD.encode(), case)
            verb = garbage.pick((b"", b"CWD ", b"MKD ", b"USER ", b"RETR "))
            data = verb + garbage.long(limit - len(verb)) + garbage.ending()
            self.deliver(self.h.protocol, data, garbage, case)
            self.finish(case)

    def test_pipelined(self) -> None:
        """
        A burst of commands in one write gets one final reply per command,
        in order (commands queue behind each other).
        """
        safe = [
            (v, a)
            for v, a in VALID
            if v not in (b"QUIT", b"REIN", b"AUTH", b"ABOR", b"STAT", b"USER", b"PASS")
            and v not in (b"RETR", b"STOR", b"APPE", b"STOU", b"LIST", b"NLST", b"MLSD")
        ]
        for garbage, case in self.cases("ftp-pipeline", 150):
            self.open()
            self.say(b"USER " + ALICE.encode(), case)
            self.say(b"PASS " + PASSWORD.encode(), case)
            lines = [
                v + (b" " + a if a else b"")
                for v, a in (garbage.pick(safe) for _ in range(garbage.count(2, 20)))
            ]
            data = b"".join(line + b"\r\n" for line in lines)
            self.deliver(self.h.protocol, data, garbage, case)
            self.h.clock.advance(0)
            finals = self.replies(case)
            self.assertEqual(len(finals), len(lines), (finals, case.describe()))
            self.goesOn(finals[-1], case)


class TransferTests(FTPFuzzTestCase):
    """Data connections that misbehave, and control connections cut mid-way."""

    def test_transfers(self) -> None:
        """
        Uploads, downloads and listings whose data connection never comes,
        comes from another host, sends garbage, closes early or breaks,
        mixed with ABOR, REST and TYPE: each ends with one final reply and
        the session goes on.
        """
        commands = (
            b"RETR file.txt",
            b"RETR nope",
            b"RETR dir",
            b"STOR up.bin",
            b"APPE file.txt",
            b"STOU",
            b"LIST",
            b"LIST -la dir",
            b"NLST *.txt",
            b"MLSD",
            b"MLSD file.txt",
        )
        for garbage, case in self.cases("ftp-transfers", 250):
            h = self.open()
            self.say(b"USER " + ALICE.encode(), case)
            self.say(b"PASS " + PASSWORD.encode(), case)
            for _ in range(garbage.count(1, 4)):
                if garbage.chance(0.3):
                    self.say(garbage.pick((b"TYPE A", b"TYPE I", b"REST 2")), case)
                if garbage.chance(0.8):
                    self.say(garbage.pick((b"PASV", b"EPSV")), case)
                command = garbage.pick(commands)
                if garbage.chance(0.2):
                    command = garbage.mutate(command)
                connect = garbage.random.randrange(5)
                data: Any = None
                if connect in (0, 1, 2) and h.clock.tcpServers:
                    host = "192.0.2.66" if connect == 2 else None
                    try:
                        data, _ = h.acceptData(host=host)
                    except AssertionError:
                        data = None  # Refused: not the client's own host.
                self.say(command, case)
                if data is not None:
                    for _ in range(garbage.count(0, 3)):
                        data.dataReceived(garbage.blob(300))
                    if garbage.chance(0.2):
                        self.say(b"ABOR", case)
                    h.close(data, clean=garbage.chance(0.7))
                elif garbage.chance(0.5):
                    h.clock.advance(h.settings.dataTimeout + 1)
                self.replies(case)
            self.finish(case)

    def test_cutMidTransfer(self) -> None:
        """
        The control connection lost at any point of an upload or a
        download logs no failure and leaves no partial file; the next
        session works.
        """
        for garbage, case in self.cases("ftp-cut", 150):
            h = self.open()
            self.say(b"USER " + ALICE.encode(), case)
            self.say(b"PASS " + PASSWORD.encode(), case)
            self.say(b"TYPE I", case)
            upload = garbage.chance(0.5)
            data, transport = self.passive(case)
            self.say(b"STOR cut.bin" if upload else b"RETR file.txt", case)
            if upload:
                data.dataReceived(garbage.blob(2000))
            if garbage.chance(0.5):
                self.deliver(h.protocol, b"NOOP\r\nST", garbage, case)
            self.disconnect(h.protocol, case)
            if transport.disconnecting or garbage.chance(0.5):
                # The server closed it (as a transport would report), or
                # the client does.
                h.close(data, clean=garbage.chance(0.5))
            h.clock.advance(h.settings.dataTimeout + 1)
            if upload:
                self.assertFalse(os.path.exists(h.path("cut.bin")), case.describe())
            if os.path.isdir(h.staging):
                self.assertEqual(os.listdir(h.staging), [], case.describe())
            self.open()
            self.goesOn(b"", case)


class HeldRunner:
    """
    Runs file operations at once, or, while C{holding}, keeps them until
    L{release} (as busy file threads would).
    """

    def __init__(self) -> None:
        self.holding = False
        self.held: list[tuple[Deferred[Any], Callable[[], Any]]] = []

    def __call__(self, f: Any, *args: Any, **kw: Any) -> Deferred[Any]:
        if not self.holding:
            return maybeDeferred(f, *args, **kw)
        d: Deferred[Any] = Deferred()
        self.held.append((d, lambda: f(*args, **kw)))
        return d

    def release(self) -> None:
        self.holding = False
        while self.held:
            d, call = self.held.pop(0)
            maybeDeferred(call).chainDeferred(d)


class FindingTests(SynchronousTestCase):
    """
    What an adversarial run found, kept found: too-long file names are the
    client's error, and passive listeners are capped per session and per
    account.
    """

    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def harness(self) -> Harness:
        h = Harness(self.mktemp())
        h.users.addUser(BOB, hashPassword(PASSWORD, log2n=4))
        return h

    def test_longName(self) -> None:
        """
        A name longer than the file system takes gets 553 for every command
        that names a file, and one short warning in the log; nothing at
        error level, never the whole name.
        """
        h = self.harness()
        h.login()
        h.send("TYPE I")
        long = "n" * 3000
        for command in ("MKD", "CWD", "DELE", "RMD", "SIZE", "MDTM", "RNFR"):
            del self.events[:]
            self.assertTrue(h.send(f"{command} {long}")[0].startswith("553"), command)
            levels = {e["log_level"] for e in self.events if "log_level" in e}
            self.assertNotIn(LogLevel.error, levels, command)
            self.assertNotIn(LogLevel.critical, levels, command)
            for event in self.events:
                self.assertNotIn("log_failure", event)
                self.assertLess(len(formatEvent(event)), 300, command)
        for command in ("STOR", "RETR"):
            h.passive()
            reply = h.send(f"{command} {long}")
            self.assertTrue(reply[0].startswith("553"), (command, reply))

    def test_blankArguments(self) -> None:
        """
        TYPE, STRU and MODE with only spaces for an argument get a syntax
        error, not a failure (found by the campaign).
        """
        h = self.harness()
        h.login()
        for command in ("TYPE  ", "TYPE   ", "STRU  ", "MODE  "):
            del self.events[:]
            reply = h.send(command)
            self.assertTrue(reply[0][:1] == "5", (command, reply))
            for event in self.events:
                self.assertNotIn("log_failure", event, command)

    def test_lostWhileOpening(self) -> None:
        """
        The control connection lost while STOR's or RETR's file is being
        opened (in the file threads): no failure logged (found by the
        campaign: the command went on with the ended session's shell).
        """
        for command in ("STOR up.txt", "RETR file.txt"):
            run = HeldRunner()
            h = Harness(self.mktemp(), run=run)
            h.write("file.txt", b"hello")
            h.login()
            h.passive()
            run.holding = True
            del self.events[:]
            h.send(command)
            h.protocol.connectionLost(Failure(ConnectionDone()))
            run.release()
            h.clock.advance(h.settings.dataTimeout + 1)
            for event in self.events:
                self.assertNotIn("log_failure", event, command)

    def test_passivePerSession(self) -> None:
        """
        A new PASV or EPSV closes the session's previous listener: 100 in a
        row leave one open.
        """
        h = self.harness()
        h.login()
        for i in range(100):
            self.assertTrue(
                h.send("EPSV" if i % 2 else "PASV")[0][:3] in ("227", "229")
            )
        self.assertEqual(h.factory.passiveOpen(ALICE), 1)

    def test_passivePerAccount(self) -> None:
        """
        One account's sessions hold at most C{maxPassivePerAccount}
        listeners (4 by default); the next gets 425 and another account is
        not affected; a closed session gives its listener back.
        """
        h = self.harness()
        sessions = []
        for _ in range(4):
            s = h.session()
            s.login()
            self.assertTrue(s.send("PASV")[0].startswith("227"))
            sessions.append(s)
        extra = h.session()
        extra.login()
        self.assertTrue(extra.send("PASV")[0].startswith("425"))
        bob = h.session()
        bob.received()
        bob.send(f"USER {BOB}")
        self.assertTrue(bob.send(f"PASS {PASSWORD}")[0].startswith("230"))
        self.assertTrue(bob.send("PASV")[0].startswith("227"))
        sessions[0].protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(extra.send("PASV")[0].startswith("227"))
