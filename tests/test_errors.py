"""
Tests for L{appnet.errors.CannotConnect}.
"""

from __future__ import annotations

from twisted.internet import error
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from appnet.errors import CannotConnect


class DuringTests(SynchronousTestCase):
    """
    L{CannotConnect.during} words connection failures one way and passes
    everything else through.
    """

    def test_success(self) -> None:
        """A connection made is the result."""
        d = Deferred.fromCoroutine(CannotConnect.during("h", 1, succeed("p")))
        self.assertEqual(self.successResultOf(d), "p")

    def test_refused(self) -> None:
        """A refused connection is a L{CannotConnect} naming host and port."""
        attempt = fail(error.ConnectionRefusedError())
        d = Deferred.fromCoroutine(CannotConnect.during("h", 25, attempt))
        failure = self.failureResultOf(d, CannotConnect)
        self.assertEqual(
            str(failure.value), "cannot connect to h:25: connection refused"
        )

    def test_other(self) -> None:
        """Any other error is raised as it is."""
        attempt: Deferred[str] = fail(ValueError("no"))
        d = Deferred.fromCoroutine(CannotConnect.during("h", 25, attempt))
        self.failureResultOf(d, ValueError)
