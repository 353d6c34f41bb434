"""
Mail authentication as the SMTP server and the webmail use it: DKIM
signing of submitted mail, and on the MX the DKIM, SPF, DMARC and ARC
verdict written as one C{Authentication-Results} field, the DMARC policy
applied, and the ARC seal added to mail forwarded to other domains.

DNS lookups go through appnet's resolver before any verification runs;
the CPU-bound work (canonicalisation, hashing, RSA) runs through the
C{blocking} runner (the reactor's thread pool in a stack).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Sequence
from typing import Any

from attrs import define, field, frozen
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from appnet.dns.interfaces import IDNSResolver
from appnet.mail import arc as arcmod
from appnet.mail import dkim as dkimmod
from appnet.mail import dmarc as dmarcmod
from appnet.mail.authresults import authenticationResults, stripOwn
from appnet.mail.dkim import DKIMKey, DKIMResult
from appnet.mail.spf import SPFResult

__all__ = ["MailAuth", "Verdict", "mailAuthFor"]

Blocking = Callable[..., "Deferred[Any]"]


def inline(fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """Run C{fn} at once (unit tests)."""
    return defer.maybeDeferred(fn, *args)


@frozen
class Verdict:
    """
    What the MX does with a received message.

    @ivar header: the C{Authentication-Results} field.
    @ivar message: the message without forged C{Authentication-Results}.
    @ivar action: C{accept}, C{quarantine} (file into Junk) or C{reject}.
    @ivar reply: the refusal for C{reject}.
    """

    header: bytes
    message: bytes
    action: str = "accept"
    reply: tuple[int, str, str] | None = None
    dkim: tuple[DKIMResult, ...] = ()
    dmarc: dmarcmod.DMARCResult | None = None
    arc: arcmod.ARCResult | None = None


def _fromValues(message: bytes) -> list[str]:
    return [
        value.decode("utf-8", "replace")
        for name, value in dkimmod.headerFields(message)
        if name.lower() == b"from"
    ]


@define
class MailAuth:
    """
    Signing keys and verification policy of one stack (C{[dkim]}).

    @ivar onReject: what a DMARC C{p=reject} failure gets: C{reject}
        (550 5.7.1), C{quarantine} or C{none}.
    @ivar onQuarantine: what C{p=quarantine} gets: C{quarantine} or
        C{none}.
    """

    #: C{None} when only signing (the webmail).
    resolver: IDNSResolver | None
    authservId: str
    keys: Sequence[DKIMKey] = ()
    blocking: Blocking = inline
    clock: Any = None
    sign: bool = True
    verify: bool = True
    maxSignatures: int = 5
    timeout: float = 20.0
    onReject: str = "reject"
    onQuarantine: str = "quarantine"
    seal: bool = True
    sample: Callable[[], float] | None = None
    skip: Sequence[str] = ()
    _networks: list[Any] = field(init=False, factory=list)
    _byDomain: dict[str, list[DKIMKey]] = field(init=False, factory=dict)
    _pslLoaded: bool = field(init=False, default=False)
    _log = Logger()

    def __attrs_post_init__(self) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in self.skip]
        for key in self.keys:
            self._byDomain.setdefault(key.domain, []).append(key)

    def skipped(self, client: str) -> bool:
        """Is this client trusted (C{[mail] spf_skip}), so not checked?"""
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return True
        return any(address in network for network in self._networks)

    def signingKeys(self, domain: str) -> list[DKIMKey]:
        """
        The keys that sign mail from C{domain}: its active ones, the two
        newest (two selectors during a rotation).
        """
        active = [k for k in self._byDomain.get(domain.lower(), []) if k.active]
        active.sort(key=lambda k: (k.mtime, k.selector), reverse=True)
        return active[:2]

    def signs(self, domains: Sequence[str]) -> bool:
        """Could mail from one of C{domains} be signed at all?"""
        return self.sign and any(self.signingKeys(d) for d in domains)

    # Sending.

    def signMessage(self, message: bytes, allowed: Sequence[str]) -> Deferred[bytes]:
        """
        The C{DKIM-Signature} fields to put before C{message}, if its From
        domain is one of C{allowed} (the submitter's own domains) and has
        keys; else C{b""}.
        """
        return Deferred.fromCoroutine(self._sign(message, allowed))

    async def _sign(self, message: bytes, allowed: Sequence[str]) -> bytes:
        if not self.sign:
            return b""
        domain = dmarcmod.fromDomain(_fromValues(message))
        if domain is None or domain not in {a.lower() for a in allowed}:
            return b""
        keys = self.signingKeys(domain)
        if not keys:
            return b""
        try:
            signed: bytes = await self.blocking(dkimmod.signMessage, message, keys)
        except Exception:
            # A message dkimpy cannot parse goes out unsigned, not lost.
            self._log.failure("DKIM signing failed for {domain}", domain=domain)
            return b""
        return signed

    # Receiving.

    async def _texts(self, names: Sequence[str]) -> dict[str, list[bytes] | str]:
        assert self.resolver is not None
        fetching = Deferred.fromCoroutine(dkimmod.fetchTexts(self.resolver, names))
        if self.clock is not None:
            fetching.addTimeout(self.timeout, self.clock)
        try:
            return await fetching
        except defer.TimeoutError:
            return dict.fromkeys(names, dkimmod.TEMPFAIL)

    def check(
        self,
        message: bytes,
        spf: SPFResult | None = None,
        spfIdentity: tuple[str, str] | None = None,
    ) -> Deferred[Verdict]:
        """
        Verify a message received on the MX.

        @param spf: the SPF result of the transaction, if checked.
        @param spfIdentity: C{("mailfrom", address)} or C{("helo", name)}.
        """
        return Deferred.fromCoroutine(self._check(message, spf, spfIdentity))

    async def _check(
        self,
        message: bytes,
        spf: SPFResult | None,
        spfIdentity: tuple[str, str] | None,
    ) -> Verdict:
        if not self._pslLoaded:
            # Parsing the Public Suffix List takes about a second: once,
            # in a thread.
            await self.blocking(dmarcmod.organisationalDomain, "example.com")
            self._pslLoaded = True
        message = stripOwn(message, self.authservId)
        names = dkimmod.keyNames(message, self.maxSignatures)
        fromDomain = dmarcmod.fromDomain(_fromValues(message))
        lookups: list[Deferred[Any]] = [Deferred.fromCoroutine(self._texts(names))]
        if fromDomain is not None:
            assert self.resolver is not None
            lookups.append(
                Deferred.fromCoroutine(dmarcmod.lookupPolicy(self.resolver, fromDomain))
            )
        found = await defer.gatherResults(lookups)
        texts = found[0]
        dkim, chain = await self.blocking(self._verify, message, texts)
        dmarc = None
        if fromDomain is not None:
            spfPair = None
            if spf is not None:
                spfPair = (spf.result, spf.domain)
            dmarc = dmarcmod.evaluate(
                fromDomain,
                found[1],
                spfPair,
                dkim,
                self.sample or random.random,
            )
        header = authenticationResults(
            self.authservId,
            dkim=dkim,
            spf=(
                None
                if spf is None or spfIdentity is None
                else (spf.result, spfIdentity[0], spfIdentity[1])
            ),
            dmarc=(
                ("permerror", "none", "unknown")
                if fromDomain is None
                else (dmarc.result, dmarc.policy, fromDomain)
                if dmarc is not None
                else None
            ),
            arc=(chain.result, chain.reason),
        )
        action, reply = "accept", None
        if dmarc is not None and dmarc.result == "fail":
            wanted = dmarc.disposition
            if wanted == "reject":
                wanted = self.onReject
            elif wanted == "quarantine":
                wanted = self.onQuarantine
            if wanted == "reject":
                action = "reject"
                reply = (
                    550,
                    "5.7.1",
                    f"Rejected by DMARC policy of {fromDomain}",
                )
            elif wanted == "quarantine":
                action = "quarantine"
        self._log.debug(
            "mail auth: dkim={dkim} dmarc={dmarc} arc={arc} action={action}",
            dkim=",".join(f"{r.result}:{r.domain}" for r in dkim) or "none",
            dmarc=dmarc.result if dmarc is not None else "none",
            arc=chain.result,
            action=action,
        )
        return Verdict(header, message, action, reply, tuple(dkim), dmarc, chain)

    def _verify(
        self, message: bytes, texts: dict[str, list[bytes] | str]
    ) -> tuple[list[DKIMResult], arcmod.ARCResult]:
        dkim = dkimmod.verifySignatures(message, texts, self.maxSignatures)
        try:
            chain = arcmod.verifyChain(message, texts)
        except Exception as e:  # dkimpy's parser on hostile input
            chain = arcmod.ARCResult("fail", f"ARC headers unusable: {e}")
        return dkim, chain

    def sealMessage(self, message: bytes, domains: Sequence[str]) -> Deferred[bytes]:
        """
        The ARC set to put before C{message} (which starts with our
        C{Authentication-Results}) when forwarding it, signed with an RSA
        key of the first of C{domains} that has one; C{b""} if none.
        """
        return Deferred.fromCoroutine(self._seal(message, domains))

    async def _seal(self, message: bytes, domains: Sequence[str]) -> bytes:
        if not self.seal:
            return b""
        for domain in domains:
            keys = [k for k in self.signingKeys(domain) if k.algorithm == "rsa"]
            if keys:
                sealed: bytes = await self.blocking(
                    arcmod.seal, message, keys[0], self.authservId
                )
                return sealed
        return b""


def mailAuthFor(ctx: Any, resolver: IDNSResolver | None) -> MailAuth:
    """
    The stack's L{MailAuth}: keys from the data directory's C{dkim/}
    (read at start), settings from C{[dkim]}.

    @raise appnet.errors.ConfigError: naming C{dkim} for an unreadable key.
    """
    from twisted.internet.threads import deferToThreadPool

    from appnet.errors import ConfigError

    config = ctx.config.dkim
    try:
        keys = dkimmod.loadKeys(ctx.dataDir.root.child("dkim"))
    except dkimmod.DKIMKeyError as e:
        raise ConfigError("dkim", str(e)) from None
    reactor = ctx.reactor

    def blocking(fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)

    return MailAuth(
        resolver=resolver,
        authservId=config.authserv_id or ctx.config.hostname,
        keys=keys,
        blocking=blocking,
        clock=reactor,
        sign=config.sign,
        verify=config.verify,
        maxSignatures=config.max_signatures,
        timeout=config.dns_timeout,
        onReject=config.dmarc_reject,
        onQuarantine=config.dmarc_quarantine,
        seal=config.arc_seal,
        skip=ctx.config.mail.spf_skip,
    )
