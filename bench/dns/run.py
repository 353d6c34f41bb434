"""
DNS answers per second: appnet against stock C{twistd dns}, same zone,
same load generator, in one run.

Two workloads:

  - authoritative: names in a zone both servers load from the same file;
  - cache hits: names of another zone, served by an upstream on
    127.0.0.20:53; appnet forwards there (C{--dns-forward}), stock
    C{twistd dns} recurses there with its cache on (C{-c --resolv-conf},
    which only knows port 53, hence that address; binding it needs root,
    and the row is skipped otherwise). A warm-up pass fills the caches, so
    the measured pass is all cache hits.

Rows: the bare Twisted floor (bench/dns/bare.py: pre-encoded answers),
stock twistd dns, appnet with one worker and with two, and Unbound with
one and two threads (an auth-zone from the same file, or forwarding to
the same upstream). p50/p99 come from a separate 3-second ``dnsperf -v``
pass at the same load.

Each server is its own process, started and stopped by PID; the load
generator (dnsperf if installed, else bench/dns/loadgen.py) is another.
Servers are measured one at a time so they do not share the CPU::

    python bench/dns/run.py [--seconds 10] [--loadgen dnsperf|twisted]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import freePort  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
UPSTREAM = ("127.0.0.20", 53)
HOSTS = 200


def zone(origin: str) -> str:
    """A zone both servers parse: absolute names, explicit TTLs."""
    lines = [
        f"$ORIGIN {origin}.",
        "$TTL 3600",
        f"@ IN SOA ns.{origin}. hostmaster.{origin}. 1 3600 900 604800 300",
        f"@ IN NS ns.{origin}.",
        f"@ IN MX 10 mx.{origin}.",
        "ns IN A 127.0.0.1",
        "mx IN A 192.0.2.25",
    ]
    lines += [f"host{i} IN A 192.0.2.{i % 250 + 1}" for i in range(HOSTS)]
    return "\n".join(lines) + "\n"


def queries(origin: str) -> str:
    lines = [f"host{i}.{origin} A" for i in range(HOSTS)]
    lines += [f"{origin} MX"] * 20
    return "\n".join(lines) + "\n"


def answers(host: str, port: int, name: str) -> bool:
    """Does a server at C{host:port} answer a query for C{name} (A)?"""
    query = (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
        + b"\x00\x00\x01\x00\x01"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        try:
            s.sendto(query, (host, port))
            return s.recv(4096)[:2] == b"\x12\x34"
        except OSError:
            return False


class Server:
    """A server process, started and stopped by PID."""

    def __init__(self, name: str, args: Sequence[str], cwd: str, log: str) -> None:
        self.name = name
        self.args = list(args)
        self.log = open(log, "w")
        self.process = subprocess.Popen(
            self.args, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait(self, host: str, port: int, name: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited; see {self.log.name}")
            if answers(host, port, name):
                return
            time.sleep(0.1)
        raise SystemExit(f"{self.name} did not answer; see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def loadCommand(tool: str, port: int, file: str, seconds: float) -> list[str]:
    if tool == "dnsperf":
        return [
            "dnsperf",
            "-s",
            "127.0.0.1",
            "-p",
            str(port),
            "-d",
            file,
            "-l",
            str(seconds),
            "-q",
            "100",
            # Four source ports, so servers that spread queries over
            # threads or processes by source address (SO_REUSEPORT) can.
            "-c",
            "4",
        ]
    return [
        sys.executable,
        os.path.join(HERE, "loadgen.py"),
        "-s",
        "127.0.0.1",
        "-p",
        str(port),
        "-d",
        file,
        "-l",
        str(seconds),
        "-q",
        "100",
    ]


def measure(tool: str, port: int, file: str, seconds: float) -> dict[str, str]:
    command = loadCommand(tool, port, file, seconds)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = {}
    for key, pattern in (
        ("qps", r"Queries per second:\s+([\d.]+)"),
        ("latency", r"Average Latency \(s\):\s+([\d.]+)"),
        ("lost", r"Queries lost:\s+(\d+)"),
        ("codes", r"Response codes:\s+(.*)"),
    ):
        m = re.search(pattern, out)
        found[key] = m.group(1).strip() if m else "?"
    found["command"] = " ".join(
        os.path.basename(c) if c == file else c for c in command
    )
    found["p50"], found["p99"] = percentiles(tool, port, file)
    return found


def percentiles(tool: str, port: int, file: str) -> tuple[str, str]:
    """
    p50 and p99 latency in ms, from a separate 3-second pass at the same
    load with dnsperf -v (one line per answer with its latency).
    """
    if tool != "dnsperf":
        return "?", "?"
    command = loadCommand(tool, port, file, 3) + ["-v"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    times = sorted(
        float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if line[:2] == "> "
    )
    if not times:
        return "?", "?"
    return (
        f"{times[len(times) // 2] * 1000:.2f}",
        f"{times[min(len(times) - 1, len(times) * 99 // 100)] * 1000:.2f}",
    )


def unboundArgs(
    work: str, name: str, port: int, threads: int, zone: str | None
) -> list[str]:
    """
    Unbound with C{threads} threads on 127.0.0.1:C{port}: authoritative for
    C{zone} (an auth-zone from the same file), else forwarding to the
    upstream with its cache.
    """
    directory = os.path.join(work, name)
    os.makedirs(directory, exist_ok=True)
    config = os.path.join(directory, "unbound.conf")
    if zone is not None:
        tail = (
            'auth-zone:\n  name: "bench.test."\n'
            f'  zonefile: "{zone}"\n  for-downstream: yes\n  for-upstream: no\n'
        )
    else:
        tail = (
            'forward-zone:\n  name: "upstream.test."\n'
            f"  forward-addr: {UPSTREAM[0]}@{UPSTREAM[1]}\n"
        )
    with open(config, "w") as f:
        f.write(
            f"""server:
  interface: 127.0.0.1@{port}
  port: {port}
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{directory}"
  pidfile: "{directory}/unbound.pid"
  use-syslog: no
  logfile: "{directory}/unbound.log"
  verbosity: 0
  num-threads: {threads}
  so-reuseport: yes
  do-ip6: no
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  domain-insecure: "upstream.test."
  local-zone: "test." nodefault
  module-config: "iterator"
