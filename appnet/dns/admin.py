"""
C{appnet dns}: TSIG keys and dynamic updates.

    appnet dns key add NAME [--algorithm hmac-sha256]
    appnet dns update [-k KEYFILE | -y [ALG:]NAME:SECRET] [-s HOST[:PORT]]
                      [-z ZONE]  < statements

C{key add} writes C{DATA/keys/NAME.key} and prints it in BIND's format
(for C{nsupdate -k}). C{update} reads statements like C{nsupdate}'s:
C{server HOST [PORT]}, C{zone ZONE}, C{update add NAME TTL TYPE DATA},
C{update delete NAME [TYPE [DATA]]}, C{prereq nxdomain|yxdomain NAME},
C{prereq nxrrset|yxrrset NAME TYPE [DATA]}, C{send}; a final C{send} is
implied.
"""

from __future__ import annotations

import base64
import os
from typing import Any, TextIO

from twisted.internet.threads import deferToThread
from twisted.names import dns
from twisted.python import usage

from appnet.cli import Command, CommandError, Context
from appnet.dns import tsig
from appnet.dns.errors import ZoneError
from appnet.dns.names import normalize
from appnet.dns.records import RCODES, typeByName
from appnet.dns.transfer import TransferFailed, update
from appnet.dns.zonefile import parseZone

__all__ = ["DNSOptions", "parseStatements"]

_NONE = 254
_RCODES = {**RCODES, 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 10: "NOTZONE"}


def _writeKey(path: str, text: str, force: bool) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


class KeyAdd(Command):
    """Make a TSIG key, save it in DATA/keys and print it."""

    synopsis = "NAME [--algorithm hmac-sha256] [--force]"
    optParameters = [["algorithm", "a", "hmac-sha256", "hmac-sha256, -sha512 ..."]]
    optFlags = [["force", None, "Replace an existing key."]]

    def parseArgs(self, name: str) -> None:  # type: ignore[override]
        try:
            self.key = tsig.newKey(name, self["algorithm"])
        except (ValueError, UnicodeError) as e:
            raise usage.UsageError(str(e)) from None
        if not self.key.name or b"/" in self.key.name:
            raise usage.UsageError(f"not a key name: {name!r}")

    async def run(self, context: Context) -> None:
        directory = context.config.dns.keys or context.dataDir.root.child("keys").path
        name = self.key.name.decode("ascii")
        path = os.path.join(directory, name + ".key")
        text = tsig.formatKey(self.key)
        try:
            await deferToThread(_writeKey, path, text, self["force"])
        except FileExistsError:
            raise CommandError(f"{path} exists; use --force to replace it") from None
        context.out.write(text)
        context.out.flush()


class KeyOptions(usage.Options):
    """TSIG keys."""

    synopsis = "add NAME"
    subCommands = [["add", None, KeyAdd, "Make a key and print it."]]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("say add")


def _record(line: str, zone: bytes, ttl: bool) -> Any:
    origin = zone.decode("ascii") + "."
    text = f"$ORIGIN {origin}\n{line if ttl else _withTTL(line)}\n"
    try:
        records = parseZone(text, "update", zone)
    except ZoneError as e:
        raise CommandError(f"cannot read {line!r}: {e.problem}") from None
    if len(records) != 1:
        raise CommandError(f"cannot read {line!r}")
    r = records[0]
    return r.name, r.type, r.ttl, r.payload


def _withTTL(line: str) -> str:
    name, _, rest = line.partition(" ")
    return f"{name} 0 {rest}"


def _absolute(name: str, zone: bytes) -> bytes:
    if name.endswith("."):
        return normalize(name.encode("ascii"))
    if name == "@":
        return zone
    return normalize(name.encode("ascii") + b"." + zone)


