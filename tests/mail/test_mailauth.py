"""
Tests for L{appnet.mail.mailauth} and its hooks: the verdict on a
received message, the Authentication-Results field, DMARC dispositions,
and round trips between appnet nodes (signed on A, verified on B;
forwarded by B's alias to C with an ARC seal C validates).
"""

from __future__ import annotations

import tempfile
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from appnet.dns.testing import StaticResolver
from appnet.mail.arc import seal, verifyChain
from appnet.mail.authresults import authenticationResults, stripOwn
from appnet.mail.client import MailClientError, send
from appnet.mail.dkim import DKIMKey, generateKey, signMessage, verifySignatures
from appnet.mail.mailauth import MailAuth
from appnet.mail.relaytesting import MailNetwork, startMailNetwork
from appnet.mail.spf import SPFResult
from appnet.webmail.sending import Draft
from tests.mail.helpers import BOB
from tests.webmail.test_sending import SubmitterTestCase

from .test_dkim import keys

MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: Lunch\r\n"
    b"Date: Sun, 06 Dec 2026 12:00:00 +0000\r\n"
    b"Message-ID: <1@example.org>\r\n"
    b"\r\n"
    b"Shall we?\r\n"
)


def zone(origin: str, lines: list[str]) -> str:
    return "\n".join(
        [f"$ORIGIN {origin}.", "@ 300 IN SOA ns h 1 1 1 1 1", "@ 300 IN NS ns", *lines]
    )


def recordLines(*ks: DKIMKey) -> list[str]:
    return [k.zoneLine() for k in ks]


class VerdictTests(SynchronousTestCase):
    """
    L{MailAuth.check} over a static resolver.
    """

    def auth(self, dmarc: str = "v=DMARC1; p=reject", **kw: Any) -> MailAuth:
        rsa, ed = keys()
        zones = {
            "example.org": zone(
                "example.org", [*recordLines(rsa, ed), f'_dmarc 300 IN TXT "{dmarc}"']
            )
        }
        return MailAuth(StaticResolver(zones), "mx.example.net", **kw)

    def test_pass(self) -> None:
        """
        Our signed message passes DKIM and DMARC; the field says so, with
        SPF and ARC, under our authserv-id.
        """
        signed = signMessage(MESSAGE, list(keys())) + MESSAGE
        spf = SPFResult("pass", "example.org", "")
        verdict = self.successResultOf(
            self.auth().check(signed, spf, ("mailfrom", "alice@example.org"))
        )
        self.assertEqual(verdict.action, "accept")
        header = verdict.header.decode()
        self.assertTrue(
            header.startswith("Authentication-Results: mx.example.net;\r\n")
        )
        self.assertRegex(header, r"dkim=pass [^;]*header.d=example.org")
        self.assertIn("header.a=ed25519-sha256", header)
        self.assertIn("spf=pass smtp.mailfrom=alice@example.org", header)
        self.assertIn("dmarc=pass header.from=example.org policy.dmarc=reject", header)
        self.assertIn("arc=none", header)

    def test_reject(self) -> None:
        """
        Unsigned, with SPF failing, p=reject is refused with 550 5.7.1.
        """
        verdict = self.successResultOf(
            self.auth().check(
                MESSAGE, SPFResult("fail", "example.org", ""), ("mailfrom", "a@x")
            )
        )
        self.assertEqual(verdict.action, "reject")
        self.assertEqual(verdict.reply and verdict.reply[:2], (550, "5.7.1"))
        self.assertIn(b"dmarc=fail", verdict.header)

    def test_quarantine(self) -> None:
        """
        p=quarantine files into Junk.
        """
        verdict = self.successResultOf(
            self.auth("v=DMARC1; p=quarantine").check(MESSAGE)
        )
        self.assertEqual(verdict.action, "quarantine")

    def test_none(self) -> None:
        """
        p=none only records.
        """
        verdict = self.successResultOf(self.auth("v=DMARC1; p=none").check(MESSAGE))
        self.assertEqual(verdict.action, "accept")
        self.assertIn(b"dmarc=fail", verdict.header)

    def test_relaxed(self) -> None:
        """
        Config can relax reject to quarantine or nothing.
        """
        verdict = self.successResultOf(self.auth(onReject="quarantine").check(MESSAGE))
        self.assertEqual(verdict.action, "quarantine")
        verdict = self.successResultOf(self.auth(onReject="none").check(MESSAGE))
        self.assertEqual(verdict.action, "accept")

    def test_forgedResultsRemoved(self) -> None:
        """
        Authentication-Results claiming our authserv-id are removed before
        verification; others stay.
        """
        forged = (
            b"Authentication-Results: MX.example.net; dkim=pass\r\n"
            b"\theader.d=example.org\r\n"
            b"Authentication-Results: other.example; spf=pass\r\n" + MESSAGE
        )
        verdict = self.successResultOf(self.auth("v=DMARC1; p=none").check(forged))
        self.assertNotIn(b"MX.example.net", verdict.message)
        self.assertIn(b"Authentication-Results: other.example", verdict.message)
        self.assertTrue(verdict.message.endswith(MESSAGE))

    def test_signingNeedsOwnDomain(self) -> None:
        """
        Only mail whose From domain is one of the allowed ones is signed,
        with the two newest active keys.
        """
        auth = MailAuth(None, "mx.example.org", keys=keys())
        self.assertEqual(
            self.successResultOf(auth.signMessage(MESSAGE, ["x.org"])), b""
        )
        signed = self.successResultOf(auth.signMessage(MESSAGE, ["example.org"]))
        self.assertEqual(signed.count(b"DKIM-Signature:"), 2)


