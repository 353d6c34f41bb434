"""
Tests for L{appnet.web.pages.renderAsync} when the client goes away.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from appnet.web.pages import renderAsync


class RenderAsyncTests(SynchronousTestCase):
    """
    A client that goes away cancels the rendering coroutine and gets
    nothing written.
    """

    def test_body(self) -> None:
        """A finished coroutine's body is written and the request finished."""
        request = DummyRequest([b""])
        waiting: Deferred[bytes] = Deferred()

        async def work() -> bytes:
            return await waiting

        self.assertEqual(renderAsync(request, work()), NOT_DONE_YET)
        waiting.callback(b"hello")
        self.assertEqual(b"".join(request.written), b"hello")
        self.assertEqual(request.finished, 1)

    def test_goneWritesNothing(self) -> None:
        """
        After the connection is lost the coroutine is cancelled, and a body
        it returns anyway is not written.
        """
        request = DummyRequest([b""])
        cancelled: list[bool] = []

        async def work() -> bytes:
            try:
                await Deferred()
            except CancelledError:
                cancelled.append(True)
            return b"late"

        renderAsync(request, work())
        request.processingFailed(Failure(ConnectionDone()))
        self.assertEqual(cancelled, [True])
        self.assertEqual(request.written, [])
        self.assertEqual(request.finished, 0)
