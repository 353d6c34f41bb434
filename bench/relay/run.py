"""
Relay throughput, in two parts, with every party its own process, as in
a deployment: node A (crepes.fr, 127.0.0.2) and node B (hamburger.edu,
127.0.0.3) are each a C{twistd appnet} process with a TOML config and a
data directory of their own, and they find each other's MX through a
third appnet process that serves only DNS (127.0.0.4) and publishes both
zones. This process is the load generator, and the sink rows' stand-in
for B is a fourth (this script run with C{--sink}). SPF is off on both
nodes. Accounts are added with C{appnet user add}, so passwords carry
the production scrypt cost, which each session's AUTH pays.

End to end (the headline metric): alice@crepes.fr submits N messages of 1
KiB for bob@hamburger.edu on A's submission port, as a mail user agent
would (EHLO, AUTH PLAIN; loopback, so no TLS), over 10 concurrent
connections, each sending its share one after another in one session
(RSET between). The clock starts before the first connection and stops
when B's INBOX holds all N (polled every 20 ms with IMAP STATUS as bob):
A stores each message durably in its queue before its 250, relays it by
MX lookup, and B stores it durably before its own 250. The same run
also gives the submission rate alone (until A's last 250), and each
server process's CPU time per message (from /proc). The peer row sends
the same N messages over the same 10 connections straight to B's MX port
(no AUTH, no queue, no relay hop): one durable store per message instead
of two, what the relay hop costs.

The submitting client is Twisted's own L{ESMTPClient}, which loops over
messages in one session when C{getMailFrom} keeps answering (see
L{Submitter}); it is not appnet's relay client (the thing measured).

Queue drain: for each appnet row, a fresh A is started while B is down
and N messages are submitted to it; each first attempt finds B's port
closed and is put off for an hour. Then B starts, the clock starts, the
whole queue is made due through A's store (as C{appnet queue retry}
does; A, polling for changes every 20 ms, notices) and the clock runs
until B's INBOX holds all N (B stores each durably before its 250; A
commits each outcome). The rows differ in connection reuse and
per-destination concurrency. The peer row sends the same N messages
straight to B with C{twisted.mail.smtp.sendmail} from this process (no
queue, no durability on the sending side, one connection per message),
at most 5 at once. The sink rows replace B by a minimal Twisted ESMTP
server process on B's address and port that counts and discards
messages; it offers PIPELINING (Twisted's server answers pipelined
commands in order when, as here, its checks are synchronous) as appnet's
does, so the relay client pipelines with both.

Until 2026-12-07 both nodes, their DNS server and every client ran in
this one process on one reactor, so each row measured one core's worth
of A, B and the clients together; C{stages.py} still runs that way, to
time A's stages and profile them in one place.

Usage (from a checkout, with the test extras installed; inside a network
namespace of your own, where 127.0.0.2-4 are free)::

    .venv/bin/python bench/relay/run.py [--quick | -n N] [--only e2e|e2e-peer]
        [--profile FILE]

C{--profile} runs A under twistd's cProfile (stats written when it stops).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer, task
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
)
from twisted.internet.protocol import ClientFactory, connectionDone
from twisted.mail import imap4, smtp
from twisted.mail.smtp import ESMTPClient, PLAINAuthenticator, sendmail
from twisted.python.failure import Failure
from zope.interface import implementer

from appnet.cli import Context
from appnet.config import loadConfig
from appnet.mail.lines import noDelay
from appnet.mail.relaytesting import zoneFor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
A_HOST, B_HOST, DNS_HOST = "127.0.0.2", "127.0.0.3", "127.0.0.4"
PASSWORD = "bench-password"
BOB = "bob@hamburger.edu"
ALICE = "alice@crepes.fr"
CONNECTIONS = 10


def message(n: int) -> bytes:
    filler = ("x" * 70 + "\r\n") * 13
    return f"Subject: bench {n}\r\nFrom: {ALICE}\r\n\r\n{filler}".encode()


@implementer(smtp.IMessage)
class _Discard:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def lineReceived(self, line: bytes) -> None:
        pass

    def eomReceived(self) -> defer.Deferred[None]:
        self.sink.count += 1
        return defer.succeed(None)

    def connectionLost(self) -> None:
        pass


@implementer(smtp.IMessageDelivery)
class Sink:
    """Accepts every message and throws it away, counting."""

    def __init__(self) -> None:
        self.count = 0

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: by sink"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        return origin

    def validateTo(self, user: Any) -> Any:
        return lambda: _Discard(self)


class PipeliningESMTP(smtp.ESMTP):
    """Twisted's ESMTP server, offering PIPELINING."""

    def extensions(self) -> dict[bytes, Any]:
        offered: dict[bytes, Any] = super().extensions()
        offered[b"PIPELINING"] = None
        return offered


