"""
The API's composing endpoints: drafts (save, reopen, discard) and send.
"""

from __future__ import annotations

from email import policy as emailPolicy
from email.parser import BytesParser
from typing import Any
from urllib.parse import quote, unquote

from twisted.web.server import Request

from appnet.errors import NoSuchFolder
from appnet.listen import hostOf
from appnet.mail.imap.account import IMAPAccount
from appnet.mail.imap.errors import CommandFailed
from appnet.store.interfaces import MessageBody
from appnet.webmail.api.common import (
    DRAFTS,
    MAX_UID,
    Endpoint,
    _folderArgument,
    _json,
    _number,
    _session,
    argument,
)
from appnet.webmail.api.folders import allFolders
from appnet.webmail.api.messages import _readForDisplay, _stored
from appnet.webmail.errors import APIError, SendRefused
from appnet.webmail.forms import draftFromJSON, draftFromMultipart
from appnet.webmail.reading import ParsedMessage, readAll
from appnet.webmail.sending import (
    SENT,
    buildMessage,
    forwardSubject,
    replyRecipients,
    replySubject,
)
from appnet.webmail.sending import (
    quote as quoteReply,
)
from appnet.webmail.service import Webmail

__all__ = ["DRAFT_REFS", "DraftEndpoint", "DraftsEndpoint", "SendEndpoint"]

#: Fields of a saved draft naming the message it answers or forwards
#: (C{FOLDER UID}, the folder percent-encoded), so that it threads when
#: sent after being reopened.
DRAFT_REFS = {"reply": "X-Appnet-Reply", "forward": "X-Appnet-Forward"}


class DraftEndpoint(Endpoint):
    """
    C{GET /api/v1/draft?mode=reply|all|forward|edit&folder=INBOX&uid=7}:
    the fields of a reply (to the sender), a reply to all, or a forward,
    filled in from the original, for the page's compose form; with
    C{edit}, a saved draft's own fields (409 for a message not flagged
    C{\\Draft}).
    """

    async def GET(self, request: Request) -> bytes:
        session = _session(request)
        folder = _folderArgument(request)
        uid = _number(request, "uid", None, 1, MAX_UID)
        mode = argument(request, "mode") or "reply"
        if mode not in ("reply", "all", "forward", "edit"):
            raise APIError(400, "mode must be reply, all, forward or edit")
        webmail = self.webmail
        row, body = await _stored(webmail, session.account, folder, uid)
        if mode == "edit":
            if "\\Draft" not in row.flags:
                raise APIError(409, "only a draft can be edited")
            fields = await webmail.heavy(_draftFields, body, webmail.parseLimit)
            for kind in DRAFT_REFS:
                fields[kind] = await _stillThere(webmail, session.account, fields[kind])
            fields["draft"] = {"folder": folder, "uid": uid}
            return _json(request, fields)
        parsed: ParsedMessage = await webmail.heavy(
            _readForDisplay, body, webmail.parseLimit, False, folder, uid
        )
        ref = {"folder": folder, "uid": uid}
        subject = parsed.headers.get("subject", "")
        if mode == "forward":
            value: dict[str, Any] = {
                "to": [],
                "cc": [],
                "subject": forwardSubject(subject),
                "text": "",
                "reply": None,
                "forward": ref,
            }
        else:
            to, cc = replyRecipients(parsed, session.account, mode == "all")
            value = {
                "to": to,
                "cc": cc,
                "subject": replySubject(subject),
                "text": "\n\n" + quoteReply(parsed),
                "reply": ref,
                "forward": None,
            }
        return _json(request, value)


def _draftFields(body: MessageBody, limit: int) -> dict[str, Any]:
    """A saved draft's fields for the compose form. Blocking."""
    data = readAll(body, limit)
    if data is None:
        raise APIError(413, "the draft is too large to open")
    message = BytesParser(policy=emailPolicy.default).parsebytes(data)

    def field(name: str) -> str:
        try:
            value = message.get(name)
        except Exception:
            return ""
        text = "" if value is None else " ".join(str(value).split())
        return "" if text == "undisclosed-recipients:;" else text

    text = ""
    try:
        part = message.get_body(("plain",))
        if part is not None:
            text = str(part.get_content()).replace("\r\n", "\n")
    except Exception:
        text = ""
    refs: dict[str, Any] = {}
    for kind, name in DRAFT_REFS.items():
        folder, _, uid = field(name).partition(" ")
        refs[kind] = None
        if folder and uid.isdigit() and 0 < int(uid) <= MAX_UID:
            refs[kind] = {"folder": unquote(folder), "uid": int(uid)}
    return {
        "to": [field("to")] if field("to") else [],
        "cc": [field("cc")] if field("cc") else [],
        "bcc": [field("bcc")] if field("bcc") else [],
        "subject": field("subject"),
        "text": text,
        **refs,
    }


async def _stillThere(
    webmail: Webmail, account: str, ref: dict[str, Any] | None
) -> dict[str, Any] | None:
    """C{ref} if the message it names still exists, else C{None}."""
    if ref is None:
        return None
    try:
        rows = await webmail.store.mail.listMessages(
            account, ref["folder"], [ref["uid"]]
        )
    except NoSuchFolder:
        return None
    return ref if rows else None


