"""
Several processes serving one stack (C{--workers N}): the parent binds every
listening socket once, then starts N workers that inherit them, each a whole
stack with its own reactor over the same data directory.

The parent accepts nothing itself: it restarts a worker that dies (and logs
it), forwards SIGHUP to every worker (so each reloads its DNS zones), and
stops them all when it stops. Worker 0 runs the work that must happen once
(L{appnet.stack.Component.once}: the queue runner, the session purge).
Each worker publishes its counters every second in DATA/run/ and reads the
others', so C{/status} and C{/metrics} in any worker add up all of them.
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import signal
import sys
from typing import Any

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.protocol import ProcessProtocol as _ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["ENVIRONMENT", "StatusShare", "WorkerParent", "WorkerRole", "main"]

#: The environment variable that tells a worker process who it is.
ENVIRONMENT = "APPNET_WORKER"

#: Seconds between a worker's death and its restart (doubling, at most
#: L{MAX_BACKOFF}, while it keeps dying within a minute of its start).
BACKOFF = 0.5
MAX_BACKOFF = 30.0

#: Seconds a worker has to stop before it is killed.
STOP_GRACE = 15.0


def _key(service: str, description: str) -> str:
    return f"{service}\t{description}"


@frozen
class WorkerRole:
    """
    Who one worker process is.

    @ivar index: 0 to C{count - 1}; worker 0 runs the once-only work.
    @ivar count: how many workers the stack has.
    @ivar sockets: inherited listening sockets by service and endpoint
        description (C{"dns\\tudp"} and C{"dns\\ttcp"} for DNS).
    """

    index: int
    count: int
    sockets: dict[str, int]

    @classmethod
    def fromEnvironment(cls, environ: dict[str, str] | None = None) -> WorkerRole:
        """The role the parent put in L{ENVIRONMENT}."""
        raw = json.loads((environ or dict(os.environ))[ENVIRONMENT])
        return cls(raw["index"], raw["count"], dict(raw["sockets"]))

    def toEnvironment(self) -> str:
        """The value of L{ENVIRONMENT} for this role."""
        return json.dumps(
            {"index": self.index, "count": self.count, "sockets": self.sockets}
        )

    def socketFor(self, service: str, description: str) -> int | None:
        """The inherited socket of one endpoint, if the parent bound it."""
        return self.sockets.get(_key(service, description))

    def dnsSockets(self) -> tuple[int, int] | None:
        """The inherited DNS sockets, UDP and TCP."""
        udp, tcp = self.sockets.get("dns\tudp"), self.sockets.get("dns\ttcp")
        if udp is None or tcp is None:
            return None
        return udp, tcp

    def shareStatus(self, ctx: Any) -> StatusShare:
        """The service that adds the other workers' counters to ours."""
        return StatusShare(
            ctx.status,
            ctx.reactor,
            os.path.join(ctx.dataDir.root.path, "run"),
            self.index,
            self.count,
        )


def _statusFile(directory: str, index: int) -> str:
    return os.path.join(directory, f"status-{index}.json")


def _readJSON(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _exchange(
    directory: str, index: int, count: int, mine: dict[str, Any]
) -> list[Any]:
    """Write our counters, read the others' (in a thread)."""
    os.makedirs(directory, exist_ok=True)
    path = _statusFile(directory, index)
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(mine, f)
    os.replace(temporary, path)
    peers = []
    for other in range(count):
        if other != index:
            found = _readJSON(_statusFile(directory, other))
            if isinstance(found, dict):
                peers.append(found)
    return peers


class StatusShare(Service):
    """
    Publishes this worker's counters and reads the other workers' once a
    second (file writes and reads in the reactor's thread pool).
    """

    name = "worker-status"  # type: ignore[assignment]
    _log = Logger()

    def __init__(
        self,
        status: Any,
        reactor: Any,
        directory: str,
        index: int,
        count: int,
        interval: float = 1.0,
    ) -> None:
        self._status = status
        self._reactor = reactor
        self._directory = directory
        self._index = index
        self._count = count
        self._interval = interval
        self._loop: LoopingCall | None = None
        self._running: Deferred[Any] | None = None

    def _inThread(self, f: Any, *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), f, *args)

    def startService(self) -> None:
        super().startService()
        d = self._inThread(_readJSON, _statusFile(self._directory, self._index))
        d.addCallback(self._restore)
        d.addErrback(lambda f: self._log.failure("reading worker counters", f))

    def _restore(self, previous: Any) -> None:
        if isinstance(previous, dict) and self.running:
            # A restarted worker continues its predecessor's counters.
            self._status.restore(previous)
        if not self.running:
            return
        loop = LoopingCall(self._tick)
        loop.clock = self._reactor
        self._loop = loop
        loop.start(self._interval, now=True).addErrback(
            lambda f: self._log.failure("sharing worker counters", f)
        )

    def _tick(self) -> Deferred[Any]:
        mine = self._status.shared()
        d = self._inThread(_exchange, self._directory, self._index, self._count, mine)
        d.addCallback(self._status.setPeers)
        d.addErrback(lambda f: self._log.failure("sharing worker counters", f))
        return d

    def stopService(self) -> Any:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        # A last write, so the counters survive a restart.
        mine = self._status.shared()
        return self._inThread(
            _exchange, self._directory, self._index, self._count, mine
        ).addErrback(lambda f: None)


