"""A real PgBouncer (Debian's `pgbouncer`; 1.18 is what we test) in transaction mode in front of a
PostgreSQL, on a free loopback port: what operators put between many instances and the database.

The chaos suite's `bouncer` profile runs the services through one, and restarts it;
tests/test_pgbouncer.py runs its processes through one too. Started through chaos.launch, it dies
with whoever started it.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from chaos.launch import spawn, unprivileged_user, wait_exit
from chaos.netutil import free_port

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def installed() -> bool:
    return Path(BINARY).exists()


class PgBouncer:
    """`pool_size` server connections per database; `directory` (else a temporary one, removed
    by `stop`) holds its configuration and its log."""

    def __init__(self, server_dsn: str, pool_size: int = 10, directory: Path | None = None) -> None:
        parts = urlsplit(server_dsn)
        host = parts.hostname or "127.0.0.1"
        if "host=" in parts.query:  # a unix socket directory, as the embedded server gives
            host = parts.query.split("host=", 1)[1].split("&", 1)[0]
        self._server = (host, parts.port or 5432, parts.username or "postgres")
        # It will not run as root. Through a unix socket it runs as the socket's owner (the
        # embedded server's directory is private to it); else as an unprivileged user.
        self._os_user: str | None = None
        if os.geteuid() == 0:
            self._os_user = (
                pwd.getpwuid(os.stat(host).st_uid).pw_name
                if host.startswith("/")
                else unprivileged_user()
            )
        self.port = free_port()
        self._temporary = directory is None
        self._dir = Path(tempfile.mkdtemp(prefix="pgbouncer-")) if directory is None else directory
        self._pool_size = pool_size
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def dsn(self, database: str = "postgres") -> str:
        """The DSN of `database` through the bouncer."""
        user = self._server[2]
        return urlunsplit(("postgresql", f"{user}@127.0.0.1:{self.port}", f"/{database}", "", ""))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self) -> Self:
        """Start it (again, on the same port after a stop) and wait until it answers."""
        host, port, user = self._server
        self._dir.mkdir(parents=True, exist_ok=True)
        ini = self._dir / "pgbouncer.ini"
        # A server that was down is tried again within a second (the default waits 15 s).
        ini.write_text(
            "[databases]\n"
            f"* = host={host} port={port} user={user}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self._dir}\n"
            "auth_type = trust\n"
            f"auth_file = {self._dir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self._pool_size}\nmax_client_conn = 2000\n"
            "server_reset_query =\nignore_startup_parameters = extra_float_digits\n"
            "server_login_retry = 1\nserver_connect_timeout = 5\n"
            f"logfile = {self._dir / 'pgbouncer.log'}\n"
        )
        (self._dir / "users.txt").write_text(f'"{user}" ""\n')
        if self._os_user is not None:
            for path in (self._dir, *self._dir.iterdir()):
                shutil.chown(path, self._os_user)
        self.starts += 1
        self.proc = spawn([BINARY, str(ini)], user=self._os_user)
        await self._wait_ready()
        return self

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited ({self.proc.returncode}): {self.log()}")
            try:
                conn = await asyncpg.connect(self.dsn(), statement_cache_size=0, timeout=2)
            except (OSError, TimeoutError, asyncpg.PostgresError):
                await asyncio.sleep(0.1)
                continue
            await conn.close()
            return
        raise RuntimeError(f"pgbouncer did not start: {self.log()}")

    def log(self) -> str:
        path = self._dir / "pgbouncer.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def last_fatal(self) -> str | None:
        """Its last FATAL log line (what it said when it ended itself), if any."""
        path = self._dir / "pgbouncer.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        fatal = [line for line in text.splitlines() if " FATAL " in line]
        return fatal[-1].split(" FATAL ", 1)[1] if fatal else None

    async def halt(self, signum: signal.Signals = signal.SIGTERM) -> None:
        """End the process: SIGTERM is PgBouncer's immediate shutdown (every client and server
        connection closed at once), SIGKILL a crash; kill -9 if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signum)
        if await wait_exit(self.proc, STOP_TIMEOUT_S) is None:
            self.proc.kill()
            await wait_exit(self.proc, STOP_TIMEOUT_S)

    async def stop(self) -> None:
        """Halt it; a temporary directory goes too."""
        await self.halt()
        if self._temporary:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, *_: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        await self.stop()
