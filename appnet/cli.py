"""
The C{appnet} command: administration and clients.

Every subcommand is an L{Command}: L{usage.Options} for its arguments plus
an C{async run(context)} doing the work on the reactor (the store through
its threads, network clients through Deferreds). Failures the user can fix
are printed as one line, C{appnet: ...}, with exit status 1; usage errors
with status 2. Protocol packages add their subcommands to L{COMMANDS}.
"""

from __future__ import annotations

import getopt
import getpass
import hmac
import importlib
import os
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, TextIO

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.internet.threads import deferToThread
from twisted.python import usage

from appnet import __version__
from appnet.address import normalizeAccount
from appnet.auth import hashPassword, verifyPassword
from appnet.config import Config, loadConfig, parseSize
from appnet.datadir import DataDir
from appnet.errors import AppnetError, ConfigError, NoSuchUser
from appnet.store.interfaces import IStore
from appnet.tls import writeSelfSigned

__all__ = ["COMMANDS", "Command", "SubOptions", "main", "readSecret"]

MIN_PASSWORD = 8


class CommandError(AppnetError):
    """
    A failure to report as one line (exit status 1).
    """


@define
class Context:
    """
    What a subcommand runs with: the reactor, the config (for the data
    directory and defaults) and the terminal.
    """

    reactor: Any
    config: Config
    out: TextIO = sys.stdout
    err: TextIO = sys.stderr
    stdin: TextIO = sys.stdin
    _store: IStore | None = field(default=None, init=False)

    @property
    def dataDir(self) -> DataDir:
        return DataDir.at(self.config.data)

    async def store(self) -> IStore:
        """
        The configured store (the data directory's SQLite file, or the
        PostgreSQL database of C{[store] url}), opened on first use.
        """
        if self._store is None:
            from appnet.stack import openStore

            self.dataDir.create()
            store = openStore(self.config, self.dataDir, self.reactor, time.time)
            await store.start()
            self._store = store
        return self._store

    async def close(self) -> None:
        if self._store is not None:
            await self._store.stop()
            self._store = None

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


class SubOptions(usage.Options):
    """
    The options of a subcommand or group of subcommands (C{appnet user},
    C{appnet user add}): its usage line reads C{Usage: appnet user add
    ADDRESS ...}, and C{--version} names appnet's version.
    """

    def getSynopsis(self) -> str:
        names: list[str] = []
        node: usage.Options = self
        while node.parent is not None:
            node = node.parent
            names.append(node.subCommand or "")
        own = getattr(self, "synopsis", "")
        return " ".join(["Usage: appnet", *reversed(names), own]).rstrip()

    def opt_version(self) -> None:
        """Print appnet's version and exit."""
        print(f"appnet {__version__}")
        raise SystemExit(0)


