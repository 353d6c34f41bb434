"""
Where a recipient's mail goes: into local mailboxes, into the outgoing
queue, or nowhere (a rejection with its SMTP reply).

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from attrs import define, field, frozen

from appnet.errors import AppnetError
from appnet.mail.envelope import Mailbox
from appnet.store.interfaces import IUserStore

__all__ = ["Rejected", "Route", "Router", "parseAliasesFile"]

#: How deep alias expansion may go before it is taken for a loop.
MAX_ALIAS_DEPTH = 10

#: Accounts the router remembers at most (then all are forgotten at once).
MAX_CACHED_ACCOUNTS = 10_000


@frozen(eq=False)
class Rejected(AppnetError):
    """
    A recipient is refused.

    @ivar code: the SMTP reply code.
    @ivar enhanced: the enhanced status code.
    @ivar text: the reply text.
    """

    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


@frozen
class Route:
    """
    Where one accepted recipient's copy goes.

    @ivar local: mailbox owners and their quotas (C{None}: no limit).
    @ivar remote: addresses to queue for the relay.
    """

    local: tuple[tuple[str, int | None], ...] = ()
    remote: tuple[str, ...] = ()


def parseAliasesFile(text: str) -> dict[str, tuple[str, ...]]:
    """
    Parse an aliases file: C{alias: target, target} per line, C{#}
    comments, continuation lines starting with white space (the
    C{/etc/aliases} layout).

    @raise ValueError: naming the line of a malformed entry.
    """
    entries: dict[str, tuple[str, ...]] = {}
    logical: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if line[0] in " \t" and logical:
            start, previous = logical[-1]
            logical[-1] = (start, previous + " " + line.strip())
        else:
            logical.append((number, line))
    for number, line in logical:
        name, colon, rest = line.partition(":")
        targets = tuple(t.strip().lower() for t in rest.split(",") if t.strip())
        if not colon or not name.strip() or " " in name.strip() or not targets:
            raise ValueError(f"line {number}: expected 'alias: target, target'")
        for target in targets:
            local, at, domain = target.rpartition("@")
            if not at or not local or not domain:
                raise ValueError(f"line {number}: target {target!r} needs @domain")
        entries[name.strip().lower()] = targets
    return entries


@define
class Router:
    """
    Resolves recipients against the local domains, aliases and accounts.

    Accounts found are remembered, so that mail to an account's own
    address (every RCPT of a busy MX) is routed without a store read
    (L{routeNow}): each entry for at most C{accountTTL} seconds, and all
    of them only while the user store's C{generation} stands (an account
    added or deleted through it, on any node of a shared PostgreSQL,
    clears them at once). An account's quota never changes once made; an
    address found to have no account is not remembered (a new account
    gets its mail at once, whoever added it); an account deleted by
    another process sharing an SQLite file still gets mail for at most
    C{accountTTL} seconds.

    @ivar localDomains: returns the current local domains (config plus
        every user's domain; it changes as users are added).
    @ivar now: the clock of the account cache.
    """

    _users: IUserStore
    _localDomains: Callable[[], Awaitable[frozenset[str]]]
    _defaultQuota: int | None
    _aliases: Mapping[str, Sequence[str]] = field(factory=dict)
    _catchAll: str | None = None
    _postmaster: str | None = None
    _now: Callable[[], float] = time.monotonic
    accountTTL: float = 5.0
    _accounts: dict[str, tuple[float, int | None]] = field(factory=dict, init=False)
    _generation: object = field(default=None, init=False)

    async def isLocal(self, domain: str) -> bool:
        """Is this node the final destination for C{domain}?"""
        return domain in await self._localDomains()

    def routeNow(self, mailbox: Mailbox, *, relay: bool) -> Route | None:
        """
        The route of an RCPT that memory alone decides (an account's own
        address, remembered), without waiting; C{None}: ask L{route}.
        """
        account = self._plainAccount(mailbox)
        if account is None:
            return None
        entry = self._cached(account)
        if entry is None:
            return None
        return Route(((account, entry[1]),))

    async def route(self, mailbox: Mailbox, *, relay: bool) -> Route:
        """
        Resolve one RCPT.

        @param relay: may remote recipients be queued (submission, after
            AUTH)? If not, a remote recipient is a relay attempt.
        @raise Rejected: with the reply to send.
        """
        absent = None
        account = self._plainAccount(mailbox)
        if account is not None:
            # The common case, an account's own address: one store read.
            # An account's domain is local by definition, so the domain
            # list (a scan of every user) is only needed otherwise.
            found = await self._account(account)
            if found is not None:
                return Route(tuple(found.items()))
            absent = account
        domains = await self._localDomains()
        if mailbox.domain == "":
            # RCPT TO:<postmaster> with no domain.
            first = min(domains) if domains else None
            if first is None:
                raise Rejected(550, "5.1.1", "no local domain for postmaster")
            mailbox = Mailbox("postmaster", first)
        if mailbox.domain not in domains:
            if not relay:
                raise Rejected(554, "5.7.1", f"<{mailbox}>: Relay access denied")
            if mailbox.isLiteral:
                raise Rejected(550, "5.1.2", f"<{mailbox}>: literals not relayed")
            return Route(remote=(str(mailbox),))
        if any(c in mailbox.local for c in "%!@"):
            raise Rejected(554, "5.7.1", f"<{mailbox}>: Relay access denied")
        local, remote = await self._expand(
            mailbox.local.lower(), mailbox.domain, domains, 0, set(), absent
        )
        return Route(tuple(local.items()), tuple(dict.fromkeys(remote)))

    def _aliasNames(self, localPart: str, domain: str) -> tuple[str, ...]:
        """The names an alias for C{localPart@domain} may have, in order."""
        base = localPart.split("+", 1)[0]
        names = (f"{localPart}@{domain}", localPart, f"{base}@{domain}", base)
        return tuple(dict.fromkeys(names))

    def _plainAccount(self, mailbox: Mailbox) -> str | None:
        """
        The account C{mailbox} names if rules 2 and 3 cannot apply to it
        (no source route, no alias): then, if that account exists, rule 4
        decides, whatever the other local domains are.
        """
        localPart = mailbox.local.lower()
        base = localPart.split("+", 1)[0]
        if not mailbox.domain or not base or any(c in localPart for c in "%!@"):
            return None
        names = self._aliasNames(localPart, mailbox.domain)
        if any(name in self._aliases for name in names):
            return None
        return f"{base}@{mailbox.domain}"

    async def _account(self, account: str) -> dict[str, int | None] | None:
        """Rule 4: the account and its quota, or C{None} if it has none."""
        entry = self._cached(account)
        if entry is not None:
            return {account: entry[1]}
        generation = self._users.generation
        user = await self._users.getUser(account)
        if user is None:
            return None
        quota = user.quota if user.quota is not None else self._defaultQuota
        self._remember(account, quota or None, generation)
        return {account: quota or None}

    def _current(self) -> dict[str, tuple[float, int | None]]:
        """The remembered accounts, emptied if accounts changed since."""
        generation = self._users.generation
        if generation != self._generation:
            self._accounts.clear()
            self._generation = generation
        return self._accounts

    def _cached(self, account: str) -> tuple[float, int | None] | None:
        """A remembered account's entry (until when, its quota), or C{None}."""
        entry = self._current().get(account)
        if entry is None or self._now() >= entry[0]:
            return None
        return entry

    def _remember(self, account: str, quota: int | None, generation: int) -> None:
        """Remember an account read while the store was at C{generation}."""
        accounts = self._current()
        if generation != self._generation:
            return  # Accounts changed while it was read.
        if len(accounts) >= MAX_CACHED_ACCOUNTS:
            accounts.clear()
        accounts[account] = (self._now() + self.accountTTL, quota)

    async def _expand(
        self,
        localPart: str,
        domain: str,
        domains: frozenset[str],
        depth: int,
        seen: set[str],
        absent: str | None = None,
    ) -> tuple[dict[str, int | None], list[str]]:
        """
        @param absent: an account just looked up and found missing (not
            asked for again).
        """
        address = f"{localPart}@{domain}"
        if address in seen or depth > MAX_ALIAS_DEPTH:
            raise Rejected(550, "5.4.6", f"<{address}>: alias loop")
        seen = seen | {address}
        base = localPart.split("+", 1)[0]
        for name in self._aliasNames(localPart, domain):
            targets = self._aliases.get(name)
            if targets is not None:
                return await self._targets(targets, domains, depth, seen)
        if base and f"{base}@{domain}" != absent:
            found = await self._account(f"{base}@{domain}")
            if found is not None:
                return found, []
        if base == "postmaster":
            if self._postmaster is not None:
                return await self._targets([self._postmaster], domains, depth, seen)
            return {f"postmaster@{domain}": self._defaultQuota or None}, []
        if self._catchAll is not None and depth == 0:
            return await self._targets([self._catchAll], domains, depth, seen)
        raise Rejected(
            550, "5.1.1", f"<{address}>: Recipient address rejected: User unknown"
        )

    async def _targets(
        self,
        targets: Sequence[str],
        domains: frozenset[str],
        depth: int,
        seen: set[str],
    ) -> tuple[dict[str, int | None], list[str]]:
        local: dict[str, int | None] = {}
        remote: list[str] = []
        for target in targets:
            targetLocal, _, targetDomain = target.rpartition("@")
            if targetDomain not in domains:
                remote.append(target)
                continue
            more, further = await self._expand(
                targetLocal, targetDomain, domains, depth + 1, seen
            )
            local.update(more)
            remote.extend(further)
        return local, remote

    async def owns(self, account: str, sender: Mailbox) -> bool:
        """
        May the logged-in C{account} use C{sender} as its envelope sender?
        Its own address, a C{+tag} of it, or an alias that delivers to it.
        """
        if sender.domain == "" or any(c in sender.local for c in "%!@"):
            return False
        localPart = sender.local.lower()
        if f"{localPart.split('+', 1)[0]}@{sender.domain}" == account:
            return True
        domains = await self._localDomains()
        if sender.domain not in domains:
            return False
        try:
            local, _ = await self._expand(localPart, sender.domain, domains, 1, set())
        except Rejected:
            return False
        return account in local