async def startSink(reactor: Any, host: str, port: int) -> tuple[Sink, Any]:
    sink = Sink()
    factory = smtp.SMTPFactory()
    factory.delivery = sink  # type: ignore[attr-defined]

    def build(addr: Any) -> smtp.ESMTP:
        protocol = PipeliningESMTP()
        protocol.delivery = sink
        protocol.factory = factory
        return protocol

    factory.buildProtocol = build  # type: ignore[method-assign]
    listening = await TCP4ServerEndpoint(reactor, port, interface=host).listen(factory)
    return sink, listening


class Submitter(ESMTPClient):
    """
    One user agent's session: EHLO, AUTH PLAIN if given a login, then its
    messages one after another, then QUIT.

    Twisted's L{SMTPClient} asks C{getMailFrom} again after each message
    (and RSET) and says QUIT when it gets C{None}; its C{SenderMixin}
    (behind C{sendmail}) answers only once, hence this small subclass.
    Bodies are given with LF line ends (Twisted turns them into CRLF) and
    start no line with a dot. Nagle's algorithm is off, as a client that
    waits for each reply should have it: the final dot would otherwise
    wait for the server's delayed ACK (some 40 ms a message).

    @ivar done: fires when the connection is closed; fails if any message
        was not accepted with 250.
    """

    debug = False

    def __init__(
        self,
        messages: Sequence[bytes],
        sender: str,
        recipient: str,
        login: tuple[str, str] | None,
        accepted: Callable[[], None],
    ) -> None:
        secret = login[1].encode() if login is not None else None
        ESMTPClient.__init__(self, secret, None, b"ua.crepes.fr")
        self.heloFallback = False
        if login is not None:
            self.requireAuthentication = True
            self.registerAuthenticator(PLAINAuthenticator(login[0].encode()))
        self._messages = deque(messages)
        self._sender = sender
        self._recipient = recipient
        self._accepted = accepted
        self._current = b""
        self.errors: list[str] = []
        self.done: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        noDelay(self.transport)
        super().connectionMade()

    def getMailFrom(self) -> str | None:
        if not self._messages:
            return None
        self._current = self._messages.popleft()
        return self._sender

    def getMailTo(self) -> list[str]:
        return [self._recipient]

    def getMailData(self) -> io.BytesIO:
        return io.BytesIO(self._current)

    def sentMail(
        self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any
    ) -> None:
        if code == 250:
            self._accepted()
        else:
            self.errors.append(f"{code} {resp!r} {addresses!r}")

    def sendError(self, exc: Exception) -> None:
        self.errors.append(str(exc))
        super().sendError(exc)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        if self.errors or self._messages:
            left = len(self._messages)
            self.done.errback(
                RuntimeError(f"{left} messages not sent; {self.errors[:3]}")
            )
        else:
            self.done.callback(None)


async def submitAll(
    reactor: Any,
    host: str,
    port: int,
    n: int,
    login: tuple[str, str] | None,
    connections: int = CONNECTIONS,
) -> float:
    """
    Send messages 0 to C{n}-1 from alice to bob over C{connections}
    concurrent sessions to C{host}:C{port}.

    @return: when the last one was accepted (C{time.perf_counter}).
    """
    last = [0.0]

    def accepted() -> None:
        last[0] = time.perf_counter()

    clients = [
        Submitter(
            # Twisted's client wants LF line ends (CRLF would become
            # CR CR LF).
            [message(i).replace(b"\r\n", b"\n") for i in range(c, n, connections)],
            ALICE,
            BOB,
            login,
            accepted,
        )
        for c in range(connections)
    ]
    await defer.gatherResults(
        [
            connectProtocol(TCP4ClientEndpoint(reactor, host, port), client)
            for client in clients
        ]
    )
    await defer.gatherResults([client.done for client in clients])
    return last[0]


