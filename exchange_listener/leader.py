"""One listener ingests at a time: the one holding a PostgreSQL advisory lock.

The lock lives on the leader's own connection, which is also the one it writes with: if that
connection dies, the lock is gone and so is the leader's ability to write, and a standby takes
over within LISTENER_LEADER_POLL_S. Writes are idempotent besides, so even an overlap stores
nothing twice.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import asyncpg

from exchange_listener import metrics
from exchange_listener.ingest import Ingestor
from orders_core.db import DB_ERRORS
from orders_core.settings import Settings

log = logging.getLogger(__name__)

LOCK_KEY = 0x6F72646572735F6C  # "orders_l"


async def _take_lead(dsn: str, poll_s: float) -> asyncpg.Connection:
    """A connection that holds the lock; waits for as long as another listener leads."""
    while True:
        try:
            conn = await asyncpg.connect(dsn)
        except DB_ERRORS as exc:
            log.warning("database unreachable: %r", exc)
            await asyncio.sleep(poll_s)
            continue
        try:
            while True:
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                    return conn
                await asyncio.sleep(poll_s)
        except DB_ERRORS as exc:
            log.warning("lost the database while waiting to lead: %r", exc)
            conn.terminate()


async def lead_forever(dsn: str, http: aiohttp.ClientSession, settings: Settings) -> None:
    while True:
        conn = await _take_lead(dsn, settings.listener_leader_poll_s)
        metrics.LEADER.set(1)
        log.info("leading: ingesting the exchange's stream")
        try:
            await Ingestor(conn, http, settings).run()
        except DB_ERRORS as exc:
            log.warning("database failed; giving up the lead: %r", exc)
        finally:
            metrics.LEADER.set(0)
            conn.terminate()
        await asyncio.sleep(settings.listener_leader_poll_s)
