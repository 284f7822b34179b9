"""The web page in a real headless Chromium (Debian's chromium and chromium-driver, driven by
selenium): it loads, shows a stream's charts with its alert and follows new readings; an
operator's verdict goes from its button to the feedback file. Screenshots are written to
``$SENSORD_ARTIFACTS`` (default ``build/artifacts``): ``web-page.png`` and
``web-page-verdict.png``. With CI=true a missing browser fails the run instead of skipping."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from sensord.cli.broker import LocalBroker
from sensord.core.bundle import Bundle
from sensord.ops.feedback import read_verdicts
from tests.integration.conftest import mqtt_client, running, scored, settings_for, wait_for
from tests.integration.test_operating import STEP, T0, feed, spiky_series
from tests.integration.test_web import ROUTE

ARTIFACTS = Path(os.environ.get("SENSORD_ARTIFACTS", Path(__file__).parents[2] / "build/artifacts"))


def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing = "Chromium and ChromeDriver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI requires {missing}")
        pytest.skip(f"needs {missing}")
    return chromium, driver


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
    ):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def test_page_shows_a_stream_and_follows_its_readings(
    browser: webdriver.Chrome, broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    values = spiky_series(n=160, spike_at=100)
    settings = settings_for(broker, bundle, tmp_path, web={"port": 0})
    with running(settings) as daemon, mqtt_client(broker) as client:
        feed(client, "s1", values[:110])
        for name in ("pump", "boiler.t1"):
            feed(client, name, values[:30])
        assert wait_for(lambda: scored(daemon) == 170, timeout=60), daemon.stats()
        assert daemon.web is not None
        browser.get(f"http://127.0.0.1:{daemon.web.port}/")

        def texts(selector: str) -> list[str]:
            # in one script: the list is redrawn every two seconds, which makes element
            # references go stale between two calls
            script = "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)"
            found: list[str] = browser.execute_script(script, selector)
            return found

        def charts() -> int:
            return len(browser.find_elements(By.CSS_SELECTOR, ".uplot"))

        # the streams list: every stream, the one in alert first
        assert wait_for(lambda: len(texts("#streams tbody tr")) == 3, 20), texts("#streams tr")
        assert texts("#streams tbody tr td:first-child")[0] == "s1"
        # filtering
        browser.find_element(By.ID, "filter").send_keys("pum")
        assert wait_for(lambda: texts("#streams tbody tr td:first-child") == ["pump"], 20)
        browser.find_element(By.ID, "filter").clear()
        browser.find_element(By.ID, "filter").send_keys("s1")
        assert wait_for(lambda: texts("#streams tbody tr td:first-child") == ["s1"], 20)

        # one stream: a chart per feature and the score's, with the alert listed
        browser.execute_script("document.querySelector('#streams tbody tr').click()")
        assert wait_for(lambda: charts() == len(bundle.features) + 1, 20), charts()

        def last_ts() -> float | None:
            shown = browser.find_element(By.ID, "charts").get_attribute("data-last")
            return float(shown) if shown else None

        assert wait_for(lambda: last_ts() == T0 + 109 * STEP, 20), last_ts()
        assert wait_for(lambda: "raised" in texts("#alerts tbody td"), 20), texts("#alerts td")

        # it follows the stream: new readings show without a reload
        feed(client, "s1", values[110:160], start=110)
        assert wait_for(lambda: scored(daemon) == 220, timeout=60)
        assert wait_for(lambda: last_ts() == T0 + 159 * STEP, 20), last_ts()
        assert wait_for(lambda: "cleared" in texts("#alerts tbody td"), 20)
        points = int(browser.find_element(By.ID, "charts").get_attribute("data-points") or 0)
        assert points >= 60, points  # from before the alert to now
        assert browser.find_element(By.ID, "health").text == "healthy"
        logged = browser.get_log("browser")
        assert not [e for e in logged if e["level"] == "SEVERE"], logged
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "web-page.png"
        assert browser.save_screenshot(str(shot)), "no screenshot"
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 10_000


def test_an_operator_confirms_an_alert_from_the_page(
    browser: webdriver.Chrome, broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    token = "a-token-for-the-browser-test"
    values = spiky_series(n=103, spike_at=100)  # the alert is still up at the end
    settings = settings_for(
        broker, bundle, tmp_path, web={"port": 0, "verdicts": True, "token": token}
    )
    with running(settings) as daemon, mqtt_client(broker) as client:
        feed(client, "s1", values)
        assert wait_for(lambda: scored(daemon) == 103, timeout=60), daemon.stats()
        assert daemon.web is not None
        browser.get(f"http://127.0.0.1:{daemon.web.port}/#{ROUTE}/s1")  # a link to the stream
        buttons = "#alerts button.verdict"
        assert wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, buttons)) == 3, 20)
        browser.execute_script(
            "[...document.querySelectorAll(arguments[0])]"
            ".find(b => b.textContent === 'confirmed').click()",
            buttons,
        )
        assert wait_for(lambda: _prompt(browser) is not None, 10), "no token prompt"
        prompt = browser.switch_to.alert
        prompt.send_keys(token)
        prompt.accept()
        state = browser.find_element(By.ID, "verdict-state")
        assert wait_for(lambda: state.text.startswith("confirmed taken"), 20), state.text
        feedback = "#alerts tbody td:last-child span"
        assert wait_for(
            lambda: any(
                e.text == "confirmed by web page"
                for e in browser.find_elements(By.CSS_SELECTOR, feedback)
            ),
            20,
        )
        verdicts = read_verdicts(settings.feedback_file)
        assert list(verdicts.values()) == ["confirmed"], verdicts
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "web-page-verdict.png"))


def _prompt(browser: webdriver.Chrome) -> str | None:
    try:
        return str(browser.switch_to.alert.text)
    except NoAlertPresentException:
        return None
