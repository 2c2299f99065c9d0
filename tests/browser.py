"""A real headless Chromium (Debian's chromium and chromium-driver) driven by Selenium, for the web pages' tests.

Flags: root needs --no-sandbox; the background-networking ones keep Chromium from calling out of this closed
network at every start. Selenium Manager is never asked for a driver: the Debian one is given by path.
"""
from __future__ import annotations

import shutil
import tempfile

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def open_browser(width: int = 1280, height: int = 800, lang: str = "en-US"):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="checkpoint-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", "--disable-default-apps", "--hide-scrollbars",
                 f"--window-size={width},{height}", f"--lang={lang}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_window_size(width, height)
    driver.profile_dir = profile
    return driver


def wait_for(driver, condition, what: str, timeout: float = 30):
    """condition(driver) until it is true, within the machine's patience; an element replaced while it was read
    (a live page redraws its rows) is tried again, not a failure."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    from .waiting import patience

    return WebDriverWait(driver, patience(timeout), ignored_exceptions=(
        NoSuchElementException, StaleElementReferenceException)).until(condition, what)


def submit(driver, element) -> None:
    """Click what sends a form and wait for the page it brings: reading right after the click could read the page
    being left (its flash message, say)."""
    from selenium.webdriver.support.expected_conditions import staleness_of

    leaving = driver.find_element("tag name", "html")
    element.click()
    wait_for(driver, staleness_of(leaving), "the page the form brings")


def close_browser(driver) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.profile_dir, ignore_errors=True)


@pytest.fixture
def browser():
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.fail("chromium and chromium-driver are needed: scripts/install-deps --test installs them")
    driver = open_browser()
    yield driver
    close_browser(driver)
