"""
Integration tests for the stack's counters (L{appnet.status}) as
C{/status} and C{/metrics} show them, after real traffic.

One appnet node serves every protocol (HTTP, FTP, SMTP, submission, POP3,
IMAP, DNS) on 127.0.0.2; a second node, the mail server of another domain,
and an authoritative DNS server publishing both domains complete a small
internet (L{appnet.testing.startMailNetwork}), and one more DNS server
(L{appnet.testing.startDNS}) is the upstream the node forwards recursion
to. Real clients make the traffic: smtplib, ftplib, poplib, imaplib,
appnet's DNS client and treq.
"""

from __future__ import annotations

import ftplib
import imaplib
import io
import json
import poplib
import re
import smtplib
from email.message import EmailMessage
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.names import dns
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from appnet.dns.client import DNSClient
from appnet.testing import MailNetwork, startDNS, startMailNetwork

ALICE = "alice@example.org"
BOB = "bob@hamburger.edu"
NOBODY = "nobody@hamburger.edu"
PASSWORD = "pw-alice-status"
HOST = "127.0.0.2"
UPSTREAM = """\
$TTL 300
@ IN SOA ns hostmaster 1 3600 600 86400 300
@ IN NS ns
ns IN A 127.0.0.1
www IN A 192.0.2.80
"""


def _submit(host: str, port: int) -> None:
    """
    One message by submission (AUTH) to a local recipient, a remote one,
    and a remote one that does not exist.
    """
    message = EmailMessage()
    message["From"] = ALICE
    message["To"] = f"{ALICE}, {BOB}, {NOBODY}"
    message["Subject"] = "counted"
    message.set_content("one local, one remote recipient\n")
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.login(ALICE, PASSWORD)
        client.send_message(message)


def _mx(host: str, port: int) -> None:
    """One message to the MX from another domain's sender."""
    message = EmailMessage()
    message["From"] = BOB
    message["To"] = ALICE
    message["Subject"] = "inbound"
    message.set_content("arrived on port 25's stand-in\n")
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.send_message(message)


def _ftp(host: str, port: int, content: bytes) -> bytes:
    """Upload a file, download it again, return what came back."""
    got = io.BytesIO()
    with ftplib.FTP(timeout=30) as client:
        client.connect(host, port)
        client.login(ALICE, PASSWORD)
        client.storbinary("STOR counted.bin", io.BytesIO(content))
        client.retrbinary("RETR counted.bin", got.write)
    return got.getvalue()


def _pop3(host: str, port: int) -> int:
    client = poplib.POP3(host, port, timeout=30)
    try:
        client.user(ALICE)
        client.pass_(PASSWORD)
        return int(client.stat()[0])
    finally:
        client.quit()


def _imap(host: str, port: int) -> int:
    client = imaplib.IMAP4(host, port, timeout=30)
    try:
        client.login(ALICE, PASSWORD)
        typ, data = client.select("INBOX", readonly=True)
        assert typ == "OK", data
        return int(data[0] or b"0")
    finally:
        client.logout()


def _sample(text: str, metric: str, service: str) -> float:
    """The value of C{metric{service="..."}} in Prometheus text."""
    pattern = rf'^{re.escape(metric)}\{{service="{re.escape(service)}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    assert found is not None, f"no {metric} for {service} in /metrics"
    return float(found.group(1))