class _WorkerProcess(_ProcessProtocol):
    """One worker, as its parent sees it."""

    def __init__(self, parent: WorkerParent, index: int, config: bytes) -> None:
        self.parent = parent
        self.index = index
        self.config = config
        self.ended: Deferred[None] = Deferred()
        self.pid: int | None = None
        self._partial = b""

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self.pid = transport.pid
        transport.write(self.config)
        transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self.parent.relay(self.index, line.decode("utf-8", "replace"))

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        if self._partial:
            self.parent.relay(self.index, self._partial.decode("utf-8", "replace"))
        self.ended.callback(None)
        self.parent.workerEnded(self, reason)


class WorkerParent(Service):
    """
    Binds the stack's listening sockets and runs C{count} workers on them.
    """

    _log = Logger()

    def __init__(self, config: Any, reactor: Any, count: int) -> None:
        self.config = config
        self.reactor = reactor
        self.count = count
        self.workers: dict[int, _WorkerProcess] = {}
        self._ports: dict[str, Any] = {}
        self._backoff: dict[int, float] = {}
        self._started: dict[int, float] = {}
        self._pending: dict[int, Any] = {}
        self._previousHandler: Any = None

    # Sockets.

    def privilegedStartService(self) -> None:
        """
        Create the data directory, migrate the store, bind every socket.

        @raise ListenError: naming the service and endpoint that failed.
        """
        from appnet.datadir import DataDir
        from appnet.store.sqlite import migrateFile

        super().privilegedStartService()
        dataDir = DataDir.at(self.config.data)
        dataDir.create()
        migrateFile(dataDir.store.path)
        self._bind()

    def _bind(self) -> None:
        from twisted.internet.endpoints import serverFromString

        from appnet.config import SERVICES
        from appnet.errors import ListenError

        config = self.config
        idle = Factory.forProtocol(Protocol)
        for name in SERVICES:
            table = config.service(name)
            if not table.enabled or name == "dns":
                continue
            for description in table.listen:
                result: list[Any] = []
                serverFromString(self.reactor, description).listen(idle).addBoth(
                    result.append
                )
                outcome = result[0] if result else None
                if outcome is None or isinstance(outcome, Failure):
                    reason = getattr(outcome, "value", "did not bind")
                    error = getattr(reason, "socketError", None) or reason
                    raise ListenError(
                        name,
                        description,
                        str(getattr(error, "strerror", None) or error),
                    )
                outcome.stopReading()
                self._ports[_key(name, description)] = outcome
        if config.dns.enabled:
            host, port = config.dns.listen
            try:
                tcp = self.reactor.listenTCP(port, idle, interface=host)
                udp = self.reactor.listenUDP(
                    tcp.getHost().port, DatagramProtocol(), interface=host
                )
            except Exception as e:
                raise ListenError("dns", f"{host}:{port}", str(e)) from None
            tcp.stopReading()
            udp.stopReading()
            self._ports["dns\ttcp"] = tcp
            self._ports["dns\tudp"] = udp

    def addresses(self) -> dict[str, Any]:
        """Where the shared sockets listen, by service and endpoint."""
        return {key: port.getHost() for key, port in self._ports.items()}

    # Workers.

    def startService(self) -> None:
        if not self._ports:
            self.privilegedStartService()
        super().startService()
        from appnet.datadir import DataDir

        run = os.path.join(DataDir.at(self.config.data).root.path, "run")
        for stale in glob.glob(os.path.join(run, "status-*.json")):
            os.remove(stale)
        for index in range(self.count):
            self._spawn(index)
        if threadingMain():
            self._previousHandler = signal.signal(signal.SIGHUP, self._sighup)
        self._log.info(
            "appnet: {count} workers on {sockets} shared sockets",
            count=self.count,
            sockets=len(self._ports),
        )

    def _sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.signalAll, signal.SIGHUP)

    def signalAll(self, number: int) -> None:
        """Send a signal to every running worker."""
        for worker in list(self.workers.values()):
            if worker.pid is not None:
                try:
                    os.kill(worker.pid, number)
                except ProcessLookupError:
                    pass

    def _spawn(self, index: int) -> None:
        self._pending.pop(index, None)
        sockets = {key: port.fileno() for key, port in self._ports.items()}
        role = WorkerRole(index, self.count, sockets)
        env = dict(os.environ)
        env[ENVIRONMENT] = role.toEnvironment()
        childFDs: dict[int, Any] = {0: "w", 1: "r", 2: "r"}
        for fd in sockets.values():
            childFDs[fd] = fd
        worker = _WorkerProcess(self, index, pickle.dumps(self.config))
        self.workers[index] = worker
        self._started[index] = self.reactor.seconds()
        self.reactor.spawnProcess(
            worker,
            sys.executable,
            [sys.executable, "-m", "appnet.workers"],
            env=env,
            childFDs=childFDs,
        )
        self._log.info(
            "appnet: worker {index} started (pid {pid})", index=index, pid=worker.pid
        )

    def relay(self, index: int, line: str) -> None:
        """A line a worker logged."""
        self._log.info("[worker {index}] {line}", index=index, line=line)

    def workerEnded(self, worker: _WorkerProcess, reason: Failure) -> None:
        """Log a worker's end; restart it unless we are stopping."""
        index = worker.index
        if self.workers.get(index) is worker:
            del self.workers[index]
        if not self.running:
            return
        lived = self.reactor.seconds() - self._started.get(index, 0)
        delay = self._backoff.get(index, BACKOFF)
        delay = BACKOFF if lived > 60 else min(MAX_BACKOFF, delay * 2)
        self._backoff[index] = delay
        self._log.error(
            "appnet: worker {index} (pid {pid}) ended: {reason}; restarting in "
            "{delay}s",
            index=index,
            pid=worker.pid,
            reason=reason.getErrorMessage(),
            delay=delay,
        )
        self._pending[index] = self.reactor.callLater(delay, self._spawn, index)

    def stopService(self) -> Deferred[Any]:
        """Stop every worker (SIGTERM, then SIGKILL), then close the sockets."""
        super().stopService()
        if self._previousHandler is not None:
            signal.signal(signal.SIGHUP, self._previousHandler)
            self._previousHandler = None
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        waits = [w.ended for w in self.workers.values()]
        self.signalAll(signal.SIGTERM)
        kill = self.reactor.callLater(STOP_GRACE, self.signalAll, signal.SIGKILL)

        def closed(_: object) -> Deferred[Any]:
            if kill.active():
                kill.cancel()
            closing = [p.stopListening() for p in self._ports.values()]
            self._ports.clear()
            return DeferredList([d for d in closing if d is not None])

        if not waits:
            return succeed(None).addCallback(closed)
        return DeferredList(waits).addCallback(closed)


def threadingMain() -> bool:
    """Are we in the main thread (where signal handlers can be set)?"""
    import threading

    return threading.current_thread() is threading.main_thread()


def main() -> None:
    """A worker process: run the stack the parent sent on its sockets."""
    from twisted.internet import reactor as _reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from appnet.stack import Stack

    reactor: Any = _reactor
    role = WorkerRole.fromEnvironment()
    config = pickle.loads(sys.stdin.buffer.read())
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stdout, timeFormat="")], redirectStandardIO=False
    )
    stack = Stack(config, reactor, worker=role)
    log = Logger()

    def failed(failure: Failure) -> None:
        log.failure("worker {index} could not start", failure, index=role.index)
        reactor.stop()

    def start() -> None:
        try:
            stack.privilegedStartService()
            stack.startService()
        except Exception:
            failed(Failure())
            return
        stack.whenReady().addErrback(failed)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stack.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
