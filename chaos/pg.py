"""The suite's own PostgreSQL: a fresh cluster in a temporary directory, on a free loopback port,
that the suite may kill -9, shut down immediately, and start again (crash recovery and all).

The binaries are those of the `pgserver` wheel (the `embedded` extra that `make` installs), else a
system installation (/usr/lib/postgresql/<version>/bin).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import asyncpg

from chaos.launch import spawn, unprivileged_user, wait_exit
from chaos.netutil import free_port

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
# Fast, yet every commit survives a crash of the server's processes: fsync off only gives up
# durability against a crash of the kernel, which never happens here. (synchronous_commit off
# would lose the last commits on kill -9: the suite caught that as lost orders.)
SERVER_OPTIONS = {
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
}


def bin_dir() -> Path:
    """Where initdb, postgres and pg_ctl are."""
    spec = importlib.util.find_spec("pgserver")  # found, not imported: importing starts nothing
    for location in (spec.submodule_search_locations or []) if spec else []:
        embedded = Path(location) / "pginstall" / "bin"
        if (embedded / "postgres").exists():
            return embedded
    system = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if system:
        return system[-1].parent
    raise RuntimeError(
        "no PostgreSQL binaries: install the `embedded` extra (pip install -e '.[embedded]'; "
        "`make` does) or a system PostgreSQL"
    )


class PgCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._bin = bin_dir()
        self._user = unprivileged_user()
        self._log: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    async def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self._user is not None:  # it must reach its directories, and own them
            self.root.parent.chmod(self.root.parent.stat().st_mode | 0o011)
            for path in (self.root, self.socket_dir):
                shutil.chown(path, self._user, self._user)
        self._log = (self.root.parent / "postgres.log").open("ab")
        argv = [str(self._bin / "initdb"), "-D", str(self.data), "-U", "postgres"]
        initdb = spawn(
            [*argv, "--auth=trust", "--encoding=UTF8", "--no-sync"],
            log=self._log,
            user=self._user,
        )
        code = await wait_exit(initdb, START_TIMEOUT_S)
        if code != 0:
            raise RuntimeError(f"initdb failed ({code}): see {self.root.parent / 'postgres.log'}")

    async def start(self, tries: int = 3) -> None:
        """Start the server and wait until it accepts connections (after any crash recovery)."""
        for attempt in range(1, tries + 1):
            try:
                await self._start_once()
            except RuntimeError:
                if attempt == tries:
                    raise
                await asyncio.sleep(1)
            else:
                return

    async def _start_once(self) -> None:
        argv = [str(self._bin / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        argv += ["-h", "127.0.0.1", "-k", str(self.socket_dir)]
        for name, value in SERVER_OPTIONS.items():
            argv += ["-c", f"{name}={value}"]
        self.proc = spawn(argv, log=self._log, user=self._user, new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=2)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {exc!r}") from exc
                await asyncio.sleep(0.1)
                continue
            await conn.close()
            return

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def crash(self) -> None:
        """kill -9 of the postmaster and every backend at once: the server crashed."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        await wait_exit(self.proc, STOP_TIMEOUT_S)
        await self._until_orphans_gone()

    async def shutdown_immediate(self) -> None:
        """`pg_ctl stop -m immediate`: backends quit at once, no checkpoint; recovery on start."""
        await self._signal_and_wait(signal.SIGQUIT)

    async def stop(self) -> None:
        """A fast shutdown (then kill -9 if it hangs)."""
        await self._signal_and_wait(signal.SIGINT)

    async def _signal_and_wait(self, signum: signal.Signals) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            if await wait_exit(self.proc, STOP_TIMEOUT_S) is None:
                await self.crash()
        await self._until_orphans_gone()

    async def _until_orphans_gone(self) -> None:
        """A new postmaster refuses to start while backends of the old one still run (zombies,
        waiting for an init that may never reap them, do not count)."""
        if self.proc is None:
            return
        group = self.proc.pid
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and _group_alive(group):  # noqa: ASYNC110 (a pid)
            await asyncio.sleep(0.05)

    async def terminate_backends(self) -> int:
        """pg_terminate_backend of every client backend but ours: how many were ended."""
        conn = await asyncpg.connect(self.dsn, timeout=5)
        try:
            ended: int = await conn.fetchval(
                """SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
                     FROM pg_stat_activity
                    WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"""
            )
        finally:
            await conn.close()
        return ended

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


def _group_alive(group: int) -> bool:
    """Whether a process of this process group runs (zombies aside)."""
    import psutil

    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == group and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False
