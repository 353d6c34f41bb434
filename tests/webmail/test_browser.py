"""
The webmail in headless Chromium, end to end: a message arrives by real
SMTP, the user logs in through the page, reads it, replies, and the reply
lands in the sender's mailbox.
"""

from __future__ import annotations

import os
import smtplib
from email.message import EmailMessage
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from appnet.mail.testing import StoredMessage
from appnet.store.interfaces import INBOX, DeliveryTarget
from appnet.web.testing import startWeb
from appnet.webmail.sending import SENT
from tests.web.browser import Browser

ALICE = "alice@example.org"
BOB = "bob@example.org"
PASSWORD = "pw-alice-123"

#: Seconds the browser waits for the page to reach a state.
WAIT = 15


def wait(driver: Any, condition: Any) -> Any:
    """Wait (in the browser thread) until C{condition(driver)} holds."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(condition)


def click(driver: Any, selector: str) -> None:
    """
    Click the element C{selector} names once the page has settled: an
    element found just before the page re-rendered its list (a folder's
    count, a new row) is stale, so it is found again.
    """
    from selenium.common.exceptions import StaleElementReferenceException

    def clicked(d: Any) -> bool:
        try:
            d.find_element("css selector", selector).click()
        except StaleElementReferenceException:
            return False
        return True

    wait(driver, clicked)


def visible(selector: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    return expected_conditions.visibility_of_element_located(
        (By.CSS_SELECTOR, selector)
    )


def textIn(selector: str, text: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    return expected_conditions.text_to_be_present_in_element(
        (By.CSS_SELECTOR, selector), text
    )


def textGone(selector: str, text: str) -> Any:
    """The element C{selector} names is there, without C{text}."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def gone(driver: Any) -> bool:
        try:
            return text not in driver.find_element(By.CSS_SELECTOR, selector).text
        except StaleElementReferenceException:
            return False  # Being re-rendered: look again.

    return gone


