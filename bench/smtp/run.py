"""
SMTP and POP3 throughput: appnet against aiosmtpd, side by side in one run.

Each server runs in its own process; a load generator (asyncio, raw SMTP,
one message at a time per connection) sends messages over 10 concurrent
connections and counts those acknowledged with 250. Both servers store
every message durably before answering 250: appnet by its design (a
message of up to 16 KiB as a row of its database, a larger one as a file
fsynced with its directory, then the index rows committed, all with group
commit), the aiosmtpd peer by a handler that writes each message to its
own file, fsyncs it, renames it into place and fsyncs the directory (in a
thread pool, so its event loop keeps serving). Beside them, the limit:
``bare.py``, the smallest Twisted program storing as appnet does with
group commit (small messages as rows, large ones as files, one SQLite
commit per batch). Then POP3 RETR throughput: one client retrieves a
maildrop of 1 MiB messages from appnet.

Usage (from a checkout, with the test extras installed)::

    .venv/bin/pip install aiosmtpd
    .venv/bin/python bench/smtp/run.py [--quick]

Numbers depend on the disk's fsync latency; on a shared machine, run it
twice and compare. On Linux a second table gives the CPU time (user +
system, from /proc) each server spent per message during the SMTP runs:
appnet's reactor thread alone and each whole process (threads included),
the measure that counts when the machine's cores are all busy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import stopProcess, table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONNECTIONS = 10
#: Messages each server takes, untimed, before the SMTP runs.
WARMUP = 500
RECIPIENT = "bob@example.org"

AIOSMTPD_SERVER = r"""
import asyncio, os, sys, uuid
from aiosmtpd.controller import Controller

root = sys.argv[1]
os.makedirs(os.path.join(root, "new"), exist_ok=True)
os.makedirs(os.path.join(root, "tmp"), exist_ok=True)

def store(data):
    name = uuid.uuid4().hex
    tmp = os.path.join(root, "tmp", name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(root, "new", name))
    d = os.open(os.path.join(root, "new"), os.O_RDONLY)
    try:
        os.fsync(d)
    finally:
        os.close(d)

class Durable:
    async def handle_DATA(self, server, session, envelope):
        await asyncio.get_running_loop().run_in_executor(None, store, envelope.content)
        return "250 Message accepted for delivery"

import socket
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
controller = Controller(Durable(), hostname="127.0.0.1", port=port,
                        data_size_limit=50 * 1024 * 1024)
controller.start()
print("listening", port, flush=True)
sys.stdin.read()
controller.stop()
"""


async def _reply(reader: asyncio.StreamReader) -> str:
    while True:
        line = (await reader.readline()).decode()
        if not line:
            raise ConnectionError("server closed the connection")
        if len(line) < 4 or line[3] != "-":
            return line


async def _smtpClient(
    port: int, body: bytes, count: int, host: str = "127.0.0.1"
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    await _reply(reader)
    writer.write(b"EHLO bench.example\r\n")
    await _reply(reader)
    sent = 0
    for _ in range(count):
        writer.write(
            b"MAIL FROM:<load@remote.example>\r\nRCPT TO:<"
            + RECIPIENT.encode()
            + b">\r\n"
        )
        await _reply(reader)
        await _reply(reader)
        writer.write(b"DATA\r\n")
        if not (await _reply(reader)).startswith("354"):
            raise RuntimeError("DATA refused")
        writer.write(body + b".\r\n")
        if (await _reply(reader)).startswith("250"):
            sent += 1
    writer.write(b"QUIT\r\n")
    await _reply(reader)
    writer.close()
    return sent


def message(size: int) -> bytes:
    """A message of about C{size} bytes, CRLF lines of 76 characters."""
    header = (
        b"From: load@remote.example\r\nTo: bob@example.org\r\nSubject: bench\r\n\r\n"
    )
    line = b"x" * 76 + b"\r\n"
    return header + line * max(1, (size - len(header)) // len(line))


async def smtpLoad(port: int, size: int, total: int) -> tuple[float, int]:
    body = message(size)
    per = total // CONNECTIONS
    start = time.perf_counter()
    sent = await asyncio.gather(
        *[_smtpClient(port, body, per) for _ in range(CONNECTIONS)]
    )
    elapsed = time.perf_counter() - start
    return sum(sent) / elapsed, sum(sent)


async def pop3Retrieve(port: int, user: str, password: str) -> tuple[float, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
    await reader.readline()
    for command in (f"USER {user}", f"PASS {password}", "STAT"):
        writer.write(command.encode() + b"\r\n")
        line = (await reader.readline()).decode()
        if not line.startswith("+OK"):
            raise RuntimeError(line)
    count = int(line.split()[1])
    start = time.perf_counter()
    total = 0
    for n in range(1, count + 1):
        writer.write(b"RETR %d\r\n" % n)
        await reader.readline()
        data = await reader.readuntil(b"\r\n.\r\n")
        total += len(data)
    elapsed = time.perf_counter() - start
    writer.write(b"QUIT\r\n")
    await reader.readline()
    writer.close()
    return total / elapsed / 1e6, count


#: twistd's log observer for appnet: its buffered one, which writes the
#: line per message a batch at a time (see README.rst).
LOGGER = ["--logger=appnet.logs.buffered"]


def startAppnet(data: str) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    os.makedirs(data, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "appnet", "--data", data, "user", "add", RECIPIENT,
         "--password-stdin"],
        input=b"bench-password\n",
        check=True,
        capture_output=True,
        cwd=ROOT,
    )  # fmt: skip
    args = ["--data", data, "--dns", "127.0.0.1:0"]
    for name in ("http", "ftp", "smtp", "submission", "pop3", "imap"):
        args += [f"--{name}", "tcp:0:interface=127.0.0.1"]
    # Its log goes to a file, as a daemon's would: a pipe read by this
    # process would wake a thread of the load generator for every line.
    log = open(data + ".log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", *LOGGER, "appnet", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=data,
    )  # fmt: skip
    log.close()
    ports: dict[str, int] = {}
    deadline = time.monotonic() + 60
    with open(data + ".log", "rb") as output:
        pending = b""
        while True:
            raw = output.readline()
            if not raw.endswith(b"\n"):
                pending += raw
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("appnet did not start")
                time.sleep(0.05)
                continue
            raw, pending = pending + raw, b""
            found = re.search(rb"(\w+) listening on tcp 127\.0\.0\.1:(\d+)", raw)
            if found:
                ports[found.group(1).decode()] = int(found.group(2))
            if b"appnet ready" in raw:
                break
    return process, ports


def startAiosmtpd(data: str) -> tuple[subprocess.Popen[bytes], int]:
    return _startPeer([sys.executable, "-c", AIOSMTPD_SERVER, data])


def startBare(data: str) -> tuple[subprocess.Popen[bytes], int]:
    """The limit: bare.py, a minimal durable Twisted acceptor."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bare.py")
    return _startPeer([sys.executable, script, data])


