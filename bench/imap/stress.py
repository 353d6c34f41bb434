"""
IMAP under many clients: appnet against Dovecot, side by side in one run.

C{--clients} clients (default 20, Python's imaplib in threads, the same
client code for both servers) each loop for C{--seconds}: LOGIN, SELECT
INBOX, FETCH of the first ten messages (FLAGS and header), STORE of a
keyword and of C{\\Deleted} on the last message (C{*}), EXPUNGE, APPEND of a new
message, LOGOUT. A second row keeps each session logged in and loops the
rest. Every command counts as one operation; the table gives operations
per second, the mean LOGIN time, and the error counts: server errors
(C{NO [SERVERBUG]}, C{BYE}, dropped connections) and other refusals
(C{NO} or C{BAD}, such as C{NO [EXPUNGEISSUED]} when another client was
quicker, which is correct behaviour).

Both servers start with the same 50-message mailbox. appnet runs as its
twistd daemon (its account made by C{appnet user add}, so with the
production password hash). Dovecot runs as the Debian package's
C{dovecot -F} master with a configuration written into a temporary
directory, configured as in production: a passwd-file with SHA512-CRYPT
passwords and the auth cache on (C{auth_cache_size}, C{auth_cache_ttl}),
with C{mail_max_userip_connections} raised above the client count.
Both listen on 127.0.0.1 in plain text (loopback).

Usage (from a checkout, with the test extras installed; as root for
Dovecot's users)::

    .venv/bin/python bench/imap/stress.py [--seconds 30] [--clients 20]

On a shared machine, run it twice and compare ratios.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import freePort, stopProcess, table, waitForPort  # noqa: E402
from run import PASSWORD, USER, message, startAppnet  # noqa: E402

MESSAGES = 50
SERVER_ERRORS = (b"[SERVERBUG]", b"[UNAVAILABLE]")


class Tally:
    """Operations and errors of every client, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops = 0
        self.logins: list[float] = []
        self.serverErrors = 0
        self.refusals = 0
        self.examples: list[str] = []

    def add(self, ops: int, logins: list[float], server: int, refused: int) -> None:
        with self.lock:
            self.ops += ops
            self.logins += logins
            self.serverErrors += server
            self.refusals += refused


class Client:
    """One looping client."""

    def __init__(self, port: int, tally: Tally, stayLoggedIn: bool, n: int) -> None:
        self.port = port
        self.tally = tally
        self.stay = stayLoggedIn
        self.n = n
        self.ops = 0
        self.logins: list[float] = []
        self.server = 0
        self.refused = 0

    def check(self, reply: tuple[str, Any]) -> None:
        self.ops += 1
        typ, data = reply
        if typ == "OK":
            return
        text = b" ".join(d for d in data if isinstance(d, bytes))
        if any(code in text for code in SERVER_ERRORS):
            self.server += 1
            self.note(text)
        else:
            self.refused += 1

    def note(self, text: bytes) -> None:
        with self.tally.lock:
            if len(self.tally.examples) < 5:
                self.tally.examples.append(text.decode("ascii", "replace")[:120])

    def login(self) -> imaplib.IMAP4:
        start = time.perf_counter()
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=60)
        self.check(imap.login(USER, PASSWORD))
        self.logins.append(time.perf_counter() - start)
        return imap

    def work(self, imap: imaplib.IMAP4, i: int) -> None:
        typ, data = imap.select("INBOX")
        self.check((typ, data))
        # The last EXISTS counts: a catch-up (EXPUNGE, then EXISTS) may
        # follow the first one.
        exists = int(data[-1]) if typ == "OK" and data and data[-1] else 0
        if exists:
            # "*" is the last message of the session's view, whatever it
            # learnt after the EXISTS imaplib returns.
            first = "1:10" if exists > 20 else "1:*"
            self.check(imap.fetch(first, "(FLAGS BODY.PEEK[HEADER])"))
            label = f"$Label{(self.n + i) % 5}"
            self.check(imap.store("*", "+FLAGS", f"({label})"))
            self.check(imap.store("*", "+FLAGS", "(\\Deleted)"))
            self.check(imap.expunge())
        self.check(
            imap.append("INBOX", "", imaplib.Time2Internaldate(time.time()), message(i))
        )

    def run(self, until: float) -> None:
        i = 0
        imap: imaplib.IMAP4 | None = None
        while time.monotonic() < until:
            try:
                if imap is None:
                    imap = self.login()
                self.work(imap, i)
                if not self.stay:
                    imap.logout()
                    imap = None
            except (imaplib.IMAP4.abort, OSError) as e:
                # BYE, a dropped connection, a reply that never came.
                self.server += 1
                self.note(str(e).encode())
                imap = None
            except imaplib.IMAP4.error as e:
                # BAD (or NO to LOGIN/SELECT): the session goes on.
                text = str(e).encode()
                if any(code in text for code in SERVER_ERRORS):
                    self.server += 1
                    self.note(text)
                else:
                    self.refused += 1
                    self.note(text)
            i += 1
        if imap is not None:
            try:
                imap.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
        self.tally.add(self.ops, self.logins, self.server, self.refused)


