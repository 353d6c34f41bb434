"""
Tests for L{appnet.dns.replication}: the server's answers to signed
requests (RFC 8945), UPDATE (RFC 2136), AXFR (RFC 5936) and IXFR (RFC
1995), driven through L{DNSServerFactory.handleRequest} on a C{Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from appnet.dns import tsig
from appnet.dns.policy import Policy
from appnet.dns.query import DNSServerFactory
from appnet.dns.records import NOTAUTH
from appnet.dns.replication import Replication, ReplicationPolicy
from appnet.dns.transfer import parseTransfer
from appnet.dns.wire import Decoded, decode, encode, newQuery
from appnet.dns.zones import Authority
from appnet.status import Status
from tests.dns.test_update import ZONE, a, rr, zone

UPDATER = tsig.Key(b"update.key", b"hmac-sha256", b"u" * 32)
READER = tsig.Key(b"xfr.key", b"hmac-sha512", b"x" * 64)
STRANGER = tsig.Key(b"other.key", b"hmac-sha256", b"o" * 32)
NOW = 1_700_000_000.0


def updateMessage(*updates: dns.RRHeader, prerequisites: Any = ()) -> bytes:
    message = dns.Message(id=9, opCode=dns.OP_UPDATE, maxSize=0)
    message.queries = [dns.Query(b"example.org", dns.SOA, dns.IN)]
    message.answers = list(prerequisites)
    message.authority = list(updates)
    return encode(message)


def ixfrQuery(serial: int) -> bytes:
    message = newQuery(3, b"example.org", dns.IXFR, recursionDesired=False)
    message.authority = [
        dns.RRHeader(
            b"example.org", dns.SOA, dns.IN, 0, dns.Record_SOA(b"", b"", serial=serial)
        )
    ]
    return encode(message)


class ReplicationTests(SynchronousTestCase):
    """The primary's side, one request at a time."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.authority = Authority([zone()])
        self.changes: list[frozenset[bytes]] = []
        self.authority.addListener(self.changes.append)
        status = Status(self.clock)
        self.factory = DNSServerFactory(
            self.clock, self.authority, None, Policy([], ["127.0.0.5"]), status
        )
        self.replication = Replication(
            self.clock,
            self.authority,
            tsig.Keyring([UPDATER, READER]),
            ReplicationPolicy(
                updateKeys={b"example.org": frozenset([b"update.key"])},
                transferKeys=frozenset([b"xfr.key"]),
            ),
            self.factory.policy,
            status,
        )
        self.factory.replication = self.replication

    def ask(
        self,
        data: bytes,
        key: tsig.Key | None = None,
        transport: str = "tcp",
        client: str = "127.0.0.9",
    ) -> tuple[list[bytes], bytes]:
        mac = b""
        if key is not None:
            data, mac = tsig.sign(data, key, NOW)
        replies: list[bytes] = []
        self.factory.handleRequest(data, (client, 5353), transport, replies.append)
        return replies, mac

    def one(self, data: bytes, key: tsig.Key | None = None) -> Decoded:
        replies, mac = self.ask(data, key)
        self.assertEqual(len(replies), 1)
        if key is not None and mac:
            found = tsig.find(replies[0])
            if found is not None and found[2].MAC:
                self.assertIsNotNone(
                    tsig.verify(replies[0], tsig.Keyring([key]), NOW, mac)
                )
        return decode(replies[0])

    # RFC 2136 section 3.3: permission.

    def test_unsignedUpdateRefused(self) -> None:
        """An unsigned UPDATE is REFUSED and changes nothing."""
        reply = self.one(updateMessage(rr("new.example.org", dns.A, a("192.0.2.9"))))
        self.assertEqual(reply.rcode, dns.EREFUSED)
        self.assertEqual(reply.message.opCode, dns.OP_UPDATE)
        self.assertEqual(self.authority.get(b"example.org").serial, 10)  # type: ignore[union-attr]
        self.assertEqual(self.changes, [])

    def test_keyNotAllowedRefused(self) -> None:
        """
        An UPDATE signed with a good key the zone's policy does not name
        is REFUSED (signed, since the key is known).
        """
        reply = self.one(
            updateMessage(rr("new.example.org", dns.A, a("192.0.2.9"))), READER
        )
        self.assertEqual(reply.rcode, dns.EREFUSED)

    def test_signedUpdate(self) -> None:
        """
        An UPDATE signed with an allowed key is applied: NOERROR, signed
        over the request's MAC; the zone serves the record at the next
        serial; the listeners hear of the zone's change.
        """
        reply = self.one(
            updateMessage(rr("new.example.org", dns.A, a("192.0.2.9"))), UPDATER
        )
        self.assertEqual(reply.rcode, dns.OK)
        answer = self.authority.answer(b"new.example.org", dns.A)
        assert answer is not None
        self.assertEqual(answer.answers[0].payload.dottedQuad(), "192.0.2.9")  # type: ignore[union-attr]
        self.assertEqual(self.authority.get(b"example.org").serial, 11)  # type: ignore[union-attr]
        self.assertEqual(self.changes, [frozenset([b"example.org"])])

    def test_prerequisiteFails(self) -> None:
        """A failing prerequisite is answered with its code (YXDOMAIN)."""
        reply = self.one(
            updateMessage(
                rr("www.example.org", dns.A, a("192.0.2.9")),
                prerequisites=[rr("www.example.org", dns.ALL_RECORDS, cls=254, ttl=0)],
            ),
            UPDATER,
        )
        self.assertEqual(reply.rcode, 6)

    def test_notOurZone(self) -> None:
        """An UPDATE of a zone we do not serve is NOTAUTH (3.1.2)."""
        message = dns.Message(id=9, opCode=dns.OP_UPDATE, maxSize=0)
        message.queries = [dns.Query(b"example.net", dns.SOA, dns.IN)]
        reply = self.one(encode(message), UPDATER)
        self.assertEqual(reply.rcode, NOTAUTH)

    def test_zoneSectionNotSOA(self) -> None:
        """A zone section whose type is not SOA is FORMERR (3.1.1)."""
        message = dns.Message(id=9, opCode=dns.OP_UPDATE, maxSize=0)
        message.queries = [dns.Query(b"example.org", dns.A, dns.IN)]
        self.assertEqual(self.one(encode(message), UPDATER).rcode, dns.EFORMAT)

    # RFC 8945 section 5.2: errors.

    def test_badKey(self) -> None:
        """
        An unknown key: NOTAUTH, with BADKEY in an unsigned TSIG record.
        """
        replies, _ = self.ask(updateMessage(), STRANGER)
        reply = decode(replies[0])
        self.assertEqual(reply.rcode, NOTAUTH)
        found = tsig.find(replies[0])
        assert found is not None
        self.assertEqual((found[2].error, found[2].MAC), (tsig.BADKEY, b""))

    def test_badSig(self) -> None:
        """A wrong MAC: NOTAUTH with BADSIG."""
        forged = tsig.Key(b"update.key", b"hmac-sha256", b"f" * 32)
        replies, _ = self.ask(updateMessage(), forged)
        found = tsig.find(replies[0])
        assert found is not None
        self.assertEqual(decode(replies[0]).rcode, NOTAUTH)
        self.assertEqual(found[2].error, tsig.BADSIG)

    def test_badTime(self) -> None:
        """
        A request signed too long ago: NOTAUTH with BADTIME, signed, the
        server's time in Other Data.
        """
        self.clock.advance(3600)
        replies, mac = self.ask(updateMessage(), UPDATER)
        found = tsig.find(replies[0])
        assert found is not None
        self.assertEqual(found[2].error, tsig.BADTIME)
        self.assertIsNotNone(tsig.verify(replies[0], tsig.Keyring([UPDATER]), NOW, mac))

    def test_tsigNotLast(self) -> None:
        """A TSIG record that is not the last record is FORMERR (5.1)."""
        signed, _ = tsig.sign(updateMessage(), UPDATER, NOW)
        message = decode(signed).message
        message.additional.append(
            dns.RRHeader(b"x.example.org", dns.A, dns.IN, 0, a("192.0.2.1"))
        )
        replies, _ = self.ask(encode(message))
        self.assertEqual(decode(replies[0]).rcode, dns.EFORMAT)

    def test_signedQuery(self) -> None:
        """A signed plain query is answered from our zones, signed."""
        reply = self.one(encode(newQuery(4, b"www.example.org", dns.A)), READER)
        self.assertEqual(reply.rcode, dns.OK)
        self.assertEqual(len(reply.message.answers), 2)

    def test_truncatedThenSigned(self) -> None:
        """
        A signed query over UDP whose answer does not fit in 512 bytes is
        answered truncated (TC set), and the signature, added after the
        truncation, still verifies.
        """
        for i in range(40):
            self.one(
                updateMessage(rr("big.example.org", dns.A, a(f"192.0.2.{i + 1}"))),
                UPDATER,
            )
        replies, mac = self.ask(
            encode(newQuery(4, b"big.example.org", dns.A)), READER, transport="udp"
        )
        self.assertLessEqual(len(replies[0]), 512)
        reply = decode(replies[0])
        self.assertTrue(reply.message.trunc)
        self.assertIsNotNone(tsig.verify(replies[0], tsig.Keyring([READER]), NOW, mac))

    # Transfers: RFC 5936 section 4.2 and RFC 1995.

    def test_transferRefused(self) -> None:
        """
        AXFR from an address not allowed, or signed with a key not
        allowed, is REFUSED.
        """
        axfr = encode(newQuery(3, b"example.org", dns.AXFR, recursionDesired=False))
        self.assertEqual(self.one(axfr).rcode, dns.EREFUSED)
        self.assertEqual(self.one(axfr, UPDATER).rcode, dns.EREFUSED)

    def test_axfrByAddress(self) -> None:
        """An allowed address gets the zone, SOA first and last."""
        axfr = encode(newQuery(3, b"example.org", dns.AXFR, recursionDesired=False))
        replies, _ = self.ask(axfr, client="127.0.0.5")
        records = [r for d in replies for r in decode(d).message.answers]
        result = parseTransfer(records, None)
        self.assertEqual(result.kind, "AXFR")
        self.assertEqual(len(result.records), len(zone().records()) - 1)

    def test_axfrSigned(self) -> None:
        """
        A transfer key gets the zone in messages that each verify in
        turn (RFC 8945 section 5.3.1).
        """
        for i in range(300):
            self.one(
                updateMessage(
                    rr(f"h{i}.example.org", dns.TXT, dns.Record_TXT(b"x" * 200))
                ),
                UPDATER,
            )
        axfr = encode(newQuery(3, b"example.org", dns.AXFR, recursionDesired=False))
        replies, mac = self.ask(axfr, READER)
        self.assertGreater(len(replies), 2)
        verifier = tsig.StreamVerifier(READER, mac)
        for data in replies:
            verifier.check(data, NOW)
        self.assertTrue(verifier.complete)

    def test_ixfr(self) -> None:
        """
        IXFR from an old serial: the changes since, from the journal's
        history, each an old SOA, deletions, new SOA, additions.
        """
        self.one(updateMessage(rr("n1.example.org", dns.A, a("192.0.2.11"))), UPDATER)
        self.one(
            updateMessage(rr("www.example.org", dns.A, a("192.0.2.1"), cls=254, ttl=0)),
            UPDATER,
        )
        replies, _ = self.ask(ixfrQuery(10), READER)
        records = [r for d in replies for r in decode(d).message.answers]
        result = parseTransfer(records, 10)
        self.assertEqual(result.kind, "IXFR")
        self.assertEqual(
            [(d.oldSerial, d.newSerial) for d in result.diffs], [(10, 11), (11, 12)]
        )
        self.assertEqual(
            [r.name.name for r in result.diffs[0].added], [b"n1.example.org"]
        )
        self.assertEqual(
            [r.payload.dottedQuad() for r in result.diffs[1].deleted],  # type: ignore[union-attr]
            ["192.0.2.1"],
        )

    def test_ixfrCurrent(self) -> None:
        """IXFR from the current serial: the SOA alone (RFC 1995 section 2)."""
        replies, _ = self.ask(ixfrQuery(10), READER)
        answers = decode(replies[0]).message.answers
        self.assertEqual([r.type for r in answers], [dns.SOA])

    def test_ixfrUnknownSerial(self) -> None:
        """
        IXFR from a serial the history does not reach: the whole zone,
        AXFR-style (RFC 1995 section 4).
        """
        self.one(updateMessage(rr("n1.example.org", dns.A, a("192.0.2.11"))), UPDATER)
        replies, _ = self.ask(ixfrQuery(3), READER)
        records = [r for d in replies for r in decode(d).message.answers]
        self.assertEqual(parseTransfer(records, 3).kind, "AXFR")

    def test_ixfrOverUDP(self) -> None:
        """IXFR over UDP: the current SOA alone (RFC 1995 section 2)."""
        self.one(updateMessage(rr("n1.example.org", dns.A, a("192.0.2.11"))), UPDATER)
        replies, _ = self.ask(ixfrQuery(10), READER, transport="udp")
        answers = decode(replies[0]).message.answers
        self.assertEqual([(r.type, r.payload.serial) for r in answers], [(dns.SOA, 11)])  # type: ignore[union-attr]

    def test_misplacedSignatureOnQuery(self) -> None:
        """A plain query with a TSIG record before its last is FORMERR."""
        signed, _ = tsig.sign(
            encode(newQuery(4, b"www.example.org", dns.A)), READER, NOW
        )
        message = decode(signed).message
        message.additional.append(
            dns.RRHeader(b"x.example.org", dns.A, dns.IN, 0, a("192.0.2.1"))
        )
        replies, _ = self.ask(encode(message))
        self.assertEqual(decode(replies[0]).rcode, dns.EFORMAT)

    def test_plainQueriesUntouched(self) -> None:
        """Unsigned plain queries are not the replication's to answer."""
        request = decode(encode(newQuery(4, b"www.example.org", dns.A)))
        self.assertFalse(Replication.wants(request))


