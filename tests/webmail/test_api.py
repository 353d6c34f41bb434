"""
Tests for the webmail's JSON API and page over the real site in memory
(L{tests.web.helpers.harness}): every endpoint, its errors, the admin
parts, and CSRF protection on every state change.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from appnet.auth import verifyPassword
from appnet.mail.compose import Attachment, compose
from appnet.store.interfaces import INBOX, DeliveryTarget
from appnet.webmail.api import TRASH
from appnet.webmail.api import folders as folderAPI
from tests.web.helpers import Harness, Response, harness, raw

ALICE = "alice@example.org"
BOB = "bob@example.org"
ADMIN = "admin@example.org"
PASSWORD = "pw-alice-123"

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63640000000600020001e221bc330000000049454e44ae426082"
)


def multipart(
    fields: list[tuple[str, str]], files: list[tuple[str, str, str, bytes]]
) -> tuple[str, bytes]:
    """A multipart/form-data body as a browser sends it."""
    boundary = "----formboundary7MA4YWxk"
    chunks: list[bytes] = []
    for name, value in fields:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
            f"\r\n\r\n{value}\r\n".encode()
        )
    for name, filename, contentType, data in files:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}";'
            f' filename="{filename}"\r\nContent-Type: {contentType}\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(chunks)


class APITestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.web: Harness = harness(self, mail={"max_message_size": "1M"})
        users = self.web.store.users
        from appnet.auth import hashPassword

        for address, admin in ((ALICE, False), (BOB, False), (ADMIN, True)):
            self.successResultOf(
                users.addUser(address, hashPassword(PASSWORD, log2n=4), admin)
            )
        self.alice = self.session(ALICE)
        self.bob = self.session(BOB)
        self.admin = self.session(ADMIN)

    def session(self, account: str) -> dict[str, str]:
        token, session = self.successResultOf(self.web.web.sessions.create(account))
        return {"Cookie": f"appnet_session={token}", "X-CSRF-Token": session.csrfToken}

    def deliver(
        self, owner: str, data: bytes, folder: str = INBOX, date: float = 0
    ) -> int:
        mail = self.web.store.mail
        staged = mail.stage()
        staged.write(data)
        [uid] = self.successResultOf(
            mail.deliver(staged, [DeliveryTarget(owner, folder)], date or None)
        )
        return int(uid)

    def request(
        self,
        method: str,
        path: str,
        session: dict[str, str] | None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        allHeaders = dict(session or {})
        data = b""
        if isinstance(body, bytes):
            data = body
        elif body is not None:
            data = json.dumps(body).encode()
            allHeaders["Content-Type"] = "application/json"
        allHeaders.update(headers or {})
        return self.web.request(method, path, allHeaders, data)

    def json(self, response: Response, code: int = 200) -> Any:
        self.assertEqual(
            (response.status, response.header("content-type")),
            (code, "application/json"),
            response.body,
        )
        return json.loads(response.body)

    def get(self, path: str, session: dict[str, str] | None = None) -> Any:
        return self.json(self.request("GET", path, session or self.alice))

    def post(
        self,
        path: str,
        body: Any,
        session: dict[str, str] | None = None,
        code: int = 200,
    ) -> Any:
        return self.json(self.request("POST", path, session or self.alice, body), code)

    def flags(self, owner: str, folder: str = INBOX) -> dict[int, frozenset[str]]:
        rows = self.successResultOf(self.web.store.mail.listMessages(owner, folder))
        return {r.uid: r.flags for r in rows}

    def folderNames(self, owner: str) -> list[str]:
        return [
            f.name for f in self.successResultOf(self.web.store.mail.listFolders(owner))
        ]


def plain(
    subject: str, sender: str = "Bob <bob@example.org>", text: str = "hello"
) -> bytes:
    return (
        f"From: {sender}\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
        "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{subject.replace(' ', '')}@x>\r\n"
        f"\r\n{text}\r\n"
    ).encode()


class SessionTests(APITestCase):
    def test_noSession(self) -> None:
        """Without a session every endpoint but login answers JSON 401."""
        for path in ("/api/v1/folders", "/api/v1/messages", "/api/v1/users/x/password"):
            r = self.request("GET", path, None)
            self.assertEqual(self.json(r, 401), {"error": "login required"})

    def test_session(self) -> None:
        """The session endpoint names the account and its CSRF token."""
        value = self.get("/api/v1/session", self.admin)
        self.assertEqual(
            (value["account"], value["admin"], value["csrfToken"]),
            (ADMIN, True, self.admin["X-CSRF-Token"]),
        )

    def test_login(self) -> None:
        """A JSON login sets the session cookie and returns the token."""
        r = self.request(
            "POST", "/api/v1/login", None, {"username": ALICE, "password": PASSWORD}
        )
        value = self.json(r)
        self.assertEqual(value["account"], ALICE)
        [cookie] = r.headers["set-cookie"]
        self.assertIn("HttpOnly", cookie)
        headers = {"Cookie": cookie.split(";")[0], "X-CSRF-Token": value["csrfToken"]}
        self.assertEqual(self.get("/api/v1/session", headers)["account"], ALICE)
        self.assertEqual(self.web.status.counter("http", "logins"), 1)

    def test_loginFailed(self) -> None:
        """A wrong password is a JSON 401, counted, with no cookie."""
        connection = self.web.connect()
        connection.send(
            raw(
                "POST",
                "/api/v1/login",
                {"Content-Type": "application/json"},
                json.dumps({"username": ALICE, "password": "wrong-one"}).encode(),
            )
        )
        self.web.clock.advance(5)
        [r] = connection.responses()
        self.assertEqual(self.json(r, 401), {"error": "wrong user name or password"})
        self.assertNotIn("set-cookie", r.headers)
        self.assertEqual(self.web.status.counter("http", "login_failures"), 1)

    def test_unknownEndpoint(self) -> None:
        """Unknown API paths are a JSON 404, with or without a session."""
        self.json(self.request("GET", "/api/v1/nothing", self.alice), 404)
        self.json(self.request("GET", "/api/v2/folders", None), 404)
        self.json(self.request("GET", "/api", None), 404)

    def test_methodNotAllowed(self) -> None:
        """A wrong method is a JSON 405 with Allow."""
        r = self.request("PUT", "/api/v1/folders", self.alice)
        self.json(r, 405)
        self.assertEqual(r.header("allow"), "GET, HEAD, POST")
        r = self.request("PUT", "/api/v1/folders/INBOX", self.alice)
        self.json(r, 405)
        self.assertEqual(r.header("allow"), "GET, HEAD, PATCH, DELETE")
        r = self.request("GET", "/api/v1/send", self.alice)
        self.json(r, 405)
        self.assertEqual(r.header("allow"), "POST")


class ReadingTests(APITestCase):
    def test_folders(self) -> None:
        """Folders come with counts and roles, INBOX first."""
        self.deliver(ALICE, plain("one"))
        value = self.get("/api/v1/folders")
        self.assertEqual(
            value["folders"][0],
            {
                "name": "INBOX",
                "role": "inbox",
                "special": True,
                "messages": 1,
                "unseen": 1,
                "size": len(plain("one")),
            },
        )
        self.assertEqual(
            value["folders"][-1],
            {
                "name": "Trash",
                "role": "trash",
                "special": True,
                "messages": 0,
                "unseen": 0,
                "size": 0,
            },
        )

    def test_foldersOfNewAccount(self) -> None:
        """
        A new account has its INBOX and, from its first webmail login, the
        special-use folders IMAP's first login makes (the same code).
        """
        self.assertNotIn("Drafts", self.folderNames(ALICE))
        folders = self.get("/api/v1/folders")["folders"]
        self.assertEqual(
            [(f["name"], f["role"]) for f in folders],
            [
                ("INBOX", "inbox"),
                ("Drafts", "drafts"),
                ("Junk", None),
                ("Sent", "sent"),
                ("Trash", "trash"),
            ],
        )
        self.assertEqual(
            self.folderNames(ALICE)[1:], ["Drafts", "Junk", "Sent", "Trash"]
        )

    def test_paging(self) -> None:
        """Messages are listed newest first, a page at a time."""
        for i in range(7):
            self.deliver(ALICE, plain(f"m{i}"), date=1_000_000 + i)
        value = self.get("/api/v1/messages?folder=INBOX&offset=2&limit=3")
        self.assertEqual((value["total"], value["offset"], value["limit"]), (7, 2, 3))
        self.assertEqual([m["subject"] for m in value["messages"]], ["m4", "m3", "m2"])
        first = value["messages"][0]
        self.assertEqual(first["from"], [{"name": "Bob", "address": BOB}])
        self.assertEqual(
            (first["uid"], first["flags"], first["attachments"]), (5, [], False)
        )
        self.assertEqual(
            self.get("/api/v1/messages?offset=6")["messages"][0]["subject"], "m0"
        )
        self.assertEqual(self.get("/api/v1/messages?offset=60")["messages"], [])

    def test_pagingBounds(self) -> None:
        """Offsets and limits outside their bounds are a 400."""
        for query in ("limit=0", "limit=201", "offset=-1", "offset=x", "limit=1.5"):
            r = self.request("GET", "/api/v1/messages?" + query, self.alice)
            self.json(r, 400)

    def test_numbersNotASCIIDigits(self) -> None:
        """
        Digits int() refuses (superscripts, thousands of them) and digits
        that are not ASCII are a 400, not a logged 500 (found by
        tests.robustness.test_http).
        """
        for query in ("limit=%C2%B2", "offset=%D9%A3", "offset=1" + "0" * 4400):
            r = self.request("GET", "/api/v1/messages?" + query, self.alice)
            self.json(r, 400)
        r = self.request("GET", "/api/v1/message?uid=%C2%B2", self.alice)
        self.json(r, 400)

    def test_noFolder(self) -> None:
        """A folder that does not exist is a 404."""
        self.json(self.request("GET", "/api/v1/messages?folder=Nope", self.alice), 404)

    def test_otherAccountsInvisible(self) -> None:
        """One account cannot read another's messages by UID."""
        uid = self.deliver(BOB, plain("secret"))
        self.json(self.request("GET", f"/api/v1/message?uid={uid}", self.alice), 404)
        self.assertEqual(self.get("/api/v1/messages")["total"], 0)

    def test_message(self) -> None:
        """
        A message comes parsed: headers, text, sanitised HTML with its
        images blocked, attachments with URLs; reading does not mark it
        seen.
        """
        message = compose(
            sender="Bob <bob@example.org>",
            to=[ALICE],
            subject="Report",
            text="plain version",
            html=(
                '<p>Hi<img src="https://tracker.example/x.gif"><img src="cid:chart">'
                "<script>alert(1)</script></p>"
            ),
            attachments=[Attachment("report.pdf", b"%PDF-1.4\n", "application/pdf")],
        )
        uid = self.deliver(ALICE, bytes(message))
        value = self.get(f"/api/v1/message?folder=INBOX&uid={uid}")
        self.assertEqual(value["subject"], "Report")
        self.assertEqual(value["from"], [{"name": "Bob", "address": BOB}])
        self.assertEqual(value["text"], "plain version\n")
        self.assertEqual(value["html"], "<p>Hi</p>\n")
        self.assertEqual(value["blockedImages"], {"remote": 1, "inline": 0})
        [attachment] = value["attachments"]
        self.assertEqual(
            attachment["url"], f"/api/v1/attachment?folder=INBOX&uid={uid}&part=3"
        )
        self.assertEqual(value["raw"], f"/api/v1/raw?folder=INBOX&uid={uid}")
        self.assertEqual(self.flags(ALICE)[uid], frozenset())
        self.assertEqual(self.web.status.counter("webmail", "read"), 1)

    def test_messageNotFound(self) -> None:
        """A missing UID is a 404; a missing or bad UID argument a 400."""
        self.json(self.request("GET", "/api/v1/message?uid=9", self.alice), 404)
        self.json(self.request("GET", "/api/v1/message", self.alice), 400)
        self.json(self.request("GET", "/api/v1/message?uid=abc", self.alice), 400)

    def test_inlineImages(self) -> None:
        """
        Images the message carries show only with images=1, as URLs of
        this server, and download inline as images.
        """
        data = (
            b"From: bob@example.org\r\nSubject: pic\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/related; boundary="R"\r\n\r\n'
            b"--R\r\nContent-Type: text/html\r\n\r\n"
            b'<p><img src="cid:dot@x" alt="dot"></p>\r\n'
            b"--R\r\nContent-Type: image/png\r\nContent-ID: <dot@x>\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + __import__("base64").encodebytes(PNG).replace(b"\n", b"\r\n")
            + b"--R--\r\n"
        )
        uid = self.deliver(ALICE, data)
        hidden = self.get(f"/api/v1/message?uid={uid}")
        self.assertEqual(
            (hidden["html"], hidden["blockedImages"]["inline"]), ("<p>[dot]</p>", 1)
        )
        shown = self.get(f"/api/v1/message?uid={uid}&images=1")
        url = f"/api/v1/attachment?folder=INBOX&amp;uid={uid}&amp;part=2&amp;inline=1"
        self.assertEqual(shown["html"], f'<p><img src="{url}" alt="dot"></p>')
        r = self.request("GET", url.replace("&amp;", "&"), self.alice)
        self.assertEqual((r.status, r.body), (200, PNG))
        self.assertEqual(r.header("content-type"), "image/png")
        self.assertEqual(
            r.header("content-disposition"), 'inline; filename="part-2.png"'
        )

    def test_attachmentDownload(self) -> None:
        """
        A part downloads decoded, as an attachment with a safe name,
        nosniff and a sandboxing policy.
        """
        message = compose(
            sender=BOB,
            to=[ALICE],
            subject="s",
            text="t",
            attachments=[
                Attachment(
                    "../x<script>.html", b"<script>alert(1)</script>", "text/html"
                )
            ],
        )
        uid = self.deliver(ALICE, bytes(message))
        r = self.request("GET", f"/api/v1/attachment?uid={uid}&part=2", self.alice)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"<script>alert(1)</script>")
        self.assertEqual(
            r.header("content-disposition"), 'attachment; filename="x_script_.html"'
        )
        self.assertEqual(r.header("x-content-type-options"), "nosniff")
        self.assertTrue(
            (r.header("content-security-policy") or "").startswith("sandbox")
        )
        inline = self.request(
            "GET", f"/api/v1/attachment?uid={uid}&part=2&inline=1", self.alice
        )
        self.json(inline, 415)
        self.json(
            self.request("GET", f"/api/v1/attachment?uid={uid}&part=9", self.alice), 404
        )

    def test_raw(self) -> None:
        """The original downloads byte for byte as message/rfc822."""
        data = plain("raw") + b"x" * 100_000
        uid = self.deliver(ALICE, data)
        r = self.request("GET", f"/api/v1/raw?uid={uid}", self.alice)
        self.assertEqual((r.status, r.body), (200, data))
        self.assertEqual(r.header("content-type"), "message/rfc822")
        self.assertEqual(
            r.header("content-disposition"), f'attachment; filename="message-{uid}.eml"'
        )

    def test_tooLarge(self) -> None:
        """A message over the parse limit is shown from its headers."""
        big = b"Subject: huge\r\nFrom: bob@example.org\r\n\r\n" + b"x" * (1024 * 1024)
        uid = self.deliver(ALICE, big)
        value = self.get(f"/api/v1/message?uid={uid}")
        self.assertEqual(
            (value["subject"], value["tooLarge"], value["text"]), ("huge", True, None)
        )

    def test_draftReply(self) -> None:
        """A reply draft is addressed, prefixed and quoted."""
        uid = self.deliver(ALICE, plain("Lunch?", text="Crepes?"))
        value = self.get(f"/api/v1/draft?mode=reply&uid={uid}")
        self.assertEqual(value["to"], ["Bob <bob@example.org>"])
        self.assertEqual(value["subject"], "Re: Lunch?")
        self.assertTrue(value["text"].endswith("wrote:\n> Crepes?\n"))
        self.assertEqual(value["reply"], {"folder": "INBOX", "uid": uid})

    def test_draftForward(self) -> None:
        """A forward draft names the original to attach."""
        uid = self.deliver(ALICE, plain("Lunch?"))
        value = self.get(f"/api/v1/draft?mode=forward&uid={uid}")
        self.assertEqual((value["to"], value["subject"]), ([], "Fwd: Lunch?"))
        self.assertEqual(value["forward"], {"folder": "INBOX", "uid": uid})
        self.json(
            self.request("GET", f"/api/v1/draft?mode=x&uid={uid}", self.alice), 400
        )