def _startPeer(command: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    return process, int(line[1])


def cpuSeconds(pid: int, thread: int | None = None) -> float:
    """
    CPU time (user + system) of a process, or of one of its threads, from
    Linux's /proc; 0 elsewhere.
    """
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        with open(path) as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    options = parser.parse_args()
    scale = 5 if options.quick else 1
    loads = [(1024, 2000 // scale), (100 * 1024, 500 // scale)]
    work = tempfile.mkdtemp(prefix="appnet-bench-")
    rows = [["test", "appnet", "bare Twisted", "aiosmtpd (durable handler)", "ratio"]]
    cpu = [["CPU ms per message", "appnet", "bare Twisted", "aiosmtpd"]]
    try:
        appnet, ports = startAppnet(os.path.join(work, "appnet"))
        bare, barePort = startBare(os.path.join(work, "bare"))
        peer, peerPort = startAiosmtpd(os.path.join(work, "aiosmtpd"))
        try:
            # Each server first takes a few hundred messages untimed, so
            # that the runs measure their steady state, not their start
            # (first deliveries making directories and folders, caches
            # filling, the interpreter specializing its hot code).
            for port in (ports["smtp"], barePort, peerPort):
                asyncio.run(smtpLoad(port, 1024, WARMUP))
            for size, total in loads:
                reactor = cpuSeconds(appnet.pid, appnet.pid)
                process = cpuSeconds(appnet.pid)
                ours, n1 = asyncio.run(smtpLoad(ports["smtp"], size, total))
                reactor = cpuSeconds(appnet.pid, appnet.pid) - reactor
                process = cpuSeconds(appnet.pid) - process
                limit = cpuSeconds(bare.pid)
                bareRate, n3 = asyncio.run(smtpLoad(barePort, size, total))
                limit = cpuSeconds(bare.pid) - limit
                theirs = cpuSeconds(peer.pid)
                rate, n2 = asyncio.run(smtpLoad(peerPort, size, total))
                theirs = cpuSeconds(peer.pid) - theirs
                label = f"SMTP {size // 1024} KiB x {total}, {CONNECTIONS} conns"
                rows.append(
                    [
                        label,
                        f"{ours:.0f} msg/s",
                        f"{bareRate:.0f} msg/s",
                        f"{rate:.0f} msg/s",
                        f"{ours / rate:.2f}",
                    ]
                )
                assert n1 == n2 == n3 == total // CONNECTIONS * CONNECTIONS, (n1, n2)
                short = f"{size // 1024} KiB"
                cpu.append(
                    [f"{short}: reactor thread", f"{1000 * reactor / n1:.2f}", "-", "-"]
                )
                cpu.append(
                    [
                        f"{short}: whole process",
                        f"{1000 * process / n1:.2f}",
                        f"{1000 * limit / n3:.2f}",
                        f"{1000 * theirs / n2:.2f}",
                    ]
                )
        finally:
            stopProcess(peer)
            stopProcess(bare)
            stopProcess(appnet)
        # POP3: a fresh maildrop of 1 MiB messages.
        pop3Data = os.path.join(work, "pop3")
        appnet, ports = startAppnet(pop3Data)
        try:
            count = 100 // scale
            asyncio.run(smtpLoad(ports["smtp"], 1024 * 1024, count))
            rate, retrieved = asyncio.run(
                pop3Retrieve(ports["pop3"], RECIPIENT, "bench-password")
            )
            rows.append(
                [
                    f"POP3 RETR {retrieved} x 1 MiB, 1 conn",
                    f"{rate:.0f} MB/s",
                    "-",
                    "-",
                    "",
                ]
            )
        finally:
            stopProcess(appnet)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    if len(cpu) > 1 and os.path.isdir("/proc/self/task"):
        print()
        print(table(cpu))


if __name__ == "__main__":
    main()
