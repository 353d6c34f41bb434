"""
Tests for L{appnet.mail.queue.QueueRunner} without any network: the
in-memory store, a L{Clock}, and a relay whose destinations answer as
the test says.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from appnet.mail.queue import QueueRunner, Schedule
from appnet.mail.relay import (
    DestinationFailed,
    Hop,
    RelaySettings,
    Reply,
    Transaction,
    TransactionResult,
    permanent,
    temporary,
)
from appnet.mail.routing import Router
from appnet.status import Status
from appnet.store.interfaces import RecipientState
from appnet.store.mailmemory import MemoryQueueStore
from appnet.store.memory import MemoryStore

SENDER = "alice@crepes.fr"
BOB = "bob@hamburger.edu"


class FakeRelay:
    """
    A relay whose destinations fail as told (the runner then never opens
    a connection).
    """

    settings = RelaySettings(hostname="mx.crepes.fr")

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.failure = DestinationFailed(temporary("4.4.1", "connection refused"))

    def destination(self, domain: str) -> str:
        return domain

    def hops(self, domain: str) -> Deferred[Any]:
        self.asked.append(domain)
        return fail(self.failure)

    def stop(self) -> Deferred[None]:
        return succeed(None)


class HeldSession:
    """
    A relay session whose transactions end when the test says (through
    L{HeldRelay.finish}); it counts itself while open and while sending.
    """

    def __init__(self, relay: HeldRelay, hop: Hop) -> None:
        self.relay = relay
        self.hop = hop
        self.usable = True
        self.sent = 0

    def send(self, transaction: Transaction) -> Deferred[TransactionResult]:
        result: Deferred[TransactionResult] = Deferred()
        self.relay.sending.append((self, transaction, result))
        self.relay.peakSending = max(self.relay.peakSending, len(self.relay.sending))

        def sent(outcome: TransactionResult) -> TransactionResult:
            self.sent += 1
            return outcome

        return result.addCallback(sent)

    def quit(self) -> None:
        self._close()

    def abort(self) -> None:
        """
        Drop the session: as with a real client's lost connection, each
        transaction in flight ends with a temporary failure (nothing is
        left waiting on a session that is gone).
        """
        self._close()
        held = [entry for entry in self.relay.sending if entry[0] is self]
        for entry in held:
            self.relay.sending.remove(entry)
            _, transaction, result = entry
            where = (self.hop.host, self.hop.address)
            lost = Reply(451, "4.4.2", "connection lost", where)
            result.callback(
                TransactionResult(dict.fromkeys(transaction.recipients, lost))
            )

    def _close(self) -> None:
        if self in self.relay.open:
            self.relay.open.remove(self)
        self.usable = False


class HeldRelay:
    """
    A relay with one mail server per domain that connects at once and
    holds every transaction until the test finishes it; it records how
    many sessions were open and sending at once, in all and per domain.
    """

    settings = RelaySettings(hostname="mx.crepes.fr")

    def __init__(self) -> None:
        self.open: list[HeldSession] = []
        self.sending: list[tuple[HeldSession, Transaction, Deferred[Any]]] = []
        self.peakOpen = 0
        self.peakSending = 0
        self.peakPerDomain: dict[str, int] = {}
        self.delivered: list[str] = []

    def destination(self, domain: str) -> str:
        return domain

    def hops(self, domain: str) -> Deferred[list[Hop]]:
        return succeed([Hop(f"mx.{domain}", "192.0.2.25", 25)])

    def connect(self, hop: Hop) -> Deferred[HeldSession]:
        session = HeldSession(self, hop)
        self.open.append(session)
        self.peakOpen = max(self.peakOpen, len(self.open))
        here = sum(1 for s in self.open if s.hop.host == hop.host)
        self.peakPerDomain[hop.host] = max(self.peakPerDomain.get(hop.host, 0), here)
        return succeed(session)

    def finish(self) -> None:
        """Answer the oldest transaction in flight with 250."""
        session, transaction, result = self.sending.pop(0)
        self.delivered.extend(transaction.recipients)
        ok = Reply(250, "2.0.0", "ok", (session.hop.host, session.hop.address))
        result.callback(TransactionResult(dict.fromkeys(transaction.recipients, ok)))

    def stop(self) -> Deferred[None]:
        return succeed(None)


class Inline:
    """A reactor stand-in whose thread pool runs work at once."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def callLater(self, *a: Any, **kw: Any) -> Any:
        return self.clock.callLater(*a, **kw)

    def getThreadPool(self) -> Any:
        return self

    def callInThreadWithCallback(self, onResult: Any, fn: Any, *a: Any) -> None:
        try:
            result = fn(*a)
        except BaseException as e:
            onResult(False, e)
        else:
            onResult(True, result)

    def callFromThread(self, fn: Any, *a: Any) -> None:
        fn(*a)