def load(port: int, clients: int, seconds: float, stay: bool) -> Tally:
    tally = Tally()
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(target=Client(port, tally, stay, n).run, args=(until,))
        for n in range(clients)
    ]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tally.elapsed = time.monotonic() - start  # type: ignore[attr-defined]
    return tally


def dovecotConfig(directory: str, port: int) -> str:
    """Production-like: SHA512-CRYPT passwd-file, auth cache, Maildir."""
    return f"""\
base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
instance_name = appnet-bench-{port}
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_cache_size = 10M
auth_cache_ttl = 1 hour
auth_cache_negative_ttl = 1 hour
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
first_valid_gid = 0
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {directory}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={directory}/home/%u
}}
mail_location = maildir:~/Maildir
protocol imap {{
  mail_max_userip_connections = 1000
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def startDovecot(work: str) -> tuple[subprocess.Popen[bytes], int] | None:
    dovecot = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin")
    doveadm = shutil.which("doveadm") or shutil.which("doveadm", path="/usr/bin")
    if dovecot is None or doveadm is None or os.geteuid() != 0:
        print("dovecot: not available (needs the package and root)", file=sys.stderr)
        return None
    directory = os.path.join(work, "dovecot")
    os.makedirs(directory)
    os.chmod(work, 0o755)
    os.chmod(directory, 0o755)
    hashed = subprocess.run(
        [doveadm, "pw", "-s", "SHA512-CRYPT", "-p", PASSWORD],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    with open(os.path.join(directory, "passwd"), "w") as f:
        f.write(f"{USER}:{hashed}::::::\n")
    maildir = os.path.join(directory, "home", USER, "Maildir")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub))
    for i in range(MESSAGES):
        name = f"{1700000000 + i}.M{i}P1.bench:2,"
        with open(os.path.join(maildir, "cur", name), "wb") as f:
            f.write(message(i))
    nobody = pwd.getpwnam("nobody")
    subprocess.run(
        ["chown", "-R", f"{nobody.pw_uid}:{nobody.pw_gid}",
         os.path.join(directory, "home")],
        check=True,
    )  # fmt: skip
    port = freePort()
    config = os.path.join(directory, "dovecot.conf")
    with open(config, "w") as f:
        f.write(dovecotConfig(directory, port))
    process = subprocess.Popen(
        [dovecot, "-F", "-c", config],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    waitForPort(port, process)
    return process, port


def row(name: str, tally: Tally) -> list[str]:
    elapsed = tally.elapsed  # type: ignore[attr-defined]
    logins = tally.logins
    mean = sum(logins) / len(logins) * 1000 if logins else 0.0
    return [
        name,
        f"{tally.ops / elapsed:.0f}",
        f"{mean:.0f}",
        str(tally.serverErrors),
        str(tally.refusals),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=20)
    options = parser.parse_args()
    work = tempfile.mkdtemp(prefix="appnet-imap-stress-")
    stops: list[Callable[[], None]] = []
    rows = [["server, sessions", "ops/s", "LOGIN ms", "server errors", "refused"]]
    examples: list[str] = []
    try:
        appnet, appnetPort = startAppnet(os.path.join(work, "appnet"), MESSAGES)
        stops.append(lambda: stopProcess(appnet))
        started = startDovecot(work)
        servers = [("appnet", appnetPort)]
        if started is not None:
            dovecot, dovecotPort = started
            stops.append(lambda: stopProcess(dovecot))
            servers.append(("dovecot", dovecotPort))
        for stay in (False, True):
            kind = "stay logged in" if stay else "log in each loop"
            for name, port in servers:
                tally = load(port, options.clients, options.seconds, stay)
                rows.append(row(f"{name}, {kind}", tally))
                examples += [f"{name}: {e}" for e in tally.examples]
    finally:
        for stop in reversed(stops):
            stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{options.clients} clients, {options.seconds:g} s each row,"
        f" {MESSAGES}-message INBOX"
    )
    print(table(rows))
    for example in examples:
        print("  error:", example)


if __name__ == "__main__":
    main()
