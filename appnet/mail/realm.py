"""
What a mail login yields: the C{twisted.cred} realm every mail protocol
logs in through (with L{appnet.auth.Authenticator.portalFor}).

One L{MailRealm} serves every mail protocol; each registers how to make
its avatar for an authenticated account: SMTP submission gets an
L{IMailAccount} (who is sending), POP3 a locked maildrop, IMAP (later) an
account of folders. Avatar factories may be asynchronous (POP3 takes its
lock through the store).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from attrs import frozen
from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface, implementer

__all__ = ["IMailAccount", "MailAccount", "MailRealm", "AvatarFactory"]


class IMailAccount(Interface):
    """
    An authenticated mail account (what SMTP AUTH yields).
    """

    address = Attribute("The account's canonical address.")


@implementer(IMailAccount)
@frozen
class MailAccount:
    """An authenticated account."""

    address: str


#: Makes an avatar for C{(avatarId, mind)}: the avatar and its logout.
AvatarFactory = Callable[[str, Any], Awaitable[tuple[object, Callable[[], None]]]]


async def _account(avatarId: str, mind: Any) -> tuple[object, Callable[[], None]]:
    return MailAccount(avatarId), lambda: None


@implementer(IRealm)
class MailRealm:
    """
    Avatars for the mail protocols, by interface.
    """

    def __init__(self, factories: Mapping[type[Interface], AvatarFactory] = {}):
        self._factories: dict[type[Interface], AvatarFactory] = {
            IMailAccount: _account,
            **factories,
        }

    def register(self, interface: type[Interface], factory: AvatarFactory) -> None:
        """
        Serve avatars of C{interface} (how IMAP adds its account type).
        """
        self._factories[interface] = factory

    def requestAvatar(
        self, avatarId: Any, mind: Any, *interfaces: type[Interface]
    ) -> Deferred[tuple[type[Interface], object, Callable[[], None]]]:
        async def make() -> tuple[type[Interface], object, Callable[[], None]]:
            address = avatarId.decode() if isinstance(avatarId, bytes) else avatarId
            for interface in interfaces:
                factory = self._factories.get(interface)
                if factory is not None:
                    avatar, logout = await factory(address, mind)
                    return interface, avatar, logout
            raise NotImplementedError(f"no mail avatar for {interfaces}")

        return Deferred.fromCoroutine(make())
