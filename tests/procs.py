"""Services as real processes on loopback, for tests that kill, restart or multiply them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any
from urllib.error import URLError
from urllib.request import urlopen

from orders_core.settings import Settings
from tests.sim import free_port


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a process read these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXCHANGE_SIM_", "CI_"))}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[name.upper()] = str(value)
    return env


def wait_http(url: str, proc: subprocess.Popen[Any], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urlopen(url, timeout=1) as resp:  # noqa: S310 (loopback)
                if resp.status == 200:
                    return
        except (URLError, OSError):
            pass
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args!r} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not up after {timeout_s}s")
        time.sleep(0.1)


class ServiceProcess:
    """`python -m <module>` with the given settings, on a free port, up once its health is."""

    module = ""
    port_variable = ""

    def __init__(self, settings: Settings, **env: str) -> None:
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
        wait_http(f"{self.url}/health/ready", self.proc)

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON log line the process wrote so far."""
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        return [json.loads(raw) for raw in text.splitlines() if raw.startswith("{")]

    def metric(self, name: str) -> float:
        """The value of one unlabelled (or fully written out) sample from /metrics."""
        with urlopen(f"{self.url}/metrics", timeout=5) as resp:  # noqa: S310 (loopback)
            for line in resp.read().decode().splitlines():
                if line.startswith(f"{name} "):
                    return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name} not in {self.module}'s metrics")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease released: a crash."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class ApiProcess(ServiceProcess):
    module = "orders_api"
    port_variable = "ORDERS_API_PORT"


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
