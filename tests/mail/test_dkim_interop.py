"""
Interop: OpenDKIM (C{opendkim-testmsg} from Debian's opendkim-tools), an
independent implementation, verifies the signatures appnet makes, and
appnet verifies the ones OpenDKIM makes with appnet's key.

C{opendkim-testmsg} looks keys up with the system resolver, so it runs
in a private mount namespace (C{unshare -m}, root) whose
C{/etc/resolv.conf} names a test DNS server on port 53 of a loopback
address, publishing the keys.
"""

from __future__ import annotations

import os
import random
from typing import Any

from twisted.internet import reactor
from twisted.internet.error import CannotListenError
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from appnet.dns.testing import startDNS
from appnet.errors import ListenError
from appnet.mail.dkim import signMessage, verifySignatures
from tests.interop import need, unavailable
from tests.process import Collector, Outcome

from .test_dkim import MESSAGE, keys

DNS_HOST = "127.0.0.53"


async def runProgram(args: list[str], stdin: bytes) -> Outcome:
    """Run a program to completion with C{stdin}."""
    collector = Collector(stdin=stdin)
    reactor.spawnProcess(  # type: ignore[attr-defined]
        collector, args[0], args, env={"PATH": os.environ.get("PATH", "")}
    )
    return await collector.ended


class OpenDKIMTests(TestCase):
    """
    OpenDKIM and appnet agree on each other's signatures.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.testmsg = need("opendkim-testmsg", "opendkim-tools")
        self.unshare = need("unshare", "util-linux")
        if os.geteuid() != 0:
            unavailable("a private /etc/resolv.conf needs root")
        probe = await runProgram([self.unshare, "-m", "true"], b"")
        if probe.code != 0:
            unavailable(f"unshare -m is not permitted here: {probe.err.strip()}")
        rsa, ed = keys()
        text = "\n".join(
            [
                "$ORIGIN example.org.",
                "@ 300 IN SOA ns h 1 1 1 1 1",
                "@ 300 IN NS ns",
                rsa.zoneLine(),
                ed.zoneLine(),
            ]
        )
        # Port 53 on some loopback address: several of these tests may run
        # at once (trial -j), so each tries addresses until one is free.
        candidates = [DNS_HOST] + [
            f"127.53.{random.randrange(256)}.{random.randrange(1, 255)}"
            for _ in range(20)
        ]
        for host in candidates:
            try:
                await startDNS(self, zones={"example.org": text}, listen=f"{host}:53")
            except (CannotListenError, ListenError):
                continue
            self.dnsHost = host
            break
        else:
            unavailable("no loopback address with port 53 free for the test DNS")
        resolv = FilePath(self.mktemp())
        resolv.setContent(f"nameserver {self.dnsHost}\n".encode())
        self.resolv = resolv.path

    def opendkim(self, message: bytes, *options: str) -> Any:
        """Run opendkim-testmsg (seeing the test DNS) on C{message}."""
        script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
        return runProgram(
            [self.unshare, "-m", "sh", "-c", script, "sh", self.resolv, self.testmsg]
            + list(options),
            message,
        )

    async def test_opendkimVerifiesOurRSA(self) -> None:
        """
        OpenDKIM verifies our rsa-sha256 signature (exit 0, no output),
        and rejects it once the body is changed.
        """
        signed = signMessage(MESSAGE, [keys()[0]]) + MESSAGE
        outcome = await self.opendkim(signed)
        self.assertEqual((outcome.code, outcome.out, outcome.err), (0, "", ""))
        outcome = await self.opendkim(signed.replace(b"Shall", b"Should"))
        self.assertNotEqual(outcome.code, 0)

    async def test_opendkimVerifiesOurEd25519(self) -> None:
        """
        OpenDKIM verifies our ed25519-sha256 signature (RFC 8463), and
        rejects it with a changed signed header field.
        """
        signed = signMessage(MESSAGE, [keys()[1]]) + MESSAGE
        outcome = await self.opendkim(signed)
        self.assertEqual((outcome.code, outcome.out, outcome.err), (0, "", ""))
        outcome = await self.opendkim(signed.replace(b"Lunch", b"Brunch"))
        self.assertNotEqual(outcome.code, 0)

    async def test_weVerifyOpenDKIM(self) -> None:
        """
        A signature OpenDKIM makes with our key verifies with ours.
        """
        rsa = keys()[0]
        keyFile = FilePath(self.mktemp())
        keyFile.setContent(rsa.private)
        outcome = await self.opendkim(
            MESSAGE, "-C", "-d", "example.org", "-s", rsa.selector, "-k", keyFile.path
        )
        self.assertEqual(outcome.code, 0, outcome.err)
        signed = outcome.out.encode().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        self.assertIn(b"DKIM-Signature:", signed)
        [found] = verifySignatures(signed, {rsa.recordName: [rsa.record().encode()]})
        self.assertEqual(found.result, "pass")
