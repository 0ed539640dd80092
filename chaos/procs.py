"""The services as real processes on loopback: started, killed (-9), stopped (SIGTERM), restarted
on the same port. Each writes its output to a log file of the run."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import aiohttp

from chaos.launch import spawn, wait_exit
from chaos.netutil import free_port

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
PROBE = aiohttp.ClientTimeout(total=1)


class Service:
    """`python -m <module>` (or any argv) listening on `port`, ready once `health` answers 200."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        port_variable: str,
        health: str,
        log_dir: Path,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._argv = list(argv)
        self._env = dict(env) | {port_variable: str(self.port)}
        self._health = health
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("ab")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self) -> None:
        """Spawn and wait until ready; a process that exits or never gets ready is an error."""
        self.starts += 1
        self._log.write(f"--- chaos: start #{self.starts} at {time.time():.3f}\n".encode())
        self._log.flush()
        self.proc = spawn(self._argv, env=self._env, log=self._log)
        deadline = time.monotonic() + START_TIMEOUT_S
        async with aiohttp.ClientSession(timeout=PROBE) as http:
            while True:
                try:
                    async with http.get(self.url + self._health) as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited ({self.proc.returncode}): {self.tail()}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready after {START_TIMEOUT_S}s")
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """kill -9: no cleanup at all."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            await wait_exit(self.proc, STOP_TIMEOUT_S)

    async def terminate(self) -> None:
        """SIGTERM, a clean stop (kill -9 if it does not end in time)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if await wait_exit(self.proc, STOP_TIMEOUT_S) is None:
                self._log.write(b"--- chaos: did not stop on SIGTERM in time, killed\n")
                await self.kill()

    def tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-chars:].decode(errors="replace")

    def close(self) -> None:
        self._log.close()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def settings_env(base: Mapping[str, str], settings: Mapping[str, object]) -> dict[str, str]:
    """`base` (without the caller's own service or exchange settings) plus `settings`."""
    ours = ("EXCHANGE_SIM_", "DATABASE_", "ORDERS_", "LISTENER_", "TRACKER_", "PLACEMENT_")
    env = {k: v for k, v in base.items() if not k.startswith(ours)}
    return env | {k.upper(): str(v) for k, v in settings.items() if v is not None}
