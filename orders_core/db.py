"""The PostgreSQL connection: where it is (a DSN, else an embedded server) and the pool."""

from __future__ import annotations

import asyncio
import logging
import random
import warnings
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from orders_core.backoff import backoff_s
from orders_core.pool_metrics import track_pool
from orders_core.settings import Settings

log = logging.getLogger(__name__)

# What a call to the database raises when it fails (unreachable, shutting down, timing out, a
# connection ended under a running statement, ...): every error of the driver. The one boundary
# where a database failure is told from a bug.
DB_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # e.g. "cannot switch to state 12" when the server ends a session
    OSError,
    TimeoutError,
)

EMBEDDED_PGDATA = Path(".data/pg")
# A service started before its database waits for it: tries again after up to 0.5, 1, 2, 4, 5...
START_RETRY_BASE_S = 0.5
START_RETRY_CAP_S = 5.0

if TYPE_CHECKING:
    from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

    _Pool = asyncpg.Pool[asyncpg.Record]
    PooledConnection = PoolConnectionProxy[asyncpg.Record]
else:  # asyncpg's classes are generic only in its stubs
    _Pool = asyncpg.Pool
    PooledConnection = asyncpg.pool.PoolConnectionProxy


class Pool(_Pool):
    """asyncpg's pool, whose every wait for a connection is bounded (`DB_ACQUIRE_TIMEOUT_S`):
    `pool.fetchrow(...)` and friends acquire through `acquire()` too. Unbounded, a burst or a
    stalled server would hold a request (or an attempt under a lease) for as long as it lasts."""

    acquire_timeout_s: float | None = None

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext[asyncpg.Record]:
        return super().acquire(timeout=self.acquire_timeout_s if timeout is None else timeout)


# What a statement runs on: the pool, a pooled connection, or a dedicated one.
Db = Pool | PooledConnection | asyncpg.Connection


def direct_database_url(settings: Settings) -> str:
    """Where to open a session that must last (leadership, LISTEN, the migrations lock): past any
    transaction pooler, DATABASE_DIRECT_URL; else DATABASE_URL (or the embedded server)."""
    return settings.database_direct_url or database_url(settings)


def database_url(settings: Settings) -> str:
    """DATABASE_URL, else an embedded server (the `pgserver` wheel of the `embedded` extra) in
    ./.data/pg, shared by every process of this checkout that asks for it and stopped when the
    last of them exits."""
    if settings.database_url:
        return settings.database_url
    try:
        # Imported only when needed: it starts a real server. Without XDG_RUNTIME_DIR (no login
        # session: containers, CI, ssh) platformdirs warns, once, while pgserver picks the
        # directory of its lock file at import, and falls back to a private directory of the
        # user under /tmp, which serves as well. Only that warning is silenced: the fallback is
        # no news to whoever runs us, and a warning must not stop a server that works.
        from platformdirs import RuntimeDirWarning

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeDirWarning)
            from pgserver.postgres_server import PostgresServer, get_server
    except ImportError as exc:
        raise RuntimeError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed: set "
            "DATABASE_URL to a PostgreSQL DSN, or install the `embedded` extra "
            "(pip install -e '.[embedded]'; `make` does)"
        ) from exc

    pgdata = EMBEDDED_PGDATA.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    with PostgresServer._lock:  # the lock pgserver starts and stops servers under
        _forget_stale_state(pgdata)
    server = get_server(pgdata, cleanup_mode="stop")
    uri: str = server.get_uri()
    log.info("embedded postgresql running", extra={"pgdata": str(EMBEDDED_PGDATA)})
    return uri


