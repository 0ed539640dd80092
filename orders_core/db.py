"""The PostgreSQL connection: where it is (a DSN, else an embedded server) and the pool."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from orders_core.pool_metrics import track_pool
from orders_core.settings import Settings

log = logging.getLogger(__name__)

# What a call to the database raises when it fails (unreachable, shutting down, timing out, ...).
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

EMBEDDED_PGDATA = Path(".data/pg")

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Pool = asyncpg.Pool[asyncpg.Record]
    PooledConnection = PoolConnectionProxy[asyncpg.Record]
else:  # asyncpg's classes are generic only in its stubs
    Pool = asyncpg.Pool
    PooledConnection = asyncpg.pool.PoolConnectionProxy


def database_url(settings: Settings) -> str:
    """DATABASE_URL, else an embedded server (the `pgserver` wheel) in ./.data/pg."""
    if settings.database_url:
        return settings.database_url
    import pgserver  # imported only when needed: it starts a real server

    EMBEDDED_PGDATA.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(  # type: ignore[attr-defined]
        EMBEDDED_PGDATA.resolve(), cleanup_mode="stop"
    )
    uri: str = server.get_uri()
    log.info("embedded postgresql running", extra={"pgdata": str(EMBEDDED_PGDATA)})
    return uri


def mask_dsn(dsn: str) -> str:
    """The DSN with its password replaced, fit for logs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset: pooled connections carry no session state (no SET, LISTEN, cursors or
    advisory locks: those live on dedicated connections), so a released connection goes back
    as it is. asyncpg still rolls back an open transaction first. The default reset would cost
    one more round trip per query."""


async def create_pool(dsn: str, settings: Settings, **kwargs: Any) -> Pool:
    pool = await asyncpg.create_pool(
        dsn,
        reset=_keep_session,
        min_size=min(settings.db_pool_min_size, settings.db_pool_max_size),
        max_size=settings.db_pool_max_size,
        command_timeout=settings.db_command_timeout_s,
        timeout=settings.db_command_timeout_s,
        **kwargs,
    )
    track_pool(pool)
    log.info("database pool ready", extra={"dsn": mask_dsn(dsn)})
    return pool
