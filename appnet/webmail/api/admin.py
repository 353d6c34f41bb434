"""
The API's admin endpoints: the outgoing queue and user accounts.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.web.resource import IResource
from twisted.web.server import Request

from appnet.address import normalizeAccount
from appnet.auth import hashPassword
from appnet.cli import MIN_PASSWORD
from appnet.errors import BadAddress, NoSuchUser, UserExists
from appnet.store.interfaces import QueuedMessage, User
from appnet.webmail.api.common import Endpoint, NotFound, _admin, _json, _log
from appnet.webmail.errors import APIError
from appnet.webmail.forms import readJSON
from appnet.webmail.service import Webmail

__all__ = ["PasswordEndpoint", "QueueEndpoint", "UserEndpoint", "UsersEndpoint"]


def _queuedJSON(message: QueuedMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "sender": message.sender,
        "submitter": message.submitter,
        "size": message.size,
        "created": message.created,
        "nextAttempt": message.nextAttempt,
        "attempts": message.attempts,
        "held": message.held,
        "lastError": message.lastError,
        "recipients": [
            {
                "address": r.address,
                "state": r.state,
                "response": r.response,
                "updated": r.updated,
            }
            for r in message.recipients
        ],
    }


class QueueEndpoint(Endpoint):
    """C{GET /api/v1/queue}: the outgoing queue, oldest first (admins)."""

    async def GET(self, request: Request) -> bytes:
        _admin(request)
        messages = await self.webmail.store.queue.list()
        return _json(request, {"messages": [_queuedJSON(m) for m in messages]})


def _userJSON(user: User) -> dict[str, Any]:
    return {
        "address": user.address,
        "admin": user.admin,
        "quota": user.quota,
        "created": user.created,
    }


def _password(body: dict[str, Any]) -> str:
    password = body.get("password")
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise APIError(400, f"password must have at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise APIError(400, "password too long")
    return password


async def _hash(webmail: Webmail, password: str) -> str:
    encoded: str = await webmail.heavy(hashPassword, password)
    return encoded


class UsersEndpoint(Endpoint):
    """
    C{GET /api/v1/users}: every account; C{POST} with C{{"address",
    "password", "admin", "quota"}}: create one (admins).
    """

    isLeaf = False

    def getChild(self, path: bytes, request: Request) -> IResource:
        try:
            address = path.decode("utf-8")
        except UnicodeDecodeError:
            address = ""
        return UserEndpoint(self.webmail, address)

    async def GET(self, request: Request) -> bytes:
        _admin(request)
        users = await self.webmail.store.users.listUsers()
        return _json(request, {"users": [_userJSON(u) for u in users]})

    async def POST(self, request: Request) -> bytes:
        _admin(request)
        body = readJSON(request.content)
        raw = body.get("address")
        if not isinstance(raw, str):
            raise APIError(400, "address must be a string")
        try:
            address = normalizeAccount(raw)
        except BadAddress as e:
            raise APIError(400, str(e)) from None
        password = _password(body)
        admin = body.get("admin", False)
        quota = body.get("quota")
        if not isinstance(admin, bool):
            raise APIError(400, "admin must be true or false")
        if quota is not None and (
            not isinstance(quota, int)
            or isinstance(quota, bool)
            or not 0 <= quota < 2**63  # what the store's integers hold
        ):
            raise APIError(400, "quota must be a number of bytes or null")
        encoded = await _hash(self.webmail, password)
        try:
            user = await self.webmail.store.users.addUser(
                address, encoded, admin, quota
            )
        except UserExists:
            raise APIError(409, f"{address} exists already") from None
        _log.info("Web admin: user {address} added", address=address)
        request.setHeader(b"location", f"/api/v1/users/{quote(address)}".encode())
        return _json(request, {"user": _userJSON(user)}, 201)


class UserEndpoint(Endpoint):
    """
    C{DELETE /api/v1/users/ADDRESS}: delete an account (not one's own);
    C{POST /api/v1/users/ADDRESS/password} with C{{"password"}}: set its
    password, ending its sessions (admins).
    """

    isLeaf = False

    def __init__(self, webmail: Webmail, address: str) -> None:
        super().__init__(webmail)
        self.address = address

    def getChild(self, path: bytes, request: Request) -> IResource:
        if path == b"password" and not request.postpath:
            return PasswordEndpoint(self.webmail, self.address)
        return NotFound()

    def _account(self) -> str:
        try:
            return normalizeAccount(self.address)
        except BadAddress as e:
            raise APIError(400, str(e)) from None

    async def GET(self, request: Request) -> bytes:
        _admin(request)
        user = await self.webmail.store.users.getUser(self._account())
        if user is None:
            raise APIError(404, "no such user")
        return _json(request, {"user": _userJSON(user)})

    async def DELETE(self, request: Request) -> bytes:
        session = _admin(request)
        address = self._account()
        if address == session.account:
            raise APIError(409, "you cannot delete your own account")
        try:
            await self.webmail.store.users.deleteUser(address)
        except NoSuchUser:
            raise APIError(404, "no such user") from None
        await self.webmail.sessions.endAll(address)
        _log.info("Web admin: user {address} deleted", address=address)
        return _json(request, {"deleted": address})


class PasswordEndpoint(UserEndpoint):
    """C{POST /api/v1/users/ADDRESS/password}."""

    isLeaf = True
    GET = None  # type: ignore[assignment]
    DELETE = None  # type: ignore[assignment]

    async def POST(self, request: Request) -> bytes:
        _admin(request)
        address = self._account()
        password = _password(readJSON(request.content))
        encoded = await _hash(self.webmail, password)
        try:
            await self.webmail.store.users.setPasswordHash(address, encoded)
        except NoSuchUser:
            raise APIError(404, "no such user") from None
        ended = await self.webmail.sessions.endAll(address)
        _log.info("Web admin: password of {address} set", address=address)
        return _json(request, {"address": address, "sessionsEnded": ended})
