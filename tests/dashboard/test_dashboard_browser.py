"""Every page in a real browser: start the app as `voltrisk up` does, open each page in
headless Chromium against the seeded warehouse, and save docs/screenshots/<page>.png."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path

import h3
import pandas as pd

import pytest
from dashboard_browser import Browser, chromium_binary
from dashboard_seed import CELLS, REPO, VEHICLES, free_port, running

from dashboard import services
from dashboard.cli import streamlit_argv

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(chromium_binary() is None, reason="Chromium is not installed (apt-get install -y chromium)"),
]

SCREENSHOTS = REPO / "docs" / "screenshots"
# screenshot name -> (url path, text that only shows once the page has read the warehouse)
PAGES = {
    "pipeline": ("", "Last event per carmaker"),
    "portfolio": ("portfolio", "pay less than the base premium"),
    "risk-map": ("risk-map", "Cells by risk"),
    "vehicle": ("vehicle", "Multiplier (ubi-telematics@v1)"),
    "pricing-lab": ("pricing-lab", "Premium down > 5 %"),
    "fraud": ("fraud", "Telematics verification per claim"),
}


@contextmanager
def dashboard(env: dict[str, str], log: Path):
    """The dashboard served exactly as `voltrisk up` serves it (streamlit_argv), on a free port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(streamlit_argv("127.0.0.1", port), env, log, url + "/_stcore/health"):
        yield url


@pytest.fixture(scope="module")
def app_url(seeded_url, registry_root, tmp_path_factory):
    env = {"VOLTRISK_DASHBOARD_CLICKHOUSE_URL": seeded_url, "VOLTRISK_MODEL_REGISTRY_DIR": str(registry_root)}
    with dashboard(env, tmp_path_factory.mktemp("dash-app") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.mark.parametrize("page", list(PAGES))
def test_dashboard_page_in_browser(app_url, browser, page):
    path, expect = PAGES[page]
    text = " ".join(browser.open(f"{app_url}/{path}", expect=expect).split())
    assert "Traceback" not in text and "Page not found" not in text
    if page == "pipeline":
        assert f"Vehicles {len(VEHICLES)} Events stored 3,360" in text
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.screenshot(SCREENSHOTS / f"{page}.png")


def test_proxy_mode_in_browser(seeded_url, tmp_path):
    env = {"VOLTRISK_DASHBOARD_CLICKHOUSE_URL": seeded_url, "VOLTRISK_DASHBOARD_AUTH": "proxy"}
    with dashboard(env, tmp_path / "streamlit.log") as url:
        anonymous = Browser(tmp_path / "anonymous")
        try:
            text = anonymous.open(url, expect="Sign in through the organisation's proxy")
            assert "Vehicles" not in text
        finally:
            anonymous.close()
        proxied = Browser(tmp_path / "proxied")
        try:
            proxied.send_headers({"X-Forwarded-User": "li.na@insurer.example"})
            text = proxied.open(url, expect="Last event per carmaker")
            assert "Signed in as li.na@insurer.example" in text
        finally:
            proxied.close()


def _on_map(rect: list[float], centre: tuple[float, float], zoom: float, lat: float, lon: float) -> tuple[float, float]:
    """Page coordinates of (lat, lon) on a deck.gl map of ``rect`` centred on ``centre`` (Web Mercator, 512 px tiles)."""
    scale = 512 * 2**zoom

    def y(la: float) -> float:
        return math.log(math.tan(math.pi / 4 + math.radians(la) / 2)) / (2 * math.pi)

    return (rect[0] + rect[2] / 2 + (lon - centre[1]) / 360 * scale,
            rect[1] + rect[3] / 2 - (y(lat) - y(centre[0])) * scale)


def test_risk_map_click_opens_the_cells_profile(app_url, browser):
    text = browser.open(f"{app_url}/risk-map", expect="Cells by risk")
    assert "Vehicles\n\n8" in text  # the riskiest cell's profile by default
    rect = browser.evaluate("(() => { const r = document.querySelector('canvas').getBoundingClientRect();"
                            " return [r.x, r.y, r.width, r.height]; })()")
    shown = [h for h, (_, _, n) in CELLS.items() if n >= 5]
    centre = services.cell_centre(pd.Series(shown))
    at = _on_map(rect, centre, 9.5, *h3.cell_to_latlng("873099400ffffff"))  # zoom of views/risk_map.py
    # the canvas is laid out before the map answers clicks (on a loaded machine, seconds
    # later): a click that found no map yet is given again, as a user would
    deadline, clicked = time.monotonic() + 30, 0.0
    while "Vehicles 5 " not in " ".join((browser.evaluate("document.body.innerText") or "").split()):
        assert time.monotonic() < deadline, "clicking the 5-vehicle cell did not open its profile"
        if time.monotonic() - clicked > 5:
            browser.click(*at)
            clicked = time.monotonic()
        time.sleep(0.3)


def test_fraud_queue_row_click_opens_the_alert(app_url, browser):
    browser.open(f"{app_url}/fraud", expect="Telematics verification per claim")
    rect = browser.evaluate("(() => { const r = document.querySelector('[data-testid=\"stDataFrame\"]').getBoundingClientRect();"
                            " return [r.x, r.y, r.width, r.height]; })()")
    row_px = 35  # Streamlit's data grid: header and rows 35 px high; selection checkboxes in the first column
    browser.click(rect[0] + 18, rect[1] + row_px + row_px * 1.5)  # the second alert
    deadline = time.monotonic() + 20
    while "alert-c4 · ring ring-2 · 2 claims" not in (browser.evaluate("document.body.innerText") or ""):
        assert time.monotonic() < deadline, "clicking the second queue row did not open alert-c4"
        time.sleep(0.3)