def parseStatements(lines: list[str], zone: bytes | None) -> list[dict[str, Any]]:
    """
    Read nsupdate-like statements into messages to send: each a dict
    with C{zone}, C{server}, C{prerequisites} and C{updates}.

    @raise CommandError: naming the statement that is wrong.
    """
    messages: list[dict[str, Any]] = []
    current: dict[str, Any] = {
        "zone": zone,
        "server": None,
        "prerequisites": [],
        "updates": [],
    }

    def send() -> None:
        nonlocal current
        if current["prerequisites"] or current["updates"]:
            if current["zone"] is None:
                raise CommandError("say which zone (zone ZONE, or --zone)")
            messages.append(current)
        current = dict(current, prerequisites=[], updates=[])

    for raw in lines:
        words = raw.split(";", 1)[0].split()
        if not words:
            continue
        verb = words[0].lower()
        if verb == "send":
            send()
        elif verb == "zone" and len(words) == 2:
            current["zone"] = normalize(words[1].encode("ascii"))
        elif verb == "server" and len(words) in (2, 3):
            current["server"] = (words[1], int(words[2]) if len(words) == 3 else 53)
        elif verb in ("update", "prereq") and len(words) >= 3:
            zone = current["zone"]
            if zone is None:
                raise CommandError(f"{raw.strip()!r}: say the zone first")
            action, name = words[1].lower(), _absolute(words[2], zone)
            rest = words[3:]
            if rest and rest[0].upper() == "IN":
                rest = rest[1:]
            if verb == "update" and action == "add":
                _, type, ttl, payload = _record(" ".join([words[2], *rest]), zone, True)
                current["updates"].append(
                    dns.RRHeader(name, type, dns.IN, ttl, payload)
                )
            elif verb == "update" and action in ("delete", "del"):
                if rest and rest[0].isdigit():
                    rest = rest[1:]
                if len(rest) >= 2:
                    _, type, _, payload = _record(
                        " ".join([words[2], *rest]), zone, False
                    )
                    current["updates"].append(
                        dns.RRHeader(name, type, _NONE, 0, payload)
                    )
                else:
                    type = typeByName(rest[0]) if rest else dns.ALL_RECORDS
                    current["updates"].append(
                        dns.RRHeader(name, type, dns.ANY, 0, dns.UnknownRecord(b""))
                    )
            elif verb == "prereq" and action in ("nxdomain", "yxdomain"):
                cls = _NONE if action == "nxdomain" else dns.ANY
                current["prerequisites"].append(
                    dns.RRHeader(name, dns.ALL_RECORDS, cls, 0, dns.UnknownRecord(b""))
                )
            elif verb == "prereq" and action in ("nxrrset", "yxrrset") and rest:
                if action == "yxrrset" and len(rest) >= 2:
                    _, type, _, payload = _record(
                        " ".join([words[2], *rest]), zone, False
                    )
                    current["prerequisites"].append(
                        dns.RRHeader(name, type, dns.IN, 0, payload)
                    )
                else:
                    cls = _NONE if action == "nxrrset" else dns.ANY
                    current["prerequisites"].append(
                        dns.RRHeader(
                            name, typeByName(rest[0]), cls, 0, dns.UnknownRecord(b"")
                        )
                    )
            else:
                raise CommandError(f"cannot read {raw.strip()!r}")
        else:
            raise CommandError(f"cannot read {raw.strip()!r}")
    send()
    return messages


class Update(Command):
    """Send dynamic updates, nsupdate-like statements read from stdin."""

    synopsis = "[-k KEYFILE | -y [ALG:]NAME:SECRET] [-s HOST[:PORT]] [-z ZONE]"
    optParameters = [
        ["keyfile", "k", None, "A BIND key file (appnet dns key add prints one)."],
        ["secret", "y", None, "[ALGORITHM:]NAME:BASE64SECRET"],
        ["server", "s", "127.0.0.1:1053", "The primary server, HOST[:PORT]."],
        ["zone", "z", None, "The zone, unless the statements say."],
        ["timeout", "t", "10", "Seconds to wait for each answer."],
    ]

    def postOptions(self) -> None:
        from appnet.config import parseHostPort

        try:
            self.server = parseHostPort(self["server"], 53)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        self.key: tsig.Key | None = None
        if self["secret"]:
            parts = self["secret"].split(":")
            if len(parts) == 2:
                parts.insert(0, "hmac-sha256")
            if len(parts) != 3:
                raise usage.UsageError("-y takes [ALGORITHM:]NAME:SECRET")
            try:
                self.key = tsig.Key(
                    normalize(parts[1].encode("ascii")),
                    tsig.algorithmName(parts[0]),
                    base64.b64decode(parts[2], validate=True),
                )
            except ValueError as e:
                raise usage.UsageError(f"-y: {e}") from None

    def prepare(self, stdin: TextIO) -> None:
        if self["keyfile"]:
            try:
                with open(self["keyfile"], encoding="utf-8") as f:
                    keys = tsig.parseKeys(f.read(), self["keyfile"])
            except OSError as e:
                raise CommandError(
                    f"cannot read {self['keyfile']}: {e.strerror}"
                ) from None
            except ValueError as e:
                raise CommandError(str(e)) from None
            self.key = keys[0]
        zone = normalize(self["zone"].encode("ascii")) if self["zone"] else None
        self.messages = parseStatements(stdin.read().splitlines(), zone)

    async def run(self, context: Context) -> None:
        for message in self.messages:
            server = message["server"] or self.server
            try:
                response = await update(
                    context.reactor,
                    server,
                    message["zone"],
                    message["updates"],
                    message["prerequisites"],
                    self.key,
                    float(self["timeout"]),
                )
            except TransferFailed as e:
                raise CommandError(f"update failed: {e}") from None
            name = _RCODES.get(response.rcode, str(response.rcode))
            if response.rcode != dns.OK:
                raise CommandError(f"update failed: {name}")
            context.say(f"update of {message['zone'].decode('ascii')}: {name}")


class DNSOptions(usage.Options):
    """TSIG keys and dynamic updates."""

    synopsis = "key add NAME | update ..."
    subCommands = [
        ["key", None, KeyOptions, "TSIG keys."],
        ["update", None, Update, "Send dynamic updates (nsupdate-like)."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("say key or update")
