"""Every statement that reads orders for the API, scoped to one account (SPEC §7): another
account's order is as unknown as a missing one."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from orders_api.store import COLUMNS
from orders_core.db import Pool, PooledConnection
from orders_core.domain import OrderStatus

# Reads see one account's orders only: another account's order is as unknown as a missing one.
SELECT_BY_KEY = f"SELECT {COLUMNS} FROM orders WHERE account_id = $1 AND idempotency_key = $2"
SELECT_BY_ID = f"SELECT {COLUMNS} FROM orders WHERE id = $1 AND account_id = $2"
# The order whatever its account: finding out whether an insert committed.
SELECT_ANY_BY_ID = f"SELECT {COLUMNS} FROM orders WHERE id = $1"

# Newest first, keyset pagination on (created_at, id). One statement per status filter so that
# the planner uses the partial indexes for the small IN PROGRESS and FAILURE sets.
_LIST = f"""
SELECT {COLUMNS} FROM orders
 WHERE account_id = $1 AND (created_at, id) < ($2, $3) {{filter}}
 ORDER BY created_at DESC, id DESC
 LIMIT $4"""
LIST_ALL = _LIST.format(filter="")
LIST_BY_STATUS = {s: _LIST.format(filter=f"AND status = '{s.value}'") for s in OrderStatus}


async def by_id(pool: Pool, account_id: UUID, order_id: UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(SELECT_BY_ID, order_id, account_id)


async def any_by_id(pool: Pool, order_id: UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(SELECT_ANY_BY_ID, order_id)


async def page(
    pool: Pool,
    account_id: UUID,
    status: OrderStatus | None,
    before: tuple[datetime, UUID],
    limit: int,
) -> list[asyncpg.Record]:
    sql = LIST_ALL if status is None else LIST_BY_STATUS[status]
    return await pool.fetch(sql, account_id, *before, limit)


EVENTS = """
SELECT seq, epoch, status, filled_quantity, quantity, avg_price::text AS avg_price, exchange_ts,
       received_at, source
  FROM exchange_events
 WHERE order_id = $1
 ORDER BY exchange_ts, seq"""


async def events(pool: Pool, order_id: UUID) -> list[asyncpg.Record]:
    return await pool.fetch(EVENTS, order_id)


# The order's story, oldest first: its creation, our placement requests, answers and lookups, and
# the exchange's status events.
HISTORY = """
SELECT created_at AS at, 'created' AS event, NULL::integer AS attempt, NULL::text AS outcome,
       NULL::text AS detail, 0 AS n
  FROM orders WHERE id = $1
UNION ALL
SELECT at, event, attempt, outcome, detail, seq FROM order_history WHERE order_id = $1
UNION ALL
SELECT received_at, 'exchange_status', NULL, status,
       'filled ' || filled_quantity || ' of ' || quantity, seq
  FROM exchange_events WHERE order_id = $1
ORDER BY at, n"""


async def history(pool: Pool, order_id: UUID) -> list[asyncpg.Record]:
    return await pool.fetch(HISTORY, order_id)


async def by_key(db: Pool | PooledConnection, account_id: UUID, key: str) -> asyncpg.Record | None:
    return await db.fetchrow(SELECT_BY_KEY, account_id, key)
