"""
DMARC (RFC 7489): the policy record, identifier alignment and the
organisational domain.

The organisational domain comes from the Public Suffix List packaged as
C{publicsuffixlist} (a new release follows every change of the list;
upgrading the package updates it). L{evaluate} is a pure function of the
From domain, the SPF and DKIM results and the record, so its case table
is tested without DNS; L{lookupPolicy} finds the record with appnet's
resolver.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Sequence
from email.utils import getaddresses

from attrs import frozen
from publicsuffixlist import PublicSuffixList

from appnet.dns.interfaces import IDNSResolver
from appnet.mail.dkim import MISSING, TEMPFAIL, DKIMResult, fetchTexts

__all__ = [
    "DMARCRecord",
    "DMARCResult",
    "aligned",
    "evaluate",
    "fromDomain",
    "lookupPolicy",
    "organisationalDomain",
    "parseRecord",
]

_POLICIES = ("none", "quarantine", "reject")


@functools.lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


@functools.lru_cache(maxsize=4096)
def organisationalDomain(domain: str) -> str:
    """
    The organisational domain (RFC 7489 3.2): the public suffix plus one
    label; a public suffix itself is its own.
    """
    domain = domain.lower().rstrip(".")
    private = _psl().privatesuffix(domain)
    return private if private else domain


def aligned(one: str, other: str, mode: str) -> bool:
    """Identifier alignment: C{s}trict is equality, C{r}elaxed same org."""
    one, other = one.lower().rstrip("."), other.lower().rstrip(".")
    if mode == "s":
        return one == other
    return organisationalDomain(one) == organisationalDomain(other)


@frozen
class DMARCRecord:
    """A parsed C{v=DMARC1} record (RFC 7489 6.3)."""

    p: str
    sp: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100


def parseRecord(text: bytes | str) -> DMARCRecord | None:
    """
    Parse a record; C{None} if it is not a DMARC record. A record with a
    bad C{p=} but a reporting address counts as C{p=none} (6.6.3).
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags.setdefault(name.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1" or not re.match(r"^\s*v\s*=", text):
        return None
    p = tags.get("p", "").lower()
    if p not in _POLICIES:
        if "rua" in tags:
            p = "none"
        else:
            return None
    sp = tags.get("sp", "").lower() or None
    if sp not in (None, *_POLICIES):
        sp = None
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    try:
        pct = min(100, max(0, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    return DMARCRecord(
        p,
        sp,
        adkim if adkim in ("r", "s") else "r",
        aspf if aspf in ("r", "s") else "r",
        pct,
    )


@frozen
class Policy:
    """
    The record that applies to a From domain.

    @ivar found: C{"record"}, C{"none"} (no record), C{"temperror"}.
    @ivar organisational: the record came from the organisational domain.
    """

    found: str
    record: DMARCRecord | None = None
    organisational: bool = False


def _pick(texts: list[bytes] | str) -> DMARCRecord | None | str:
    if texts == TEMPFAIL:
        return TEMPFAIL
    if texts == MISSING or isinstance(texts, str):
        return None
    records = [r for r in (parseRecord(t) for t in texts) if r is not None]
    # 6.6.3: more than one record, or none, is "no policy".
    return records[0] if len(records) == 1 else None


async def lookupPolicy(resolver: IDNSResolver, domain: str) -> Policy:
    """
    Find the DMARC record for a From domain: C{_dmarc.DOMAIN}, else
    C{_dmarc.ORGDOMAIN} (both asked at once).
    """
    domain = domain.lower().rstrip(".")
    org = organisationalDomain(domain)
    names = [f"_dmarc.{domain}"]
    if org != domain:
        names.append(f"_dmarc.{org}")
    texts = await fetchTexts(resolver, names)
    own = _pick(texts[names[0]])
    if own == TEMPFAIL:
        return Policy("temperror")
    if isinstance(own, DMARCRecord):
        return Policy("record", own)
    if org != domain:
        upper = _pick(texts[names[1]])
        if upper == TEMPFAIL:
            return Policy("temperror")
        if isinstance(upper, DMARCRecord):
            return Policy("record", upper, organisational=True)
    return Policy("none")


def fromDomain(values: Sequence[str]) -> str | None:
    """
    The RFC5322.From domain, given the From field values; C{None} unless
    there is exactly one field with exactly one address.
    """
    if len(values) != 1:
        return None
    addresses = [a for _, a in getaddresses(list(values)) if a]
    if len(addresses) != 1 or "@" not in addresses[0]:
        return None
    domain = addresses[0].rpartition("@")[2].strip().lower().rstrip(".")
    return domain or None


@frozen
class DMARCResult:
    """
    The evaluation (RFC 7489 6.6, result names of RFC 8601).

    @ivar result: C{pass}, C{fail}, C{none}, C{temperror}, C{permerror}.
    @ivar policy: the policy the record asks for (C{none},
        C{quarantine}, C{reject}), after C{sp=}.
    @ivar disposition: what to do after C{pct=} (C{none} when passing).
    """

    result: str
    domain: str
    policy: str = "none"
    disposition: str = "none"
    reason: str = ""


def evaluate(
    domain: str,
    policy: Policy,
    spf: tuple[str, str] | None,
    dkim: Sequence[DKIMResult],
    sample: Callable[[], float] = random.random,
) -> DMARCResult:
    """
    DMARC for a message from C{domain}.

    @param spf: the SPF result and the domain it was for (MAIL FROM's, or
        HELO's for the null sender), or C{None} if SPF was not checked.
    @param dkim: the DKIM signatures' results.
    @param sample: a number in [0, 1) for C{pct=} sampling.
    """
    if policy.found == "temperror":
        return DMARCResult("temperror", domain, reason="DNS lookup failed")
    record = policy.record
    if policy.found != "record" or record is None:
        return DMARCResult("none", domain, reason="no DMARC record")
    wanted = record.p
    if policy.organisational and record.sp is not None:
        wanted = record.sp
    passing = [
        r.domain
        for r in dkim
        if r.result == "pass" and aligned(r.domain, domain, record.adkim)
    ]
    if passing:
        return DMARCResult("pass", domain, wanted, reason=f"DKIM d={passing[0]}")
    if spf is not None and spf[0] == "pass" and aligned(spf[1], domain, record.aspf):
        return DMARCResult("pass", domain, wanted, reason=f"SPF {spf[1]}")
    disposition = wanted
    if record.pct < 100 and sample() * 100 >= record.pct:
        # 6.6.4: outside the sample, one step less.
        disposition = {"reject": "quarantine", "quarantine": "none"}.get(wanted, "none")
    return DMARCResult(
        "fail", domain, wanted, disposition, reason="no aligned SPF or DKIM pass"
    )
