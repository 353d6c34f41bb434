"""
Tests for L{appnet.config}: defaults, layering and every error path.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from appnet.config import Config, describe, loadConfig, parseHostPort, parseSize
from appnet.errors import ConfigError


class DefaultsTests(SynchronousTestCase):
    """
    With no file and no options, the config is the zero-config table.
    """

    def test_endpointDefaults(self) -> None:
        """
        Every endpoint service listens on loopback on its unprivileged port.
        """
        config = loadConfig(env={})
        self.assertEqual(
            {
                name: config.service(name).listen
                for name in ("http", "ftp", "smtp", "submission", "pop3", "imap")
            },
            {
                "http": ("tcp:8080:interface=127.0.0.1",),
                "ftp": ("tcp:2121:interface=127.0.0.1",),
                "smtp": ("tcp:2525:interface=127.0.0.1",),
                "submission": ("tcp:2587:interface=127.0.0.1",),
                "pop3": ("tcp:1110:interface=127.0.0.1",),
                "imap": ("tcp:1143:interface=127.0.0.1",),
            },
        )

    def test_otherDefaults(self) -> None:
        """
        DNS on 127.0.0.1:1053 recursing for loopback only, passive FTP ports
        30000-30099, relay port 25, every service enabled.
        """
        config = loadConfig(env={})
        self.assertEqual(config.dns.listen, ("127.0.0.1", 1053))
        self.assertEqual(config.dns.allow_recursion, ("127.0.0.0/8", "::1/128"))
        self.assertEqual(config.ftp.passive_ports, (30000, 30099))
        self.assertEqual(config.mail.relay_port, 25)
        self.assertEqual(
            config.enabled(),
            ["dns", "smtp", "submission", "pop3", "imap", "ftp", "http"],
        )
        self.assertTrue(config.hostname)

    def test_everySettingDescribed(self) -> None:
        """
        Every setting has a one-line description (used by help texts).
        """
        rows = describe()
        self.assertIn("smtp.listen", [key for key, _, _ in rows])
        for key, _, doc in rows:
            self.assertTrue(doc, key)


class DataDirTests(SynchronousTestCase):
    """
    The data directory is the option, else the config key, else
    $APPNET_DATA, else ./appnet-data.
    """

    def test_default(self) -> None:
        self.assertEqual(loadConfig(env={}).data, "appnet-data")

    def test_environment(self) -> None:
        self.assertEqual(loadConfig(env={"APPNET_DATA": "/srv/a"}).data, "/srv/a")

    def test_configBeatsEnvironment(self) -> None:
        config = loadConfig(None, {"data": "/srv/b"}, env={"APPNET_DATA": "/srv/a"})
        self.assertEqual(config.data, "/srv/b")


class FileTests(SynchronousTestCase):
    """
    Settings come from a TOML file and options override them.
    """

    def write(self, text: str) -> str:
        path = FilePath(self.mktemp())
        path.setContent(text.encode("utf-8"))
        return path.path

    def test_fileSettings(self) -> None:
        """
        Tables and keys of the file set the matching settings; sizes and
        durations accept units.
        """
        path = self.write(
            'hostname = "Mail.Example.ORG."\n'
            '[smtp]\nlisten = ["tcp:25", "tcp6:25"]\nidle_timeout = "2m"\n'
            '[mail]\ndomains = ["crepes.fr"]\n'
            '[dns]\nforward = ["127.0.0.1:53", "[::1]"]\n'
            "[ftp]\nenabled = false\n"
        )
        config = loadConfig(path, env={})
        self.assertEqual(config.hostname, "mail.example.org")
        self.assertEqual(config.smtp.listen, ("tcp:25", "tcp6:25"))
        self.assertEqual(config.smtp.idle_timeout, 120.0)
        self.assertEqual(config.mail.domains, ("crepes.fr",))
        self.assertEqual(config.dns.forward, (("127.0.0.1", 53), ("::1", 53)))
        self.assertNotIn("ftp", config.enabled())

    def test_optionsOverrideFile(self) -> None:
        """
        An override replaces the file's value; the rest of the table stays.
        """
        path = self.write('[smtp]\nlisten = ["tcp:25"]\nidle_timeout = 10\n')
        config = loadConfig(path, {"smtp": {"listen": ["tcp:2500"]}}, env={})
        self.assertEqual(config.smtp.listen, ("tcp:2500",))
        self.assertEqual(config.smtp.idle_timeout, 10)

    def test_exampleConfigLoads(self) -> None:
        """
        The shipped example config is valid.
        """
        example = (
            FilePath(__file__).parent().parent().child("tap").child("example.toml")
        )
        config = loadConfig(example.path, env={})
        self.assertEqual(config.mail.domains, ("example.org",))


class ErrorTests(SynchronousTestCase):
    """
    Every bad setting is a L{ConfigError} naming the key and its source.
    """

    def fails(
        self, raw: dict[str, Any], key: str, fragment: str, names: Any = None
    ) -> ConfigError:
        with self.assertRaises(ConfigError) as caught:
            loadConfig(None, raw, names, env={})
        error = caught.exception
        self.assertEqual(error.key, key)
        self.assertIn(fragment, error.problem)
        return error

    def test_unknownTopLevelKey(self) -> None:
        self.fails({"colour": "blue"}, "colour", "unknown setting")

    def test_unknownTable(self) -> None:
        """A table that is no section of the config is called a section."""
        self.fails({"gopher": {"listen": []}}, "gopher", "unknown section")

    def test_sectionTypo(self) -> None:
        """A mistyped section name is unknown, and the near one is named."""
        error = self.fails({"pop": {"listen": ["tcp:1110"]}}, "pop", "unknown section")
        self.assertEqual(error.problem, "unknown section (did you mean pop3?)")

    def test_unknownNestedKey(self) -> None:
        error = self.fails(
            {"smtp": {"lisen": ["tcp:25"]}}, "smtp.lisen", "unknown setting"
        )
        self.assertEqual(error.problem, "unknown setting (did you mean smtp.listen?)")

    def test_endpointOptionTypo(self) -> None:
        """
        A bad option in an endpoint is named; the endpoint parser's own
        function name never reaches the user.
        """
        error = self.fails(
            {"smtp": {"listen": ["tcp:2525:foo=bar"]}}, "smtp.listen[0]", "foo"
        )
        self.assertEqual(
            error.problem, "bad endpoint 'tcp:2525:foo=bar': unknown option 'foo'"
        )
        self.assertNotIn("_parse", str(error))

    def test_durationUnits(self) -> None:
        """
        A duration takes a unit; a bare number is seconds, as the example
        config states, and a bad one says both.
        """
        config = loadConfig(None, {"smtp": {"idle_timeout": 5}}, env={})
        self.assertEqual(config.smtp.idle_timeout, 5.0)
        config = loadConfig(None, {"smtp": {"idle_timeout": "5m"}}, env={})
        self.assertEqual(config.smtp.idle_timeout, 300.0)
        error = self.fails({"smtp": {"idle_timeout": "5 min"}}, "smtp.idle_timeout", "")
        self.assertIn("a bare number is seconds", error.problem)

    def test_tableExpected(self) -> None:
        self.fails({"smtp": 25}, "smtp", "expected a table, got an integer")

    def test_boolExpected(self) -> None:
        self.fails({"smtp": {"enabled": "yes"}}, "smtp.enabled", "true or false")

    def test_intExpected(self) -> None:
        self.fails({"mail": {"relay_port": "25"}}, "mail.relay_port", "an integer")

    def test_intNotBool(self) -> None:
        self.fails({"mail": {"relay_port": True}}, "mail.relay_port", "an integer")

    def test_intRange(self) -> None:
        self.fails({"mail": {"relay_port": 70000}}, "mail.relay_port", "between")

    def test_stringExpected(self) -> None:
        self.fails({"hostname": 7}, "hostname", "expected a string")

    def test_badHostname(self) -> None:
        self.fails({"hostname": "no spaces.org x"}, "hostname", "not a domain")

    def test_listExpected(self) -> None:
        self.fails({"mail": {"domains": 3}}, "mail.domains", "expected a list")

    def test_badListItemNamesIndex(self) -> None:
        self.fails(
            {"mail": {"domains": ["ok.org", "bad_domain!"]}},
            "mail.domains[1]",
            "not a domain",
        )

    def test_badEndpoint(self) -> None:
        error = self.fails(
            {"http": {"listen": ["tcp:8080", "tcp:eighty"]}},
            "http.listen[1]",
            "bad endpoint 'tcp:eighty'",
        )
        self.assertEqual(error.source, None)

    def test_unknownEndpointType(self) -> None:
        self.fails({"http": {"listen": ["carrier-pigeon:1"]}}, "http.listen[0]", "bad")

    def test_unreadableCertificateInEndpoint(self) -> None:
        """
        An C{ssl:} endpoint naming a missing key file is a config error.
        """
        missing = self.mktemp()
        self.fails(
            {"http": {"listen": [f"ssl:8443:privateKey={missing}"]}},
            "http.listen[0]",
            "No such file",
        )

    def test_badHostPort(self) -> None:
        self.fails({"dns": {"listen": "127.0.0.1:x"}}, "dns.listen", "HOST:PORT")

    def test_badForwarder(self) -> None:
        self.fails(
            {"dns": {"forward": ["1.1.1.1:99999"]}}, "dns.forward[0]", "out of range"
        )

    def test_badNetwork(self) -> None:
        self.fails(
            {"dns": {"allow_recursion": ["10.0.0.0/33"]}},
            "dns.allow_recursion[0]",
            "network",
        )

    def test_badAddress(self) -> None:
        self.fails(
            {"dns": {"allow_transfer": ["host.example"]}},
            "dns.allow_transfer[0]",
            "IP address",
        )

    def test_badPortRange(self) -> None:
        self.fails(
            {"ftp": {"passive_ports": "3000-2000"}}, "ftp.passive_ports", "range"
        )

    def test_badDuration(self) -> None:
        self.fails({"auth": {"window": "soon"}}, "auth.window", "duration")

    def test_badTraceName(self) -> None:
        self.fails({"trace": ["smtp", "gopher"]}, "trace[1]", "expected one of")

    def test_tlsHalfSet(self) -> None:
        self.fails({"tls": {"cert": "c.pem"}}, "tls.key", "together")

    def test_forwardAndHints(self) -> None:
        self.fails(
            {"dns": {"forward": ["127.0.0.1"], "root_hints": "hints"}},
            "dns.forward",
            "not both",
        )

    def test_optionNamed(self) -> None:
        """
        A bad value set by a command-line option names the option.
        """
        error = self.fails(
            {"smtp": {"listen": ["tcp:x"]}},
            "smtp.listen[0]",
            "bad endpoint",
            {"smtp.listen": "--smtp"},
        )
        self.assertEqual(error.source, "--smtp")
        self.assertTrue(str(error).startswith("--smtp: smtp.listen[0]: "))

    def test_fileNamed(self) -> None:
        """
        A bad value from the file names the file.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"[pop3]\nlisten = [1]\n")
        with self.assertRaises(ConfigError) as caught:
            loadConfig(path.path, env={})
        self.assertEqual(
            str(caught.exception),
            f"{path.path}: pop3.listen[0]: expected a string, got an integer",
        )

    def test_unreadableFile(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            loadConfig(self.mktemp(), env={})
        self.assertEqual(caught.exception.key, "--config")
        self.assertIn("cannot read", caught.exception.problem)

    def test_invalidTOML(self) -> None:
        path = FilePath(self.mktemp())
        path.setContent(b"[smtp\n")
        with self.assertRaises(ConfigError) as caught:
            loadConfig(path.path, env={})
        self.assertIn("not valid TOML", caught.exception.problem)
        self.assertIn("line 1", caught.exception.problem)


class HelperTests(SynchronousTestCase):
    """
    The small parsers other modules reuse.
    """

    def test_hostPort(self) -> None:
        self.assertEqual(parseHostPort("127.0.0.2:53"), ("127.0.0.2", 53))
        self.assertEqual(parseHostPort("[::1]:5353"), ("::1", 5353))
        self.assertEqual(parseHostPort("ns.example", 53), ("ns.example", 53))
        self.assertRaises(ValueError, parseHostPort, "ns.example")
        self.assertRaises(ValueError, parseHostPort, "::1:53")

    def test_size(self) -> None:
        self.assertEqual(parseSize("10M"), 10 * 1024 * 1024)
        self.assertEqual(parseSize("512KiB"), 512 * 1024)
        self.assertEqual(parseSize(42), 42)
        self.assertRaises(ValueError, parseSize, "lots")

    def test_configIsImmutable(self) -> None:
        config = Config()
        self.assertRaises(AttributeError, setattr, config, "hostname", "x")


class StoreConfigTests(SynchronousTestCase):
    """The [store] table: SQLite by default, or a PostgreSQL URL."""

    def test_defaultSQLite(self) -> None:
        """With no URL, the store is SQLite in the data directory."""
        self.assertEqual(loadConfig(None, {}).store.url, "")

    def test_url(self) -> None:
        """A postgresql:// URL is kept as given, libpq parameters and all."""
        url = "postgresql://appnet@db.example.org/appnet?sslmode=verify-full"
        self.assertEqual(loadConfig(None, {"store": {"url": url}}).store.url, url)

    def test_passwordRefused(self) -> None:
        """
        A URL holding a password is refused, naming the key: passwords
        belong in a file.
        """
        for url in (
            "postgresql://appnet:secret@db.example.org/appnet",
            "postgresql://appnet@db.example.org/appnet?password=secret",
        ):
            with self.assertRaises(ConfigError) as caught:
                loadConfig(None, {"store": {"url": url}})
            self.assertIn("store.url", str(caught.exception))
            self.assertNotIn("secret", str(caught.exception))

    def test_notPostgreSQL(self) -> None:
        """Another scheme is refused."""
        with self.assertRaises(ConfigError):
            loadConfig(None, {"store": {"url": "mysql://db/appnet"}})


def _schema(cls: type, table: str = "") -> dict[str, set[str]]:
    """Every key of every table of the configuration, by table name."""
    keys: dict[str, set[str]] = {table: set()}
    for f in attrs.fields(cls):
        if "parse" in f.metadata:
            keys[table].add(f.name)
            continue
        factory = getattr(f.default, "factory", None)
        if factory is not None and attrs.has(type(factory())):
            keys.update(_schema(type(factory()), f"{table}.{f.name}".lstrip(".")))
    return keys


_SECTION = re.compile(r"^(?:# ?)?\[\[?([a-z0-9_.]+)\]\]?")
_KEY = re.compile(r"^(?:# ?)?([a-z][a-z0-9_]*) *= ")


def _exampleKeys(text: str, schema: dict[str, set[str]]) -> dict[str, set[str]]:
    """
    The keys the example shows, set or commented out, by table. A table
    (or array of tables, commented out or not) that is itself a setting
    (C{[mail.aliases]}, C{[[dns.secondary]]}) counts as that key, and its
    entries are examples, not keys.
    """
    keys: dict[str, set[str]] = {"": set()}
    table: str | None = ""
    for line in text.splitlines():
        section = _SECTION.match(line)
        if section:
            name = section.group(1)
            parent, _, leaf = name.rpartition(".")
            if name not in schema and leaf in schema.get(parent, ()):
                keys.setdefault(parent, set()).add(leaf)
                table = None
            else:
                table = name
                keys.setdefault(name, set())
            continue
        key = _KEY.match(line)
        if key and table is not None:
            keys[table].add(key.group(1))
    return keys


class ExampleTests(SynchronousTestCase):
    """
    tap/example.toml shows every key of every table, and nothing else.
    """

    def test_everyKey(self) -> None:
        """
        The example's keys (set or commented out) are exactly the schema's,
        table by table, in both directions.
        """
        example = (
            FilePath(__file__).parent().parent().child("tap").child("example.toml")
        )
        schema = _schema(Config)
        shown = _exampleKeys(example.getContent().decode("utf-8"), schema)
        self.assertEqual(sorted(shown), sorted(schema))
        for table, keys in schema.items():
            self.assertEqual(
                (table, sorted(keys - shown[table]), sorted(shown[table] - keys)),
                (table, [], []),
                "missing from the example / not in the schema",
            )
