"""
Interop for dynamic update and replication with real DNS software
(Debian packages bind9, bind9-dnsutils, knot, nsd), started on loopback:

  - BIND's C{nsupdate} (C{-k} and C{-y}) against appnet;
  - C{dig axfr} and C{dig ixfr=SERIAL}, signed, against appnet;
  - Knot and NSD as secondaries of appnet, following UPDATEs by NOTIFY
    and IXFR;
  - appnet as a secondary of BIND's C{named}, following changes made on
    it with C{nsupdate}.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import tempfile
import time

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.names import dns
from twisted.trial.unittest import TestCase

from appnet.dns import tsig
from appnet.dns.client import DNSClient, update
from appnet.dns.testing import RunningDNS, startDNS
from tests.interop import need
from tests.peers import freePort, startServer, waitForPort
from tests.process import Collector, Outcome

ZONE = """\
$TTL 300
@    SOA ns hostmaster 1 3600 900 604800 60
     NS  ns
ns   A   192.0.2.53
www  A   192.0.2.1
"""

KEY = tsig.Key(b"update.key", b"hmac-sha256", b"i" * 32)
SECRET = base64.b64encode(KEY.secret).decode()


async def runWith(argv: list[str], stdin: bytes = b"") -> Outcome:
    """Run a program with C{stdin}, without blocking the reactor."""
    collector = Collector(stdin=stdin)
    reactor.spawnProcess(collector, argv[0], argv, env=dict(os.environ))  # type: ignore[attr-defined]
    return await collector.ended


def keyDirectory(base: str) -> str:
    directory = os.path.join(base, "keys")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "update.key"), "w") as f:
        f.write(tsig.formatKey(KEY))
    return directory


async def answers(server: tuple[str, int], name: str, type: int = dns.A) -> list[str]:
    """The sorted data of the answer to C{name}, or the rcode."""
    from appnet.dns.records import rdataText

    client = DNSClient(reactor, [server], timeout=2, attempts=1)
    try:
        response = await client.query(name, type, recursionDesired=False)
    finally:
        await client.stop()
    if response.rcode != dns.OK:
        return [f"rcode {response.rcode}"]
    return sorted(rdataText(r.type, r.payload) for r in response.answers)


async def eventually(
    test: TestCase, server: tuple[str, int], name: str, wanted: list[str]
) -> None:
    deadline = time.monotonic() + 10
    while True:
        got = await answers(server, name)
        if got == wanted or time.monotonic() > deadline:
            test.assertEqual(got, wanted, f"{name} at {server}")
            return
        await deferLater(reactor, 0.05, lambda: None)


class NsupdateTests(TestCase):
    """BIND's nsupdate against appnet."""

    async def setUp(self) -> None:  # type: ignore[override]
        self.nsupdate = need("nsupdate", "bind9-dnsutils")
        base = os.path.abspath(self.mktemp())
        self.keys = keyDirectory(base)
        self.keyFile = os.path.join(self.keys, "update.key")
        self.server = await startDNS(
            self,
            zones={"example.org": ZONE},
            keyDirectory=self.keys,
            config={
                "update": {"example.org": ["update.key"]},
                "transfer_keys": ["update.key"],
            },
        )

    def script(self, *lines: str) -> bytes:
        host, port = self.server.address
        text = [f"server {host} {port}", "zone example.org", *lines, "send", ""]
        return "\n".join(text).encode()

    async def test_addDeletePrerequisites(self) -> None:
        """
        nsupdate -k adds a record; a failing prerequisite is YXDOMAIN and
        changes nothing; a met one lets a delete through.
        """
        done = await runWith(
            [self.nsupdate, "-k", self.keyFile],
            self.script("update add new.example.org 60 A 192.0.2.9"),
        )
        self.assertEqual(done.code, 0, done.err)
        self.assertEqual(
            await answers(self.server.address, "new.example.org"), ["192.0.2.9"]
        )
        failed = await runWith(
            [self.nsupdate, "-k", self.keyFile],
            self.script(
                "prereq nxdomain new.example.org",
                "update add other.example.org 60 A 192.0.2.8",
            ),
        )
        self.assertNotEqual(failed.code, 0)
        self.assertIn("YXDOMAIN", failed.out + failed.err)
        self.assertEqual(
            await answers(self.server.address, "other.example.org"), ["rcode 3"]
        )
        done = await runWith(
            [self.nsupdate, "-y", f"hmac-sha256:update.key:{SECRET}"],
            self.script(
                "prereq yxrrset new.example.org A 192.0.2.9",
                "update delete new.example.org A",
                'update add txt.example.org 60 TXT "a b"',
            ),
        )
        self.assertEqual(done.code, 0, done.err)
        self.assertEqual(
            await answers(self.server.address, "new.example.org"), ["rcode 3"]
        )
        self.assertEqual(
            await answers(self.server.address, "txt.example.org", dns.TXT), ['"a b"']
        )

    async def test_badKeys(self) -> None:
        """
        A key appnet does not know is BADKEY, a wrong secret BADSIG; no
        key at all is REFUSED; nothing changes.
        """
        zero = base64.b64encode(b"\0" * 32).decode()
        for secret, expected in [
            (f"hmac-sha256:stranger.key:{zero}", "BADKEY"),
            (f"hmac-sha256:update.key:{zero}", "BADSIG"),
        ]:
            outcome = await runWith(
                [self.nsupdate, "-y", secret],
                self.script("update add new.example.org 60 A 192.0.2.9"),
            )
            self.assertNotEqual(outcome.code, 0)
            self.assertIn(expected, outcome.out + outcome.err)
        outcome = await runWith(
            [self.nsupdate], self.script("update add new.example.org 60 A 192.0.2.9")
        )
        self.assertIn("REFUSED", outcome.out + outcome.err)
        self.assertEqual(
            await answers(self.server.address, "new.example.org"), ["rcode 3"]
        )

    async def test_digTransfers(self) -> None:
        """
        dig axfr and dig ixfr=SERIAL, signed with the key, check every
        signature and show what appnet holds.
        """
        digPath = need("dig", "bind9-dnsutils")
        for address in ("192.0.2.20", "192.0.2.21"):
            done = await runWith(
                [self.nsupdate, "-k", self.keyFile],
                self.script(f"update add n.example.org 60 A {address}"),
            )
            self.assertEqual(done.code, 0, done.err)
        host, port = self.server.address
        base = [digPath, f"@{host}", "-p", str(port), "-k", self.keyFile, "+nocmd"]
        axfr = await runWith([*base, "example.org", "AXFR"])
        self.assertEqual(axfr.code, 0, axfr.err)
        self.assertNotIn("tsig verify failure", axfr.out)
        records = [line for line in axfr.out.splitlines() if line and line[0] != ";"]
        self.assertIn("192.0.2.21", axfr.out)
        self.assertEqual(len([line for line in records if "\tSOA\t" in line]), 2)
        ixfr = await runWith([*base, "example.org", "IXFR=2"])
        self.assertEqual(ixfr.code, 0, ixfr.err)
        self.assertNotIn("tsig verify failure", ixfr.out)
        soas = re.findall(r"\tSOA\t.* (\d+) 3600 900", ixfr.out)
        self.assertEqual(soas, ["3", "2", "3", "3"])
        self.assertIn("192.0.2.21", ixfr.out)
        self.assertNotIn("192.0.2.53", ixfr.out)