class ChangeTests(APITestCase):
    def test_sendJSON(self) -> None:
        """A JSON send delivers, queues, files a copy in Sent."""
        value = self.post(
            "/api/v1/send",
            {"to": [BOB, "zoe@remote.example"], "subject": "Hi", "text": "hello"},
        )
        self.assertEqual(
            (value["delivered"], value["queued"]), ([BOB], ["zoe@remote.example"])
        )
        self.assertEqual(value["sent"], {"folder": "Sent", "uid": 1})
        self.assertEqual(len(self.flags(BOB)), 1)
        self.assertEqual(self.web.status.counter("webmail", "sent"), 1)

    def test_sendMultipart(self) -> None:
        """The page's form upload sends text and files, names intact."""
        contentType, body = multipart(
            [("to", BOB), ("cc", ""), ("subject", "Files"), ("text", "see attached")],
            [
                ("attachment", "résumé.pdf", "application/pdf", b"%PDF\x00\xff"),
                ("attachment", "", "application/octet-stream", b""),
            ],
        )
        r = self.request(
            "POST", "/api/v1/send", self.alice, body, {"Content-Type": contentType}
        )
        self.assertEqual(self.json(r)["delivered"], [BOB])
        value = self.get("/api/v1/message?uid=1", self.bob)
        self.assertEqual(value["text"], "see attached\n")
        [attachment] = value["attachments"]
        self.assertEqual(
            (attachment["filename"], attachment["size"]), ("résumé.pdf", 6)
        )

    def test_sendRefused(self) -> None:
        """Refused recipients are listed; nothing is sent."""
        r = self.request(
            "POST",
            "/api/v1/send",
            self.alice,
            {"to": "nobody@example.org", "text": "t"},
        )
        value = self.json(r, 422)
        self.assertEqual(value["recipients"][0]["code"], 550)
        self.assertEqual(self.flags(BOB), {})
        self.assertEqual(self.web.status.counter("webmail", "send_refused"), 1)

    def test_sendBadBodies(self) -> None:
        """Other content types and broken bodies are refused plainly."""
        r = self.request(
            "POST",
            "/api/v1/send",
            self.alice,
            b"to=bob",
            {"Content-Type": "text/plain"},
        )
        self.json(r, 415)
        r = self.request(
            "POST",
            "/api/v1/send",
            self.alice,
            b"{nope",
            {"Content-Type": "application/json"},
        )
        self.json(r, 400)
        r = self.request(
            "POST",
            "/api/v1/send",
            self.alice,
            b"junk",
            {"Content-Type": "multipart/form-data"},
        )
        self.json(r, 400)
        r = self.request("POST", "/api/v1/send", self.alice, {"to": 5})
        self.json(r, 400)

    def test_hostileJSON(self) -> None:
        """
        JSON nested past the parser's recursion limit, and a reference
        whose uid is a string of digits int() refuses, are a 400, not a
        logged 500 (found by tests.robustness.test_http).
        """
        deep = b'{"a":' + b"[" * 20000 + b"]" * 20000 + b"}"
        for path in ("/api/v1/send", "/api/v1/flags"):
            r = self.request(
                "POST", path, self.alice, deep, {"Content-Type": "application/json"}
            )
            self.json(r, 400)
        for uid in ("\u00b2", "1" + "0" * 4400):
            body = {"to": BOB, "text": "x", "reply": {"folder": "INBOX", "uid": uid}}
            r = self.request("POST", "/api/v1/send", self.alice, body)
            self.json(r, 400)

    def test_numbersPastTheStore(self) -> None:
        """
        UIDs past 32 bits and quotas past 63 bits are a 400: SQLite cannot
        hold them, and raised OverflowError, a logged 500 (found by
        tests.robustness.test_http).
        """
        for path, body in (
            ("/api/v1/flags", {"uids": [2**70], "add": ["\\Seen"]}),
            ("/api/v1/move", {"uids": [2**32], "to": "Archive"}),
            ("/api/v1/delete", {"uids": [1, 2**64]}),
            ("/api/v1/send", {"to": BOB, "forward": {"folder": "INBOX", "uid": 2**63}}),
        ):
            self.json(self.request("POST", path, self.alice, body), 400)
        body = {"address": "carol@example.org", "password": PASSWORD, "quota": 2**63}
        self.json(self.request("POST", "/api/v1/users", self.admin, body), 400)
        r = self.request("GET", "/api/v1/message?uid=4294967296", self.alice)
        self.json(r, 400)

    def test_sendReply(self) -> None:
        """A reply by reference threads and marks the original answered."""
        uid = self.deliver(ALICE, plain("Lunch?"))
        self.post(
            "/api/v1/send",
            {"to": BOB, "text": "yes", "reply": {"folder": "INBOX", "uid": uid}},
        )
        self.assertIn("\\Answered", self.flags(ALICE)[uid])
        value = self.get("/api/v1/draft?mode=reply&uid=1", self.bob)
        self.assertEqual(value["subject"], "Re:")

    def test_move(self) -> None:
        """Messages move to another folder; the new UIDs are returned."""
        uids = [self.deliver(ALICE, plain(f"m{i}")) for i in range(3)]
        self.successResultOf(self.web.store.mail.createFolder(ALICE, "Archive"))
        value = self.post(
            "/api/v1/move", {"folder": "INBOX", "uids": uids[:2], "to": "Archive"}
        )
        self.assertEqual(value, {"to": "Archive", "uids": {"1": 1, "2": 2}})
        self.assertEqual(list(self.flags(ALICE)), [3])
        self.assertEqual(list(self.flags(ALICE, "Archive")), [1, 2])

    def test_moveErrors(self) -> None:
        """Missing folders are 404; same folder and bad UIDs 400."""
        uid = self.deliver(ALICE, plain("m"))
        for body, code in (
            ({"uids": [uid], "to": "Nope"}, 404),
            ({"uids": [uid], "to": "inbox"}, 400),
            ({"uids": [], "to": "INBOX"}, 400),
            ({"uids": [True], "to": "INBOX"}, 400),
            ({"uids": "1", "to": "INBOX"}, 400),
            ({"uids": [uid]}, 400),
        ):
            self.json(self.request("POST", "/api/v1/move", self.alice, body), code)

    def test_deleteToTrash(self) -> None:
        """With a Trash folder, delete moves there; in Trash, it expunges."""
        uid = self.deliver(ALICE, plain("m"))
        self.successResultOf(self.web.store.mail.createFolder(ALICE, TRASH))
        value = self.post("/api/v1/delete", {"folder": "INBOX", "uids": [uid]})
        self.assertEqual(value, {"action": "moved", "to": "Trash", "uids": {"1": 1}})
        self.assertEqual(self.flags(ALICE), {})
        value = self.post("/api/v1/delete", {"folder": "Trash", "uids": [1]})
        self.assertEqual(value, {"action": "expunged", "uids": [1]})
        self.assertEqual(self.flags(ALICE, TRASH), {})

    def test_deleteWithoutTrash(self) -> None:
        """Without a Trash folder, delete expunges for good."""
        uids = [self.deliver(ALICE, plain(f"m{i}")) for i in range(2)]
        value = self.post("/api/v1/delete", {"uids": [uids[0], 99]})
        self.assertEqual(value, {"action": "expunged", "uids": [uids[0]]})
        self.assertEqual(list(self.flags(ALICE)), [uids[1]])
        self.assertEqual(self.web.status.counter("webmail", "deleted"), 1)

    def test_flags(self) -> None:
        """Flags are added and removed; \\Deleted and junk are refused."""
        uid = self.deliver(ALICE, plain("m"))
        value = self.post(
            "/api/v1/flags", {"uids": [uid], "add": ["\\Seen", "\\Flagged", "$Work"]}
        )
        self.assertEqual(
            value,
            {"messages": [{"uid": uid, "flags": ["$Work", "\\Flagged", "\\Seen"]}]},
        )
        self.post("/api/v1/flags", {"uids": [uid], "remove": ["\\Flagged"]})
        self.assertEqual(self.flags(ALICE)[uid], frozenset({"\\Seen", "$Work"}))
        for bad in (["\\Deleted"], ["\\Recent"], ["a b"], "\\Seen", [""]):
            self.json(
                self.request(
                    "POST", "/api/v1/flags", self.alice, {"uids": [uid], "add": bad}
                ),
                400,
            )
        self.json(
            self.request("POST", "/api/v1/flags", self.alice, {"uids": [uid]}), 400
        )


