"""The demo page in a real headless Chromium (Debian's chromium and chromedriver, driven by Selenium).

Under CI (``CI=1``) a browser that cannot start fails the test; elsewhere it skips. ``DEMO_SCREENSHOTS=folder``
keeps the screenshots there (``make screenshots`` writes them into docs/).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import image_bytes
from tests.demo_process import Demo, start_demo

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(300)]
SCREENSHOT_WIDTH = 960


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"The browser test cannot run under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        unavailable("chromium and chromedriver are not on the PATH (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,860"):
        options.add_argument(argument)
    try:
        # The driver's path is given, so Selenium never looks for (or downloads) a driver of its own.
        chrome = webdriver.Chrome(options=options, service=Service(executable_path=str(driver)))
    except WebDriverException as exc:
        unavailable(f"headless Chromium did not start: {exc.msg}")
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    yield from start_demo(tmp_path)


def wait_for(browser: webdriver.Chrome, found: Callable[[webdriver.Chrome], Any], within: float = 120) -> Any:
    """The first true answer of ``found``; a message redrawn under its feet (stale element) just means: look again."""
    waiting = WebDriverWait(browser, within, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException])
    return waiting.until(found)


def click(element: WebElement) -> bool:
    element.click()
    return True


def card(browser: webdriver.Chrome, word: str) -> WebElement | None:
    for message in browser.find_elements(By.CSS_SELECTOR, "#messages .message"):
        fields = message.find_elements(By.CSS_SELECTOR, ".embed .field .value")
        if fields and word in fields[0].text:
            return message
    return None


def screenshot(browser: webdriver.Chrome, folder: Path, name: str) -> Path:
    """The window, scaled down and palette-reduced so the PNG stays small enough to commit."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    browser.execute_script("const box = document.getElementById('messages'); box.scrollTop = box.scrollHeight;")
    browser.save_screenshot(str(path))
    with Image.open(path) as shot:
        height = round(shot.height * SCREENSHOT_WIDTH / shot.width)
        small = shot.convert("RGB").resize((SCREENSHOT_WIDTH, height), Image.Resampling.LANCZOS)
    small.quantize(colors=128).save(path, optimize=True)
    return path


# The page's first video as the browser sees it; with ``play``, started (muted, so no gesture is needed) if paused.
FIRST_VIDEO = """
const video = document.querySelector('#messages video');
if (!video) return null;
if (arguments[0] && video.paused && !video.ended && !video.error) { video.muted = true; video.play().catch(() => {}); }
const error = video.error && video.error.code;
return {ready: video.readyState, width: video.videoWidth, time: video.currentTime, error: error};
"""


def video_until(browser: webdriver.Chrome, reached: Callable[[dict[str, Any]], bool], *, play: bool) -> dict[str, Any]:
    """The first video's state once ``reached`` holds for it or the browser gave up on it (``error`` set)."""

    def settled(b: webdriver.Chrome) -> dict[str, Any] | None:
        seen: dict[str, Any] | None = b.execute_script(FIRST_VIDEO, play)
        return seen if seen is not None and (seen["error"] is not None or reached(seen)) else None

    found: dict[str, Any] = wait_for(browser, settled)
    return found


def run(browser: webdriver.Chrome, command: str, **fields: str) -> None:
    Select(browser.find_element(By.ID, "command-picker")).select_by_value(command)
    for name, value in fields.items():
        browser.find_element(By.NAME, f"opt-{name}").send_keys(value)
    browser.find_element(By.ID, "run-command").click()


def test_a_person_runs_animate_vidu_in_the_page_and_sees_it_through(
    browser: webdriver.Chrome, demo: Demo, tmp_path: Path
) -> None:
    shots = Path(os.environ.get("DEMO_SCREENSHOTS") or tmp_path / "screenshots")
    picture = tmp_path / "harbour.png"
    picture.write_bytes(image_bytes(640, 360, colour="teal"))

    browser.get(demo.url)
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#command-picker option[value='animate vidu']"))
    browser.find_element(By.CSS_SELECTOR, ".tabs [data-tab='knobs']").click()
    assert Select(browser.find_element(By.ID, "speed")).first_selected_option.text == "normal"
    browser.find_element(By.CSS_SELECTOR, ".tabs [data-tab='ledger']").click()

    run(browser, "animate vidu", image=str(picture), prompt="waves roll into a quiet harbour at dusk")
    wait_for(browser, lambda b: card(b, "Generating"))
    wait_for(browser, lambda b: "running" in b.find_element(By.ID, "tab-ledger").text)
    screenshot(browser, shots, "demo-progress.png")

    wait_for(browser, lambda b: card(b, "Done"))
    source = wait_for(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#messages video").get_attribute("src"))
    assert source.endswith(".mp4")
    # A frame to show (HAVE_CURRENT_DATA), then time that moves: the finished video really plays in the page.
    loaded = video_until(browser, lambda video: video["ready"] >= 2, play=False)
    assert (loaded["error"], loaded["width"]) == (None, 320)
    screenshot(browser, shots, "demo-done.png")
    played = video_until(browser, lambda video: video["time"] > 0, play=True)
    assert played["error"] is None

    wait_for(browser, lambda b: click(card(b, "Done").find_element(By.CSS_SELECTOR, "[data-custom-id^='job:reroll:']")))
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#tab-ledger .job")) == 2)

    Select(browser.find_element(By.ID, "member")).select_by_visible_text("Bob")
    run(browser, "jobs list")
    private = wait_for(
        browser,
        lambda b: [
            message.text
            for message in b.find_elements(By.CSS_SELECTOR, "#messages .message.ephemeral")
            if "Bob used /jobs" in message.text and "thinking" not in message.text
        ],
    )[0]
    assert "Only you can see this" in private
    Select(browser.find_element(By.ID, "member")).select_by_visible_text("Alice")
    wait_for(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, "#messages .message.ephemeral"))
