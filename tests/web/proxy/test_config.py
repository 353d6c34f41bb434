"""
The proxy's settings: C{[[http.proxy]]} routes and the cache and forward
proxy keys, each bad value a one-line L{ConfigError} naming the key.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from appnet.cli import CommandError
from appnet.config import ProxyRoute, loadConfig
from appnet.errors import ConfigError
from appnet.web.proxy.cli import serverURL


class ProxyConfigTests(SynchronousTestCase):
    """Routes and proxy keys from TOML-shaped input."""

    def load(self, http: dict[str, Any]) -> Any:
        """The http table built from C{http}."""
        return loadConfig(None, {"http": http}, env={}).http

    def fails(self, http: dict[str, Any], key: str, fragment: str) -> None:
        """Loading C{http} fails naming C{key} with C{fragment}."""
        with self.assertRaises(ConfigError) as caught:
            self.load(http)
        self.assertEqual(caught.exception.key, key)
        self.assertIn(fragment, caught.exception.problem)

    def test_defaults(self) -> None:
        """No routes, forward proxy off, CONNECT only to 443."""
        http = self.load({})
        self.assertEqual(http.proxy, ())
        self.assertFalse(http.forward_proxy)
        self.assertEqual(http.forward_connect_ports, (443,))

    def test_route(self) -> None:
        """A route's keys are parsed; the host is lowercased."""
        http = self.load(
            {
                "proxy": [
                    {
                        "upstream": "http://127.0.0.1:9000",
                        "prefix": "/app/",
                        "host": "App.Example",
                        "read_timeout": "5s",
                    }
                ]
            }
        )
        self.assertEqual(
            http.proxy,
            (
                ProxyRoute(
                    "http://127.0.0.1:9000",
                    prefix="/app/",
                    host="app.example",
                    read_timeout=5.0,
                ),
            ),
        )

    def test_badRoutes(self) -> None:
        """Each mistake in a route names the route and the problem."""
        self.fails({"proxy": [{}]}, "http.proxy[0]", "needs an upstream")
        self.fails(
            {"proxy": [{"upstream": "ftp://h"}]}, "http.proxy[0]", "expected http://"
        )
        self.fails(
            {"proxy": [{"upstream": "http://h", "prefix": "app"}]},
            "http.proxy[0]",
            "must start with /",
        )
        self.fails(
            {"proxy": [{"upstream": "http://h", "colour": 1}]},
            "http.proxy[0]",
            "unknown key 'colour'",
        )
        self.fails({"proxy": ["http://h"]}, "http.proxy[0]", "expected a table")

    def test_badCA(self) -> None:
        """An unreadable CA file, or one without a certificate, is refused."""
        route = {"upstream": "https://h", "ca": self.mktemp()}
        self.fails({"proxy": [route]}, "http.proxy[0]", "ca: cannot read")
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("not a certificate\n")
        route["ca"] = path
        self.fails({"proxy": [route]}, "http.proxy[0]", "ca: no PEM certificate")

    def test_forwardKeys(self) -> None:
        """Ports and networks are checked."""
        self.fails(
            {"forward_connect_ports": [0]}, "http.forward_connect_ports[0]", "between"
        )
        self.fails({"forward_allow": ["nowhere"]}, "http.forward_allow[0]", "network")


class ServerURLTests(SynchronousTestCase):
    """C{appnet cache} finds the running server from the config."""

    def url(self, *listen: str) -> str:
        """The URL for these http.listen endpoints."""
        config = loadConfig(None, {"http": {"listen": list(listen)}}, env={})
        return serverURL(config)

    def test_first(self) -> None:
        """The first plain TCP listener; a wildcard address means loopback."""
        self.assertEqual(
            self.url("tcp:8080:interface=127.0.0.1"), "http://127.0.0.1:8080"
        )
        self.assertEqual(self.url("tcp:8081"), "http://127.0.0.1:8081")
        self.assertEqual(self.url("tcp6:8082:interface=\\:\\:1"), "http://[::1]:8082")

    def test_none(self) -> None:
        """Without a plain TCP listener, the command asks for --server."""
        with self.assertRaises(CommandError):
            self.url("unix:/tmp/appnet.sock")
