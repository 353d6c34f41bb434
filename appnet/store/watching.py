"""
Folder watching: tell callbacks when a mail folder changes, at once for
changes made in this process and by polling each watched folder's modseq
for changes other processes commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from appnet.store.interfaces import FolderInfo

__all__ = ["FolderWatcher", "Key"]

#: A folder: (owner, canonical name).
Key = tuple[str, str]
Watcher = Callable[[FolderInfo], None]
#: Reads the current state of folders (C{None} for one that is gone).
Reader = Callable[[Sequence[Key]], Deferred[Sequence[FolderInfo | None]]]


@define
class FolderWatcher:
    """
    The watchers of a store's folders.

    @ivar interval: how often (seconds) watched folders are checked for
        changes made by other processes.
    """

    _read: Reader
    _clock: IReactorTime
    interval: float = 2.0
    _watchers: dict[Key, list[Watcher]] = field(factory=dict, init=False)
    _seen: dict[Key, int] = field(factory=dict, init=False)
    _poller: LoopingCall | None = field(default=None, init=False)
    _log = Logger()

    def watch(self, key: Key, callback: Watcher) -> Callable[[], None]:
        """
        Call C{callback} with the folder's state each time it changes.

        @return: a function that cancels the watch.
        """
        self._watchers.setdefault(key, []).append(callback)
        if self._poller is None:
            self._poller = LoopingCall(self._poll)
            self._poller.clock = self._clock
            self._poller.start(self.interval, now=False).addErrback(
                lambda f: self._log.failure("Polling mail folders failed", f)
            )
        if key not in self._seen:
            # Learn the current modseq so the first poll does not report
            # a change that happened before the watch began.
            self._readInfo(key).addCallback(self._remember, key)

        def cancel() -> None:
            callbacks = self._watchers.get(key, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._watchers.pop(key, None)
                self._seen.pop(key, None)
            if not self._watchers:
                self._stopPolling()

        return cancel

    def stop(self) -> None:
        """
        Forget every watcher and stop polling.
        """
        self._watchers.clear()
        self._stopPolling()

    def changed(self, keys: set[Key]) -> None:
        """
        Tell watchers of these folders, after a change made here.
        """
        for key in keys:
            if key in self._watchers:
                self._readInfo(key).addCallback(self._notify, key).addErrback(
                    lambda f: self._log.failure("Notifying watchers", f)
                )

    def _remember(self, info: FolderInfo | None, key: Key) -> None:
        if info is not None and key in self._watchers:
            self._seen.setdefault(key, info.modseq)

    def _stopPolling(self) -> None:
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        self._poller = None

    def _readInfo(self, key: Key) -> Deferred[FolderInfo | None]:
        return self._read([key]).addCallback(lambda infos: infos[0])

    def _notify(self, info: FolderInfo | None, key: Key) -> None:
        if info is None:
            return
        seen = self._seen.get(key)
        if seen is not None and info.modseq <= seen:
            return
        self._seen[key] = info.modseq
        for callback in list(self._watchers.get(key, [])):
            try:
                callback(info)
            except Exception:
                self._log.failure("Mail folder watcher failed")

    async def _pollOnce(self) -> None:
        keys = list(self._watchers)
        try:
            infos = await self._read(keys)
        except Exception:
            # A failed poll (a busy or briefly unreadable database) must
            # not end polling: the next tick tries again.
            self._log.failure("Polling mail folders failed; polling goes on")
            return
        for key, info in zip(keys, infos, strict=True):
            self._notify(info, key)

    def _poll(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._pollOnce())
