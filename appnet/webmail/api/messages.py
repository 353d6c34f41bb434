"""
The API's message endpoints: listing, search, reading a message, its
attachments and raw source, and moving, deleting and flagging messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from twisted.web.server import Request

from appnet.errors import NoSuchMessage
from appnet.mail.imap import search as searching
from appnet.store.interfaces import INBOX, MessageBody, MessageInfo
from appnet.webmail.api.common import (
    MAX_UID,
    TRASH,
    Endpoint,
    Streamed,
    _flag,
    _flagList,
    _folderArgument,
    _folderName,
    _json,
    _log,
    _messageURL,
    _number,
    _session,
    _uids,
    argument,
)
from appnet.webmail.errors import APIError
from appnet.webmail.forms import readJSON
from appnet.webmail.reading import (
    AttachmentInfo,
    ParsedMessage,
    Summary,
    addressList,
    contentDisposition,
    extractPart,
    headerSection,
    headOf,
    parseHeadersOnly,
    parseMessage,
    readAll,
    summarize,
)
from appnet.webmail.service import Webmail

__all__ = [
    "AttachmentEndpoint",
    "DOWNLOAD_CSP",
    "DeleteEndpoint",
    "FlagsEndpoint",
    "INLINE_IMAGES",
    "MAX_PAGE",
    "MAX_SEARCH",
    "MessageEndpoint",
    "MessagesEndpoint",
    "MoveEndpoint",
    "PAGE_SIZE",
    "RawEndpoint",
    "SearchEndpoint",
    "UNPARSABLE",
    "searchCriterion",
]


#: Longest search text accepted per field, in characters.
MAX_SEARCH = 200

#: Messages per page unless asked; the most one page may hold.
PAGE_SIZE = 50
MAX_PAGE = 200

#: Images a browser may show inline from a message (no SVG: it is a
#: document that can carry scripts).
INLINE_IMAGES = frozenset({"image/png", "image/gif", "image/jpeg", "image/webp"})

#: Headers of every download: no script, no plugin, no framing, even if
#: a browser were persuaded to render it.
DOWNLOAD_CSP = b"sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"


def _summaryJSON(info: MessageInfo, summary: Summary | None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "uid": info.uid,
        "size": info.size,
        "flags": sorted(info.flags),
        "internalDate": info.internalDate,
    }
    if summary is None:
        value.update(subject="", date=None, attachments=False)
        value.update({"from": [], "to": [], "messageId": "", "references": []})
        return value
    value.update(
        subject=summary.subject,
        date=summary.date,
        attachments=summary.hasAttachments,
        messageId=summary.messageId,
        references=list(summary.references),
    )
    value["from"] = addressList(summary.sender)
    value["to"] = addressList(summary.to)
    return value


def _summaries(bodies: Sequence[MessageBody | None]) -> list[Summary | None]:
    found: list[Summary | None] = []
    for body in bodies:
        try:
            found.append(summarize(body) if body is not None else None)
        except Exception:
            found.append(None)
    return found


class MessagesEndpoint(Endpoint):
    """
    C{GET /api/v1/messages?folder=INBOX&offset=0&limit=50}: one page of a
    folder, newest first, from the index and each message's header
    section (bodies are not read).
    """

    async def GET(self, request: Request) -> bytes:
        account = _session(request).account
        folder = _folderArgument(request)
        offset = _number(request, "offset", 0, 0, 10**9)
        limit = _number(request, "limit", PAGE_SIZE, 1, MAX_PAGE)
        mail = self.webmail.store.mail
        info = await mail.folder(account, folder)
        page = await mail.newestFirst(account, info.name, offset, limit)
        return _json(
            request,
            {
                "folder": info.name,
                "total": info.messages,
                "unseen": info.unseen,
                "offset": offset,
                "limit": limit,
                "messages": await _listed(self.webmail, account, info.name, page),
            },
        )


def _searchText(request: Request, name: str) -> str | None:
    text = argument(request, name)
    if text is None or not text.strip():
        return None
    if len(text) > MAX_SEARCH or any(ord(c) < 32 for c in text):
        raise APIError(400, f"{name} must be text of at most {MAX_SEARCH} characters")
    return text.strip().casefold()


def _searchDate(request: Request, name: str) -> date | None:
    text = argument(request, name)
    if not text:
        return None
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        pass
    raise APIError(400, f"{name} must be a date, YYYY-MM-DD")


def searchCriterion(request: Request) -> tuple[searching.Criterion, dict[str, str]]:
    """
    The IMAP search keys (L{appnet.mail.imap.search}) for a search
    request's fields: C{from}, C{to}, C{subject}, C{body} (substrings,
    any case), C{q} (in the sender, the subject or the text), C{thread}
    (a message id: that message and those that follow it), C{since} and
    C{until} (dates of the C{Date} field, both included). All given
    fields must match.

    @return: the criterion, and the fields as given (for the answer).
    @raise APIError: 400 for a bad field or none at all.
    """
    keys: list[searching.Criterion] = []
    asked: dict[str, str] = {}
    for name, header in (("from", "from"), ("to", "to"), ("subject", "subject")):
        text = _searchText(request, name)
        if text is not None:
            keys.append(searching.Header(header, text))
            asked[name] = text
    body = _searchText(request, "body")
    if body is not None:
        keys.append(searching.Body(body, withHeaders=False))
        asked["body"] = body
    anywhere = _searchText(request, "q")
    if anywhere is not None:
        keys.append(
            searching.Or(
                searching.Or(
                    searching.Header("from", anywhere),
                    searching.Header("subject", anywhere),
                ),
                searching.Body(anywhere, withHeaders=False),
            )
        )
        asked["q"] = anywhere
    thread = _searchText(request, "thread")
    if thread is not None:
        if not (thread.startswith("<") and thread.endswith(">")):
            raise APIError(400, "thread must be a message id, <...>")
        keys.append(
            searching.Or(
                searching.Header("message-id", thread),
                searching.Or(
                    searching.Header("references", thread),
                    searching.Header("in-reply-to", thread),
                ),
            )
        )
        asked["thread"] = thread
    since = _searchDate(request, "since")
    if since is not None:
        keys.append(searching.Sent("SINCE", since))
        asked["since"] = since.isoformat()
    until = _searchDate(request, "until")
    if until is not None:
        keys.append(searching.Sent("BEFORE", until + timedelta(days=1)))
        asked["until"] = until.isoformat()
    if not keys:
        raise APIError(
            400, "search for something: from, to, subject, body, q, thread, dates"
        )
    return (keys[0] if len(keys) == 1 else searching.And(tuple(keys))), asked


async def _listed(
    webmail: Webmail, account: str, folder: str, page: Sequence[MessageInfo]
) -> list[dict[str, Any]]:
    """The list entries of C{page}'s messages (header sections only)."""
    mail = webmail.store.mail
    # One lookup for the page; a message expunged meanwhile has none.
    found = await mail.openMessages(account, folder, [r.uid for r in page])
    bodies = [found.get(row.uid) for row in page]
    summaries = await webmail.inThread(_summaries, bodies)
    return [_summaryJSON(r, s) for r, s in zip(page, summaries, strict=True)]


