"""
What joins dynamic update, transfers, NOTIFY and secondary zones to one
L{appnet.dns.server.DNSService}: the keyring from the key directory, the
policy from C{[dns]}, a journal writer for every zone file, the
notifier and the secondary copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from appnet.config import DNSConfig
from appnet.dns import tsig
from appnet.dns.errors import ZoneError
from appnet.dns.journal import Journal, JournalWriter
from appnet.dns.names import display, normalize
from appnet.dns.replication import Notifier, Replication, ReplicationPolicy
from appnet.dns.secondary import Secondaries
from appnet.dns.update import serialGreater
from appnet.dns.zones import Zone
from appnet.status import Status

__all__ = ["Primary"]


def _name(text: str) -> bytes:
    return normalize(text.encode("ascii"))


class Primary:
    """
    Builds the replication side of one DNS service (see the module
    docstring).

    @ivar replication: what the server hands UPDATE, NOTIFY, transfers
        and signed requests.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        factory: Any,
        config: DNSConfig,
        keyDirectory: str | None,
        status: Status,
    ) -> None:
        self._reactor = reactor
        self._config = config
        try:
            keyring = (
                tsig.Keyring.load(keyDirectory) if keyDirectory else tsig.Keyring()
            )
        except OSError as e:
            raise ZoneError(keyDirectory or "keys", 0, str(e.strerror)) from None
        except ValueError as e:
            # parseKeys names the file first.
            where, _, problem = str(e).partition(": ")
            raise ZoneError(where, 0, problem) from None
        self.keyring = keyring
        policy = ReplicationPolicy(
            updateKeys={
                _name(zone): frozenset(_name(k) for k in keys)
                for zone, keys in config.update
            },
            transferKeys=frozenset(_name(k) for k in config.transfer_keys),
            notify=config.notify,
        )
        for name in [k for _, keys in config.update for k in keys] + list(
            config.transfer_keys
        ):
            if keyring.get(_name(name)) is None:
                self._log.warn("dns: no TSIG key named {name}", name=name)
        self.authority = factory.authority
        self.replication = Replication(
            reactor, factory.authority, keyring, policy, factory.policy, status
        )
        self.replication.maxUDPSize = config.max_udp_size
        self.replication.journalLimit = config.journal_limit
        factory.replication = self.replication
        self.notifier = Notifier(reactor, config.notify, config.listen[0])
        self.replication.notifier = self.notifier
        self._secondaries: Secondaries | None = None

    def secondaries(self, directory: str | None) -> Secondaries:
        """The secondary zones, their saved copies read."""
        secondaries = Secondaries(
            self._reactor,
            self._config.secondary,
            self.authority,
            self.keyring,
            directory,
        )
        secondaries.load()
        for origin, copy in secondaries.copies.items():
            self.replication.secondaries[origin] = copy
            copy.changed = self.notifier.notify
            self.replication.journals[origin] = JournalWriter(
                self._reactor, copy.journal
            )
        self._secondaries = secondaries
        return secondaries

    def adopt(
        self, loaded: dict[str, Zone], journals: Mapping[str, Journal]
    ) -> dict[str, Zone]:
        """
        Take the zones just (re)loaded: keep each file's journal writer;
        a zone updated while its file was being re-read keeps its newer
        version.
        """
        result = dict(loaded)
        writers = self.replication.journals
        for name, zone in loaded.items():
            origin = zone.origin
            current = self.authority.get(origin)
            writer = writers.get(origin)
            journal = journals.get(name)
            if (
                writer is not None
                and writer.journal.history
                and current is not None
                and serialGreater(current.serial, zone.serial)
            ):
                result[name] = current
                continue
            if journal is not None and (
                writer is None or writer.journal.path != journal.path
            ):
                writers[origin] = JournalWriter(self._reactor, journal)
        return result

    def start(self, interface: str) -> None:
        """Open the NOTIFY socket, notify every zone, start the secondaries."""
        self.notifier.start()
        secondaries = set(self.replication.secondaries)
        for origin, zone in sorted(self.authority.zones.items()):
            if origin not in secondaries:
                self._log.debug("dns: NOTIFY for {zone}", zone=display(origin))
                self.notifier.notify(origin, zone)
        if self._secondaries is not None:
            self._secondaries.start(interface)

    def stop(self) -> Deferred[Any]:
        """Stop notifying and refreshing."""
        waits: list[Deferred[Any]] = []
        closing = self.notifier.stop()
        if closing is not None:
            waits.append(closing)
        if self._secondaries is not None:
            waits.append(self._secondaries.stop())
        return DeferredList(waits)