KNOT_CONF = """\
server:
    rundir: "{rundir}"
    listen: 127.0.0.1@{port}
log:
  - target: stderr
    any: info
database:
    storage: "{dir}/db"
key:
  - id: update.key
    algorithm: hmac-sha256
    secret: {secret}
remote:
  - id: appnet
    address: 127.0.0.1@{primary}
    key: update.key
acl:
  - id: notify_from_appnet
    address: 127.0.0.1
    action: notify
zone:
  - domain: example.org
    storage: "{dir}/zones"
    master: appnet
    acl: notify_from_appnet
    zonefile-sync: -1
"""


async def followUpdates(
    test: TestCase, primary: RunningDNS, secondary: tuple[str, int]
) -> None:
    """
    Make a series of UPDATEs on C{primary}; C{secondary} (a real server
    notified by it) follows each, and its answers then match ours.
    """
    await eventually(test, secondary, "www.example.org", ["192.0.2.1"])
    names = []
    for i in range(5):
        name = f"h{i}.example.org".encode()
        names.append(name.decode())
        changes = [
            dns.RRHeader(name, dns.A, dns.IN, 300, dns.Record_A(f"192.0.2.{100 + i}"))
        ]
        if i:
            changes.append(
                dns.RRHeader(
                    b"www.example.org",
                    dns.A,
                    dns.IN,
                    300,
                    dns.Record_A(f"192.0.2.{i + 1}"),
                )
            )
        response = await update(
            reactor, primary.address, b"example.org", changes, key=KEY
        )
        test.assertEqual(response.rcode, dns.OK)
        await eventually(test, secondary, name.decode(), [f"192.0.2.{100 + i}"])
    for name in [*names, "www.example.org", "ns.example.org", "example.org"]:
        for type in (dns.A, dns.SOA, dns.NS):
            test.assertEqual(
                await answers(secondary, name, type),
                await answers(primary.address, name, type),
                f"{name} {type}",
            )