def toml(table: dict[str, Any], prefix: str = "") -> str:
    """A TOML document for a table of strings, numbers, booleans, lists."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return "[" + ", ".join(value(each) for each in v) + "]"

    lines = [f"{k} = {value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for k, v in table.items():
        if isinstance(v, dict):
            lines.append(f"\n[{prefix}{k}]")
            lines.append(toml(v, f"{prefix}{k}."))
    return "\n".join(lines) + "\n"


class Process:
    """A server process this script started, and where it listens."""

    def __init__(self, command: list[str], log: str, cwd: str) -> None:
        self.log = log
        with open(log, "wb") as output:
            # Its log goes to a file, as a daemon's would.
            self.popen = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, cwd=cwd
            )
        self.ports: dict[str, int] = {}

    def waitFor(self, marker: bytes) -> None:
        deadline = time.monotonic() + 60
        with open(self.log, "rb") as output:
            pending = b""
            while True:
                raw = output.readline()
                if not raw.endswith(b"\n"):
                    pending += raw
                    if self.popen.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{self.log}: did not start")
                    time.sleep(0.02)
                    continue
                raw, pending = pending + raw, b""
                found = re.search(rb"(\w+) listening on (tcp|udp) [\d.]+:(\d+)", raw)
                if found:
                    self.ports[found.group(1).decode()] = int(found.group(3))
                if marker in raw:
                    return

    def cpu(self) -> float:
        """CPU time (user + system) so far, from Linux's /proc; 0 elsewhere."""
        try:
            with open(f"/proc/{self.popen.pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def startAppnet(
    data: str, config: dict[str, Any], twistd: Sequence[str] = ()
) -> Process:
    """Start C{twistd appnet} on C{data} with C{config} (written there)."""
    os.makedirs(data, exist_ok=True)
    path = os.path.join(data, "appnet.toml")
    with open(path, "w") as f:
        f.write(toml({"data": data, **config}))
    process = Process(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", *twistd, "appnet", "--config", path],
        data + ".log",
        data,
    )  # fmt: skip
    process.waitFor(b"appnet ready")
    return process


def addUser(data: str, address: str) -> None:
    os.makedirs(data, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "appnet", "--data", data, "user", "add", address,
         "--password-stdin"],
        input=PASSWORD.encode() + b"\n",
        check=True,
        capture_output=True,
        cwd=ROOT,
    )  # fmt: skip


def freePort(hosts: Sequence[str]) -> int:
    """A TCP port free on all C{hosts} (the nodes' shared SMTP port)."""
    import socket

    for _ in range(20):
        sockets = []
        try:
            for host in hosts:
                s = socket.socket()
                sockets.append(s)
                s.bind((host, sockets[0].getsockname()[1] if len(sockets) > 1 else 0))
            return int(sockets[0].getsockname()[1])
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no shared free port")


class Network:
    """
    The DNS process and the two nodes' data directories and configs;
    nodes are started and stopped per row.
    """

    def __init__(self, root: str, twistdA: Sequence[str] = ()) -> None:
        self.root = root
        self.port = freePort([A_HOST, B_HOST])
        zones = os.path.join(root, "dns", "zones")
        os.makedirs(zones)
        for domain, host in (("crepes.fr", A_HOST), ("hamburger.edu", B_HOST)):
            with open(os.path.join(zones, f"{domain}.zone"), "w") as f:
                f.write(zoneFor(domain, host, DNS_HOST, None))
        off = {"enabled": False}
        self.dns = startAppnet(
            os.path.join(root, "dns"),
            {
                "dns": {"listen": f"{DNS_HOST}:0", "rate_limit": 0},
                **{
                    s: off
                    for s in ("smtp", "submission", "pop3", "imap", "ftp", "http")
                },
            },
        )
        self.resolver = f"{DNS_HOST}:{self.dns.ports['dns']}"
        self.twistdA = list(twistdA)
        self.a: Process | None = None
        self.b: Process | None = None
        self.serial = 0

    def nodeConfig(
        self, domain: str, host: str, mail: dict[str, Any]
    ) -> dict[str, Any]:
        ephemeral = [f"tcp:0:interface={host}"]
        return {
            "hostname": f"mx.{domain}",
            "smtp": {"listen": [f"tcp:{self.port}:interface={host}"]},
            "submission": {"listen": ephemeral},
            "imap": {"listen": ephemeral},
            "pop3": {"enabled": False},
            "ftp": {"enabled": False},
            "http": {"enabled": False},
            "dns": {"enabled": False, "resolver": self.resolver},
            "mail": {
                "domains": [domain],
                "relay_port": self.port,
                "bind_address": host,
                "spf": "off",
                "retry": ["1h"],
                **mail,
            },
        }

    def startA(self, mail: dict[str, Any] | None = None) -> Process:
        self.serial += 1
        data = os.path.join(self.root, f"a{self.serial}")
        addUser(data, ALICE)
        self.a = startAppnet(
            data, self.nodeConfig("crepes.fr", A_HOST, mail or {}), self.twistdA
        )
        self.aData = data
        return self.a

    def startB(self) -> Process:
        self.serial += 1
        data = os.path.join(self.root, f"b{self.serial}")
        addUser(data, BOB)
        self.b = startAppnet(data, self.nodeConfig("hamburger.edu", B_HOST, {}))
        return self.b

    def startSink(self, n: int) -> Process:
        self.serial += 1
        log = os.path.join(self.root, f"sink{self.serial}.log")
        self.b = Process(
            [sys.executable, os.path.abspath(__file__), "--sink",
             f"{B_HOST}:{self.port}:{n}"],
            log,
            self.root,
        )  # fmt: skip
        self.b.waitFor(b"sink listening")
        return self.b

    def stopNodes(self) -> None:
        for each in (self.a, self.b):
            if each is not None:
                each.stop()
        self.a = self.b = None

    def stop(self) -> None:
        self.stopNodes()
        self.dns.stop()


