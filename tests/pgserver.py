"""
A real PostgreSQL server for the tests, from Debian's C{postgresql} package.

L{sharedServer} starts one server per test run on first use (C{initdb} into
a temporary directory, listening only on a Unix socket there), and stops it
by its PID when the run ends; L{freshDatabase} gives each test a database
of its own on it. Tests that restart the server start a private one with
L{PostgreSQLServer}. Running as root, the server runs as the C{postgres}
user (it refuses root). A missing server skips, or fails under
C{APPNET_REQUIRE_INTEROP=1}.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any
from urllib.parse import quote

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from tests.interop import unavailable

#: The account the tests connect as (made by initdb, trusted on the socket).
USER = "appnet"

# The tests that stop the server on purpose would fill the output with the
# pool's reconnection warnings.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def binDir() -> str | None:
    """
    The newest installed PostgreSQL's C{bin} directory, or C{None}.
    """

    def version(path: str) -> tuple[int, ...]:
        name = path.split(os.sep)[-3]
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=version)
    return os.path.dirname(found[-1]) if found else None


def _runAs() -> tuple[int, int] | None:
    """
    The uid and gid to run the server as: C{None} (ourselves) unless root.
    """
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    unavailable("no unprivileged user to run PostgreSQL as")


@define
class PostgreSQLServer:
    """
    One PostgreSQL cluster in a temporary directory. L{start} and L{stop}
    block (they wait for C{initdb} and C{pg_ctl}): call them in a thread.
    """

    bin: str
    directory: str = field(factory=lambda: tempfile.mkdtemp(prefix="appnet-pg-"))
    #: Benchmarks want commits fsynced, as a real server does.
    durable: bool = False
    pid: int | None = field(default=None, init=False)
    _initialised: bool = field(default=False, init=False)

    @property
    def data(self) -> str:
        """The cluster's data directory."""
        return os.path.join(self.directory, "data")

    @property
    def socketDir(self) -> str:
        """Where the server's Unix socket is."""
        return self.directory

    def url(self, database: str = "postgres") -> str:
        """A connection URL for C{database} over the Unix socket."""
        return f"postgresql://{USER}@/{database}?host={quote(self.socketDir, safe='')}"

    def _run(self, *args: str) -> None:
        ids = _runAs()
        result = subprocess.run(
            args,
            capture_output=True,
            cwd=self.directory,
            user=None if ids is None else ids[0],
            group=None if ids is None else ids[1],
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed: {result.stderr.decode(errors='replace')}"
            )

    def start(self) -> None:
        """Initialise the cluster (first time) and start the server."""
        ids = _runAs()
        if ids is not None:
            os.chown(self.directory, *ids)
        os.chmod(self.directory, 0o755)
        if not self._initialised:
            self._run(
                os.path.join(self.bin, "initdb"),
                "-D",
                self.data,
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            )
            self._initialised = True
        settings = ["-k", self.socketDir, "-c listen_addresses=''"]
        settings.append("-c max_connections=200")
        if not self.durable:
            # A throwaway cluster: durability comes from PostgreSQL's
            # commit protocol, which the tests do not measure.
            settings += ["-c fsync=off", "-c full_page_writes=off"]
        options = " ".join(settings)
        self._run(
            os.path.join(self.bin, "pg_ctl"),
            "start",
            "-w",
            "-D",
            self.data,
            "-l",
            os.path.join(self.directory, "log"),
            "-o",
            options,
        )
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline())

    def stop(self, sig: int = signal.SIGINT) -> None:
        """
        Stop the server by its PID (fast shutdown: clients are cut off)
        and wait until it is gone.
        """
        pid, self.pid = self.pid, None
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            try:
                # Ours only when started without pg_ctl's detaching.
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.02)

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def proofScale(small: int, full: int) -> int:
    """
    How many messages a proof test uses: C{small} (quick, for the suite),
    or the issue's C{full} number under C{APPNET_PROOF_FULL=1}.
    """
    return full if os.environ.get("APPNET_PROOF_FULL") else small


_shared: PostgreSQLServer | None = None
_names = itertools.count(1)


def newServer() -> PostgreSQLServer:
    """
    A private server, not started; L{unavailable} if PostgreSQL is not
    installed. The caller removes it.
    """
    bin = binDir()
    if bin is None:
        unavailable("PostgreSQL is not installed (Debian package postgresql)")
    return PostgreSQLServer(bin)


async def sharedServer() -> PostgreSQLServer:
    """
    The run's shared server, started on first use (in a thread).
    """
    global _shared
    if _shared is None:
        server = newServer()
        try:
            await deferToThread(server.start)
        except BaseException:
            server.remove()
            raise
        _shared = server
        atexit.register(server.remove)
    return _shared


def createDatabase(server: PostgreSQLServer, name: str) -> None:
    """Make an empty database (blocking)."""
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" STRATEGY = FILE_COPY')


def dropDatabase(server: PostgreSQLServer, name: str) -> None:
    """Drop a database, cutting off its clients (blocking)."""
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def freshDatabase(test: object) -> str:
    """
    A new empty database on the shared server for C{test}, dropped after
    it; returns its connection URL.
    """
    server = await sharedServer()
    name = f"t{os.getpid()}_{next(_names)}"
    await deferToThread(createDatabase, server, name)

    def drop() -> Deferred[None]:
        return deferToThread(dropDatabase, server, name)

    test.addCleanup(drop)  # type: ignore[attr-defined]
    return server.url(name)


async def startStore(test: object, url: str | None = None, **kwargs: object) -> Any:
    """
    A started L{PostgreSQLStore} on C{url} (default: a fresh database),
    stopped after the test.
    """
    from twisted.internet import reactor

    from appnet.store.pg import PostgreSQLStore

    if url is None:
        url = await freshDatabase(test)
    store = PostgreSQLStore.open(url, reactor, **kwargs)  # type: ignore[arg-type]
    await store.start()
    test.addCleanup(store.stop)  # type: ignore[attr-defined]
    return store
