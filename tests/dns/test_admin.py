"""
Tests for C{appnet dns key add} and C{appnet dns update}
(L{appnet.dns.admin}).
"""

from __future__ import annotations

import os

from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.cli import CommandError
from appnet.dns import tsig
from appnet.dns.admin import parseStatements
from appnet.testing import startDNS
from tests.process import Outcome, run

ZONE = """\
$TTL 300
@    SOA ns hostmaster 1 3600 900 604800 60
     NS  ns
ns   A   192.0.2.53
www  A   192.0.2.1
"""


class StatementTests(SynchronousTestCase):
    """nsupdate's statements, read into UPDATE sections (RFC 2136 2.4, 2.5)."""

    def test_sections(self) -> None:
        """
        Each statement becomes the record RFC 2136 says: adds in the
        zone's class, RRset and name deletes as class ANY, a record
        delete as class NONE, prerequisites likewise.
        """
        [message] = parseStatements(
            [
                "zone example.org",
                "prereq nxdomain new",
                "prereq yxrrset www A 192.0.2.1",
                "prereq nxrrset www AAAA",
                "update add new 60 IN A 192.0.2.9",
                "update delete www A 192.0.2.1",
                "update delete old.example.org. A",
                "update delete gone",
                "send",
            ],
            None,
        )
        self.assertEqual(message["zone"], b"example.org")
        shape = [(r.name.name, r.type, r.cls, r.ttl) for r in message["prerequisites"]]
        self.assertEqual(
            shape,
            [
                (b"new.example.org", dns.ALL_RECORDS, 254, 0),
                (b"www.example.org", dns.A, dns.IN, 0),
                (b"www.example.org", dns.AAAA, 254, 0),
            ],
        )
        shape = [(r.name.name, r.type, r.cls, r.ttl) for r in message["updates"]]
        self.assertEqual(
            shape,
            [
                (b"new.example.org", dns.A, dns.IN, 60),
                (b"www.example.org", dns.A, 254, 0),
                (b"old.example.org", dns.A, dns.ANY, 0),
                (b"gone.example.org", dns.ALL_RECORDS, dns.ANY, 0),
            ],
        )

    def test_errors(self) -> None:
        """A statement that cannot be read is named in one line."""
        for lines, fragment in [
            (["update add x 60 A 192.0.2.1"], "say the zone first"),
            (["zone example.org", "update add x 60 A nonsense"], "cannot read"),
            (["frobnicate"], "cannot read 'frobnicate'"),
        ]:
            with self.assertRaises(CommandError) as caught:
                parseStatements(lines, None)
            self.assertIn(fragment, str(caught.exception))


class CommandTests(TestCase):
    """The commands, as real processes."""

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

    async def test_keyAddThenUpdate(self) -> None:
        """
        C{key add} prints a BIND key statement and saves it (mode 0600) in
        DATA/keys; C{update -k} with that file changes the zone; a second
        C{key add} of the name is refused.
        """
        made = await self.appnet("dns", "key", "add", "upd.key")
        self.assertEqual(made.code, 0, made.err)
        path = os.path.join(self.data, "keys", "upd.key.key")
        [key] = tsig.parseKeys(made.out, "stdout")
        self.assertEqual(key.algorithm, b"hmac-sha256")
        with open(path) as f:
            self.assertEqual(f.read(), made.out)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        again = await self.appnet("dns", "key", "add", "upd.key")
        self.assertEqual(again.code, 1)
        self.assertIn("exists; use --force", again.err)
        server = await startDNS(
            self,
            zones={"example.org": ZONE},
            keyDirectory=os.path.dirname(path),
            config={"update": {"example.org": ["upd.key"]}},
        )
        host, port = server.address
        script = b"zone example.org\nupdate add new 60 A 192.0.2.9\nsend\n"
        done = await self.appnet(
            "dns", "update", "-k", path, "-s", f"{host}:{port}", stdin=script
        )
        self.assertEqual(done.code, 0, done.err)
        self.assertIn("update of example.org: NOERROR", done.out)
        answer = server.service.factory.authority.answer(b"new.example.org", dns.A)  # type: ignore[union-attr]
        assert answer is not None
        self.assertEqual(len(answer.answers), 1)
        refused = await self.appnet(
            "dns", "update", "-s", f"{host}:{port}", stdin=script
        )
        self.assertEqual(refused.code, 1)
        self.assertEqual(refused.err, "appnet: update failed: REFUSED\n")
