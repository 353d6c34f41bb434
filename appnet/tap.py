"""
C{twistd appnet}: command-line options to a running stack.

The options mirror the config keys (tap/example.toml); a TOML file given with
C{--config} supplies the rest, options override it. Options are only
collected in L{Options}; the config is read and validated in
L{makeService}, because twistd answers a L{usage.UsageError} with its whole
help text and the contract here is one line naming the bad key or option.
For the same reason start-up failures (an endpoint already in use, an
unreadable certificate, a store written by a newer appnet) are reported by
L{TwistdRunner} as one line on standard error and exit status 1, instead of
twistd's traceback.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from twisted.application.service import Application, IService, MultiService
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from appnet.config import SERVICES, Config, loadConfig
from appnet.errors import AppnetError, ConfigError
from appnet.stack import Stack
from appnet.store.sqlite import migrateFile

__all__ = ["Options", "TwistdRunner", "makeApplication", "makeService"]


class Options(usage.Options):
    """
    The options of C{twistd appnet}; each sets the config key in brackets.
    """

    synopsis = "[options]"
    longdesc = (
        "Run the appnet stack: web, FTP, SMTP (MX and submission), POP3, "
        "IMAP and DNS. With no options every service listens on loopback on "
        "an unprivileged port, keeping its data in $APPNET_DATA or "
        "./appnet-data. EP is a Twisted endpoint string such as tcp:2525 or "
        "ssl:8443:privateKey=key.pem:certKey=cert.pem; endpoint options "
        "repeat to listen on several, replacing the configured list."
    )

    optFlags = [
        [
            "catch-all",
            None,
            "Mail catcher: accept and keep mail to any address, relay nothing; "
            "see it at http://HOST/_appnet/ [mail.catch].",
        ],
    ]

    optParameters = [
        ["config", "c", None, "TOML config file (see tap/example.toml)."],
        ["data", "d", None, "Data directory [data]."],
        ["dns", None, None, "HOST:PORT for DNS over UDP and TCP [dns.listen]."],
        [
            "dns-root-hints",
            None,
            None,
            "Iterate from the root servers in this hints file [dns.root_hints].",
        ],
        [
            "dns-upstream-port",
            None,
            None,
            "Port for iterative DNS queries, default 53 [dns.upstream_port].",
        ],
        [
            "resolver",
            None,
            None,
            "HOST:PORT of the DNS server appnet's own lookups use; "
            "default: its own DNS service if it recurses, else the "
            "system's resolvers [dns.resolver].",
        ],
        [
            "relay-port",
            None,
            None,
            "Port for outbound SMTP to MX hosts, default 25 [mail.relay_port].",
        ],
        ["hostname", None, None, "Host name in greetings and Received [hostname]."],
        [
            "workers",
            None,
            None,
            "Run N processes sharing every listening socket [stack.workers].",
        ],
        [
            "store",
            None,
            None,
            "postgresql://USER@HOST/DB: keep accounts, mail, the queue and "
            "sessions there, shared with other nodes; the password comes from "
            "[store.password_file] or PGPASSFILE [store.url].",
        ],
        [
            "trace",
            None,
            None,
            "Log the dialogue of these protocols, comma-separated: "
            "smtp,pop3,imap,ftp,http,dns [trace].",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.listen: dict[str, list[str]] = {}
        self.forward: list[str] = []
        self.domains: list[str] = []
        self.disabled: list[str] = []

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse, reporting a bad option as one line (twistd would print its
        whole help text before the error).
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            _fatal(f"{e} (see twistd appnet --help)")

    def _addListen(self, service: str, endpoint: str) -> None:
        self.listen.setdefault(service, []).append(endpoint)

    def opt_http(self, endpoint: str) -> None:
        """Listen for HTTP on EP (repeatable) [http.listen]."""
        self._addListen("http", endpoint)

    def opt_ftp(self, endpoint: str) -> None:
        """Listen for FTP on EP (repeatable) [ftp.listen]."""
        self._addListen("ftp", endpoint)

    def opt_smtp(self, endpoint: str) -> None:
        """Listen for SMTP (MX role) on EP (repeatable) [smtp.listen]."""
        self._addListen("smtp", endpoint)

    def opt_submission(self, endpoint: str) -> None:
        """Listen for mail submission on EP (repeatable) [submission.listen]."""
        self._addListen("submission", endpoint)

    def opt_pop3(self, endpoint: str) -> None:
        """Listen for POP3 on EP (repeatable) [pop3.listen]."""
        self._addListen("pop3", endpoint)

    def opt_imap(self, endpoint: str) -> None:
        """Listen for IMAP on EP (repeatable) [imap.listen]."""
        self._addListen("imap", endpoint)

    def opt_dns_forward(self, hostPort: str) -> None:
        """Forward DNS recursion to HOST:PORT (repeatable) [dns.forward]."""
        self.forward.append(hostPort)

    def opt_domain(self, domain: str) -> None:
        """Extra local mail domain (repeatable) [mail.domains]."""
        self.domains.append(domain)

    def opt_disable(self, service: str) -> None:
        """Do not run SERVICE: http ftp smtp submission pop3 imap dns."""
        self.disabled.append(service)

    def overrides(self) -> tuple[dict[str, Any], dict[str, str]]:
        """
        The options as config overrides in the TOML's shape, and for each
        dotted key set the option that set it.

        @raise ConfigError: for an option whose value cannot even be put
            into that shape (a non-numeric port, an unknown service).
        """
        raw: dict[str, Any] = {}
        names: dict[str, str] = {}

        def put(dotted: str, value: Any, option: str) -> None:
            *tables, key = dotted.split(".")
            target = raw
            for table in tables:
                target = target.setdefault(table, {})
            target[key] = value
            names[dotted] = option

        if self["catch-all"]:
            put("mail.catch", True, "--catch-all")
        for simple in ("data", "hostname", "trace"):
            if self[simple] is not None:
                put(simple, self[simple], "--" + simple)
        for service, endpoints in self.listen.items():
            put(f"{service}.listen", endpoints, "--" + service)
        if self["store"] is not None:
            put("store.url", self["store"], "--store")
        if self["dns"] is not None:
            put("dns.listen", self["dns"], "--dns")
        if self.forward:
            put("dns.forward", self.forward, "--dns-forward")
        if self["dns-root-hints"] is not None:
            put("dns.root_hints", self["dns-root-hints"], "--dns-root-hints")
        if self["resolver"] is not None:
            put("dns.resolver", self["resolver"], "--resolver")
        for option, dotted in (
            ("dns-upstream-port", "dns.upstream_port"),
            ("relay-port", "mail.relay_port"),
            ("workers", "stack.workers"),
        ):
            if self[option] is not None:
                try:
                    number = int(self[option])
                except ValueError:
                    kind = "number" if option == "workers" else "port number"
                    raise ConfigError(
                        "--" + option,
                        f"expected a {kind}, got {self[option]!r}",
                    ) from None
                put(dotted, number, "--" + option)
        if self.domains:
            put("mail.domains", self.domains, "--domain")
        for service in self.disabled:
            if service not in SERVICES:
                raise ConfigError(
                    "--disable",
                    f"unknown service {service!r}; choose from {', '.join(SERVICES)}",
                )
            put(f"{service}.enabled", False, "--disable")
        return raw, names

    #: twistd's pidfile for this run (absolute), if it writes one.
    pidfile: str | None = None

    def postOptions(self) -> None:
        """
        Under twistd, refuse to start beside a running daemon that holds
        the same pidfile, in one line naming its PID (twistd's own check
        comes later and prints a paragraph).
        """
        parent = getattr(self, "parent", None)
        pidfile = parent.get("pidfile") if parent is not None else None
        if not pidfile:
            return
        self.pidfile = os.path.abspath(pidfile)
        pid = runningPID(self.pidfile)
        if pid is not None and pid != os.getpid():
            _fatal(
                f"already running here with PID {pid} ({pidfile}); stop it,"
                " or start this one in another directory or with --pidfile"
            )

    def loadConfig(self) -> Config:
        """
        Read the config file (if any) and apply these options over it.

        @raise ConfigError: naming the first bad key or option.
        """
        raw, names = self.overrides()
        return loadConfig(self["config"], raw, names)


def runningPID(pidfile: str) -> int | None:
    """The PID in C{pidfile} if that process is alive, else C{None}."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _fatal(error: object, pidfile: str | None = None) -> NoReturn:
    """
    Report a start-up failure as one line and exit with status 1, removing
    the pidfile this process wrote (twistd leaves it after a failed start).

    Written to the process's real standard error: once twistd's logging has
    begun, C{sys.stderr} is redirected into the log.
    """
    if pidfile is not None and runningPID(pidfile) == os.getpid():
        with contextlib.suppress(OSError):
            os.remove(pidfile)
    stream = sys.__stderr__ or sys.stderr
    stream.write(f"appnet: {error}\n")
    stream.flush()
    raise SystemExit(1)