def _haveTerminal(stdin: TextIO) -> bool:
    """Whether a password prompt can reach a person."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return bool(getattr(stdin, "isatty", lambda: False)())
    os.close(fd)
    return True


def readSecret(
    stdin: TextIO, fromStdin: bool, prompt: str, what: str = "password"
) -> str:
    """
    Read a password from standard input (C{--password-stdin}) or the
    terminal. Without a terminal to ask on, or when nothing is given, fail
    with one line instead of prompting into the void.

    @raise CommandError: if no password could be read.
    """
    if fromStdin:
        secret = stdin.readline().rstrip("\r\n")
    elif not _haveTerminal(stdin):
        raise CommandError(
            f"no {what} given and no terminal to ask on: use --password-stdin"
        )
    else:
        secret = getpass.getpass(prompt)
    if not secret:
        raise CommandError(f"no {what} given")
    return secret


class Command(SubOptions):
    """
    A subcommand. Subclasses implement L{run}.

    Options may follow the positional arguments (C{appnet user add ADDRESS
    --admin}), as with GNU tools; L{usage.Options} alone stops at the first
    argument.
    """

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        args = list(sys.argv[1:] if options is None else options)
        try:
            opts, rest = getopt.gnu_getopt(args, self.shortOpt, self.longOpt)
        except getopt.error as e:
            raise usage.UsageError(str(e)) from None
        flat = [part for pair in opts for part in pair if part]
        super().parseOptions(flat + ["--"] + rest)

    def prepare(self, stdin: TextIO) -> None:
        """
        Gather terminal input before the reactor starts (password prompts).
        """

    async def run(self, context: Context) -> None:
        raise NotImplementedError(type(self).__name__)


def _readPassword(
    stdin: TextIO, fromStdin: bool, confirm: bool = True, what: str = "password"
) -> str:
    password = readSecret(stdin, fromStdin, f"{what[0].upper()}{what[1:]}: ", what)
    if not fromStdin and confirm and getpass.getpass("Again: ") != password:
        raise CommandError(f"{what}s do not match")
    if len(password) < MIN_PASSWORD:
        raise CommandError(f"{what} too short: use at least {MIN_PASSWORD} characters")
    return password


class _PasswordCommand(Command):
    optFlags = [["password-stdin", None, "Read the password from standard input."]]
    password: str = ""
    #: What is read: "password", or "APOP secret".
    what = "password"

    def parseArgs(self, address: str) -> None:  # type: ignore[override]
        self["address"] = address

    def prepare(self, stdin: TextIO) -> None:
        self.address()
        try:
            self.password = _readPassword(stdin, self["password-stdin"], what=self.what)
        except EOFError:
            raise CommandError(f"no {self.what} given") from None

    def address(self) -> str:
        try:
            return normalizeAccount(self["address"])
        except AppnetError as e:
            raise CommandError(str(e)) from None


class UserAdd(_PasswordCommand):
    """Create an account; its domain becomes a local mail domain."""

    synopsis = "ADDRESS [--admin] [--quota SIZE] [--password-stdin]"
    optFlags = _PasswordCommand.optFlags + [
        ["admin", None, "May use the admin parts of the web API."]
    ]
    optParameters = [["quota", None, None, "Quota, e.g. 500M (default: none)."]]

    async def run(self, context: Context) -> None:
        address = self.address()
        quota = None
        if self["quota"] is not None:
            try:
                quota = parseSize(self["quota"])
            except ValueError:
                raise CommandError(
                    f"bad quota {self['quota']!r}; use e.g. 500M"
                ) from None
        encoded = await deferToThread(hashPassword, self.password)
        store = await context.store()
        domains = await store.users.domains()
        await store.users.addUser(address, encoded, self["admin"], quota)
        context.say(f"added {address}")
        domain = address.rpartition("@")[2]
        if domain not in domains and domain not in context.config.mail.domains:
            context.say(f"mail for {domain} is now delivered locally")


class UserPasswd(_PasswordCommand):
    """Set an account's password."""

    synopsis = "ADDRESS [--password-stdin]"

    async def run(self, context: Context) -> None:
        address = self.address()
        store = await context.store()
        secret = await store.users.getAPOPSecret(address)
        if secret is not None and hmac.compare_digest(
            secret.encode(), self.password.encode()
        ):
            raise CommandError("the password must differ from the APOP secret")
        encoded = await deferToThread(hashPassword, self.password)
        await store.users.setPasswordHash(address, encoded)
        context.say(f"password changed for {address}")


