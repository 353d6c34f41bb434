"""
The client side of zone transfers (AXFR, RFC 5936; IXFR, RFC 1995) and
of signed single exchanges (UPDATE), over TCP, with TSIG when a key is
given (every message of a transfer checked, RFC 8945 section 5.3.1).
"""

from __future__ import annotations

import os
import struct
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory
from twisted.protocols.basic import Int16StringReceiver
from twisted.python.failure import Failure

from appnet.dns import tsig
from appnet.dns.errors import DNSError, MalformedMessage
from appnet.dns.records import RCODES
from appnet.dns.update import Diff
from appnet.dns.wire import Decoded, decode, encode, newQuery

__all__ = ["Transfer", "TransferFailed", "exchange", "parseTransfer", "transfer"]

Address = tuple[str, int]


class TransferFailed(DNSError):
    """A transfer or exchange that did not complete; the reason says why."""

    def __init__(self, server: Address, reason: str) -> None:
        super().__init__(server, reason)
        self.server = server
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.server[0]}:{self.server[1]}: {self.reason}"


@frozen
class Transfer:
    """
    What a transfer brought.

    @ivar kind: C{"AXFR"} (the whole zone in C{records}), C{"IXFR"} (the
        changes in C{diffs}) or C{"UPTODATE"} (the serial asked for is
        current).
    @ivar soa: the primary's current SOA record.
    @ivar records: the zone's records, the SOA once (AXFR).
    @ivar diffs: the changes, oldest first (IXFR).
    """

    kind: str
    soa: Any
    records: tuple[Any, ...] = ()
    diffs: tuple[Diff, ...] = ()

    @property
    def serial(self) -> int:
        """The primary's serial."""
        serial: int = self.soa.payload.serial
        return serial


def parseTransfer(records: list[Any], serial: int | None) -> Transfer:
    """
    Read the answer records of a whole transfer response.

    @raise ValueError: if they are not a transfer.
    """
    from twisted.names import dns

    if not records or records[0].type != dns.SOA:
        raise ValueError("a transfer must start with an SOA record")
    first = records[0]
    newSerial = first.payload.serial
    if len(records) == 1:
        if serial is None:
            raise ValueError("an AXFR of a single record")
        return Transfer("UPTODATE", first)
    if records[-1].type != dns.SOA or records[-1].payload.serial != newSerial:
        raise ValueError("a transfer must end with the SOA it started with")
    if records[1].type != dns.SOA or serial is None:
        return Transfer("AXFR", first, tuple(records[:-1]))
    diffs = []
    body = records[1:-1]
    i = 0
    while i < len(body):
        old = body[i]
        i += 1
        deleted = []
        while i < len(body) and body[i].type != dns.SOA:
            deleted.append(body[i])
            i += 1
        if i >= len(body):
            raise ValueError("an IXFR difference without its new SOA")
        new = body[i]
        i += 1
        added = []
        while i < len(body) and body[i].type != dns.SOA:
            added.append(body[i])
            i += 1
        diffs.append(Diff(old, tuple(deleted), new, tuple(added)))
    return Transfer("IXFR", first, diffs=tuple(diffs))


class _Stream(Int16StringReceiver):
    """Sends one request, collects responses until C{done} says so."""

    MAX_LENGTH = 65535

    def __init__(self, owner: _Exchange) -> None:
        self.owner = owner

    def connectionMade(self) -> None:
        self.sendString(self.owner.request)

    def stringReceived(self, data: bytes) -> None:
        self.owner.received(data, self)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.owner.lost(reason)


