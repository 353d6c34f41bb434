"""
A fuzzing campaign against a real appnet daemon: one C{twistd -n appnet}
on loopback ports, fed hostile sessions over real sockets, protocol by
protocol, for a given time each. The sessions come from the robustness
suite's generator (L{tests.robustness.fuzz.Garbage}) and its protocols'
valid commands, so a campaign explores what the in-memory suite checks,
through the whole stack.

The report gives, per protocol, the sessions tried; then the daemon's
tracebacks (must be 0) and error-level log events, and its resident memory
before and after. CI runs it for a few seconds per protocol
(L{tests.robustness.test_campaign}); by hand, for as long as you like::

    python -m tests.robustness.campaign --seconds 600 --seed 7
    python -m tests.robustness.campaign --seconds 60 --protocols imap,http

It exits 1 when the daemon logged a traceback (the lines are printed) or
died. Everything it starts listens on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from attrs import define, field

from tests.robustness.fuzz import Garbage

ALICE = "alice@example.org"
PASSWORD = "pw-alice-1"

PROTOCOLS = ("smtp", "submission", "pop3", "imap", "ftp", "http", "dns")

_TWISTD = "from twisted.scripts.twistd import run; run()"
_LISTENING = re.compile(r"\] (\w+) listening on (tcp|udp) 127\.0\.0\.1:(\d+)")
_PROBLEM = re.compile(r"Traceback|Unhandled Error|MESSAGE LOST|Unhandled error")
_ERROR = re.compile(r"#(error|critical)\]")


@define
class Report:
    """
    What a campaign found.

    @ivar sessions: sessions tried, by protocol.
    @ivar tracebacks: daemon log lines that start a traceback or say a
        message was lost.
    @ivar errors: daemon log lines at error or critical level.
    @ivar rssBefore: the daemon's resident memory (KiB) before the first
        session; C{rssAfter} after the last.
    @ivar alive: the daemon was still running at the end.
    @ivar context: the daemon's log around the first traceback.
    """

    sessions: dict[str, int] = field(factory=dict)
    tracebacks: list[str] = field(factory=list)
    errors: list[str] = field(factory=list)
    rssBefore: int = 0
    rssAfter: int = 0
    alive: bool = True
    context: list[str] = field(factory=list)

    def text(self) -> str:
        """The report as a few lines for a person."""
        lines = [
            f"{name:12} {count:8d} sessions" for name, count in self.sessions.items()
        ]
        lines.append(f"{'total':12} {sum(self.sessions.values()):8d} sessions")
        lines.append(f"daemon tracebacks: {len(self.tracebacks)}")
        lines.append(f"daemon error events: {len(self.errors)}")
        lines.append(f"daemon RSS: {self.rssBefore} KiB before, {self.rssAfter} after")
        if not self.alive:
            lines.append("the daemon DIED")
        lines += ["  " + line for line in (self.tracebacks + self.errors)[:40]]
        if self.context:
            lines += ["around the first traceback:"] + self.context
        return "\n".join(lines)


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


_CONFIG = """\
data = "{data}"
hostname = "mail.example.org"
[auth]
failure_delay = "0s"
{auth}
[mail]
domains = ["example.org"]
relay_port = 9
[smtp]
listen = ["tcp:0:interface=127.0.0.1"]
idle_timeout = "5s"
[submission]
listen = ["tcp:0:interface=127.0.0.1"]
idle_timeout = "5s"
[pop3]
listen = ["tcp:0:interface=127.0.0.1"]
idle_timeout = "5s"
[imap]
listen = ["tcp:0:interface=127.0.0.1"]
idle_timeout = "5s"
[ftp]
listen = ["tcp:0:interface=127.0.0.1"]
passive_ports = "0"
idle_timeout = "5s"
data_timeout = "2s"
[http]
listen = ["tcp:0:interface=127.0.0.1"]
idle_timeout = "5s"
[dns]
listen = "127.0.0.1:0"
"""


class Daemon:
    """One C{twistd -n appnet} in a temporary directory, and its log."""

    def __init__(self, auth: str = "") -> None:
        """
        @param auth: more lines for the C{[auth]} table (TOML).
        """
        self.auth = auth
        self.root = tempfile.mkdtemp(prefix="appnet-campaign-")
        self.data = os.path.join(self.root, "data")
        self.config = os.path.join(self.root, "appnet.toml")
        self.logPath = os.path.join(self.root, "twistd.log")
        self.process: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}

    def start(self, seconds: float = 60) -> None:
        """Write the config, add the accounts, start, wait for the ports."""
        with open(self.config, "w") as f:
            f.write(_CONFIG.format(data=self.data, auth=self.auth))
        for address in (ALICE, "bob@example.org"):
            subprocess.run(
                [sys.executable, "-m", "appnet", "--config", self.config]
                + ["user", "add", address, "--password-stdin"],
                input=PASSWORD.encode() + b"\n",
                check=True,
                capture_output=True,
            )
        log = open(self.logPath, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _TWISTD, "-n", "--pidfile=", "appnet"]
            + ["--config", self.config],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
        )
        log.close()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("appnet exited:\n" + self.log()[-2000:])
            text = self.log()
            if "appnet ready" in text:
                for name, kind, port in _LISTENING.findall(text):
                    self.ports[name if kind == "tcp" else name + "-udp"] = int(port)
                return
            time.sleep(0.1)
        raise RuntimeError("appnet did not start:\n" + self.log()[-2000:])

    def log(self) -> str:
        with open(self.logPath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL) and remove its files."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _talk(port: int, lines: Sequence[bytes], greeting: bool, pipelined: bool) -> None:
    """
    One TCP session: read the greeting, send C{lines} (each waiting briefly
    for its reply, or all at once), read what comes back.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        if greeting:
            try:
                s.recv(4096)
            except OSError:
                return
        s.settimeout(0.005)
        batches = [b"".join(lines)] if pipelined else list(lines)
        for batch in batches:
            try:
                s.sendall(batch)
                while s.recv(65536):
                    pass
            except TimeoutError:
                continue
            except OSError:
                return
        if pipelined:
            s.settimeout(0.05)
            try:
                while s.recv(65536):
                    pass
            except OSError:
                pass


