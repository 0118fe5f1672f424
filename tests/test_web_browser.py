"""The files pages in a real browser: headless Chromium driven through chromedriver.

Screenshots of every page are saved in the test's temporary directory.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shares import TOKEN, Share, write
from support import WAIT

pytest.importorskip("selenium", reason="selenium is not installed")
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip("chromium and chromium-driver are not installed", allow_module_level=True)

pytestmark = [pytest.mark.usefixtures("no_errors_logged"), pytest.mark.timeout(120)]

HOSTILE = "<img src=x onerror=alert(1)>.txt"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=900,900"):
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def page_url(share: Share, path: str = "/") -> str:
    return f"http://{share.endpoint.host}:{share.endpoint.port}{path}"


def shot(driver: webdriver.Chrome, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / f"{name}.png"))


def wait_for(driver: webdriver.Chrome, condition: Callable[[Any], object], what: str) -> None:
    WebDriverWait(driver, WAIT).until(condition, message=f"waiting for {what}")


def no_alert(driver: webdriver.Chrome) -> bool:
    try:
        driver.switch_to.alert  # noqa: B018
    except NoAlertPresentException:
        return True
    return False


def test_log_in_upload_list_and_download(
    share: Share, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    write(share.root / HOSTILE, b"not a script")
    browser.get(page_url(share))
    shot(browser, tmp_path, "1-before-login")
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "td.name a")]
    assert HOSTILE in names  # shown as text, never run
    assert no_alert(browser)
    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form[action='/.socketeer/login'] button").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "file-input"), "the upload form")
    shot(browser, tmp_path, "2-logged-in")

    data = write(tmp_path / "picked.bin", os.urandom(12 * 1024 * 1024 + 5))  # two chunks
    browser.find_element(By.ID, "file-input").send_keys(str(tmp_path / "picked.bin"))
    wait_for(
        browser,
        lambda d: "done" in d.find_element(By.ID, "progress").text,
        "the upload to finish",
    )
    wait_for(
        browser,
        lambda d: "picked.bin" in [a.text for a in d.find_elements(By.CSS_SELECTOR, "td.name a")],
        "the new file in the listing",
    )
    shot(browser, tmp_path, "3-uploaded")
    assert (share.root / "picked.bin").read_bytes() == data

    browser.find_element(By.CSS_SELECTOR, "a[href='/picked.bin?download']").click()
    downloaded = tmp_path / "downloads" / "picked.bin"
    deadline = time.monotonic() + WAIT
    while not (downloaded.exists() and downloaded.stat().st_size == len(data)):
        assert time.monotonic() < deadline, "the download did not finish"
        time.sleep(0.1)
    assert downloaded.read_bytes() == data
    assert no_alert(browser)


def test_a_phone_sized_window_and_a_hostile_file(
    share: Share, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    write(share.root / HOSTILE, b"text")
    write(share.root / "dir" / "inner.txt", b"inner")
    browser.set_window_size(390, 844)
    browser.get(page_url(share, "/dir/"))
    crumbs = browser.find_element(By.CSS_SELECTOR, "nav.crumbs").text
    assert "share" in crumbs
    assert "dir" in crumbs
    shot(browser, tmp_path, "4-phone")
    browser.get(page_url(share))
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert no_alert(browser)
