"""
Browser smoke tests in headless Chromium: the harness the webmail browser
test builds on.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from appnet.web.testing import startWeb
from tests.web.browser import Browser, waitForTitle


class BrowserSmokeTests(TestCase):
    timeout = 120

    async def test_indexPage(self) -> None:
        """Chromium loads the directory index page and follows a link from it."""
        web = await startWeb(
            self, files={"hello.txt": b"hello, browser", "docs/a.txt": b"a"}
        )
        browser = await Browser.start(self)
        await browser.do(lambda d: d.get(web.url("/")))
        self.assertEqual(await browser.do(lambda d: d.title), "Index of /")

        def names(driver: Any) -> list[str]:
            return [a.text for a in driver.find_elements("css selector", "td a")]

        self.assertEqual(await browser.do(names), ["docs/", "hello.txt"])

        def follow(driver: Any) -> str:
            driver.find_element("link text", "hello.txt").click()
            text: str = driver.find_element("tag name", "body").text
            return text

        self.assertEqual(await browser.do(follow), "hello, browser")

    async def test_loginAndLogout(self) -> None:
        """A browser logs in with the form, is sent on, and logs out."""
        web = await startWeb(
            self,
            files={"home.html": b"<title>home</title>"},
            users={"alice@example.org": "pw-alice-12"},
        )
        browser = await Browser.start(self)

        def login(driver: Any) -> str:
            driver.get(web.url("/login?next=/home.html"))
            driver.find_element("id", "username").send_keys("alice@example.org")
            driver.find_element("id", "password").send_keys("pw-alice-12")
            driver.find_element("css selector", "button[type=submit]").click()
            return waitForTitle(driver, "home")

        self.assertEqual(await browser.do(login), "home")

        def logout(driver: Any) -> str:
            driver.get(web.url("/logout"))
            shown: str = driver.find_element("tag name", "p").text
            driver.find_element("css selector", "button[type=submit]").click()
            return shown + " | " + waitForTitle(driver, "Log in to appnet")

        self.assertEqual(
            await browser.do(logout),
            "Logged in as alice@example.org. | Log in to appnet",
        )
