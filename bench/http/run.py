"""
HTTP benchmark: appnet's web server beside stock ``twistd web`` and nginx,
serving the same files from the same directory, in one run.

- requests/s for a 1 KiB file, with p50/p99 latency: ``wrk --latency``
  (keep-alive, one thread, 32 connections, 10 s per server and round by
  default);
- MB/s for a 100 MiB file: ``curl`` downloading it to /dev/null, three
  times a round (the median; one download is the noisiest figure on a
  shared machine).

Rows: the bare Twisted floor (bench/http/bare.py: one pre-built response
per request, the large file read 1 MiB at a time into the transport),
appnet with one and two workers, stock twistd web, nginx with one and two
workers (``--only NAME`` picks some). All run at once;
the measurements alternate between them for several rounds (3 by
default) and the medians are printed.

Every server writes a combined-format access log to a file (the same work
for all three), listens on loopback only, and is started and stopped by
its PID. nginx runs one worker process, like the single-reactor Python
servers. Run from the repository root::

    .venv/bin/python bench/http/run.py [--duration 10] [--connections 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import TWISTD, freePort, stopProcess, table, waitForPort  # noqa: E402

SMALL = "1k.bin"
LARGE = "100m.bin"


def startAppnet(
    work: str, www: str, port: int, workers: int = 1
) -> subprocess.Popen[bytes]:
    config = os.path.join(work, f"appnet-{port}.toml")
    with open(config, "w") as f:
        f.write(
            f"""
[http]
listen = ["tcp:{port}:interface=127.0.0.1"]
root = "{www}"
access_log = "{work}/appnet-access-{port}.log"
[stack]
workers = {workers}
[smtp]
enabled = false
[submission]
enabled = false
[pop3]
enabled = false
[imap]
enabled = false
[ftp]
enabled = false
[dns]
enabled = false
"""
        )
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            TWISTD,
            "-n",
            "--pidfile=",
            "--logfile",
            os.path.join(work, f"appnet-{port}.log"),
            "appnet",
            "--config",
            config,
            "--data",
            os.path.join(work, f"appnet-data-{port}"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def startTwistdWeb(work: str, www: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            TWISTD,
            "-n",
            "--pidfile=",
            "--logfile",
            os.path.join(work, "twistd.log"),
            "web",
            "--path",
            www,
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--logfile",
            os.path.join(work, "twistd-access.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def startBare(work: str, www: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "bare.py"),
            os.path.join(www, SMALL),
            str(port),
            os.path.join(www, LARGE),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def startNginx(
    work: str, www: str, port: int, workers: int = 1
) -> subprocess.Popen[bytes]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix = os.path.join(work, f"nginx-{port}")
    os.makedirs(prefix, exist_ok=True)
    config = os.path.join(prefix, "nginx.conf")
    with open(config, "w") as f:
        f.write(
            f"""
daemon off;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log combined;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    sendfile on;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {www};
    }}
}}
"""
        )
    return subprocess.Popen(
        [nginx, "-c", config, "-p", prefix],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wrk(port: int, duration: int, connections: int) -> tuple[float, float, float]:
    """Requests/s, and p50 and p99 latency in ms (wrk --latency)."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            f"http://127.0.0.1:{port}/{SMALL}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = p50 = p99 = None
    for line in out.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            rps = float(words[1])
        elif words[:1] == ["50%"]:
            p50 = _ms(words[1])
        elif words[:1] == ["99%"]:
            p99 = _ms(words[1])
    if rps is None or p50 is None or p99 is None:
        raise RuntimeError(f"no Requests/sec or latency in wrk output:\n{out}")
    return rps, p50, p99


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(text)


def download(port: int, runs: int = 3) -> float:
    speeds = []
    for _ in range(runs):
        out = subprocess.run(
            [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{speed_download} %{size_download}",
                f"http://127.0.0.1:{port}/{LARGE}",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        if int(float(out[1])) != 100 * 1024 * 1024:
            raise RuntimeError(f"short download: {out[1]} bytes")
        speeds.append(float(out[0]) / 1e6)
    return statistics.median(speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=int, default=10, help="wrk seconds per server"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", action="append", help="measure only this server (repeatable)"
    )
    parser.add_argument(
        "--large-only",
        action="store_true",
        help="only the 100 MiB downloads (no wrk runs), for quick checks",
    )
    args = parser.parse_args()
    for tool in ("wrk", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/http: {tool} is not installed")
    work = tempfile.mkdtemp(prefix="appnet-bench-http-")
    # nginx's worker may run as another user (nobody, when started as root).
    os.chmod(work, 0o755)
    www = os.path.join(work, "www")
    os.makedirs(www)
    with open(os.path.join(www, SMALL), "wb") as f:
        f.write(os.urandom(1024))
    with open(os.path.join(www, LARGE), "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1024 * 1024))
    servers: list[tuple[str, Callable[[str, str, int], subprocess.Popen[bytes]]]] = [
        ("bare Twisted TCP", startBare),
        ("appnet", startAppnet),
        ("appnet --workers 2", lambda w, d, p: startAppnet(w, d, p, 2)),
        ("twistd web", startTwistdWeb),
    ]
    if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"):
        servers.append(("nginx (1 worker)", startNginx))
        servers.append(("nginx (2 workers)", lambda w, d, p: startNginx(w, d, p, 2)))
    if args.only:
        servers = [s for s in servers if s[0] in args.only]
    running: list[tuple[str, int, subprocess.Popen[bytes]]] = []
    rps: dict[str, list[tuple[float, float, float]]] = {}
    mbps: dict[str, list[float]] = {}
    try:
        for name, start in servers:
            port = freePort()
            process = start(work, www, port)
            running.append((name, port, process))
            waitForPort(port, process)
            time.sleep(1)  # every worker up
            if not args.large_only:
                wrk(port, 1, args.connections)  # warm up
        # Rounds alternate between the servers, so a colleague's load on
        # the shared machine falls on all of them alike; medians are shown.
        for round in range(args.rounds):
            for name, port, _ in running:
                rps.setdefault(name, []).append(
                    (0.0, 0.0, 0.0)
                    if args.large_only
                    else wrk(port, args.duration, args.connections)
                )
                mbps.setdefault(name, []).append(download(port, 3))
            print(f"  round {round + 1} of {args.rounds} done", file=sys.stderr)
    finally:
        for _, _, process in running:
            stopProcess(process)
        shutil.rmtree(work, ignore_errors=True)
    rows = [["server", "1 KiB req/s", "p50 ms", "p99 ms", "100 MiB MB/s"]]
    for name, _, _ in running:
        middle = sorted(rps[name])[len(rps[name]) // 2]
        rows.append(
            [
                name,
                f"{middle[0]:.0f}",
                f"{middle[1]:.2f}",
                f"{middle[2]:.2f}",
                f"{statistics.median(mbps[name]):.0f}" if mbps[name][0] else "-",
            ]
        )
    print()
    print(table(rows))
    print(
        f"\nmedians of {args.rounds} alternating rounds: wrk -t1 "
        f"-c{args.connections} -d{args.duration}s (keep-alive); three curl "
        "downloads to /dev/null a round; loopback; access logs to files."
    )


if __name__ == "__main__":
    main()
