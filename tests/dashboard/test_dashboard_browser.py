"""Every page in a real browser: start the app as `voltrisk up` does, open each page in
headless Chromium against the seeded warehouse, and save docs/screenshots/<page>.png."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from dashboard_browser import Browser, chromium_binary
from dashboard_seed import REPO, VEHICLES, free_port

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
    "vehicle": ("vehicle", "Multiplier (ubi-telematics v1)"),
    "pricing-lab": ("pricing-lab", "Premium down > 5 %"),
    "fraud": ("fraud", "Telematics verification per claim"),
}


@contextmanager
def dashboard(env: dict[str, str], log: Path):
    """The dashboard served exactly as `voltrisk up` serves it (streamlit_argv), on a free port."""
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(streamlit_argv("127.0.0.1", port), env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"streamlit did not start:\n{log.read_text()[-2000:]}") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


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