class UserAPOP(_PasswordCommand):
    """
    Set or remove an account's APOP secret: a second secret, apart from
    the login password, that POP3's APOP command proves knowledge of when
    [pop3] apop is on. It is stored in the clear (APOP needs it so), so it
    must differ from the login password; changing the password leaves it.
    """

    synopsis = "ADDRESS [--password-stdin] | ADDRESS --clear"
    optFlags = [
        ["password-stdin", None, "Read the APOP secret from standard input."],
        ["clear", None, "Remove the APOP secret: the account can no longer use APOP."],
    ]
    what = "APOP secret"

    def postOptions(self) -> None:
        if self["clear"] and self["password-stdin"]:
            raise usage.UsageError("--clear reads no secret")

    def prepare(self, stdin: TextIO) -> None:
        if self["clear"]:
            self.address()
        else:
            super().prepare(stdin)

    async def run(self, context: Context) -> None:
        address = self.address()
        store = await context.store()
        if self["clear"]:
            await store.users.setAPOPSecret(address, None)
            context.say(f"APOP secret removed for {address}")
            return
        user = await store.users.getUser(address)
        if user is None:
            raise NoSuchUser(address)
        if await deferToThread(verifyPassword, self.password, user.passwordHash):
            raise CommandError("the APOP secret must differ from the login password")
        await store.users.setAPOPSecret(address, self.password)
        context.say(f"APOP secret set for {address}")
        if not context.config.pop3.apop:
            context.say("APOP is off: set [pop3] apop = true to offer it")


class UserDel(Command):
    """Delete an account."""

    synopsis = "ADDRESS"

    def parseArgs(self, address: str) -> None:  # type: ignore[override]
        self["address"] = address

    async def run(self, context: Context) -> None:
        try:
            address = normalizeAccount(self["address"])
        except AppnetError as e:
            raise CommandError(str(e)) from None
        store = await context.store()
        await store.users.deleteUser(address)
        context.say(f"deleted {address}")


class UserList(Command):
    """List accounts."""

    synopsis = ""

    async def run(self, context: Context) -> None:
        store = await context.store()
        users = await store.users.listUsers()
        if not users:
            context.say("no users; add one with: appnet user add ADDRESS")
        for user in users:
            flags = []
            if user.admin:
                flags.append("admin")
            if user.quota is not None:
                flags.append(f"quota={user.quota}")
            if user.apop:
                flags.append("apop")
            created = time.strftime("%Y-%m-%d", time.gmtime(user.created))
            context.say(f"{user.address}\t{created}\t{' '.join(flags)}".rstrip())


