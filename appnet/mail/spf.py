"""
SPF (RFC 7208): may this client send mail for that domain?

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import ipaddress
import re
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from attrs import define, field, frozen
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.names import dns

from appnet.dns.errors import NameNotFound, NoRecords, TemporaryFailure
from appnet.dns.interfaces import IDNSResolver
from appnet.dns.names import normalize

__all__ = [
    "FAIL",
    "NEUTRAL",
    "NONE",
    "PASS",
    "PERMERROR",
    "SOFTFAIL",
    "TEMPERROR",
    "SPFPolicy",
    "SPFResult",
    "checkHost",
    "receivedSPF",
]

NONE = "none"
NEUTRAL = "neutral"
PASS = "pass"
FAIL = "fail"
SOFTFAIL = "softfail"
TEMPERROR = "temperror"
PERMERROR = "permerror"

_QUALIFIERS = {"+": PASS, "-": FAIL, "~": SOFTFAIL, "?": NEUTRAL}
_MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
_LOOKUP_TERMS = ("include", "a", "mx", "ptr", "exists")
MAX_LOOKUPS = 10
MAX_VOID = 2
MAX_NAMES = 10

_VERSION = re.compile(rb"^v=spf1( |$)", re.IGNORECASE)
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$")
_MECHANISM = re.compile(r"^([+?~-]?)([A-Za-z][A-Za-z0-9_.-]*)(.*)$")
_MACRO = re.compile(r"%(?:\{([A-Za-z])(\d*)(r?)([.+,/_=-]*)\}|(.)|$)", re.IGNORECASE)
_CIDR = re.compile(r"^(.*?)(?:/(\d+))?(?://(\d+))?$")


@frozen
class SPFResult:
    """
    The outcome of a check.

    @ivar result: one of the seven results (C{pass}, C{fail} ...).
    @ivar domain: the domain whose policy was checked.
    @ivar reason: a short human explanation (the mechanism that matched,
        or the error).
    @ivar explanation: for C{fail}: the domain's C{exp=} text, if any.
    """

    result: str
    domain: str
    reason: str
    explanation: str | None = None


class _Abort(Exception):
    """Evaluation ends with this result (permerror, temperror)."""

    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


class _Void(Exception):
    """A lookup answered NXDOMAIN or nothing."""


@define
class _Check:
    """The state of one check_host() and the includes it makes."""

    resolver: IDNSResolver
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    sender: str
    helo: str
    receiver: str
    now: Callable[[], float]
    lookups: int = 0
    voids: int = 0

    # DNS.

    def _count(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise _Abort(PERMERROR, f"more than {MAX_LOOKUPS} DNS lookups")

    async def _ask(self, name: str, type: int) -> list[Any]:
        """
        The payloads of C{type} at C{name}.

        @raise _Void: NXDOMAIN or no records (counted).
        @raise _Abort: temperror on a DNS failure.
        """
        try:
            response = await self.resolver.query(name, type)
        except TemporaryFailure as e:
            raise _Abort(TEMPERROR, f"DNS lookup of {name} failed: {e}") from None
        if response.rcode == dns.ENAME:
            self._void(name)
        if response.rcode != dns.OK:
            raise _Abort(
                TEMPERROR, f"DNS lookup of {name} failed: {response.rcodeName}"
            )
        records = response.records(normalize(name), type)
        if not records:
            self._void(name)
        return [r.payload for r in records]

    def _void(self, name: str) -> None:
        self.voids += 1
        if self.voids > MAX_VOID:
            raise _Abort(PERMERROR, f"more than {MAX_VOID} void DNS lookups")
        raise _Void(name)

    async def _addresses(self, name: str) -> list[str]:
        type = dns.A if self.ip.version == 4 else dns.AAAA
        try:
            payloads = await self._ask(name, type)
        except _Void:
            return []
        if type == dns.A:
            return [p.dottedQuad() for p in payloads]
        return [str(ipaddress.IPv6Address(p.address)) for p in payloads]

    # The record.

    async def record(self, domain: str) -> list[str] | None:
        """The terms of C{domain}'s SPF record, or C{None} if it has none."""
        try:
            texts = await self.resolver.lookupText(domain)
        except (NameNotFound, NoRecords):
            return None
        except TemporaryFailure as e:
            raise _Abort(TEMPERROR, f"SPF lookup of {domain} failed: {e}") from None
        records = [t for t in texts if _VERSION.match(t)]
        if not records:
            return None
        if len(records) > 1:
            raise _Abort(PERMERROR, f"{domain} has more than one SPF record")
        try:
            text = records[0].decode("ascii")
        except UnicodeDecodeError:
            raise _Abort(PERMERROR, f"{domain}'s SPF record is not ASCII") from None
        return text.split()[1:]

    async def checkHost(self, domain: str) -> SPFResult:
        if not _validDomain(domain):
            return SPFResult(NONE, domain, f"{domain!r} is not a domain name")
        terms = await self.record(domain)
        if terms is None:
            return SPFResult(NONE, domain, f"{domain} publishes no SPF record")
        redirect: str | None = None
        explanation: str | None = None
        mechanisms: list[tuple[str, str, str]] = []
        for term in terms:
            modifier = _MODIFIER.match(term)
            if modifier is not None and ":" not in modifier.group(1):
                name = modifier.group(1).lower()
                if name == "redirect":
                    if redirect is not None:
                        raise _Abort(PERMERROR, "redirect= given twice")
                    redirect = modifier.group(2)
                elif name == "exp":
                    if explanation is not None:
                        raise _Abort(PERMERROR, "exp= given twice")
                    explanation = modifier.group(2)
                continue  # unknown modifiers are ignored (section 6)
            mechanism = _MECHANISM.match(term)
            if mechanism is None or mechanism.group(2).lower() not in _MECHANISMS:
                raise _Abort(PERMERROR, f"unknown mechanism {term!r}")
            qualifier = mechanism.group(1) or "+"
            mechanisms.append(
                (qualifier, mechanism.group(2).lower(), mechanism.group(3))
            )
        for qualifier, name, argument in mechanisms:
            if name in _LOOKUP_TERMS:
                self._count()
            try:
                matched = await self._match(domain, name, argument)
            except _Void:
                matched = False
            if matched:
                outcome = _QUALIFIERS[qualifier]
                shown = (qualifier if qualifier != "+" else "") + name + argument
                text = None
                if outcome == FAIL and explanation is not None:
                    text = await self._explain(domain, explanation)
                return SPFResult(outcome, domain, f"mechanism {shown} matched", text)
        if redirect is not None:
            self._count()
            target = self.expand(redirect, domain)
            result = await self.checkHost(target)
            if result.result == NONE:
                raise _Abort(
                    PERMERROR, f"redirect to {target}, which has no SPF record"
                )
            return result
        return SPFResult(NEUTRAL, domain, "no mechanism matched")

    async def _match(self, domain: str, name: str, argument: str) -> bool:
        if name == "all":
            if argument:
                raise _Abort(PERMERROR, f"'all' takes no argument: {argument!r}")
            return True
        if name in ("ip4", "ip6"):
            return self._matchNetwork(name, argument)
        target, cidr4, cidr6 = self._target(domain, name, argument)
        if name == "include":
            if target == domain and not argument:
                raise _Abort(PERMERROR, "include needs a domain")
            result = await self.checkHost(target)
            if result.result == PASS:
                return True
            if result.result in (FAIL, SOFTFAIL, NEUTRAL):
                return False
            if result.result == TEMPERROR:
                raise _Abort(TEMPERROR, result.reason)
            raise _Abort(PERMERROR, f"include:{target}: {result.reason}")
        if name == "a":
            return self._inAny(await self._addresses(target), cidr4, cidr6)
        if name == "mx":
            exchangers = await self._ask(target, dns.MX)
            if len(exchangers) > MAX_NAMES:
                raise _Abort(PERMERROR, f"{target} has more than {MAX_NAMES} MX")
            for mx in exchangers:
                host = normalize(mx.name).decode("ascii", "replace")
                if host and self._inAny(await self._addresses(host), cidr4, cidr6):
                    return True
            return False
        if name == "ptr":
            return await self._matchPTR(target)
        # exists
        try:
            return bool(await self._ask(target, dns.A))
        except _Void:
            return False

    def _target(self, domain: str, name: str, argument: str) -> tuple[str, int, int]:
        spec = ""
        rest = argument
        if argument.startswith(":"):
            match = _CIDR.match(argument[1:])
            assert match is not None
            spec = match.group(1)
            rest = argument[1 + len(spec) :]
        elif argument and not argument.startswith("/"):
            raise _Abort(PERMERROR, f"bad argument {argument!r} to {name}")
        match = _CIDR.match(rest)
        if match is None or match.group(1):
            raise _Abort(PERMERROR, f"bad prefix length in {name}{argument}")
        if name in ("include", "exists", "ptr") and (match.group(2) or match.group(3)):
            raise _Abort(PERMERROR, f"{name} takes no prefix length")
        if name in ("include", "exists") and not spec:
            raise _Abort(PERMERROR, f"{name} needs a domain")
        cidr4 = int(match.group(2)) if match.group(2) else 32
        cidr6 = int(match.group(3)) if match.group(3) else 128
        if cidr4 > 32 or cidr6 > 128:
            raise _Abort(PERMERROR, f"prefix length too long in {name}{argument}")
        target = self.expand(spec, domain) if spec else domain
        return target, cidr4, cidr6

    def _inAny(self, addresses: Sequence[str], cidr4: int, cidr6: int) -> bool:
        prefix = cidr4 if self.ip.version == 4 else cidr6
        for address in addresses:
            network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
            if self.ip in network:
                return True
        return False

    def _matchNetwork(self, name: str, argument: str) -> bool:
        if not argument.startswith(":"):
            raise _Abort(PERMERROR, f"{name} needs an address")
        text = argument[1:]
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise _Abort(PERMERROR, f"bad network in {name}:{text}") from None
        if (name == "ip4") != (network.version == 4):
            raise _Abort(PERMERROR, f"{name}:{text} is the wrong address family")
        return network.version == self.ip.version and self.ip in network

    async def _matchPTR(self, target: str) -> bool:
        try:
            names = await self._ask(self.ip.reverse_pointer, dns.PTR)
        except _Void:
            return False
        suffix = normalize(target).decode("ascii", "replace")
        for payload in names[:MAX_NAMES]:
            name = normalize(payload.name).decode("ascii", "replace")
            if name != suffix and not name.endswith("." + suffix):
                continue
            try:
                if str(self.ip) in await self._addresses(name):
                    return True
            except _Void:
                continue
        return False

    async def _explain(self, domain: str, spec: str) -> str | None:
        try:
            target = self.expand(spec, domain)
            texts = await self.resolver.lookupText(target)
        except (_Abort, NameNotFound, NoRecords, TemporaryFailure):
            return None
        if len(texts) != 1:
            return None
        try:
            return self.expand(texts[0].decode("ascii"), domain, explanation=True)
        except (_Abort, UnicodeDecodeError):
            return None

    # Macros (section 7).

    def expand(self, spec: str, domain: str, explanation: bool = False) -> str:
        """Expand the macros of a domain-spec (or explanation string)."""
        out: list[str] = []
        position = 0
        for match in _MACRO.finditer(spec):
            out.append(spec[position : match.start()])
            position = match.end()
            letter, digits, reverse, delimiters, escape = match.groups()
            if letter is None:
                if escape == "%":
                    out.append("%")
                elif escape == "_":
                    out.append(" ")
                elif escape == "-":
                    out.append("%20")
                else:
                    raise _Abort(PERMERROR, f"bad macro in {spec!r}")
                continue
            value = self._macro(letter.lower(), domain, explanation)
            parts = re.split("[" + re.escape(delimiters or ".") + "]", value)
            if reverse:
                parts.reverse()
            if digits:
                keep = int(digits)
                if keep == 0:
                    raise _Abort(PERMERROR, f"bad macro in {spec!r}")
                parts = parts[-keep:]
            value = ".".join(parts)
            if letter.isupper():
                value = urllib.parse.quote(value, safe="")
            out.append(value)
        out.append(spec[position:])
        result = "".join(out)
        if not explanation:
            while len(result) > 253 and "." in result:
                result = result.split(".", 1)[1]
        return result

    def _macro(self, letter: str, domain: str, explanation: bool) -> str:
        local, _, senderDomain = self.sender.rpartition("@")
        if letter == "s":
            return self.sender
        if letter == "l":
            return local or "postmaster"
        if letter == "o":
            return senderDomain
        if letter == "d":
            return domain
        if letter == "i":
            if self.ip.version == 4:
                return str(self.ip)
            return ".".join(self.ip.exploded.replace(":", ""))
        if letter == "p":
            return "unknown"
        if letter == "v":
            return "in-addr" if self.ip.version == 4 else "ip6"
        if letter == "h":
            return self.helo
        if explanation:
            if letter == "c":
                return str(self.ip)
            if letter == "r":
                return self.receiver
            if letter == "t":
                return str(int(self.now()))
        raise _Abort(PERMERROR, f"unknown macro letter {letter!r}")


