"""A real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by Selenium,
and what a test needs to act like a person: click by the text a person reads, fill a field by
its label, read the page's text. Skips with one loud line when Chromium is absent; under
``CI=true`` that is a failure."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.servers import IN_CI

CHROMIUM = os.environ.get("LIENTHONG_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LIENTHONG_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
VN_DATETIME = re.compile(r"\b\d{2}/\d{2}/\d{4} \d{2}:\d{2}\b")
SCREENSHOTS = os.environ.get("LIENTHONG_SCREENSHOTS")  # a folder: `make screenshots` sets it


def require_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).exists() or shutil.which(p))]
    if not missing:
        return
    message = f"Chromium is not installed ({', '.join(missing)} missing; apt-get install chromium chromium-driver)"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing browser is a failure, not a skip)")
    print(f"\n*** SKIPPING browser tests: {message} ***")
    pytest.skip(message)


class Browser:
    def __init__(self, driver: Any, downloads: Path) -> None:
        self.driver = driver
        self.downloads = downloads
        self.base = ""

    # --- looking -----------------------------------------------------------------------

    @property
    def text(self) -> str:
        from selenium.webdriver.common.by import By

        return _settled(lambda: self.driver.find_element(By.TAG_NAME, "body").text)

    def sees(self, *texts: str) -> None:
        body = self.text
        for text in texts:
            assert text in body, f"{text!r} not on {self.driver.current_url}:\n{body[:3000]}"

    def heading(self) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.TAG_NAME, "h1").text

    def shot(self, name: str, *, width: int = 1280) -> None:
        """A PNG of the whole page, top to bottom, under ``LIENTHONG_SCREENSHOTS`` (when set)."""
        if not SCREENSHOTS:
            return
        import base64

        folder = Path(SCREENSHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        self.driver.execute_script("window.scrollTo(0, 0); document.activeElement && document.activeElement.blur()")
        metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": min(int(height), 6000)})
        png = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]
        (folder / f"{name}.png").write_bytes(base64.b64decode(png))
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # --- acting ------------------------------------------------------------------------

    def _navigating(self, find: Callable[[], Any], navigates: bool = True) -> None:
        """Click what ``find`` finds (found again if the page changed before the click), then
        wait until the next page has replaced this one."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By

        old = _settled(lambda: self.driver.find_element(By.TAG_NAME, "html"))
        for attempt in range(5):
            try:
                find().click()
                break
            except WebDriverException as exc:
                if attempt == 4 or not _page_changed(exc):
                    raise
                time.sleep(0.3)
        if not navigates:
            return
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                old.tag_name  # noqa: B018 - touching it tells whether it is still the page
            except WebDriverException:
                try:
                    if self.driver.execute_script("return document.readyState") == "complete":
                        return
                except WebDriverException:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"the page did not change after the click on {self.driver.current_url}")

    def go(self, path_or_url: str) -> None:
        self.driver.get(path_or_url if path_or_url.startswith("http") else self.base + path_or_url)

    def click(self, text: str) -> None:
        """The link or button a person would click, by its visible text."""
        self._navigating(lambda: _settled(lambda: self._find(text)))

    def _find(self, text: str) -> Any:
        from selenium.webdriver.common.by import By

        for element in self.driver.find_elements(By.CSS_SELECTOR, "a, button"):
            if element.is_displayed() and element.text.strip().rstrip("…") == text:
                return element
        raise AssertionError(f"nothing to click named {text!r} on {self.driver.current_url}:\n{self.text[:2000]}")

    def click_starting(self, prefix: str) -> None:
        """The link whose visible text starts with ``prefix`` (e.g. a procedure's code)."""
        from selenium.webdriver.common.by import By

        def find() -> Any:
            for element in self.driver.find_elements(By.CSS_SELECTOR, "main a"):
                if element.is_displayed() and element.text.strip().startswith(prefix):
                    return element
            raise AssertionError(f"no link starting {prefix!r} on {self.driver.current_url}:\n{self.text[:2000]}")

        self._navigating(lambda: _settled(find))

    def follow(self, css: str) -> None:
        """The first link ``css`` selects (when its text is data, not a label)."""
        from selenium.webdriver.common.by import By

        self._navigating(lambda: _settled(lambda: self.driver.find_element(By.CSS_SELECTOR, css)))

    def field(self, label: str) -> Any:
        """The input a ``<label>`` names (exact text, as a person reads it)."""
        from selenium.webdriver.common.by import By

        for element in self.driver.find_elements(By.TAG_NAME, "label"):
            if element.text.strip().rstrip(" *") == label and element.get_attribute("for"):
                return self.driver.find_element(By.ID, element.get_attribute("for"))
        raise AssertionError(f"no field labelled {label!r} on {self.driver.current_url}")

    def fill(self, label: str, value: str) -> None:
        element = self.field(label)
        element.clear()
        element.send_keys(value)

    def choose(self, label: str, option: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.field(label)).select_by_visible_text(option)

    def attach(self, label: str, path: Path) -> None:
        self.field(label).send_keys(str(path))

    def log_in(self, username: str, password: str = "demo") -> None:
        self.driver.delete_all_cookies()
        self.go("/")
        self.click(self.t("Log in"))
        self.fill(self.t("User name"), username)
        self.fill(self.t("Password"), password)
        self.submit(self.t("Log in"))

    def submit(self, button_text: str, *, navigates: bool = True) -> None:
        from selenium.webdriver.common.by import By

        def find() -> Any:
            for element in self.driver.find_elements(By.CSS_SELECTOR, "main button, main input[type=submit]"):
                if element.is_displayed() and element.text.strip() == button_text:
                    return element
            raise AssertionError(f"no button {button_text!r} on {self.driver.current_url}:\n{self.text[:2000]}")

        self._navigating(lambda: _settled(find), navigates)

    def until(self, check: Callable[[], bool], *, timeout: float = 60, reload: bool = True, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what} on {self.driver.current_url}:\n{self.text[:2000]}")
            time.sleep(0.5)
            if reload:
                self.driver.refresh()

    def downloaded(self, suffix: str = ".pdf", *, timeout: float = 30) -> Path:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [p for p in self.downloads.iterdir() if p.suffix == suffix]
            if done:
                return done[0]
            time.sleep(0.2)
        raise AssertionError(f"no {suffix} downloaded")

    @staticmethod
    def t(english: str) -> str:
        """What a Vietnamese reader sees for an English message id (the console's catalogue)."""
        from services.console.i18n import translator

        return translator("vi")(english)


