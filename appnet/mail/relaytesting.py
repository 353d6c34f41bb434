"""
A mail network for test suites: several appnet nodes, each the mail
server of its own domain, and a DNS server publishing their MX and SPF
records, all in the test's process, with the queues' retry schedule on a
virtual clock.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import random
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from appnet.config import mergeTables
from appnet.dns.testing import RunningDNS, startDNS
from appnet.mail.client import SendResult, send
from appnet.mail.queue import QueueRunner
from appnet.mail.testing import MailStack, StoredMessage, passwordFor
from appnet.store.interfaces import QueuedMessage
from appnet.testing import RunningStack, startStack

__all__ = ["MailNetwork", "MailNode", "startMailNetwork"]

_FIRST = 2


def _freePort(hosts: Sequence[str], attempts: int = 20, stable: bool = False) -> int:
    """
    A TCP port number free on every one of C{hosts} right now.

    @param stable: pick it below Linux's default ephemeral range (32768
        up), so that a server stopped and started again on it cannot find
        it taken meanwhile by a port the kernel handed to someone else.
    """
    for _ in range(attempts):
        sockets: list[socket.socket] = []
        try:
            first = socket.socket()
            sockets.append(first)
            first.bind((hosts[0], random.randrange(20000, 32768) if stable else 0))
            port = first.getsockname()[1]
            for host in hosts[1:]:
                other = socket.socket()
                sockets.append(other)
                other.bind((host, port))
            return int(port)
        except OSError:
            continue
        finally:
            for each in sockets:
                each.close()
    raise RuntimeError(f"no port free on all of {', '.join(hosts)}")


def zoneFor(domain: str, address: str, dnsAddress: str, spf: str | None) -> str:
    """
    The zone of a node's domain: SOA, NS, C{MX 10 mx.DOMAIN}, the MX's
    address and, unless C{spf} is C{None}, that SPF record.
    """
    lines = [
        f"$ORIGIN {domain}.",
        "$TTL 300",
        f"@ IN SOA ns.{domain}. hostmaster.{domain}. 1 3600 600 86400 300",
        f"@ IN NS ns.{domain}.",
        f"ns IN A {dnsAddress}",
        f"@ IN MX 10 mx.{domain}.",
        f"mx IN A {address}",
    ]
    if spf is not None:
        lines.append(f'@ IN TXT "{spf}"')
    return "\n".join(lines) + "\n"


@define
class MailNode:
    """
    One node of the network: the mail server of C{domain} on C{host}.

    @ivar mail: the running stack, while the node is up.
    @ivar passwords: its accounts' passwords.
    """

    domain: str
    host: str
    smtpPort: int
    dataDir: str
    config: dict[str, Any]
    passwords: dict[str, str]
    reactor: Any
    _clock: Any
    mail: MailStack | None = None
    _created: bool = False

    @property
    def up(self) -> bool:
        return self.mail is not None

    @property
    def running(self) -> RunningStack:
        """The running stack (the node must be up)."""
        if self.mail is None:
            raise RuntimeError(f"{self.domain} is down")
        return self.mail.running

    @property
    def runner(self) -> QueueRunner:
        """The node's queue runner."""
        runner = self.running.stack.backgroundService(QueueRunner.name)
        assert isinstance(runner, QueueRunner)
        return runner

    async def start(self) -> None:
        """Start the node (again), on its data directory."""
        if self.mail is not None:
            return
        users = {} if self._created else self.passwords
        running = await startStack(
            None,
            config=self.config,
            users=users,
            reactor=self.reactor,
            dataDir=self.dataDir,
            clock=self._clock,
        )
        self._created = True
        self.mail = MailStack(running, dict(self.passwords))

    async def stop(self) -> None:
        """Stop the node; its data (mailboxes, queue) stays."""
        mail, self.mail = self.mail, None
        if mail is not None:
            await mail.stop()

    def address(self, service: str) -> tuple[str, int]:
        """Where a service of this node listens."""
        return self.running.address(service)

    async def deliveredTo(self, address: str) -> list[StoredMessage]:
        """The messages in the INBOX mail for C{address} reaches."""
        assert self.mail is not None, f"{self.domain} is down"
        return await self.mail.deliveredTo(address)

    async def queued(self) -> list[QueuedMessage]:
        """The node's outgoing queue."""
        return list(await self.running.store.queue.list())

    def whenIdle(self) -> Deferred[None]:
        """Fires when the node's queue runner has nothing in hand."""
        if self.mail is None:
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d
        return self.runner.whenIdle()


