"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by selenium, for tests that open a page.

    with headless_chromium(tmp_path) as browser:   # skips the test when chromium or its driver is missing
        browser.get(url)
        wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "tr[data-role=job]"))

The machine has no internet: background networking, component updates, sync and QUIC are off, and the
driver is given explicitly (selenium never looks for or downloads one). The browser's clock zone is UTC so
pages that render relative times ("3 days ago") do so without a local offset.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900")


def missing() -> str | None:
    """Why no browser test can run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.access(path, os.X_OK) or shutil.which(Path(path).name)):
            return f"{path} is missing: install Debian's '{package}' (./scripts/test does as root)"
    return None


@contextmanager
def headless_chromium(workdir: Path) -> Iterator[webdriver.Chrome]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={workdir / 'chromium-profile'}"):
        options.add_argument(flag)
    env = {**os.environ, "TZ": "UTC"}
    service = Service(executable_path=CHROMEDRIVER, log_output=str(workdir / "chromedriver.log"), env=env)
    browser = webdriver.Chrome(service=service, options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def wait_for(browser: webdriver.Chrome, condition: Callable[[webdriver.Chrome], Any], timeout: float = 15,
             message: str = "") -> Any:
    """Poll `condition(browser)` until it is truthy (the page's own scripts fill it in); return its value."""
    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(condition, message)
