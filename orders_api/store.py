"""Every SQL statement the API runs against `orders`, next to the function that runs it.

The placement state (attempts, pending deadline, lease) lives in the order's row; each write that
concerns an attempt in progress is fenced by the lease owner, so a process that lost its lease
cannot overwrite what another one decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from orders_core.db import Pool
from orders_core.domain import OrderStatus

_COLUMNS = (
    "id",
    "created_at",
    "type",
    "side",
    "instrument",
    "limit_price::text AS limit_price",
    "quantity",
    "status",
    "attempts",
    "pending_deadline",
    "next_attempt_at",
    "last_error",
    "exchange_order_id",
    "request_hash",
    "sync_pending",
)
# The exchange's own view of the order, as the listener last stored it (exchange_order_status).
_MARKET_STATUS = """(SELECT s.stock_market_order_status FROM exchange_order_status s
                    WHERE s.order_id = {table}.id) AS stock_market_order_status"""
COLUMNS = ", ".join((*_COLUMNS, _MARKET_STATUS.format(table="orders")))

# Create the order and take the lease of its synchronous attempt in one statement: the attempt is
# counted and its deadline recorded before the request is sent, so a crash mid-call loses nothing.
INSERT = f"""
INSERT INTO orders (id, type, side, instrument, limit_price, quantity, attempts, pending_deadline,
                    next_attempt_at, lease_owner, lease_expires_at, sync_pending,
                    idempotency_key, request_hash)
VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, clock_timestamp() + make_interval(secs => $10),
        true, $11, $12)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING {", ".join(_COLUMNS)}, NULL::text AS stock_market_order_status"""

SELECT_BY_KEY = f"SELECT {COLUMNS} FROM orders WHERE idempotency_key = $1"
SELECT_BY_ID = f"SELECT {COLUMNS} FROM orders WHERE id = $1"

# Newest first, keyset pagination on (created_at, id). One statement per status filter so that
# the planner uses the partial indexes for the small IN PROGRESS and FAILURE sets.
_LIST = f"""
SELECT {COLUMNS} FROM orders
 WHERE (created_at, id) < ($1, $2) {{filter}}
 ORDER BY created_at DESC, id DESC
 LIMIT $3"""
LIST_ALL = _LIST.format(filter="")
LIST_BY_STATUS = {s: _LIST.format(filter=f"AND status = '{s.value}'") for s in OrderStatus}

# Record what an attempt (or a lookup) decided, and give the lease back.
FINISH = f"""
UPDATE orders
   SET status = $3, pending_deadline = $4, next_attempt_at = $5, last_error = $6,
       exchange_order_id = coalesce($7, exchange_order_id),
       failed_at = CASE WHEN $3 = 'FAILURE' THEN clock_timestamp() END,
       lease_owner = NULL, lease_expires_at = NULL, sync_pending = false,
       updated_at = clock_timestamp()
 WHERE id = $1 AND lease_owner = $2
RETURNING {COLUMNS}"""

# Claim due work: unfinished, due, and nobody's lease alive. SKIP LOCKED lets instances share it.
CLAIM_DUE = f"""
UPDATE orders AS o
   SET lease_owner = $1, lease_expires_at = clock_timestamp() + make_interval(secs => $2),
       sync_pending = false, updated_at = clock_timestamp()
  FROM (SELECT id FROM orders
         WHERE status = 'IN PROGRESS' AND next_attempt_at <= clock_timestamp()
           AND (lease_expires_at IS NULL OR lease_expires_at <= clock_timestamp())
         ORDER BY next_attempt_at
         LIMIT $3
           FOR UPDATE SKIP LOCKED) AS due
 WHERE o.id = due.id
RETURNING {", ".join(f"o.{c}" for c in _COLUMNS)}, {_MARKET_STATUS.format(table="o")}"""

# Count the attempt and record its deadline before sending, while the lease is still ours.
BEGIN_ATTEMPT = """
UPDATE orders
   SET attempts = attempts + 1, pending_deadline = $3, updated_at = clock_timestamp()
 WHERE id = $1 AND lease_owner = $2 AND lease_expires_at > clock_timestamp()
RETURNING attempts"""

RELEASE_ALL = """
UPDATE orders SET lease_owner = NULL, lease_expires_at = NULL
 WHERE lease_owner = $1 AND status = 'IN PROGRESS'"""


@dataclass(frozen=True)
class NewOrder:
    id: UUID
    type: str
    side: str
    instrument: str
    limit_price: Decimal | None
    quantity: int
    idempotency_key: str | None
    request_hash: str | None


@dataclass(frozen=True)
class Outcome:
    """What to write after an attempt or a lookup."""

    status: OrderStatus
    pending_deadline: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    exchange_order_id: str | None = None


async def insert(
    pool: Pool, order: NewOrder, deadline: datetime, due: datetime, owner: str, lease_s: float
) -> asyncpg.Record | None:
    """The new row, or None when the idempotency key is taken."""
    return await pool.fetchrow(
        INSERT,
        order.id,
        order.type,
        order.side,
        order.instrument,
        order.limit_price,
        order.quantity,
        deadline,
        due,
        owner,
        lease_s,
        order.idempotency_key,
        order.request_hash,
    )


async def finish(pool: Pool, order_id: UUID, owner: str, outcome: Outcome) -> asyncpg.Record | None:
    """The updated row, or None when the lease was no longer ours."""
    return await pool.fetchrow(
        FINISH,
        order_id,
        owner,
        outcome.status.value,
        outcome.pending_deadline,
        outcome.next_attempt_at,
        outcome.last_error,
        outcome.exchange_order_id,
    )


async def claim_due(pool: Pool, owner: str, lease_s: float, limit: int) -> list[asyncpg.Record]:
    return await pool.fetch(CLAIM_DUE, owner, lease_s, limit)


async def begin_attempt(pool: Pool, order_id: UUID, owner: str, deadline: datetime) -> int | None:
    """The attempt's number, or None when the lease was lost."""
    attempts: int | None = await pool.fetchval(BEGIN_ATTEMPT, order_id, owner, deadline)
    return attempts


async def release_all(pool: Pool, owner: str) -> None:
    await pool.execute(RELEASE_ALL, owner)


async def by_id(pool: Pool, order_id: UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(SELECT_BY_ID, order_id)


async def page(
    pool: Pool, status: OrderStatus | None, before: tuple[datetime, UUID], limit: int
) -> list[asyncpg.Record]:
    sql = LIST_ALL if status is None else LIST_BY_STATUS[status]
    return await pool.fetch(sql, *before, limit)


EVENTS = """
SELECT seq, epoch, status, filled_quantity, quantity, avg_price::text AS avg_price, exchange_ts,
       received_at, source
  FROM exchange_events
 WHERE order_id = $1
 ORDER BY exchange_ts, seq"""


async def events(pool: Pool, order_id: UUID) -> list[asyncpg.Record]:
    return await pool.fetch(EVENTS, order_id)


async def by_key(pool: Pool, key: str) -> asyncpg.Record | None:
    return await pool.fetchrow(SELECT_BY_KEY, key)
