"""The stand-in exchange as a real subprocess on loopback, and helpers for its `/_sim` controls."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(port: int, env: Mapping[str, str]) -> dict[str, str]:
    """Our environment without any exchange settings of the caller's shell, then ours."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EXCHANGE_SIM_") and k not in ("BIND_HOST", "LOG_LEVEL")
    }
    return inherited | {"EXCHANGE_SIM_PORT": str(port), "BIND_HOST": "127.0.0.1"} | dict(env)


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


class SimProcess:
    """One `python -m exchange_sim` process. Use `SimProcess.start(env)` as a context manager."""

    def __init__(self, env: Mapping[str, str], port: int, log: IO[bytes]) -> None:
        self.env = dict(env)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = log  # the child's stdout and stderr, read when it fails to start
        self.proc = self._spawn()

    @classmethod
    @contextmanager
    def start(cls, env: Mapping[str, str] | None = None) -> Iterator[SimProcess]:
        with tempfile.TemporaryFile() as log:
            sim = cls._launch(env or {}, log)
            try:
                yield sim
            finally:
                sim.stop()

    @classmethod
    def _launch(cls, env: Mapping[str, str], log: IO[bytes], attempts: int = 3) -> SimProcess:
        """Start on a free port; try another port if the chosen one was taken meanwhile."""
        for attempt in range(1, attempts + 1):
            log.seek(0)
            log.truncate()
            sim = cls(env, free_port(), log)
            try:
                sim._wait_healthy()
            except RuntimeError:
                sim.stop()
                if attempt == attempts or "address already in use" not in sim.output().lower():
                    raise
            else:
                return sim
        raise ValueError("attempts must be >= 1")

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "exchange_sim"],
            cwd=ROOT,
            env=child_env(self.port, self.env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exchange-sim exited ({self.proc.returncode}): {self.output()}")
            if _healthy(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"exchange-sim not healthy after {START_TIMEOUT_S}s: {self.output()}")

    def output(self) -> str:
        """What the process has written so far (stdout and stderr)."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within a few seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: the exchange dies at once, everything it held in memory with it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def restart(self, env: Mapping[str, str] | None = None) -> None:
        """Stop (if running) and start again on the same port; `env` adds to the start's env."""
        self.stop()
        self.env |= dict(env or {})
        self.proc = self._spawn()
        self._wait_healthy()

    # --- /_sim controls ---------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        body: object = None,
        session: aiohttp.ClientSession | None = None,
    ) -> Any:
        if session is None:
            async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as own:
                return await self._call(method, path, body, own)
        async with session.request(method, self.url + path, json=body) as resp:
            if resp.status >= 400:
                raise AssertionError(f"{method} {path} -> {resp.status}: {await resp.text()}")
            return await resp.json() if resp.status != 204 else None

    async def configure(
        self, session: aiohttp.ClientSession | None = None, **knobs: Any
    ) -> dict[str, Any]:
        """Set some knobs; returns all of them."""
        config: dict[str, Any] = await self._call("POST", "/_sim/config", knobs, session)
        return config

    async def config(self, session: aiohttp.ClientSession | None = None) -> dict[str, Any]:
        config: dict[str, Any] = await self._call("GET", "/_sim/config", None, session)
        return config

    async def ledger(
        self, session: aiohttp.ClientSession | None = None
    ) -> dict[str, dict[str, Any]]:
        """The exchange's ledger keyed by client_order_id."""
        body = await self._call("GET", "/_sim/ledger", None, session)
        return {entry["client_order_id"]: entry for entry in body["orders"]}

    async def requests(self, session: aiohttp.ClientSession | None = None) -> dict[str, Any]:
        """`{client_order_id: {"place": n, "lookup": n, "cancel": n}}`."""
        counts: dict[str, Any] = await self._call("GET", "/_sim/requests", None, session)
        return counts

    async def stats(self, session: aiohttp.ClientSession | None = None) -> dict[str, int]:
        """`{"overlapping_requests", "max_in_flight_per_id", "in_flight"}`."""
        stats: dict[str, int] = await self._call("GET", "/_sim/stats", None, session)
        return stats

    async def reset(self, session: aiohttp.ClientSession | None = None) -> None:
        """Forget every order, count and stat; knobs back to those the process started with."""
        await self._call("POST", "/_sim/reset", None, session)

    async def disconnect(self, session: aiohttp.ClientSession | None = None) -> None:
        """Close every stream connection at once."""
        await self._call("POST", "/_sim/disconnect", None, session)
