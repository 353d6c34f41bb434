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


class BurstTests(TestCase):
    """
    The parallel login attack against a real daemon, with real scrypt
    hashes in its hashing threads.
    """

    timeout = 120

    def test_imapBurst(self) -> Deferred[None]:
        """
        The right password logs in, 25 times in a row (more than any
        limit of failures: successes are taken back); then 32 IMAP LOGINs
        sent at once from the same address, the right password as the
        21st: none logs in.
        """

        def attack() -> tuple[list[bytes], list[bytes]]:
            daemon = campaign.Daemon()
            try:
                daemon.start()
                alone = [
                    campaign.burst(daemon.ports["imap"], 1, 0)[0] for _ in range(25)
                ]
                return alone, campaign.burst(daemon.ports["imap"])
            finally:
                daemon.stop()

        def check(result: tuple[list[bytes], list[bytes]]) -> None:
            alone, replies = result
            for reply in alone:
                self.assertTrue(reply.startswith(b"t OK"), alone)
            self.assertEqual(len(replies), 32)
            for reply in replies:
                self.assertTrue(reply.startswith(b"t NO"), replies)

        return deferToThread(attack).addCallback(check)