class AuthorityListenerTests(SynchronousTestCase):
    """L{Authority.apply} is the one way zone data changes."""

    def test_listeners(self) -> None:
        """
        Listeners hear which origins changed: added, replaced, removed;
        an unchanged zone is not named.
        """
        first = zone()
        other = zone(ZONE.replace("$TTL 300", "$ORIGIN example.net.\n$TTL 300"))
        authority = Authority([first])
        heard: list[frozenset[bytes]] = []
        authority.addListener(heard.append)
        authority.apply([other])
        authority.apply(removed=[b"example.org"])
        authority.replace([other])
        self.assertEqual(
            heard,
            [frozenset([b"example.net"]), frozenset([b"example.org"]), frozenset()],
        )
        authority.removeListener(heard.append)
        authority.apply([first])
        self.assertEqual(len(heard), 3)


class _FakeUDPPort:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.closed = False

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def stopListening(self) -> None:
        self.closed = True


class _UDPClock(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.ports: list[tuple[Any, str, _FakeUDPPort]] = []

    def listenUDP(self, port: int, protocol: Any, interface: str = "") -> _FakeUDPPort:
        fake = _FakeUDPPort()
        self.ports.append((protocol, interface, fake))
        return fake


class NotifierTests(SynchronousTestCase):
    """NOTIFY out (RFC 1996 sections 3.6 and 4.7), on a C{Clock}."""

    def setUp(self) -> None:
        from appnet.dns.replication import Notifier

        self.clock = _UDPClock()
        self.notifier = Notifier(
            self.clock, [("127.0.0.3", 5300), ("127.0.0.4", 53)], "127.0.0.2"
        )
        self.notifier.start()
        self.protocol, self.interface, self.port = self.clock.ports[0]

    def test_message(self) -> None:
        """
        A NOTIFY goes to each secondary from the server's own address:
        opcode NOTIFY, AA set, the zone's SOA as the question, the new SOA
        in the answer section.
        """
        self.notifier.notify(b"example.org", zone())
        self.assertEqual(self.interface, "127.0.0.2")
        self.assertEqual(
            [addr for _, addr in self.port.sent],
            [("127.0.0.3", 5300), ("127.0.0.4", 53)],
        )
        message = decode(self.port.sent[0][0]).message
        self.assertEqual((message.opCode, message.auth), (dns.OP_NOTIFY, True))
        self.assertEqual(
            (message.queries[0].name.name, message.queries[0].type),
            (b"example.org", dns.SOA),
        )
        self.assertEqual(message.answers[0].payload.serial, 10)  # type: ignore[union-attr]

    def test_retriedUntilAnswered(self) -> None:
        """
        A NOTIFY without an answer is sent again every interval, five
        times in all; an answer from the secondary stops its retries.
        """
        self.notifier.notify(b"example.org", zone())
        first = self.port.sent[0][0]
        answer = bytearray(first)
        answer[2] |= 0x80
        self.protocol.datagramReceived(bytes(answer), ("127.0.0.3", 5300))
        self.clock.pump([2.0] * 30)
        toFirst = [d for d, addr in self.port.sent if addr == ("127.0.0.3", 5300)]
        toSecond = [d for d, addr in self.port.sent if addr == ("127.0.0.4", 53)]
        self.assertEqual((len(toFirst), len(toSecond)), (1, 5))

    def test_stop(self) -> None:
        """Stopping cancels the retries and closes the socket."""
        self.notifier.notify(b"example.org", zone())
        self.notifier.stop()
        self.assertTrue(self.port.closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])
