"""
C{appnet dkim}: the DKIM signing keys of a data directory.

C{keygen} writes C{dkim/DOMAIN/SELECTOR.pem} and prints the TXT record;
when a zone file in C{zones/} covers the domain, the record is added to
it with the SOA serial raised (the DNS service serves it after a reload,
SIGHUP). C{list} shows the keys and their records, C{retire} stops a
selector signing while its record stays published, so mail signed with
it keeps verifying. A running daemon reads the keys at start.
"""

from __future__ import annotations

import os
import re
import time

from twisted.internet.threads import deferToThread
from twisted.python import usage
from twisted.python.filepath import FilePath

from appnet.cli import Command, CommandError, Context
from appnet.dns.names import display
from appnet.dns.zones import loadZone
from appnet.durable import writeDurably
from appnet.errors import AppnetError
from appnet.mail.dkim import ALGORITHMS, RETIRED, DKIMKey, DKIMKeyError, generateKey
from appnet.mail.dkim import loadKeys as _loadKeys

__all__ = ["DKIMOptions", "publish"]


def _keyDirectory(context: Context) -> FilePath[str]:
    return context.dataDir.root.child("dkim")


def publish(zones: FilePath[str], key: DKIMKey) -> str | None:
    """
    Add C{key}'s record to the zone file in C{zones} whose origin is the
    key's domain or the nearest parent, with the SOA serial one higher
    (so secondaries follow); the file's path, or C{None} if no zone covers
    it. A file that would no longer load is restored. Blocking: run it in
    a thread.

    @raise DKIMKeyError: if the record cannot be added.
    """
    if not zones.isdir():
        return None
    best: tuple[int, str] | None = None
    for zoneFile in sorted(zones.globChildren("*.zone")):
        try:
            origin = display(loadZone(zoneFile.path).origin).rstrip(".").lower()
        except AppnetError:
            continue
        domain = key.domain
        if domain == origin or domain.endswith("." + origin):
            if best is None or len(origin) > best[0]:
                best = (len(origin), zoneFile.path)
    if best is None:
        return None
    path = best[1]
    with open(path, "rb") as f:
        before = f.read()
    serial = loadZone(path).serial
    line = ("" if before.endswith(b"\n") or not before else "\n") + key.zoneLine()
    added = before + (line + "\n").encode("ascii")
    bumped = _bumpSerial(added, serial)
    for candidate, wanted in ((bumped, serial + 1), (added, serial)):
        if candidate is None:
            continue
        writeDurably(path, candidate)
        try:
            zone = loadZone(path)
        except AppnetError:
            continue
        if zone.serial == wanted:
            return path
    writeDurably(path, before)
    raise DKIMKeyError(f"{path} would not load with the record added; left as it was")


_SOA_SERIAL = re.compile(
    rb"(\sSOA\s+\S+\s+\S+\s+(?:\(\s*)?(?:;[^\n]*\n\s*)*)(\d+)", re.IGNORECASE
)


def _bumpSerial(text: bytes, serial: int) -> bytes | None:
    """C{text} with its SOA serial one higher, if it can be found."""
    match = _SOA_SERIAL.search(text)
    if match is None or int(match.group(2)) != serial:
        return None
    following = str((serial + 1) % 2**32).encode()
    return text[: match.start(2)] + following + text[match.end(2) :]


class DKIMKeygen(Command):
    """Make a signing key for a domain and print its TXT record."""

    synopsis = "DOMAIN [--selector S] [--algorithm rsa|ed25519]"
    optParameters = [
        ["selector", "s", None, "Selector (default: the algorithm and today's date)."],
        ["algorithm", "a", "rsa", "rsa (2048 bits) or ed25519."],
    ]

    def parseArgs(self, domain: str) -> None:  # type: ignore[override]
        self["domain"] = domain

    def postOptions(self) -> None:
        if self["algorithm"] not in ALGORITHMS:
            raise usage.UsageError("--algorithm is rsa or ed25519")
        if self["selector"] is None:
            prefix = "ed" if self["algorithm"] == "ed25519" else "rsa"
            self["selector"] = prefix + time.strftime("%Y%m%d", time.gmtime())

    async def run(self, context: Context) -> None:
        context.dataDir.create()
        try:
            key = await deferToThread(
                generateKey,
                _keyDirectory(context),
                self["domain"],
                self["selector"],
                self["algorithm"],
            )
        except DKIMKeyError as e:
            raise CommandError(str(e)) from None
        context.say(key.zoneLine())
        try:
            published = await deferToThread(publish, context.dataDir.zones, key)
        except AppnetError as e:
            raise CommandError(f"key written, record not published: {e}") from None
        if published is not None:
            context.say(f"; published in {published} (reload the DNS service)")
        else:
            context.say(f"; publish this record in the DNS zone of {key.domain}")


class DKIMList(Command):
    """List the signing keys and their records."""

    synopsis = ""

    async def run(self, context: Context) -> None:
        try:
            keys = await deferToThread(_loadKeys, _keyDirectory(context))
        except DKIMKeyError as e:
            raise CommandError(str(e)) from None
        for key in keys:
            state = "signing" if key.active else "retired"
            context.say(f"{key.domain}\t{key.selector}\t{key.algorithm}\t{state}")
            context.say(f"\t{key.zoneLine()}")


class DKIMRetire(Command):
    """Stop signing with a selector; keep its record published."""

    synopsis = "DOMAIN SELECTOR"

    def parseArgs(self, domain: str, selector: str) -> None:  # type: ignore[override]
        self["domain"] = domain.lower().rstrip(".")
        self["selector"] = selector.lower()

    async def run(self, context: Context) -> None:
        path = (
            _keyDirectory(context)
            .child(self["domain"])
            .child(self["selector"] + ".pem")
        )
        if not path.exists():
            raise CommandError(
                f"no signing key {self['selector']}._domainkey.{self['domain']}"
            )
        await deferToThread(os.replace, path.path, path.path + RETIRED)
        context.say(
            f"retired {self['selector']}._domainkey.{self['domain']}"
            " (restart the daemon to stop signing with it)"
        )


class DKIMOptions(usage.Options):
    """DKIM signing keys."""

    synopsis = "keygen DOMAIN | list | retire DOMAIN SELECTOR"
    subCommands = [
        ["keygen", None, DKIMKeygen, "Make a key; print its TXT record."],
        ["list", None, DKIMList, "List keys and records."],
        ["retire", None, DKIMRetire, "Stop signing with a selector."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("say keygen DOMAIN, list or retire DOMAIN SELECTOR")
