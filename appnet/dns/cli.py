"""
C{appnet dig}: ask a DNS server one question and print the answer the
way BIND's C{dig} does::

    appnet dig NAME [TYPE] [@HOST[:PORT]] [+tcp] [+norecurse] [+short]
               [+noedns] [+time=SECONDS] [+tries=N] [-x ADDRESS]

Without C{@HOST} the first C{nameserver} of C{/etc/resolv.conf} is asked.
"""

from __future__ import annotations

import ipaddress
import time
from typing import TextIO

from twisted.names import dns
from twisted.python import usage

from appnet import __version__
from appnet.cli import Command, CommandError, Context
from appnet.config import parseHostPort
from appnet.dns.client import DNSClient, Response, systemResolvers
from appnet.dns.errors import TemporaryFailure
from appnet.dns.names import display, reverseName
from appnet.dns.records import className, rdataText, recordText, typeByName, typeName
from appnet.errors import CannotConnect

__all__ = ["DigOptions", "formatResponse"]

_FLAGS = (
    ("qr", lambda r: True),
    ("aa", lambda r: r.authoritative),
    ("tc", lambda r: r.truncated),
    ("rd", lambda r: r.recursionDesired),
    ("ra", lambda r: r.recursionAvailable),
    ("ad", lambda r: r.authenticData),
    ("cd", lambda r: r.checkingDisabled),
)
_OPCODES = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE"}


def formatResponse(
    response: Response, command: str, short: bool = False, when: float | None = None
) -> str:
    """
    The text C{appnet dig} prints for C{response}.
    """
    if short:
        return "".join(rdataText(r.type, r.payload) + "\n" for r in response.answers)
    lines = [
        f"; <<>> appnet dig {__version__} <<>> {command}",
        ";; Got answer:",
        f";; ->>HEADER<<- opcode: {_OPCODES.get(response.opcode, response.opcode)}, "
        f"status: {response.rcodeName}, id: {response.id}",
    ]
    flags = " ".join(name for name, test in _FLAGS if test(response))
    additional = len(response.additional) + (1 if response.edns is not None else 0)
    lines.append(
        f";; flags: {flags}; QUERY: {1 if response.question else 0}, "
        f"ANSWER: {len(response.answers)}, AUTHORITY: {len(response.authority)}, "
        f"ADDITIONAL: {additional}"
    )
    if response.recursionDesired and not response.recursionAvailable:
        lines.append(";; WARNING: recursion requested but not available")
    lines.append("")
    if response.edns is not None:
        edns = response.edns
        lines.append(";; OPT PSEUDOSECTION:")
        lines.append(
            f"; EDNS: version: {edns.version}, flags:{' do' if edns.dnssecOK else ''}; "
            f"udp: {edns.udpSize}"
        )
    if response.question is not None:
        question = response.question
        lines.append(";; QUESTION SECTION:")
        lines.append(
            f";{display(question.name)}\t\t{className(question.cls)}\t"
            f"{typeName(question.type)}"
        )
        lines.append("")
    for title, section in (
        ("ANSWER", response.answers),
        ("AUTHORITY", response.authority),
        ("ADDITIONAL", response.additional),
    ):
        if section:
            lines.append(f";; {title} SECTION:")
            lines.extend(recordText(record) for record in section)
            lines.append("")
    host, port = response.server
    stamp = time.strftime(
        "%a %b %d %H:%M:%S UTC %Y", time.gmtime(time.time() if when is None else when)
    )
    lines.extend(
        [
            f";; Query time: {int(response.elapsed * 1000)} msec",
            f";; SERVER: {host}#{port}({host}) ({response.transport.upper()})",
            f";; WHEN: {stamp}",
            f";; MSG SIZE  rcvd: {response.size}",
            "",
        ]
    )
    return "\n".join(lines) + "\n"


