"""
Secondary zones (RFC 1034 section 4.3.5, RFC 1996): copies of zones held
by primaries, refreshed by IXFR (falling back to AXFR) on the SOA's
refresh timer, again after its retry time when the primaries fail, at
once on a NOTIFY from one of them, and answered SERVFAIL once the copy
is older than the SOA's expire time.

A transfer is applied only when it completed and verified; a copy that
changed is written to C{DIR/ZONE.zone} (written aside, fsynced, renamed
over) so a restart serves it at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from appnet.config import SecondaryZone
from appnet.dns import tsig
from appnet.dns.errors import ZoneError
from appnet.dns.journal import Journal, writeDurably, zoneText
from appnet.dns.names import display, normalize
from appnet.dns.transfer import Transfer, transfer
from appnet.dns.update import applyDiffs, diffZones, serialGreater, zoneFromRecords
from appnet.dns.zonefile import readFile
from appnet.dns.zones import Authority, Zone, zoneFromText

__all__ = ["Secondaries", "SecondaryCopy"]

#: Retry time before the first copy exists (no SOA to read it from).
FIRST_RETRY = 30.0
#: Changes kept for IXFR out of a secondary copy (older serials get AXFR).
MAX_HISTORY = 10000


class SecondaryCopy:
    """
    One secondary zone: its copy, timers and transfers.

    @ivar zone: the copy being served, or C{None} before the first.
    @ivar journal: the changes received by IXFR (in memory), so this
        server can answer IXFR too.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: SecondaryZone,
        authority: Authority,
        keyring: tsig.Keyring,
        path: str | None,
        interface: str | None = None,
        timeout: float = 30.0,
        transferer: Any = transfer,
    ) -> None:
        self._reactor = reactor
        self._transfer = transferer
        self.config = config
        self.origin = normalize(config.zone.encode("ascii"))
        self.authority = authority
        self.key = keyring.get(config.key.encode("ascii")) if config.key else None
        self.path = path
        self.interface = interface
        self._timeout = timeout
        self.zone: Zone | None = None
        self.journal = Journal(None)
        #: Called with the origin and the new copy after each change (the
        #: notifier: our own secondaries hear of it).
        self.changed: Callable[[bytes, Zone], None] | None = None
        #: How each change arrived: C{"AXFR"} or C{"IXFR"}, in order.
        self.kinds: list[str] = []
        self.lastSuccess: float | None = None
        self._timer: Any = None
        self._expiry: Any = None
        self._running: Deferred[None] | None = None
        self._again = False
        self._stopped = False
        self.primaries = tuple(config.primaries)

    def load(self) -> None:
        """
        Read the saved copy, if any (blocking: at start-up). It counts as
        fresh: the refresh that follows at once tells otherwise.
        """
        if self.path is None or not os.path.exists(self.path):
            return
        try:
            zone = zoneFromText(readFile(self.path), self.path, self.origin)
        except ZoneError as e:
            self._log.error("dns: saved secondary copy not used: {e}", e=str(e))
            return
        if zone.origin != self.origin:
            return
        self.zone = zone

    def start(self) -> None:
        """Serve the saved copy and refresh now."""
        self._stopped = False
        if self.zone is not None:
            self.lastSuccess = self._reactor.seconds()
            self._armExpiry(self.zone)
        self.refresh()

    def stop(self) -> Deferred[Any]:
        """Cancel timers; wait for a transfer in progress."""
        self._stopped = True
        for call in (self._timer, self._expiry):
            if call is not None and call.active():
                call.cancel()
        running = self._running
        if running is None:
            return Deferred.fromCoroutine(_nothing())
        done: Deferred[Any] = Deferred()
        running.addBoth(lambda _: done.callback(None))
        return done

    def notifiedBy(self, host: str, verified: tsig.Verified | None) -> bool:
        """
        A NOTIFY from C{host}: refresh now if it is one of our primaries
        (RFC 1996 section 3.10).
        """
        if host not in {h for h, _ in self.primaries}:
            return False
        self._log.info(
            "dns: NOTIFY for {zone} from {host}", zone=display(self.origin), host=host
        )
        self.refresh()
        return True

    def refresh(self) -> Deferred[None]:
        """Check the primaries for a newer version now."""
        if self._running is not None:
            self._again = True
            return self._running
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._running = Deferred.fromCoroutine(self._refresh())

        def done(_: object) -> None:
            self._running = None
            if self._again and not self._stopped:
                self._again = False
                self.refresh()

        self._running.addBoth(done)
        return self._running

    async def _refresh(self) -> None:
        ok = False
        for primary in self.primaries:
            serial = self.zone.serial if self.zone is not None else None
            # IXFR from the serial held, then AXFR if that fails (an
            # error answer, a change that does not apply).
            for asked in (serial, None) if serial is not None else (None,):
                try:
                    result = await self._transfer(
                        self._reactor,
                        primary,
                        self.origin,
                        asked,
                        self.key,
                        self._timeout,
                        bindAddress=self.interface,
                    )
                    await self._install(result)
                except Exception as e:
                    self._log.info(
                        "dns: {kind} of {zone} from {host}:{port} failed: {e}",
                        kind="AXFR" if asked is None else "IXFR",
                        zone=display(self.origin),
                        host=primary[0],
                        port=primary[1],
                        e=str(e),
                    )
                    continue
                ok = True
                break
            if ok:
                break
        if self._stopped:
            return
        zone = self.zone
        if ok:
            assert zone is not None
            self.lastSuccess = self._reactor.seconds()
            self._armExpiry(zone)
            self._schedule(zone.soa.records[0].refresh)
        else:
            retry = zone.soa.records[0].retry if zone is not None else FIRST_RETRY
            self._schedule(retry)

    async def _install(self, result: Transfer) -> None:
        old = self.zone
        if result.kind == "UPTODATE":
            return
        if result.kind == "IXFR":
            assert old is not None
            new = applyDiffs(old, result.diffs)
            diffs = list(result.diffs)
        else:
            new = zoneFromRecords(result.records, f"transfer of {display(self.origin)}")
            if new.origin != self.origin:
                raise ZoneError(new.source, 0, "the transfer is of another zone")
            diffs = [diffZones(old, new)] if old is not None else []
            if old is not None and not serialGreater(new.serial, old.serial):
                return
        new.source = self.path or new.source
        if self.path is not None:
            text = zoneText(new)
            await deferToThreadPool(
                self._reactor,
                self._reactor.getThreadPool(),
                writeDurably,
                self.path,
                text.encode("utf-8"),
            )
        if result.kind != "IXFR" and old is None:
            self.journal.history = []
        history = self.journal.history
        history.extend(diffs)
        del history[: max(0, len(history) - MAX_HISTORY)]
        self.zone = new
        self.kinds.append(result.kind)
        del self.kinds[: max(0, len(self.kinds) - MAX_HISTORY)]
        self.authority.apply([new])
        if self.changed is not None:
            self.changed(self.origin, new)
        self._log.info(
            "dns: {zone} now at serial {serial} by {kind}",
            zone=display(self.origin),
            serial=new.serial,
            kind=result.kind,
        )

    def _schedule(self, delay: float) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._reactor.callLater(max(1.0, delay), self.refresh)

    def _armExpiry(self, zone: Zone) -> None:
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        if zone.expired:
            zone = attrs.evolve(zone, expired=False)
            self.zone = zone
            self.authority.apply([zone])
        self._expiry = self._reactor.callLater(zone.soa.records[0].expire, self._expire)

    def _expire(self) -> None:
        zone = self.zone
        if zone is None:
            return
        self._log.warn(
            "dns: secondary zone {zone} expired: answering SERVFAIL",
            zone=display(self.origin),
        )
        self.zone = attrs.evolve(zone, expired=True)
        self.authority.apply([self.zone])


