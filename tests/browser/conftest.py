"""A real headless Chromium (Debian's ``chromium``) driven by playwright, for pages.

No browser is downloaded: playwright launches the system's ``chromium`` through
``executable_path`` (``.ci/run`` installs it with apt-get when it is missing). Each
page a test opens is watched for console errors and failed requests; the test's
last page is saved as ``last-page.png`` in its temporary folder for a reviewer.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = ("chromium", "chromium-browser")


def chromium_path() -> str:
    for name in CHROMIUM:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("browser tests need Debian's chromium: apt-get install -y chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


class WatchedPage:
    """A page and what went wrong on it: console errors, page errors, failed requests."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("requestfailed", self._failed)

    def _failed(self, request: Any) -> None:
        # A request the next navigation cancelled (a favicon still loading when a test
        # clicks on) is not a fault of the page; anything else that fails is.
        if request.failure != "net::ERR_ABORTED":
            self.errors.append(f"failed: {request.url} ({request.failure})")

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")


@pytest.fixture
def watched(browser: Browser, tmp_path: Path) -> Iterator[WatchedPage]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    found = WatchedPage(context.new_page())
    yield found
    found.page.screenshot(path=str(tmp_path / "last-page.png"), full_page=True)
    context.close()