def consoleErrors(driver: Any) -> list[str]:
    """Errors the page logged (CSP violations, script errors, failed loads)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]
    ]


def login(driver: Any, url: str, account: str, password: str) -> None:
    """Log in through the form and wait for the INBOX."""
    driver.get(url)
    driver.find_element("id", "username").send_keys(account)
    driver.find_element("id", "password").send_keys(password)
    driver.find_element("css selector", "button[type=submit]").click()
    wait(driver, visible("#messages"))


class WebmailBrowserTests(TestCase):
    timeout = 120

    async def stored(self, web: Any, owner: str, folder: str) -> list[StoredMessage]:
        mail = web.stack.store.mail
        found = []
        for info in await mail.listMessages(owner, folder):
            body = await mail.openMessage(owner, folder, info.uid)
            with body.open() as f:
                found.append(StoredMessage(info.uid, info.flags, f.read()))
        return found

    async def test_readAndReply(self) -> None:
        """
        A message delivered by SMTP is read in the browser and answered;
        the reply reaches the sender's INBOX threaded under the original,
        a copy sits in Sent, and the original is marked seen and answered.
        """
        web = await startWeb(
            self,
            users={ALICE: PASSWORD, BOB: "pw-bob-1234"},
            builders=["appnet.mail.server:buildMail"],
        )
        host, port = web.stack.address("smtp")
        original = EmailMessage()
        original["From"] = "Bob <bob@example.org>"
        original["To"] = ALICE
        original["Subject"] = "Crepes on Friday?"
        original["Message-ID"] = "<crepes-1@example.org>"
        original.set_content("Shall we meet at noon?\n<b>not bold</b>\n")

        def deliver() -> None:
            with smtplib.SMTP(host, port, timeout=10) as smtp:
                smtp.send_message(original)

        await deferToThread(deliver)
        browser = await Browser.start(self)

        def inbox(driver: Any) -> str:
            login(driver, web.url("/login?next=/mail/"), ALICE, PASSWORD)
            wait(driver, textIn("#messages tbody", "Crepes on Friday?"))
            title: str = driver.title
            return title

        self.assertEqual(await browser.do(inbox), "INBOX - Mail")

        def read(driver: Any) -> tuple[str, str]:
            driver.find_element("link text", "Crepes on Friday?").click()
            wait(driver, textIn("#message-body", "Shall we meet at noon?"))
            body: str = driver.find_element("id", "message-body").text
            sender: str = driver.find_element("id", "message-headers").text
            return body, sender

        body, headers = await browser.do(read)
        self.assertIn("<b>not bold</b>", body)
        self.assertIn("Bob <bob@example.org>", headers)

        def reply(driver: Any) -> str:
            driver.find_element("id", "reply").click()
            wait(driver, visible("#compose-text"))
            to = driver.find_element("id", "compose-to").get_attribute("value")
            assert to == "Bob <bob@example.org>", to
            text = driver.find_element("id", "compose-text")
            text.send_keys("Noon is perfect.")
            driver.find_element("id", "send").click()
            wait(driver, textIn("#status", "Message sent"))
            status: str = driver.find_element("id", "status").text
            return status

        self.assertEqual(
            await browser.do(reply), "Message sent: delivered to bob@example.org."
        )
        self.assertEqual(await browser.do(consoleErrors), [])

        [answer] = await self.stored(web, BOB, INBOX)
        message = answer.message
        self.assertEqual(message["From"], ALICE)
        self.assertEqual(message["Subject"], "Re: Crepes on Friday?")
        self.assertEqual(message["In-Reply-To"], "<crepes-1@example.org>")
        self.assertEqual(message["References"], "<crepes-1@example.org>")
        text = message.get_content()
        self.assertTrue(text.startswith("Noon is perfect."), text)
        self.assertIn("> Shall we meet at noon?", text)
        self.assertIn(b"with HTTP id", answer.data)
        [copy] = await self.stored(web, ALICE, SENT)
        self.assertEqual(copy.message["Message-ID"], message["Message-ID"])
        [read] = await self.stored(web, ALICE, INBOX)
        self.assertEqual(read.flags, frozenset({"\\Seen", "\\Answered"}))
        self.assertEqual(web.status.counter("webmail", "sent"), 1)

    async def test_imagesAttachmentsDelete(self) -> None:
        """
        An HTML message shows without its images until asked (the remote
        one never); a new message goes out with a file attached from the
        browser; deleting moves a message to Trash. Nothing on the page
        breaks its Content-Security-Policy.
        """
        web = await startWeb(self, users={ALICE: PASSWORD, BOB: "pw-bob-1234"})
        mail = web.stack.store.mail
        await mail.createFolder(ALICE, "Trash")
        html = (
            b"From: bob@example.org\r\nTo: alice@example.org\r\n"
            b"Subject: Chart\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/related; boundary="R"\r\n\r\n'
            b"--R\r\nContent-Type: text/html\r\n\r\n"
            b'<p>See <img id="chart" src="cid:chart@x" alt="the chart">'
            b'<img src="https://tracker.example/p.gif" alt="tracker"></p>'
            b'<script>document.title="owned"</script>\r\n'
            b"--R\r\nContent-Type: image/png\r\nContent-ID: <chart@x>\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            b"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
            b"60e6kgAAAABJRU5ErkJggg==\r\n--R--\r\n"
        )
        staged = mail.stage()
        staged.write(html)
        await mail.deliver(staged, [DeliveryTarget(ALICE)])
        attachment = os.path.abspath(self.mktemp() + "-menu.txt")
        with open(attachment, "wb") as f:
            f.write(b"crepes\ngalettes\n")
        browser = await Browser.start(self)

        def images(driver: Any) -> tuple[str, str, int]:
            login(driver, web.url("/login?next=/mail/"), ALICE, PASSWORD)
            wait(driver, textIn("#messages tbody", "Chart"))
            driver.find_element("link text", "Chart").click()
            wait(driver, textIn("#message-body", "See"))
            before: str = driver.find_element("id", "message-body").text
            note: str = driver.find_element("id", "images-note").text
            driver.find_element("id", "show-images").click()
            wait(driver, visible("#message-body img"))
            width: int = driver.execute_script(
                "const i = document.querySelector('#message-body img');"
                "return i.complete ? i.naturalWidth : -1;"
            )
            return before + " | " + driver.title, note, width

        before, note, width = await browser.do(images)
        self.assertEqual(before, "See [the chart][tracker] | Chart - Mail")
        self.assertIn("1 remote image(s) were removed.", note)
        self.assertIn("1 image(s) in this message are hidden.", note)
        self.assertEqual(width, 1)

        def compose(driver: Any) -> str:
            driver.find_element("id", "compose-button").click()
            wait(driver, visible("#compose-to"))
            driver.find_element("id", "compose-to").send_keys("Bob <bob@example.org>")
            driver.find_element("id", "compose-subject").send_keys("Menu")
            driver.find_element("id", "compose-text").send_keys("Attached.")
            driver.find_element("id", "compose-files").send_keys(attachment)
            driver.find_element("id", "send").click()
            wait(driver, textIn("#status", "Message sent"))
            status: str = driver.find_element("id", "status").text
            return status

        self.assertEqual(
            await browser.do(compose), "Message sent: delivered to bob@example.org."
        )
        [sent] = await self.stored(web, BOB, INBOX)
        parts = [p for p in sent.message.iter_attachments()]
        self.assertEqual([p.get_filename() for p in parts], [attachment.split("/")[-1]])
        self.assertEqual(parts[0].get_content(), "crepes\ngalettes\n")

        def delete(driver: Any) -> str:
            driver.get(web.url("/mail/#folder=INBOX"))
            wait(driver, textIn("#messages tbody", "Chart"))
            driver.find_element("css selector", "#messages input.select").click()
            driver.find_element("id", "delete-selected").click()
            wait(driver, textIn("#status", "Moved 1 message(s) to Trash."))
            wait(driver, textIn("#range", "No messages"))
            status: str = driver.find_element("id", "status").text
            return status

        self.assertEqual(await browser.do(delete), "Moved 1 message(s) to Trash.")
        self.assertEqual(len(await self.stored(web, ALICE, "Trash")), 1)
        self.assertEqual(await browser.do(consoleErrors), [])

    async def test_forwardQueueAndUsers(self) -> None:
        """
        An administrator forwards a message to a remote address (it waits
        in the queue, shown on the queue page), pages through the INBOX,
        adds an account, sets its password and deletes it again.
        """
        admin = "admin@example.org"
        web = await startWeb(self, users={BOB: "pw-bob-1234"})
        await web.addUser(admin, PASSWORD, admin=True)
        mail = web.stack.store.mail
        for i in range(55):
            staged = mail.stage()
            staged.write(
                f"From: bob@example.org\r\nSubject: Note {i}\r\n\r\n"
                f"note {i}\r\n".encode()
            )
            await mail.deliver(staged, [DeliveryTarget(admin)], 1_800_000_000 + i)
        browser = await Browser.start(self)

        def forward(driver: Any) -> tuple[str, str, str]:
            login(driver, web.url("/login?next=/mail/"), admin, PASSWORD)
            wait(driver, textIn("#range", "1–50 of 55"))
            driver.find_element("id", "older").click()
            wait(driver, textIn("#range", "51–55 of 55"))
            oldest: str = driver.find_element(
                "css selector", "#messages tbody tr:last-child"
            ).text
            driver.find_element("link text", "Note 0").click()
            wait(driver, textIn("#message-body", "note 0"))
            driver.find_element("id", "forward").click()
            wait(driver, visible("#forward-note"))
            subject = driver.find_element("id", "compose-subject").get_attribute(
                "value"
            )
            driver.find_element("id", "compose-to").send_keys("zoe@remote.example")
            driver.find_element("id", "send").click()
            wait(driver, textIn("#status", "Message sent"))
            driver.get(web.url("/mail/#view=queue"))
            wait(driver, textIn("#queue tbody", "zoe@remote.example"))
            queue: str = driver.find_element("css selector", "#queue tbody").text
            return oldest, subject, queue

        oldest, subject, queue = await browser.do(forward)
        self.assertIn("Note 0", oldest)
        self.assertEqual(subject, "Fwd: Note 0")
        self.assertIn("zoe@remote.example (pending)", queue)

        def users(driver: Any) -> tuple[str, str]:
            driver.get(web.url("/mail/#view=users"))
            wait(driver, textIn("#users tbody", BOB))
            driver.find_element("id", "user-address").send_keys("eve@example.org")
            driver.find_element("id", "user-password").send_keys("eve-password-1")
            driver.find_element("css selector", "#user-form button").click()
            wait(driver, textIn("#status", "Added eve@example.org."))
            click(
                driver, 'button[data-action=password][data-address="eve@example.org"]'
            )
            alert = driver.switch_to.alert
            alert.send_keys("eve-password-2")
            alert.accept()
            wait(driver, textIn("#status", "Password of eve@example.org set"))
            listed: str = driver.find_element("css selector", "#users tbody").text
            driver.find_element(
                "css selector",
                'button[data-action=delete][data-address="eve@example.org"]',
            ).click()
            driver.switch_to.alert.accept()
            wait(driver, textIn("#status", "Deleted eve@example.org."))
            # The list is fetched again after the status line.
            wait(driver, textGone("#users tbody", "eve@example.org"))
            after: str = driver.find_element("css selector", "#users tbody").text
            return listed, after

        listed, after = await browser.do(users)
        self.assertIn("eve@example.org", listed)
        self.assertNotIn("eve@example.org", after)
        [queued] = await web.stack.store.queue.list()
        self.assertEqual(queued.submitter, admin)
        self.assertEqual(await browser.do(consoleErrors), [])

    async def test_folders(self) -> None:
        """
        The user makes a folder from the page (its name, markup and all,
        shown as text), moves a message into it,
        renames it (answering the prompt) and deletes it (confirming):
        the message goes to Trash; INBOX offers neither rename nor delete.
        """
        web = await startWeb(self, users={ALICE: PASSWORD})
        mail = web.stack.store.mail
        await mail.createFolder(ALICE, "Trash")
        staged = mail.stage()
        staged.write(b"From: bob@example.org\r\nSubject: Receipt\r\n\r\nPaid.\r\n")
        await mail.deliver(staged, [DeliveryTarget(ALICE)])
        browser = await Browser.start(self)

        def folders(driver: Any) -> list[str]:
            from selenium.webdriver.support import expected_conditions
            from selenium.webdriver.support.ui import Select

            login(driver, web.url("/login?next=/mail/"), ALICE, PASSWORD)
            wait(driver, textIn("#messages tbody", "Receipt"))
            shown = [
                str(driver.find_element("id", "rename-folder").is_enabled()),
                str(driver.find_element("id", "delete-folder").is_enabled()),
            ]
            driver.find_element("id", "folder-name").send_keys("Receipts <b>")
            driver.find_element("css selector", "#folder-form button").click()
            wait(driver, textIn("#status", "Folder Receipts <b> created."))
            wait(driver, textIn("#list-title", "Receipts <b>"))
            driver.get(web.url("/mail/#folder=INBOX"))
            wait(driver, textIn("#messages tbody", "Receipt"))
            driver.find_element("css selector", "#messages input.select").click()
            Select(driver.find_element("id", "move-selected")).select_by_value(
                "Receipts <b>"
            )
            wait(driver, textIn("#status", "Moved 1 message(s) to Receipts <b>."))
            click(driver, '[data-folder="Receipts <b>"] a')
            # The folder shown, then its list (INBOX's may not be redrawn
            # yet after the move), and the buttons that act on it.
            wait(driver, textIn("#list-title", "Receipts <b>"))
            wait(driver, textIn("#messages tbody", "Receipt"))
            wait(
                driver,
                expected_conditions.element_to_be_clickable(("id", "rename-folder")),
            )
            driver.find_element("id", "rename-folder").click()
            prompt = wait(driver, expected_conditions.alert_is_present())
            prompt.send_keys("Paid/2026")
            prompt.accept()
            wait(driver, textIn("#list-title", "Paid/2026"))
            shown.append(driver.find_element("id", "folders").text)
            driver.find_element("id", "delete-folder").click()
            confirm = wait(driver, expected_conditions.alert_is_present())
            shown.append(confirm.text)
            confirm.accept()
            wait(driver, textIn("#status", "Folder Paid/2026 deleted."))
            shown.append(driver.find_element("id", "status").text)
            return shown

        shown = await browser.do(folders)
        self.assertEqual(
            shown,
            [
                "False",
                "False",
                "INBOX\nDrafts\nJunk\nPaid\nPaid/2026 (1)\nSent\nTrash",
                "Delete the folder Paid/2026? Its 1 message(s) will be moved to Trash.",
                "Folder Paid/2026 deleted. 1 message(s) moved to Trash.",
            ],
        )
        names = [f.name for f in await mail.listFolders(ALICE)]
        self.assertEqual(names, [INBOX, "Drafts", "Junk", "Paid", "Sent", "Trash"])
        self.assertEqual(len(await self.stored(web, ALICE, "Trash")), 1)
        self.assertEqual(await browser.do(consoleErrors), [])
