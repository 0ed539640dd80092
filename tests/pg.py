"""PostgreSQL for the tests: the server of DATABASE_URL (else an embedded one), a migrated
template database per session, and a fresh copy of it per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from orders_core.db import database_url
from orders_core.migrate import migrate
from orders_core.settings import Settings


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def _server_dsn() -> str:
    """DATABASE_URL, else the embedded server, in CI too: it is never a missing tool (CI=true
    turns a missing tool into a failure), it comes with `make`'s install. The last process using
    it stops it, at exit (pgserver's cleanup_mode "stop"): here, the end of the test run."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    try:
        return database_url(Settings(database_url=None))
    except RuntimeError as exc:  # the `embedded` extra is not installed
        pytest.fail(str(exc))


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server() -> str:
    dsn = _server_dsn()
    try:
        asyncio.run(_admin(dsn, "SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {dsn} is unreachable: {exc!r}")
    return dsn


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> Iterator[str]:
    """A migrated database that each test's database is copied from."""
    name = f"orders_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin(pg_server, f'CREATE DATABASE "{name}"'))
    asyncio.run(migrate(with_database(pg_server, name)))
    yield name
    asyncio.run(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def db_url(pg_server: str, pg_template: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"orders_t_{uuid.uuid4().hex[:12]}"
    await _admin(pg_server, f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield with_database(pg_server, name)
    await _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test's database, for looking at rows directly."""
    conn = await asyncpg.connect(db_url)
    yield conn
    await conn.close()
