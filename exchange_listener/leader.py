"""One listener ingests at a time: the one that holds the leadership (orders_core.leader).

The lock lives on the leader's own connection, which is also the one it writes with: if that
connection dies, the lock is gone and so is the leader's ability to write, and a standby takes
over within LISTENER_LEADER_POLL_S. Writes are idempotent besides, so even an overlap stores
nothing twice.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from exchange_listener import metrics
from exchange_listener.ingest import Ingestor
from exchange_listener.settings import ListenerSettings
from orders_core.db import DB_ERRORS
from orders_core.leader import Leadership

log = logging.getLogger(__name__)

LOCK_KEY = 0x6F72646572735F6C  # "orders_l"


async def lead_forever(dsn: str, http: aiohttp.ClientSession, settings: ListenerSettings) -> None:
    leadership = Leadership(
        "exchange-listener", dsn, LOCK_KEY, metrics.LEADER, settings.db_command_timeout_s
    )
    while True:
        conn = await leadership.wait(settings.listener_leader_poll_s)
        try:
            await Ingestor(conn, http, settings).run()
        except DB_ERRORS as exc:
            log.warning("database failed; giving up the lead: %r", exc)
        finally:
            leadership.resign()
        await asyncio.sleep(settings.listener_leader_poll_s)
