"""
A headless Chromium for browser tests, driven by Selenium with Debian's
C{chromium} and C{chromium-driver} (nothing is downloaded).

Selenium's calls block (they talk to chromedriver over HTTP), so every one
runs in a thread: L{Browser.do} takes a function of the C{WebDriver} and
returns a Deferred of its result::

    browser = await Browser.start(self)          # quit by the test's cleanup
    await browser.do(lambda d: d.get(web.url("/login")))
    title = await browser.do(lambda d: d.title)

Clicks start navigations the driver does not wait for: wait for the next
page with L{waitForTitle} (inside the thread) before reading it.

A test using it is skipped, naming what is missing, where Chromium,
chromedriver or Selenium is not installed (C{.ci/run} installs them).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

from attrs import define
from twisted.internet.threads import deferToThread

from tests.interop import need, unavailable

T = TypeVar("T")

CHROMIUM = ("chromium", "chromium-browser")
CHROMEDRIVER = "chromedriver"

#: Flags for running as root in a container, with nothing phoning home.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--window-size=1200,900",
)


def _find() -> tuple[str, str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        unavailable("selenium is not installed")
    browser = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    if browser is None:
        unavailable("chromium is not installed (Debian package chromium)")
    return browser, need(CHROMEDRIVER, "chromium-driver")


@define
class Browser:
    """One headless Chromium with a fresh profile."""

    driver: Any
    profile: str

    @classmethod
    async def start(cls, testCase: Any = None) -> Browser:
        """
        Start Chromium (in a thread); with C{testCase}, quit it in the
        test's cleanup.
        """
        browser, driverPath = _find()
        profile = tempfile.mkdtemp(prefix="appnet-chromium-")

        def launch() -> Any:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service

            options = webdriver.ChromeOptions()
            options.binary_location = browser
            for flag in (*FLAGS, f"--user-data-dir={profile}"):
                options.add_argument(flag)
            return webdriver.Chrome(service=Service(driverPath), options=options)

        try:
            driver = await deferToThread(launch)
        except BaseException:
            shutil.rmtree(profile, ignore_errors=True)
            raise
        running = cls(driver, profile)
        if testCase is not None:
            testCase.addCleanup(running.quit)
        return running

    def do(self, action: Callable[[Any], T]) -> Any:
        """Run C{action(driver)} in a thread; a Deferred of its result."""
        return deferToThread(action, self.driver)

    async def quit(self) -> None:
        """Stop Chromium and chromedriver and remove the profile."""
        if self.driver is not None:
            driver, self.driver = self.driver, None
            await deferToThread(driver.quit)
        if os.path.isdir(self.profile):
            shutil.rmtree(self.profile, ignore_errors=True)


def waitForTitle(driver: Any, title: str) -> str:
    """
    Wait (in the browser thread) for the navigation a click started to
    reach a page titled C{title}; return the title found.
    """
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, 20).until(lambda d: d.title == title)
    except TimeoutException:
        pass
    found: str = driver.title
    return found