class _Status(imap4.IMAP4Client):
    def serverGreeting(self, caps: Any) -> None:
        self.factory.ready.callback(self)


async def inbox(reactor: Any, port: int) -> Callable[[], defer.Deferred[int]]:
    """bob's session on B's IMAP port; calling the result counts his INBOX."""
    factory = ClientFactory()
    factory.protocol = _Status
    factory.ready = defer.Deferred()  # type: ignore[attr-defined]
    reactor.connectTCP(B_HOST, port, factory)
    client = await factory.ready  # type: ignore[attr-defined]
    await client.login(BOB.encode(), PASSWORD.encode())

    def count() -> defer.Deferred[int]:
        return client.status("INBOX", "MESSAGES").addCallback(
            lambda status: int(status["MESSAGES"])
        )

    return count


async def until(reactor: Any, n: int, count: Callable[[], defer.Deferred[int]]) -> None:
    while await count() < n:
        await task.deferLater(reactor, 0.02, lambda: None)


async def endToEndRow(
    reactor: Any, net: Network, n: int, direct: bool
) -> tuple[float, float, float, float]:
    """
    alice submits C{n} messages on A's submission port (or, C{direct},
    on B's MX port) over 10 connections.

    @return: messages/s until every 250 and until B's INBOX held all, and
        A's and B's CPU ms per message.
    """
    try:
        a = net.startA()
        b = net.startB()
        count = await inbox(reactor, b.ports["imap"])
        if direct:
            host, port, login = B_HOST, net.port, None
        else:
            host, port = A_HOST, a.ports["submission"]
            login = (ALICE, PASSWORD)
        cpuA, cpuB = a.cpu(), b.cpu()
        started = time.perf_counter()
        submitted = await submitAll(reactor, host, port, n, login)
        await until(reactor, n, count)
        stored = time.perf_counter()
        cpuA, cpuB = a.cpu() - cpuA, b.cpu() - cpuB
        return (
            n / (submitted - started),
            n / (stored - started),
            cpuA * 1000 / n,
            cpuB * 1000 / n,
        )
    finally:
        net.stopNodes()


async def appnetRow(
    reactor: Any, net: Network, n: int, reuse: int, concurrency: int, sink: bool = False
) -> float:
    try:
        a = net.startA(
            {
                "relay_reuse": reuse,
                "relay_destination_concurrency": concurrency,
                "queue_poll": 0.02,
            }
        )
        await submitAll(reactor, A_HOST, a.ports["submission"], n, (ALICE, PASSWORD))
        config = loadConfig(os.path.join(net.aData, "appnet.toml"))
        context = Context(reactor, config)
        store = await context.store()
        # Every first attempt has failed (B is down) and is put off.
        while True:
            queued = await store.queue.list()
            if len(queued) == n and all(
                m.attempts > 0 and m.claimedBy is None for m in queued
            ):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        if sink:
            b = net.startSink(n)
        else:
            b = net.startB()
            count = await inbox(reactor, b.ports["imap"])
        started = time.perf_counter()
        await store.queue.retry()
        if sink:
            await threads_wait(reactor, b)
        else:
            await until(reactor, n, count)
        elapsed = time.perf_counter() - started
        await context.close()
        return n / elapsed
    finally:
        net.stopNodes()


async def threads_wait(reactor: Any, sink: Process) -> None:
    """Wait until the sink process has counted all and exited."""
    while sink.popen.poll() is None:
        await task.deferLater(reactor, 0.01, lambda: None)


async def twistedRow(reactor: Any, net: Network, n: int, sink: bool = False) -> float:
    try:
        if sink:
            b = net.startSink(n)
        else:
            b = net.startB()
            count = await inbox(reactor, b.ports["imap"])
        limit = defer.DeferredSemaphore(5)
        started = time.perf_counter()
        await defer.gatherResults(
            [
                limit.run(
                    sendmail,
                    B_HOST,
                    ALICE,
                    [BOB],
                    # Twisted's sender wants LF line ends (CRLF would
                    # become CR CR LF).
                    message(i).replace(b"\r\n", b"\n"),
                    port=net.port,
                )
                for i in range(n)
            ]
        )
        if sink:
            await threads_wait(reactor, b)
        else:
            await until(reactor, n, count)
        return n / (time.perf_counter() - started)
    finally:
        net.stopNodes()