class FolderTests(APITestCase):
    """
    Creating, renaming and deleting folders: IMAP's name rules, INBOX and
    the special-use folders kept, nothing lost by a careless delete.
    """

    def make(self, *names: str) -> None:
        for name in names:
            self.successResultOf(self.web.store.mail.createFolder(ALICE, name))

    def send(self, method: str, path: str, body: Any = None, code: int = 200) -> Any:
        return self.json(self.request(method, path, self.alice, body), code)

    def test_create(self) -> None:
        """POST makes the folder (201, Location) and returns it."""
        r = self.request("POST", "/api/v1/folders", self.alice, {"name": " Archive "})
        self.assertEqual(
            self.json(r, 201),
            {
                "folder": {
                    "name": "Archive",
                    "role": None,
                    "special": False,
                    "messages": 0,
                    "unseen": 0,
                    "size": 0,
                }
            },
        )
        self.assertEqual(r.header("location"), "/api/v1/folders/Archive")
        self.assertEqual(self.folderNames(ALICE), [INBOX, "Archive"])

    def test_createNested(self) -> None:
        """A nested name makes its missing superiors, as IMAP CREATE does."""
        r = self.request(
            "POST", "/api/v1/folders", self.alice, {"name": "Work/2026/Q1"}
        )
        self.assertEqual(self.json(r, 201)["folder"]["name"], "Work/2026/Q1")
        self.assertEqual(r.header("location"), "/api/v1/folders/Work%2F2026%2FQ1")
        self.assertEqual(
            self.folderNames(ALICE), [INBOX, "Work", "Work/2026", "Work/2026/Q1"]
        )
        self.send("POST", "/api/v1/folders", {"name": "inbox/Lists"}, 201)
        self.assertIn("INBOX/Lists", self.folderNames(ALICE))

    def test_createErrors(self) -> None:
        """Bad names are 400, existing ones (INBOX in any case) 409."""
        self.make("Archive")
        for name in (
            "",
            "  ",
            "a*",
            "50%",
            "tab\there",
            "a\x7fb",
            "a//b",
            "/a",
            "x" * 256,
            "/".join("l" * 17),
            17,
            None,
        ):
            self.send("POST", "/api/v1/folders", {"name": name}, 400)
        for name in ("Archive", "INBOX", "inbox"):
            value = self.send("POST", "/api/v1/folders", {"name": name}, 409)
            self.assertIn("exists already", value["error"])
        self.send("POST", "/api/v1/folders", [], 400)
        self.assertEqual(self.folderNames(ALICE), [INBOX, "Archive"])

    def test_folderLimit(self) -> None:
        """
        An account has at most MAX_FOLDERS folders through the API,
        counting the superiors a name would make.
        """
        self.patch(folderAPI, "MAX_FOLDERS", 3)
        self.make("A")
        self.send("POST", "/api/v1/folders", {"name": "B/C"}, 409)
        self.send("POST", "/api/v1/folders", {"name": "B"}, 201)
        value = self.send("POST", "/api/v1/folders", {"name": "C"}, 409)
        self.assertEqual(value, {"error": "too many folders (at most 3)"})
        self.send("PATCH", "/api/v1/folders/A", {"name": "X/A"}, 409)
        self.send("PATCH", "/api/v1/folders/A", {"name": "D"}, 200)
        self.assertEqual(self.folderNames(ALICE), [INBOX, "B", "D"])

    def test_getOne(self) -> None:
        """A folder is named by the rest of the path, / escaped or not."""
        self.make("Work", "Work/Q1")
        for path in ("Work%2FQ1", "Work/Q1", "Work%2fQ1"):
            value = self.send("GET", "/api/v1/folders/" + path)
            self.assertEqual(value["folder"]["name"], "Work/Q1")
        self.assertEqual(
            self.send("GET", "/api/v1/folders/inbox")["folder"]["name"], INBOX
        )
        self.send("GET", "/api/v1/folders/Nope", code=404)
        self.send("GET", "/api/v1/folders/a%2A", code=400)

    def test_rename(self) -> None:
        """PATCH renames a folder with its subfolders, keeping messages."""
        self.make("Archive", "Archive/2025")
        uid = self.deliver(ALICE, plain("m"), "Archive/2025")
        value = self.send("PATCH", "/api/v1/folders/Archive", {"name": "Old/Archive"})
        self.assertEqual(
            (value["from"], value["folder"]["name"]), ("Archive", "Old/Archive")
        )
        self.assertEqual(
            self.folderNames(ALICE), [INBOX, "Old", "Old/Archive", "Old/Archive/2025"]
        )
        self.assertEqual(list(self.flags(ALICE, "Old/Archive/2025")), [uid])

    def test_renameErrors(self) -> None:
        """
        INBOX and special-use folders are not renamed (409); a missing
        folder is 404, an existing target 409, a bad one 400.
        """
        self.make("Sent", "Drafts", "Trash", "Junk", "A", "A/B", "C")
        for name in ("INBOX", "inbox", "Sent", "Drafts", "Trash", "Junk"):
            value = self.send("PATCH", f"/api/v1/folders/{name}", {"name": "X"}, 409)
            self.assertIn("special folder", value["error"])
        self.send("PATCH", "/api/v1/folders/Nope", {"name": "X"}, 404)
        for target in ("C", "INBOX", "A", "Sent"):
            self.send("PATCH", "/api/v1/folders/A", {"name": target}, 409)
        for target in ("", "a*", "x//y", 5):
            self.send("PATCH", "/api/v1/folders/A", {"name": target}, 400)
        self.send("PATCH", "/api/v1/folders/A", {"name": "A/B/C"}, 400)
        self.send("PATCH", "/api/v1/folders/A", {}, 400)
        self.send("PATCH", "/api/v1/folders/%2A", {"name": "X"}, 400)
        self.assertEqual(
            self.folderNames(ALICE),
            [INBOX, "A", "A/B", "C", "Drafts", "Junk", "Sent", "Trash"],
        )

    def test_delete(self) -> None:
        """DELETE removes an empty folder."""
        self.make("Archive", "Work", "Work/Q1")
        value = self.send("DELETE", "/api/v1/folders/Archive")
        self.assertEqual(value, {"deleted": "Archive", "movedToTrash": 0})
        self.send("DELETE", "/api/v1/folders/Work%2FQ1")
        self.assertEqual(self.folderNames(ALICE), [INBOX, "Work"])

    def test_deleteErrors(self) -> None:
        """
        INBOX and special-use folders are not deleted (409), nor a folder
        with subfolders (409); a missing folder is 404, a bad name 400.
        """
        self.make("Sent", "Drafts", "Trash", "Junk", "A", "A/B")
        for name in ("INBOX", "Inbox", "Sent", "Drafts", "Trash", "Junk"):
            value = self.send("DELETE", f"/api/v1/folders/{name}", code=409)
            self.assertIn("special folder", value["error"])
        value = self.send("DELETE", "/api/v1/folders/A?force=1", code=409)
        self.assertEqual(
            value, {"error": "folder has subfolders; delete or move them first"}
        )
        self.send("DELETE", "/api/v1/folders/Nope", code=404)
        self.send("DELETE", "/api/v1/folders/a%25", code=400)
        self.assertEqual(
            self.folderNames(ALICE),
            [INBOX, "A", "A/B", "Drafts", "Junk", "Sent", "Trash"],
        )

    def test_deleteNotEmpty(self) -> None:
        """
        A folder with messages is kept (409, with the count) unless
        ?force=1; then its messages go to Trash.
        """
        self.make("Trash", "Archive")
        uids = [self.deliver(ALICE, plain(f"m{i}"), "Archive") for i in range(3)]
        value = self.send("DELETE", "/api/v1/folders/Archive", code=409)
        self.assertEqual(value, {"error": "folder not empty", "messages": 3})
        self.assertEqual(list(self.flags(ALICE, "Archive")), uids)
        value = self.send("DELETE", "/api/v1/folders/Archive?force=1")
        self.assertEqual(value, {"deleted": "Archive", "movedToTrash": 3})
        self.assertEqual(self.folderNames(ALICE), [INBOX, TRASH])
        self.assertEqual(len(self.flags(ALICE, TRASH)), 3)

    def test_deleteRace(self) -> None:
        """
        A message filed in the folder while its messages move to Trash
        keeps the folder (409) instead of going with it.
        """
        self.make("Trash", "Archive")
        self.deliver(ALICE, plain("first"), "Archive")
        kind = type(self.web.store.mail)  # Slotted: patch the class.
        move = kind.move

        def moveThenDeliver(store: Any, *args: Any) -> Any:
            d = move(store, *args)
            self.deliver(ALICE, plain("late"), "Archive")
            return d

        self.patch(kind, "move", moveThenDeliver)
        value = self.send("DELETE", "/api/v1/folders/Archive?force=1", code=409)
        self.assertEqual(value, {"error": "folder not empty", "messages": 1})
        self.assertEqual(len(self.flags(ALICE, "Archive")), 1)
        self.assertEqual(len(self.flags(ALICE, TRASH)), 1)

    def test_deleteNotEmptyWithoutTrash(self) -> None:
        """Without a Trash folder, ?force=1 deletes the messages too."""
        self.make("Archive")
        self.deliver(ALICE, plain("m"), "Archive")
        value = self.send("DELETE", "/api/v1/folders/Archive?force=1")
        self.assertEqual(value, {"deleted": "Archive", "movedToTrash": 0})
        self.assertEqual(self.folderNames(ALICE), [INBOX])

    def test_otherAccounts(self) -> None:
        """Folder changes touch only the session's own account."""
        self.successResultOf(self.web.store.mail.createFolder(BOB, "Bobs"))
        self.send("DELETE", "/api/v1/folders/Bobs", code=404)
        self.send("PATCH", "/api/v1/folders/Bobs", {"name": "Mine"}, 404)
        self.send("POST", "/api/v1/folders", {"name": "Bobs"}, 201)
        self.assertEqual(self.folderNames(BOB), [INBOX, "Bobs"])

    def test_imapSeesIt(self) -> None:
        """
        IMAP's view of the account (LIST) shows folders made here, and
        the API lists folders IMAP made, with their special use.
        """
        from appnet.mail.imap.account import IMAPAccount

        self.send("POST", "/api/v1/folders", {"name": "Web/Made"}, 201)
        account = IMAPAccount(ALICE, self.web.store.mail)
        listed = self.successResultOf(account.list("", "*", False))
        self.assertEqual(
            [(f.name, f.attributes) for f in listed],
            [
                (INBOX, ("\\HasNoChildren",)),
                ("Web", ("\\HasChildren",)),
                ("Web/Made", ("\\HasNoChildren",)),
            ],
        )
        self.successResultOf(account.ensureSpecialFolders())
        self.successResultOf(account.create("Imap/Made"))
        folders = {f["name"]: f for f in self.get("/api/v1/folders")["folders"]}
        self.assertIn("Imap/Made", folders)
        self.assertEqual(
            [n for n, f in folders.items() if f["special"]],
            [INBOX, "Drafts", "Junk", "Sent", "Trash"],
        )


