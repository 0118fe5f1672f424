"""The chat page in a real browser: headless Chromium driven through chromedriver.

Two browser pages and an nc client talk in one room; a line that looks like
HTML stays text.  Screenshots are saved in the test's temporary directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support import WAIT, ServeProcess
from test_chat_cli import Talker

pytest.importorskip("selenium", reason="selenium is not installed")
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip("chromium and chromium-driver are not installed", allow_module_level=True)
if shutil.which("nc") is None:
    pytest.skip("netcat-openbsd is not installed", allow_module_level=True)

pytestmark = [pytest.mark.usefixtures("no_errors_logged"), pytest.mark.timeout(120)]

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def browsers(tmp_path: Path) -> Iterator[Callable[[str], webdriver.Chrome]]:
    started: list[webdriver.Chrome] = []

    def start(name: str) -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1100,800",
        ):
            options.add_argument(argument)
        options.add_argument(f"--user-data-dir={tmp_path / f'profile-{name}'}")
        service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
        driver = webdriver.Chrome(options=options, service=service)
        driver.set_page_load_timeout(WAIT)
        started.append(driver)
        return driver

    yield start
    for driver in started:
        driver.quit()


@pytest.fixture
def talkers() -> Iterator[list[Talker]]:
    started: list[Talker] = []
    yield started
    for talker in started:
        talker.stop()


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


def log_lines(driver: webdriver.Chrome) -> list[str]:
    return [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#log li")]


def members(driver: webdriver.Chrome) -> list[str]:
    return [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#members li")]


def heard(driver: webdriver.Chrome, text: str) -> None:
    wait_for(driver, lambda d: any(text in line for line in log_lines(d)), repr(text))


def join(driver: webdriver.Chrome, url: str, nick: str) -> None:
    driver.get(url)
    field = driver.find_element(By.ID, "nick")
    field.clear()
    field.send_keys(nick, Keys.ENTER)  # the keyboard is enough
    wait_for(driver, lambda d: nick in members(d), f"{nick} in the member list")


def say(driver: webdriver.Chrome, text: str) -> None:
    field = driver.find_element(By.ID, "say")
    field.send_keys(text, Keys.ENTER)


def test_two_browsers_and_nc_talk_in_one_room(
    serve_process: ServeProcess,
    browsers: Callable[[str], webdriver.Chrome],
    talkers: list[Talker],
    tmp_path: Path,
) -> None:
    server = serve_process("serve", "chat", "127.0.0.1:0")
    endpoint = server.endpoints[0]
    url = f"http://{endpoint.host}:{endpoint.port}/"
    nc = Talker(["nc", "-N", str(endpoint.host), str(endpoint.port)])
    talkers.append(nc)
    nc.expect("choose a nickname")
    nc.say("netty")
    nc.expect("you joined")
    nc.say("said before the browsers came")

    anna, bert = browsers("anna"), browsers("bert")
    anna.get(url)
    shot(anna, tmp_path, "1-nickname")
    join(anna, url, "anna")
    heard(anna, "said before the browsers came")  # the room's history on joining
    join(bert, url, "bert")
    wait_for(anna, lambda d: members(d) == ["anna", "bert", "netty"], "everyone listed")
    assert nc.expect("bert joined")[-1] == "#lobby -!- bert joined #lobby"

    say(anna, "hello from anna")
    heard(bert, "hello from anna")
    assert nc.expect("hello from anna")[-1] == "#lobby <anna> hello from anna"
    nc.say(HOSTILE)
    for driver in (anna, bert):
        heard(driver, HOSTILE)  # shown as the text it is
        assert driver.find_elements(By.CSS_SELECTOR, "#log img") == []
        assert no_alert(driver)
    say(bert, "/msg anna just between us")
    heard(anna, "just between us")
    anna_colour = anna.find_element(By.XPATH, "//ol[@id='log']//span[text()='anna']")
    bert_colour = anna.find_element(By.XPATH, "//ol[@id='log']//span[text()='bert']")
    assert anna_colour.value_of_css_property("color") != bert_colour.value_of_css_property("color")
    shot(anna, tmp_path, "2-anna")
    shot(bert, tmp_path, "3-bert")

    bert.set_window_size(390, 844)
    say(bert, "on a phone")
    heard(anna, "on a phone")
    shot(bert, tmp_path, "4-phone")
    assert no_alert(anna)
    assert no_alert(bert)


def test_the_page_reconnects_by_itself_and_keeps_what_was_typed(
    serve_process: ServeProcess,
    browsers: Callable[[str], webdriver.Chrome],
    tmp_path: Path,
) -> None:
    first = serve_process("serve", "chat", "127.0.0.1:0")
    endpoint = first.endpoints[0]
    url = f"http://{endpoint.host}:{endpoint.port}/"
    page = browsers("carl")
    join(page, url, "carl")
    say(page, "/join #den")
    wait_for(page, lambda d: d.find_element(By.ID, "room-title").text == "#den", "the new room")
    first.stop()
    wait_for(page, lambda d: "reconnecting" in d.find_element(By.ID, "status").text, "the drop")
    page.find_element(By.ID, "say").send_keys("typed while away")
    shot(page, tmp_path, "5-disconnected")
    serve_process("serve", "chat", f"127.0.0.1:{endpoint.port}")
    wait_for(page, lambda d: "connected as carl" in d.find_element(By.ID, "status").text, "back")
    wait_for(page, lambda d: d.find_element(By.ID, "room-title").text == "#den", "back in #den")
    assert page.find_element(By.ID, "say").get_attribute("value") == "typed while away"
    page.find_element(By.ID, "say").send_keys(Keys.ENTER)
    heard(page, "typed while away")
    shot(page, tmp_path, "6-reconnected")