async def main(reactor: Any, n: int, only: str | None, profile: str | None) -> None:
    root = tempfile.mkdtemp(prefix="appnet-relay-bench-")
    twistdA = (
        [f"--profile={profile}", "--profiler=cprofile", "--savestats"]
        if profile
        else []
    )
    net = Network(root, twistdA)
    try:
        endToEnd = []
        sent, stored, cpuA, cpuB = await endToEndRow(reactor, net, n, direct=False)
        endToEnd += [
            ("* submit on A (AUTH) -> stored in bob's INBOX on B", stored),
            ("  same run, until A's last 250 (submission only)", sent),
            ("  same run, A's CPU ms per message", cpuA),
            ("  same run, B's CPU ms per message", cpuB),
        ]
        if only != "e2e":
            _, direct, _, cpuB = await endToEndRow(reactor, net, n, direct=True)
            endToEnd += [
                ("  peer: same 10 conns straight to B's MX (no relay hop)", direct),
                ("  same run, B's CPU ms per message", cpuB),
            ]
        drains: list[tuple[str, Callable[[], Any]]] = [
            ("appnet relay, reuse 100, 5 conns -> appnet",
             lambda: appnetRow(reactor, net, n, 100, 5)),
            ("appnet relay, reuse 100, 1 conn -> appnet",
             lambda: appnetRow(reactor, net, n, 100, 1)),
            ("appnet relay, no reuse, 5 conns -> appnet",
             lambda: appnetRow(reactor, net, n, 1, 5)),
            ("twisted sendmail, 5 at once -> appnet",
             lambda: twistedRow(reactor, net, n)),
            ("appnet relay, reuse 100, 5 conns -> sink",
             lambda: appnetRow(reactor, net, n, 100, 5, True)),
            ("appnet relay, reuse 100, 1 conn -> sink",
             lambda: appnetRow(reactor, net, n, 100, 1, True)),
            ("appnet relay, no reuse, 5 conns -> sink",
             lambda: appnetRow(reactor, net, n, 1, 5, True)),
            ("twisted sendmail, 5 at once -> sink",
             lambda: twistedRow(reactor, net, n, True)),
        ]  # fmt: skip
        queued = []
        if only is None:
            for name, work in drains:
                queued.append((name, await work()))
    finally:
        net.stop()
        shutil.rmtree(root, ignore_errors=True)
    width = max(len(name) for name, _ in endToEnd + queued)
    print(f"{n} messages of 1 KiB per row; A, B, DNS and load each a process")
    print()
    print(
        f"End to end: alice submits on A, {CONNECTIONS} connections of"
        f" {n // CONNECTIONS} messages each"
    )
    print(f"{'case':<{width}}  msg/s")
    for name, rate in endToEnd:
        print(f"{name:<{width}}  {rate:7.{2 if 'CPU' in name else 0}f}")
    if queued:
        print()
        print("Queue drain: queued on A while B was down, then B started")
        print(f"{'case':<{width}}  msg/s")
        for name, rate in queued:
            print(f"{name:<{width}}  {rate:7.0f}")
    print()
    print(
        "* the headline metric: messages/s from submission on A to stored in B's INBOX"
    )


def runSink(reactor: Any, where: str) -> defer.Deferred[None]:
    """The sink process: count and discard N messages, then exit."""
    host, port, n = where.split(":")

    async def run() -> None:
        sink, listening = await startSink(reactor, host, int(port))
        print("sink listening", flush=True)
        while sink.count < int(n):
            await task.deferLater(reactor, 0.005, lambda: None)
        await listening.stopListening()

    return defer.Deferred.fromCoroutine(run())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 messages per row")
    parser.add_argument(
        "--only", choices=["e2e", "e2e-peer"], help="only the end-to-end row(s)"
    )
    parser.add_argument(
        "--profile", help="run A under cProfile, its stats written here at exit"
    )
    parser.add_argument("-n", type=int, help="messages per row (default 500)")
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        task.react(lambda reactor: runSink(reactor, args.sink))
    else:
        task.react(
            lambda reactor: defer.Deferred.fromCoroutine(
                main(
                    reactor,
                    args.n or (100 if args.quick else 500),
                    args.only,
                    args.profile,
                )
            )
        )
    sys.exit(0)
