"""
What the webmail page and its API share: the store, the session
machinery, the submitter, and where blocking work runs.

Parsing messages and composing them is CPU work on up to
C{[mail] max_message_size} bytes, so it runs in the reactor's thread pool
and at most L{PARSERS} such jobs run at once: memory stays bounded by
configuration, however many browsers ask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define
from twisted.internet.defer import Deferred, DeferredSemaphore, maybeDeferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool

from appnet.status import Status
from appnet.store.interfaces import IStore
from appnet.web.login import LoginService
from appnet.web.sessions import SessionManager
from appnet.webmail.sending import Submitter

__all__ = ["InThread", "PARSERS", "Webmail", "limited", "threadRunner"]

InThread = Callable[..., Deferred[Any]]

#: Message parses and compositions running at once.
PARSERS = 2


def threadRunner(reactor: Any) -> InThread:
    """
    Run blocking functions in C{reactor}'s thread pool; with a reactor
    that has none (a memory reactor in a unit test), run them at once.
    """
    if not IReactorThreads.providedBy(reactor):

        def inline(f: Callable[..., Any], *args: Any, **kw: Any) -> Deferred[Any]:
            return maybeDeferred(f, *args, **kw)

        return inline

    def inPool(f: Callable[..., Any], *args: Any, **kw: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args, **kw)

    return inPool


def limited(inThread: InThread, count: int = PARSERS) -> InThread:
    """C{inThread}, with at most C{count} calls running at once."""
    semaphore = DeferredSemaphore(count)

    def run(f: Callable[..., Any], *args: Any, **kw: Any) -> Deferred[Any]:
        d: Deferred[Any] = semaphore.run(inThread, f, *args, **kw)
        return d

    return run


@define
class Webmail:
    """
    The webmail's shared parts.

    @ivar parseLimit: messages larger than this are shown from their
        header section only (C{[mail] max_message_size}).
    @ivar inThread: runs quick blocking calls (opening files) in a thread.
    @ivar heavy: runs CPU- and memory-heavy calls (parsing, composing,
        hashing passwords) in a thread, at most L{PARSERS} at once.
    """

    store: IStore
    sessions: SessionManager
    login: LoginService
    submitter: Submitter
    status: Status
    clock: Any
    parseLimit: int
    inThread: InThread
    heavy: InThread