class SearchEndpoint(Endpoint):
    """
    C{GET /api/v1/search?folder=INBOX&from=bob&subject=crepes&since=
    2026-01-01&until=2026-12-31&body=noon&offset=0&limit=50}: the
    folder's matching messages, newest first, paged as
    C{/api/v1/messages} pages a folder (same members, plus C{search}).
    The matching is IMAP SEARCH's (L{appnet.mail.imap.search}), in
    batches in a worker thread: only the header section is read unless
    C{body} or C{q} asks for the text.
    """

    async def GET(self, request: Request) -> bytes:
        account = _session(request).account
        folder = _folderArgument(request)
        offset = _number(request, "offset", 0, 0, 10**9)
        limit = _number(request, "limit", PAGE_SIZE, 1, MAX_PAGE)
        criterion, asked = searchCriterion(request)
        webmail = self.webmail
        mail = webmail.store.mail
        info = await mail.folder(account, folder)
        rows = list(await mail.listMessages(account, info.name))
        limits = searching.Limits(len(rows), rows[-1].uid if rows else 0)
        found: list[searching.Candidate] = []
        size = searching.BATCH[criterion.needs]
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            bodies = await mail.openMessages(
                account, info.name, [row.uid for row in batch]
            )
            candidates = [
                searching.Candidate(start + i + 1, row, bodies.get(row.uid))
                for i, row in enumerate(batch)
                if row.uid in bodies
            ]
            found += await webmail.heavy(
                searching.evaluate, criterion, candidates, limits
            )
        matches = sorted(
            (c.info for c in found), key=lambda m: (m.internalDate, m.uid), reverse=True
        )
        page = matches[offset : offset + limit]
        webmail.status.increment("webmail", "searches")
        return _json(
            request,
            {
                "folder": info.name,
                "search": asked,
                "total": len(matches),
                "unseen": sum(1 for m in matches if "\\Seen" not in m.flags),
                "offset": offset,
                "limit": limit,
                "messages": await _listed(webmail, account, info.name, page),
            },
        )


