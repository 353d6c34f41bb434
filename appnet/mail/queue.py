"""
The queue runner: takes due messages from the outgoing queue, delivers
them (remote recipients through L{appnet.mail.relay}, recipients in our
own domains into local mailboxes), records every recipient's outcome,
and reschedules, bounces or removes each message.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import os
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from attrs import define, evolve, field, frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from appnet.errors import QuotaExceeded
from appnet.mail.bounce import DELAYED, FAILED, Reported, readHeader, report
from appnet.mail.envelope import Mailbox
from appnet.mail.relay import (
    DestinationFailed,
    Relay,
    RelayClient,
    Reply,
    SessionFailed,
    Transaction,
    temporary,
)
from appnet.mail.routing import Rejected, Router
from appnet.status import Status
from appnet.store.interfaces import (
    DeliveryTarget,
    IStore,
    Notice,
    QueuedMessage,
    RecipientState,
    RecipientUpdate,
)

__all__ = ["QueueRunner", "Schedule"]

#: The counters' service name in C{/status}.
SERVICE = "queue"

#: Recipients per transaction (Postfix's smtp_destination_recipient_limit;
#: RFC 5321 4.5.3.1.8 only promises 100 are accepted).
MAX_RECIPIENTS = 50


@frozen
class Schedule:
    """
    When to try again, when to give up, when to warn.

    @ivar retry: the waits after the first, second ... failed attempt;
        the last repeats.
    @ivar maxAge: how long a message may stay queued.
    @ivar delayWarning: when to tell the sender of a delay (0: never).
    """

    retry: tuple[float, ...] = (300.0, 600.0, 1200.0, 2400.0, 3600.0, 7200.0, 14400.0)
    maxAge: float = 5 * 86400.0
    delayWarning: float = 4 * 3600.0

    def nextAttempt(self, created: float, attempts: int, now: float) -> float:
        """
        When to try a message again after its C{attempts}-th attempt
        failed at C{now}: the wait, but never past its expiry.
        """
        wait = self.retry[min(max(attempts, 1), len(self.retry)) - 1]
        return min(now + wait, max(now, created + self.maxAge))

    def expired(self, created: float, now: float) -> bool:
        """Has a message queued at C{created} outlived its maximum age?"""
        return now >= created + self.maxAge

    def warnNow(self, created: float, now: float) -> bool:
        """Is a delay warning due for a message queued at C{created}?"""
        return self.delayWarning > 0 and now >= created + self.delayWarning


@define(eq=False)
class _Job:
    """One message's recipients at one destination."""

    message: QueuedMessage
    domain: str
    recipients: tuple[str, ...]
    transaction: Transaction
    done: Deferred[dict[str, Reply]] = field(factory=Deferred)
    #: Commit its deliveries as soon as it is done (the message has
    #: other jobs), rather than with the message's settlement.
    recordNow: bool = True
    #: Fires once its outcome is on disk (or its attempt ended without):
    #: its connection sends no other message's final dot before, so a
    #: kill -9 can make at most one duplicate per connection.
    recorded: Deferred[None] = field(factory=Deferred)

    def markRecorded(self, result: object = None) -> object:
        """Fire L{recorded} (once), passing C{result} through."""
        if not self.recorded.called:
            self.recorded.callback(None)
        return result


@define(eq=False)
class _Destination:
    """The jobs waiting for one destination and the connections working it."""

    name: str
    domain: str
    jobs: deque[_Job] = field(factory=deque)
    workers: int = 0
    waiting: list[Deferred[_Job | None]] = field(factory=list)
    sessions: set[RelayClient] = field(factory=set)


