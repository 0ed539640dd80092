"""Services as real processes on loopback, for tests that kill, restart or multiply them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


class ApiProcess:
    """`python -m orders_api` with the given settings, on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = settings_env(settings) | {"ORDERS_API_PORT": str(self.port)}
        self.proc = subprocess.Popen([sys.executable, "-m", "orders_api"], env=env)
        wait_http(f"{self.url}/health/ready", self.proc)

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