class AdminTests(APITestCase):
    def test_notAdmin(self) -> None:
        """Accounts without admin get 403 from every admin endpoint."""
        for method, path, body in (
            ("GET", "/api/v1/queue", None),
            ("GET", "/api/v1/users", None),
            (
                "POST",
                "/api/v1/users",
                {"address": "eve@example.org", "password": "x" * 10},
            ),
            ("GET", f"/api/v1/users/{BOB}", None),
            ("DELETE", f"/api/v1/users/{BOB}", None),
            ("POST", f"/api/v1/users/{BOB}/password", {"password": "y" * 10}),
        ):
            r = self.request(method, path, self.alice, body)
            self.assertEqual(self.json(r, 403), {"error": "administrators only"}, path)
        self.assertIsNotNone(self.successResultOf(self.web.store.users.getUser(BOB)))

    def test_queue(self) -> None:
        """The queue lists messages with each recipient's state."""
        self.post("/api/v1/send", {"to": "zoe@remote.example", "text": "t"})
        [queued] = self.get("/api/v1/queue", self.admin)["messages"]
        self.assertEqual((queued["sender"], queued["submitter"]), (ALICE, ALICE))
        self.assertEqual(
            queued["recipients"],
            [
                {
                    "address": "zoe@remote.example",
                    "state": "pending",
                    "response": None,
                    "updated": queued["recipients"][0]["updated"],
                }
            ],
        )

    def test_users(self) -> None:
        """Admins list, create, inspect and delete accounts."""
        value = self.get("/api/v1/users", self.admin)
        self.assertEqual([u["address"] for u in value["users"]], [ADMIN, ALICE, BOB])
        r = self.request(
            "POST",
            "/api/v1/users",
            self.admin,
            {"address": "Eve@Example.org", "password": "eve-password", "quota": 1000},
        )
        created = self.json(r, 201)["user"]
        self.assertEqual(
            (created["address"], created["admin"], created["quota"]),
            ("eve@example.org", False, 1000),
        )
        self.assertEqual(r.header("location"), "/api/v1/users/eve%40example.org")
        user = self.successResultOf(self.web.store.users.getUser("eve@example.org"))
        self.assertTrue(verifyPassword("eve-password", user.passwordHash))
        self.assertEqual(
            self.get("/api/v1/users/eve%40example.org", self.admin)["user"]["quota"],
            1000,
        )
        again = self.request(
            "POST",
            "/api/v1/users",
            self.admin,
            {"address": "eve@example.org", "password": "eve-password"},
        )
        self.json(again, 409)
        self.assertEqual(
            self.json(
                self.request("DELETE", "/api/v1/users/eve@example.org", self.admin)
            ),
            {"deleted": "eve@example.org"},
        )
        self.assertIsNone(
            self.successResultOf(self.web.store.users.getUser("eve@example.org"))
        )
        self.json(
            self.request("DELETE", "/api/v1/users/eve@example.org", self.admin), 404
        )

    def test_userErrors(self) -> None:
        """Bad addresses, short passwords, self-deletion are refused."""
        for body in (
            {"address": "no-at-sign", "password": "long-enough"},
            {"address": "a+b@example.org", "password": "long-enough"},
            {"address": "eve@example.org", "password": "short"},
            {"address": "eve@example.org", "password": "long-enough", "admin": "yes"},
            {"address": "eve@example.org", "password": "long-enough", "quota": -1},
        ):
            self.json(self.request("POST", "/api/v1/users", self.admin, body), 400)
        self.json(self.request("DELETE", f"/api/v1/users/{ADMIN}", self.admin), 409)
        self.json(self.request("GET", "/api/v1/users/x/y", self.admin), 404)

    def test_password(self) -> None:
        """Setting a password changes the hash and ends the account's sessions."""
        r = self.request(
            "POST",
            f"/api/v1/users/{ALICE}/password",
            self.admin,
            {"password": "new-password"},
        )
        self.assertEqual(self.json(r), {"address": ALICE, "sessionsEnded": 1})
        user = self.successResultOf(self.web.store.users.getUser(ALICE))
        self.assertTrue(verifyPassword("new-password", user.passwordHash))
        self.json(self.request("GET", "/api/v1/folders", self.alice), 401)
        self.json(
            self.request(
                "POST",
                "/api/v1/users/nobody@example.org/password",
                self.admin,
                {"password": "new-password"},
            ),
            404,
        )


