"""
Attaching the webmail to the web server: L{mountWebmail} is the
C{"appnet.webmail.mount:mountWebmail"} entry of
L{appnet.web.server.MOUNTS}.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.web.resource import IResource

from appnet.mail.delivery import Delivery
from appnet.mail.mailauth import mailAuthFor
from appnet.mail.server import makeRouter
from appnet.web.server import WebContext
from appnet.webmail.api import apiTree
from appnet.webmail.page import MailRoot, loadAssets
from appnet.webmail.sending import Submitter
from appnet.webmail.service import Webmail, limited, threadRunner

__all__ = ["buildWebmail", "mountWebmail"]


def buildWebmail(web: WebContext) -> Webmail:
    """The webmail's shared parts for the web component of a stack."""
    ctx = web.stack
    config = ctx.config
    # Message bodies are read and parsed in the store's file threads when
    # the stack has them (never the reactor's default pool).
    threads = ctx.fileThreads
    inThread = threadRunner(ctx.reactor) if threads is None else threads.run
    heavy = limited(inThread)
    submitter = Submitter(
        ctx.store,
        makeRouter(ctx),
        Delivery(ctx.store, ctx.reactor.seconds),
        ctx.status,
        heavy,
        hostname=config.hostname,
        maxMessageSize=config.mail.max_message_size,
        maxRecipients=config.submission.max_recipients,
        defaultQuota=config.mail.quota or None,
        mailauth=mailAuthFor(ctx, None),
    )
    return Webmail(
        store=ctx.store,
        sessions=web.sessions,
        login=web.login,
        submitter=submitter,
        status=ctx.status,
        clock=ctx.reactor,
        parseLimit=config.mail.max_message_size,
        inThread=inThread,
        heavy=heavy,
    )


def mountWebmail(web: WebContext) -> Mapping[bytes, IResource]:
    """
    C{/mail} (the page) and C{/api} (the JSON API, C{v1} under it), both
    behind the session gate; only C{/api/v1/login} is open.
    """
    webmail = buildWebmail(web)
    return {
        b"mail": web.gate(MailRoot(loadAssets())),
        b"api": apiTree(webmail, lambda r: web.gate(r, json=True)),
    }