def _lineSession(
    valid: Sequence[tuple[bytes, bytes]], login: Sequence[bytes]
) -> Callable[[Garbage], list[bytes]]:
    def session(garbage: Garbage) -> list[bytes]:
        lines = list(login) if garbage.chance(0.5) else []
        for _ in range(garbage.count(1, 12)):
            lines.append(garbage.commandLine(valid, lambda v, a: v.lower() + b" " + a))
        return lines

    return session


_PLAIN = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())

_SMTP = (
    (b"EHLO", b"client.example"),
    (b"HELO", b"client.example"),
    (b"MAIL", b"FROM:<sender@crepes.fr> SIZE=100"),
    (b"RCPT", b"TO:<bob@example.org>"),
    (b"RCPT", b"TO:<someone@remote.example>"),
    (b"DATA", b""),
    (b"Subject: x\r\n\r\nbody\r\n.", b""),
    (b"BDAT", b"10 LAST"),
    (b"RSET", b""),
    (b"NOOP", b""),
    (b"VRFY", b"bob"),
    (b"AUTH", b"PLAIN " + _PLAIN),
    (b"AUTH", b"LOGIN"),
    (b"STARTTLS", b""),
    (b"QUIT", b""),
)
_POP3 = (
    (b"USER", ALICE.encode()),
    (b"PASS", PASSWORD.encode()),
    (b"PASS", PASSWORD.encode() + b" "),
    (b"AUTH", b"PLAIN " + _PLAIN),
    (b"APOP", b"alice 0123456789abcdef0123456789abcdef"),
    (b"CAPA", b""),
    (b"STAT", b""),
    (b"LIST", b"1"),
    (b"UIDL", b""),
    (b"RETR", b"1"),
    (b"TOP", b"1 0"),
    (b"DELE", b"1"),
    (b"RSET", b""),
    (b"STLS", b""),
    (b"QUIT", b""),
)
_IMAP = (
    (b"a1 LOGIN", ALICE.encode() + b" " + PASSWORD.encode()),
    (b"a2 SELECT", b"INBOX"),
    (b"a3 FETCH", b"1:* (FLAGS BODY.PEEK[HEADER] BODYSTRUCTURE)"),
    (b"a4 SEARCH", b"TEXT hello"),
    (b"a5 STORE", b"1 +FLAGS (\\Seen)"),
    (b"a6 APPEND", b"INBOX {5}"),
    (b"a7 LIST", b'"" *'),
    (b"a8 STATUS", b"INBOX (MESSAGES UIDNEXT)"),
    (b"a9 CREATE", b"Box"),
    (b"b1 UID", b"FETCH 1:* (UID)"),
    (b"b2 IDLE", b""),
    (b"DONE", b""),
    (b"b3 EXPUNGE", b""),
    (b"b4 AUTHENTICATE", b"PLAIN " + _PLAIN),
    (b"b5 LOGOUT", b""),
)
_FTP = (
    (b"USER", ALICE.encode()),
    (b"PASS", PASSWORD.encode()),
    (b"PASV", b""),
    (b"EPSV", b""),
    (b"PORT", b"127,0,0,1,200,10"),
    (b"TYPE", b"I"),
    (b"LIST", b""),
    (b"MKD", b"dir"),
    (b"CWD", b"dir"),
    (b"STOR", b"f.txt"),
    (b"RETR", b"f.txt"),
    (b"RNFR", b"f.txt"),
    (b"RNTO", b"g.txt"),
    (b"SIZE", b"g.txt"),
    (b"MLSD", b""),
    (b"REST", b"5"),
    (b"MKD", b"n" * 3000),
    (b"STOR", b"d/" * 600),
    (b"QUIT", b""),
)
_PATHS = (
    b"/",
    b"/status",
    b"/metrics",
    b"/login",
    b"/mail/",
    b"/api/v1/session",
    b"/api/v1/folders",
    b"/api/v1/messages?folder=INBOX",
    b"/api/v1/login",
)
_METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"TRACE")


