"""
Webmail at C{/mail} and its JSON API at C{/api/v1}, on the web server,
over the shared mail store.

The page (L{appnet.webmail.page}) is server-rendered HTML and one small
script; everything it does goes through the JSON API
(L{appnet.webmail.api}), which scripts may use too. Messages are read
from the store's files and parsed off the reactor thread
(L{appnet.webmail.reading}); HTML mail is shown through a strict
allowlist (L{appnet.webmail.sanitize}); mail is sent through the same
routing and delivery as SMTP submission (L{appnet.webmail.sending}).

Why a package of its own rather than C{appnet.web.mail}: the webmail
depends on both the web server (sessions, the gate) and the mail family
(routing, delivery); as a sibling of both, C{appnet.web} stays free of
mail imports and attaches the webmail the way any application attaches,
through L{appnet.web.server.MOUNTS}.
"""

from appnet.webmail.errors import APIError, SendRefused, WebmailError
from appnet.webmail.mount import buildWebmail, mountWebmail
from appnet.webmail.sanitize import SanitizedHTML, htmlToText, sanitize
from appnet.webmail.sending import Draft, MessageRef, Sent, Submitter

__all__ = [
    "APIError",
    "Draft",
    "MessageRef",
    "SanitizedHTML",
    "SendRefused",
    "Sent",
    "Submitter",
    "WebmailError",
    "buildWebmail",
    "htmlToText",
    "mountWebmail",
    "sanitize",
]
