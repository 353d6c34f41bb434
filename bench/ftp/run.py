"""
FTP throughput: appnet against stock Twisted FTP and pyftpdlib, side by
side, in one run.

For each server, started as its own process and stopped by its PID:

  - RETR and STOR of one large file (1 GiB by default) with curl, in MB/s;
  - a mirror of a tree of small files (10,000 by default) down with lftp
    (``mirror``), and back up (``mirror -R``), in files per second;
  - the server's peak resident memory (VmHWM) over the run.

Needs curl and lftp on the PATH and pyftpdlib importable
(``.venv/bin/pip install pyftpdlib``). Run from the repository root::

    .venv/bin/python bench/ftp/run.py                 # 1 GiB, 10,000 files
    .venv/bin/python bench/ftp/run.py --size 256 --files 2000

The test data is generated in a temporary directory (``--dir`` to choose
where; it needs about 3x the large file's size free) and removed at the
end. Only loopback is used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import TWISTD, freePort, stopProcess, waitForPort  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MiB = 1024 * 1024


def peakRSS(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Server:
    name: str
    user: str
    password: str
    start: Callable[[int], subprocess.Popen[bytes]]
    notes: str = ""


@dataclass
class Result:
    name: str
    retr: float = 0.0
    stor: float = 0.0
    down: float = 0.0
    up: float = 0.0
    rss: int = 0
    errors: list[str] = field(default_factory=list)


def timed(argv: Sequence[str], cwd: str) -> float:
    start = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=3600)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} failed ({done.returncode}): "
            f"{done.stderr.decode(errors='replace')[-400:]}"
        )
    return elapsed


def makeTree(root: str, sizeMiB: int, files: int) -> None:
    os.makedirs(root)
    block = os.urandom(4 * MiB)
    with open(os.path.join(root, "big.bin"), "wb") as f:
        left = sizeMiB * MiB
        while left:
            chunk = block[: min(left, len(block))]
            f.write(chunk)
            left -= len(chunk)
    small = os.path.join(root, "small")
    perDir = 100
    payload = os.urandom(1024)
    for i in range(files):
        directory = os.path.join(small, f"d{i // perDir:03d}")
        if i % perDir == 0:
            os.makedirs(directory)
        with open(os.path.join(directory, f"f{i % perDir:03d}.txt"), "wb") as f:
            f.write(payload)
    os.makedirs(os.path.join(root, "uploads"))


def appnetServer(work: str, tree: str) -> Server:
    data = os.path.join(work, "appnet-data")
    env = dict(os.environ, APPNET_DATA=data)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "appnet",
            "user",
            "add",
            "bench@example.org",
            "--password-stdin",
        ],
        input=b"benchpass\n",
        env=env,
        check=True,
        capture_output=True,
    )
    homes = os.path.join(data, "ftp")
    os.makedirs(homes, exist_ok=True)
    os.symlink(tree, os.path.join(homes, "bench@example.org"))

    def start(port: int) -> subprocess.Popen[bytes]:
        config = os.path.join(work, "appnet.toml")
        with open(config, "w") as f:
            f.write(
                f'[ftp]\nlisten = ["tcp:{port}:interface=127.0.0.1"]\n'
                'passive_ports = "0"\n'
                + "".join(
                    f"[{s}]\nenabled = false\n"
                    for s in ("http", "smtp", "submission", "pop3", "imap", "dns")
                )
            )
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                TWISTD,
                "-n",
                "--pidfile=",
                f"--logfile={os.path.join(work, 'appnet.log')}",
                "appnet",
                "--data",
                data,
                "--config",
                config,
            ],
            cwd=work,
            env=env,
        )

    return Server(
        "appnet",
        "bench%40example.org",
        "benchpass",
        start,
        "fsyncs every upload before 226; scrypt login",
    )


def twistedServer(work: str, tree: str) -> Server:
    homes = os.path.dirname(tree)

    def start(port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                TWISTD,
                "-n",
                "--pidfile=",
                f"--logfile={os.path.join(work, 'twisted.log')}",
                "-y",
                os.path.join(HERE, "stock_twisted.tac"),
            ],
            cwd=work,
            env=dict(os.environ, BENCH_PORT=str(port), BENCH_HOMES=homes),
        )

    return Server("twisted (stock)", "bench", "benchpass", start, "no fsync")


def pyftpdlibServer(work: str, tree: str) -> Server:
    def start(port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyftpdlib",
                "-i",
                "127.0.0.1",
                "-p",
                str(port),
                "-d",
                tree,
                "-u",
                "bench",
                "-P",
                "benchpass",
                "-w",
            ],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    return Server("pyftpdlib", "bench", "benchpass", start, "no fsync")


def measure(server: Server, tree: str, work: str, sizeMiB: int, files: int) -> Result:
    result = Result(server.name)
    port = freePort()
    process = server.start(port)
    try:
        waitForPort(port, process, greeting=True)
        url = f"ftp://{server.user}:{server.password}@127.0.0.1:{port}"
        lftp = [
            "lftp",
            "-u",
            f"{server.user.replace('%40', '@')},{server.password}",
            "-p",
            str(port),
            "-e",
        ]
        settings = "set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 60; "
        size = sizeMiB * MiB
        try:
            seconds = timed(["curl", "-sS", "-o", "/dev/null", f"{url}/big.bin"], work)
            result.retr = size / seconds / 1e6
        except RuntimeError as e:
            result.errors.append(f"RETR: {e}")
        try:
            seconds = timed(
                [
                    "curl",
                    "-sS",
                    "-T",
                    os.path.join(tree, "big.bin"),
                    f"{url}/uploads/big.bin",
                ],
                work,
            )
            result.stor = size / seconds / 1e6
        except RuntimeError as e:
            result.errors.append(f"STOR: {e}")
        down = os.path.join(work, "mirror-down")
        try:
            seconds = timed(
                [*lftp, settings + f"mirror small {down}; quit", "127.0.0.1"], work
            )
            got = sum(len(names) for _, _, names in os.walk(down))
            if got != files:
                raise RuntimeError(f"mirrored {got} of {files} files")
            result.down = files / seconds
        except RuntimeError as e:
            result.errors.append(f"mirror: {e}")
        try:
            seconds = timed(
                [
                    *lftp,
                    settings + f"mirror -R {down} uploads/small; quit",
                    "127.0.0.1",
                ],
                work,
            )
            got = sum(
                len(names)
                for _, _, names in os.walk(os.path.join(tree, "uploads", "small"))
            )
            if got != files:
                raise RuntimeError(f"uploaded {got} of {files} files")
            result.up = files / seconds
        except RuntimeError as e:
            result.errors.append(f"mirror -R: {e}")
        result.rss = peakRSS(process.pid)
    finally:
        stopProcess(process)
        shutil.rmtree(os.path.join(work, "mirror-down"), ignore_errors=True)
        shutil.rmtree(os.path.join(tree, "uploads"), ignore_errors=True)
        os.makedirs(os.path.join(tree, "uploads"), exist_ok=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="large file, MiB")
    parser.add_argument("--files", type=int, default=10_000, help="small files")
    parser.add_argument("--dir", default=None, help="where to put the test data")
    parser.add_argument(
        "--servers", default="appnet,twisted,pyftpdlib", help="comma-separated"
    )
    args = parser.parse_args()
    for program in ("curl", "lftp"):
        if shutil.which(program) is None:
            sys.exit(f"bench: {program} is not installed")
    work = tempfile.mkdtemp(prefix="appnet-ftp-bench-", dir=args.dir)
    try:
        tree = os.path.join(work, "homes", "bench")
        print(f"generating {args.size} MiB and {args.files} small files in {work}")
        makeTree(tree, args.size, args.files)
        makers = {
            "appnet": appnetServer,
            "twisted": twistedServer,
            "pyftpdlib": pyftpdlibServer,
        }
        servers = [makers[name](work, tree) for name in args.servers.split(",")]
        results = []
        for server in servers:
            print(f"measuring {server.name} ...", flush=True)
            results.append(measure(server, tree, work, args.size, args.files))
        print()
        header = (
            f"{'server':<16} {'RETR MB/s':>10} {'STOR MB/s':>10}"
            f" {'mirror files/s':>15} {'mirror -R files/s':>18} {'peak RSS':>9}"
        )
        print(f"{args.size} MiB file (curl), {args.files} x 1 KiB files (lftp)")
        print(header)
        print("-" * len(header))
        for r, s in zip(results, servers, strict=True):
            print(
                f"{r.name:<16} {r.retr:>10.0f} {r.stor:>10.0f} {r.down:>15.0f}"
                f" {r.up:>18.0f} {r.rss / MiB:>6.0f} MiB  ({s.notes})"
            )
            for error in r.errors:
                print(f"    {r.name}: {error}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
