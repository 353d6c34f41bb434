"""
The webmail page at C{/mail/}: one server-rendered HTML document (the
frame: account, folders, message list, reader, compose form, admin
views) and a small hand-written script, C{webmail.js}, with its style
sheet, both served from this package. No framework, no build step,
nothing from another server: the script fills the frame through the JSON
API (L{appnet.webmail.api}) and does every action through it.

Every response here carries a strict Content-Security-Policy (scripts
and styles only from this server, no inline script, images only from
this server or C{data:}, no framing, no plugins), C{Referrer-Policy:
no-referrer} (links in mail must not leak the reader's URL) and the
session's CSRF token in a C{<meta>} element for the script's
C{X-CSRF-Token} header.
"""

from __future__ import annotations

import hashlib
import html
from importlib import resources

from attrs import frozen
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from appnet.web.pages import ErrorResource, RedirectResource, sendBody
from appnet.web.sessions import sessionOf

__all__ = ["ASSETS", "Asset", "MailRoot", "PAGE_CSP", "loadAssets", "pageHTML"]

#: The page's policy: everything from this server, no inline script.
PAGE_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; "
    b"img-src 'self' data:; connect-src 'self'; form-action 'self'; "
    b"frame-ancestors 'none'; base-uri 'none'"
)

#: The files served next to the page: name to media type.
ASSETS = {
    "webmail.js": b"text/javascript; charset=utf-8",
    "webmail.css": b"text/css; charset=utf-8",
}


@frozen
class Asset:
    """A static file of the page, in memory, with its entity tag."""

    data: bytes
    contentType: bytes
    etag: bytes


def loadAssets() -> dict[bytes, Asset]:
    """Read the page's script and style sheet from the package (small)."""
    found = {}
    folder = resources.files("appnet.webmail") / "static"
    for name, contentType in ASSETS.items():
        data = (folder / name).read_bytes()
        # Weak: the gzipped and the identity body share it.
        etag = b'W/"' + hashlib.sha256(data).hexdigest()[:20].encode() + b'"'
        found[name.encode()] = Asset(data, contentType, etag)
    return found


def _secureHeaders(request: Request) -> None:
    request.setHeader(b"content-security-policy", PAGE_CSP)
    request.setHeader(b"referrer-policy", b"no-referrer")
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"cross-origin-opener-policy", b"same-origin")