async def _stored(
    webmail: Webmail, account: str, folder: str, uid: int
) -> tuple[MessageInfo, MessageBody]:
    mail = webmail.store.mail
    rows = await mail.listMessages(account, folder, [uid])
    if not rows:
        raise NoSuchMessage(folder, uid)
    return rows[0], await mail.openMessage(account, folder, uid)


#: What the reader is told about a message the parser gives up on.
UNPARSABLE = "this message could not be parsed; download the original"


def _readForDisplay(
    body: MessageBody, limit: int, images: bool, folder: str, uid: int
) -> ParsedMessage:
    data = readAll(body, limit)
    if data is None:
        with body.open() as f:
            return parseHeadersOnly(
                headerSection(f), problem="this message is too large to show here"
            )

    def partURL(number: int) -> str:
        return _messageURL("attachment", folder, uid, part=number, inline=1)

    try:
        return parseMessage(data, images=images, partURL=partURL)
    except RecursionError:
        # The standard library's parser recurses per nesting level; such a
        # message is still listed and downloadable. Expected with hostile
        # input, so one line, not a traceback thousands of frames long.
        _log.warn(
            "Message {uid} in {folder} nests too deeply to parse",
            uid=uid,
            folder=folder,
        )
    except Exception:
        _log.failure("Cannot parse message {uid} in {folder}", uid=uid, folder=folder)
    return parseHeadersOnly(headOf(data), tooLarge=False, problem=UNPARSABLE)


class MessageEndpoint(Endpoint):
    """
    C{GET /api/v1/message?folder=INBOX&uid=7[&images=1]}: one message,
    parsed: headers, its text, its HTML sanitised (remote images always
    removed, the message's own images only with C{images=1}), and its
    attachments with download URLs.
    """

    async def GET(self, request: Request) -> bytes:
        account = _session(request).account
        folder = _folderArgument(request)
        uid = _number(request, "uid", None, 1, MAX_UID)
        images = _flag(request, "images")
        webmail = self.webmail
        row, body = await _stored(webmail, account, folder, uid)
        parsed: ParsedMessage = await webmail.heavy(
            _readForDisplay, body, webmail.parseLimit, images, folder, uid
        )
        webmail.status.increment("webmail", "read")
        addresses = parsed.addresses
        value: dict[str, Any] = {
            "folder": folder,
            "uid": uid,
            "size": row.size,
            "flags": sorted(row.flags),
            "internalDate": row.internalDate,
            "date": parsed.date,
            "subject": parsed.headers.get("subject", ""),
            "dateText": parsed.headers.get("date", ""),
            "messageId": parsed.headers.get("messageId", ""),
            "from": addressList(addresses["from"]),
            "to": addressList(addresses["to"]),
            "cc": addressList(addresses["cc"]),
            "replyTo": addressList(addresses["replyTo"]),
            "text": parsed.text,
            "html": parsed.html,
            "blockedImages": {
                "remote": parsed.blockedRemote,
                "inline": parsed.blockedInline,
            },
            "attachments": [
                _attachmentJSON(folder, uid, a) for a in parsed.attachments
            ],
            "raw": _messageURL("raw", folder, uid),
            "tooLarge": parsed.tooLarge,
            "problem": parsed.problem,
        }
        return _json(request, value)


def _attachmentJSON(folder: str, uid: int, a: AttachmentInfo) -> dict[str, Any]:
    return {
        "part": a.part,
        "filename": a.filename,
        "contentType": a.contentType,
        "size": a.size,
        "contentId": a.contentId,
        "inline": a.inline,
        "url": _messageURL("attachment", folder, uid, part=a.part),
    }


def _downloadHeaders(request: Request, contentType: bytes, disposition: bytes) -> None:
    request.setHeader(b"content-type", contentType)
    request.setHeader(b"content-disposition", disposition)
    request.setHeader(b"content-security-policy", DOWNLOAD_CSP)
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"cache-control", b"private, no-store")


class AttachmentEndpoint(Endpoint):
    """
    C{GET /api/v1/attachment?folder=INBOX&uid=7&part=2[&inline=1]}: one
    part, decoded, as a download (C{Content-Disposition: attachment} with
    a safe file name). With C{inline=1}, a PNG, GIF, JPEG or WebP image is
    served for display (the page's "show images").
    """

    async def GET(self, request: Request) -> bytes:
        account = _session(request).account
        folder = _folderArgument(request)
        uid = _number(request, "uid", None, 1, MAX_UID)
        part = _number(request, "part", None, 1, 10**6)
        inline = _flag(request, "inline")
        webmail = self.webmail
        _, body = await _stored(webmail, account, folder, uid)

        def extract() -> tuple[AttachmentInfo, bytes] | None:
            data = readAll(body, webmail.parseLimit)
            if data is None:
                raise APIError(413, "the message is too large to take apart")
            try:
                return extractPart(data, part)
            except Exception:
                raise APIError(422, UNPARSABLE) from None

        found = await webmail.heavy(extract)
        if found is None:
            raise APIError(404, "no such part")
        info, content = found
        if inline and info.contentType not in INLINE_IMAGES:
            raise APIError(415, "only PNG, GIF, JPEG and WebP images are shown inline")
        webmail.status.increment("webmail", "downloads")
        _downloadHeaders(
            request,
            info.contentType.encode("ascii"),
            contentDisposition("inline" if inline else "attachment", info.filename),
        )
        return content


