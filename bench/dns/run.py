"""
DNS answers per second: appnet against stock C{twistd dns} and Unbound,
same zone, same load generator, in one run.

Two workloads:

  - authoritative: names in a zone every server loads from the same file;
  - cache hits: names of another zone, served by an upstream on
    127.0.0.20:53; appnet forwards there (C{--dns-forward}), stock
    C{twistd dns} recurses there with its cache on (C{-c --resolv-conf},
    which only knows port 53, hence that address; binding it needs root,
    and the row is skipped otherwise), Unbound forwards there.

Rows: the bare Twisted floor (bench/dns/bare.py: pre-encoded answers),
stock twistd dns, appnet with one worker and with two, and Unbound with
one and two threads (an auth-zone from the same file, or forwarding to
the same upstream). appnet runs with its rate limit off (C{[dns]
rate_limit = 0}: one client at 100k queries/s is what it exists to stop;
neither twistd dns nor Unbound limits by default) and no query log.

Method: the servers of a workload are all started (each its own process,
started and stopped by PID; idle, they cost nothing), each is sent a
1-second warm-up (filling every cache, so the cache-hit rows are all
hits), then measured one at a time in C{--rounds} rounds of
C{seconds / rounds} each, the order rotated every round, so a change in
the machine's load falls on every server alike. A row shows the median
of its rounds (and their range); a ratio is the median of the per-round
ratios. The server's CPU time per answer (its processes' user and system
time over the rounds, from /proc) is shown too: unlike answers/s it
barely moves with other work on the machine. p50/p99 come from a
separate 1-second C{dnsperf -v} pass at the same load. The load
generator (dnsperf if installed, else bench/dns/loadgen.py) is a process
of its own::

    python bench/dns/run.py [--seconds 10] [--rounds 5] [--loadgen dnsperf|twisted]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
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
#: The ratios printed under the table: (row, row it is compared with).
RATIOS = {
    workload: [
        ("appnet" + extra, "twistd dns" + tail),
        ("appnet" + extra, "Unbound 1 thread"),
        ("appnet" + extra + " --workers 2", "Unbound 2 threads"),
        ("appnet" + extra, "bare Twisted UDP (pre-encoded)"),
    ]
    for workload, extra, tail in (
        ("authoritative", "", " (Twisted 26.10)"),
        ("cache hits", " --dns-forward", " -c (Twisted 26.10)"),
    )
}


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


def cpuSeconds(pid: int) -> float:
    """
    CPU time (user and system) of a process and all its descendants so
    far, from /proc (Linux); 0 elsewhere.
    """
    ticks: dict[int, int] = {}
    parents: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return 0.0
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(name)] = int(fields[1])
        ticks[int(name)] = int(fields[11]) + int(fields[12])
    tree = {pid}
    grew = True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        grew = bool(more)
        tree |= more
    return sum(ticks.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def measure(
    tool: str, port: int, file: str, seconds: float, pid: int | None = None
) -> dict[str, str]:
    """
    One load-generator run; with C{pid}, also the CPU seconds the server
    (that process and its children) used meanwhile.
    """
    command = loadCommand(tool, port, file, seconds)
    before = cpuSeconds(pid) if pid is not None else 0.0
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = {}
    if pid is not None:
        found["cpu"] = str(cpuSeconds(pid) - before)
    for key, pattern in (
        ("completed", r"Queries completed:\s+(\d+)"),
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
    return found


def percentiles(tool: str, port: int, file: str) -> tuple[str, str]:
    """
    p50 and p99 latency in ms, from a separate 1-second pass at the same
    load with dnsperf -v (one line per answer with its latency).
    """
    if tool != "dnsperf":
        return "?", "?"
    command = loadCommand(tool, port, file, 1) + ["-v"]
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
    parser.add_argument(
        "--seconds", type=float, default=10, help="measured seconds per server"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--loadgen",
        choices=["dnsperf", "twisted"],
        default="dnsperf" if shutil.which("dnsperf") else "twisted",
    )
    args = parser.parse_args()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    sys.path.insert(0, ROOT)
    work = tempfile.mkdtemp(prefix="appnet-bench-dns-")
    for name in ("bench.test", "upstream.test"):
        with open(os.path.join(work, f"{name}.zone"), "w") as f:
            f.write(zone(name))
        with open(os.path.join(work, f"{name}.queries"), "w") as f:
            f.write(queries(name))
    rows: list[tuple[str, str, dict[str, Any]]] = []
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
        workload: str, entries: list[tuple[str, Any]], name: str, file: str
    ) -> None:
        """Start every server of a workload, measure them in rounds, stop them."""
        started: list[tuple[str, Server, int]] = []
        try:
            for label, start in entries:
                port = freePort(udp=True)
                while port in [p for _, _, p in started]:
                    port = freePort(udp=True)
                server = Server(
                    label, start(port), work, os.path.join(work, f"{port}.log")
                )
                servers.append(server)
                started.append((label, server, port))
            for _, server, port in started:
                server.wait("127.0.0.1", port, name)
            for _, _, port in started:
                measure(args.loadgen, port, file, 1)
            results: dict[str, list[dict[str, str]]] = {
                label: [] for label, _, _ in started
            }
            for round in range(args.rounds):
                shift = round % len(started)
                for label, server, port in started[shift:] + started[:shift]:
                    results[label].append(
                        measure(
                            args.loadgen,
                            port,
                            file,
                            args.seconds / args.rounds,
                            server.process.pid,
                        )
                    )
            for label, _, port in started:
                found = results[label]
                qps = [float(r["qps"]) for r in found]
                p50, p99 = percentiles(args.loadgen, port, file)
                answered = sum(int(r["completed"]) for r in found)
                cpu = sum(float(r["cpu"]) for r in found)
                row = {
                    "qps": statistics.median(qps),
                    "cpu": f"{cpu / answered * 1e6:.1f}" if answered and cpu else "?",
                    "rounds": qps,
                    "p50": p50,
                    "p99": p99,
                    "lost": sum(int(r["lost"]) for r in found if r["lost"] != "?"),
                    "codes": found[-1]["codes"],
                    "command": found[-1]["command"],
                }
                rows.append((label, workload, row))
                print(
                    f"{label:34} {workload:14} {row['qps']:10.0f} answers/s "
                    f"(rounds: {' '.join(f'{q:.0f}' for q in qps)})",
                    flush=True,
                )
        finally:
            for _, server, _ in started:
                server.stop()
                servers.remove(server)

    zoneFile = os.path.join(work, "bench.test.zone")
    authQueries = os.path.join(work, "bench.test.queries")
    cacheQueries = os.path.join(work, "upstream.test.queries")
    forward = ["--dns-forward", f"{UPSTREAM[0]}:{UPSTREAM[1]}"]
    workers = ["--workers", "2"]

    def twistdAuth(port: int) -> list[str]:
        return [*TWISTD, "-n", "--pidfile=", "dns", "--bindzone", zoneFile]

    # (label, how to start it on a port)
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
        run("authoritative", auth, "host1.bench.test", authQueries)
        if answers(UPSTREAM[0], UPSTREAM[1], "host1.upstream.test"):
            # Waiting for ours would hear that one instead.
            raise SystemExit(f"something already answers on {UPSTREAM[0]}:53")
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
            run("cache hits", cache, "host1.upstream.test", cacheQueries)
    finally:
        for server in list(servers):
            server.stop()

    print()
    print(
        f"Load generator: {args.loadgen}, {args.rounds} rounds of "
        f"{args.seconds / args.rounds:g} s per server, 100 queries outstanding, "
        f"UDP, 127.0.0.1; CPUs: {os.cpu_count()}; load average before: {load}"
    )
    print()
    width = max(len(label) for label, _, _ in rows)
    rule = (
        f"{'=' * width}  ==============  ==========  ===============  "
        "======  ======  ======  ====="
    )
    print(rule)
    heading = f"{'server':{width}}  {'workload':14}  {'answers/s':>10}"
    print(
        f"{heading}  {'rounds min-max':15}  {'CPU us':>6}  {'p50 ms':>6}  "
        f"{'p99 ms':>6}  lost"
    )
    print(rule)
    for label, workload, result in rows:
        spread = f"{min(result['rounds']):.0f}-{max(result['rounds']):.0f}"
        print(
            f"{label:{width}}  {workload:14}  {result['qps']:10.0f}  "
            f"{spread:15}  {result['cpu']:>6}  {result['p50']:>6}  "
            f"{result['p99']:>6}  {result['lost']}"
        )
    print(rule)
    print(
        "CPU us: the server's processor time (user and system, all its "
        "processes) per answer, over the measured rounds."
    )
    print()
    found = {(label, workload): result["rounds"] for label, workload, result in rows}
    for workload in ("authoritative", "cache hits"):
        for mine, theirs in RATIOS[workload]:
            if (mine, workload) in found and (theirs, workload) in found:
                per = [
                    a / b
                    for a, b in zip(
                        found[(mine, workload)], found[(theirs, workload)], strict=True
                    )
                ]
                print(
                    f"{workload}: {mine} / {theirs}: {statistics.median(per):.2f}"
                    f"  (rounds {min(per):.2f}-{max(per):.2f})"
                )
    print()
    for label, workload, result in rows:
        print(f"{label}, {workload}: {result['command']}  ({result['codes']})")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