def _forget_stale_state(pgdata: Path) -> None:
    """Undo what a process killed without cleaning up leaves in ./.data/pg for pgserver to trust.

    pgserver lists the processes using the server in .handle_pids.json and stops the server when
    the last of them exits: a killed one stays listed, and the server would never stop. And it
    takes any process with the pid of postmaster.pid for the server, though a killed postmaster
    lingers as a zombie while nobody reaps it (a container's init may never), and after a restart
    its pid may be anything's: it would hand out a dead socket, and postgres refuses to start
    while the pid "exists"."""
    from pgserver.utils import DiskList

    handles = DiskList(pgdata / ".handle_pids.json")
    with suppress(ValueError, OSError):  # unreadable: pgserver fails on it the same way
        listed = handles.get()  # [] without the file (and initdb wants pgdata empty)
        if (alive := [pid for pid in listed if not _gone(pid)]) != listed:
            handles.put(alive)
    postmaster_pid = pgdata / "postmaster.pid"
    with suppress(FileNotFoundError, ValueError, IndexError):  # none, or not pgserver's to judge
        # pid, data directory, start time, port, socket directory, ...
        pid, _, _, port, socket_dir = postmaster_pid.read_text().splitlines()[:5]
        if _gone(int(pid), name="postgres"):
            # The socket's lock file names the postmaster too, and postgres checks it as well.
            socket_lock = Path(socket_dir) / f".s.PGSQL.{port}.lock"
            with suppress(FileNotFoundError):
                if socket_lock.read_text().splitlines()[:1] == [pid]:
                    socket_lock.unlink()
            postmaster_pid.unlink()


def _gone(pid: int, name: str | None = None) -> bool:
    """No process `pid` runs (a zombie has exited, only its reaping is due), or it is not `name`.
    Not ours to look at: it runs."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        return name is not None and process.name() != name
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


SECRET_PARAMS = frozenset({"password", "sslpassword", "passfile"})


def mask_dsn(dsn: str) -> str:
    """The DSN with every password replaced, fit for logs: the one in its user part
    (`user:secret@`) and any given as a query parameter (`?password=secret`)."""
    try:
        parts = urlsplit(dsn)
        user_part, at, host_part = parts.netloc.rpartition("@")
        if at and ":" in user_part:
            user_part = user_part.split(":", 1)[0] + ":***"
        query = "&".join(
            f"{name}=***" if unquote(name).lower() in SECRET_PARAMS else f"{name}{eq}{value}"
            for name, eq, value in (p.partition("=") for p in parts.query.split("&") if p)
        )
        return urlunsplit(parts._replace(netloc=f"{user_part}{at}{host_part}", query=query))
    except ValueError:  # not even a URL: nothing of it may be shown
        return "***"


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset: pooled connections carry no session state (no SET, LISTEN, cursors or
    advisory locks: those live on dedicated connections), so a released connection goes back
    as it is. asyncpg still rolls back an open transaction first. The default reset would cost
    one more round trip per query."""


async def create_pool(dsn: str, settings: Settings, **kwargs: Any) -> Pool:
    """The pool: every statement bounded by DB_COMMAND_TIMEOUT_S, every wait for a connection by
    DB_ACQUIRE_TIMEOUT_S (so is connecting)."""
    pool = Pool(
        dsn,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        init_size=None,
        min_size=min(settings.db_pool_min_size, settings.db_pool_max_size),
        max_size=settings.db_pool_max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connect=None,
        setup=None,
        init=None,
        reset=_keep_session,
        statement_cache_size=settings.statement_cache_size,
        command_timeout=settings.db_command_timeout_s,
        timeout=settings.db_acquire_timeout_s,
        **kwargs,
    )
    pool.acquire_timeout_s = settings.db_acquire_timeout_s
    try:
        await pool
    except BaseException:
        pool.terminate()  # the connections it did open
        raise
    track_pool(pool)
    log.info("database pool ready", extra={"dsn": mask_dsn(dsn)})
    return pool


async def create_pool_when_up(dsn: str, settings: Settings) -> Pool:
    """create_pool, waiting for the database with capped, jittered backoff: a service started
    while its database (or pooler) is down or restarting waits for it instead of exiting."""
    rng = random.Random()
    failures = 0
    while True:
        try:
            return await create_pool(dsn, settings)
        except DB_ERRORS as exc:
            failures += 1
            delay = backoff_s(failures, START_RETRY_BASE_S, START_RETRY_CAP_S, rng, floor_s=0.1)
            log.warning(
                "database unreachable at start; trying again",
                extra={"dsn": mask_dsn(dsn), "error": repr(exc), "retry_in_s": round(delay, 2)},
            )
            await asyncio.sleep(delay)