@define
class MailNetwork:
    """
    Running nodes, their DNS server, and the virtual clock of their
    queues.
    """

    nodes: dict[str, MailNode]
    dns: RunningDNS
    clock: Any
    _root: str
    _stopped: bool = field(default=False, init=False)

    def node(self, domain: str) -> MailNode:
        """The node serving C{domain}."""
        return self.nodes[domain]

    def _nodeOf(self, address: str) -> MailNode:
        return self.nodes[address.rpartition("@")[2].lower()]

    async def submit(
        self,
        sender: str,
        recipients: Sequence[str],
        message: bytes | EmailMessage,
        password: str | None = None,
    ) -> SendResult:
        """
        Submit a message as C{sender} on its own node (submission port,
        AUTH as the sender), and wait until the node's queue has made its
        first attempt.
        """
        node = self._nodeOf(sender)
        host, port = node.address("submission")
        result = await send(
            node.reactor,
            host,
            port,
            sender=sender,
            recipients=recipients,
            message=message,
            username=sender,
            password=password or node.passwords[sender],
            tls="none",
        )
        await self.settle()
        return result

    async def mailbox(self, address: str) -> list[StoredMessage]:
        """The messages in the INBOX of C{address} on its node."""
        return await self._nodeOf(address).deliveredTo(address)

    async def settle(self) -> None:
        """Wait until no node's queue runner has anything in hand."""
        while True:
            for node in self.nodes.values():
                await node.whenIdle()
            if all(
                not node.up or not node.runner._active for node in self.nodes.values()
            ):
                return

    async def advance(
        self,
        seconds: float = 0,
        *,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
    ) -> None:
        """
        Move the virtual clock forward by the sum, stopping at every
        scheduled event on the way and letting what it starts finish.
        """
        clock = self.clock
        target = clock.seconds() + seconds + 60 * minutes + 3600 * hours + 86400 * days
        await self.settle()
        while True:
            due = [
                call.getTime()
                for call in clock.getDelayedCalls()
                if call.getTime() <= target
            ]
            if not due:
                break
            clock.advance(max(0.0, min(due) - clock.seconds()))
            await self.settle()
        clock.advance(max(0.0, target - clock.seconds()))
        await self.settle()

    def stop(self) -> Deferred[None]:
        """Stop every node and the DNS server; remove their data."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for node in self.nodes.values():
            await node.stop()
        await self.dns.stop()
        shutil.rmtree(self._root, ignore_errors=True)


async def startMailNetwork(
    testCase: Any = None,
    *,
    domains: Mapping[str, Sequence[str] | Mapping[str, str]],
    clock: Any = None,
    config: Mapping[str, Any] = {},
    nodeConfig: Mapping[str, Mapping[str, Any]] = {},
    spf: Mapping[str, str | None] | None = None,
    zones: Mapping[str, str] = {},
    reactor: Any = None,
) -> MailNetwork:
    """
    Start one node per domain and a DNS server for them.

    @param domains: each node's domain and its users: local parts or
        addresses (each with L{passwordFor} its address), or a mapping of
        them to passwords.
    @param clock: the queues' clock; default: a new L{Clock} set to the
        current time (reach it as L{MailNetwork.clock}).
    @param config: TOML-shaped settings for every node (C{{"mail":
        {"retry": ["1m"]}}}).
    @param nodeConfig: more settings for single nodes, by domain.
    @param spf: each domain's SPF record (C{None}: none); default
        C{v=spf1 ip4:ADDRESS -all} for its node's address.
    @param zones: more zones for the DNS server, text by origin.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    if clock is None:
        clock = Clock()
        clock.advance(time.time())
    names = list(domains)
    hosts = [f"127.0.0.{_FIRST + i}" for i in range(len(names))]
    dnsHost = f"127.0.0.{_FIRST + len(names)}"
    port = _freePort(hosts)
    texts = dict(zones)
    for name, host in zip(names, hosts, strict=True):
        record: str | None = f"v=spf1 ip4:{host} -all"
        if spf is not None and name in spf:
            record = spf[name]
        texts[name] = zoneFor(name, host, dnsHost, record)
    dns = await startDNS(None, zones=texts, listen=f"{dnsHost}:0", reactor=reactor)
    root = tempfile.mkdtemp(prefix="appnet-net-")
    network = MailNetwork({}, dns, clock, root)
    if testCase is not None:
        testCase.addCleanup(network.stop)
    try:
        for name, host in zip(names, hosts, strict=True):
            passwords = _accounts(name, domains[name])
            settings = _nodeSettings(name, host, port, dns.address())
            settings = mergeTables(
                mergeTables(settings, config), nodeConfig.get(name, {})
            )
            dataDir = f"{root}/{name}"
            node = MailNode(
                name, host, port, dataDir, settings, passwords, reactor, clock
            )
            network.nodes[name] = node
            await node.start()
    except BaseException:
        await network.stop()
        raise
    return network


def _accounts(domain: str, users: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    pairs = (
        list(users.items())
        if isinstance(users, Mapping)
        else [(user, "") for user in users]
    )
    accounts = {}
    for user, password in pairs:
        address = user if "@" in user else f"{user}@{domain}"
        accounts[address] = password or passwordFor(address)
    return accounts


def _nodeSettings(
    domain: str, host: str, port: int, dnsAddress: tuple[str, int]
) -> dict[str, Any]:
    ephemeral = f"tcp:0:interface={host}"
    return {
        "hostname": f"mx.{domain}",
        "smtp": {"listen": [f"tcp:{port}:interface={host}"]},
        "submission": {"listen": [ephemeral]},
        "pop3": {"listen": [ephemeral]},
        "imap": {"listen": [ephemeral]},
        "ftp": {"enabled": False},
        "http": {"enabled": False},
        "dns": {"enabled": False, "resolver": f"{dnsAddress[0]}:{dnsAddress[1]}"},
        "mail": {
            "domains": [domain],
            "relay_port": port,
            "bind_address": host,
            "spf_skip": [],
            # Only the retries need the virtual clock: looking for changes
            # made by other processes is pointless here.
            "queue_poll": "1d",
        },
    }