class LiveCountersTests(TestCase):
    """
    After real traffic, C{/status} and C{/metrics} show counters that
    moved: connections and bytes per service, messages delivered and
    queued, DNS queries and the cache hit ratio, FTP transfers, uptime.
    """

    timeout = 120

    async def network(self) -> MailNetwork:
        """
        The mail network, its example.org node also serving HTTP, FTP and
        DNS (recursion forwarded to an upstream serving C{upstream.test}).
        """
        upstream = await startDNS(self, zones={"upstream.test": UPSTREAM})
        ephemeral = [f"tcp:0:interface={HOST}"]
        forward = "{}:{}".format(*upstream.address)
        return await startMailNetwork(
            self,
            domains={"example.org": {ALICE: PASSWORD}, "hamburger.edu": ["bob"]},
            nodeConfig={
                "example.org": {
                    "http": {"enabled": True, "listen": ephemeral},
                    "ftp": {"enabled": True, "listen": ephemeral},
                    "dns": {
                        "enabled": True,
                        "listen": f"{HOST}:0",
                        "forward": [forward],
                    },
                }
            },
        )

    def http(self) -> HTTPClient:
        """A treq client whose kept-alive connections close at cleanup."""
        pool = HTTPConnectionPool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        return HTTPClient(Agent(reactor, pool=pool))

    async def status(self, client: HTTPClient, base: str) -> dict[str, Any]:
        """GET /status; its JSON."""
        response = await client.get(base + "/status")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json"]
        )
        result: dict[str, Any] = json.loads(await response.content())
        return result

    async def test_countersMove(self) -> None:
        """
        Real traffic moves the counters C{/status} and C{/metrics} show:

          - SMTP: a message to the MX (delivered), one by submission to a
            local, a remote and an unknown remote recipient (delivered
            once, queued once; the queue relays one, bounces one and
            delivers the bounce);
          - DNS: two UDP queries through the recursive resolver, the
            second answered from the cache (ratio 0.5), then one over TCP
            (a connection);
          - FTP: an upload and a download (two transfers, their bytes);
          - POP3, IMAP and HTTP sessions;

        and for every service with connections, connections and bytes in
        and out; uptime is above zero.
        """
        net = await self.network()
        stack = net.node("example.org").running
        web = "http://{}:{}".format(*stack.address("http"))
        http = self.http()

        await deferToThread(_submit, *stack.address("submission"))
        await net.settle()
        await deferToThread(_mx, *stack.address("smtp"))
        content = bytes(range(256)) * 1024
        self.assertEqual(
            await deferToThread(_ftp, *stack.address("ftp"), content), content
        )
        # The local copy, the inbound message, the bounce for nobody@.
        self.assertEqual(await deferToThread(_pop3, *stack.address("pop3")), 3)
        self.assertEqual(await deferToThread(_imap, *stack.address("imap")), 3)
        self.assertEqual(len(await net.mailbox(BOB)), 1)
        client = DNSClient(reactor, [stack.address("dns", "udp")], timeout=5)
        for _ in range(2):
            answer = await client.query("www.upstream.test", dns.A)
            self.assertEqual(answer.rcode, dns.OK)
        missing = await http.get(web + "/nothing-here")
        self.assertEqual(missing.code, 404)
        await missing.content()

        before = await self.status(http, web)
        dnsCounters = before["services"]["dns"]
        self.assertEqual(dnsCounters["queries_udp"], 2)
        self.assertEqual(dnsCounters["cache_misses"], 1)
        self.assertEqual(dnsCounters["cache_hits"], 1)
        self.assertEqual(dnsCounters["cache_hit_ratio"], 0.5)
        self.assertGreater(dnsCounters.get("bytes_in", 0), 0, "UDP bytes counted")
        self.assertGreater(dnsCounters.get("bytes_out", 0), 0, "UDP bytes counted")
        self.assertNotIn("connections", dnsCounters)

        answer = await client.query("www.upstream.test", dns.A, tcp=True)
        self.assertEqual(answer.rcode, dns.OK)
        after = await self.status(http, web)
        self.assertGreater(after["uptime"], 0)
        counters = after["services"]
        self.assertEqual(counters["dns"]["queries"], 3)
        self.assertEqual(counters["dns"]["cache_hits"], 2)
        self.assertEqual(counters["dns"]["connections"], 1)
        self.assertGreater(counters["dns"]["bytes_in"], dnsCounters["bytes_in"])
        for service in ("smtp", "submission", "pop3", "imap", "ftp", "http", "dns"):
            self.assertGreaterEqual(counters[service]["connections"], 1, service)
            self.assertGreater(counters[service]["bytes_in"], 0, service)
            self.assertGreater(counters[service]["bytes_out"], 0, service)
        self.assertEqual(counters["smtp"]["delivered"], 1)
        self.assertEqual(counters["submission"]["messages"], 1)
        self.assertEqual(counters["submission"]["delivered"], 1)
        self.assertEqual(counters["submission"]["queued"], 1)
        # The queue took the message and the bounce (DSN) it caused; it
        # relayed one recipient, bounced the other, and delivered the DSN.
        self.assertEqual(counters["queue"]["queued"], 2)
        self.assertEqual(counters["queue"]["delivered"], 2)
        self.assertEqual(counters["queue"]["bounced"], 1)
        self.assertEqual(counters["queue"]["dsn_failed"], 1)
        self.assertEqual(counters["ftp"]["transfers"], 2)
        self.assertEqual(counters["ftp"]["data_in"], len(content))
        self.assertEqual(counters["ftp"]["data_out"], len(content))
        self.assertEqual(counters["imap"]["logins"], 1)
        self.assertEqual(counters["http"]["responses_4xx"], 1)
        self.assertEqual(counters["http"]["responses_2xx"], 1)
        self.assertEqual(
            counters["http"]["requests"] - before["services"]["http"]["requests"], 1
        )

        response = await http.get(web + "/metrics")
        self.assertEqual(response.code, 200)
        text = (await response.content()).decode()
        uptime = re.search(r"^appnet_uptime_seconds (\S+)$", text, re.MULTILINE)
        assert uptime is not None
        self.assertGreater(float(uptime.group(1)), 0)
        self.assertEqual(_sample(text, "appnet_cache_hit_ratio", "dns"), 2 / 3)
        self.assertEqual(_sample(text, "appnet_queries_total", "dns"), 3)
        self.assertEqual(_sample(text, "appnet_transfers_total", "ftp"), 2)
        self.assertEqual(_sample(text, "appnet_delivered_total", "queue"), 2)
        self.assertEqual(_sample(text, "appnet_bounced_total", "queue"), 1)
        self.assertEqual(_sample(text, "appnet_queued_total", "submission"), 1)
        self.assertEqual(_sample(text, "appnet_delivered_total", "smtp"), 1)
        self.assertEqual(_sample(text, "appnet_responses_2xx_total", "http"), 2)
        for service in ("smtp", "submission", "pop3", "imap", "ftp", "dns"):
            for name in ("connections", "bytes_in", "bytes_out"):
                self.assertEqual(
                    _sample(text, f"appnet_{name}_total", service),
                    counters[service][name],
                    (name, service),
                )
        # The second /status answer and the /metrics request moved HTTP's.
        for name in ("bytes_in", "bytes_out"):
            self.assertGreater(
                _sample(text, f"appnet_{name}_total", "http"),
                counters["http"][name],
            )
