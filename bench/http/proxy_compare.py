"""
appnet's HTTP cache beside Varnish, behaviour by behaviour: the same
origin (``proxy_origin.py``), the same requests through each, and what the
RFC says. Writes the table to ``docs/proxy-conformance.rst`` (``--out``)
and prints it.

Each case is a few requests; what is compared is how often the origin was
asked, a status, or a header. Varnish runs with its built-in VCL and
default parameters (``default_ttl`` 120 s, ``default_grace`` 10 s): that is
what an operator gets out of the box. Run from the repository root::

    .venv/bin/python bench/http/proxy_compare.py [--out docs/proxy-conformance.rst]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import TWISTD, freePort, stopProcess, table, waitForPort  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Step:
    """One request of a case."""

    query: dict[str, object] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    sleep: float = 0.0
    path: str = ""
    fail: bool | None = None


@dataclass
class Case:
    """A behaviour: requests, what to measure, and the RFC's answer."""

    name: str
    section: str
    what: str
    steps: list[Step]
    measure: str
    expect: str


@dataclass
class Result:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def cc(value: str) -> dict[str, object]:
    return {"h": [f"Cache-Control:{value}"]}


def q(**kw: object) -> dict[str, object]:
    return dict(kw)


def merge(*parts: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for part in parts:
        for k, v in part.items():
            if k == "h" and "h" in out:
                out["h"] = list(out["h"]) + list(v)  # type: ignore[arg-type]
            else:
                out[k] = v
    return out


FRESH = cc("max-age=60")
SHORT = cc("max-age=1")

CASES = [
    Case(
        "max-age",
        "4.2.1",
        "max-age=60: a second GET is a hit",
        [Step(FRESH), Step(FRESH)],
        "origin",
        "1",
    ),
    Case(
        "s-maxage",
        "5.2.2.10",
        "s-maxage=60 beats max-age=0",
        [Step(cc("max-age=0, s-maxage=60"))] * 2,
        "origin",
        "1",
    ),
    Case(
        "expires",
        "5.3",
        "Expires 60 s ahead, no max-age",
        [Step(q(exp=60))] * 2,
        "origin",
        "1",
    ),
    Case(
        "expires-past",
        "5.3",
        "Expires in the past: stale at once",
        [Step(q(exp=-60))] * 2,
        "origin",
        "2",
    ),
    Case(
        "expires-invalid",
        "5.3",
        "Expires: 0 (invalid) means expired",
        [Step({"h": ["Expires:0"]})] * 2,
        "origin",
        "2",
    ),
    Case(
        "maxage-over-expires",
        "5.3",
        "max-age=0 overrides a future Expires",
        [Step(merge(cc("max-age=0"), q(exp=60)))] * 2,
        "origin",
        "2",
    ),
    Case(
        "max-age-invalid",
        "4.2.1",
        "max-age=abc is invalid: stale",
        [Step(cc("max-age=abc"))] * 2,
        "origin",
        "2",
    ),
    Case(
        "no-store",
        "5.2.2.5",
        "no-store is never stored",
        [Step(cc("no-store, max-age=60"))] * 2,
        "origin",
        "2",
    ),
    Case(
        "private",
        "5.2.2.7",
        "private: not in a shared cache",
        [Step(cc("private, max-age=60"))] * 2,
        "origin",
        "2",
    ),
    Case(
        "private-field",
        "5.2.2.7",
        'private="Set-Cookie" stores the rest',
        [Step(merge(cc('private="Set-Cookie", max-age=60'), {"h": ["Set-Cookie:a=b"]}))]
        * 2,
        "origin",
        "1",
    ),
    Case(
        "no-cache",
        "5.2.2.4",
        "no-cache: every use is validated",
        [Step(merge(cc("no-cache, max-age=60"), q(etag="v")))] * 2,
        "cond",
        "1",
    ),
    Case(
        "no-cache-field",
        "5.2.2.4",
        'no-cache="Set-Cookie": served without it',
        [
            Step(
                merge(
                    cc('no-cache="Set-Cookie", max-age=60'), {"h": ["Set-Cookie:a=b"]}
                )
            )
        ]
        * 2,
        "hdr:set-cookie",
        "absent",
    ),
    Case(
        "must-understand",
        "5.2.2.3",
        "must-understand overrides no-store (200)",
        [Step(cc("must-understand, no-store, max-age=60"))] * 2,
        "origin",
        "1",
    ),
    Case(
        "set-cookie",
        "3",
        "Set-Cookie with max-age is storable",
        [Step(merge(FRESH, {"h": ["Set-Cookie:a=b"]}))] * 2,
        "origin",
        "1",
    ),
    Case(
        "heuristic",
        "4.2.2",
        "Last-Modified a day ago: heuristic freshness",
        [Step(q(lm=86400))] * 2,
        "origin",
        "1",
    ),
    Case(
        "heuristic-302",
        "4.2.2",
        "302 without freshness is not stored",
        [Step(q(s=302, h=["Location:/x"]))] * 2,
        "origin",
        "2",
    ),
    Case(
        "404-max-age",
        "3",
        "404 with max-age is stored",
        [Step(merge(q(s=404), FRESH))] * 2,
        "origin",
        "1",
    ),
    Case(
        "500-max-age",
        "3",
        "500 with max-age is storable",
        [Step(merge(q(s=500), FRESH))] * 2,
        "origin",
        "1",
    ),
    Case(
        "200-plain",
        "4.2.2",
        "200 without validators or freshness",
        [Step(q())] * 2,
        "origin",
        "2",
    ),
    Case(
        "auth",
        "3.5",
        "Authorization: not stored by default",
        [Step(FRESH, {"Authorization": "Basic eDp5"})] * 2,
        "origin",
        "2",
    ),
    Case(
        "auth-public",
        "3.5",
        "Authorization + public: stored",
        [Step(cc("public, max-age=60"), {"Authorization": "Basic eDp5"})] * 2,
        "origin",
        "1",
    ),
    Case(
        "auth-s-maxage",
        "3.5",
        "Authorization + s-maxage: stored",
        [Step(cc("s-maxage=60"), {"Authorization": "Basic eDp5"})] * 2,
        "origin",
        "1",
    ),
    Case(
        "cookie-request",
        "3",
        "a Cookie request field does not prevent storing",
        [Step(FRESH, {"Cookie": "s=1"})] * 2,
        "origin",
        "1",
    ),
    Case(
        "vary",
        "4.1",
        "Vary: Accept-Language, en/de/en",
        [
            Step(
                merge(FRESH, {"h": ["Vary:Accept-Language"]}), {"Accept-Language": lang}
            )
            for lang in ("en", "de", "en")
        ],
        "origin",
        "2",
    ),
    Case(
        "vary-star",
        "4.1",
        "Vary: * never matches",
        [Step(merge(FRESH, {"h": ["Vary:*"]}))] * 2,
        "origin",
        "2",
    ),
    Case(
        "req-no-cache",
        "5.2.1.4",
        "request no-cache forwards",
        [Step(FRESH), Step(FRESH, {"Cache-Control": "no-cache"})],
        "origin",
        "2",
    ),
    Case(
        "pragma",
        "5.4",
        "Pragma: no-cache without Cache-Control",
        [Step(FRESH), Step(FRESH, {"Pragma": "no-cache"})],
        "origin",
        "2",
    ),
    Case(
        "req-max-age-0",
        "5.2.1.1",
        "request max-age=0 forwards",
        [Step(FRESH), Step(FRESH, {"Cache-Control": "max-age=0"})],
        "origin",
        "2",
    ),
    Case(
        "req-no-store",
        "5.2.1.5",
        "request no-store: its response is not stored",
        [Step(FRESH, {"Cache-Control": "no-store"}), Step(FRESH)],
        "origin",
        "2",
    ),
    Case(
        "only-if-cached-miss",
        "5.2.1.7",
        "only-if-cached on a miss: 504",
        [Step(FRESH, {"Cache-Control": "only-if-cached"})],
        "status",
        "504",
    ),
    Case(
        "only-if-cached-hit",
        "5.2.1.7",
        "only-if-cached on a hit: 200",
        [Step(FRESH), Step(FRESH, {"Cache-Control": "only-if-cached"})],
        "status",
        "200",
    ),
    Case(
        "min-fresh",
        "5.2.1.3",
        "min-fresh=100 on max-age=60 forwards",
        [Step(FRESH), Step(FRESH, {"Cache-Control": "min-fresh=100"})],
        "origin",
        "2",
    ),
    Case(
        "stale",
        "4.2",
        "max-age=1, 2 s later: not served stale",
        [Step(SHORT), Step(SHORT, sleep=2)],
        "origin",
        "2",
    ),
    Case(
        "max-stale",
        "5.2.1.2",
        "request max-stale=60 accepts a stale hit",
        [Step(SHORT), Step(SHORT, {"Cache-Control": "max-stale=60"}, sleep=2)],
        "origin",
        "1",
    ),
    Case(
        "must-revalidate",
        "5.2.2.2",
        "must-revalidate beats max-stale",
        [
            Step(cc("max-age=1, must-revalidate")),
            Step(
                cc("max-age=1, must-revalidate"),
                {"Cache-Control": "max-stale=60"},
                sleep=2,
            ),
        ],
        "origin",
        "2",
    ),
    Case(
        "proxy-revalidate",
        "5.2.2.8",
        "proxy-revalidate beats max-stale",
        [
            Step(cc("max-age=1, proxy-revalidate")),
            Step(
                cc("max-age=1, proxy-revalidate"),
                {"Cache-Control": "max-stale=60"},
                sleep=2,
            ),
        ],
        "origin",
        "2",
    ),
    Case(
        "etag-revalidate",
        "4.3.1",
        "stale with ETag: If-None-Match sent",
        [Step(merge(SHORT, q(etag="e1"))), Step(merge(SHORT, q(etag="e1")), sleep=2)],
        "cond",
        "1",
    ),
    Case(
        "lm-revalidate",
        "4.3.1",
        "stale with Last-Modified: If-Modified-Since sent",
        [Step(merge(SHORT, q(lm=3600))), Step(merge(SHORT, q(lm=3600)), sleep=2)],
        "cond",
        "1",
    ),
    Case(
        "304-merge",
        "4.3.4",
        "a 304's fields update the stored response",
        [
            Step(merge(SHORT, q(etag="m", h304=["X-Version:2"], h=["X-Version:1"]))),
            Step(
                merge(SHORT, q(etag="m", h304=["X-Version:2"], h=["X-Version:1"])),
                sleep=2,
            ),
        ],
        "hdr:x-version",
        "2",
    ),
    Case(
        "age-upstream",
        "4.2.3",
        "Age: 50 from upstream counts (max-age=55, +6 s)",
        [
            Step(merge(cc("max-age=55"), {"h": ["Age:50"]})),
            Step(merge(cc("max-age=55"), {"h": ["Age:50"]}), sleep=6),
        ],
        "origin",
        "2",
    ),
    Case(
        "age-header",
        "5.1",
        "a hit carries Age",
        [Step(FRESH), Step(FRESH, sleep=1)],
        "hdr:age",
        "present",
    ),
    Case(
        "post-invalidates",
        "4.4",
        "POST invalidates the stored GET",
        [Step(FRESH), Step(FRESH, method="POST"), Step(FRESH)],
        "origin",
        "3",
    ),
    Case(
        "post-error",
        "4.4",
        "a POST answered 500 does not invalidate",
        [Step(FRESH), Step(q(s=500), method="POST"), Step(FRESH)],
        "origin",
        "2",
    ),
    Case(
        "delete-invalidates",
        "4.4",
        "DELETE invalidates the stored GET",
        [Step(FRESH), Step(FRESH, method="DELETE"), Step(FRESH)],
        "origin",
        "3",
    ),
    Case(
        "head-from-get",
        "4",
        "HEAD after GET is answered from the cache",
        [Step(FRESH), Step(FRESH, method="HEAD")],
        "origin",
        "1",
    ),
    Case(
        "swr",
        "RFC 5861 3",
        "stale-while-revalidate: stale now, fresh later",
        [
            Step(cc("max-age=1, stale-while-revalidate=30")),
            Step(cc("max-age=1, stale-while-revalidate=30"), sleep=2),
        ],
        "latency",
        "stale served",
    ),
    Case(
        "sie",
        "RFC 5861 4",
        "stale-if-error: stale served on 503",
        [
            Step(cc("max-age=1, stale-if-error=60")),
            Step(cc("max-age=1, stale-if-error=60"), sleep=2, fail=True),
        ],
        "status",
        "200",
    ),
    Case(
        "no-sie",
        "4.2.4",
        "no stale-if-error: the 503 is passed on",
        [Step(SHORT), Step(SHORT, sleep=2, fail=True)],
        "status",
        "503",
    ),
    Case(
        "range",
        "RFC 9110 14",
        "Range request answered 206",
        [Step(FRESH, {"Range": "bytes=0-0"})],
        "status",
        "206",
    ),
    Case(
        "hop-by-hop",
        "RFC 9110 7.6.1",
        "Connection-named fields not forwarded",
        [Step(q(), {"Connection": "X-Hop", "X-Hop": "1"})],
        "seen:x-hop",
        "absent",
    ),
    Case(
        "via",
        "RFC 9110 7.6.3",
        "Via added to the forwarded request",
        [Step(q())],
        "seen:via",
        "present",
    ),
    Case(
        "cache-status",
        "RFC 9211",
        "Cache-Status on responses",
        [Step(FRESH), Step(FRESH)],
        "hdr:cache-status",
        "present",
    ),
]

#: Cases where the RFC's answer is a requirement (MUST / MUST NOT); in the
#: others it is what a cache following the RFC's preferences does, and
#: another answer is allowed too (a cache is never required to store).
STRICT = {
    "expires-past",
    "expires-invalid",
    "maxage-over-expires",
    "no-store",
    "private",
    "auth",
    "vary",
    "vary-star",
    "stale",
    "must-revalidate",
    "proxy-revalidate",
    "304-merge",
    "age-upstream",
    "post-invalidates",
    "delete-invalidates",
    "location-invalidates",
    "no-sie",
    "hop-by-hop",
    "via",
}


class Target:
    """A cache under test, reached on a port."""

    def __init__(self, name: str, port: int, origin: int) -> None:
        self.name = name
        self.port = port
        self.origin = origin

    def request(
        self, method: str, path: str, headers: dict[str, str], port: int | None = None
    ) -> Result:
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=30)
        try:
            conn.request(method, path, headers={"Host": "cache.test", **headers})
            response = conn.getresponse()
            body = response.read()
            return Result(
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                body,
            )
        finally:
            conn.close()

    def originState(self, ident: str) -> dict[str, object]:
        result = self.request("GET", "/_hits?id=" + quote(ident), {}, port=self.origin)
        state: dict[str, object] = json.loads(result.body)
        return state