class TwistdRunner(MultiService):
    """
    Runs a L{Stack} under twistd, turning start-up failures into one line
    and exit status 1.

    Before binding, it migrates the store (the SQLite file, or the
    PostgreSQL database) synchronously: twistd calls this before the
    reactor runs, so nothing waits on it, and a broken, unreachable or
    too new store stops the daemon here instead of after it has started
    serving.
    """

    _log = Logger()

    def __init__(self, stack: Stack, pidfile: str | None = None) -> None:
        super().__init__()
        self.stack = stack
        self.pidfile = pidfile
        stack.setServiceParent(self)

    def privilegedStartService(self) -> None:
        try:
            self.stack.dataDir.create()
            store = self.stack.config.store
            if store.url:
                from appnet.store.pg import conninfoFor, migrateDatabase

                migrateDatabase(conninfoFor(store.url, store.password_file))
            else:
                migrateFile(self.stack.dataDir.store.path)
            super().privilegedStartService()
        except (AppnetError, OSError, sqlite3.Error) as e:
            _fatal(_describe(e), self.pidfile)

    def startService(self) -> None:
        super().startService()
        self.stack.whenReady().addCallbacks(self._ready, self._failed)

    def _ready(self, _: object) -> None:
        # Everything made to start the daemon (modules, classes, the
        # stack) lives as long as the process: out of the collector's
        # way, a full collection looks at what serving made since, not
        # at all of it again each time (gc.freeze's intended use).
        gc.freeze()

    def _failed(self, failure: Failure) -> None:
        self._log.failure("appnet could not start", failure)
        from twisted.internet import reactor

        reactor.stop()


