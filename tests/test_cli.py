"""
Tests for the C{appnet} command, run as a real process.
"""

from __future__ import annotations

import os
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from appnet.auth import verifyPassword
from appnet.store.sqlite import SQLiteStore
from tests.process import Outcome, run


class CLITests(TestCase):
    """
    C{appnet user ...} and C{appnet cert}.
    """

    timeout = 60

    def setUp(self) -> None:
        self.cwd = os.path.abspath(self.mktemp())
        self.data = os.path.join(self.cwd, "data")
        os.makedirs(self.cwd)

    def appnet(self, *args: str, stdin: bytes | None = None) -> Outcome:
        return run(
            ["-m", "appnet", *args],
            self.cwd,
            env={"APPNET_DATA": self.data},
            stdin=stdin,
        )  # type: ignore[return-value]

    async def users(self) -> dict[str, str]:
        store = SQLiteStore.open(os.path.join(self.data, "store.sqlite"), reactor)
        await store.start()
        try:
            return {u.address: u.passwordHash for u in await store.users.listUsers()}
        finally:
            await store.stop()

    async def test_userLifecycle(self) -> None:
        """add, list, passwd, del: each changes the store as it says."""
        added = await self.appnet(
            "user",
            "add",
            "Alice@Example.ORG",
            "--password-stdin",
            stdin=b"first-password\n",
        )
        self.assertEqual(added.code, 0, added.err)
        self.assertIn("added alice@example.org", added.out)
        self.assertIn("mail for example.org is now delivered locally", added.out)
        stored = await self.users()
        self.assertTrue(verifyPassword("first-password", stored["alice@example.org"]))
        self.assertTrue(stored["alice@example.org"].startswith("$scrypt$ln=15,"))

        listed = await self.appnet("user", "list")
        self.assertTrue(listed.out.startswith("alice@example.org\t"))

        changed = await self.appnet(
            "user",
            "passwd",
            "alice@example.org",
            "--password-stdin",
            stdin=b"second-password\n",
        )
        self.assertEqual(changed.code, 0, changed.err)
        stored = await self.users()
        self.assertTrue(verifyPassword("second-password", stored["alice@example.org"]))

        deleted = await self.appnet("user", "del", "alice@example.org")
        self.assertEqual(deleted.code, 0, deleted.err)
        self.assertEqual(await self.users(), {})

    async def test_adminAndQuota(self) -> None:
        added = await self.appnet(
            "user",
            "add",
            "bob@hamburger.edu",
            "--admin",
            "--quota",
            "10M",
            "--password-stdin",
            stdin=b"bob-password\n",
        )
        self.assertEqual(added.code, 0, added.err)
        listed = await self.appnet("user", "list")
        self.assertIn("admin quota=10485760", listed.out)

    async def apopSecrets(self) -> dict[str, str | None]:
        store = SQLiteStore.open(os.path.join(self.data, "store.sqlite"), reactor)
        await store.start()
        try:
            return {
                u.address: await store.users.getAPOPSecret(u.address)
                for u in await store.users.listUsers()
            }
        finally:
            await store.stop()

    async def test_apopSecret(self) -> None:
        """
        user apop sets a separate APOP secret (refusing the login
        password), list shows the apop flag, passwd leaves the secret
        (and refuses it as the password), --clear removes it.
        """
        await self.appnet(
            "user", "add", "alice@example.org", "--password-stdin",
            stdin=b"login-password\n",
        )  # fmt: skip
        same = await self.appnet(
            "user", "apop", "alice@example.org", "--password-stdin",
            stdin=b"login-password\n",
        )  # fmt: skip
        self.assertEqual(
            (same.code, same.err),
            (1, "appnet: the APOP secret must differ from the login password\n"),
        )
        self.assertEqual(await self.apopSecrets(), {"alice@example.org": None})

        added = await self.appnet(
            "user", "apop", "Alice@Example.ORG", "--password-stdin",
            stdin=b"apop-secret\n",
        )  # fmt: skip
        self.assertEqual(added.code, 0, added.err)
        self.assertEqual(
            added.out,
            "APOP secret set for alice@example.org\n"
            "APOP is off: set [pop3] apop = true to offer it\n",
        )
        self.assertEqual(await self.apopSecrets(), {"alice@example.org": "apop-secret"})
        listed = await self.appnet("user", "list")
        self.assertTrue(listed.out.rstrip("\n").endswith("\tapop"), listed.out)

        clash = await self.appnet(
            "user", "passwd", "alice@example.org", "--password-stdin",
            stdin=b"apop-secret\n",
        )  # fmt: skip
        self.assertEqual(
            (clash.code, clash.err),
            (1, "appnet: the password must differ from the APOP secret\n"),
        )
        changed = await self.appnet(
            "user", "passwd", "alice@example.org", "--password-stdin",
            stdin=b"new-login-password\n",
        )  # fmt: skip
        self.assertEqual(changed.code, 0, changed.err)
        self.assertEqual(await self.apopSecrets(), {"alice@example.org": "apop-secret"})

        cleared = await self.appnet("user", "apop", "alice@example.org", "--clear")
        self.assertEqual(cleared.code, 0, cleared.err)
        self.assertEqual(cleared.out, "APOP secret removed for alice@example.org\n")
        self.assertEqual(await self.apopSecrets(), {"alice@example.org": None})
        listed = await self.appnet("user", "list")
        self.assertNotIn("apop", listed.out)

    async def test_apopErrors(self) -> None:
        """user apop's mistakes: one line and status 1, usage errors status 2."""
        for args, stdin, code, message in [
            (
                ("user", "apop", "c@x.org", "--password-stdin"),
                b"apop-secret\n",
                1,
                "appnet: no such user: c@x.org\n",
            ),
            (
                ("user", "apop", "c@x.org", "--clear"),
                None,
                1,
                "appnet: no such user: c@x.org\n",
            ),
            (
                ("user", "apop", "c@x.org", "--password-stdin"),
                b"short\n",
                1,
                "appnet: APOP secret too short: use at least 8 characters\n",
            ),
            (
                ("user", "apop", "c@x.org", "--clear", "--password-stdin"),
                b"apop-secret\n",
                2,
                "appnet: --clear reads no secret\n(see appnet user apop --help)\n",
            ),
        ]:
            outcome = await self.appnet(*args, stdin=stdin)
            self.assertEqual((outcome.code, outcome.err), (code, message), args)

    async def test_errorsAreOneLine(self) -> None:
        """User mistakes give one line and status 1; usage errors status 2."""
        await self.appnet(
            "user", "add", "a@x.org", "--password-stdin", stdin=b"password-1\n"
        )
        for args, stdin, code, message in [
            (
                ("user", "add", "a@x.org", "--password-stdin"),
                b"password-2\n",
                1,
                "appnet: user a@x.org already exists\n",
            ),
            (
                ("user", "add", "b@x.org", "--password-stdin"),
                b"short\n",
                1,
                "appnet: password too short: use at least 8 characters\n",
            ),
            (
                ("user", "add", "not-an-address", "--password-stdin"),
                b"password-3\n",
                1,
                "appnet: bad address 'not-an-address': expected local@domain\n",
            ),
            (("user", "del", "c@x.org"), None, 1, "appnet: no such user: c@x.org\n"),
            (
                ("user", "passwd", "c@x.org", "--password-stdin"),
                b"password-4\n",
                1,
                "appnet: no such user: c@x.org\n",
            ),
            (
                ("user", "add", "b@x.org", "--password-stdin"),
                b"",
                1,
                "appnet: no password given\n",
            ),
        ]:
            outcome = await self.appnet(*args, stdin=stdin)
            self.assertEqual((outcome.code, outcome.err), (code, message), args)
        usage = await self.appnet("user", "frobnicate")
        self.assertEqual(usage.code, 2)
        self.assertNotIn("Traceback", usage.err)

    async def test_cert(self) -> None:
        """cert writes a certificate and key, and will not overwrite them."""
        made = await self.appnet("cert", "--hostname", "mail.example.org")
        self.assertEqual(made.code, 0, made.err)
        tls = os.path.join(self.data, "tls")
        self.assertEqual(sorted(os.listdir(tls)), ["cert.pem", "key.pem"])
        again = await self.appnet("cert")
        self.assertEqual(again.code, 1)
        self.assertIn("use --force", again.err)
        forced = await self.appnet("cert", "--force")
        self.assertEqual(forced.code, 0, forced.err)