async def _nothing() -> None:
    return None


class Secondaries:
    """Every secondary zone of one server."""

    def __init__(
        self,
        reactor: Any,
        configs: Sequence[SecondaryZone],
        authority: Authority,
        keyring: tsig.Keyring,
        directory: str | None,
    ) -> None:
        self.copies: dict[bytes, SecondaryCopy] = {}
        for config in configs:
            path = None
            if directory is not None:
                path = os.path.join(directory, config.zone + ".zone")
            copy = SecondaryCopy(reactor, config, authority, keyring, path)
            self.copies[copy.origin] = copy
        self._directory = directory

    def load(self) -> None:
        """Read the saved copies (blocking, at start-up)."""
        if self._directory is not None and self.copies:
            os.makedirs(self._directory, exist_ok=True)
        for copy in self.copies.values():
            copy.load()

    def zones(self) -> list[Zone]:
        """The copies to serve now."""
        return [c.zone for c in self.copies.values() if c.zone is not None]

    def start(self, interface: str | None) -> None:
        """Start refreshing every copy."""
        if interface in ("", "0.0.0.0", "::"):
            interface = None
        for copy in self.copies.values():
            copy.interface = interface
            copy.start()

    def stop(self) -> Deferred[Any]:
        """Stop refreshing."""
        return DeferredList([c.stop() for c in self.copies.values()])