class DigOptions(Command):
    """Ask a DNS server one question, print the answer like dig."""

    synopsis = (
        "NAME [TYPE] [@HOST[:PORT]] [+tcp] [+norecurse] [+short] [+noedns] "
        "[+time=S] [+tries=N] [-x ADDRESS]"
    )
    optParameters = [
        ["reverse", "x", None, "Reverse lookup: the PTR record of ADDRESS."]
    ]

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None
        self.type = dns.A
        self.server: tuple[str, int] | None = None
        self.tcp = False
        self.recurse = True
        self.short = False
        self.edns = True
        self.timeout = 5.0
        self.tries = 2
        self.words: list[str] = []

    def parseArgs(self, *args: str) -> None:
        self.words = list(args)
        plain: list[str] = []
        for word in args:
            if word.startswith("@"):
                try:
                    self.server = _server(word[1:])
                except ValueError as e:
                    raise usage.UsageError(f"bad server {word!r}: {e}") from None
            elif word.startswith("+"):
                self._plus(word[1:])
            else:
                plain.append(word)
        for word in plain:
            if self.name is not None and word.upper() == "IN":
                continue
            if self.name is not None:
                try:
                    self.type = typeByName(word)
                except ValueError:
                    raise usage.UsageError(f"unknown record type {word!r}") from None
            else:
                self.name = word

    def _plus(self, option: str) -> None:
        key, _, value = option.partition("=")
        key = key.lower()
        if key in ("tcp", "vc"):
            self.tcp = True
        elif key in ("notcp", "novc"):
            self.tcp = False
        elif key in ("norecurse", "norec"):
            self.recurse = False
        elif key in ("recurse", "rec"):
            self.recurse = True
        elif key == "short":
            self.short = True
        elif key == "noedns":
            self.edns = False
        elif key == "edns":
            self.edns = True
        elif key in ("time", "tries") and value.isdigit() and int(value) > 0:
            if key == "time":
                self.timeout = float(value)
            else:
                self.tries = int(value)
        else:
            raise usage.UsageError(f"unknown option +{option}")

    def postOptions(self) -> None:
        if self["reverse"] is not None:
            try:
                self.name = reverseName(self["reverse"]).decode("ascii")
            except ValueError:
                raise usage.UsageError(f"not an IP address: {self['x']!r}") from None
            if not any(w.upper() == typeName(self.type) for w in self.words[1:]):
                self.type = dns.PTR
        if self.name is None:
            raise usage.UsageError("say which NAME to look up")

    def prepare(self, stdin: TextIO) -> None:
        if self.server is None:
            servers = systemResolvers()
            if not servers:
                raise CommandError(
                    "no @HOST given and no nameserver in /etc/resolv.conf"
                )
            self.server = servers[0]

    async def run(self, context: Context) -> None:
        assert self.name is not None and self.server is not None
        client = DNSClient(
            context.reactor, [self.server], timeout=self.timeout, attempts=self.tries
        )
        try:
            response = await client.query(
                self.name,
                self.type,
                recursionDesired=self.recurse,
                tcp=self.tcp,
                edns=self.edns,
            )
        except TemporaryFailure as e:
            where = _show(self.server)
            reason = e.reason.removeprefix(f"{where}: ")
            if "refused" in reason.lower():
                raise CannotConnect(*self.server, "connection refused") from None
            raise CommandError(f"no answer from {where}: {reason}") from None
        words = self.words
        if self["reverse"] is not None:
            words = ["-x", self["reverse"], *words]
        command = " ".join(words) or self.name
        context.out.write(formatResponse(response, command, self.short))
        context.out.flush()


def _server(text: str) -> tuple[str, int]:
    """C{HOST}, C{HOST:PORT}, C{[V6]:PORT} or a bare IPv6 address."""
    try:
        return str(ipaddress.ip_address(text)), 53
    except ValueError:
        return parseHostPort(text, 53)


def _show(server: tuple[str, int]) -> str:
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