def pageHTML(account: str, admin: bool, csrfToken: str) -> bytes:
    """The page's frame (all text escaped)."""
    a = html.escape(account)
    token = html.escape(csrfToken)
    adminLinks = (
        '<li><a href="#view=queue">Queue</a></li>'
        '<li><a href="#view=users">Users</a></li>'
        if admin
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{token}">
<meta name="account" content="{a}">
<title>Mail</title>
<link rel="stylesheet" href="/mail/webmail.css">
<script src="/mail/webmail.js" defer></script>
</head>
<body>
<header>
<button type="button" id="menu-button" aria-controls="folder-nav"
aria-expanded="false" title="Folders">Folders</button>
<h1><a href="#folder=INBOX">Mail</a></h1>
<button type="button" id="compose-button" title="Compose (c)">Compose</button>
<form id="search-form" role="search">
<input id="search-q" name="q" type="search" maxlength="200"
placeholder="Search (/)" aria-label="Search this folder">
<button type="submit">Search</button>
<button type="button" id="search-more-button" aria-controls="search-more"
aria-expanded="false">More</button>
<fieldset id="search-more" hidden>
<label>From <input name="from" maxlength="200"></label>
<label>To <input name="to" maxlength="200"></label>
<label>Subject <input name="subject" maxlength="200"></label>
<label>Text <input name="body" maxlength="200"></label>
<label>Since <input name="since" type="date"></label>
<label>Until <input name="until" type="date"></label>
</fieldset>
</form>
<span class="account">{a}</span>
<form method="post" action="/logout" class="logout">
<input type="hidden" name="csrf_token" value="{token}">
<input type="hidden" name="next" value="/login?next=/mail/">
<button type="submit">Log out</button>
</form>
</header>
<nav id="folder-nav" aria-label="Folders">
<ul id="folders"></ul>
<form id="folder-form"><input id="folder-name" name="name" maxlength="255"
required aria-label="New folder name" placeholder="New folder">
<button type="submit">Create</button></form>
<ul class="admin">{adminLinks}</ul>
<p class="shortcuts">Keys: <kbd>j</kbd>/<kbd>k</kbd> next/previous,
<kbd>Enter</kbd> open, <kbd>r</kbd> reply, <kbd>c</kbd> compose,
<kbd>/</kbd> search</p>
</nav>
<main>
<p id="status" role="status" aria-live="polite"></p>
<noscript><p>The webmail needs JavaScript; its only script comes from
this server.</p></noscript>

<section id="list-view" hidden>
<h2 id="list-title"></h2>
<p id="search-note" hidden><span></span>
<button type="button" id="clear-search">Clear search</button></p>
<div class="toolbar">
<button type="button" id="newer">Newer</button>
<span id="range"></span>
<button type="button" id="older">Older</button>
<label><input type="checkbox" id="threads"> Conversations</label>
<label>Move selected to <select id="move-selected"></select></label>
<button type="button" id="delete-selected">Delete selected</button>
<button type="button" id="rename-folder">Rename folder</button>
<button type="button" id="delete-folder">Delete folder</button>
</div>
<table id="messages"><thead><tr><th><input type="checkbox" id="select-all"
aria-label="Select all"></th><th>From</th><th>Subject</th><th>Date</th>
<th class="size">Size</th></tr></thead><tbody></tbody></table>
</section>

<section id="message-view" hidden>
<div class="toolbar">
<button type="button" id="reply">Reply</button>
<button type="button" id="reply-all">Reply all</button>
<button type="button" id="forward">Forward</button>
<label>Move to <select id="move-message"></select></label>
<button type="button" id="delete-message">Delete</button>
<button type="button" id="mark-unread">Mark unread</button>
<a id="raw-link" href="#">Download original</a>
</div>
<h2 id="message-subject"></h2>
<dl id="message-headers"></dl>
<section id="thread" hidden aria-label="Conversation">
<h3>Conversation</h3>
<ol id="thread-list"></ol>
</section>
<p id="images-note" hidden><span></span>
<button type="button" id="show-images">Show images</button></p>
<ul id="attachments"></ul>
<div id="message-body"></div>
</section>

<section id="compose-view" hidden>
<h2>New message</h2>
<form id="compose-form" enctype="multipart/form-data">
<input type="hidden" name="reply.folder"><input type="hidden" name="reply.uid">
<input type="hidden" name="forward.folder"><input type="hidden" name="forward.uid">
<p><label for="compose-to">To</label>
<input id="compose-to" name="to" autocomplete="off"></p>
<p><label for="compose-cc">Cc</label>
<input id="compose-cc" name="cc" autocomplete="off"></p>
<p><label for="compose-bcc">Bcc</label>
<input id="compose-bcc" name="bcc" autocomplete="off"></p>
<p><label for="compose-subject">Subject</label>
<input id="compose-subject" name="subject"></p>
<p id="forward-note" hidden>The original message is attached.</p>
<p><textarea id="compose-text" name="text" rows="18"
aria-label="Message"></textarea></p>
<p><label for="compose-files">Attach</label>
<input id="compose-files" name="attachment" type="file" multiple></p>
<p><button type="submit" id="send">Send</button>
<button type="button" id="save-draft">Save draft</button>
<button type="button" id="discard">Close</button></p>
</form>
</section>

<section id="queue-view" hidden>
<h2>Outgoing queue</h2>
<table id="queue"><thead><tr><th>Id</th><th>From</th><th>Recipients</th>
<th>Size</th><th>Created</th><th>Next attempt</th><th>Last error</th>
</tr></thead><tbody></tbody></table>
</section>

<section id="users-view" hidden>
<h2>Users</h2>
<table id="users"><thead><tr><th>Address</th><th>Admin</th><th>Quota</th>
<th>Created</th><th></th></tr></thead><tbody></tbody></table>
<h3>Add a user</h3>
<form id="user-form">
<p><label for="user-address">Address</label>
<input id="user-address" name="address" required></p>
<p><label for="user-password">Password</label>
<input id="user-password" name="password" type="password" required
minlength="8" autocomplete="new-password"></p>
<p><label><input type="checkbox" name="admin"> Administrator</label></p>
<p><button type="submit">Add</button></p>
</form>
</section>
</main>
</body></html>
""".encode()


class MailRoot(Resource):
    """
    C{/mail}: the page at C{/mail/}, its assets beside it.
    """

    def __init__(self, assets: dict[bytes, Asset]) -> None:
        super().__init__()
        self.assets = assets

    def render(self, request: Request) -> bytes:
        # /mail without the slash: the page's relative links need it.
        return RedirectResource(b"/mail/", 301).render(request)

    def getChild(self, path: bytes, request: Request) -> IResource:
        if request.postpath:
            return ErrorResource(404, "No such page.")
        if path in (b"", b"index.html"):
            return PageResource()
        asset = self.assets.get(path)
        if asset is not None:
            return AssetResource(asset)
        return ErrorResource(404, "No such page.")


class PageResource(Resource):
    """The page for the logged-in account."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        session = sessionOf(request)
        if session is None:
            return ErrorResource(401, "Log in first.").render(request)
        body = sendBody(
            request,
            pageHTML(session.account, session.admin, session.csrfToken),
            b"text/html; charset=utf-8",
        )
        _secureHeaders(request)
        return body


class AssetResource(Resource):
    """The script or the style sheet (revalidated by entity tag)."""

    isLeaf = True

    def __init__(self, asset: Asset) -> None:
        super().__init__()
        self.asset = asset

    def render_GET(self, request: Request) -> bytes:
        asset = self.asset
        request.setHeader(b"cache-control", b"private, no-cache")
        request.setHeader(b"etag", asset.etag)
        _secureHeaders(request)
        match = request.getHeader(b"if-none-match")
        if match is not None and asset.etag in [m.strip() for m in match.split(b",")]:
            request.setResponseCode(304)
            return b""
        return sendBody(request, asset.data, asset.contentType)