async def startPrimary(test: TestCase, base: str, notify: int) -> RunningDNS:
    """appnet as the primary of example.org, notifying 127.0.0.1:C{notify}."""
    return await startDNS(
        test,
        zones={"example.org": ZONE},
        keyDirectory=keyDirectory(base),
        config={
            "update": {"example.org": ["update.key"]},
            "transfer_keys": ["update.key"],
            "notify": [f"127.0.0.1:{notify}"],
        },
    )


class KnotSecondaryTests(TestCase):
    """Knot pulls from appnet as its primary."""

    timeout = 60

    async def test_followsUpdates(self) -> None:
        """
        Knot takes the zone from appnet and follows a series of UPDATEs
        by NOTIFY and IXFR; its answers match appnet's.
        """
        knotd = need("knotd", "knot")
        base = os.path.abspath(self.mktemp())
        knotPort = freePort(udp=True)
        primary = await startPrimary(self, base, knotPort)
        # The control socket's path must be short (a UNIX socket).
        rundir = tempfile.mkdtemp(prefix="knot")
        self.addCleanup(shutil.rmtree, rundir, True)
        config = os.path.join(base, "knot.conf")
        with open(config, "w") as f:
            f.write(
                KNOT_CONF.format(
                    dir=base,
                    rundir=rundir,
                    port=knotPort,
                    secret=SECRET,
                    primary=primary.address[1],
                )
            )
        for sub in ("db", "zones"):
            os.makedirs(os.path.join(base, sub), exist_ok=True)
        knot = startServer(self, [knotd, "-c", config], base, [("127.0.0.1", knotPort)])
        await waitForPort(knot, "127.0.0.1", knotPort, "knotd")
        await followUpdates(self, primary, ("127.0.0.1", knotPort))
        log = (knot.out + knot.err).decode(errors="replace")
        self.assertRegex(log, r"IXFR, incoming.*finished")


NSD_CONF = """\
server:
    ip-address: 127.0.0.1@{port}
    username: ""
    chroot: ""
    zonesdir: "{dir}"
    database: ""
    pidfile: "{dir}/nsd.pid"
    xfrdfile: "{dir}/xfrd.state"
    zonelistfile: "{dir}/zone.list"
    xfrdir: "{dir}"
    logfile: "{dir}/nsd.log"
    verbosity: 2
remote-control:
    control-enable: no
key:
    name: update.key
    algorithm: hmac-sha256
    secret: "{secret}"
zone:
    name: example.org
    zonefile: "example.org.zone"
    allow-notify: 127.0.0.1 NOKEY
    request-xfr: 127.0.0.1@{primary} update.key
"""


