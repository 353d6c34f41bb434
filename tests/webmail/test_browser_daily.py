"""
The webmail in headless Chromium for daily use: the layout on a phone
(375x667) and a desktop (1280x800), with screenshots and element geometry;
search, drafts, keyboard shortcuts, conversations, dates and the
attachment marker as a user meets them.
"""

from __future__ import annotations

import email.utils
import os
import time
from typing import Any

from twisted.trial.unittest import TestCase

from appnet.store.interfaces import INBOX, DeliveryTarget
from appnet.web.testing import startWeb
from tests.web.browser import Browser
from tests.webmail.test_browser import (
    ALICE,
    BOB,
    PASSWORD,
    consoleErrors,
    login,
    textIn,
    visible,
    wait,
)

#: Viewports the layout is checked at: a phone and a desktop.
PHONE = (375, 667)
DESKTOP = (1280, 800)

#: Elements sticking out of the viewport, and the page's scroll width.
#: Elements inside a container that clips or scrolls them are that
#: container's business (an ellipsis, a wide HTML mail scrolled in its box).
GEOMETRY = """
const width = document.documentElement.clientWidth;
const clipped = (e) => {
  for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
    if (getComputedStyle(p).overflowX !== "visible") return true;
  }
  return false;
};
const out = [];
for (const e of document.querySelectorAll("body *")) {
  const r = e.getBoundingClientRect();
  if (!r.width || !r.height || clipped(e)) continue;
  if (r.left < -1 || r.right > width + 1) {
    out.push(`${e.tagName.toLowerCase()}#${e.id}.${e.className}: ${r.left}-${r.right}`);
  }
}
return {
  width: width,
  scrollWidth: document.documentElement.scrollWidth,
  outside: out,
};
"""


def rect(driver: Any, selector: str) -> dict[str, float]:
    """The bounding box of the first element matching C{selector}."""
    box: dict[str, float] = driver.execute_script(
        "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
        "return {left: r.left, right: r.right, top: r.top, width: r.width,"
        " height: r.height};",
        selector,
    )
    return box


def viewport(driver: Any, size: tuple[int, int]) -> None:
    """Emulate a screen of C{size} CSS pixels (a phone's is touch)."""
    width, height = size
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": width,
            "height": height,
            "deviceScaleFactor": 1,
            "mobile": width < 600,
        },
    )


def message(
    subject: str,
    sender: str,
    when: float,
    text: str = "hello",
    extra: str = "",
) -> bytes:
    return (
        f"From: {sender}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Date: {email.utils.formatdate(when, localtime=False)}\r\n"
        f"Message-ID: <{subject.replace(' ', '').replace(':', '')}@example.org>\r\n"
        f"{extra}\r\n{text}\r\n"
    ).encode()


WITH_FILE = (
    f"From: Carol <carol@example.net>\r\nTo: {ALICE}\r\nSubject: Budget\r\n"
    "Date: Mon, 01 Dec 2025 09:30:00 +0000\r\nMessage-ID: <budget@example.net>\r\n"
    'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n'
    "--B\r\nContent-Type: text/plain\r\n\r\nNumbers attached.\r\n"
    "--B\r\nContent-Type: text/csv\r\n"
    'Content-Disposition: attachment; filename="budget.csv"\r\n\r\n'
    "a,b\r\n1,2\r\n--B--\r\n"
).encode()