class UserOptions(SubOptions):
    """Manage accounts (shared by SMTP AUTH, POP3, IMAP, FTP and webmail)."""

    synopsis = "add|passwd|apop|del|list ..."
    subCommands = [
        ["add", None, UserAdd, "Create an account."],
        ["passwd", None, UserPasswd, "Set an account's password."],
        ["apop", None, UserAPOP, "Set or remove an account's POP3 APOP secret."],
        ["del", None, UserDel, "Delete an account."],
        ["list", None, UserList, "List accounts."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("say add, passwd, apop, del or list")


class CertOptions(Command):
    """Write a self-signed certificate and key into DATA/tls/."""

    synopsis = "[--hostname NAME] [--force]"
    optParameters = [
        ["hostname", None, None, "Name in the certificate (default: the config's)."],
    ]
    optFlags = [["force", None, "Replace an existing certificate and key."]]

    async def run(self, context: Context) -> None:
        data = context.dataDir
        data.create()
        hostname = self["hostname"] or context.config.hostname
        try:
            await deferToThread(
                writeSelfSigned,
                data.tlsCert.path,
                data.tlsKey.path,
                hostname,
                force=self["force"],
            )
        except FileExistsError as e:
            raise CommandError(
                f"{e.args[0]} exists; use --force to replace it"
            ) from None
        context.say(f"wrote {data.tlsCert.path} and {data.tlsKey.path} for {hostname}")


#: The subcommands: name, Options class path, description.
COMMANDS: list[tuple[str, str, str]] = [
    ("user", "appnet.cli:UserOptions", "Manage accounts."),
    ("cert", "appnet.cli:CertOptions", "Make a self-signed TLS certificate."),
    (
        "mail",
        "appnet.mail.cli:MailOptions",
        "Send mail, fetch it over POP3, manage it over IMAP.",
    ),
    ("fetch", "appnet.web.cli:FetchOptions", "Download a URL over HTTP or HTTPS."),
    ("dig", "appnet.dns.cli:DigOptions", "Ask a DNS server, print it like dig."),
    ("dns", "appnet.dns.admin:DNSOptions", "TSIG keys and dynamic DNS updates."),
    ("queue", "appnet.mail.queuecli:QueueOptions", "Manage the outgoing mail queue."),
    (
        "dkim",
        "appnet.mail.dkimcli:DKIMOptions",
        "DKIM signing keys: keygen, list, retire.",
    ),
    ("ftp", "appnet.ftp.cli:FTPOptions", "FTP: ls, get, put, mkdir, rm, mirror."),
    (
        "cache",
        "appnet.web.proxy.cli:CacheOptions",
        "The web proxy cache: stats, purge.",
    ),
    (
        "store",
        "appnet.store.cli:StoreOptions",
        "Migrate the store to PostgreSQL; check its consistency.",
    ),
]


def _make(path: str) -> usage.Options:
    module, _, name = path.partition(":")
    options: usage.Options = getattr(importlib.import_module(module), name)()
    return options


class AppnetOptions(usage.Options):
    synopsis = "Usage: appnet [--data DIR] [--config FILE] COMMAND ..."
    longdesc = "Administer an appnet node and talk to servers as a client."
    optParameters = [
        ["data", "d", None, "Data directory (default $APPNET_DATA or ./appnet-data)."],
        ["config", "c", None, "TOML config file, for the data directory and defaults."],
    ]

    @property
    def subCommands(self) -> list[tuple[str, None, Any, str]]:
        # Each command's module is imported only when it is the one asked
        # for, so --help and every command start quickly.
        return [(name, None, partial(_make, path), doc) for name, path, doc in COMMANDS]

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"appnet {__version__}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("no command given")


def _leaf(options: usage.Options) -> usage.Options:
    while getattr(options, "subOptions", None) is not None:
        options = options.subOptions
    return options


def _helpHint(options: usage.Options) -> str:
    """C{appnet ftp --help} for a failure inside C{appnet ftp ...}."""
    names: list[str] = []
    while getattr(options, "subOptions", None) is not None:
        names.append(options.subCommand or "")
        options = options.subOptions
    return " ".join(["appnet", *names, "--help"])


def main(argv: Sequence[str] | None = None) -> None:
    """
    The C{appnet} console script.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    options = AppnetOptions()
    try:
        options.parseOptions(args)
    except usage.UsageError as e:
        sys.stderr.write(f"appnet: {e}\n(see {_helpHint(options)})\n")
        raise SystemExit(2) from None
    if options["data"] and not os.path.isdir(options["data"]):
        sys.stderr.write(
            f"appnet: data directory {options['data']} does not exist"
            " (twistd -n appnet makes it on first start)\n"
        )
        raise SystemExit(1)
    command = _leaf(options)
    if not isinstance(command, Command):
        sys.stderr.write(f"{command}\n")
        raise SystemExit(2)
    try:
        config = loadConfig(
            options["config"], {"data": options["data"]} if options["data"] else {}
        )
        command.prepare(sys.stdin)
    except (AppnetError, KeyboardInterrupt, EOFError) as e:
        sys.stderr.write(f"appnet: {e or 'interrupted'}\n")
        raise SystemExit(1) from None

    async def run(reactor: Any) -> None:
        context = Context(reactor, config)
        try:
            await command.run(context)
        finally:
            await context.close()

    def start(reactor: Any) -> Deferred[None]:
        d = Deferred.fromCoroutine(run(reactor))

        def report(failure: Any) -> None:
            if failure.check(AppnetError, ConfigError):
                sys.stderr.write(f"appnet: {failure.value}\n")
                raise SystemExit(1)
            return failure

        return d.addErrback(report)

    react(start)
