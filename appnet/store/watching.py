"""
Folder watching: tell callbacks when a mail folder changes, at once for
changes made in this process and by polling each watched folder's modseq
for changes other processes commit. Feeds (L{FolderWatcher.feed}) are
given the change itself when this process knows it (L{Delta}).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from attrs import define, field, frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import Interface

from appnet.store.interfaces import Changes, FolderInfo, MessageInfo

__all__ = ["Delta", "FolderWatcher", "IFolderFeed", "Key"]

#: A folder: (owner, canonical name).
Key = tuple[str, str]
Watcher = Callable[[FolderInfo], None]
#: Reads the current state of folders (C{None} for one that is gone).
Reader = Callable[[Sequence[Key]], Deferred[Sequence[FolderInfo | None]]]


@frozen
class Delta:
    """
    What a feed is told of a change.

    @ivar changes: one modseq step made in this process (it applies to a
        view at C{changes.modseq - 1}): the rows added or whose flags
        changed, the UIDs expunged; or C{None}: something changed, read
        what (L{appnet.store.interfaces.IMailStore.changesSince}).
    @ivar recentFrom: C{\\Recent} was claimed below this UID (no modseq
        step), or C{None}.
    """

    changes: Changes | None = None
    recentFrom: int | None = None


Feed = Callable[[Delta], None]
_READ = Delta()


class IFolderFeed(Interface):
    """
    A mail store that tells of its own changes as they are (so a client
    of one folder need not read what changed after each).
    """

    def feed(owner: str, name: str, callback: Feed) -> Callable[[], None]:
        """
        Call C{callback} with a L{Delta} for each change to a folder.

        @return: a function that cancels the feed.
        """

    def snapshot(
        owner: str, name: str
    ) -> Deferred[tuple[FolderInfo, Sequence[MessageInfo]]]:
        """
        A folder's state and its messages, read together (INBOX made if
        missing).

        @raise appnet.errors.NoSuchFolder: for another missing folder.
        """


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
    _feeds: dict[Key, list[Feed]] = field(factory=dict, init=False)
    _seen: dict[Key, int] = field(factory=dict, init=False)
    _poller: LoopingCall | None = field(default=None, init=False)
    _log = Logger()

    def watch(self, key: Key, callback: Watcher) -> Callable[[], None]:
        """
        Call C{callback} with the folder's state each time it changes.

        @return: a function that cancels the watch.
        """
        self._watchers.setdefault(key, []).append(callback)
        return self._started(key, self._watchers, callback)

    def feed(self, key: Key, callback: Feed) -> Callable[[], None]:
        """
        Call C{callback} with each change to the folder: the L{Delta} of
        one made here when known (L{pushed}), else a delta that says to
        read what changed.

        @return: a function that cancels the feed.
        """
        self._feeds.setdefault(key, []).append(callback)
        return self._started(key, self._feeds, callback)

    def _started(
        self, key: Key, table: dict[Key, list[Any]], callback: Any
    ) -> Callable[[], None]:
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
            callbacks = table.get(key, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                table.pop(key, None)
                if not self._watched(key):
                    self._seen.pop(key, None)
            if not self._watchers and not self._feeds:
                self._stopPolling()

        return cancel

    def stop(self) -> None:
        """
        Forget every watcher and stop polling.
        """
        self._watchers.clear()
        self._feeds.clear()
        self._stopPolling()

    def _watched(self, key: Key) -> bool:
        return key in self._watchers or key in self._feeds

    def changed(self, keys: set[Key]) -> None:
        """
        Tell watchers of these folders, after a change made here.
        """
        for key in keys:
            if self._watched(key):
                self._readInfo(key).addCallback(self._notify, key).addErrback(
                    lambda f: self._log.failure("Notifying watchers", f)
                )

    def pushed(self, key: Key, delta: Delta) -> None:
        """
        Tell watchers of a folder of a change made here whose L{Delta} is
        known: feeds get it as it is (no read); watchers as by L{changed}.
        """
        if not self._watched(key):
            return
        changes = delta.changes
        if changes is not None:
            seen = self._seen.get(key)
            if seen is not None and changes.modseq > seen:
                self._seen[key] = changes.modseq
        for callback in list(self._feeds.get(key, [])):
            try:
                callback(delta)
            except Exception:
                self._log.failure("Mail folder feed failed")
        if changes is not None and key in self._watchers:
            self._readInfo(key).addCallback(self._tell, key).addErrback(
                lambda f: self._log.failure("Notifying watchers", f)
            )

    def _remember(self, info: FolderInfo | None, key: Key) -> None:
        if info is not None and self._watched(key):
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
        self._tell(info, key)
        for feed in list(self._feeds.get(key, [])):
            try:
                feed(_READ)
            except Exception:
                self._log.failure("Mail folder feed failed")

    def _tell(self, info: FolderInfo | None, key: Key) -> None:
        if info is None:
            return
        for callback in list(self._watchers.get(key, [])):
            try:
                callback(info)
            except Exception:
                self._log.failure("Mail folder watcher failed")

    async def _pollOnce(self) -> None:
        keys = list({**self._watchers, **self._feeds})
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
