"""Every SQL statement the API runs against `orders`, next to the function that runs it.

The placement state (attempts, pending deadline, lease) lives in the order's row. Each claim of
an order takes a new fencing token (`lease_token`, from one sequence), and every write of what
that claim learned is fenced by it: a writer whose claim was taken over, by another instance or by
its own sweeper, changes nothing. Times in a WHERE clause are `statement_timestamp()` (stable), so
the sweep uses its index; times written are `clock_timestamp()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from orders_core.db import Pool, PooledConnection
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
    "lease_token",
    "lookup_failures",
)
# The exchange's own view of the order, as the listener last stored it (exchange_order_status).
_MARKET_STATUS = """(SELECT s.stock_market_order_status FROM exchange_order_status s
                    WHERE s.order_id = {table}.id) AS stock_market_order_status"""
COLUMNS = ", ".join((*_COLUMNS, _MARKET_STATUS.format(table="orders")))

# Create the order and take the lease of its synchronous attempt in one statement: the attempt is
# counted and its deadline recorded before the request is sent, so a crash mid-call loses nothing.
INSERT = f"""
INSERT INTO orders (id, type, side, instrument, limit_price, quantity, attempts, pending_deadline,
                    next_attempt_at, lease_owner, lease_token, lease_expires_at, sync_pending,
                    idempotency_key, request_hash, account_id)
VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, nextval('orders_lease_token_seq'),
        clock_timestamp() + make_interval(secs => $10), true, $11, $12, $13)
ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING {", ".join(_COLUMNS)}, NULL::text AS stock_market_order_status"""

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

# Record what an attempt (or a lookup) decided, and give the lease back: only while the claim that
# started it is still the order's claim.
FINISH = f"""
UPDATE orders
   SET status = $3, pending_deadline = $4, next_attempt_at = $5, last_error = $6,
       exchange_order_id = coalesce($7, exchange_order_id), lookup_failures = $8,
       failed_at = CASE WHEN $3 = 'FAILURE' THEN clock_timestamp() END,
       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, sync_pending = false,
       updated_at = clock_timestamp()
 WHERE id = $1 AND lease_token = $2
RETURNING {COLUMNS}"""

# Claim due work: unfinished, due, and nobody's lease alive. SKIP LOCKED lets instances share it.
CLAIM_DUE = f"""
UPDATE orders AS o
   SET lease_owner = $1, lease_token = nextval('orders_lease_token_seq'),
       lease_expires_at = clock_timestamp() + make_interval(secs => $2),
       sync_pending = false, updated_at = clock_timestamp()
  FROM (SELECT id FROM orders
         WHERE status = 'IN PROGRESS' AND next_attempt_at <= statement_timestamp()
           AND (lease_expires_at IS NULL OR lease_expires_at <= statement_timestamp())
         ORDER BY next_attempt_at
         LIMIT $3
           FOR UPDATE SKIP LOCKED) AS due
 WHERE o.id = due.id
RETURNING {", ".join(f"o.{c}" for c in _COLUMNS)}, {_MARKET_STATUS.format(table="o")}"""

# Count the attempt and record its deadline before sending, while the claim is ours and alive.
# Whoever claims the order next finds it due no earlier than that deadline has surely passed, and
# the lease is renewed for the attempt (LEASE_S covers one exchange call and one write).
BEGIN_ATTEMPT = """
UPDATE orders
   SET attempts = attempts + 1, pending_deadline = $3, next_attempt_at = $4,
       lease_expires_at = clock_timestamp() + make_interval(secs => $5),
       updated_at = clock_timestamp()
 WHERE id = $1 AND lease_token = $2 AND lease_expires_at > clock_timestamp()
RETURNING attempts"""

# A clean stop: the instance's claims end; an order whose request is pending stays due no earlier
# than its deadline (next_attempt_at), so nobody trusts a "not found" for it too early.
RELEASE_ALL = """
UPDATE orders SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
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
    account_id: UUID


@dataclass(frozen=True)
class Outcome:
    """What to write after an attempt or a lookup."""

    status: OrderStatus
    pending_deadline: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    exchange_order_id: str | None = None
    lookup_failures: int = 0  # failed lookups in a row (their backoff), 0 once one answers


async def insert(
    conn: PooledConnection,
    order: NewOrder,
    deadline: datetime,
    due: datetime,
    owner: str,
    lease_s: float,
) -> asyncpg.Record | None:
    """The new row, or None when the idempotency key is taken."""
    return await conn.fetchrow(
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
        order.account_id,
    )


async def finish(pool: Pool, order_id: UUID, token: int, outcome: Outcome) -> asyncpg.Record | None:
    """The updated row, or None when the claim `token` is no longer the order's."""
    return await pool.fetchrow(
        FINISH,
        order_id,
        token,
        outcome.status.value,
        outcome.pending_deadline,
        outcome.next_attempt_at,
        outcome.last_error,
        outcome.exchange_order_id,
        outcome.lookup_failures,
    )


async def claim_due(pool: Pool, owner: str, lease_s: float, limit: int) -> list[asyncpg.Record]:
    return await pool.fetch(CLAIM_DUE, owner, lease_s, limit)


async def begin_attempt(
    pool: Pool, order_id: UUID, token: int, deadline: datetime, settled: datetime, lease_s: float
) -> int | None:
    """The attempt's number, or None when the claim `token` was lost or has expired."""
    attempts: int | None = await pool.fetchval(
        BEGIN_ATTEMPT, order_id, token, deadline, settled, lease_s
    )
    return attempts


async def release_all(pool: Pool, owner: str) -> None:
    await pool.execute(RELEASE_ALL, owner)


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


async def by_key(db: Pool | PooledConnection, account_id: UUID, key: str) -> asyncpg.Record | None:
    return await db.fetchrow(SELECT_BY_KEY, account_id, key)