class UnparseableTests(SynchronousTestCase):
    """
    Messages dkimpy refuses to parse are neither lost nor fatal.
    """

    def test_signingGivesUp(self) -> None:
        """
        Signing such a message gives no signature, and logs the failure.
        """
        auth = MailAuth(None, "mx.example.org", keys=keys())
        broken = MESSAGE.replace(b"To:", b"\xff\xfe: x\r\nTo:")
        self.assertEqual(
            self.successResultOf(auth.signMessage(broken, ["example.org"])), b""
        )
        self.assertEqual(len(self.flushLoggedErrors()), 1)


class HeaderTests(SynchronousTestCase):
    """
    L{authenticationResults} and L{stripOwn}.
    """

    def test_noSignature(self) -> None:
        """
        Without signatures, dkim=none.
        """
        self.assertEqual(
            authenticationResults("mx.example.net"),
            b'Authentication-Results: mx.example.net;\r\n\tdkim=none reason="no'
            b' signature"\r\n',
        )

    def test_stripKeepsBody(self) -> None:
        """
        A field of that name in the body is not touched.
        """
        message = b"Subject: x\r\n\r\nAuthentication-Results: mx.example.net; x\r\n"
        self.assertEqual(stripOwn(message, "mx.example.net"), message)


def keyZone(domain: str, ks: list[DKIMKey], dmarc: str) -> str:
    return zone(
        domain,
        [*(k.zoneLine() for k in ks), f'_dmarc 300 IN TXT "{dmarc}"'],
    )


class NetworkTests(TestCase):
    """
    Round trips between appnet nodes through the relay.
    """

    async def network(self) -> tuple[MailNetwork, dict[str, DKIMKey]]:
        """
        Nodes for a.example (alice), b.example (bob; fwd@ forwards to
        carol@c.example) and c.example (carol), each with an RSA key
        published; their DMARC policies are p=reject, q.example's (a domain
        without a node) p=quarantine.
        """
        made: dict[str, DKIMKey] = {}
        with tempfile.TemporaryDirectory() as path:
            for domain in ("a.example", "b.example", "c.example"):
                made[domain] = generateKey(FilePath(path), domain, "s1", "rsa")
        zones = {
            f"_domainkey.{d}": zone(f"_domainkey.{d}", [f"s1 300 IN TXT {_strings(k)}"])
            for d, k in made.items()
        }
        zones |= {
            f"_dmarc.{d}": zone(f"_dmarc.{d}", ['@ 300 IN TXT "v=DMARC1; p=reject"'])
            for d in made
        }
        zones["_dmarc.q.example"] = zone(
            "_dmarc.q.example", ['@ 300 IN TXT "v=DMARC1; p=quarantine"']
        )
        net = await startMailNetwork(
            self,
            domains={
                "a.example": ["alice"],
                "b.example": ["bob"],
                "c.example": ["carol"],
            },
            zones=zones,
            nodeConfig={
                "b.example": {"mail": {"aliases": {"fwd": ["carol@c.example"]}}}
            },
        )
        for domain, key in made.items():
            node = net.node(domain)
            folder = FilePath(node.dataDir).child("dkim").child(domain)
            folder.makedirs(ignoreExistingDirectory=True)
            folder.child("s1.pem").setContent(key.private)
            await node.stop()
            await node.start()
        return net, made

    async def test_signedOnAVerifiedOnB(self) -> None:
        """
        Mail submitted on A is signed there and passes DKIM and DMARC on
        B, which says so in one Authentication-Results field on top.
        """
        net, _ = await self.network()
        await net.submit(
            "alice@a.example", ["bob@b.example"], _message("bob@b.example")
        )
        [stored] = await net.mailbox("bob@b.example")
        message = stored.message
        results = message.get_all("Authentication-Results")
        self.assertEqual(len(results), 1)
        [result] = results
        self.assertTrue(str(result).startswith("mx.b.example;"), result)
        self.assertRegex(result, r"dkim=pass [^;]*header.d=a.example")
        self.assertIn("spf=pass", result)
        self.assertIn("dmarc=pass header.from=a.example", result)
        self.assertEqual(len(message.get_all("DKIM-Signature")), 1)

    async def test_forwardedWithARC(self) -> None:
        """
        B forwards mail for its alias to C with an ARC seal; C validates
        the chain (arc=pass) while SPF fails for B's address, and DMARC
        still passes on A's signature.
        """
        net, _ = await self.network()
        await net.submit(
            "alice@a.example", ["fwd@b.example"], _message("fwd@b.example")
        )
        await net.settle()
        [stored] = await net.mailbox("carol@c.example")
        message = stored.message
        self.assertEqual(len(message.get_all("ARC-Seal")), 1)
        self.assertIn("d=b.example", str(message["ARC-Seal"]))
        results = [str(r) for r in message.get_all("Authentication-Results")]
        ours = [r for r in results if r.startswith("mx.c.example")]
        self.assertEqual(len(ours), 1)
        self.assertIn("arc=pass", ours[0])
        self.assertRegex(ours[0], r"dkim=pass [^;]*header.d=a.example")
        self.assertIn("dmarc=pass", ours[0])

    async def test_forgedRejected(self) -> None:
        """
        Unsigned mail claiming to be from a.example, sent to B from an
        address a.example's SPF does not allow, is refused 550 5.7.1.
        """
        net, _ = await self.network()
        host, port = net.node("b.example").address("smtp")
        with self.assertRaises(MailClientError) as caught:
            await send(
                net.node("b.example").reactor,
                host,
                port,
                sender="alice@a.example",
                recipients=["bob@b.example"],
                message=_message("bob@b.example"),
                tls="none",
            )
        self.assertIn("5.7.1", str(caught.exception))
        self.assertEqual(await net.mailbox("bob@b.example"), [])

    async def test_quarantinedIntoJunk(self) -> None:
        """
        Mail failing DMARC under p=quarantine is accepted and filed into
        the recipient's Junk folder, with its Authentication-Results.
        """
        net, _ = await self.network()
        node = net.node("b.example")
        host, port = node.address("smtp")
        message = _message("bob@b.example").replace(b"alice@a.example", b"x@q.example")
        await send(
            node.reactor,
            host,
            port,
            sender="alice@a.example",
            recipients=["bob@b.example"],
            message=message,
            tls="none",
        )
        self.assertEqual(await net.mailbox("bob@b.example"), [])
        mail = node.running.store.mail
        [info] = await mail.listMessages("bob@b.example", "Junk")
        body = await mail.openMessage("bob@b.example", "Junk", info.uid)
        with body.open() as f:
            data = f.read()
        self.assertIn(b"dmarc=fail header.from=q.example policy.dmarc=quarantine", data)