def _httpSession(garbage: Garbage) -> list[bytes]:
    requests = []
    for _ in range(garbage.count(1, 4)):
        target = garbage.pick(_PATHS)
        if garbage.chance(0.4):
            target = garbage.mutate(target)
        line = garbage.pick(_METHODS) + b" " + target + b" HTTP/1.1"
        if garbage.chance(0.2):
            line = garbage.mutate(line)
        headers = [b"Host: 127.0.0.1"]
        if garbage.chance(0.2):
            headers.append(b"Host: " + garbage.argument())
        for _ in range(garbage.count(0, 3)):
            headers.append(garbage.printable(12) + b": " + garbage.argument())
        body = b""
        if garbage.chance(0.3):
            body = b'{"username": "' + ALICE.encode() + b'", "password": "x"}'
            headers += [b"Content-Type: application/json"]
        headers.append(b"Content-Length: " + str(len(body)).encode())
        if garbage.chance(0.1):
            headers.append(b"Content-Length: " + garbage.number())
        requests.append(line + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body)
    return requests


_QUERY = bytes.fromhex("abcd01000001000000000000076578616d706c65036f72670000010001")


def _dnsSession(port: int, garbage: Garbage) -> None:
    """A few hostile queries over UDP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.02)
        for _ in range(garbage.count(1, 8)):
            packet = garbage.mutate(_QUERY) if garbage.chance(0.8) else garbage.blob()
            s.sendto(packet, ("127.0.0.1", port))
            try:
                s.recv(4096)
            except OSError:
                pass


_SESSIONS: dict[str, Callable[[Garbage], list[bytes]]] = {
    "smtp": _lineSession(_SMTP, [b"EHLO fuzz.example\r\n"]),
    "submission": _lineSession(
        _SMTP, [b"EHLO fuzz.example\r\n", b"AUTH PLAIN " + _PLAIN + b"\r\n"]
    ),
    "pop3": _lineSession(
        _POP3,
        [b"USER " + ALICE.encode() + b"\r\n", b"PASS " + PASSWORD.encode() + b"\r\n"],
    ),
    "imap": _lineSession(
        _IMAP, [b"a0 LOGIN " + ALICE.encode() + b" " + PASSWORD.encode() + b"\r\n"]
    ),
    "ftp": _lineSession(
        _FTP,
        [b"USER " + ALICE.encode() + b"\r\n", b"PASS " + PASSWORD.encode() + b"\r\n"],
    ),
    "http": _httpSession,
}


#: Sessions run at once (each from its own seeded generator).
WORKERS = 4


def _fuzz(daemon: Daemon, name: str, garbage: Garbage, seconds: float) -> int:
    """Sessions of protocol C{name} for C{seconds}; how many."""
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if name == "dns":
            _dnsSession(daemon.ports["dns-udp"], garbage)
        else:
            lines = _SESSIONS[name](garbage)
            try:
                _talk(daemon.ports[name], lines, name != "http", garbage.chance(0.3))
            except OSError:
                pass
        count += 1
    return count


def run(
    seconds: float,
    protocols: Sequence[str] = PROTOCOLS,
    seed: int = 1,
    log: Callable[[str], None] = lambda line: None,
) -> Report:
    """
    Start a daemon, fuzz each of C{protocols} for C{seconds}, stop it.
    Blocking: call it in a thread from a reactor.
    """
    report = Report()
    daemon = Daemon()
    try:
        daemon.start()
        report.rssBefore = _rss(daemon.pid)
        for name in protocols:
            with ThreadPoolExecutor(WORKERS) as pool:
                counts = pool.map(
                    _fuzz,
                    [daemon] * WORKERS,
                    [name] * WORKERS,
                    [Garbage(f"campaign-{name}-{seed}-{w}") for w in range(WORKERS)],
                    [seconds] * WORKERS,
                )
                report.sessions[name] = sum(counts)
            log(f"{name}: {report.sessions[name]} sessions")
        # Let sessions the daemon still holds end (idle timeouts are 5s).
        time.sleep(0.5)
        report.rssAfter = _rss(daemon.pid)
        report.alive = daemon.process is not None and daemon.process.poll() is None
        logged = daemon.log().splitlines()
        for number, line in enumerate(logged):
            if _PROBLEM.search(line):
                if not report.context:
                    report.context = logged[max(0, number - 5) : number + 60]
                report.tracebacks.append(line[:300])
            elif _ERROR.search(line):
                report.errors.append(line[:300])
    finally:
        daemon.stop()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: run a campaign, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="per protocol")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    options = parser.parse_args(argv)
    protocols = [p for p in options.protocols.split(",") if p]
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        parser.error(f"unknown protocols: {', '.join(sorted(unknown))}")
    report = run(options.seconds, protocols, options.seed, print)
    print(report.text())
    return 0 if report.alive and not report.tracebacks else 1


if __name__ == "__main__":
    sys.exit(main())


def burst(
    port: int, count: int = 32, right: int = 20, wrong: bytes = b"wrong"
) -> list[bytes]:
    """
    The parallel login attack on a real IMAP listener: C{count} connections
    from 127.0.0.1, each sending LOGIN before any answer comes, all wrong
    but the one at index C{right}; every tagged reply, in order.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.recv(4096)
            sockets.append(s)
        for i, s in enumerate(sockets):
            password = PASSWORD.encode() if i == right else wrong
            s.sendall(b"t LOGIN " + ALICE.encode() + b" " + password + b"\r\n")
        replies = []
        for s in sockets:
            data = b""
            while b"\r\nt " not in b"\r\n" + data or not data.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            tagged = [line for line in data.split(b"\r\n") if line.startswith(b"t ")]
            replies.append(tagged[0] if tagged else b"")
        return replies
    finally:
        for s in sockets:
            s.close()