async def _dropDraft(webmail: Webmail, account: str, uid: int) -> list[int]:
    """Expunge draft C{uid} of C{Drafts}, if it is flagged C{\\Draft}."""
    mail = webmail.store.mail
    rows = await mail.listMessages(account, DRAFTS, [uid])
    if not rows or "\\Draft" not in rows[0].flags:
        return []
    return list(await mail.expunge(account, DRAFTS, [uid]))


class DraftsEndpoint(Endpoint):
    """
    C{POST /api/v1/drafts[?replaces=UID]} with the compose form (as
    C{send} takes it): save the message, unsent, in C{Drafts} flagged
    C{\\Draft} and C{\\Seen}, through IMAP's APPEND (quota applies); the
    draft it C{replaces} is then removed. C{DELETE
    /api/v1/drafts?uid=UID} removes a saved draft for good. Reopen one
    with C{GET /api/v1/draft?mode=edit&folder=Drafts&uid=UID}.
    """

    async def POST(self, request: Request) -> bytes:
        account = _session(request).account
        replaces = _number(request, "replaces", 0, 0, MAX_UID)
        webmail = self.webmail
        contentType = request.getHeader(b"content-type") or b""
        kind = contentType.split(b";")[0].strip().lower()
        if request.content is None:
            raise APIError(400, "nothing to save")
        if kind == b"multipart/form-data":
            draft = await webmail.heavy(
                draftFromMultipart, request.content, contentType
            )
        elif kind == b"application/json":
            draft = await webmail.heavy(draftFromJSON, request.content)
        else:
            raise APIError(415, "send multipart/form-data or application/json")
        now = webmail.clock.seconds()

        refs = b"".join(
            b"%s: %s %d\r\n"
            % (name.encode(), quote(ref.folder, safe="").encode(), ref.uid)
            for name, ref in (
                (DRAFT_REFS["reply"], draft.reply),
                (DRAFT_REFS["forward"], draft.forward),
            )
            if ref is not None
        )

        def build() -> bytes:
            try:
                _, saved = buildMessage(
                    sender=account,
                    to=[" ".join(t.split()) for t in draft.to if t.strip()],
                    cc=[" ".join(t.split()) for t in draft.cc if t.strip()],
                    bcc=[" ".join(t.split()) for t in draft.bcc if t.strip()],
                    subject=draft.subject,
                    text=draft.text,
                    attachments=draft.attachments,
                    when=now,
                )
            except Exception:
                raise APIError(400, "the draft's address fields do not parse") from None
            return refs + saved

        data: bytes = await webmail.heavy(build)
        if len(data) > webmail.submitter.maxMessageSize:
            raise APIError(413, "draft too large")
        await allFolders(webmail, account)
        user = await webmail.store.users.getUser(account)
        quota = webmail.submitter.defaultQuota
        if user is not None and user.quota is not None:
            quota = user.quota
        mail = webmail.store.mail
        staged = mail.stage()
        try:
            staged.write(data)
            _, uid = await IMAPAccount(account, mail, quota or None).append(
                DRAFTS, staged, frozenset({"\\Draft", "\\Seen"}), now
            )
        except CommandFailed as e:
            code = 507 if e.code == "OVERQUOTA" else 409
            raise APIError(code, e.text) from None
        finally:
            staged.discard()
        replaced = await _dropDraft(webmail, account, replaces) if replaces else []
        webmail.status.increment("webmail", "drafts_saved")
        return _json(
            request,
            {"folder": DRAFTS, "uid": uid, "size": len(data), "replaced": replaced},
            201,
        )

    async def DELETE(self, request: Request) -> bytes:
        account = _session(request).account
        uid = _number(request, "uid", None, 1, MAX_UID)
        removed = await _dropDraft(self.webmail, account, uid)
        if not removed:
            raise APIError(404, "no such draft")
        return _json(request, {"deleted": removed})


class SendEndpoint(Endpoint):
    """
    C{POST /api/v1/send}: send a message (C{multipart/form-data} from the
    page, or JSON); see L{appnet.webmail.sending}.
    """

    async def POST(self, request: Request) -> bytes:
        session = _session(request)
        webmail = self.webmail
        contentType = request.getHeader(b"content-type") or b""
        kind = contentType.split(b";")[0].strip().lower()
        if request.content is None:
            raise APIError(400, "nothing to send")
        if kind == b"multipart/form-data":
            draft = await webmail.heavy(
                draftFromMultipart, request.content, contentType
            )
        elif kind == b"application/json":
            draft = await webmail.heavy(draftFromJSON, request.content)
        else:
            raise APIError(415, "send multipart/form-data or application/json")
        try:
            sent = await webmail.submitter.send(
                session.account,
                draft,
                client=hostOf(request.getClientAddress()),
                secure=request.isSecure(),
                now=webmail.clock.seconds(),
            )
        except SendRefused:
            webmail.status.increment("webmail", "send_refused")
            raise
        return _json(
            request,
            {
                "id": sent.id,
                "messageId": sent.messageId,
                "delivered": list(sent.local),
                "queued": list(sent.remote),
                "queueId": sent.queueId,
                "size": sent.size,
                "sent": (
                    {"folder": SENT, "uid": sent.sentUid}
                    if sent.sentUid is not None
                    else None
                ),
            },
        )