class RawEndpoint(Endpoint):
    """
    C{GET /api/v1/raw?folder=INBOX&uid=7}: the stored message as an
    C{.eml} download, streamed from its file.
    """

    async def GET(self, request: Request) -> Streamed:
        account = _session(request).account
        folder = _folderArgument(request)
        uid = _number(request, "uid", None, 1, MAX_UID)
        _, body = await _stored(self.webmail, account, folder, uid)
        f = await self.webmail.inThread(body.open)
        _downloadHeaders(
            request,
            b"message/rfc822",
            contentDisposition("attachment", f"message-{uid}.eml"),
        )
        return Streamed(f, body.size)


class MoveEndpoint(Endpoint):
    """
    C{POST /api/v1/move} with C{{"folder", "uids", "to"}}: move messages
    to another folder of the account.
    """

    async def POST(self, request: Request) -> bytes:
        account = _session(request).account
        body = readJSON(request.content)
        folder = _folderName(body.get("folder", INBOX), "folder")
        target = _folderName(body.get("to"), "to")
        uids = _uids(body.get("uids"))
        mail = self.webmail.store.mail
        source = await mail.folder(account, folder)
        dest = await mail.folder(account, target)
        if source.name == dest.name:
            raise APIError(400, "the messages are in that folder already")
        moved = await mail.move(account, source.name, uids, dest.name)
        self.webmail.status.increment("webmail", "moved", len(moved))
        return _json(
            request,
            {"to": dest.name, "uids": {str(k): v for k, v in sorted(moved.items())}},
        )


class DeleteEndpoint(Endpoint):
    """
    C{POST /api/v1/delete} with C{{"folder", "uids"}}: move the messages
    to C{Trash} when the account has that folder (and they are not in it
    already); otherwise flag them C{\\Deleted} and expunge them, for good.
    """

    async def POST(self, request: Request) -> bytes:
        account = _session(request).account
        body = readJSON(request.content)
        folder = _folderName(body.get("folder", INBOX), "folder")
        uids = _uids(body.get("uids"))
        mail = self.webmail.store.mail
        source = await mail.folder(account, folder)
        names = {f.name for f in await mail.listFolders(account)}
        status = self.webmail.status
        if TRASH in names and source.name != TRASH:
            moved = await mail.move(account, source.name, uids, TRASH)
            status.increment("webmail", "deleted", len(moved))
            return _json(
                request,
                {
                    "action": "moved",
                    "to": TRASH,
                    "uids": {str(k): v for k, v in sorted(moved.items())},
                },
            )
        await mail.setFlags(account, source.name, uids, frozenset({"\\Deleted"}), "add")
        removed = await mail.expunge(account, source.name, uids)
        status.increment("webmail", "deleted", len(removed))
        return _json(request, {"action": "expunged", "uids": sorted(removed)})


class FlagsEndpoint(Endpoint):
    """
    C{POST /api/v1/flags} with C{{"folder", "uids", "add", "remove"}}:
    set or clear C{\\Seen}, C{\\Flagged}, C{\\Answered}, C{\\Draft} and
    keywords.
    """

    async def POST(self, request: Request) -> bytes:
        account = _session(request).account
        body = readJSON(request.content)
        folder = _folderName(body.get("folder", INBOX), "folder")
        uids = _uids(body.get("uids"))
        add = _flagList(body.get("add"), "add")
        remove = _flagList(body.get("remove"), "remove")
        if not add and not remove:
            raise APIError(400, "name flags to add or remove")
        mail = self.webmail.store.mail
        source = await mail.folder(account, folder)
        if add:
            await mail.setFlags(account, source.name, uids, add, "add")
        if remove:
            await mail.setFlags(account, source.name, uids, remove, "remove")
        rows = await mail.listMessages(account, source.name, uids)
        return _json(
            request,
            {"messages": [{"uid": r.uid, "flags": sorted(r.flags)} for r in rows]},
        )
