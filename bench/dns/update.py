"""
Dynamic update and zone transfer figures, in one run:

  1. Durable UPDATEs per second: appnet (C{twistd appnet}, journal
     fsynced before each NOERROR) against BIND's C{named} as the peer,
     the same zone, key and client (TSIG-signed UPDATEs over TCP, one
     new name each), one at a time and 32 at once.
  2. How long an appnet secondary takes to follow the 10,000 changes
     just made: by IXFR from the serial before them, against by AXFR of
     the whole zone; the transfer and the new zone in place.

Servers are processes started and stopped by PID; the clients and the
secondary run in this process::

    python bench/dns/update.py [--updates 10000] [--names 1000]
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import TWISTD, freePort, stopProcess, table, waitForPort  # noqa: E402
from twisted.internet import defer, task  # noqa: E402
from twisted.names import dns  # noqa: E402

from appnet.config import SecondaryZone  # noqa: E402
from appnet.dns import tsig  # noqa: E402
from appnet.dns.client import update  # noqa: E402
from appnet.dns.secondary import SecondaryCopy  # noqa: E402
from appnet.dns.zones import Authority, loadZone  # noqa: E402

KEY = tsig.Key(b"bench.key", b"hmac-sha256", b"b" * 32)


def zoneText(names: int) -> str:
    lines = [
        "$ORIGIN bench.test.",
        "$TTL 3600",
        "@ IN SOA ns hostmaster 1 3600 900 604800 60",
        "@ IN NS ns",
        "ns IN A 192.0.2.53",
    ]
    lines += [
        f"h{i} IN A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(names)
    ]
    return "\n".join(lines) + "\n"


def startAppnet(directory: str, names: int) -> tuple[subprocess.Popen[bytes], int]:
    data = os.path.join(directory, "appnet")
    os.makedirs(os.path.join(data, "zones"))
    os.makedirs(os.path.join(data, "keys"))
    with open(os.path.join(data, "zones", "bench.test.zone"), "w") as f:
        f.write(zoneText(names))
    with open(os.path.join(data, "keys", "bench.key"), "w") as f:
        f.write(tsig.formatKey(KEY))
    config = os.path.join(directory, "appnet.toml")
    with open(config, "w") as f:
        f.write(
            '[dns]\nupdate = { "bench.test" = ["bench.key"] }\n'
            'transfer_keys = ["bench.key"]\nrate_limit = 0\n'
            "[limits]\nconnections_per_ip = 1000\n"
        )
    port = freePort(udp=True)
    args = [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "appnet"]
    args += ["--data", data, "--config", config, "--dns", f"127.0.0.1:{port}"]
    for name in ("http", "ftp", "smtp", "submission", "pop3", "imap"):
        args += ["--disable", name]
    process = subprocess.Popen(args, cwd=directory, stdout=subprocess.DEVNULL)
    waitForPort(port, process)
    return process, port


def startNamed(
    directory: str, names: int
) -> tuple[subprocess.Popen[bytes], int] | None:
    named = shutil.which("named") or (
        "/usr/sbin/named" if os.path.exists("/usr/sbin/named") else None
    )
    if named is None:
        return None
    base = os.path.join(directory, "named")
    os.makedirs(base)
    with open(os.path.join(base, "bench.test.zone"), "w") as f:
        f.write(zoneText(names))
    port = freePort(udp=True)
    secret = base64.b64encode(KEY.secret).decode()
    config = os.path.join(base, "named.conf")
    with open(config, "w") as f:
        f.write(
            f'options {{ directory "{base}"; pid-file "{base}/named.pid";\n'
            f'  session-keyfile "{base}/session.key";\n'
            f"  listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};\n"
            "  recursion no; dnssec-validation no; notify no; };\n"
            "controls { };\n"
            f'key "bench.key" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'
            f'zone "bench.test" {{ type primary; file "{base}/bench.test.zone";\n'
            "  allow-update { key bench.key; }; };\n"
        )
    process = subprocess.Popen(
        [named, "-g", "-n", "1", "-c", config],
        cwd=base,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    waitForPort(port, process)
    return process, port


async def updates(
    reactor: Any, port: int, first: int, count: int, concurrency: int
) -> float:
    """Send C{count} signed UPDATEs, C{concurrency} at a time; updates/s."""
    queue = iter(range(first, first + count))

    async def worker() -> None:
        for i in queue:
            record = dns.RRHeader(
                f"u{i}.bench.test".encode(),
                dns.A,
                dns.IN,
                300,
                dns.Record_A(f"192.0.{i >> 8 & 255}.{i & 255}"),
            )
            response = await update(
                reactor, ("127.0.0.1", port), b"bench.test", [record], key=KEY
            )
            if response.rcode != dns.OK:
                raise RuntimeError(f"UPDATE answered {response.rcode}")

    started = time.perf_counter()
    await defer.gatherResults(
        [defer.Deferred.fromCoroutine(worker()) for _ in range(concurrency)]
    )
    return count / (time.perf_counter() - started)


async def follow(reactor: Any, port: int, zonePath: str, ixfr: bool) -> float:
    """Seconds for a secondary at serial 1 to reach the primary's serial."""
    copy = SecondaryCopy(
        reactor,
        SecondaryZone("bench.test", (("127.0.0.1", port),), "bench.key"),
        Authority(),
        tsig.Keyring([KEY]),
        None,
        timeout=600,
    )
    if ixfr:
        copy.zone = loadZone(zonePath)
    started = time.perf_counter()
    await copy.refresh()
    elapsed = time.perf_counter() - started
    await copy.stop()
    if copy.kinds != ["IXFR" if ixfr else "AXFR"]:
        raise RuntimeError(f"expected one {'IXFR' if ixfr else 'AXFR'}: {copy.kinds}")
    return elapsed


async def main(reactor: Any, options: argparse.Namespace) -> None:
    directory = tempfile.mkdtemp(prefix="bench-dns-update-")
    rows = [["server", "UPDATEs/s, 1 at a time", "UPDATEs/s, 32 at once"]]
    try:
        appnet, appnetPort = startAppnet(directory, options.names)
        named = startNamed(directory, options.names)
        try:
            servers = [("appnet", appnetPort)]
            if named is not None:
                servers.append(("named (BIND 9, -n 1)", named[1]))
            counts = {}
            for label, port in servers:
                single = await updates(reactor, port, 0, 500, 1)
                many = await updates(reactor, port, 500, options.updates - 500, 32)
                counts[label] = (single, many)
                rows.append([label, f"{single:,.0f}", f"{many:,.0f}"])
            print(table(rows))
            zonePath = os.path.join(directory, "appnet", "zones", "bench.test.zone")
            rows = [["secondary follows", "seconds"]]
            for ixfr in (True, False, True, False):
                seconds = await follow(reactor, appnetPort, zonePath, ixfr)
                rows.append(
                    [
                        f"{options.updates:,} changes by {'IXFR' if ixfr else 'AXFR'}",
                        f"{seconds:.2f}",
                    ]
                )
            print(table(rows))
        finally:
            stopProcess(appnet)
            if named is not None:
                stopProcess(named[0])
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--updates", type=int, default=10000)
    parser.add_argument("--names", type=int, default=1000)
    options = parser.parse_args()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, options)))
