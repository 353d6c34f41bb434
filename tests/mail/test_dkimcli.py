"""
C{appnet dkim keygen|list|retire}, as a process on a data directory, and
key rotation: the retired selector stops signing but keeps verifying.
"""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from appnet.dns.testing import StaticResolver
from appnet.mail.dkim import fetchTexts, loadKeys, signMessage, verifySignatures
from appnet.mail.mailauth import MailAuth
from tests.process import Outcome, run

from .test_dkim import MESSAGE

ZONE = """$ORIGIN example.org.
$TTL 300
@ IN SOA ns hostmaster 1 3600 600 86400 300
@ IN NS ns
ns IN A 127.0.0.1
"""


class KeygenTests(TestCase):
    """
    The key commands.
    """

    timeout = 60

    def setUp(self) -> None:
        self.cwd = os.path.abspath(self.mktemp())
        self.data = os.path.join(self.cwd, "data")
        os.makedirs(os.path.join(self.data, "zones"))
        self.zone = FilePath(os.path.join(self.data, "zones", "example.org.zone"))
        self.zone.setContent(ZONE.encode())

    def appnet(self, *args: str) -> Deferred[Outcome]:
        return Deferred.fromCoroutine(
            run(["-m", "appnet", *args], self.cwd, env={"APPNET_DATA": self.data})
        )

    async def texts(self, names: list[str]) -> dict[str, list[bytes] | str]:
        """The records as the zone file now publishes them."""
        resolver = StaticResolver({"example.org": self.zone.getContent().decode()})
        return await fetchTexts(resolver, names)

    async def test_keygenPublishes(self) -> None:
        """
        keygen prints the record and appends it to the zone appnet
        serves; a message signed with the written key verifies against
        the record the zone now answers with.
        """
        made = await self.appnet("dkim", "keygen", "example.org", "--selector", "s1")
        self.assertEqual(made.code, 0, made.err)
        self.assertTrue(
            made.out.startswith(
                's1._domainkey.example.org. 3600 IN TXT "v=DKIM1; k=rsa;'
            )
        )
        self.assertIn("; published in ", made.out)
        self.assertIn(
            b"@ IN SOA ns hostmaster 2 3600", self.zone.getContent()
        )  # The serial went up, so secondaries follow.
        [key] = loadKeys(FilePath(self.data).child("dkim"))
        texts = await self.texts([key.recordName])
        signed = signMessage(MESSAGE, [key]) + MESSAGE
        [found] = verifySignatures(signed, texts)
        self.assertEqual(found.result, "pass")

    async def test_unpublished(self) -> None:
        """
        Without a zone for the domain, keygen says to publish the record.
        """
        made = await self.appnet(
            "dkim", "keygen", "other.example", "-s", "e1", "-a", "ed25519"
        )
        self.assertEqual(made.code, 0, made.err)
        self.assertIn("k=ed25519", made.out)
        self.assertIn(
            "; publish this record in the DNS zone of other.example", made.out
        )

    async def test_errors(self) -> None:
        """
        A second key for a selector, and retiring an unknown one, fail in
        one line.
        """
        await self.appnet("dkim", "keygen", "example.org", "-s", "s1", "-a", "ed25519")
        again = await self.appnet("dkim", "keygen", "example.org", "-s", "s1")
        self.assertEqual(again.code, 1)
        self.assertEqual(
            again.err.strip(), "appnet: s1._domainkey.example.org already has a key"
        )
        missing = await self.appnet("dkim", "retire", "example.org", "s9")
        self.assertEqual(missing.code, 1)
        self.assertEqual(len(missing.err.strip().splitlines()), 1)

    async def test_rotation(self) -> None:
        """
        With two selectors both sign; once the old one is retired only
        the new one signs, and mail signed with the old one still
        verifies, its record staying published.
        """
        await self.appnet("dkim", "keygen", "example.org", "-s", "old", "-a", "ed25519")
        await self.appnet("dkim", "keygen", "example.org", "-s", "new", "-a", "ed25519")
        directory = FilePath(self.data).child("dkim")
        both = MailAuth(None, "mx.example.org", keys=loadKeys(directory))
        self.assertEqual(
            sorted(k.selector for k in both.signingKeys("example.org")), ["new", "old"]
        )
        oldKey = [k for k in loadKeys(directory) if k.selector == "old"]
        signedBefore = signMessage(MESSAGE, oldKey) + MESSAGE

        retired = await self.appnet("dkim", "retire", "example.org", "old")
        self.assertEqual(retired.code, 0, retired.err)
        after = MailAuth(None, "mx.example.org", keys=loadKeys(directory))
        self.assertEqual(
            [k.selector for k in after.signingKeys("example.org")], ["new"]
        )
        listed = await self.appnet("dkim", "list")
        self.assertIn("example.org\told\ted25519\tretired", listed.out)

        names = [k.recordName for k in loadKeys(directory)]
        [found] = verifySignatures(signedBefore, await self.texts(names))
        self.assertEqual((found.selector, found.result), ("old", "pass"))