class CSRFTests(APITestCase):
    """
    Every state-changing request of the API and the page needs the
    session's token and a same-origin browser: refused requests change
    nothing.
    """

    def changes(self) -> list[tuple[str, str, Any, dict[str, str]]]:
        """Every state change, with what makes it succeed."""
        uid = self.deliver(ALICE, plain("m"))
        mail = self.web.store.mail
        for owner in (ALICE, ADMIN):
            for name in ("Archive", "Old", "Gone"):
                self.successResultOf(mail.createFolder(owner, name))
        contentType, form = multipart([("to", BOB), ("text", "t")], [])
        return [
            ("POST", "/api/v1/folders", {"name": "New"}, {}),
            ("PATCH", "/api/v1/folders/Old", {"name": "Renamed"}, {}),
            ("DELETE", "/api/v1/folders/Gone", None, {}),
            ("POST", "/api/v1/send", {"to": BOB, "text": "t"}, {}),
            ("POST", "/api/v1/send", form, {"Content-Type": contentType}),
            ("POST", "/api/v1/move", {"uids": [uid], "to": "Archive"}, {}),
            ("POST", "/api/v1/delete", {"uids": [uid]}, {}),
            ("POST", "/api/v1/flags", {"uids": [uid], "add": ["\\Seen"]}, {}),
            (
                "POST",
                "/api/v1/users",
                {"address": "eve@example.org", "password": "x" * 10},
                {},
            ),
            ("POST", f"/api/v1/users/{BOB}/password", {"password": "y" * 10}, {}),
            ("DELETE", f"/api/v1/users/{BOB}", None, {}),
        ]

    def state(self) -> Any:
        users = self.successResultOf(self.web.store.users.listUsers())
        return (
            self.flags(ALICE),
            self.flags(BOB),
            self.folderNames(ALICE),
            self.folderNames(ADMIN),
            [(u.address, u.passwordHash) for u in users],
            self.successResultOf(self.web.store.queue.list()),
        )

    def refuse(
        self, session: dict[str, str], extra: dict[str, str], reason: str
    ) -> None:
        changes = self.changes()
        before = self.state()
        for method, path, body, headers in changes:
            r = self.request(method, path, session, body, {**headers, **extra})
            self.assertEqual(self.json(r, 403), {"error": reason}, path)
        self.assertEqual(self.state(), before)

    def test_tokenMissing(self) -> None:
        """Without the X-CSRF-Token header, every change is refused."""
        session = {"Cookie": self.admin["Cookie"]}
        self.refuse(session, {}, "CSRF token missing")

    def test_tokenWrong(self) -> None:
        """Another session's token does not do."""
        session = {
            "Cookie": self.admin["Cookie"],
            "X-CSRF-Token": self.alice["X-CSRF-Token"],
        }
        self.refuse(session, {}, "CSRF token wrong")

    def test_crossOrigin(self) -> None:
        """With the right token, a request from another origin is refused."""
        self.refuse(
            self.admin,
            {"Origin": "http://evil.example"},
            "request from another origin refused",
        )

    def test_crossSite(self) -> None:
        """Sec-Fetch-Site: cross-site is refused whatever the token."""
        self.refuse(
            self.admin, {"Sec-Fetch-Site": "cross-site"}, "cross-site request refused"
        )

    def test_accepted(self) -> None:
        """With the token from a same-origin page, every change goes through."""
        extra = {"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"}
        for method, path, body, headers in self.changes():
            r = self.request(
                method,
                path,
                self.admin if "users" in path else self.alice,
                body,
                {**headers, **extra},
            )
            self.assertIn(r.status, (200, 201), (path, r.body))

    def test_getChangesNothing(self) -> None:
        """GET on a state-changing endpoint is a 405 and changes nothing."""
        changes = self.changes()
        before = self.state()
        for _, path, _, _ in changes:
            if "/folders" in path or (
                "/users" in path and not path.endswith("password")
            ):
                continue  # GET there reads.
            r = self.request("GET", path + "?uids=1&to=Archive", self.admin)
            self.json(r, 405)
        self.assertEqual(self.state(), before)

    def test_loginEndpoint(self) -> None:
        """
        The JSON login needs application/json (no cross-site form can send
        it) and a same origin.
        """
        credentials = json.dumps({"username": ALICE, "password": PASSWORD}).encode()
        r = self.request(
            "POST", "/api/v1/login", None, credentials, {"Content-Type": "text/plain"}
        )
        self.json(r, 415)
        r = self.request(
            "POST",
            "/api/v1/login",
            None,
            credentials,
            {"Content-Type": "application/json", "Origin": "http://evil.example"},
        )
        self.json(r, 403)
        self.assertNotIn("set-cookie", r.headers)

    def test_logoutForm(self) -> None:
        """The page's logout form carries the token; without it, no logout."""
        r = self.request(
            "POST",
            "/logout",
            {"Cookie": self.alice["Cookie"]},
            b"",
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.assertEqual(r.status, 403)
        self.get("/api/v1/folders")
        body = f"csrf_token={quote(self.alice['X-CSRF-Token'])}".encode()
        r = self.request(
            "POST",
            "/logout",
            {"Cookie": self.alice["Cookie"]},
            body,
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.assertEqual(r.status, 303)
        self.json(self.request("GET", "/api/v1/folders", self.alice), 401)


class PageTests(APITestCase):
    def test_page(self) -> None:
        """
        /mail/ is the frame with the account and token, under a strict
        policy: scripts and styles from here only, no framing, no referrer.
        """
        r = self.request("GET", "/mail/", {"Cookie": self.alice["Cookie"]})
        self.assertEqual(r.status, 200)
        self.assertIn(
            f'<meta name="csrf-token" content="{self.alice["X-CSRF-Token"]}">'.encode(),
            r.body,
        )
        self.assertIn(b'<script src="/mail/webmail.js" defer></script>', r.body)
        self.assertNotIn(b"<script>", r.body)
        csp = r.header("content-security-policy") or ""
        for directive in (
            "default-src 'none'",
            "script-src 'self'",
            "img-src 'self' data:",
            "frame-ancestors 'none'",
        ):
            self.assertIn(directive, csp)
        self.assertNotIn("unsafe", csp)
        self.assertEqual(r.header("referrer-policy"), "no-referrer")
        self.assertNotIn(b'href="#view=users"', r.body)
        admin = self.request("GET", "/mail/", {"Cookie": self.admin["Cookie"]})
        self.assertIn(b'href="#view=users"', admin.body)

    def test_loginRedirect(self) -> None:
        """Without a session the page sends the browser to the login form."""
        r = self.request("GET", "/mail/", None)
        self.assertEqual((r.status, r.header("location")), (303, "/login?next=/mail/"))

    def test_slash(self) -> None:
        """/mail redirects to /mail/."""
        r = self.request("GET", "/mail", {"Cookie": self.alice["Cookie"]})
        self.assertEqual((r.status, r.header("location")), (301, "/mail/"))

    def test_assets(self) -> None:
        """The script and style sheet are served with an entity tag (304 after)."""
        r = self.request("GET", "/mail/webmail.js", {"Cookie": self.alice["Cookie"]})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type"), "text/javascript; charset=utf-8")
        self.assertIn(b"X-CSRF-Token", r.body)
        etag = r.header("etag") or ""
        again = self.request(
            "GET",
            "/mail/webmail.js",
            {"Cookie": self.alice["Cookie"], "If-None-Match": etag},
        )
        self.assertEqual((again.status, again.body), (304, b""))
        css = self.request("GET", "/mail/webmail.css", {"Cookie": self.alice["Cookie"]})
        self.assertEqual(css.header("content-type"), "text/css; charset=utf-8")
        self.assertEqual(
            self.request(
                "GET", "/mail/nothing.js", {"Cookie": self.alice["Cookie"]}
            ).status,
            404,
        )
        self.assertEqual(
            self.request("GET", "/mail/a/b", {"Cookie": self.alice["Cookie"]}).status,
            404,
        )

    def test_noFrameworkFromElsewhere(self) -> None:
        """The page loads nothing from another server."""
        r = self.request("GET", "/mail/", {"Cookie": self.alice["Cookie"]})
        self.assertNotIn(b"http://", r.body)
        self.assertNotIn(b"https://", r.body)
        script = self.request(
            "GET", "/mail/webmail.js", {"Cookie": self.alice["Cookie"]}
        ).body
        self.assertNotIn(b"import ", script)
        self.assertNotIn(b"innerHTML = m.text", script)


class BrokenMessageTests(APITestCase):
    def test_tooDeep(self) -> None:
        """
        A message nested beyond the parser's limits is listed, shown from
        its headers with a note, and downloadable; its parts are a 422,
        forwarding attaches its bytes as they are.
        """
        n = 3000
        head = b"Subject: deep\r\nFrom: bob@example.org\r\n" + b"".join(
            b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
            for i in range(n)
        )
        data = (
            head
            + b"Content-Type: text/plain\r\n\r\nx"
            + b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(n)))
        )
        uid = self.deliver(ALICE, data)
        self.assertEqual(self.get("/api/v1/messages")["messages"][0]["subject"], "deep")
        value = self.get(f"/api/v1/message?uid={uid}")
        self.assertEqual(
            (value["subject"], value["text"], value["problem"]),
            ("deep", None, "this message could not be parsed; download the original"),
        )
        self.flushLoggedErrors(RecursionError)
        r = self.request("GET", f"/api/v1/attachment?uid={uid}&part=1", self.alice)
        self.json(r, 422)
        self.assertEqual(
            self.request("GET", f"/api/v1/raw?uid={uid}", self.alice).body, data
        )
        sent = self.post(
            "/api/v1/send", {"to": BOB, "forward": {"folder": "INBOX", "uid": uid}}
        )
        self.assertEqual(sent["delivered"], [BOB])
        forwarded = self.get("/api/v1/message?uid=1", self.bob)
        self.assertEqual(
            forwarded["attachments"][0]["contentType"], "application/octet-stream"
        )