def pathFor(case: Case, step: Step, ident: str) -> str:
    query: dict[str, object] = {"id": ident, **step.query}
    pairs: list[tuple[str, object]] = []
    for k, v in query.items():
        for item in v if isinstance(v, list) else [v]:
            pairs.append((k, item))
    return f"/c/{case.name}{step.path}?" + urlencode(pairs)


def run(case: Case, target: Target) -> str:
    ident = f"{case.name}-{target.name}"
    last = Result()
    started = 0.0
    elapsed = 0.0
    for step in case.steps:
        if step.sleep:
            time.sleep(step.sleep)
        if step.fail is not None:
            target.request(
                "GET", f"/_fail?id={quote(ident)}&on=1", {}, port=target.origin
            )
        started = time.monotonic()
        last = target.request(step.method, pathFor(case, step, ident), step.headers)
        elapsed = time.monotonic() - started
    # Let background fetches (grace, stale-while-revalidate) reach the
    # origin before counting.
    time.sleep(0.5)
    state = target.originState(ident)
    kind, _, arg = case.measure.partition(":")
    if kind == "origin":
        return str(state["hits"])
    if kind == "cond":
        return str(state["conditional"])
    if kind == "status":
        return str(last.status)
    if kind == "hdr":
        if arg in ("set-cookie", "age", "cache-status"):
            return "present" if arg in last.headers else "absent"
        return last.headers.get(arg, "absent")
    if kind == "seen":
        seen = {k.lower() for k in state["last"]}  # type: ignore[attr-defined]
        return "present" if arg in seen else "absent"
    if kind == "latency":
        body = last.body
        return "stale served" if body == b"body" and elapsed < 0.5 else "waited"
    raise ValueError(case.measure)