class QueueRunner(Service):
    """
    Delivers the outgoing queue; a background service of the mail
    component.
    """

    _log = Logger()

    #: The service's name in the stack (L{appnet.stack.Stack.backgroundService}).
    name = "mail-queue"  # type: ignore[assignment]

    def __init__(
        self,
        *,
        store: IStore,
        relay: Relay,
        router: Router,
        localDomains: Callable[[], Awaitable[frozenset[str]]],
        status: Status,
        clock: Any,
        reactor: Any,
        hostname: str,
        schedule: Schedule,
        concurrency: int = 20,
        destinationConcurrency: int = 10,
        idle: float = 2.0,
        poll: float = 10.0,
        lease: float = 900.0,
        batch: int = 200,
        mailPath: Callable[[int], Awaitable[str]] | None = None,
        blocking: Callable[..., Deferred[Any]] | None = None,
    ) -> None:
        """
        @param blocking: runs blocking message-file work (copying a queued
            message, reading its header) in the store's file threads;
            default: the reactor's thread pool.
        """
        self._store = store
        self._blocking = blocking or partial(
            deferToThreadPool, reactor, reactor.getThreadPool()
        )
        self._relay = relay
        self._router = router
        self._localDomains = localDomains
        self._status = status
        self._clock = clock
        self._reactor = reactor
        self._hostname = hostname
        self.schedule = schedule
        self._concurrency = concurrency
        self._destinationConcurrency = destinationConcurrency
        self._idle = idle
        self._poll = poll
        self._lease = lease
        self._batch = batch
        #: The node's claims start with this; a new run takes them back.
        self.node = f"{hostname}:"
        self.owner = f"{hostname}:{os.getpid()}:{secrets.token_hex(4)}"
        self._active: dict[int, Deferred[None]] = {}
        #: Jobs whose deliveries are committed with their message's
        #: settlement, by message id.
        self._settling: dict[int, list[_Job]] = {}
        self._destinations: dict[str, _Destination] = {}
        self._workers = 0
        self._scanning = False
        self._again = False
        #: The last scan left due messages unclaimed for want of room: a
        #: finished message must scan again.
        self._full = False
        self._stopping = False
        self._timer: Any = None
        self._poller: LoopingCall | None = None
        self._renewer: LoopingCall | None = None
        self._unwatch: Callable[[], None] | None = None
        self._unadopt: Callable[[], None] | None = None
        #: Messages handed over (adopted) and not started yet: the batch
        #: was full, or they start on the reactor's next turn.
        self._adopted: deque[QueuedMessage] = deque()
        self._taking: Any = None
        self._started: Deferred[None] | None = None
        self._idleWaiters: list[Deferred[None]] = []
        self._scan: Deferred[None] | None = None

    # Service.

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._status.gauge(SERVICE, "active", lambda: float(len(self._active)))
        self._unwatch = self._store.queue.watch(self.wake)
        self._poller = LoopingCall(self.wake)
        self._poller.clock = self._clock
        self._poller.start(self._poll, now=False).addErrback(self._loopFailed)
        self._renewer = LoopingCall(self._renew)
        self._renewer.clock = self._clock
        self._renewer.start(self._lease / 3, now=False).addErrback(self._loopFailed)
        self._started = Deferred.fromCoroutine(self._begin())

    async def _begin(self) -> None:
        taken = await self._store.queue.releaseClaims(self.node)
        if taken:
            self._log.info(
                "Queue: took back {count} messages claimed before a restart",
                count=taken,
            )
        if not self._stopping:
            # After taking back the old claims, which would include the
            # ones adoption makes (they carry this node's prefix too).
            self._unadopt = self._store.queue.adopt(
                self.owner, self._lease, self._adopt
            )
        self.wake()

    def _adopt(self, message: QueuedMessage) -> None:
        """
        New mail, claimed for this runner as it was queued: started on
        the reactor's next turn, so whoever queued it (a submission
        owing its 250) goes on first.
        """
        if self._stopping:
            # The claim goes back with the others (_stop).
            return
        self._adopted.append(message)
        if self._taking is None:
            self._taking = self._reactor.callLater(0, self._takeAdopted)

    def _takeAdopted(self) -> None:
        self._taking = None
        self._startAdopted()
        self._checkIdle()

    def _startAdopted(self) -> None:
        """Start adopted messages while the batch has room."""
        while self._adopted and len(self._active) < self._batch:
            message = self._adopted.popleft()
            if not self._stopping and message.id not in self._active:
                self._startMessage(message)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self._stopping = True
        for loop in (self._poller, self._renewer):
            if loop is not None and loop.running:
                loop.stop()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._unadopt is not None:
            self._unadopt()
            self._unadopt = None
        self._adopted.clear()
        if self._taking is not None and self._taking.active():
            self._taking.cancel()
        self._taking = None
        self._cancelTimer()
        if self._started is not None:
            await self._started
        if self._scan is not None:
            await self._scan
        for destination in list(self._destinations.values()):
            waiting, destination.waiting = destination.waiting, []
            for waiter in waiting:
                waiter.callback(None)
            for session in list(destination.sessions):
                session.abort()
        await DeferredList(list(self._active.values()))
        await self._store.queue.releaseClaims(self.owner)
        await self._relay.stop()

    # Waking up.

    def _loopFailed(self, failure: Any) -> None:
        self._log.failure("Queue timer failed", failure)

    def wake(self) -> None:
        """Look for due messages now."""
        if self._stopping or not self.running:
            return
        if self._scanning:
            self._again = True
            return
        self._scan = Deferred.fromCoroutine(self._scanLoop())
        self._scan.addErrback(lambda f: self._log.failure("Queue scan failed", f))

    async def _scanLoop(self) -> None:
        self._scanning = True
        try:
            while True:
                self._again = False
                room = self._batch - len(self._active)
                self._full = room <= 0
                if room > 0 and not self._stopping:
                    now = self._clock.seconds()
                    claimed = await self._store.queue.claim(
                        self.owner, now, self._lease, room
                    )
                    self._full = len(claimed) >= room
                    for message in claimed:
                        if message.id not in self._active:
                            self._startMessage(message)
                if self._again and not self._stopping:
                    continue
                await self._scheduleNext()
                # A wake that came while the next due time was read must
                # not be lost: its message may be due now.
                if not self._again or self._stopping:
                    break
        finally:
            self._scanning = False
            self._checkIdle()

    async def _scheduleNext(self) -> None:
        due = await self._store.queue.nextDue()
        self._cancelTimer()
        if due is None or self._stopping or len(self._active) >= self._batch:
            # With the batch full, each finished message wakes us.
            return
        delay = max(0.0, due - self._clock.seconds())
        self._timer = self._clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.wake()

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _renew(self) -> Deferred[Any]:
        if not self._active and not self._adopted:
            return succeed(0)
        until = self._clock.seconds() + self._lease
        ids = [*self._active, *(m.id for m in self._adopted)]
        d = self._store.queue.renew(self.owner, ids, until)
        return d.addErrback(self._loopFailed)

    def whenIdle(self) -> Deferred[None]:
        """
        Fires when nothing is being delivered or scanned (for tests and
        fixtures stepping a virtual clock).
        """
        d: Deferred[None] = Deferred()
        self._idleWaiters.append(d)
        self._checkIdle()
        return d

    def _checkIdle(self) -> None:
        if self._active or self._scanning or self._adopted:
            return
        waiters, self._idleWaiters = self._idleWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    # One message.

    def _startMessage(self, message: QueuedMessage) -> None:
        if message.attempts == 0:
            self._status.increment(SERVICE, "queued")
        # Registered before it starts: with a store answering at once the
        # whole attempt may be over before fromCoroutine returns.
        finished: Deferred[None] = Deferred()
        self._active[message.id] = finished

        def failed(f: Any) -> None:
            self._log.failure("Queue message {id} failed", f, id=message.id)

        def done(gone: object) -> None:
            self._active.pop(message.id, None)
            for job in self._settling.pop(message.id, ()):
                job.markRecorded()
            finished.callback(None)
            if self._adopted:
                self._startAdopted()
            if gone is not True or self._full:
                # Rescheduled (or failed), or other messages wait for its
                # room: scan again. Wake first: the scan it starts (which
                # also sets the timer for the next due message) keeps the
                # runner from looking idle. A message that left the
                # queue changes nothing a scan would find.
                self.wake()
            self._checkIdle()

        d = Deferred.fromCoroutine(self._process(message))
        d.addErrback(failed).addBoth(done)

    async def _process(self, message: QueuedMessage) -> bool:
        """
        One attempt at a claimed message, its outcomes recorded and the
        message settled.

        @return: whether it left the queue.
        """
        now = self._clock.seconds()
        todo = [
            r.address
            for r in message.recipients
            if r.state in (RecipientState.PENDING, RecipientState.DEFERRED)
        ]
        replies: dict[str, Reply] = {}
        recorded: set[str] = set()
        if todo:
            replies, recorded = await self._attempt(message, todo)
        now = self._clock.seconds()
        deferred = {
            a: r for a, r in replies.items() if not r.success and not r.permanent
        }
        expired = self.schedule.expired(message.created, now)
        updates = []
        for address, reply in replies.items():
            if reply.success:
                updates.append(
                    RecipientUpdate(address, RecipientState.DELIVERED, str(reply))
                )
                self._status.increment(SERVICE, "delivered")
            elif reply.permanent:
                updates.append(
                    RecipientUpdate(address, RecipientState.BOUNCED, str(reply))
                )
                self._status.increment(SERVICE, "bounced")
            elif expired:
                days = self.schedule.maxAge / 86400
                gone = Reply(
                    451,
                    "4.4.7",
                    f"message expired after {days:g} days in the queue;"
                    f" last error: {reply.code} {reply.enhanced} {reply.text}",
                    reply.host,
                )
                updates.append(
                    RecipientUpdate(address, RecipientState.BOUNCED, str(gone))
                )
                self._status.increment(SERVICE, "bounced")
                self._status.increment(SERVICE, "expired")
            else:
                updates.append(
                    RecipientUpdate(address, RecipientState.DEFERRED, str(reply))
                )
                self._status.increment(SERVICE, "deferred")
        # Outcomes not recorded yet: all but the deliveries committed as
        # their jobs ended.
        later = [
            u
            for u in updates
            if u.state != RecipientState.DELIVERED or u.address not in recorded
        ]
        unreported = any(
            r.state == RecipientState.BOUNCED and not r.notified
            for r in message.recipients
        )
        if not unreported and all(u.state == RecipientState.DELIVERED for u in updates):
            # The usual end: every recipient delivered, nobody to tell.
            # The deliveries and the removal share one commit.
            return await self._settle(message, replies, updates, later, None)
        if later:
            await self._store.queue.record(message.id, later)
        current = await self._store.queue.get(message.id)
        if current is None:
            return True
        await self._notify(current, now, bool(deferred) and not expired)
        if expired:
            deferred = {}
        lastError = next(iter(deferred.values()), None)
        next_ = self.schedule.nextAttempt(current.created, current.attempts + 1, now)
        return await self._settle(message, replies, updates, (), lastError, next_)

    async def _settle(
        self,
        message: QueuedMessage,
        replies: dict[str, Reply],
        updates: Sequence[RecipientUpdate],
        record: Sequence[RecipientUpdate],
        lastError: Reply | None,
        next_: float | None = None,
    ) -> bool:
        if next_ is None:
            now = self._clock.seconds()
            next_ = self.schedule.nextAttempt(
                message.created, message.attempts + 1, now
            )
        gone = await self._store.queue.settle(
            message.id,
            self.owner,
            next_,
            str(lastError) if lastError else None,
            record,
        )
        deferred = [u.address for u in updates if u.state == RecipientState.DEFERRED]
        self._log.info(
            "Queue {id}: from=<{sender}> delivered={delivered} deferred={deferred}"
            " bounced={bounced}{done}",
            id=message.id,
            sender=message.sender,
            delivered=[a for a, r in replies.items() if r.success],
            deferred=deferred,
            bounced=[u.address for u in updates if u.state == RecipientState.BOUNCED],
            done=" (removed)" if gone else "",
        )
        return gone

    async def _attempt(
        self, message: QueuedMessage, recipients: Sequence[str]
    ) -> tuple[dict[str, Reply], set[str]]:
        """
        Deliver to C{recipients}.

        @return: each one's reply, and those whose delivery is recorded
            already.
        """
        locals_ = await self._localDomains()
        local: list[str] = []
        remote: dict[str, list[str]] = {}
        replies: dict[str, Reply] = {}
        for address in recipients:
            domain = address.rpartition("@")[2].lower()
            if not domain:
                replies[address] = Reply(550, "5.1.3", f"bad address <{address}>")
            elif domain in locals_:
                local.append(address)
            else:
                remote.setdefault(domain, []).append(address)
        waits: list[Deferred[dict[str, Reply]]] = []
        if local:
            waits.append(Deferred.fromCoroutine(self._deliverLocal(message, local)))
        recorded: set[str] = set(local)
        if remote:
            body = await self._store.queue.openMessage(message.id)
            jobs = [
                _Job(
                    message,
                    domain,
                    some,
                    Transaction(
                        message.sender, some, body.size, body.open, data=body.memory
                    ),
                )
                for domain, addresses in remote.items()
                for start in range(0, len(addresses), MAX_RECIPIENTS)
                for some in [tuple(addresses[start : start + MAX_RECIPIENTS])]
            ]
            # A message's only job has its deliveries committed with the
            # message's settlement, at once; with several, each job's are
            # committed as it ends, not after the slowest.
            alone = len(jobs) == 1 and not local
            for job in jobs:
                job.recordNow = not alone
                if job.recordNow:
                    recorded.update(job.recipients)
                    job.done.addCallback(self._afterJob, message.id)
                    job.done.addBoth(job.markRecorded)
                else:
                    self._settling.setdefault(message.id, []).append(job)
                self._addJob(job)
                waits.append(job.done)
        outcomes: list[tuple[bool, Any]] = await DeferredList(waits, consumeErrors=True)
        for ok, result in outcomes:
            if ok:
                replies.update(result)
            else:
                self._log.failure("Delivery of {id} failed", result, id=message.id)
        for address in recipients:
            replies.setdefault(address, temporary("4.3.0", "local error in delivery"))
        return replies, recorded

    def _afterJob(
        self, replies: dict[str, Reply], id: int
    ) -> Deferred[dict[str, Reply]]:
        return Deferred.fromCoroutine(self._recordDelivered(replies, id))

    async def _recordDelivered(
        self, replies: dict[str, Reply], id: int
    ) -> dict[str, Reply]:
        # Commit deliveries the moment the server has taken the message:
        # the shorter this wait, the smaller the window for a duplicate.
        delivered = [
            RecipientUpdate(a, RecipientState.DELIVERED, str(r))
            for a, r in replies.items()
            if r.success
        ]
        if delivered:
            await self._store.queue.record(id, delivered)
        return replies

    # Local recipients.

    async def _deliverLocal(
        self, message: QueuedMessage, recipients: Sequence[str]
    ) -> dict[str, Reply]:
        replies: dict[str, Reply] = {}
        for address in recipients:
            local, _, domain = address.rpartition("@")
            try:
                route = await self._router.route(
                    Mailbox(local, domain.lower()), relay=True
                )
            except Rejected as e:
                replies[address] = Reply(e.code, e.enhanced, e.text)
                continue
            try:
                for owner, quota in route.local:
                    await self._fileLocally(message, owner, quota)
                if route.remote:
                    await self._forward(message, route.remote)
            except QuotaExceeded as e:
                replies[address] = Reply(452, "4.2.2", f"<{e.owner}>: Mailbox full")
                continue
            replies[address] = Reply(250, "2.0.0", "delivered locally")
            await self._store.queue.record(
                message.id,
                [RecipientUpdate(address, RecipientState.DELIVERED, "250 2.0.0 local")],
            )
        return replies

    async def _copy(self, message: QueuedMessage, prefix: bytes) -> Any:
        staged = self._store.mail.stage()
        staged.write(prefix)
        body = await self._store.queue.openMessage(message.id)

        def copy() -> None:
            with body.open() as f:
                while chunk := f.read(1 << 16):
                    staged.write(chunk)

        try:
            await self._blocking(copy)
        except BaseException:
            staged.discard()
            raise
        return staged

    async def _fileLocally(
        self, message: QueuedMessage, owner: str, quota: int | None
    ) -> None:
        staged = await self._copy(
            message, f"Return-Path: <{message.sender}>\r\n".encode()
        )
        try:
            await self._store.mail.deliver(
                staged, [DeliveryTarget(owner, quota=quota)], self._clock.seconds()
            )
        finally:
            staged.discard()

    async def _forward(self, message: QueuedMessage, addresses: Sequence[str]) -> None:
        """An alias of a local address leads off this node: queue a copy."""
        staged = await self._copy(message, b"")
        try:
            await self._store.queue.enqueue(
                staged, message.sender, list(addresses), submitter=message.submitter
            )
        finally:
            staged.discard()

    # Telling the sender.

    async def _notify(self, message: QueuedMessage, now: float, delayed: bool) -> None:
        bounced = [
            r
            for r in message.recipients
            if r.state == RecipientState.BOUNCED and not r.notified
        ]
        if bounced:
            if message.sender == "":
                # Never a DSN to the null sender (a DSN's own failure
                # ends here: no bounce loops).
                await self._store.queue.record(
                    message.id,
                    [
                        RecipientUpdate(r.address, r.state, r.response, notified=True)
                        for r in bounced
                    ],
                )
            else:
                failures = [
                    Reported(r.address, Reply.parse(r.response or ""), r.updated or now)
                    for r in bounced
                ]
                await self._sendReport(
                    message,
                    now,
                    failures,
                    FAILED,
                    Notice(message.id, bounced=tuple(r.address for r in bounced)),
                )
        if (
            delayed
            and message.sender != ""
            and not message.warned
            and self.schedule.warnNow(message.created, now)
        ):
            waiting = [
                Reported(r.address, Reply.parse(r.response or ""), r.updated or now)
                for r in message.recipients
                if r.state == RecipientState.DEFERRED
            ]
            if waiting:
                await self._sendReport(
                    message,
                    now,
                    waiting,
                    DELAYED,
                    Notice(message.id, warned=True),
                    retryUntil=message.created + self.schedule.maxAge,
                )

    async def _sendReport(
        self,
        message: QueuedMessage,
        now: float,
        failures: Sequence[Reported],
        action: str,
        notice: Notice,
        retryUntil: float | None = None,
    ) -> None:
        body = await self._store.queue.openMessage(message.id)

        def header() -> bytes:
            with body.open() as f:
                return readHeader(f)

        original = await self._blocking(header)
        data = report(
            hostname=self._hostname,
            queueId=message.id,
            sender=message.sender,
            arrived=message.created,
            now=now,
            failures=failures,
            header=original,
            action=action,
            retryUntil=retryUntil,
        )
        staged = self._store.mail.stage()
        staged.write(data)
        try:
            id = await self._store.queue.enqueue(
                staged, "", [message.sender], notice=notice
            )
        finally:
            staged.discard()
        self._status.increment(SERVICE, "dsn_" + action)
        self._log.info(
            "Queue {id}: {action} DSN to <{sender}> queued as {dsn}",
            id=message.id,
            action=action,
            sender=message.sender,
            dsn=id,
        )

    # Destinations and connections.

    def _addJob(self, job: _Job) -> None:
        name = self._relay.destination(job.domain)
        destination = self._destinations.get(name)
        if destination is None:
            destination = self._destinations[name] = _Destination(name, job.domain)
        if destination.waiting:
            destination.waiting.pop(0).callback(job)
            return
        destination.jobs.append(job)
        self._dispatch()

    def _dispatch(self) -> None:
        for destination in list(self._destinations.values()):
            while (
                destination.jobs
                and destination.workers < self._destinationConcurrency
                and self._workers < self._concurrency
            ):
                destination.workers += 1
                self._workers += 1
                d = Deferred.fromCoroutine(self._work(destination))
                d.addErrback(self._workerFailed, destination)
                d.addBoth(self._workerDone, destination)
        if self._heldBack():
            for destination in list(self._destinations.values()):
                if destination.waiting:
                    # That connection is idle: it says QUIT, and its
                    # worker's end (_workerDone) dispatches again.
                    destination.waiting.pop(0).callback(None)
                    return

    def _heldBack(self) -> bool:
        """Are jobs waiting for nothing but a slot under the global limit?"""
        return self._workers >= self._concurrency and any(
            destination.jobs and destination.workers < self._destinationConcurrency
            for destination in self._destinations.values()
        )

    def _workerFailed(self, failure: Any, destination: _Destination) -> None:
        self._log.failure(
            "Delivery to {destination} failed", failure, destination=destination.name
        )

    def _workerDone(self, _: object, destination: _Destination) -> None:
        destination.workers -= 1
        self._workers -= 1
        if not destination.workers and not destination.jobs:
            self._destinations.pop(destination.name, None)
        self._dispatch()

    def _failAll(
        self, destination: _Destination, job: _Job | None, reply: Reply
    ) -> None:
        jobs = ([job] if job is not None else []) + list(destination.jobs)
        destination.jobs.clear()
        for each in jobs:
            if not each.done.called:
                each.done.callback(dict.fromkeys(each.recipients, reply))

    async def _nextJob(self, destination: _Destination, wait: bool) -> _Job | None:
        if destination.jobs:
            return destination.jobs.popleft()
        if not wait or self._stopping or self._idle <= 0 or self._heldBack():
            return None
        waiter: Deferred[_Job | None] = Deferred()
        destination.waiting.append(waiter)

        def expire() -> None:
            if waiter in destination.waiting:
                destination.waiting.remove(waiter)
                waiter.callback(None)

        call = self._reactor.callLater(self._idle, expire)
        job = await waiter
        if call.active():
            call.cancel()
        return job

    async def _work(self, destination: _Destination) -> None:
        job = await self._nextJob(destination, wait=False)
        if job is None:
            return
        try:
            hops = await self._relay.hops(destination.domain)
        except DestinationFailed as e:
            self._failAll(destination, job, e.reply)
            return
        current = job
        index = 0
        session: RelayClient | None = None
        previous: Deferred[None] | None = None
        reuse = self._relay.settings.reuse
        try:
            while job is not None:
                current = job
                replies: dict[str, Reply] | None = None
                while replies is None:
                    if session is None or not session.usable or session.sent >= reuse:
                        if session is not None:
                            session.quit()
                            destination.sessions.discard(session)
                        session, index, failure = await self._open(
                            destination, hops, index
                        )
                        if session is None:
                            assert failure is not None
                            self._failAll(destination, job, failure.reply)
                            return
                    result = await session.send(evolve(job.transaction, after=previous))
                    if result.tryElsewhere and index + 1 < len(hops):
                        session.abort()
                        destination.sessions.discard(session)
                        session = None
                        index += 1
                        continue
                    replies = result.replies
                job.done.callback(replies)
                previous = job.recorded
                job = await self._nextJob(
                    destination, wait=session is not None and session.usable
                )
        except BaseException:
            # Whatever went wrong, the message waiting for this job must
            # learn of it, or it would stay claimed for good.
            if not current.done.called:
                failed = temporary("4.3.0", "local error in delivery")
                current.done.callback(dict.fromkeys(current.recipients, failed))
            raise
        finally:
            if session is not None:
                session.quit()
                destination.sessions.discard(session)

    async def _open(
        self, destination: _Destination, hops: Sequence[Any], index: int
    ) -> tuple[RelayClient | None, int, SessionFailed | None]:
        failure: SessionFailed | None = None
        for i in range(index, len(hops)):
            if self._stopping:
                return None, i, SessionFailed(temporary("4.3.2", "shutting down"))
            try:
                session = await self._relay.connect(hops[i])
            except SessionFailed as e:
                self._log.info(
                    "Queue: {hop}: {reply}", hop=str(hops[i]), reply=str(e.reply)
                )
                failure = e
                continue
            destination.sessions.add(session)
            return session, i, None
        return None, len(hops), failure
