"""A real PgBouncer (Debian's `pgbouncer`) in transaction mode in front of the test's server, on a
free loopback port: what operators put between many instances and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.sim import free_port

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def require_pgbouncer() -> None:
    """Skip without PgBouncer; in CI (CI=true) fail instead: .ci/run installs it."""
    if Path(BINARY).exists():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)")
    pytest.skip("pgbouncer is not installed")


class PgBouncer:
    def __init__(self, server_dsn: str, pool_size: int = 10) -> None:
        parts = urlsplit(server_dsn)
        host = parts.hostname or "127.0.0.1"
        if "host=" in parts.query:  # a unix socket directory, as the embedded server gives
            host = parts.query.split("host=", 1)[1].split("&", 1)[0]
        self._server = (host, parts.port or 5432, parts.username or "postgres")
        # It will not run as root. Through a unix socket it runs as the socket's owner (the
        # embedded server's directory is private to it); else as postgres.
        self._os_user = (
            pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/") else ("postgres")
        )
        self._parts = parts
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self._pool_size = pool_size
        self._proc: subprocess.Popen[bytes] | None = None

    def dsn(self, database: str) -> str:
        """The DSN of `database` through the bouncer."""
        user = self._server[2]
        return urlunsplit(("postgresql", f"{user}@127.0.0.1:{self.port}", f"/{database}", "", ""))

    async def start(self) -> Self:
        host, port, user = self._server
        ini = self._dir / "pgbouncer.ini"
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
            f"logfile = {self._dir / 'pgbouncer.log'}\n"
        )
        (self._dir / "users.txt").write_text(f'"{user}" ""\n')
        for path in (self._dir, *self._dir.iterdir()):
            shutil.chown(path, self._os_user)
        self._proc = subprocess.Popen(
            [BINARY, "-u", self._os_user, str(ini)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await self._wait_ready()
        return self

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise AssertionError(f"pgbouncer exited: {self.log()}")
            try:
                conn = await asyncpg.connect(
                    self.dsn("postgres"), statement_cache_size=0, timeout=2
                )
            except (OSError, TimeoutError, asyncpg.PostgresError):
                await asyncio.sleep(0.1)
                continue
            await conn.close()
            return
        raise AssertionError(f"pgbouncer did not start: {self.log()}")

    def log(self) -> str:
        path = self._dir / "pgbouncer.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    async def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            await asyncio.to_thread(self._proc.wait, 10)
        shutil.rmtree(self._dir, ignore_errors=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, *_: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        await self.stop()