def runnerOnClock(case: Any, relay: Any, schedule: Schedule, **settings: Any) -> None:
    """
    Give C{case} a queue runner on a virtual clock over an in-memory
    store (C{clock}, C{store}, C{status}, C{runner}), relaying through
    C{relay}, with crepes.fr local and the queue polled only when told.
    """
    case.clock = Clock()
    case.clock.advance(1_000_000)
    case.store = MemoryStore()
    case.store.queue._now = case.clock.seconds
    case.status = Status(case.clock)

    async def domains() -> frozenset[str]:
        return frozenset({"crepes.fr"})

    case.runner = QueueRunner(
        store=case.store,
        relay=relay,
        router=Router(case.store.users, domains, None),
        localDomains=domains,
        status=case.status,
        clock=case.clock,
        reactor=Inline(case.clock),
        hostname="mx.crepes.fr",
        schedule=schedule,
        poll=86400,
        **settings,
    )


class RunnerTests(SynchronousTestCase):
    """
    Scheduling on a virtual clock.
    """

    def setUp(self) -> None:
        self.relay = FakeRelay()
        runnerOnClock(
            self, self.relay, Schedule((60.0, 600.0), maxAge=3600.0, delayWarning=0)
        )

    def enqueue(
        self, sender: str = SENDER, recipients: tuple[str, ...] = (BOB,)
    ) -> int:
        staged = self.store.mail.stage()
        staged.write(b"Subject: test\r\n\r\nbody\r\n")
        id: int = self.successResultOf(
            self.store.queue.enqueue(staged, sender, list(recipients))
        )
        return id

    def test_backoff(self) -> None:
        """
        A deferred message is tried again after each wait of the
        schedule (the last repeating), and bounced when it expires, with
        a DSN queued for its sender.
        """
        self.runner.startService()
        self.addCleanup(self.runner.stopService)
        id = self.enqueue()
        self.assertEqual(self.relay.asked, [BOB.split("@")[1]])
        queued = self.successResultOf(self.store.queue.get(id))
        self.assertEqual(queued.recipients[0].state, RecipientState.DEFERRED)
        self.assertEqual(queued.nextAttempt, self.clock.seconds() + 60)
        self.clock.advance(59)
        self.assertEqual(len(self.relay.asked), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.relay.asked), 2)
        self.clock.advance(599)
        self.assertEqual(len(self.relay.asked), 2)
        self.clock.advance(1)
        self.assertEqual(len(self.relay.asked), 3)
        # 660s so far; attempts at 1260, 1860, 2460, 3060, then 3600.
        self.clock.pump([60] * 50)
        self.assertEqual(len(self.relay.asked), 8)
        self.assertIsNone(self.successResultOf(self.store.queue.get(id)))
        self.assertEqual(self.status.counter("queue", "expired"), 1)
        self.assertEqual(self.status.counter("queue", "dsn_failed"), 1)
        # alice has no mailbox here: the DSN itself bounced, and being
        # from <> it was dropped, not bounced again.
        self.assertEqual(self.successResultOf(self.store.queue.list()), [])
        self.assertEqual(self.status.counter("queue", "bounced"), 2)

    def test_permanentFailureBounces(self) -> None:
        """A permanent failure bounces at once: DSN queued, message gone."""
        self.relay.failure = DestinationFailed(permanent("5.1.2", "no such domain"))
        self.runner.startService()
        self.addCleanup(self.runner.stopService)
        self.store.users.addUser(SENDER, "unused-hash")
        id = self.enqueue()
        self.assertIsNone(self.successResultOf(self.store.queue.get(id)))
        # The DSN was queued, then delivered locally to the sender.
        self.assertEqual(self.successResultOf(self.store.queue.list()), [])
        [info] = self.successResultOf(self.store.mail.listMessages(SENDER))
        body = self.successResultOf(self.store.mail.openMessage(SENDER, "INBOX", 1))
        with body.open() as f:
            data = f.read()
        self.assertTrue(data.startswith(b"Return-Path: <>\r\n"))
        self.assertIn(b"Status: 5.1.2", data)
        self.assertEqual(self.status.counter("queue", "bounced"), 1)
        self.assertEqual(self.status.counter("queue", "dsn_failed"), 1)

    def test_restartTakesBackClaims(self) -> None:
        """
        Claims an earlier run of this node left behind (it was killed)
        are taken back at start, not left to run out.
        """
        id = self.enqueue()
        now = self.clock.seconds()
        self.successResultOf(self.store.queue.claim("mx.crepes.fr:1:old", now, 900, 10))
        self.runner.startService()
        self.addCleanup(self.runner.stopService)
        self.assertEqual(len(self.relay.asked), 1)
        queued = self.successResultOf(self.store.queue.get(id))
        self.assertEqual(queued.attempts, 1)
        self.assertIsNone(queued.claimedBy)

    def test_otherNodesClaimsRespected(self) -> None:
        """Another node's live claim is left alone until its lease runs out."""
        self.enqueue()
        now = self.clock.seconds()
        self.successResultOf(self.store.queue.claim("mx.other:1:x", now, 900, 10))
        self.runner.startService()
        self.addCleanup(self.runner.stopService)
        self.assertEqual(self.relay.asked, [])
        self.clock.advance(900)
        self.assertEqual(len(self.relay.asked), 1)

    def test_stopReleasesClaims(self) -> None:
        """A stopped runner holds no claims and sets no more timers."""
        self.runner.startService()
        self.enqueue()
        self.successResultOf(self.runner.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        [queued] = self.successResultOf(self.store.queue.list())
        self.assertIsNone(queued.claimedBy)

    def test_wakeWhileScheduling(self) -> None:
        """
        A message queued while a scan is reading when the next message
        falls due is still taken at once, not at the next poll.
        """
        held: list[Deferred[float | None]] = []
        queueType = type(self.store.queue)
        nextDue = queueType.nextDue

        def slowNextDue(queue: Any) -> Deferred[float | None]:
            if held:
                return nextDue(queue)
            d: Deferred[float | None] = Deferred()
            held.append(d)
            return d

        self.patch(queueType, "nextDue", slowNextDue)
        self.runner.startService()
        self.addCleanup(self.runner.stopService)
        self.assertEqual(len(held), 1)
        self.enqueue()
        self.assertEqual(self.relay.asked, [])
        held[0].callback(None)
        self.assertEqual(self.relay.asked, [BOB.split("@")[1]])

    def test_recipientsPerTransaction(self) -> None:
        """
        At most 50 recipients go in one transaction: 120 recipients at
        one domain make three.
        """
        self.runner.startService()
        self.addCleanup(self.runner.stopService)
        self.enqueue(recipients=tuple(f"r{n}@hamburger.edu" for n in range(120)))
        self.assertEqual(self.relay.asked, ["hamburger.edu"] * 3)


class ConcurrencyTests(SynchronousTestCase):
    """
    The global limit on outbound connections (C{relay_concurrency}) holds
    across destinations, alongside the per-destination one.
    """

    def setUp(self) -> None:
        self.relay = HeldRelay()
        runnerOnClock(
            self,
            self.relay,
            Schedule((60.0,), maxAge=3600.0, delayWarning=0),
            concurrency=3,
            destinationConcurrency=2,
            idle=2.0,
        )
        # Four destinations, three messages each: twelve jobs wanting up
        # to eight connections (two per destination).
        self.recipients = [f"bob{n}@d{n % 4}.example" for n in range(12)]
        for recipient in self.recipients:
            staged = self.store.mail.stage()
            staged.write(b"Subject: test\r\n\r\nbody\r\n")
            self.successResultOf(self.store.queue.enqueue(staged, SENDER, [recipient]))

    def test_globalLimit(self) -> None:
        """
        With twelve messages for four destinations due at once, no more
        than C{relay_concurrency} (3) sessions are ever open or sending,
        and no more than two to one destination; the limit is reached,
        not merely respected, and everything is delivered in the end.
        """
        self.runner.startService()
        self.addCleanup(self.runner.stopService)
        self.assertEqual(len(self.relay.sending), 3)
        self.assertEqual(len(self.relay.open), 3)
        for _ in range(100):
            if self.relay.sending:
                self.relay.finish()
            elif self.relay.open or self.runner._active:
                # Idle sessions wait for more work before they QUIT.
                self.clock.advance(2.0)
            else:
                break
            self.assertLessEqual(len(self.relay.open), 3)
        self.assertEqual(self.relay.peakOpen, 3)
        self.assertEqual(self.relay.peakSending, 3)
        self.assertEqual(max(self.relay.peakPerDomain.values()), 2)
        self.assertEqual(sorted(self.relay.delivered), sorted(self.recipients))
        self.assertEqual(self.successResultOf(self.store.queue.list()), [])
        self.assertEqual(self.status.counter("queue", "delivered"), 12)

    def test_idleSessionYieldsItsSlot(self) -> None:
        """
        A session left without work does not keep its slot idling (for
        C{relay_idle}) while another destination's jobs wait for one: it
        says QUIT and that destination starts at once, so everything is
        delivered without the clock moving. Likewise when mail for a new
        destination is queued while idle sessions hold every slot.
        """
        self.runner.startService()
        self.addCleanup(self.runner.stopService)
        while self.relay.sending:
            self.relay.finish()
            self.assertLessEqual(len(self.relay.open), 3)
        self.assertEqual(sorted(self.relay.delivered), sorted(self.recipients))
        self.assertEqual(self.successResultOf(self.store.queue.list()), [])
        idle = list(self.relay.open)
        self.assertEqual(len(idle), 3)
        staged = self.store.mail.stage()
        staged.write(b"Subject: later\r\n\r\nbody\r\n")
        self.successResultOf(
            self.store.queue.enqueue(staged, SENDER, ["carol@d4.example"])
        )
        [(session, transaction, _)] = self.relay.sending
        self.assertEqual(transaction.recipients, ("carol@d4.example",))
        self.assertEqual(len(self.relay.open), 3)
        self.assertEqual(len([s for s in idle if s.usable]), 2)


class AdoptingQueue(MemoryQueueStore):
    """
    An in-memory queue that adopts new mail, as the SQLite queue does:
    claimed for the adopting runner and handed to it, watchers not told.
    """

    adopter: tuple[str, float, Any] | None = None

    def adopt(self, owner: str, lease: float, callback: Any) -> Any:
        self.adopter = (owner, lease, callback)

        def stop() -> None:
            self.adopter = None

        return stop

    def watch(self, callback: Any) -> Any:
        # Watchers are not told of adopted mail.
        def unlessAdopted() -> None:
            if self.adopter is None:
                callback()

        return super().watch(unlessAdopted)

    def enqueue(self, *args: Any, **kwargs: Any) -> Deferred[int]:
        d = super().enqueue(*args, **kwargs)
        if self.adopter is None:
            return d
        owner, lease, callback = self.adopter
        [claimed] = _result(MemoryQueueStore.claim(self, owner, self._now(), lease, 1))
        callback(claimed)
        return d


def _result(d: Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    return results[0]


class AdoptionTests(SynchronousTestCase):
    """
    A runner takes the mail its own store adopts for it without claiming
    it again, even when its batch is full at the time.
    """

    def setUp(self) -> None:
        self.relay = HeldRelay()
        runnerOnClock(self, self.relay, Schedule((60.0,), maxAge=3600.0), batch=1)
        self.store.queue = AdoptingQueue(now=self.clock.seconds)
        self.claims: list[int] = []
        claim = self.store.queue.claim

        def counted(*args: Any) -> Any:
            self.claims.append(1)
            return claim(*args)

        self.runner.startService()
        self.addCleanup(self.runner.stopService)
        self.store.queue.claim = counted  # type: ignore[method-assign]

    def enqueue(self, recipient: str) -> None:
        staged = self.store.mail.stage()
        staged.write(b"Subject: test\r\n\r\nbody\r\n")
        self.successResultOf(self.store.queue.enqueue(staged, SENDER, [recipient]))

    def test_adoptedWaitForRoom(self) -> None:
        """
        Adopted messages are sent without a claim of the runner's; one
        adopted while the batch is full waits its turn, its claim renewed.
        """
        self.enqueue("x@one.example")
        self.enqueue("y@two.example")
        # Started on the reactor's next turn, after the enqueue's caller.
        self.assertEqual(self.relay.sending, [])
        self.clock.advance(0)
        self.assertEqual(
            [t.recipients for _, t, _ in self.relay.sending], [("x@one.example",)]
        )
        self.clock.advance(300)
        [waiting] = [
            m
            for m in self.successResultOf(self.store.queue.list())
            if m.recipients[0].address == "y@two.example"
        ]
        self.assertEqual(waiting.claimedBy, self.runner.owner)
        self.assertEqual(waiting.claimedUntil, self.clock.seconds() + 900)
        self.relay.finish()
        self.assertEqual(
            [t.recipients for _, t, _ in self.relay.sending], [("y@two.example",)]
        )
        self.relay.finish()
        self.assertEqual(self.relay.delivered, ["x@one.example", "y@two.example"])
        self.assertEqual(self.successResultOf(self.store.queue.list()), [])
        self.assertEqual(self.claims, [])