def _settled(read: Callable[[], Any], tries: int = 5) -> Any:
    """``read`` again when the page changed under it (a reload or navigation in between)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    for attempt in range(tries):
        try:
            return read()
        except StaleElementReferenceException:
            pass
        except WebDriverException as exc:
            if not _page_changed(exc):
                raise
        if attempt + 1 < tries:
            time.sleep(0.3)
    return read()


def _page_changed(exc: Exception) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    return isinstance(exc, StaleElementReferenceException) or "does not belong to the document" in str(exc)


def run_as_person(flow: Callable[..., None], browser: Browser, *args: Any) -> None:
    """Run a blocking browser flow (in a worker thread, while the suite serves in the loop);
    a failure reports where the browser was and what it showed."""
    try:
        flow(browser, *args)
    except BaseException as exc:
        try:
            where = f"{browser.driver.current_url}\n{browser.text[:3000]}"
        except Exception:
            where = "(the browser is gone)"
        raise AssertionError(f"{type(exc).__name__}: {exc}\n--- the page:\n{where}") from None


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Browser]:
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="lt-chromium-")
    downloads = Path(tempfile.mkdtemp(prefix="lt-downloads-"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "--lang=vi"):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "plugins.always_open_pdf_externally": True,
        },
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield Browser(driver, downloads)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(downloads, ignore_errors=True)
