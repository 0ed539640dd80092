"""The stand-in exchange as a real subprocess on loopback, and helpers for its `/_sim` controls.

Starting, stopping and restarting come in two forms: async (`start_async`, `stop_async`,
`kill_async`, `restart_async`) for async tests, whose event loop must keep running meanwhile, and
blocking (`start`, `stop`, `kill`, `restart`) for the session fixture, which has no event loop.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=1)
POLL_S = 0.05


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


async def wait_exit(proc: subprocess.Popen[Any], timeout_s: float) -> int | None:
    """The exit code once `proc` has exited, or None if it still runs after `timeout_s`; waits
    without blocking the event loop."""
    deadline = time.monotonic() + timeout_s
    while (code := proc.poll()) is None:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(POLL_S)
    return code


async def _healthy_async(port: int) -> bool:
    try:
        async with (
            aiohttp.ClientSession(timeout=PROBE_TIMEOUT) as session,
            session.get(f"http://127.0.0.1:{port}/health") as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


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
    """One `python -m exchange_sim` process. Use `SimProcess.start_async(env)` (async tests) or
    `SimProcess.start(env)` (no event loop) as a context manager."""

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
    @asynccontextmanager
    async def start_async(cls, env: Mapping[str, str] | None = None) -> AsyncIterator[SimProcess]:
        with tempfile.TemporaryFile() as log:
            sim = await cls._launch_async(env or {}, log)
            try:
                yield sim
            finally:
                await sim.stop_async()

    @classmethod
    def _launch(cls, env: Mapping[str, str], log: IO[bytes], attempts: int = 3) -> SimProcess:
        """Start on a free port; try another port if the chosen one was taken meanwhile."""
        for attempt in range(1, attempts + 1):
            sim = cls._on_free_port(env, log)
            try:
                sim._wait_healthy()
            except RuntimeError:
                sim.stop()
                if attempt == attempts or not sim._port_taken():
                    raise
            else:
                return sim
        raise ValueError("attempts must be >= 1")

    @classmethod
    async def _launch_async(
        cls, env: Mapping[str, str], log: IO[bytes], attempts: int = 3
    ) -> SimProcess:
        """`_launch`, waiting without blocking the event loop."""
        for attempt in range(1, attempts + 1):
            sim = cls._on_free_port(env, log)
            try:
                await sim._wait_healthy_async()
            except RuntimeError:
                await sim.stop_async()
                if attempt == attempts or not sim._port_taken():
                    raise
            else:
                return sim
        raise ValueError("attempts must be >= 1")

    @classmethod
    def _on_free_port(cls, env: Mapping[str, str], log: IO[bytes]) -> SimProcess:
        log.seek(0)
        log.truncate()
        return cls(env, free_port(), log)

    def _port_taken(self) -> bool:
        return "address already in use" in self.output().lower()

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
            self._check_running()
            if _healthy(self.port):
                return
            time.sleep(POLL_S)
        raise self._not_healthy()

    async def _wait_healthy_async(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_running()
            if await _healthy_async(self.port):
                return
            await asyncio.sleep(POLL_S)
        raise self._not_healthy()

    def _check_running(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"exchange-sim exited ({self.proc.returncode}): {self.output()}")

    def _not_healthy(self) -> RuntimeError:
        return RuntimeError(f"exchange-sim not healthy after {START_TIMEOUT_S}s: {self.output()}")

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

    async def stop_async(self) -> None:
        """`stop`, waiting without blocking the event loop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if await wait_exit(self.proc, STOP_TIMEOUT_S) is None:
                await self.kill_async()

    async def kill_async(self) -> None:
        """`kill`, waiting without blocking the event loop."""
        if self.proc.poll() is None:
            self.proc.kill()
        await wait_exit(self.proc, STOP_TIMEOUT_S)

    async def restart_async(self, env: Mapping[str, str] | None = None) -> None:
        """`restart`, waiting without blocking the event loop."""
        await self.stop_async()
        self.env |= dict(env or {})
        self.proc = self._spawn()
        await self._wait_healthy_async()

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