def locationCase(target: Target) -> str:
    """POST to another URI whose Location names the stored one (4.4)."""
    ident = f"location-{target.name}"
    stored = f"/c/loc?id={quote(ident)}&h=" + quote("Cache-Control:max-age=60")
    target.request("GET", stored, {})
    other = f"/c/loc-other?id={quote(ident)}x&s=201&h=" + quote("Location:" + stored)
    target.request("POST", other, {})
    target.request("GET", stored, {})
    return str(target.originState(ident)["hits"])


def startOrigin() -> tuple[subprocess.Popen[bytes], int]:
    port = freePort()
    process = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "proxy_origin.py"), str(port)],
        stdout=subprocess.DEVNULL,
    )
    waitForPort(port, process)
    return process, port


def startAppnet(
    work: str, origin: int, extra: str = ""
) -> tuple[subprocess.Popen[bytes], int]:
    port = freePort()
    config = os.path.join(work, "appnet.toml")
    with open(config, "w") as f:
        f.write(
            f"""
[http]
listen = ["tcp:{port}:interface=127.0.0.1"]
access_log = "off"
{extra}
[[http.proxy]]
upstream = "http://127.0.0.1:{origin}"
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
[limits]
connections_per_ip = 10000
"""
        )
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            TWISTD,
            "-n",
            "--pidfile=",
            "--logfile",
            os.path.join(work, "appnet.log"),
            "appnet",
            "--config",
            config,
            "--data",
            os.path.join(work, "appnet-data"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    waitForPort(port, process)
    return process, port


def startVarnish(
    work: str, origin: int, vcl: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    varnishd = shutil.which("varnishd", path=os.environ.get("PATH", "") + ":/usr/sbin")
    if varnishd is None:
        raise SystemExit("varnishd is not installed (Debian package varnish)")
    port = freePort()
    name = os.path.join(work, "varnish")
    os.makedirs(name, exist_ok=True)
    os.chmod(work, 0o755)
    os.chmod(name, 0o777)
    args = [varnishd, "-F", "-n", name, "-a", f"127.0.0.1:{port}", "-s", "malloc,64m"]
    if vcl is None:
        args += ["-b", f"127.0.0.1:{origin}"]
    else:
        path = os.path.join(work, "default.vcl")
        with open(path, "w") as f:
            f.write(vcl)
        os.chmod(path, 0o644)
        args += ["-f", path]
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    waitForPort(port, process)
    return process, port


SQUID = """\
http_port 127.0.0.1:{port} accel defaultsite=cache.test no-vhost
cache_peer 127.0.0.1 parent {origin} 0 no-query originserver name=origin
cache_peer_access origin allow all
http_access allow all
cache_mem 64 MB
pid_filename {work}/squid.pid
access_log none
cache_log {work}/squid-cache.log
coredump_dir {work}
shutdown_lifetime 0 seconds
"""


def startSquid(work: str, origin: int) -> tuple[subprocess.Popen[bytes], int]:
    squid = shutil.which("squid", path=os.environ.get("PATH", "") + ":/usr/sbin")
    if squid is None:
        raise SystemExit("squid is not installed (Debian package squid)")
    port = freePort()
    os.chmod(work, 0o777)
    conf = os.path.join(work, "squid.conf")
    with open(conf, "w") as f:
        f.write(SQUID.format(port=port, origin=origin, work=work))
    os.chmod(conf, 0o644)
    process = subprocess.Popen(
        [squid, "-N", "-f", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    waitForPort(port, process)
    return process, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/proxy-conformance.rst")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="appnet-proxy-compare-")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        origin, originPort = startOrigin()
        processes.append(origin)
        appnet, appnetPort = startAppnet(work, originPort)
        processes.append(appnet)
        varnish, varnishPort = startVarnish(work, originPort)
        processes.append(varnish)
        squid, squidPort = startSquid(work, originPort)
        processes.append(squid)
        targets = [
            Target("appnet", appnetPort, originPort),
            Target("varnish", varnishPort, originPort),
            Target("squid", squidPort, originPort),
        ]
        names = ["appnet", "Varnish", "Squid"]
        rows = [
            [
                "#",
                "behaviour",
                "RFC 9111 §",
                "measure",
                "RFC",
                "appnet",
                "Varnish 7.1",
                "Squid 5.7",
                "differences",
            ]
        ]
        results: list[tuple[Case, list[str]]] = []
        for case in CASES:
            results.append((case, [run(case, t) for t in targets]))
        location = Case(
            "location-invalidates",
            "4.4",
            "POST elsewhere, Location: this URI",
            [],
            "origin",
            "2",
        )
        results.append((location, [locationCase(t) for t in targets]))
        for number, (case, got) in enumerate(results, 1):
            strict = case.name in STRICT
            notes = [
                f"{name} {'breaks a MUST' if strict else 'differs (allowed)'}"
                for name, value in zip(names, got, strict=True)
                if value != case.expect
            ]
            measure = {
                "origin": "origin requests",
                "cond": "conditional requests",
                "status": "status",
                "latency": "answer",
            }.get(case.measure.partition(":")[0], case.measure)
            rows.append(
                [
                    str(number),
                    case.what,
                    case.section,
                    measure,
                    case.expect,
                    *got,
                    "; ".join(notes) or "-",
                ]
            )
        text = table(rows)
        print(text)
        parts = []
        for i, name in enumerate(names):
            agree = sum(1 for c, g in results if g[i] == c.expect)
            broken = sum(1 for c, g in results if c.name in STRICT and g[i] != c.expect)
            parts.append(f"{name} {agree} (breaks {broken} MUSTs)")
        summary = (
            f"{len(results)} behaviours, {len(STRICT)} of them RFC requirements; "
            "answers as the RFC column: " + ", ".join(parts) + "."
        )
        print(summary)
        if args.out:
            os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
            with open(args.out, "w") as f:
                f.write(HEADER + "\n" + summary + "\n\n" + text + "\n" + FOOTER)
    finally:
        for process in reversed(processes):
            stopProcess(process)
        shutil.rmtree(work, ignore_errors=True)


HEADER = """\
HTTP cache behaviour: appnet beside Varnish and Squid
======================================================

Generated by ``bench/http/proxy_compare.py``: one origin
(``bench/http/proxy_origin.py``), appnet's reverse proxy (``[[http.proxy]]``
with default settings), Varnish 7.1 with its built-in VCL and default
parameters, and Squid 5.7 as a reverse proxy (``accel``, memory cache,
otherwise defaults) in front of it, the same requests through each. *measure* is
what was counted after the case's requests: how many requests reached the
origin, how many were conditional, a status, or a header. *RFC* is what
RFC 9111 (or the RFC named) requires or, where it allows a choice, what a
cache following it closely does; where the caches differ, the RFC
column decides. *differences* says whether a difference breaks a requirement
(MUST / MUST NOT) or is a choice the RFC leaves open (a cache is never
required to store, and request directives such as ``no-cache`` and
``max-age`` state the client's preference).
"""

FOOTER = """
Notes:

- Varnish ignores request ``Cache-Control`` (``no-cache``, ``max-age``,
  ``min-fresh``, ``max-stale``, ``only-if-cached``); within
  ``default_grace`` (10 s) it answers with the stale object while it
  refetches in the background, and when the origin fails; its built-in
  VCL does not cache responses with ``Set-Cookie`` or requests with
  ``Cookie`` or ``Authorization``; it does not invalidate on unsafe
  methods. Most of this is policy an operator changes in VCL.
- Squid keeps every requirement measured here; where it differs it
  stores less than it may (``private="field"``, ``no-cache="field"``,
  ``must-understand``, a 404 or 500 with ``max-age``) and does not
  implement ``stale-if-error``. It adds ``Cache-Control: max-age=259200``
  to the requests it forwards.
- 206 responses are passed through by appnet and not stored (Range
  requests bypass the cache).
"""


if __name__ == "__main__":
    main()
