"""
Mail authentication cost: messages/s through appnet's submission port with
DKIM signing off and on (rsa-sha256 2048 bits, ed25519-sha256), and
through its MX port with verification (DKIM, SPF, DMARC, ARC) off and on.

Each configuration runs in a fresh appnet process (twistd) with its own
data directory; a load generator (asyncio, raw SMTP, 10 connections,
one message at a time per connection) sends 1 KiB messages and counts
those acknowledged with 250. Signing: alice@example.org submits to
bob@example.org (local delivery, so the relay is not measured); the
key is made with C{appnet dkim keygen}. Verification: messages signed
for remote.example (key, SPF and DMARC records in a zone the stack
serves itself, so lookups go through appnet's resolver and its cache)
arrive at the MX from 127.0.0.1, which is made untrusted
(C{spf_skip = []}); the DNS rate limit is off, since the default (200
responses/s per client) throttles the stack's own lookups. The figure
that matters is each "on" row against the "off" row of the same run.

Usage (from a checkout)::

    .venv/bin/python bench/smtp/mailauth.py [--quick] [--runs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import stopProcess, table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONNECTIONS = 10
PASSWORD = "bench-password"


async def _reply(reader: asyncio.StreamReader) -> str:
    while True:
        line = (await reader.readline()).decode()
        if not line:
            raise ConnectionError("server closed the connection")
        if len(line) < 4 or line[3] != "-":
            return line


async def _client(port: int, body: bytes, count: int, sender: str, auth: bool) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await _reply(reader)
    writer.write(b"EHLO bench.example\r\n")
    await _reply(reader)
    if auth:
        token = base64.b64encode(f"\0{sender}\0{PASSWORD}".encode())
        writer.write(b"AUTH PLAIN " + token + b"\r\n")
        if not (await _reply(reader)).startswith("235"):
            raise RuntimeError("AUTH failed")
    sent = 0
    for _ in range(count):
        writer.write(f"MAIL FROM:<{sender}>\r\nRCPT TO:<bob@example.org>\r\n".encode())
        await _reply(reader)
        await _reply(reader)
        writer.write(b"DATA\r\n")
        if not (await _reply(reader)).startswith("354"):
            raise RuntimeError("DATA refused")
        writer.write(body + b".\r\n")
        reply = await _reply(reader)
        if reply.startswith("250"):
            sent += 1
        else:
            raise RuntimeError(reply)
    writer.write(b"QUIT\r\n")
    await _reply(reader)
    writer.close()
    return sent


async def load(port: int, body: bytes, total: int, sender: str, auth: bool) -> float:
    per = total // CONNECTIONS
    start = time.perf_counter()
    sent = await asyncio.gather(
        *[_client(port, body, per, sender, auth) for _ in range(CONNECTIONS)]
    )
    return sum(sent) / (time.perf_counter() - start)


def message(sender: str) -> bytes:
    header = (
        f"From: {sender}\r\nTo: bob@example.org\r\nSubject: bench\r\n"
        "Date: Sun, 06 Dec 2026 12:00:00 +0000\r\n"
        "Message-ID: <bench@example>\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    return header + line * ((1024 - len(header)) // len(line))


def appnet(*args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "appnet", *args],
        input=stdin,
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return done.stdout.decode()


ZONE = """$ORIGIN {origin}.
$TTL 300
@ IN SOA ns hostmaster 1 3600 600 86400 300
@ IN NS ns
ns IN A 127.0.0.1
"""


def prepare(data: str, *, sign: str | None, verify: bool) -> str:
    """A data directory and its config file; returns the config path."""
    os.makedirs(os.path.join(data, "zones"), exist_ok=True)
    for user in ("alice@example.org", "bob@example.org"):
        appnet("--data", data, "user", "add", user, "--password-stdin",
               stdin=PASSWORD.encode() + b"\n")  # fmt: skip
    for origin in ("example.org", "remote.example"):
        with open(os.path.join(data, "zones", origin + ".zone"), "w") as f:
            f.write(ZONE.format(origin=origin))
    if sign:
        appnet("--data", data, "dkim", "keygen", "example.org", "-s", "b1",
               "-a", sign)  # fmt: skip
    config = os.path.join(data, "bench.toml")
    if verify:
        text = '[mail]\nspf = "mark"\nspf_skip = []\n[dkim]\nverify = true\n'
        # The DNS service's per-client rate limit (200/s by default) would
        # throttle the stack's own lookups, which come from 127.0.0.1.
        text += "[dns]\nrate_limit = 0\n"
    else:
        text = '[mail]\nspf = "off"\n[dkim]\nverify = false\n'
    with open(config, "w") as f:
        f.write(text)
    return config


def remoteSigned(data: str) -> bytes:
    """A message from remote.example signed with its key (published)."""
    appnet("--data", data, "dkim", "keygen", "remote.example", "-s", "r1")
    with open(os.path.join(data, "zones", "remote.example.zone"), "a") as f:
        f.write('@ IN TXT "v=spf1 ip4:127.0.0.1 -all"\n')
        f.write('_dmarc IN TXT "v=DMARC1; p=reject"\n')
    sys.path.insert(0, ROOT)
    from twisted.python.filepath import FilePath

    from appnet.mail.dkim import loadKeys, signMessage

    keys = [
        k
        for k in loadKeys(FilePath(os.path.join(data, "dkim")))
        if k.domain == "remote.example"
    ]
    body = message("load@remote.example")
    signed = signMessage(body, keys) + body
    # Only the MX verifies; the remote key must not sign here.
    os.rename(
        os.path.join(data, "dkim", "remote.example", "r1.pem"),
        os.path.join(data, "dkim", "remote.example", "r1.pem.retired"),
    )
    return signed


def start(data: str, config: str) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    args = ["--data", data, "--config", config, "--dns", "127.0.0.1:0"]
    for name in ("smtp", "submission"):
        args += [f"--{name}", "tcp:0:interface=127.0.0.1"]
    args += ["--disable", "http", "--disable", "ftp", "--disable", "pop3",
             "--disable", "imap"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "appnet", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=data,
    )  # fmt: skip
    ports: dict[str, int] = {}
    assert process.stdout is not None
    for raw in process.stdout:
        found = re.search(rb"(\w+) listening on tcp 127\.0\.0\.1:(\d+)", raw)
        if found:
            ports[found.group(1).decode()] = int(found.group(2))
        if b"appnet ready" in raw:
            break
    else:
        raise RuntimeError("appnet did not start")
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, ports


def cpuSeconds(pid: int) -> float:
    """CPU time (user + system) of a process from Linux's /proc; 0 elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    work: str,
    name: str,
    total: int,
    sign: str | None = None,
    verify: bool = False,
    mx: bool = False,
) -> tuple[float, float]:
    """Messages/s, and the server's CPU milliseconds per message."""
    data = os.path.join(work, name)
    config = prepare(data, sign=sign, verify=verify)
    body = remoteSigned(data) if mx else message("alice@example.org")
    process, ports = start(data, config)
    try:
        before = cpuSeconds(process.pid)
        if mx:
            rate = asyncio.run(
                load(ports["smtp"], body, total, "load@remote.example", False)
            )
        else:
            rate = asyncio.run(
                load(ports["submission"], body, total, "alice@example.org", True)
            )
        cpu = cpuSeconds(process.pid) - before
        return rate, 1000 * cpu / (total // CONNECTIONS * CONNECTIONS)
    finally:
        stopProcess(process)
        shutil.rmtree(data, ignore_errors=True)


CASES: list[tuple[str, dict[str, Any]]] = [
    ("submission, signing off", {"sign": None}),
    ("submission, rsa-sha256 2048", {"sign": "rsa"}),
    ("submission, ed25519-sha256", {"sign": "ed25519"}),
    ("MX, verification off", {"mx": True, "verify": False}),
    ("MX, DKIM+SPF+DMARC+ARC on", {"mx": True, "verify": True}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    parser.add_argument("--runs", type=int, default=2)
    options = parser.parse_args()
    total = 200 if options.quick else 1000
    work = tempfile.mkdtemp(prefix="appnet-bench-auth-")
    rows = [
        ["1 KiB messages, 10 conns", *[f"run {n + 1}" for n in range(options.runs)]]
    ]
    try:
        results: dict[str, list[str]] = {}
        cpu: dict[str, list[str]] = {}
        for run in range(options.runs):
            for index, (label, kw) in enumerate(CASES):
                rate, ms = measure(work, f"run{run}-case{index}", total, **kw)
                results.setdefault(label, []).append(f"{rate:.0f} msg/s")
                cpu.setdefault(label, []).append(f"{ms:.2f} ms")
        for label, _ in CASES:
            rows.append([label, *results[label]])
        cpuRows = [["server CPU per message", *rows[0][1:]]]
        for label, _ in CASES:
            cpuRows.append([label, *cpu[label]])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    print()
    print(table(cpuRows))


if __name__ == "__main__":
    main()