def _validDomain(domain: str) -> bool:
    labels = domain.rstrip(".").split(".")
    return (
        len(labels) >= 2
        and all(0 < len(label) <= 63 for label in labels)
        and len(domain) <= 253
    )


def checkHost(
    resolver: IDNSResolver,
    ip: str,
    domain: str,
    sender: str,
    helo: str = "",
    receiver: str = "unknown",
    now: Callable[[], float] = time.time,
) -> Deferred[SPFResult]:
    """
    RFC 7208's C{check_host(ip, domain, sender)}.

    @param sender: the MAIL FROM address, or C{postmaster@HELO} when it is
        empty (section 2.4).
    @param helo: the HELO/EHLO name (the C{%{h}} macro).
    @param receiver: this host's name (C{%{r}} in explanations).
    """
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    check = _Check(resolver, address, sender, helo, receiver, now)

    async def run() -> SPFResult:
        try:
            return await check.checkHost(domain.rstrip(".").lower())
        except _Abort as e:
            return SPFResult(e.result, domain, e.reason)

    return Deferred.fromCoroutine(run())


def _quoted(value: str) -> str:
    if re.match(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]+$", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def receivedSPF(
    result: SPFResult,
    *,
    receiver: str,
    client: str,
    sender: str,
    helo: str,
    identity: str,
) -> bytes:
    """The C{Received-SPF} header field (RFC 7208 section 9.1), folded."""
    if result.result == PASS:
        comment = f"domain of {sender} designates {client} as permitted sender"
    elif result.result in (FAIL, SOFTFAIL):
        comment = f"domain of {sender} does not designate {client} as permitted sender"
    else:
        comment = result.reason
    comment = comment.replace("(", "[").replace(")", "]")
    line = (
        f"Received-SPF: {result.result} ({receiver}: {comment})\r\n"
        f"\tclient-ip={client}; envelope-from={_quoted(sender)};"
        f" helo={_quoted(helo or 'unknown')};\r\n"
        f"\treceiver={receiver}; identity={identity};\r\n"
    )
    return line.encode("ascii", "replace")