def _closedPort() -> int:
    """A loopback TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Run the command in a new session: no controlling terminal, as under CI
#: or cron, whatever terminal the tests were started from.
_DETACHED = (
    "import os, runpy, sys; os.setsid(); sys.argv[0] = 'appnet';"
    " runpy.run_module('appnet', run_name='__main__')"
)


class PaperCutTests(TestCase):
    """
    The command's messages: usage lines, hints, passwords without a
    terminal, and one wording for servers that cannot be reached.
    """

    timeout = 60

    def setUp(self) -> None:
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)

    def appnet(self, *args: str, stdin: bytes | None = b"") -> Deferred[Outcome]:
        return Deferred.fromCoroutine(
            run(
                ["-c", _DETACHED, *args],
                self.cwd,
                env={"APPNET_DATA": os.path.join(self.cwd, "data")},
                stdin=stdin,
            )
        )

    async def test_subcommandUsage(self) -> None:
        """
        A subcommand's help starts with a usage line that reads as the
        command is typed, and offers appnet's version, not Twisted's.
        """
        outcome = await self.appnet("user", "add", "--help")
        self.assertEqual(outcome.code, 0)
        first = outcome.out.splitlines()[0]
        self.assertTrue(first.startswith("Usage: appnet user add ADDRESS"), first)
        self.assertNotIn("Twisted", outcome.out)
        dig = await self.appnet("dig", "--help")
        self.assertIn("[-x ADDRESS]", dig.out)
        self.assertIn("-x, --reverse=", dig.out)

    async def test_unknownSubcommand(self) -> None:
        """A mistyped subcommand points to its own group's help."""
        outcome = await self.appnet("ftp", "frob")
        self.assertEqual(outcome.code, 2)
        self.assertEqual(
            outcome.err, "appnet: Unknown command: frob\n(see appnet ftp --help)\n"
        )

    async def test_missingDataDirectory(self) -> None:
        """
        C{--data} naming a directory that does not exist is refused in one
        line; only the daemon's first start creates it.
        """
        outcome = await self.appnet("--data", "nothere", "user", "list")
        self.assertEqual(outcome.code, 1)
        self.assertEqual(
            outcome.err,
            "appnet: data directory nothere does not exist"
            " (twistd -n appnet makes it on first start)\n",
        )
        self.assertFalse(os.path.exists(os.path.join(self.cwd, "nothere")))

    async def test_noTerminalNoPassword(self) -> None:
        """
        Without a terminal to prompt on, a command that needs a password
        and got none says so in one line and exits non-zero; it never
        sends an empty password.
        """
        port = _closedPort()
        expected = (
            "appnet: no password given and no terminal to ask on:"
            " use --password-stdin\n"
        )
        for args in [
            (
                "mail",
                "send",
                "--from",
                "a@x.org",
                "--to",
                "b@y.org",
                "--subject",
                "s",
                "--body",
                "b",
                "--user",
                "a@x.org",
                "--server",
                f"127.0.0.1:{port}",
            ),
            ("ftp", "ls", f"ftp://bob@127.0.0.1:{port}/"),
        ]:
            outcome = await self.appnet(*args)
            self.assertEqual((outcome.code, outcome.err), (1, expected), args)

    async def test_cannotConnect(self) -> None:
        """
        Every client command words an unreachable server the same way:
        C{cannot connect to HOST:PORT: connection refused}.
        """
        port = _closedPort()
        where = f"127.0.0.1:{port}"
        password = b"password-1\n"
        for args in [
            ("fetch", f"http://{where}/"),
            ("ftp", "ls", f"ftp://bob@{where}/", "--password-stdin"),
            (
                "mail",
                "send",
                "--from",
                "a@x.org",
                "--to",
                "b@y.org",
                "--subject",
                "s",
                "--body",
                "b",
                "--user",
                "a@x.org",
                "--password-stdin",
                "--server",
                where,
            ),
            (
                "mail",
                "fetch",
                "--pop3",
                where,
                "--user",
                "a@x.org",
                "--out",
                "m",
                "--password-stdin",
            ),
            (
                "mail",
                "imap",
                "ls",
                "--imap",
                where,
                "--user",
                "a@x.org",
                "--password-stdin",
            ),
            ("dig", "example.org", f"@{where}", "+tcp", "+tries=1"),
        ]:
            outcome = await self.appnet(*args, stdin=password)
            self.assertEqual(
                (outcome.code, outcome.err),
                (1, f"appnet: cannot connect to {where}: connection refused\n"),
                args,
            )
