"""Headless Chromium driven over the DevTools protocol: open a page, wait for content, screenshot.

Debian's ``chromium`` package is the browser; nothing is downloaded at test time.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

# Streamlit has rendered when its app view exists and the "running" widget is gone
_SETTLED = """(() => {
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main || document.querySelector('[data-testid="stStatusWidget"]')) return null;
  if (document.querySelector('[data-testid="stSkeleton"]')) return null;
  return document.body.innerText;
})()"""


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, profile: Path, width: int = 1440, height: int = 1600):
        binary = chromium_binary()
        if binary is None:
            raise RuntimeError("Chromium is not installed: apt-get install -y chromium")
        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
             "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--hide-scrollbars",
             f"--window-size={width},{height}", "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port within 30 s")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = connect(target["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024)
        self._ids = itertools.count(1)
        self.call("Page.enable")

    def call(self, method: str, **params):
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def send_headers(self, headers: dict[str, str]) -> None:
        """Add these headers to every later request, as a reverse proxy would."""
        self.call("Network.enable")
        self.call("Network.setExtraHTTPHeaders", headers=headers)

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str, expect: str, timeout_s: float = 60, settle_s: float = 1.0) -> str:
        """Load ``url``, wait until the page has rendered and shows ``expect``; return its text."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        text = None
        while time.monotonic() < deadline:
            text = self.evaluate(_SETTLED)
            if text and expect in text:
                time.sleep(settle_s)  # let charts and maps paint
                return self.evaluate(_SETTLED) or text
            time.sleep(0.3)
        raise AssertionError(f"{url} did not show {expect!r} within {timeout_s} s; it shows: {text!r}")

    def click(self, x: float, y: float) -> None:
        """A left click at page coordinates, after hovering there as a person would (deck.gl picks on hover)."""
        for dx in (-6, -3, 0):
            self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x + dx, y=y, button="none")
            time.sleep(0.3)
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", buttons=1, clickCount=1)
        time.sleep(0.08)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", buttons=0, clickCount=1)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
