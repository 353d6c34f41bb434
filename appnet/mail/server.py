"""
The mail family's part of the stack: one builder serving C{smtp} (the MX
role), C{submission}, C{pop3} and C{imap} over the shared store,
authenticator and TLS material, with the queue runner that relays outgoing
mail as a background service. Each protocol registers its avatar type on
the one L{MailRealm} this builder makes (see L{buildMail}).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.mail.interfaces import IMailboxPOP3
from twisted.python.failure import Failure

from appnet.address import isLoopback
from appnet.dns.client import resolverFor
from appnet.dns.interfaces import IDNSResolver
from appnet.errors import ConfigError
from appnet.mail.catcher import CatchAuth, CatchRouter
from appnet.mail.delivery import Delivery
from appnet.mail.imap import IMAP_MASK, IIMAPAccount, IMAPServerFactory, accountFactory
from appnet.mail.imap import refusal as imapRefusal
from appnet.mail.mailauth import mailAuthFor
from appnet.mail.pop3 import POP3_MASK, POP3ServerFactory, maildropFactory
from appnet.mail.pop3 import refusal as pop3Refusal
from appnet.mail.queue import QueueRunner, Schedule
from appnet.mail.realm import MailRealm
from appnet.mail.relay import Hop, Relay, RelaySettings
from appnet.mail.routing import Router, parseAliasesFile
from appnet.mail.smtpserver import SMTP_MASK, SMTPRole, SMTPServerFactory
from appnet.mail.smtpserver import refusal as smtpRefusal
from appnet.mail.spf import SPFPolicy
from appnet.stack import Component, Listening, StackContext

__all__ = ["buildMail", "makeQueueRunner", "makeRouter"]


def _aliases(ctx: StackContext) -> dict[str, tuple[str, ...]]:
    """
    The configured aliases: the aliases file first, the config table over
    it. Read once at start.

    @raise ConfigError: naming C{mail.aliases_file} if it cannot be read
        or parsed.
    """
    aliases: dict[str, tuple[str, ...]] = {}
    path = ctx.config.mail.aliases_file
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                aliases.update(parseAliasesFile(f.read()))
        except OSError as e:
            problem = f"cannot read {path}: {e.strerror}"
            raise ConfigError("mail.aliases_file", problem) from None
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError("mail.aliases_file", f"{path}: {e}") from None
    aliases.update(dict(ctx.config.mail.aliases))
    return aliases


def makeRouter(ctx: StackContext) -> Router:
    """
    The recipient router of a stack (IMAP and webmail reuse it to decide
    where their own submissions go).
    """
    mail = ctx.config.mail
    return Router(
        ctx.store.users,
        ctx.localDomains,
        mail.quota or None,
        _aliases(ctx),
        mail.catch_all,
        mail.postmaster,
    )


def _readSecret(key: str, path: str | None, what: str) -> bytes | None:
    """
    A small file named by the config (start-up I/O, like the aliases).

    @raise ConfigError: naming C{key} if it cannot be read.
    """
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(key, f"cannot read {what} {path}: {e.strerror}") from None


def relaySettings(ctx: StackContext) -> RelaySettings:
    """
    The relay's settings from C{[mail]}.

    @raise ConfigError: if the smarthost password or CA file cannot be
        read.
    """
    mail = ctx.config.mail
    password = _readSecret(
        "mail.smarthost_password_file", mail.smarthost_password_file, "password file"
    )
    trust = _readSecret("mail.smarthost_cafile", mail.smarthost_cafile, "CA file")
    return RelaySettings(
        hostname=ctx.config.hostname,
        port=mail.relay_port,
        connectTimeout=mail.relay_connect_timeout,
        timeout=mail.relay_timeout,
        reuse=mail.relay_reuse,
        tls=mail.relay_tls,
        bindAddress=mail.bind_address,
        smarthost=mail.smarthost,
        smarthostUser=mail.smarthost_user,
        smarthostPassword=(
            password.decode("utf-8", "replace").splitlines()[0]
            if password and password.strip()
            else None
        ),
        smarthostTLS=mail.smarthost_tls,
        smarthostTrust=trust,
    )


class ResolverNotice(Service):
    """
    Says in one line of the start-up log which resolver mail uses (the
    relay's MX lookups, SPF).
    """

    name = "mail-resolver"  # type: ignore[assignment]
    _log = Logger()

    def __init__(self, resolver: IDNSResolver) -> None:
        self._resolver = resolver

    def startService(self) -> None:
        super().startService()
        describe = getattr(self._resolver, "describe", None)
        if describe is None:
            return
        describe().addCallbacks(self._say, self._failed)

    def _say(self, text: str) -> None:
        self._log.info("mail resolves names through {resolver}", resolver=text)

    def _failed(self, failure: Failure) -> None:
        self._log.failure("cannot tell which resolver mail uses", failure)


def makeQueueRunner(
    ctx: StackContext, router: Router, resolver: IDNSResolver | None = None
) -> QueueRunner:
    """
    The queue runner of a stack: its relay resolves through appnet's own
    resolver (L{resolverFor}) and never connects to this node's own MX
    listener.
    """
    mail = ctx.config.mail

    def isSelf(hop: Hop) -> bool:
        for bound in ctx.addresses.of("smtp"):
            host = getattr(bound.address, "host", None)
            if getattr(bound.address, "port", None) != hop.port:
                continue
            if host == hop.address:
                return True
            if host in ("0.0.0.0", "::") and isLoopback(hop.address):
                return True
        return False

    if resolver is None:
        resolver = resolverFor(ctx)
    relay = Relay(ctx.reactor, resolver, relaySettings(ctx), isSelf)
    runner = QueueRunner(
        store=ctx.store,
        relay=relay,
        router=router,
        localDomains=ctx.localDomains,
        status=ctx.status,
        clock=ctx.clock,
        reactor=ctx.reactor,
        hostname=ctx.config.hostname,
        schedule=Schedule(mail.retry, mail.max_queue_age, mail.delay_warning),
        concurrency=mail.relay_concurrency,
        destinationConcurrency=mail.relay_destination_concurrency,
        idle=mail.relay_idle,
        poll=mail.queue_poll,
        blocking=None if ctx.fileThreads is None else ctx.fileThreads.run,
    )
    if ctx.config.store.url:
        # Nodes sharing a database may share a host name too: a restarting
        # node takes back only its own claims, told apart by the identity
        # kept in its data directory.
        from appnet.store.pg.node import nodeIdentity

        ident = nodeIdentity(ctx.dataDir.root.path)
        runner.node = f"{ctx.config.hostname}:{ident}:"
        runner.owner = runner.node + runner.owner.removeprefix(
            f"{ctx.config.hostname}:"
        )
    return runner


def buildMail(ctx: StackContext) -> Component:
    """
    SMTP (MX and submission), POP3 and IMAP for the stack.
    """
    config = ctx.config
    catching = config.mail.catch
    router = makeRouter(ctx)
    realm = MailRealm()
    # A POP3 lock outlives a crashed holder by at most this long (a live
    # session refreshes it every third of that).
    lockTTL = 180.0
    realm.register(IMailboxPOP3, maildropFactory(ctx.store.mail, ctx.reactor, lockTTL))
    realm.register(
        IIMAPAccount,
        accountFactory(ctx.store.mail, ctx.store.users, config.mail.quota or None),
    )
    tlsOptions = ctx.tlsKeeper
    delivery = Delivery(ctx.store, ctx.reactor.seconds)
    hostname = config.hostname
    resolver = resolverFor(ctx)
    spf = None
    if config.mail.spf != "off":
        spf = SPFPolicy(
            resolver,
            hostname,
            config.mail.spf,
            config.mail.spf_skip,
            ctx.reactor.seconds,
            ctx.reactor,
        )

    mailauth = mailAuthFor(ctx, resolver)

    def smtpFactory(role: SMTPRole, idleTimeout: float) -> SMTPServerFactory:
        if catching:
            # The mail catcher: both ports take any mail, any AUTH.
            role = SMTPRole(role.service, True, role.maxRecipients, False, True)
        return SMTPServerFactory(
            role=role,
            hostname=hostname,
            store=ctx.store,
            router=CatchRouter() if catching else router,  # type: ignore[arg-type]
            auth=CatchAuth() if catching else ctx.auth,  # type: ignore[arg-type]
            realm=realm,
            status=ctx.status,
            clock=ctx.clock,
            tlsOptions=tlsOptions,
            idleTimeout=idleTimeout,
            maxMessageSize=config.mail.max_message_size,
            hopLimit=config.mail.hop_limit,
            delivery=delivery,
            mailauth=mailauth,
        )

    mx = smtpFactory(
        SMTPRole("smtp", submission=False, maxRecipients=config.smtp.max_recipients),
        config.smtp.idle_timeout,
    )
    mx.spf = None if catching else spf
    submission = smtpFactory(
        SMTPRole(
            "submission",
            submission=True,
            maxRecipients=config.submission.max_recipients,
            senderMustMatch=config.submission.sender_must_match,
        ),
        config.submission.idle_timeout,
    )
    reactor = ctx.reactor
    fileThreads = ctx.fileThreads

    def blocking(fn: Any, *args: Any) -> Deferred[Any]:
        if fileThreads is not None:
            return fileThreads.run(fn, *args)
        return deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)

    pop3 = POP3ServerFactory(
        blocking=blocking,
        hostname=hostname,
        store=ctx.store.mail,
        auth=ctx.auth,
        realm=realm,
        status=ctx.status,
        clock=ctx.clock,
        tlsOptions=tlsOptions,
        idleTimeout=config.pop3.idle_timeout,
        apop=config.pop3.apop,
    )
    imap = IMAPServerFactory(
        hostname=hostname,
        store=ctx.store.mail,
        auth=ctx.auth,
        realm=realm,
        status=ctx.status,
        clock=ctx.clock,
        blocking=blocking,
        tlsOptions=tlsOptions,
        idleTimeout=config.imap.idle_timeout,
        idleKeepalive=config.imap.idle_keepalive,
        maxAppendSize=config.mail.max_message_size,
        maxLiteralSize=config.imap.max_literal_size,
    )
    for factory in (mx, submission, pop3, imap):
        factory.faults = ctx.faults
    return Component(
        listening=[
            Listening("smtp", mx, smtpRefusal(hostname), SMTP_MASK),
            Listening("submission", submission, smtpRefusal(hostname), SMTP_MASK),
            Listening("pop3", pop3, pop3Refusal(hostname), POP3_MASK),
            Listening("imap", imap, imapRefusal(hostname), IMAP_MASK),
        ],
        services=[ResolverNotice(resolver)],
        once=[makeQueueRunner(ctx, router, resolver)],
    )