@frozen
class SPFDecision:
    """
    What the MX role does with a sender: the field to add, and the reply
    to refuse it with, if any.
    """

    header: bytes
    result: SPFResult
    refuse: tuple[int, str, str] | None = None


@define
class SPFPolicy:
    """
    SPF on the MX role (C{[mail] spf}, C{spf_skip}).

    @ivar mode: C{"mark"} (add C{Received-SPF}) or C{"reject"} (also
        refuse C{fail} with 550 5.7.23, RFC 7372).
    """

    resolver: IDNSResolver
    receiver: str
    mode: str = "mark"
    skip: Sequence[str] = ()
    now: Callable[[], float] = time.time
    #: With a clock, a check taking longer than C{timeout} seconds is a
    #: temperror (RFC 7208 4.6.4 suggests at least 20 seconds).
    clock: Any = None
    timeout: float = 20.0
    _networks: list[Any] = field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in self.skip]

    def skipped(self, client: str) -> bool:
        """Is this client exempt from SPF (a trusted relay)?"""
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return True
        return any(address in network for network in self._networks)

    def decide(
        self, client: str, helo: str, sender: str
    ) -> Deferred[SPFDecision | None]:
        """
        Check the MAIL FROM identity (C{postmaster@HELO} for the null
        sender); C{None} for a skipped client.
        """
        return Deferred.fromCoroutine(self._decide(client, helo, sender))

    async def _decide(self, client: str, helo: str, sender: str) -> SPFDecision | None:
        if self.skipped(client):
            return None
        identity = "mailfrom" if sender else "helo"
        address = sender or f"postmaster@{helo}"
        domain = address.rpartition("@")[2]
        checking = checkHost(
            self.resolver, client, domain, address, helo, self.receiver, self.now
        )
        if self.clock is not None:
            checking.addTimeout(self.timeout, self.clock)
        try:
            result = await checking
        except defer.TimeoutError:
            result = SPFResult(
                TEMPERROR, domain, f"no answer within {self.timeout:g} seconds"
            )
        header = receivedSPF(
            result,
            receiver=self.receiver,
            client=client,
            sender=address,
            helo=helo,
            identity=identity,
        )
        refuse = None
        if self.mode == "reject" and result.result == FAIL:
            why = result.explanation or f"{client} is not allowed to send for {domain}"
            refuse = (550, "5.7.23", f"SPF validation failed: {why}")
        return SPFDecision(header, result, refuse)