def dated(subject: str, sender: str, when: str, text: str, extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
        f"Date: {when}\r\nMessage-ID: <{subject.replace(' ', '')}@x>\r\n{extra}"
        f"\r\n{text}\r\n"
    ).encode()


class SearchTests(APITestCase):
    """
    C{GET /api/v1/search}: IMAP SEARCH's matching over a folder, paged
    like C{/api/v1/messages}.
    """

    def setUp(self) -> None:
        super().setUp()
        messages = [
            ("Crepes on Friday", "Bob <bob@example.org>", "01 Dec 2026", "at noon"),
            ("Budget", "Carol <carol@example.net>", "03 Dec 2026", "numbers"),
            ("Re: Crepes on Friday", "Carol <carol@example.net>", "05 Dec 2026", "ok"),
            ("Minutes", "Bob <bob@example.org>", "07 Dec 2026", "crepes NOON x"),
        ]
        for i, (subject, sender, day, text) in enumerate(messages):
            self.deliver(
                ALICE,
                dated(subject, sender, f"Tue, {day} 10:00:00 +0000", text),
                date=2_000_000_000 + i,
            )

    def subjects(self, query: str) -> list[str]:
        value = self.get("/api/v1/search?" + query)
        return [m["subject"] for m in value["messages"]]

    def test_fields(self) -> None:
        """From, to, subject and body match substrings in any case; all must."""
        self.assertEqual(self.subjects("from=BOB"), ["Minutes", "Crepes on Friday"])
        self.assertEqual(self.subjects("to=alice&subject=budget"), ["Budget"])
        self.assertEqual(self.subjects("body=noon"), ["Minutes", "Crepes on Friday"])
        self.assertEqual(
            self.subjects("subject=crepes&from=carol"), ["Re: Crepes on Friday"]
        )
        self.assertEqual(
            self.subjects("q=crepes"),
            ["Minutes", "Re: Crepes on Friday", "Crepes on Friday"],
        )
        self.assertEqual(self.subjects("from=nobody"), [])

    def test_dates(self) -> None:
        """since and until take the Date field's day, both ends included."""
        self.assertEqual(
            self.subjects("since=2026-12-03&until=2026-12-05"),
            ["Re: Crepes on Friday", "Budget"],
        )
        self.assertEqual(self.subjects("until=2026-12-01"), ["Crepes on Friday"])

    def test_paged(self) -> None:
        """Results come newest first, a page at a time, with the total."""
        value = self.get("/api/v1/search?folder=INBOX&q=e&offset=1&limit=2")
        self.assertEqual(
            (value["folder"], value["total"], value["offset"], value["limit"]),
            ("INBOX", 4, 1, 2),
        )
        self.assertEqual(value["search"], {"q": "e"})
        self.assertEqual(
            [m["subject"] for m in value["messages"]],
            ["Re: Crepes on Friday", "Budget"],
        )
        self.assertEqual(value["messages"][0]["from"][0]["name"], "Carol")

    def test_thread(self) -> None:
        """
        thread names a message id: that message and those following it
        (References or In-Reply-To), in any case.
        """
        self.deliver(
            ALICE,
            dated(
                "Re: Re: Crepes on Friday",
                BOB,
                "Tue, 08 Dec 2026 10:00:00 +0000",
                "x",
                "References: <CrepesonFriday@x> <Re:CrepesonFriday@x>\r\n",
            ),
            date=2_000_000_010,
        )
        self.deliver(
            ALICE,
            dated(
                "Re: Budget",
                BOB,
                "Tue, 08 Dec 2026 11:00:00 +0000",
                "x",
                "In-Reply-To: <Budget@x>\r\n",
            ),
            date=2_000_000_011,
        )
        self.assertEqual(
            self.subjects("thread=" + quote("<crepesonfriday@x>")),
            ["Re: Re: Crepes on Friday", "Crepes on Friday"],
        )
        self.assertEqual(
            self.subjects("thread=" + quote("<Budget@x>")), ["Re: Budget", "Budget"]
        )
        r = self.request("GET", "/api/v1/search?thread=nobrackets", self.alice)
        self.json(r, 400)

    def test_bad(self) -> None:
        """No field, a bad date or an overlong text is a JSON 400."""
        for query in ("", "since=2026-13-01", "until=yesterday", "q=" + "x" * 201):
            r = self.request("GET", "/api/v1/search?" + query, self.alice)
            self.assertIn("error", self.json(r, 400))
        r = self.request("GET", "/api/v1/search?folder=Nope&q=x", self.alice)
        self.assertIn("error", self.json(r, 404))

    def test_needsSession(self) -> None:
        """Searching needs a session."""
        self.json(self.request("GET", "/api/v1/search?q=x", None), 401)


