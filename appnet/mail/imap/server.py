"""
The IMAP server (RFC 3501 IMAP4rev1) over the mail store, with IDLE
(2177), NAMESPACE (2342), ID (2971), UNSELECT (3691), CHILDREN (3348),
UIDPLUS (4315), SASL-IR (4959), ENABLE (5161), response codes (5530),
SPECIAL-USE (6154), MOVE (6851), LITERAL+ (7888) and APPENDLIMIT (7889).

The session composes the framing (L{appnet.mail.imap.framing}) and the
command handlers grouped by state (C{unauthenticated}, C{authenticated},
C{selected}). Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import ServerFactory
from zope.interface import implementer

from appnet.auth import Authenticator
from appnet.faults import NO_FAULTS, Faults
from appnet.mail.imap.fetch import HeaderCache
from appnet.mail.imap.framing import MAX_BAD, Command
from appnet.mail.imap.selected import SelectedCommands
from appnet.mail.realm import MailRealm
from appnet.status import Status
from appnet.store.interfaces import IMailStore
from appnet.tls import LiveTLS
from appnet.trace import MaskRule

__all__ = ["IMAP_MASK", "MAX_BAD", "IMAPServer", "IMAPServerFactory", "refusal"]

#: What C{--trace imap} must not log: LOGIN's password, AUTHENTICATE's
#: initial response and the responses after a C{+} challenge; literals
#: (APPEND's message) are summarised.
IMAP_MASK = MaskRule(
    secretCommands={b"LOGIN": 1, b"AUTHENTICATE": 1},
    tagged=True,
    challenges=(b"+",),
    literals=True,
)

Blocking = Callable[..., Deferred[Any]]

_ANY = frozenset({"unauth", "auth", "select"})
_UNAUTH = frozenset({"unauth"})
_AUTH = frozenset({"auth", "select"})
_SELECT = frozenset({"select"})

_COMMANDS: dict[str, Command] = {
    "CAPABILITY": Command(_ANY, SelectedCommands.cmd_CAPABILITY),
    "NOOP": Command(_ANY, SelectedCommands.cmd_NOOP),
    "LOGOUT": Command(_ANY, SelectedCommands.cmd_LOGOUT),
    "ID": Command(_ANY, SelectedCommands.cmd_ID),
    "STARTTLS": Command(_UNAUTH, SelectedCommands.cmd_STARTTLS),
    "LOGIN": Command(_UNAUTH, SelectedCommands.cmd_LOGIN),
    "AUTHENTICATE": Command(_UNAUTH, SelectedCommands.cmd_AUTHENTICATE),
    "ENABLE": Command(frozenset({"auth"}), SelectedCommands.cmd_ENABLE),
    "NAMESPACE": Command(_AUTH, SelectedCommands.cmd_NAMESPACE),
    "SELECT": Command(_AUTH, SelectedCommands.cmd_SELECT),
    "EXAMINE": Command(_AUTH, SelectedCommands.cmd_EXAMINE),
    "CREATE": Command(_AUTH, SelectedCommands.cmd_CREATE),
    "DELETE": Command(_AUTH, SelectedCommands.cmd_DELETE),
    "RENAME": Command(_AUTH, SelectedCommands.cmd_RENAME),
    "SUBSCRIBE": Command(_AUTH, SelectedCommands.cmd_SUBSCRIBE),
    "UNSUBSCRIBE": Command(_AUTH, SelectedCommands.cmd_UNSUBSCRIBE),
    "LIST": Command(_AUTH, SelectedCommands.cmd_LIST),
    "LSUB": Command(_AUTH, SelectedCommands.cmd_LSUB),
    "STATUS": Command(_AUTH, SelectedCommands.cmd_STATUS),
    "APPEND": Command(_AUTH, SelectedCommands.cmd_APPEND),
    "IDLE": Command(_AUTH, SelectedCommands.cmd_IDLE),
    "CHECK": Command(_SELECT, SelectedCommands.cmd_CHECK),
    "CLOSE": Command(_SELECT, SelectedCommands.cmd_CLOSE),
    "UNSELECT": Command(_SELECT, SelectedCommands.cmd_UNSELECT),
    "EXPUNGE": Command(_SELECT, SelectedCommands.cmd_EXPUNGE),
    "SEARCH": Command(_SELECT, SelectedCommands.cmd_SEARCH, expunges=False),
    "FETCH": Command(_SELECT, SelectedCommands.cmd_FETCH, expunges=False),
    "STORE": Command(_SELECT, SelectedCommands.cmd_STORE, expunges=False),
    "COPY": Command(_SELECT, SelectedCommands.cmd_COPY),
    "MOVE": Command(_SELECT, SelectedCommands.cmd_MOVE),
}


@implementer(IPushProducer)
class IMAPServer(SelectedCommands):
    """
    One IMAP session.
    """

    commands = _COMMANDS


class IMAPServerFactory(LiveTLS, ServerFactory):
    """
    Makes IMAP sessions; holds what they share.

    @ivar blocking: runs a blocking function in a worker thread (message
        file reads, MIME parsing, search), returning a Deferred.
    """

    #: The command that upgrades a session to TLS (start-up lines name it).
    tlsUpgrade = "STARTTLS"

    protocol = IMAPServer  # type: ignore[assignment]
    #: Scripted faults (set by the stack).
    faults: Faults = NO_FAULTS

    def __init__(
        self,
        *,
        hostname: str,
        store: IMailStore,
        auth: Authenticator,
        realm: MailRealm,
        status: Status,
        clock: Any,
        blocking: Blocking,
        tlsOptions: Any = None,
        idleTimeout: float = 1800,
        loginTimeout: float = 60,
        idleKeepalive: float = 120,
        maxAppendSize: int = 25 << 20,
        maxLiteralSize: int = 64 << 10,
    ) -> None:
        self.hostname = hostname
        self.store = store
        self.auth = auth
        self.realm = realm
        self.status = status
        self.clock = clock
        self.blocking = blocking
        self.tlsOptions = tlsOptions
        self.idleTimeout = idleTimeout
        self.loginTimeout = loginTimeout
        self.idleKeepalive = idleKeepalive
        self.maxAppendSize = maxAppendSize
        self.maxLiteralSize = maxLiteralSize
        #: Header sections FETCH read lately, shared by the sessions.
        self.headers = HeaderCache()

    def buildProtocol(self, addr: Any) -> IMAPServer:  # type: ignore[override]
        return IMAPServer(self)


def refusal(hostname: str) -> bytes:
    """What a client over the per-address connection limit is told."""
    return f"* BYE {hostname}: too many connections from you\r\n".encode()