class _Exchange(ClientFactory):
    noisy = False

    def __init__(
        self,
        reactor: Any,
        server: Address,
        request: bytes,
        key: tsig.Key | None,
        requestMAC: bytes,
        stream: bool,
        serial: int | None,
    ) -> None:
        self.reactor = reactor
        self.server = server
        self.request = request
        self.id = struct.unpack_from("!H", request)[0]
        self.key = key
        self.verifier = tsig.StreamVerifier(key, requestMAC) if key else None
        self.stream = stream
        self.serial = serial
        self.records: list[Any] = []
        self.soaSeen = 0
        self.firstSerial: int | None = None
        self.incremental: bool | None = None
        self.result: Deferred[Any] = Deferred()
        self.connection: _Stream | None = None

    def buildProtocol(self, addr: Any) -> _Stream:
        self.connection = _Stream(self)
        return self.connection

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.fail(f"cannot connect: {reason.getErrorMessage()}")

    def fail(self, reason: str) -> None:
        if not self.result.called:
            self.result.errback(TransferFailed(self.server, reason))
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.abortConnection()  # type: ignore[attr-defined]

    def finish(self, value: Any) -> None:
        if not self.result.called:
            self.result.callback(value)
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.loseConnection()

    def lost(self, reason: Failure | None) -> None:
        self.fail("the connection closed before the response was complete")

    def received(self, data: bytes, protocol: _Stream) -> None:
        from twisted.names import dns

        try:
            decoded: Decoded = decode(data)
        except MalformedMessage as e:
            return self.fail(str(e))
        message = decoded.message
        if message.id != self.id or not message.answer:
            return self.fail("a response that does not match the request")
        if self.verifier is not None:
            try:
                self.verifier.check(data, self.reactor.seconds())
            except (tsig.TSIGRejected, tsig.TSIGFormatError) as e:
                if not self.stream and decoded.rcode != dns.OK:
                    # An unsigned TSIG error (BADKEY, BADSIG): the code
                    # is the answer.
                    return self.finish(decoded)
                return self.fail(f"bad signature: {e}")
        elif message.additional and message.additional[-1].type == dns.TSIG:
            return self.fail("a signed response to an unsigned request")
        if not self.stream:
            return self.finish(decoded)
        if decoded.rcode != dns.OK:
            name = RCODES.get(decoded.rcode, str(decoded.rcode))
            return self.fail(f"the transfer was answered {name}")
        for record in message.answers:
            if record.type == dns.TSIG:
                continue
            self.records.append(record)
            if record.type == dns.SOA:
                if self.firstSerial is None:
                    self.firstSerial = record.payload.serial  # type: ignore[union-attr]
                elif len(self.records) == 2:
                    self.incremental = True
                if record.payload.serial == self.firstSerial:  # type: ignore[union-attr]
                    self.soaSeen += 1
            elif len(self.records) == 2:
                self.incremental = False
        done = False
        if (
            len(self.records) == 1
            and self.serial is not None
            and self.firstSerial is not None
            and not _greater(self.firstSerial, self.serial)
        ):
            done = True
        elif self.incremental is False and self.soaSeen >= 2:
            done = True
        elif self.incremental and self.soaSeen >= 3:
            done = True
        if done:
            if self.verifier is not None and not self.verifier.complete:
                return self.fail("the last message of the transfer is not signed")
            try:
                self.finish(parseTransfer(self.records, self.serial))
            except ValueError as e:
                self.fail(str(e))


def _greater(a: int, b: int) -> bool:
    return (a > b and a - b < 2**31) or (a < b and b - a > 2**31)


def _run(
    reactor: Any,
    server: Address,
    message: Any,
    key: tsig.Key | None,
    stream: bool,
    serial: int | None,
    timeout: float,
    bindAddress: str | None = None,
) -> Deferred[Any]:
    data = encode(message)
    mac = b""
    if key is not None:
        data, mac = tsig.sign(data, key, reactor.seconds())
    factory = _Exchange(reactor, server, data, key, mac, stream, serial)
    reactor.connectTCP(
        server[0],
        server[1],
        factory,
        timeout=timeout,
        bindAddress=(bindAddress, 0) if bindAddress else None,
    )
    call = reactor.callLater(timeout, factory.fail, f"no answer within {timeout}s")

    def cancel(result: Any) -> Any:
        if call.active():
            call.cancel()
        return result

    return factory.result.addBoth(cancel)


def transfer(
    reactor: Any,
    server: Address,
    zone: bytes,
    serial: int | None = None,
    key: tsig.Key | None = None,
    timeout: float = 30.0,
    bindAddress: str | None = None,
) -> Deferred[Transfer]:
    """
    Transfer C{zone} from C{server}: IXFR from C{serial} if given (the
    server may answer with the whole zone), else AXFR.

    @raise TransferFailed: (in the Deferred) for any failure, including a
        signature that does not verify and a transfer cut short.
    """
    from twisted.names import dns

    message = newQuery(
        _newID(), zone, dns.AXFR if serial is None else dns.IXFR, recursionDesired=False
    )
    if serial is not None:
        message.authority = [
            dns.RRHeader(
                zone,
                dns.SOA,
                dns.IN,
                0,
                dns.Record_SOA(mname=b"", rname=b"", serial=serial),
            )
        ]
    return _run(reactor, server, message, key, True, serial, timeout, bindAddress)


def exchange(
    reactor: Any,
    server: Address,
    message: Any,
    key: tsig.Key | None = None,
    timeout: float = 10.0,
) -> Deferred[Decoded]:
    """
    Send C{message} over TCP (signed with C{key}) and return the response,
    its signature checked.
    """
    message.id = _newID()
    return _run(reactor, server, message, key, False, None, timeout)


def _newID() -> int:
    return int.from_bytes(os.urandom(2), "big")


def update(
    reactor: Any,
    server: Address,
    zone: bytes,
    updates: Any,
    prerequisites: Any = (),
    key: tsig.Key | None = None,
    timeout: float = 10.0,
) -> Deferred[Decoded]:
    """
    Send a dynamic UPDATE (RFC 2136) of C{zone} to C{server} over TCP.

    @param updates: the update section: records of the zone's class to
        add; class ANY with no data to delete an RRset (type ANY: the
        name); class NONE to delete one record.
    @param prerequisites: the prerequisite section, in the same shape
        (RFC 2136 section 2.4).
    @return: the response; its C{rcode} says how it went.
    """
    from twisted.names import dns

    message = dns.Message(opCode=dns.OP_UPDATE, maxSize=0)
    message.queries = [dns.Query(zone, dns.SOA, dns.IN)]
    message.answers = list(prerequisites)
    message.authority = list(updates)
    return exchange(reactor, server, message, key, timeout)