def _describe(error: BaseException) -> str:
    if isinstance(error, sqlite3.Error):
        return f"store: {error}"
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror}"
    return str(error)


def makeService(options: Options) -> IService:
    """
    The stack described by C{options}, ready for twistd.
    """
    try:
        config = options.loadConfig()
    except ConfigError as e:
        _fatal(e)
    from twisted.internet import reactor

    from appnet.workers import ENVIRONMENT, WorkerParent

    if config.stack.workers > 1 and ENVIRONMENT not in os.environ:
        return ParentRunner(WorkerParent(config, reactor, config.stack.workers))
    return TwistdRunner(Stack(config, reactor), options.pidfile)


class ParentRunner(MultiService):
    """
    Runs the parent of several workers under twistd, turning start-up
    failures into one line and exit status 1.
    """

    def __init__(self, workers: Any) -> None:
        super().__init__()
        self.workers = workers
        workers.setServiceParent(self)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except (AppnetError, OSError, sqlite3.Error) as e:
            _fatal(_describe(e))


def makeApplication(argv: Sequence[str] = ()) -> Any:
    """
    An application for a C{.tac} file, from C{twistd appnet}-style
    arguments (C{tap/appnet.tac} passes C{$APPNET_ARGS}).
    """
    options = Options()
    try:
        options.parseOptions(list(argv))
    except usage.UsageError as e:
        _fatal(e)
    application = Application("appnet")
    makeService(options).setServiceParent(application)
    return application
