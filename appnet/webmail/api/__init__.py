"""
The JSON API under C{/api/v1}: what the webmail page does, for scripts
too. One module per resource group; README.rst documents every endpoint.

Design notes: HACKING.rst, "Design notes by module".
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.web.resource import IResource, Resource

from appnet.webmail.api.admin import QueueEndpoint, UsersEndpoint
from appnet.webmail.api.common import TRASH, APIRoot, Endpoint, NotFound, renderAPI
from appnet.webmail.api.compose import DraftEndpoint, DraftsEndpoint, SendEndpoint
from appnet.webmail.api.folders import FoldersEndpoint
from appnet.webmail.api.messages import (
    AttachmentEndpoint,
    DeleteEndpoint,
    FlagsEndpoint,
    MessageEndpoint,
    MessagesEndpoint,
    MoveEndpoint,
    RawEndpoint,
    SearchEndpoint,
)
from appnet.webmail.api.session import LoginEndpoint, SessionEndpoint
from appnet.webmail.service import Webmail

__all__ = ["APIRoot", "Endpoint", "NotFound", "TRASH", "apiTree", "renderAPI"]


def apiTree(webmail: Webmail, gate: Callable[[IResource], IResource]) -> APIRoot:
    """
    C{/api} with C{v1} under it: C{login} open, everything else behind
    C{gate} (a function wrapping a resource in the JSON session gate).
    """
    v1 = APIRoot()
    v1.putChild(b"login", LoginEndpoint(webmail))
    endpoints: dict[bytes, Resource] = {
        b"session": SessionEndpoint(webmail),
        b"folders": FoldersEndpoint(webmail),
        b"messages": MessagesEndpoint(webmail),
        b"search": SearchEndpoint(webmail),
        b"message": MessageEndpoint(webmail),
        b"attachment": AttachmentEndpoint(webmail),
        b"raw": RawEndpoint(webmail),
        b"draft": DraftEndpoint(webmail),
        b"drafts": DraftsEndpoint(webmail),
        b"send": SendEndpoint(webmail),
        b"move": MoveEndpoint(webmail),
        b"delete": DeleteEndpoint(webmail),
        b"flags": FlagsEndpoint(webmail),
        b"queue": QueueEndpoint(webmail),
        b"users": UsersEndpoint(webmail),
    }
    for name, endpoint in endpoints.items():
        v1.putChild(name, gate(endpoint))
    root = APIRoot()
    root.putChild(b"v1", v1)
    return root
