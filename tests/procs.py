"""Services as real processes on loopback, for tests that kill, restart or multiply them.

Everything that waits here is async: the tests that use these run on an event loop that also
serves in-process servers (the API under test, a database proxy, a webhook receiver), and a
blocking wait would stop those too. `await ApiProcess.start(settings)` returns once the service
is ready; `async with` (or `await proc.stop()`) stops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import Any, Self

import aiohttp

from orders_core.settings import Settings
from tests.helpers import auth_headers
from tests.sim import free_port, wait_exit

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=1)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a process read these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXCHANGE_SIM_", "CI_"))}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[name.upper()] = str(value)
    return env


async def wait_http(url: str, proc: subprocess.Popen[Any], timeout_s: float = 30.0) -> None:
    """Until `url` answers 200; fails as soon as `proc` exits, or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=PROBE_TIMEOUT) as http:
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args!r} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} not up after {timeout_s}s")
            await asyncio.sleep(0.1)


class ServiceProcess:
    """`python -m <module>` with the given settings, on a free port.

    Start it with `await Cls.start(settings)`: the constructor only spawns the process."""

    module = ""
    port_variable = ""

    def __init__(self, settings: Settings, **env: str) -> None:
        self.headers: dict[str, str] = {}  # what a client sends to be let in
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.env = settings_env(settings) | {self.port_variable: str(self.port)} | env
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @classmethod
    async def start(cls, settings: Settings, **env: str) -> Self:
        """Spawn the service and wait until its health says ready; stopped again if it never is."""
        service = cls(settings, **env)
        try:
            await wait_http(f"{service.url}/health/ready", service.proc, START_TIMEOUT_S)
        except AssertionError as exc:
            output = service.output()[-4000:]
            await service.stop()
            raise AssertionError(f"{cls.module} did not start: {exc}\n{output}") from None
        except BaseException:
            await service.stop()
            raise
        return service

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def output(self) -> str:
        """What the process has written so far (stdout and stderr)."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON log line the process wrote so far."""
        return [json.loads(raw) for raw in self.output().splitlines() if raw.startswith("{")]

    async def metric(self, name: str) -> float:
        """The value of one unlabelled (or fully written out) sample from /metrics."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            http.get(f"{self.url}/metrics") as resp,
        ):
            text = await resp.text()
        for line in text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name} not in {self.module}'s metrics")

    async def kill(self) -> None:
        """SIGKILL: no cleanup, no lease released: a crash."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        await wait_exit(self.proc, STOP_TIMEOUT_S)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited in time; the log is closed afterwards."""
        if self.proc.poll() is None:
            self.proc.terminate()
            if await wait_exit(self.proc, STOP_TIMEOUT_S) is None:
                await self.kill()
        self._log.close()


class ApiProcess(ServiceProcess):
    """An API instance, and `headers` with a `trade` key of the account `test` for its clients."""

    module = "orders_api"
    port_variable = "ORDERS_API_PORT"

    @classmethod
    async def start(cls, settings: Settings, **env: str) -> Self:
        api = await super().start(settings, **env)
        assert settings.database_url is not None
        api.headers = await auth_headers(settings.database_url)
        return api


class ListenerProcess(ServiceProcess):
    module = "exchange_listener"
    port_variable = "LISTENER_PORT"


class TrackerProcess(ServiceProcess):
    module = "tracker"
    port_variable = "TRACKER_PORT"

    def reported(self, kind: str = "failure") -> list[str]:
        """Order ids of the report log lines of this kind, in order, repeats kept."""
        return [
            line["order_id"]
            for line in self.lines()
            if line.get("event") == "order_reported" and line.get("kind") == kind
        ]