class NSDSecondaryTests(TestCase):
    """NSD pulls from appnet as its primary."""

    timeout = 60

    async def test_followsUpdates(self) -> None:
        """
        NSD takes the zone from appnet and follows a series of UPDATEs by
        NOTIFY and IXFR; its answers match appnet's.
        """
        nsd = need("nsd", "nsd")
        base = os.path.abspath(self.mktemp())
        nsdPort = freePort(udp=True)
        primary = await startPrimary(self, base, nsdPort)
        config = os.path.join(base, "nsd.conf")
        with open(config, "w") as f:
            f.write(
                NSD_CONF.format(
                    dir=base, port=nsdPort, secret=SECRET, primary=primary.address[1]
                )
            )
        served: list[str] = []

        def observe(event: dict[str, object]) -> None:
            namespace = str(event.get("log_namespace", ""))
            if namespace.endswith(".Replication") and "kind" in event:
                served.append(str(event["kind"]))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        server = startServer(
            self, [nsd, "-d", "-c", config], base, [("127.0.0.1", nsdPort)]
        )
        await waitForPort(server, "127.0.0.1", nsdPort, "nsd")
        await followUpdates(self, primary, ("127.0.0.1", nsdPort))
        # The first copy whole, then every change incrementally.
        self.assertEqual(served[0], "AXFR")
        self.assertEqual(set(served[1:]), {"IXFR"})
        self.assertGreaterEqual(len(served), 6)


NAMED_CONF = """\
options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify explicit;
    notify-delay 0;
    max-ixfr-ratio unlimited;
    also-notify {{ 127.0.0.1 port {secondary}; }};
}};
controls {{ }};
key "update.key" {{ algorithm hmac-sha256; secret "{secret}"; }};
zone "example.org" {{
    type primary;
    file "{dir}/example.org.zone";
    allow-update {{ key update.key; }};
    allow-transfer {{ key update.key; }};
}};
"""


class NamedPrimaryTests(TestCase):
    """appnet pulls from BIND's named as its primary."""

    timeout = 60

    async def test_followsChanges(self) -> None:
        """
        appnet copies the zone from named, then follows a series of
        changes made on named with nsupdate, by NOTIFY and IXFR.
        """
        named = need("named", "bind9")
        nsupdate = need("nsupdate", "bind9-dnsutils")
        base = os.path.abspath(self.mktemp())
        keys = keyDirectory(base)
        namedPort = freePort(udp=True)
        secondaryPort = freePort(udp=True)
        with open(os.path.join(base, "example.org.zone"), "w") as f:
            f.write("$ORIGIN example.org.\n" + ZONE)
        config = os.path.join(base, "named.conf")
        with open(config, "w") as f:
            f.write(
                NAMED_CONF.format(
                    dir=base, port=namedPort, secondary=secondaryPort, secret=SECRET
                )
            )
        server = startServer(
            self,
            [named, "-g", "-n", "1", "-c", config],
            base,
            [("127.0.0.1", namedPort)],
        )
        await waitForPort(server, "127.0.0.1", namedPort, "named")
        secondary = await startDNS(
            self,
            listen=f"127.0.0.1:{secondaryPort}",
            keyDirectory=keys,
            secondaryDirectory=os.path.join(base, "copies"),
            config={
                "secondary": [
                    {
                        "zone": "example.org",
                        "primaries": [f"127.0.0.1:{namedPort}"],
                        "key": "update.key",
                    }
                ]
            },
        )
        await eventually(self, secondary.address, "www.example.org", ["192.0.2.1"])
        keyFile = os.path.join(keys, "update.key")
        for i in range(4):
            script = (
                f"server 127.0.0.1 {namedPort}\nzone example.org\n"
                f"update add h{i}.example.org 300 A 192.0.2.{50 + i}\n"
                f"update delete www.example.org A\n"
                f"update add www.example.org 300 A 192.0.2.{60 + i}\nsend\n"
            )
            done = await runWith([nsupdate, "-k", keyFile], script.encode())
            self.assertEqual(done.code, 0, done.err)
            await eventually(
                self, secondary.address, f"h{i}.example.org", [f"192.0.2.{50 + i}"]
            )
            await eventually(
                self, secondary.address, "www.example.org", [f"192.0.2.{60 + i}"]
            )
        assert secondary.service.secondaries is not None
        copy = secondary.service.secondaries.copies[b"example.org"]
        self.assertEqual(copy.kinds[0], "AXFR")
        self.assertEqual(copy.kinds[1:], ["IXFR"] * 4)