class DailyUseTests(TestCase):
    timeout = 120

    async def startWithMail(self) -> Any:
        """A stack whose INBOX holds a thread of two, a budget and filler."""
        web = await startWeb(self, users={ALICE: PASSWORD, BOB: "pw-bob-1234"})
        mail = web.stack.store.mail
        now = time.time()
        # Today's mail, however soon after local midnight the test runs.
        midnight = time.mktime(time.localtime(now)[:3] + (0, 0, 0, 0, 0, -1))
        today = [max(now - age, midnight + 3 - age / 60) for age in (300, 120, 60)]
        long = "Quarterly planning for the " + "very " * 30 + "long subject"
        link = "https://example.com/" + "x" * 300
        messages = [
            (WITH_FILE, now - 3600 * 24 * 400),
            (
                message(
                    long,
                    "Somebody With A Long Name <x@example.com>",
                    today[0],
                    f"See {link} and Averyveryverylongwordwithoutanyspaces" * 3,
                ),
                0,
            ),
            (message("Crepes on Friday", "Bob <bob@example.org>", today[1]), 0),
            (
                message(
                    "Re: Crepes on Friday",
                    "Carol <carol@example.net>",
                    today[2],
                    "Yes, noon.",
                    "In-Reply-To: <CrepesonFriday@example.org>\r\n",
                ),
                0,
            ),
        ]
        for i, (data, _) in enumerate(messages):
            staged = mail.stage()
            staged.write(data)
            await mail.deliver(staged, [DeliveryTarget(ALICE)], now - 1000 + i)
        return web

    async def test_layout(self) -> None:
        """
        At 375x667 the folder list hides behind a toggle, each message
        shows its sender, subject and date inside the width, compose fits,
        and nothing scrolls sideways; at 1280x800 the folders sit beside
        the list. Screenshots of both are saved in the test's directory.
        """
        web = await self.startWithMail()
        shots = os.path.abspath(self.mktemp())
        os.makedirs(shots)
        browser = await Browser.start(self)

        def phone(driver: Any) -> dict[str, Any]:
            viewport(driver, PHONE)
            driver.get(web.url("/login?next=/mail/"))
            wait(driver, visible("#username"))
            loginPage = driver.execute_script(GEOMETRY)
            login(driver, web.url("/login?next=/mail/"), ALICE, PASSWORD)
            wait(driver, textIn("#messages tbody", "Crepes on Friday"))
            found: dict[str, Any] = {"login": loginPage}
            found["list"] = driver.execute_script(GEOMETRY)
            found["navShown"] = driver.find_element("id", "folders").is_displayed()
            row = "#messages tbody tr"
            found["cells"] = {
                name: rect(driver, f"{row} td.{name}")
                for name in ("from", "subject", "date")
            }
            found["cellsShown"] = [
                td.is_displayed()
                for td in driver.find_elements(
                    "css selector", f"{row}:first-child td.from, {row} td.date"
                )[:2]
            ]
            driver.save_screenshot(os.path.join(shots, "phone-list.png"))
            driver.find_element("id", "search-more-button").click()
            wait(driver, visible("#search-more"))
            found["search"] = driver.execute_script(GEOMETRY)
            driver.find_element("id", "search-more-button").click()
            driver.find_element("partial link text", "Quarterly planning").click()
            wait(driver, textIn("#message-body", "https://example.com/"))
            found["message"] = driver.execute_script(GEOMETRY)
            driver.save_screenshot(os.path.join(shots, "phone-message.png"))
            driver.back()
            wait(driver, visible("#messages"))
            driver.find_element("id", "menu-button").click()
            wait(driver, visible("#folders"))
            found["menu"] = driver.execute_script(GEOMETRY)
            found["folders"] = driver.find_element("id", "folders").text
            driver.save_screenshot(os.path.join(shots, "phone-folders.png"))
            driver.find_element("link text", "Sent").click()
            wait(driver, textIn("#list-title", "Sent"))
            found["navAfter"] = driver.find_element("id", "folders").is_displayed()
            driver.find_element("id", "compose-button").click()
            wait(driver, visible("#compose-text"))
            found["compose"] = driver.execute_script(GEOMETRY)
            found["forwardNote"] = driver.find_element(
                "id", "forward-note"
            ).is_displayed()
            found["text"] = rect(driver, "#compose-text")
            found["to"] = rect(driver, "#compose-to")
            driver.save_screenshot(os.path.join(shots, "phone-compose.png"))
            return found

        found = await browser.do(phone)
        for view in ("login", "list", "search", "message", "menu", "compose"):
            geometry = found[view]
            self.assertEqual(geometry["width"], PHONE[0], view)
            self.assertEqual(geometry["outside"], [], view)
            self.assertLessEqual(geometry["scrollWidth"], PHONE[0], view)
        self.assertFalse(found["navShown"])
        self.assertEqual(found["cellsShown"], [True, True])
        for name, box in found["cells"].items():
            self.assertGreater(box["width"], 20, name)
            self.assertLessEqual(box["right"], PHONE[0], name)
        # Sender and date share the first line; the subject is below.
        cells = found["cells"]
        self.assertEqual(cells["from"]["top"], cells["date"]["top"])
        self.assertGreater(cells["subject"]["top"], cells["from"]["top"])
        self.assertEqual(found["folders"], "INBOX (3)\nDrafts\nJunk\nSent\nTrash")
        self.assertFalse(found["navAfter"])
        self.assertFalse(found["forwardNote"])
        for field in ("text", "to"):
            self.assertLessEqual(found[field]["right"], PHONE[0], field)
            self.assertGreater(found[field]["width"], PHONE[0] / 2, field)

        def desktop(driver: Any) -> dict[str, Any]:
            viewport(driver, DESKTOP)
            driver.get(web.url("/mail/#folder=INBOX"))
            wait(driver, textIn("#messages tbody", "Crepes on Friday"))
            found: dict[str, Any] = {"list": driver.execute_script(GEOMETRY)}
            found["nav"] = rect(driver, "nav")
            found["main"] = rect(driver, "main")
            found["menu"] = driver.find_element("id", "menu-button").is_displayed()
            driver.save_screenshot(os.path.join(shots, "desktop-list.png"))
            driver.find_element("id", "compose-button").click()
            wait(driver, visible("#compose-text"))
            found["compose"] = driver.execute_script(GEOMETRY)
            driver.save_screenshot(os.path.join(shots, "desktop-compose.png"))
            return found

        found = await browser.do(desktop)
        for view in ("list", "compose"):
            self.assertEqual(found[view]["width"], DESKTOP[0], view)
            self.assertEqual(found[view]["outside"], [], view)
            self.assertLessEqual(found[view]["scrollWidth"], DESKTOP[0], view)
        self.assertFalse(found["menu"])
        self.assertLessEqual(found["nav"]["right"], found["main"]["left"])
        self.assertEqual(
            sorted(os.listdir(shots)),
            [
                "desktop-compose.png",
                "desktop-list.png",
                "phone-compose.png",
                "phone-folders.png",
                "phone-list.png",
                "phone-message.png",
            ],
        )
        for name in os.listdir(shots):
            with open(os.path.join(shots, name), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", name)
        self.assertEqual(await browser.do(consoleErrors), [])

    async def test_searchThreadsDatesMarker(self) -> None:
        """
        Search finds by text and by sender, paged like a folder, and is
        cleared again; the conversation toggle groups a reply under its
        original; list and reader show one date format (today's mail by
        its time alone); the attachment marker is drawn in SVG, no emoji.
        """
        web = await self.startWithMail()
        browser = await Browser.start(self)

        def run(driver: Any) -> dict[str, Any]:
            found: dict[str, Any] = {}
            login(driver, web.url("/login?next=/mail/"), ALICE, PASSWORD)
            wait(driver, textIn("#messages tbody", "Crepes on Friday"))
            rows = driver.find_elements("css selector", "#messages tbody tr")
            found["dates"] = [
                r.find_element("css selector", "td.date").text for r in rows
            ]
            found["clip"] = driver.execute_script(
                "const c = document.querySelectorAll('#messages svg.clip');"
                "return [c.length, c[0].closest('tr').textContent,"
                " c[0].getBoundingClientRect().width];"
            )
            found["emoji"] = (
                "\U0001f4ce" in driver.find_element("tag name", "body").text
            )
            driver.find_element("link text", "Crepes on Friday").click()
            wait(driver, textIn("#message-body", "hello"))
            found["readerDate"] = driver.execute_script(
                "const d = [...document.querySelectorAll('#message-headers dt')]"
                ".find((t) => t.textContent === 'Date');"
                "return d.nextElementSibling.textContent;"
            )
            driver.get(web.url("/mail/#folder=INBOX"))
            wait(driver, textIn("#messages tbody", "Budget"))
            driver.find_element("id", "search-q").send_keys("crepes\n")
            wait(driver, textIn("#list-title", "Search in INBOX"))
            wait(driver, textIn("#range", "1–2 of 2"))
            found["search"] = driver.find_element(
                "css selector", "#messages tbody"
            ).text
            found["searchTitle"] = driver.title
            driver.find_element("id", "search-q").clear()
            driver.find_element("id", "search-more-button").click()
            wait(driver, visible("#search-more"))
            driver.find_element("css selector", "#search-more [name=from]").send_keys(
                "carol"
            )
            driver.find_element(
                "css selector", "#search-form button[type=submit]"
            ).click()
            wait(driver, textIn("#search-note", "from “carol”"))
            wait(driver, textIn("#range", "1–2 of 2"))
            found["byCarol"] = driver.find_element(
                "css selector", "#messages tbody"
            ).text
            driver.find_element("id", "clear-search").click()
            wait(driver, textIn("#range", "1–4 of 4"))
            found["cleared"] = driver.find_element("id", "search-note").is_displayed()
            driver.find_element("id", "threads").click()
            wait(driver, visible("#messages .thread-count"))
            found["threads"] = driver.execute_script(
                "return [...document.querySelectorAll('#messages tbody tr')].map("
                "(r) => [r.querySelector('td.subject a').textContent,"
                " r.classList.contains('in-thread'),"
                " (r.querySelector('.thread-count') || {textContent: ''})"
                ".textContent]);"
            )
            driver.find_element("link text", "Crepes on Friday").click()
            wait(driver, visible("#thread"))
            found["conversation"] = driver.find_element("id", "thread-list").text
            return found

        found = await browser.do(run)
        today, other, budget = found["dates"][0], found["dates"][2], found["dates"][3]
        year = str(time.localtime().tm_year)
        self.assertRegex(today, r"^\d{1,2}:\d{2}( [AP]M)?$")
        self.assertNotIn(year, today)
        self.assertIn("2025", budget)
        self.assertRegex(other, r"^\d{1,2}:\d{2}")
        self.assertEqual(found["readerDate"], found["dates"][1])
        count, row, width = found["clip"]
        self.assertEqual(count, 1)
        self.assertIn("Budget", row)
        self.assertGreater(width, 0)
        self.assertFalse(found["emoji"])
        self.assertIn("Re: Crepes on Friday", found["search"])
        self.assertIn("Crepes on Friday", found["search"].replace("Re: Crepes", ""))
        self.assertNotIn("Budget", found["search"])
        self.assertEqual(found["searchTitle"], "Search in INBOX - Mail")
        self.assertIn("Budget", found["byCarol"])
        self.assertIn("Re: Crepes on Friday", found["byCarol"])
        self.assertFalse(found["cleared"])
        threads = found["threads"]
        self.assertEqual(
            threads[:2],
            [["Re: Crepes on Friday", False, "2"], ["Crepes on Friday", True, ""]],
        )
        self.assertEqual([t[1] for t in threads[2:]], [False, False])
        first, second = found["conversation"].split("\n")
        self.assertTrue(first.startswith("Bob: Crepes on Friday, "), first)
        self.assertTrue(second.startswith("Carol: Re: Crepes on Friday, "), second)
        self.assertEqual(await browser.do(consoleErrors), [])

    async def test_draftsAndShortcuts(self) -> None:
        """
        j/k move through the list and the messages, Enter opens, r
        replies, c composes, / goes to the search box, and none of them
        fire while typing; a draft is saved, reopened from Drafts, saved
        again (replacing it) and sent (leaving Drafts empty).
        """
        web = await self.startWithMail()
        mail = web.stack.store.mail
        browser = await Browser.start(self)

        def keys(driver: Any) -> dict[str, Any]:
            from selenium.webdriver.common.action_chains import ActionChains

            def press(key: str) -> None:
                ActionChains(driver).send_keys(key).perform()

            found: dict[str, Any] = {}
            login(driver, web.url("/login?next=/mail/"), ALICE, PASSWORD)
            wait(driver, textIn("#messages tbody", "Crepes on Friday"))
            cursor = "#messages tr.cursor td.subject a"
            press("j")
            press("j")
            press("k")
            found["cursor"] = driver.find_element("css selector", cursor).text
            press("j")
            press("\ue007")  # Enter
            wait(driver, textIn("#message-subject", "Crepes on Friday"))
            found["opened"] = driver.find_element("id", "message-subject").text
            press("k")
            wait(driver, textIn("#message-subject", "Re: Crepes on Friday"))
            press("r")
            wait(driver, visible("#compose-text"))
            found["reply"] = driver.find_element("id", "compose-subject").get_attribute(
                "value"
            )
            text = driver.find_element("id", "compose-text")
            text.send_keys("jkrc/")
            found["typed"] = text.get_attribute("value").split("\n")[0]
            found["stillComposing"] = driver.find_element(
                "id", "compose-view"
            ).is_displayed()
            driver.get(web.url("/mail/#folder=INBOX"))
            wait(driver, textIn("#messages tbody", "Budget"))
            press("/")
            found["focus"] = driver.execute_script("return document.activeElement.id")
            driver.find_element("id", "search-q").send_keys("c")
            found["searchText"] = driver.find_element("id", "search-q").get_attribute(
                "value"
            )
            driver.find_element("tag name", "h2").click()
            press("c")
            wait(driver, visible("#compose-to"))
            found["composeTitle"] = driver.title
            return found

        found = await browser.do(keys)
        self.assertEqual(found["cursor"], "Re: Crepes on Friday")
        self.assertEqual(found["opened"], "Crepes on Friday")
        self.assertEqual(found["reply"], "Re: Crepes on Friday")
        self.assertEqual(found["typed"], "jkrc/")
        self.assertTrue(found["stillComposing"])
        self.assertEqual((found["focus"], found["searchText"]), ("search-q", "c"))
        self.assertEqual(found["composeTitle"], "Compose - Mail")

        def drafts(driver: Any) -> dict[str, Any]:
            found: dict[str, Any] = {}
            driver.find_element("id", "compose-to").send_keys("Bob <bob@example.org>")
            driver.find_element("id", "compose-subject").send_keys("Plans")
            driver.find_element("id", "compose-text").send_keys("First thoughts")
            driver.find_element("id", "save-draft").click()
            wait(driver, textIn("#status", "Draft saved in Drafts."))
            driver.find_element("id", "discard").click()
            driver.get(web.url("/mail/#folder=Drafts"))
            wait(driver, textIn("#messages tbody", "Plans"))
            found["listed"] = driver.find_element(
                "css selector", "#messages tbody"
            ).text
            driver.find_element("link text", "Plans").click()
            wait(driver, visible("#compose-text"))
            wait(
                driver,
                lambda d: d.find_element("id", "compose-subject").get_attribute(
                    "value"
                ),
            )
            found["reopened"] = [
                driver.find_element("id", name).get_attribute("value")
                for name in ("compose-to", "compose-subject", "compose-text")
            ]
            driver.find_element("id", "compose-text").send_keys(", and more")
            driver.find_element("id", "save-draft").click()
            wait(driver, textIn("#status", "Draft saved in Drafts."))
            return found

        found = await browser.do(drafts)
        self.assertIn("To: Bob", found["listed"])
        self.assertEqual(
            [v.rstrip("\n") for v in found["reopened"]],
            ["Bob <bob@example.org>", "Plans", "First thoughts"],
        )
        [saved] = await mail.listMessages(ALICE, "Drafts")
        self.assertEqual(saved.flags, frozenset({"\\Draft", "\\Seen"}))
        body = await mail.openMessage(ALICE, "Drafts", saved.uid)
        with body.open() as f:
            self.assertIn(b"First thoughts, and more", f.read().replace(b"\r\n", b""))

        def send(driver: Any) -> str:
            driver.find_element("id", "send").click()
            wait(driver, textIn("#status", "Message sent"))
            status: str = driver.find_element("id", "status").text
            return status

        self.assertEqual(
            await browser.do(send), "Message sent: delivered to bob@example.org."
        )
        self.assertEqual(list(await mail.listMessages(ALICE, "Drafts")), [])
        [got] = await mail.listMessages(BOB, INBOX)
        self.assertEqual(got.size > 0, True)
        self.assertEqual(await browser.do(consoleErrors), [])
