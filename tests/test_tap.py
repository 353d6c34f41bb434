"""
Tests for L{appnet.tap} and the twistd plugin: options, one-line start-up
errors, plugin discovery, and the real C{twistd} process.
"""

from __future__ import annotations

import gc
import io
import os
import signal
import socket
import sys
from typing import Any

from twisted.internet import reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.config import describe
from appnet.errors import ConfigError
from appnet.stack import Stack
from appnet.tap import Options, TwistdRunner, makeService
from appnet.testing import ephemeralConfig
from tests.helpers import echoBuilder
from tests.process import TWISTD, run, spawn, stop, terminate

ROOT = FilePath(__file__).parent().parent()


class OptionsTests(SynchronousTestCase):
    """
    Options become TOML-shaped overrides that name the option.
    """

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(list(args))
        return options

    def test_overrides(self) -> None:
        options = self.parse(
            "--smtp",
            "tcp:25",
            "--smtp",
            "tcp6:25",
            "--dns",
            "127.0.0.1:53",
            "--dns-forward",
            "127.0.0.1:5353",
            "--relay-port",
            "2526",
            "--domain",
            "crepes.fr",
            "--disable",
            "ftp",
            "--hostname",
            "mx.crepes.fr",
            "--trace",
            "smtp,pop3",
            "--data",
            "/srv/appnet",
        )
        raw, names = options.overrides()
        self.assertEqual(
            raw,
            {
                "smtp": {"listen": ["tcp:25", "tcp6:25"]},
                "dns": {"listen": "127.0.0.1:53", "forward": ["127.0.0.1:5353"]},
                "mail": {"relay_port": 2526, "domains": ["crepes.fr"]},
                "ftp": {"enabled": False},
                "hostname": "mx.crepes.fr",
                "trace": "smtp,pop3",
                "data": "/srv/appnet",
            },
        )
        self.assertEqual(names["smtp.listen"], "--smtp")
        config = options.loadConfig()
        self.assertEqual(config.trace, frozenset({"smtp", "pop3"}))

    def test_badPort(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            self.parse("--relay-port", "twenty-five").overrides()
        self.assertEqual(caught.exception.key, "--relay-port")

    def test_unknownService(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            self.parse("--disable", "gopher").overrides()
        self.assertIn("gopher", str(caught.exception))

    def test_badOptionIsOneLine(self) -> None:
        """An unknown option exits 1 with one line, not twistd's help."""
        stderr = io.StringIO()
        self.patch(sys, "__stderr__", stderr)
        with self.assertRaises(SystemExit) as caught:
            self.parse("--bogus")
        self.assertEqual(caught.exception.code, 1)
        self.assertEqual(
            stderr.getvalue(),
            "appnet: option --bogus not recognized (see twistd appnet --help)\n",
        )

    def test_badConfigIsOneLine(self) -> None:
        stderr = io.StringIO()
        self.patch(sys, "__stderr__", stderr)
        with self.assertRaises(SystemExit):
            makeService(self.parse("--smtp", "tcp:nope"))
        self.assertEqual(
            stderr.getvalue().splitlines(),
            [
                "appnet: --smtp: smtp.listen[0]: bad endpoint 'tcp:nope':"
                " invalid literal for int() with base 10: 'nope'"
            ],
        )

    def test_helpDocumentsEveryOption(self) -> None:
        """
        Every option of the design's command-line contract is in --help.
        """
        text = str(Options())
        for option in (
            "--config",
            "--data",
            "--http",
            "--ftp",
            "--smtp",
            "--submission",
            "--pop3",
            "--imap",
            "--dns",
            "--dns-forward",
            "--dns-root-hints",
            "--dns-upstream-port",
            "--resolver",
            "--relay-port",
            "--hostname",
            "--domain",
            "--disable",
            "--trace",
        ):
            self.assertIn(option + "=", text)

    def test_everyConfigKeyHasAnExample(self) -> None:
        """tap/example.toml shows every table's keys."""
        example = ROOT.child("tap").child("example.toml").getContent().decode()
        for key, _, _ in describe():
            table, _, name = key.rpartition(".")
            if table:
                self.assertIn(f"[{table}]", example)
            self.assertIn(name, example, key)


class RunnerTests(TestCase):
    """
    L{TwistdRunner} turns start-up failures into one line and status 1.
    """

    def test_portInUse(self) -> None:
        blocker = socket.socket()
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        endpoint = f"tcp:{blocker.getsockname()[1]}:interface=127.0.0.1"
        config = ephemeralConfig(self.mktemp(), {"pop3": {"listen": [endpoint]}})
        runner = TwistdRunner(Stack(config, reactor, builders=[echoBuilder("pop3")]))
        stderr = io.StringIO()
        self.patch(sys, "__stderr__", stderr)
        with self.assertRaises(SystemExit) as caught:
            runner.privilegedStartService()
        self.assertEqual(caught.exception.code, 1)
        self.assertEqual(
            stderr.getvalue(),
            f"appnet: pop3: cannot listen on {endpoint}: Address already in use\n",
        )

    def test_newerStore(self) -> None:
        """A store from a newer appnet stops start-up with one line."""
        data = self.mktemp()
        config = ephemeralConfig(data)
        from appnet.store._db import Migration
        from appnet.store.sqlite import migrateFile

        os.makedirs(data)
        migrateFile(os.path.join(data, "store.sqlite"), {"users": [Migration(99, "")]})
        runner = TwistdRunner(Stack(config, reactor, builders=[]))
        stderr = io.StringIO()
        self.patch(sys, "__stderr__", stderr)
        with self.assertRaises(SystemExit):
            runner.privilegedStartService()
        self.assertIn("newer than this appnet", stderr.getvalue())
        self.assertEqual(len(stderr.getvalue().splitlines()), 1)

    async def test_freezesOnceReady(self) -> None:
        """
        Once the stack is ready, what starting it made is moved out of the
        garbage collector's way (C{gc.freeze}), not before.
        """
        config = ephemeralConfig(self.mktemp(), {"pop3": {"listen": []}})
        runner = TwistdRunner(Stack(config, reactor, builders=[]))
        frozen: list[bool] = []
        self.patch(gc, "freeze", lambda: frozen.append(runner.stack.running))
        runner.privilegedStartService()
        runner.startService()
        self.addCleanup(runner.stopService)
        self.assertEqual(frozen, [])
        await runner.stack.whenReady()
        self.assertEqual(frozen, [True])


def ephemeralArgs(data: str) -> list[str]:
    """twistd appnet options putting every service on a free loopback port."""
    args = ["--data", data, "--dns", "127.0.0.1:0"]
    for name in ("http", "ftp", "smtp", "submission", "pop3", "imap"):
        args += [f"--{name}", "tcp:0:interface=127.0.0.1"]
    return args


class ProcessTests(TestCase):
    """
    The real C{twistd}, in a subprocess.
    """

    timeout = 60

    def setUp(self) -> None:
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)

    async def test_pluginListed(self) -> None:
        """
        C{twistd --help} lists appnet: a plugin that fails to import would
        silently vanish from this list.
        """
        outcome = await run(["-c", TWISTD, "--help"], self.cwd)
        self.assertIn("appnet", outcome.out)
        self.assertNotIn("Traceback", outcome.out + outcome.err)

    async def test_badConfigExits(self) -> None:
        """A bad config exits 1 with one line on stderr and no traceback."""
        FilePath(self.cwd).child("bad.toml").setContent(b"[smtp]\nport = 25\n")
        outcome = await run(
            ["-c", TWISTD, "-n", "--pidfile=", "appnet", "--config", "bad.toml"],
            self.cwd,
        )
        self.assertEqual(outcome.code, 1)
        self.assertEqual(outcome.err, "appnet: bad.toml: smtp.port: unknown setting\n")
        self.assertNotIn("Traceback", outcome.out)

    async def test_startsAndStops(self) -> None:
        """
        C{twistd -n appnet} creates the data directory, starts, and stops
        cleanly on SIGTERM.
        """
        data = os.path.join(self.cwd, "data")
        collector, pid = spawn(
            ["-c", TWISTD, "-n", "--pidfile=", "appnet", *ephemeralArgs(data)], self.cwd
        )
        self.addCleanup(stop, collector, pid)
        await collector.waitFor(b"appnet ready")
        self.assertTrue(os.path.isfile(os.path.join(data, "store.sqlite")))
        terminate(pid)
        outcome = await collector.ended
        self.assertIn("appnet stopped", outcome.out)
        self.assertNotIn("Traceback", outcome.out + outcome.err)

    async def test_tac(self) -> None:
        """C{twistd -ny tap/appnet.tac} builds the same stack."""
        data = os.path.join(self.cwd, "data")
        collector, pid = spawn(
            [
                "-c",
                TWISTD,
                "-n",
                "--pidfile=",
                "-y",
                ROOT.child("tap").child("appnet.tac").path,
            ],
            self.cwd,
            env={"APPNET_ARGS": " ".join(ephemeralArgs(data))},
        )
        self.addCleanup(stop, collector, pid)
        await collector.waitFor(b"appnet ready")
        self.assertTrue(os.path.isdir(os.path.join(data, "mail")))
        terminate(pid)
        outcome = await collector.ended
        self.assertNotIn("Traceback", outcome.out + outcome.err)


class DaemonPaperCutTests(TestCase):
    """
    A second daemon in one directory, a failed start, and SIGHUP for TLS,
    with the real C{twistd}.
    """

    timeout = 60

    def setUp(self) -> None:
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)
        self.data = os.path.join(self.cwd, "data")
        self.pidfile = os.path.join(self.cwd, "twistd.pid")

    def start(self) -> tuple[Any, int]:
        collector, pid = spawn(
            ["-c", TWISTD, "-n", "appnet", *ephemeralArgs(self.data)], self.cwd
        )
        self.addCleanup(stop, collector, pid)
        return collector, pid

    async def test_secondInstance(self) -> None:
        """
        A second C{twistd -n appnet} in the same directory says in one
        line that one is running, with its PID, and leaves it running.
        """
        collector, pid = self.start()
        await collector.waitFor(b"appnet ready")
        outcome = await run(
            ["-c", TWISTD, "-n", "appnet", *ephemeralArgs(self.data)], self.cwd
        )
        self.assertEqual(outcome.code, 1)
        self.assertEqual(
            outcome.err,
            f"appnet: already running here with PID {pid} (twistd.pid); stop it,"
            " or start this one in another directory or with --pidfile\n",
        )
        self.assertTrue(os.path.exists(self.pidfile))
        os.kill(pid, 0)

    async def test_failedStartRemovesPidfile(self) -> None:
        """A start that fails (port in use) leaves no pidfile behind."""
        blocker = socket.socket()
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        outcome = await run(
            [
                "-c", TWISTD, "-n", "appnet", *ephemeralArgs(self.data),
                "--pop3", f"tcp:{port}:interface=127.0.0.1",
            ],
            self.cwd,
        )  # fmt: skip
        self.assertEqual(outcome.code, 1)
        self.assertIn("pop3: cannot listen on", outcome.err)
        self.assertFalse(os.path.exists(self.pidfile))

    async def test_sighupLoadsCertificate(self) -> None:
        """
        C{appnet cert} on a running stack takes effect on SIGHUP: the
        certificate is loaded and logged, without a restart.
        """
        collector, pid = self.start()
        await collector.waitFor(b"appnet ready")
        made = await run(
            ["-m", "appnet", "--data", self.data, "cert", "--hostname", "mx.test"],
            self.cwd,
        )
        self.assertEqual(made.code, 0, made.err)
        os.kill(pid, signal.SIGHUP)
        await collector.waitFor(b"tls: loaded")
        self.assertIn("mx.test", collector.out.decode())
        terminate(pid)
        outcome = await collector.ended
        self.assertNotIn("Traceback", outcome.out + outcome.err)