remote-control:
  control-enable: no
{tail}"""
        )
    unbound = shutil.which("unbound") or "/usr/sbin/unbound"
    return [unbound, "-d", "-c", config]


def appnetArgs(data: str, port: int, *extra: str, host: str = "127.0.0.1") -> list[str]:
    from appnet.config import SERVICES

    args = [
        *TWISTD,
        "-n",
        "--pidfile=",
        "appnet",
        "--data",
        data,
        "--dns",
        f"{host}:{port}",
        "--config",
        os.path.join(data, "bench.toml"),
    ]
    for service in SERVICES:
        if service != "dns":
            args += ["--disable", service]
    return args + list(extra)


def main() -> None:
    parser = argparse.ArgumentParser(description="appnet vs twistd dns")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--loadgen",
        choices=["dnsperf", "twisted"],
        default="dnsperf" if shutil.which("dnsperf") else "twisted",
    )
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    work = tempfile.mkdtemp(prefix="appnet-bench-dns-")
    for name in ("bench.test", "upstream.test"):
        with open(os.path.join(work, f"{name}.zone"), "w") as f:
            f.write(zone(name))
        with open(os.path.join(work, f"{name}.queries"), "w") as f:
            f.write(queries(name))
    rows: list[tuple[str, str, dict[str, str]]] = []
    servers: list[Server] = []

    def appnetData(name: str, zoneName: str | None) -> str:
        data = os.path.join(work, name)
        os.makedirs(os.path.join(data, "zones"))
        if zoneName:
            shutil.copy(
                os.path.join(work, f"{zoneName}.zone"), os.path.join(data, "zones")
            )
        with open(os.path.join(data, "bench.toml"), "w") as f:
            f.write("[dns]\nrate_limit = 0\n")
        return data

    def run(
        label: str,
        workload: str,
        server: Server,
        port: int,
        name: str,
        file: str,
        warm: bool,
    ) -> None:
        servers.append(server)
        try:
            server.wait("127.0.0.1", port, name)
            if warm:
                measure(args.loadgen, port, file, 2)
            result = measure(args.loadgen, port, file, args.seconds)
            rows.append((label, workload, result))
            print(
                f"{label:30} {workload:14} {float(result['qps']):10.0f} answers/s",
                flush=True,
            )
        finally:
            server.stop()
            servers.remove(server)

    zoneFile = os.path.join(work, "bench.test.zone")
    authQueries = os.path.join(work, "bench.test.queries")
    cacheQueries = os.path.join(work, "upstream.test.queries")
    forward = ["--dns-forward", f"{UPSTREAM[0]}:{UPSTREAM[1]}"]
    workers = ["--workers", "2"]

    def twistdAuth(port: int) -> list[str]:
        return [*TWISTD, "-n", "--pidfile=", "dns", "--bindzone", zoneFile]

    # (label, workload, how to start it on a port, warm the cache first)
    auth: list[tuple[str, Any]] = [
        (
            "bare Twisted UDP (pre-encoded)",
            lambda port: [
                sys.executable,
                os.path.join(HERE, "bare.py"),
                zoneFile,
                str(port),
            ],
        ),
        (
            "twistd dns (Twisted 26.10)",
            lambda port: twistdAuth(port) + ["-p", str(port), "-i", "127.0.0.1"],
        ),
        (
            "appnet",
            lambda port: appnetArgs(appnetData(f"auth{port}", "bench.test"), port),
        ),
        (
            "appnet --workers 2",
            lambda port: appnetArgs(
                appnetData(f"auth{port}", "bench.test"), port, *workers
            ),
        ),
    ]
    cache: list[tuple[str, Any]] = [
        (
            "twistd dns -c (Twisted 26.10)",
            lambda port: [
                *TWISTD,
                "-n",
                "--pidfile=",
                "dns",
                "-c",
                "--resolv-conf",
                os.path.join(work, "resolv.conf"),
                "-p",
                str(port),
                "-i",
                "127.0.0.1",
            ],
        ),
        (
            "appnet --dns-forward",
            lambda port: appnetArgs(appnetData(f"cache{port}", None), port, *forward),
        ),
        (
            "appnet --dns-forward --workers 2",
            lambda port: appnetArgs(
                appnetData(f"cache{port}", None), port, *forward, *workers
            ),
        ),
    ]
    if shutil.which("unbound") or os.path.exists("/usr/sbin/unbound"):
        for threads in (1, 2):
            auth.append(
                (
                    f"Unbound {threads} thread{'s' if threads > 1 else ''}",
                    lambda port, t=threads: unboundArgs(
                        work, f"unbound-auth-{port}", port, t, zoneFile
                    ),
                )
            )
            cache.append(
                (
                    f"Unbound {threads} thread{'s' if threads > 1 else ''}",
                    lambda port, t=threads: unboundArgs(
                        work, f"unbound-cache-{port}", port, t, None
                    ),
                )
            )
    try:
        for label, start in auth:
            port = freePort(udp=True)
            run(
                label,
                "authoritative",
                Server(label, start(port), work, os.path.join(work, f"{port}.log")),
                port,
                "host1.bench.test",
                authQueries,
                False,
            )
        upstream = Server(
            "upstream",
            appnetArgs(
                appnetData("upstream", "upstream.test"), UPSTREAM[1], host=UPSTREAM[0]
            ),
            work,
            os.path.join(work, "upstream.log"),
        )
        servers.append(upstream)
        try:
            upstream.wait(UPSTREAM[0], UPSTREAM[1], "host1.upstream.test")
            upstreamOK = True
        except SystemExit as e:
            print(f"no upstream on {UPSTREAM[0]}:53 ({e}); skipping cache rows")
            upstreamOK = False
        if upstreamOK:
            with open(os.path.join(work, "resolv.conf"), "w") as f:
                f.write(f"nameserver {UPSTREAM[0]}\n")
            for label, start in cache:
                port = freePort(udp=True)
                run(
                    label,
                    "cache hits",
                    Server(label, start(port), work, os.path.join(work, f"{port}.log")),
                    port,
                    "host1.upstream.test",
                    cacheQueries,
                    True,
                )
    finally:
        for server in list(servers):
            server.stop()

    print()
    print(
        f"Load generator: {args.loadgen}, {args.seconds:g} s per run, 100 queries"
        " outstanding, UDP, 127.0.0.1; CPUs: " + str(os.cpu_count())
    )
    print()
    width = max(len(label) for label, _, _ in rows)
    rule = f"{'=' * width}  ==============  ==========  ========  ========  ====="
    print(rule)
    heading = f"{'server':{width}}  {'workload':14}  {'answers/s':>10}"
    print(f"{heading}  {'p50 ms':>8}  {'p99 ms':>8}  lost")
    print(rule)
    for label, workload, result in rows:
        print(
            f"{label:{width}}  {workload:14}  {float(result['qps']):10.0f}  "
            f"{result['p50']:>8}  {result['p99']:>8}  {result['lost']}"
        )
    print(rule)
    print()
    for label, workload, result in rows:
        print(f"{label}, {workload}: {result['command']}  ({result['codes']})")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
