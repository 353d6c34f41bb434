"""
IMAP commands allowed in any state (CAPABILITY, NOOP, LOGOUT, ID) and in
the not-authenticated state (STARTTLS, LOGIN, AUTHENTICATE), with the
capabilities a session announces.
"""

from __future__ import annotations

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.interfaces import ITLSTransport

from appnet import __version__
from appnet.address import isLoopback
from appnet.auth import LoginThrottled
from appnet.mail.imap.account import IIMAPAccount, IMAPAccount
from appnet.mail.imap.errors import BadCommand, CommandFailed
from appnet.mail.imap.framing import Done, IMAPFraming
from appnet.mail.imap.parse import Arguments
from appnet.mail.imap.wire import encode
from appnet.mail.sasl import (
    LOGIN_PASSWORD,
    LOGIN_USERNAME,
    MECHANISMS,
    SASLError,
    decodeBase64,
    decodePlain,
)

__all__ = ["NotAuthenticatedCommands"]


class NotAuthenticatedCommands(IMAPFraming):
    """
    The handlers of the any and not-authenticated states.
    """

    # Capabilities.

    @property
    def _plaintextAllowed(self) -> bool:
        return self._tls or isLoopback(self._client)

    @property
    def _canSTARTTLS(self) -> bool:
        return (
            self.factory.tlsOptions is not None
            and not self._tls
            and ITLSTransport.providedBy(self.transport)
        )

    def capabilities(self) -> dict[bytes, list[bytes] | None]:
        caps: dict[bytes, list[bytes] | None] = {}
        for name in (b"LITERAL+", b"SASL-IR", b"ID", b"ENABLE", b"IDLE",
                     b"NAMESPACE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE",
                     b"UNSELECT", b"CHILDREN"):  # fmt: skip
            caps[name] = None
        caps[b"APPENDLIMIT"] = [b"%d" % self.factory.maxAppendSize]
        if self.state == "unauth":
            if self._canSTARTTLS:
                caps[b"STARTTLS"] = None
            if self._plaintextAllowed:
                caps[b"AUTH"] = list(MECHANISMS)
            else:
                caps[b"LOGINDISABLED"] = None
        return caps

    # Any state.

    async def cmd_CAPABILITY(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.end()
        caps = b" ".join(self.listCapabilities())
        self.sendUntaggedResponse(b"CAPABILITY " + caps)
        return Done(b"CAPABILITY completed")

    async def cmd_NOOP(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        args.end()
        if self.selected is not None:
            self.selected.dirty = True
        return Done(b"NOOP completed")

    async def cmd_LOGOUT(self, tag: bytes, args: Arguments, uid: bool) -> None:
        args.end()
        self._deselect()
        self.do_LOGOUT(tag)

    async def cmd_ID(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        fields: dict[str, str] = {}
        if args.peekWord() == b"NIL":
            args.atom()
        else:
            values = args.parenthesised(lambda a: a.nstring() or b"")
            if len(values) % 2 or len(values) > 60:
                raise BadCommand("ID takes up to 30 name and value pairs")
            for i in range(0, len(values), 2):
                name, value = values[i], values[i + 1]
                if len(name) > 30 or len(value) > 1024:
                    raise BadCommand("ID field too long")
                fields[name.decode("utf-8", "replace")] = value.decode(
                    "utf-8", "replace"
                )
        args.end()
        if fields:
            self._log.info(
                "imap: {client} identifies as {fields}",
                client=self._client,
                fields=fields,
            )
        self.sendUntaggedResponse(
            b"ID " + encode(["name", "appnet", "version", __version__])
        )
        return Done(b"ID completed")

    # Not authenticated.

    async def cmd_STARTTLS(self, tag: bytes, args: Arguments, uid: bool) -> None:
        args.end()
        if self._tls:
            raise BadCommand("TLS is already active")
        if not self._canSTARTTLS:
            raise CommandFailed("TLS is not available")
        self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
        # Nothing pipelined in plain text after STARTTLS may run inside
        # the TLS session (command injection); forget the session state.
        self.discardInput()
        self._discardCommand()
        self._tls = True
        self.transport.startTLS(self.factory.tlsOptions)

    async def cmd_LOGIN(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        username = args.astring("a user name")
        args.sp()
        password = args.astring("a password")
        args.end()
        if not self._plaintextAllowed:
            raise CommandFailed(
                "Login needs TLS: use STARTTLS first", "PRIVACYREQUIRED"
            )
        return await self._login(username, password)

    async def cmd_AUTHENTICATE(self, tag: bytes, args: Arguments, uid: bool) -> Done:
        mechanism = args.atom("a mechanism").upper()
        initial: bytes | None = None
        if args.maybe(b" "):
            initial = args.atom("an initial response", frozenset(b"=+/0123456789"
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))  # fmt: skip
        args.end()
        if not self._plaintextAllowed:
            raise CommandFailed(
                "Authentication needs TLS: use STARTTLS first", "PRIVACYREQUIRED"
            )
        if mechanism not in MECHANISMS:
            raise CommandFailed("Unsupported authentication mechanism", "CANNOT")
        try:
            if mechanism == b"PLAIN":
                response = (
                    initial if initial is not None else await self._challenge(b"")
                )
                username, password = decodePlain(decodeBase64(response))
            else:
                if initial is not None:
                    username = decodeBase64(initial)
                else:
                    username = decodeBase64(await self._challenge(LOGIN_USERNAME))
                password = decodeBase64(await self._challenge(LOGIN_PASSWORD))
                if not username:
                    raise SASLError("empty user name")
        except SASLError as e:
            raise BadCommand(f"Authentication failed: {e}") from None
        return await self._login(username, password)

    async def _challenge(self, prompt: bytes) -> bytes:
        self.sendContinuationRequest(prompt or None)
        line = await self._nextLine()
        if line.strip() == b"*":
            raise BadCommand("Authentication cancelled")
        return line

    async def _login(self, username: bytes, password: bytes) -> Done:
        portal = self.factory.auth.portalFor(self.factory.realm, self._client)
        try:
            _, avatar, logout = await portal.login(
                UsernamePassword(username, password), None, IIMAPAccount
            )
        except LoginThrottled:
            raise CommandFailed(
                "Too many failed logins; try again later", "UNAVAILABLE"
            ) from None
        except UnauthorizedLogin:
            raise CommandFailed(
                "Authentication failed", "AUTHENTICATIONFAILED"
            ) from None
        if self._closed:
            logout()
            return Done(b"")
        assert isinstance(avatar, IMAPAccount)
        self.account = avatar
        self._logout = logout
        self.state = "auth"
        self.setTimeout(self.POSTAUTH_TIMEOUT)
        self.factory.status.increment("imap", "logins")
        self._log.info(
            "imap: {client} logged in as {account}",
            client=self._client,
            account=avatar.address,
        )
        caps = b" ".join(self.listCapabilities())
        return Done(b"[CAPABILITY " + caps + b"] Logged in")
