"""
Reading what the browser sends: the message to send (a C{multipart/
form-data} upload from the page, or JSON from scripts) and the small JSON
bodies of the other API calls.

The upload is parsed here, in a thread, by the C{email} package (a
multipart form is MIME), not by Twisted: Twisted would parse it on the
reactor thread into C{request.args} and drop every file name, so
L{appnet.web.server.WebRequest} leaves C{multipart/form-data} bodies
alone. Its size is bounded by C{[http] max_body_size}, and the message
made from it by C{[mail] max_message_size}, as for SMTP.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import Any, BinaryIO

from appnet.mail.compose import Attachment
from appnet.webmail.errors import APIError
from appnet.webmail.sending import Draft, MessageRef

__all__ = ["MAX_ATTACHMENTS", "draftFromJSON", "draftFromMultipart", "readJSON"]

#: Files one message may carry.
MAX_ATTACHMENTS = 100

#: Largest JSON body of the calls other than C{send}.
MAX_JSON = 64 * 1024

_FIELDS = ("to", "cc", "bcc", "subject", "text")


def readJSON(content: BinaryIO | None, limit: int = MAX_JSON) -> dict[str, Any]:
    """
    A request's JSON object body.

    @raise APIError: 400 if it is missing, too large, or not an object.
    """
    if content is None:
        raise APIError(400, "a JSON body is required")
    content.seek(0)
    data = content.read(limit + 1)
    if len(data) > limit:
        raise APIError(413, f"JSON body over {limit} bytes")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: arrays or objects nested past the parser's
        # recursion limit ("[[[[...").
        raise APIError(400, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise APIError(400, "the body must be a JSON object")
    return value


def _ref(value: Any, name: str) -> MessageRef | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise APIError(400, f"{name} must be an object with folder and uid")
    folder, uid = value.get("folder"), value.get("uid")
    if isinstance(uid, str) and uid.isascii() and uid.isdigit() and len(uid) < 20:
        uid = int(uid)
    if not isinstance(folder, str) or not folder or isinstance(uid, bool):
        raise APIError(400, f"{name}.folder must be a folder name")
    if not isinstance(uid, int) or not 0 < uid < 2**32:
        # UIDs are 32-bit (RFC 3501); a larger one would not fit the store.
        raise APIError(400, f"{name}.uid must be a positive integer")
    return MessageRef(folder, uid)


def _addresses(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise APIError(400, f"{name} must be a string or a list of strings")


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise APIError(400, f"{name} must be a string")
    return value


def draftFromJSON(content: BinaryIO) -> Draft:
    """
    A draft from C{application/json}: C{to}, C{cc}, C{bcc} (a string or
    a list), C{subject}, C{text}, C{reply} / C{forward} (C{{"folder":
    ..., "uid": ...}}), C{attachments} (C{[{"filename", "contentType",
    "data"}]}, data in base64). Blocking (CPU).

    @raise APIError: 400 naming the member at fault.
    """
    content.seek(0)
    try:
        value = json.loads(content.read())
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise APIError(400, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise APIError(400, "the body must be a JSON object")
    attachments = []
    files = value.get("attachments") or []
    if not isinstance(files, list) or len(files) > MAX_ATTACHMENTS:
        raise APIError(400, f"attachments must be a list of at most {MAX_ATTACHMENTS}")
    for i, item in enumerate(files):
        if not isinstance(item, dict):
            raise APIError(400, f"attachments[{i}] must be an object")
        filename = _text(item.get("filename"), f"attachments[{i}].filename")
        contentType = _text(item.get("contentType"), f"attachments[{i}].contentType")
        try:
            data = base64.b64decode(_text(item.get("data"), "data"), validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, f"attachments[{i}].data is not base64") from None
        attachments.append(
            Attachment(filename or f"attachment-{i + 1}", data, contentType or None)
        )
    return Draft(
        to=_addresses(value.get("to"), "to"),
        cc=_addresses(value.get("cc"), "cc"),
        bcc=_addresses(value.get("bcc"), "bcc"),
        subject=_text(value.get("subject"), "subject"),
        text=_text(value.get("text"), "text"),
        attachments=tuple(attachments),
        reply=_ref(value.get("reply"), "reply"),
        forward=_ref(value.get("forward"), "forward"),
    )


def _formText(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        data = str(part.get_payload()).encode("utf-8", "surrogateescape")
    return data.decode("utf-8", "replace")


def draftFromMultipart(content: BinaryIO, contentType: bytes) -> Draft:
    """
    A draft from the page's C{multipart/form-data} upload: fields C{to},
    C{cc}, C{bcc}, C{subject}, C{text}, C{reply.folder}, C{reply.uid},
    C{forward.folder}, C{forward.uid}, and files in C{attachment}.
    Blocking (reads the body and parses it).

    @raise APIError: 400 if it is not a well-formed form.
    """
    content.seek(0)
    head = b"MIME-Version: 1.0\r\nContent-Type: " + contentType + b"\r\n\r\n"
    message = BytesParser(policy=policy.HTTP).parsebytes(head + content.read())
    if not message.is_multipart() or not message.get_boundary():
        raise APIError(400, "the form is not valid multipart/form-data")
    fields: dict[str, list[str]] = {}
    attachments: list[Attachment] = []
    payload = message.get_payload()
    assert isinstance(payload, list)
    for part in payload:
        if not isinstance(part, Message):
            continue
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = part.get_param("filename", header="content-disposition")
        if isinstance(filename, tuple):
            filename = filename[2]
        if name == "attachment" or filename is not None:
            data = part.get_payload(decode=True)
            if not isinstance(data, bytes):
                data = b""
            if not filename and not data:
                continue  # An empty file input.
            if len(attachments) >= MAX_ATTACHMENTS:
                raise APIError(400, f"at most {MAX_ATTACHMENTS} attachments")
            text = str(filename or f"attachment-{len(attachments) + 1}")
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            declared = part.get_content_type() if part.get("content-type") else None
            attachments.append(Attachment(text, data, declared))
        else:
            fields.setdefault(name, []).append(_formText(part))

    def one(name: str) -> str | None:
        values = fields.get(name)
        return values[0] if values else None

    def ref(prefix: str) -> MessageRef | None:
        folder, uid = one(prefix + ".folder"), one(prefix + ".uid")
        if not folder and not uid:
            return None
        return _ref({"folder": folder, "uid": uid}, prefix)

    return Draft(
        to=tuple(fields.get("to", [])),
        cc=tuple(fields.get("cc", [])),
        bcc=tuple(fields.get("bcc", [])),
        subject=one("subject") or "",
        text=(one("text") or "").replace("\r\n", "\n"),
        attachments=tuple(attachments),
        reply=ref("reply"),
        forward=ref("forward"),
    )