class ThreadTests(APITestCase):
    def test_threadIds(self) -> None:
        """
        List entries carry the message's id and the ids it follows
        (References, else In-Reply-To), for the conversation view.
        """
        self.deliver(ALICE, plain("first"), date=1_000_000)
        self.deliver(
            ALICE,
            dated(
                "second",
                BOB,
                "Tue, 01 Dec 2026 11:00:00 +0000",
                "x",
                "In-Reply-To: <first@x>\r\n",
            ),
            date=1_000_001,
        )
        self.deliver(
            ALICE,
            dated(
                "third",
                BOB,
                "Tue, 01 Dec 2026 12:00:00 +0000",
                "x",
                "In-Reply-To: <second@x>\r\nReferences: <first@x>\r\n <second@x>\r\n",
            ),
            date=1_000_002,
        )
        messages = self.get("/api/v1/messages")["messages"]
        self.assertEqual(
            [(m["messageId"], m["references"]) for m in messages],
            [
                ("<third@x>", ["<first@x>", "<second@x>"]),
                ("<second@x>", ["<first@x>"]),
                ("<first@x>", []),
            ],
        )


class DraftsTests(APITestCase):
    """Drafts: saved to Drafts through IMAP's APPEND, reopened, replaced."""

    def save(self, fields: list[tuple[str, str]], replaces: int = 0) -> Any:
        contentType, body = multipart(fields, [])
        path = "/api/v1/drafts" + (f"?replaces={replaces}" if replaces else "")
        r = self.request("POST", path, self.alice, body, {"Content-Type": contentType})
        return self.json(r, 201)

    def test_saveAndReopen(self) -> None:
        """
        A saved draft sits in Drafts flagged \\Draft and \\Seen, and opens
        again with its fields; saving again replaces it.
        """
        fields = [
            ("to", "Bob <bob@example.org>, carol@example.net"),
            ("cc", ""),
            ("bcc", "dave@example.com"),
            ("subject", "Half written"),
            ("text", "Dear Bob,\n\nmore later"),
        ]
        saved = self.save(fields)
        self.assertEqual(saved["folder"], "Drafts")
        uid = saved["uid"]
        self.assertEqual(
            self.flags(ALICE, "Drafts"), {uid: frozenset({"\\Draft", "\\Seen"})}
        )
        value = self.get(f"/api/v1/draft?mode=edit&folder=Drafts&uid={uid}")
        self.assertEqual(value["to"], ["Bob <bob@example.org>, carol@example.net"])
        self.assertEqual(value["bcc"], ["dave@example.com"])
        self.assertEqual(value["cc"], [])
        self.assertEqual(value["subject"], "Half written")
        self.assertEqual(value["text"].rstrip("\n"), "Dear Bob,\n\nmore later")
        self.assertEqual(value["draft"], {"folder": "Drafts", "uid": uid})

        again = self.save([("to", ""), ("subject", "Later"), ("text", "x")], uid)
        self.assertEqual(again["replaced"], [uid])
        self.assertEqual(list(self.flags(ALICE, "Drafts")), [again["uid"]])
        value = self.get(f"/api/v1/draft?mode=edit&folder=Drafts&uid={again['uid']}")
        self.assertEqual((value["to"], value["subject"]), ([], "Later"))

    def test_delete(self) -> None:
        """DELETE removes a draft for good; a message not a draft stays."""
        uid = self.save([("subject", "gone"), ("text", "x")])["uid"]
        r = self.request("DELETE", f"/api/v1/drafts?uid={uid}", self.alice)
        self.assertEqual(self.json(r), {"deleted": [uid]})
        self.assertEqual(self.flags(ALICE, "Drafts"), {})
        other = self.deliver(ALICE, plain("not a draft"), folder="Drafts")
        r = self.request("DELETE", f"/api/v1/drafts?uid={other}", self.alice)
        self.json(r, 404)
        r = self.request(
            "GET", f"/api/v1/draft?mode=edit&folder=Drafts&uid={other}", self.alice
        )
        self.json(r, 409)

    def test_needsCSRF(self) -> None:
        """Saving a draft is a state change: the CSRF token is required."""
        contentType, body = multipart([("subject", "x")], [])
        session = {"Cookie": self.alice["Cookie"]}
        r = self.request(
            "POST", "/api/v1/drafts", session, body, {"Content-Type": contentType}
        )
        self.json(r, 403)

    def test_replyKept(self) -> None:
        """
        A draft of a reply remembers the message it answers (and a forward
        its original), so it threads when sent after reopening; a reference
        to a message gone meanwhile is dropped.
        """
        original = self.deliver(ALICE, plain("question"))
        self.successResultOf(self.web.store.mail.createFolder(ALICE, "Ä/b c"))
        other = self.deliver(ALICE, plain("forward me"), folder="Ä/b c")
        uid = self.save(
            [
                ("to", BOB),
                ("subject", "Re: question"),
                ("text", "answer"),
                ("reply.folder", INBOX),
                ("reply.uid", str(original)),
                ("forward.folder", "Ä/b c"),
                ("forward.uid", str(other)),
            ]
        )["uid"]
        path = f"/api/v1/draft?mode=edit&folder=Drafts&uid={uid}"
        value = self.get(path)
        self.assertEqual(value["reply"], {"folder": INBOX, "uid": original})
        self.assertEqual(value["forward"], {"folder": "Ä/b c", "uid": other})
        self.successResultOf(self.web.store.mail.expunge(ALICE, INBOX, [original]))
        self.successResultOf(self.web.store.mail.deleteFolder(ALICE, "Ä/b c"))
        value = self.get(path)
        self.assertEqual((value["reply"], value["forward"]), (None, None))


class StoreDownTests(APITestCase):
    def test_unavailable503(self) -> None:
        """
        When the store's database cannot be reached, the API answers 503
        with a JSON error and a Retry-After, not a 500.
        """
        from twisted.internet.defer import fail

        from appnet.errors import StoreUnavailable

        mail = self.web.store.mail
        self.patch(
            type(mail),
            "newestFirst",
            lambda *a, **k: fail(StoreUnavailable("database unavailable")),
        )
        response = self.request("GET", "/api/v1/messages", self.alice)
        value = self.json(response, 503)
        self.assertIn("unavailable", value["error"])
        self.assertEqual(response.header("retry-after"), "5")