class WebmailSigningTests(SubmitterTestCase):
    """
    The webmail's hook: what it sends from a domain with a key is signed.
    """

    def test_signed(self) -> None:
        """
        A message sent from the webmail carries DKIM signatures that
        verify.
        """
        self.submitter = self.makeSubmitter(
            mailauth=MailAuth(None, "mx.example.org", keys=keys())
        )
        self.send(Draft(to=("Bob <bob@example.org>",), subject="Hi", text="hello"))
        [(_, data)] = self.messages(BOB)
        self.assertEqual(data.count(b"\r\nDKIM-Signature: "), 2)
        texts = {k.recordName: [k.record().encode()] for k in keys()}
        found = verifySignatures(data, texts)
        self.assertEqual([r.result for r in found], ["pass", "pass"])


def _strings(key: DKIMKey) -> str:
    text = key.record()
    return " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))


def _message(to: str) -> bytes:
    return (
        b"From: Alice <alice@a.example>\r\n"
        b"To: " + to.encode() + b"\r\n"
        b"Subject: Round trip\r\n"
        b"\r\n"
        b"Hello through the relay.\r\n"
    )


class ARCTests(SynchronousTestCase):
    """
    L{appnet.mail.arc}: a seal we add validates, and breaks when the
    message changes.
    """

    def sealed(self) -> tuple[bytes, dict[str, list[bytes] | str]]:
        rsa, _ = keys()
        results = authenticationResults(
            "mx.example.org",
            spf=("pass", "mailfrom", "a@example.org"),
            arc=("none", ""),
        )
        message = results + MESSAGE
        arcSet = seal(message, rsa, "mx.example.org")
        texts: dict[str, list[bytes] | str] = {rsa.recordName: [rsa.record().encode()]}
        return arcSet + message, texts

    def test_valid(self) -> None:
        """
        One ARC set (i=1, cv=none) that validates.
        """
        message, texts = self.sealed()
        self.assertIn(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=example.org", message)
        self.assertEqual(verifyChain(message, texts).result, "pass")

    def test_tampered(self) -> None:
        """
        A changed body breaks the chain.
        """
        message, texts = self.sealed()
        broken = message.replace(b"Shall we?", b"Shall we not?")
        self.assertEqual(verifyChain(broken, texts).result, "fail")

    def test_ed25519Only(self) -> None:
        """
        ARC signs with RSA only: an Ed25519 key gives no seal.
        """
        _, ed = keys()
        self.assertEqual(seal(MESSAGE, ed, "mx.example.org"), b"")

    def test_none(self) -> None:
        """
        No ARC headers: none.
        """
        self.assertEqual(verifyChain(MESSAGE, {}).result, "none")
