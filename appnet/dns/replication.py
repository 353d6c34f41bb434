"""
The primary's side of the DNS's own replication: TSIG-signed requests,
dynamic UPDATE (RFC 2136), zone transfers out (AXFR, RFC 5936; IXFR from
the journal, RFC 1995) and NOTIFY to secondaries (RFC 1996).

The server hands L{Replication.handle} every request that is signed, or
is an UPDATE or NOTIFY, or asks for a transfer; plain queries never come
here. Every change of a zone is made through L{Authority.apply}.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.names import dns
from twisted.python.failure import Failure

from appnet.dns import tsig
from appnet.dns.journal import Journal, JournalWriter
from appnet.dns.names import display, normalize
from appnet.dns.policy import Policy
from appnet.dns.records import NOTAUTH
from appnet.dns.update import Diff, applyDiff, prepare, serialGreater
from appnet.dns.wire import (
    EDNS,
    STANDARD_UDP_SIZE,
    Decoded,
    chunkRecords,
    encode,
    responseTo,
)
from appnet.dns.zones import Authority, Zone
from appnet.status import Status

if TYPE_CHECKING:
    from appnet.dns.secondary import SecondaryCopy

__all__ = ["Notifier", "Replication", "ReplicationPolicy"]

Reply = Callable[[bytes], None]
Address = tuple[str, int]

#: Largest message of a zone transfer (below 16 KiB so name compression
#: reaches every name).
TRANSFER_CHUNK = 16000


@frozen
class ReplicationPolicy:
    """
    Who may change and copy which zones.

    @ivar updateKeys: zone origin to the names of the keys that may
        UPDATE it; a zone not named takes no updates.
    @ivar transferKeys: keys that may transfer any zone (besides the
        addresses of C{dns.allow_transfer}).
    @ivar notify: secondaries told of every change of our zones.
    """

    updateKeys: Mapping[bytes, frozenset[bytes]] = {}
    transferKeys: frozenset[bytes] = frozenset()
    notify: tuple[Address, ...] = ()


class Replication:
    """
    Answers signed requests, UPDATE, NOTIFY and transfers.

    @ivar journals: origin to the group-committing writer of its journal,
        for every zone we are primary for.
    @ivar secondaries: origin to the handler of NOTIFY for zones we copy
        from a primary (see L{appnet.dns.secondary}).
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        authority: Authority,
        keyring: tsig.Keyring,
        policy: ReplicationPolicy,
        access: Policy,
        status: Status,
    ) -> None:
        self._reactor = reactor
        self.authority = authority
        self.keyring = keyring
        self.policy = policy
        self.access = access
        self.status = status
        self.journals: dict[bytes, JournalWriter] = {}
        self.secondaries: dict[bytes, SecondaryCopy] = {}
        self.notifier: Notifier | None = None
        #: Largest UDP reply, as the server's C{dns.max_udp_size}.
        self.maxUDPSize = 1232
        #: Changes a journal holds before it is compacted to half as many
        #: (C{dns.journal_limit}).
        self.journalLimit = 10000
        self._pending: dict[bytes, Zone] = {}

    def journalFor(self, origin: bytes) -> JournalWriter:
        """The writer of C{origin}'s journal (in memory if it has no file)."""
        writer = self.journals.get(origin)
        if writer is None:
            writer = self.journals[origin] = JournalWriter(self._reactor, Journal(None))
        return writer

    @staticmethod
    def wants(request: Decoded) -> bool:
        """Is C{request} ours rather than the plain query path's?"""
        message = request.message
        if message.opCode in (dns.OP_UPDATE, dns.OP_NOTIFY):
            return True
        if any(r.type == dns.TSIG for r in message.additional):
            return True
        return any(q.type in (dns.AXFR, dns.IXFR) for q in message.queries)

    def handle(
        self,
        data: bytes,
        request: Decoded,
        client: Address,
        transport: str,
        reply: Reply,
    ) -> None:
        """Answer one request (see the module docstring)."""
        message = request.message
        response = responseTo(message)
        signatures = [r for r in message.additional if r.type == dns.TSIG]
        verified: tsig.Verified | None = None
        if signatures:
            if len(signatures) > 1 or message.additional[-1].type != dns.TSIG:
                response.rCode = dns.EFORMAT
                return reply(encode(response))
            message.additional = message.additional[:-1]
            try:
                verified = tsig.verify(data, self.keyring, self._reactor.seconds())
            except tsig.TSIGFormatError:
                response.rCode = dns.EFORMAT
                return reply(encode(response))
            except tsig.TSIGRejected as e:
                return self._rejected(response, e, client, reply)
        if message.opCode == dns.OP_UPDATE:
            return self._update(response, request, verified, client, reply)
        if message.opCode == dns.OP_NOTIFY:
            return self._notified(response, request, verified, client, reply)
        if message.opCode != dns.OP_QUERY:
            response.rCode = dns.ENOTIMP
            return self._send(response, verified, reply)
        if len(message.queries) != 1:
            response.rCode = dns.EFORMAT
            return self._send(response, verified, reply)
        question = message.queries[0]
        if question.type in (dns.AXFR, dns.IXFR):
            return self._transfer(response, request, verified, client, transport, reply)
        return self._query(response, request, verified, transport, reply)

    # Signatures.

    def _rejected(
        self,
        response: dns.Message,
        error: tsig.TSIGRejected,
        client: Address,
        reply: Reply,
    ) -> None:
        """RFC 8945 section 5.2: NOTAUTH with the TSIG error."""
        self.status.increment("dns", "tsig_rejected")
        self._log.info(
            "dns: rejected a signature from {client}: {error}",
            client=client[0],
            error=str(error),
        )
        response.rCode = NOTAUTH
        data = encode(response)
        key = self.keyring.get(error.keyName)
        if error.error == tsig.BADTIME and key is not None:
            reply(tsig.badTime(data, error, key, self._reactor.seconds()))
        else:
            reply(tsig.unsignedError(data, error.keyName, error.record, error.error))

    def _send(
        self,
        response: dns.Message,
        verified: tsig.Verified | None,
        reply: Reply,
        edns: EDNS | None = None,
        limit: int = 65535,
    ) -> None:
        if verified is not None:
            # Room for the TSIG record, added after any truncation.
            limit -= 40 + len(verified.key.name) + len(verified.key.algorithm)
            limit -= len(verified.mac)
        data = encode(response, edns, limit)
        if verified is not None:
            data, _ = tsig.sign(
                data, verified.key, self._reactor.seconds(), verified.mac
            )
        reply(data)

    def _query(
        self,
        response: dns.Message,
        request: Decoded,
        verified: tsig.Verified | None,
        transport: str,
        reply: Reply,
    ) -> None:
        """
        A signed plain query: our zones' data only, signed, within the
        client's UDP size (truncated, TC set, when it does not fit).
        """
        edns = EDNS(self.maxUDPSize) if request.optCount else None
        limit = 65535
        if transport == "udp":
            limit = STANDARD_UDP_SIZE
            if request.edns is not None:
                limit = max(limit, min(request.edns.udpSize, self.maxUDPSize))
        question = response.queries[0]
        answer = self.authority.answer(normalize(question.name.name), question.type)
        if answer is None:
            response.rCode = dns.EREFUSED
        else:
            response.rCode = answer.rcode
            response.auth = answer.authoritative
            response.answers = list(answer.answers)
            response.authority = list(answer.authority)
            response.additional = list(answer.additional)
        self._send(response, verified, reply, edns, limit)

    # Dynamic update.

    def _update(
        self,
        response: dns.Message,
        request: Decoded,
        verified: tsig.Verified | None,
        client: Address,
        reply: Reply,
    ) -> None:
        message = request.message
        if len(message.queries) != 1 or message.queries[0].type != dns.SOA:
            response.rCode = dns.EFORMAT
            return self._send(response, verified, reply)
        origin = normalize(message.queries[0].name.name)
        zone = self._pending.get(origin) or self.authority.get(origin)
        if zone is None or origin in self.secondaries:
            response.rCode = NOTAUTH
            return self._send(response, verified, reply)
        allowed = self.policy.updateKeys.get(origin, frozenset())
        if verified is None or verified.key.name not in allowed:
            self.status.increment("dns", "updates_refused")
            self._log.info(
                "dns: refused an update of {zone} from {client} ({why})",
                zone=display(origin),
                client=client[0],
                why="unsigned" if verified is None else "key not allowed",
            )
            response.rCode = dns.EREFUSED
            return self._send(response, verified, reply)
        rcode, diff = prepare(zone, message.answers, message.authority)
        if diff is None:
            response.rCode = rcode
            return self._send(response, verified, reply)
        self.commit(origin, zone, diff).addCallbacks(
            lambda _: self._send(response, verified, reply),
            lambda f: self._updateFailed(f, response, verified, reply),
        )

    def _updateFailed(
        self,
        failure: Failure,
        response: dns.Message,
        verified: tsig.Verified | None,
        reply: Reply,
    ) -> None:
        response.rCode = dns.ESERVER
        self._send(response, verified, reply)

    def commit(self, origin: bytes, zone: Zone, diff: Diff) -> Deferred[Zone]:
        """
        Apply C{diff} to C{zone}, the newest version of C{origin}: once
        the journal has it on disk, serve the result and notify the
        secondaries. Later changes may be prepared on top of it at once.
        """
        new = applyDiff(zone, diff)
        self._pending[origin] = new
        writer = self.journalFor(origin)
        d = writer.append(diff)

        def written(_: object) -> Zone:
            if self._pending.get(origin) is new:
                del self._pending[origin]
            self.status.increment("dns", "updates")
            self.authority.apply([new])
            self._log.info(
                "dns: {zone} updated to serial {serial}",
                zone=display(origin),
                serial=diff.newSerial,
            )
            if self.notifier is not None:
                self.notifier.notify(origin, new)
            if (
                len(writer.journal.history) >= self.journalLimit
                and not writer.compacting
            ):
                writer.compact(new, self.journalLimit // 2).addErrback(lambda _: None)
            return new

        def failed(failure: Failure) -> Failure:
            self._pending.pop(origin, None)
            return failure

        return d.addCallbacks(written, failed)

    # NOTIFY in.

    def _notified(
        self,
        response: dns.Message,
        request: Decoded,
        verified: tsig.Verified | None,
        client: Address,
        reply: Reply,
    ) -> None:
        message = request.message
        if len(message.queries) != 1:
            response.rCode = dns.EFORMAT
            return self._send(response, verified, reply)
        origin = normalize(message.queries[0].name.name)
        secondary = self.secondaries.get(origin)
        if secondary is None:
            response.rCode = NOTAUTH
            return self._send(response, verified, reply)
        if not secondary.notifiedBy(client[0], verified):
            response.rCode = dns.EREFUSED
            return self._send(response, verified, reply)
        response.auth = True
        self._send(response, verified, reply)

    # Transfers out.

    def _mayTransfer(self, client: Address, verified: tsig.Verified | None) -> bool:
        if verified is not None and verified.key.name in self.policy.transferKeys:
            return True
        return self.access.mayTransfer(client[0])

    def _transfer(
        self,
        response: dns.Message,
        request: Decoded,
        verified: tsig.Verified | None,
        client: Address,
        transport: str,
        reply: Reply,
    ) -> None:
        message = request.message
        question = message.queries[0]
        origin = normalize(question.name.name)
        ixfr = question.type == dns.IXFR
        if transport != "tcp" and not ixfr:
            response.rCode = dns.EFORMAT
            return self._send(response, verified, reply)
        if not self._mayTransfer(client, verified):
            self._log.info(
                "dns: refused a zone transfer of {zone} to {client}",
                zone=display(origin),
                client=client[0],
            )
            response.rCode = dns.EREFUSED
            return self._send(response, verified, reply)
        zone = self.authority.get(origin)
        if zone is None or getattr(zone, "expired", False):
            response.rCode = NOTAUTH
            return self._send(response, verified, reply)
        response.auth = True
        soa = list(zone.soa.headers)
        records: list[dns.RRHeader]
        kind = "AXFR"
        if ixfr:
            theirs = [r for r in message.authority if r.type == dns.SOA]
            if not theirs:
                response.rCode = dns.EFORMAT
                return self._send(response, verified, reply)
            serial = theirs[0].payload.serial  # type: ignore[union-attr]
            chain: list[Diff] | None = None
            if serial == zone.serial or serialGreater(serial, zone.serial):
                chain = []
            else:
                history = self.journals.get(origin)
                if history is not None:
                    chain = history.journal.since(serial)
                    if chain and chain[-1].newSerial != zone.serial:
                        chain = None
            if transport != "tcp" or chain == []:
                # Up to date, or over UDP: the current SOA alone (RFC
                # 1995 sections 2 and 4).
                response.answers = soa
                return self._send(response, verified, reply)
            if chain is not None:
                kind = "IXFR"
                records = list(soa)
                for diff in chain:
                    records.extend(diff.records())
                records.extend(soa)
            else:
                records = zone.records()
        else:
            records = zone.records()
        self.status.increment("dns", "transfers")
        self._log.info(
            "dns: {kind} of {zone} to {client}: {count} records",
            kind=kind,
            zone=display(origin),
            client=client[0],
            count=len(records),
        )
        signer = (
            tsig.StreamSigner(verified.key, verified.mac, self._reactor.seconds())
            if verified is not None
            else None
        )
        for chunk in chunkRecords(records, TRANSFER_CHUNK):
            response.answers = chunk
            data = encode(response)
            reply(signer.sign(data) if signer is not None else data)


class _NotifyProtocol(DatagramProtocol):
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.notifier.answered(data, addr)


class Notifier:
    """
    Sends NOTIFY (RFC 1996) for our zones to the configured secondaries,
    from the server's own address, retrying every C{interval} seconds up
    to C{tries} times until each answers.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        targets: Sequence[Address],
        interface: str,
        interval: float = 2.0,
        tries: int = 5,
    ) -> None:
        self._reactor = reactor
        self.targets = tuple(targets)
        self._interface = interface
        self._interval = interval
        self._tries = tries
        self._port: Any = None
        self._waiting: dict[tuple[int, Address], Any] = {}
        self._nextID = 0

    def start(self) -> None:
        """Open the UDP socket NOTIFY is sent from."""
        if self.targets and self._port is None:
            self._port = self._reactor.listenUDP(
                0, _NotifyProtocol(self), interface=self._interface
            )

    def stop(self) -> Any:
        """Stop retrying and close the socket."""
        for call in self._waiting.values():
            if call.active():
                call.cancel()
        self._waiting.clear()
        port, self._port = self._port, None
        return port.stopListening() if port is not None else None

    def notify(self, origin: bytes, zone: Zone) -> None:
        """Tell every secondary that C{zone} changed."""
        if self._port is None:
            return
        for target in self.targets:
            self._nextID = (self._nextID + 1) & 0xFFFF
            message = dns.Message(
                id=self._nextID, opCode=dns.OP_NOTIFY, auth=True, maxSize=0
            )
            message.queries = [dns.Query(origin, dns.SOA, dns.IN)]
            message.answers = list(zone.soa.headers)
            self._send(encode(message), self._nextID, target, self._tries)

    def _send(self, data: bytes, id: int, target: Address, tries: int) -> None:
        if self._port is None:
            return
        host = str(ipaddress.ip_address(target[0]))
        try:
            self._port.write(data, (host, target[1]))
        except OSError as e:
            self._log.info("dns: cannot send NOTIFY to {host}: {e}", host=host, e=e)
        key = (id, (host, target[1]))
        if tries > 1:
            self._waiting[key] = self._reactor.callLater(
                self._interval, self._send, data, id, target, tries - 1
            )
        else:
            self._waiting.pop(key, None)

    def answered(self, data: bytes, addr: Any) -> None:
        """A secondary answered: stop retrying that NOTIFY."""
        if len(data) < 2:
            return
        id = int.from_bytes(data[:2], "big")
        call = self._waiting.pop((id, (addr[0], addr[1])), None)
        if call is not None and call.active():
            call.cancel()
