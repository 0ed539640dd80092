"""What the benchmarks share: a freshly migrated database of their own on the server under test."""

from __future__ import annotations

import asyncpg

from orders_core.migrate import migrate
from tests.pg import with_database


async def fresh_database(server: str, name: str) -> str:
    """Drop and create database `name` on the server of DSN `server`, migrate it, return its DSN."""
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = with_database(server, name)
    await migrate(dsn)
    return dsn
