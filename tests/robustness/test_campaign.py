"""
A short fuzzing campaign against a real daemon (L{tests.robustness.campaign}):
every protocol for a moment, over real sockets on 127.0.0.1.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.robustness import campaign
from tests.robustness.fuzz import BASE_SEED, SCALE


class CampaignTests(TestCase):
    """
    The campaign CI runs: seeded, a second and a half per protocol (times
    APPNET_FUZZ_SCALE).
    """

    timeout = 300

    def test_brief(self) -> Deferred[None]:
        """
        Every protocol gets sessions; the daemon survives them without a
        traceback in its log, and its memory does not balloon.
        """

        def check(report: campaign.Report) -> None:
            text = report.text()
            self.assertTrue(report.alive, text)
            self.assertEqual(report.tracebacks, [], text)
            self.assertEqual(sorted(report.sessions), sorted(campaign.PROTOCOLS))
            for name, count in report.sessions.items():
                self.assertGreater(count, 0, name)
            self.assertLess(report.rssAfter, report.rssBefore + 100 * 1024, text)

        d = deferToThread(campaign.run, 1.5 * SCALE, campaign.PROTOCOLS, BASE_SEED)
        return d.addCallback(check)
