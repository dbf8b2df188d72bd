"""The playground page at / in a real browser: headless Chromium, driven by selenium, types a prompt and
watches the completion stream in, stops a long one, and shows the server's errors."""

from __future__ import annotations

import shutil

import httpx
import pytest
from helpers import NAME, make_checkpoint, metric, serving

import gptlab
from gptlab.serve import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    app = create_app(gptlab.load(make_checkpoint(tmp_path_factory.mktemp("playground"))), model_name=NAME,
                     max_batch=2, max_queue=2)
    with serving(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM and DRIVER):
        pytest.fail("the playground test needs Debian's headless browser and its WebDriver (as .ci/run installs"
                    " them): apt-get install chromium chromium-driver", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)  # Debian's driver: nothing downloaded
    yield driver
    driver.quit()


def _fill(browser, url: str, prompt: str, temperature: str, max_tokens: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{url}/")
    for field, value in (("prompt", prompt), ("temperature", temperature), ("max-tokens", max_tokens)):
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)
    browser.find_element(By.ID, "generate").click()


def _text(browser, element_id: str) -> str:
    return browser.execute_script(f"return document.getElementById('{element_id}').textContent")


def _wait(browser, condition, timeout: float = 120) -> None:
    """Until `condition()` holds; the timeout only guards against a hang."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout, poll_frequency=0.02).until(lambda _: condition())


def test_playground_shows_the_apis_completion(url, browser):
    expected = httpx.post(f"{url}/v1/completions", json={"prompt": "red green", "max_tokens": 24, "temperature": 0})
    _fill(browser, url, "red green", "0", "24")
    _wait(browser, lambda: _text(browser, "status").startswith("done"))
    assert _text(browser, "completion") == expected.json()["choices"][0]["text"]
    assert _text(browser, "echo") == "red green"
    assert "24 tokens" in _text(browser, "status") and "finish reason: length" in _text(browser, "status")
    assert _text(browser, "model").startswith(f"model: {NAME}")


def test_playground_streams_and_stop_cancels(url, browser):
    """A full-context completion runs for seconds: text appears while it runs; Stop ends it on the server too,
    short of the 2,000 tokens it asked for."""
    from selenium.webdriver.common.by import By

    before = metric(url, "gptlab_generated_tokens_total")
    _fill(browser, url, "north", "1", "2000")
    # one read of both: text has streamed in while the status still says it is generating
    _wait(browser, lambda: browser.execute_script(
        "return document.getElementById('completion').textContent.length > 20"
        " && document.getElementById('status').textContent === 'generating…'"))
    browser.find_element(By.ID, "stop").click()
    _wait(browser, lambda: _text(browser, "status") == "stopped")
    _wait(browser, lambda: metric(url, "gptlab_requests_running") == 0)
    assert metric(url, "gptlab_generated_tokens_total") - before < 2000


def test_playground_works_with_an_api_key(tmp_path_factory, browser):
    """With --api-key the page still loads; it asks for the key, and with it shows the model and generates."""
    from selenium.webdriver.common.by import By

    app = create_app(gptlab.load(make_checkpoint(tmp_path_factory.mktemp("keyed"))), model_name=NAME, max_batch=2,
                     max_queue=2, api_key="sekret")
    with serving(app) as url:
        _fill(browser, url, "red green", "0", "8")
        _wait(browser, lambda: _text(browser, "status").startswith("error"))
        assert _text(browser, "status").startswith("error 401: missing or incorrect API key")
        _wait(browser, lambda: _text(browser, "model").startswith("This server needs an API key"))
        browser.find_element(By.ID, "api-key").send_keys("sekret")
        browser.find_element(By.ID, "prompt").click()  # leaving the field fires its change event
        _wait(browser, lambda: _text(browser, "model").startswith(f"model: {NAME}"))
        browser.find_element(By.ID, "generate").click()
        _wait(browser, lambda: _text(browser, "status").startswith("done"))
        assert "8 tokens" in _text(browser, "status")


def test_playground_shows_errors(url, browser):
    _fill(browser, url, "north", "0", "99999")
    _wait(browser, lambda: _text(browser, "status").startswith("error"))
    assert _text(browser, "status").startswith("error 400: this model's maximum context length is 2048 tokens")
