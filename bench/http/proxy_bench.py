"""
Cache benchmark: appnet's reverse proxy beside nginx ``proxy_cache`` and
Varnish, in front of the same origin (``proxy_origin.py``), in one run.

- cache-hit requests/s: ``wrk`` (one thread, 32 keep-alive connections,
  10 s by default) on one URL the cache holds (``max-age=3600``, 1 KiB);
- coalescing: 100 concurrent requests for one uncached URL whose origin
  answer takes 0.5 s; the row gives how many requests reached the origin
  (1 is perfect coalescing) and the wall time.

nginx runs one process (``master_process off``) with ``proxy_cache_lock
on`` (its coalescing; off by default) and keep-alive to the origin;
Varnish runs with its defaults (a thread pool: it can use both cores).
Each measurement is repeated for several rounds (2 by default),
alternating between the caches; the medians are printed. Run from the
repository root::

    .venv/bin/python bench/http/proxy_bench.py [--duration 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import quote

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import freePort, stopProcess, table, waitForPort  # noqa: E402
from proxy_compare import startAppnet, startOrigin, startVarnish  # noqa: E402

HIT = "/hit?id=hit&b=" + "x" * 1024 + "&h=" + quote("Cache-Control:max-age=3600")

NGINX = """\
daemon off;
master_process off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-tmp/body;
    proxy_temp_path {work}/nginx-tmp/proxy;
    fastcgi_temp_path {work}/nginx-tmp/fastcgi;
    uwsgi_temp_path {work}/nginx-tmp/uwsgi;
    scgi_temp_path {work}/nginx-tmp/scgi;
    proxy_cache_path {work}/nginx-cache levels=1:2 keys_zone=c:10m max_size=100m;
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache c;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 30s;
        }}
    }}
}}
"""


def startNginx(work: str, origin: int) -> tuple[subprocess.Popen[bytes], int]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin"
    nginx = shutil.which("nginx", path=path)
    if nginx is None:
        raise SystemExit("nginx is not installed")
    os.makedirs(os.path.join(work, "nginx-tmp"), exist_ok=True)
    port = freePort()
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX.format(work=work, origin=origin, port=port))
    process = subprocess.Popen(
        [nginx, "-p", work, "-c", conf, "-e", "stderr"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    waitForPort(port, process)
    return process, port


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"Host": "cache.test"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def hits(origin: int, ident: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", origin, timeout=10)
    try:
        conn.request("GET", "/_hits?id=" + quote(ident))
        result: int = json.loads(conn.getresponse().read())["hits"]
        return result
    finally:
        conn.close()


def hitRate(port: int, duration: int, connections: int) -> float:
    url = f"http://127.0.0.1:{port}{HIT}"
    get(port, HIT)
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "-H",
            "Host: cache.test",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None:
        raise RuntimeError(out)
    return float(m.group(1))


def coalesce(port: int, origin: int, ident: str, count: int = 100) -> tuple[int, float]:
    path = f"/coalesce?id={quote(ident)}&slow=0.5&h=" + quote(
        "Cache-Control:max-age=3600"
    )
    statuses: list[int] = []
    barrier = threading.Barrier(count)

    def one() -> None:
        barrier.wait()
        statuses.append(get(port, path))

    threads = [threading.Thread(target=one) for _ in range(count)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    if statuses.count(200) != count:
        raise RuntimeError(f"statuses: {sorted(set(statuses))}")
    return hits(origin, ident), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="appnet-proxy-bench-")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        origin, originPort = startOrigin()
        processes.append(origin)
        caches: dict[str, int] = {}
        for name, start in [
            ("appnet", startAppnet),
            ("nginx", startNginx),
            ("varnish", startVarnish),
        ]:
            process, port = start(work, originPort)
            processes.append(process)
            caches[name] = port
        rates: dict[str, list[float]] = {n: [] for n in caches}
        fetches: dict[str, list[int]] = {n: [] for n in caches}
        times: dict[str, list[float]] = {n: [] for n in caches}
        for r in range(args.rounds):
            for name, port in caches.items():
                rates[name].append(hitRate(port, args.duration, args.connections))
                n, elapsed = coalesce(port, originPort, f"{name}-{r}")
                fetches[name].append(n)
                times[name].append(elapsed)
        rows = [
            [
                "cache",
                "hit req/s (median)",
                "per round",
                "100 misses: origin fetches",
                "wall s",
            ]
        ]
        for name in caches:
            rows.append(
                [
                    name,
                    f"{statistics.median(rates[name]):.0f}",
                    " / ".join(f"{x:.0f}" for x in rates[name]),
                    " / ".join(str(x) for x in fetches[name]),
                    " / ".join(f"{x:.2f}" for x in times[name]),
                ]
            )
        print(table(rows))
    finally:
        for process in reversed(processes):
            stopProcess(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
