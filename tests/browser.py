"""Headless Chromium (Debian's `chromium`), driven over its DevTools protocol, for the tests of the
pages people read (/docs, the tracker's page).

Every page runs with the network beyond this machine cut off twice over: host names other than
127.0.0.1 resolve to nothing, and every request that is not for loopback is sent to a proxy that
refuses connections. The `Page` records every request the page made and every request that
failed, so a test can prove that nothing beyond loopback was needed.

In CI (CI=true) a missing chromium fails the test; elsewhere it skips it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where screenshots go (CI's log prints their paths): SCREENSHOT_DIR, else .artifacts/ here.
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", ROOT / ".artifacts" / "screenshots"))
START_TIMEOUT_S = 30.0
FLAGS = (
    "--headless",
    "--no-sandbox",  # the tests run as root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",  # nothing listens there: every proxied request fails
    "--proxy-bypass-list=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1280,900",
)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
LOCAL_SCHEMES = {"data", "blob", "about"}


def chromium() -> str:
    """The browser's path; fails the test in CI if there is none, skips it elsewhere."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def beyond_loopback(urls: list[str]) -> list[str]:
    """The URLs that would have left this machine."""
    out = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in LOCAL_SCHEMES and parts.hostname not in LOOPBACK:
            out.append(url)
    return out


class Page:
    """One tab, attached in flat mode: every command carries its session id."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self._browser = browser
        self.session_id = session_id
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        self._loaded = asyncio.Event()

    async def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self._browser.send(method, params, self.session_id)

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.failed.append(f"{params.get('type')} {params['errorText']}")
        elif method == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(params["exceptionDetails"])[:500])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(params["entry"]["text"])
        elif method == "Page.loadEventFired":
            self._loaded.set()

    async def goto(self, url: str, timeout_s: float = 20.0) -> None:
        self._loaded.clear()
        answer = await self.send("Page.navigate", {"url": url})
        assert "errorText" not in answer, answer
        await asyncio.wait_for(self._loaded.wait(), timeout_s)

    async def click(self, selector: str, timeout_s: float = 20.0) -> None:
        """Click the element and wait for the page it leads to."""
        self._loaded.clear()
        found = await self.evaluate(
            f"(e => e ? (e.click(), true) : false)(document.querySelector({json.dumps(selector)}))"
        )
        assert found, f"nothing matches {selector}"
        await asyncio.wait_for(self._loaded.wait(), timeout_s)

    async def evaluate(self, expression: str) -> Any:
        answer = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while not (value := await self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise AssertionError(f"not true after {timeout_s} s: {expression}")
            await asyncio.sleep(0.1)
        return value

    async def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    async def screenshot(self, name: str) -> Path:
        """The whole page as a PNG in SCREENSHOTS; its path."""
        size = (await self.send("Page.getLayoutMetrics"))["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = await self.send(
            "Page.captureScreenshot",
            {"format": "png", "clip": clip, "captureBeyondViewport": True},
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


class Browser:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._pages: dict[str, Page] = {}
        self._reader = asyncio.create_task(self._read())

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session_id: str | None = None
    ) -> Any:
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[message["id"]] = future
        await self._ws.send_json(message)
        return await asyncio.wait_for(future, 30)

    async def _read(self) -> None:
        async for msg in self._ws:
            data = json.loads(msg.data)
            if "id" in data:
                future = self._waiting.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(f"{data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            elif (page := self._pages.get(data.get("sessionId", ""))) is not None:
                page.on_event(data["method"], data.get("params", {}))

    async def new_page(self) -> Page:
        target = (await self.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
        attached = await self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = self._pages[attached["sessionId"]] = Page(self, attached["sessionId"])
        for domain in ("Page", "Network", "Runtime", "Log"):
            await page.send(f"{domain}.enable")
        return page

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _devtools_url(profile: Path, proc: subprocess.Popen[bytes]) -> str:
    """Chromium writes its port and the browser's path to DevToolsActivePort once it listens."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not marker.exists() or len(marker.read_text().split()) < 2:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"chromium did not listen within {START_TIMEOUT_S} s")
        time.sleep(0.05)
    port, path = marker.read_text().split()[:2]
    return f"ws://127.0.0.1:{port}{path}"


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    """A fresh headless Chromium (its own profile), closed at the end with all its processes."""
    binary = chromium()
    # Chromium's helpers may write to the profile until the last one is gone: ignore leftovers.
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as tmp:
        profile = Path(tmp)
        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            url = await asyncio.to_thread(_devtools_url, profile, proc)
            async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
                driver = Browser(ws)
                try:
                    yield driver
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(driver.send("Browser.close"), 5)
                    await driver.close()
        finally:
            await asyncio.to_thread(_stop, proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Chromium and every helper process it started (its own process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(10)
            time.sleep(0.2)  # the helpers exit with it
            return
        except subprocess.TimeoutExpired:
            continue


class _Screenshots:
    """A pytest plugin: the screenshots taken, listed at the end of the run's report (so that
    CI's log says where they are, whether the tests passed or not)."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        terminalreporter.section("browser screenshots")
        for path in self.paths:
            terminalreporter.write_line(path)


def announce(config: pytest.Config, path: Path, what: str) -> None:
    """Print where a screenshot is, now (pytest -s) and in the run's closing summary."""
    plugin = config.pluginmanager.get_plugin("browser-screenshots")
    if not isinstance(plugin, _Screenshots):
        plugin = _Screenshots()
        config.pluginmanager.register(plugin, "browser-screenshots")
    plugin.paths.append(f"{what}: {path}")
    print(f"screenshot of {what}: {path}")
