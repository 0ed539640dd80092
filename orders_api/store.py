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
from orders_core.domain import CancelStatus, OrderStatus

ROW_COLUMNS = (
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
    "failed_at",
    "updated_at",
    "cancel_requested_at",
    "cancel_status",
    "cancel_error",
    "cancel_attempts",
)
ROW_NAMES = tuple(c.rsplit(" AS ", 1)[-1] for c in ROW_COLUMNS)  # as a row of them names them
# The exchange's own view of the order, as the listener last stored it (exchange_order_status).
MARKET_STATUS = """(SELECT s.stock_market_order_status FROM exchange_order_status s
                    WHERE s.order_id = {table}.id) AS stock_market_order_status,
                   (SELECT s.filled_quantity FROM exchange_order_status s
                    WHERE s.order_id = {table}.id) AS filled_quantity"""
COLUMNS = ", ".join((*ROW_COLUMNS, MARKET_STATUS.format(table="orders")))

# Create the order and take the lease of its synchronous attempt in one statement: the attempt is
# counted and its deadline recorded before the request is sent, so a crash mid-call loses nothing.
# ... and the history's first entry: the first placement request, about to be sent.
INSERT = f"""
WITH o AS (
INSERT INTO orders (id, type, side, instrument, limit_price, quantity, attempts, pending_deadline,
                    next_attempt_at, lease_owner, lease_token, lease_expires_at, sync_pending,
                    idempotency_key, request_hash, account_id)
SELECT $1, $2, $3, $4, $5, $6, 1, $7, $8, $9, nextval('orders_lease_token_seq'),
       clock_timestamp() + make_interval(secs => $10), true, $11, $12, $13
 WHERE clock_timestamp() < $7  -- too late for its first attempt: store nothing (see placement)
ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING {", ".join(ROW_COLUMNS)}, NULL::text AS stock_market_order_status,
          NULL::bigint AS filled_quantity
), sent AS (
INSERT INTO order_history (order_id, event, attempt, detail)
SELECT id, 'placement_sent', 1, 'valid until ' || $7::timestamptz FROM o
)
SELECT * FROM o"""

# The end of a claim's write: fenced by its token, the lease given back, the change's time.
CLAIM_ENDS = """lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
       sync_pending = false, updated_at = c.now
  FROM (SELECT clock_timestamp() AS now) AS c
 WHERE id = $1 AND lease_token = $2"""

# Record what an attempt (or a lookup) decided, and give the lease back: only while the claim that
# started it is still the order's claim. The history gets what was learned ($9..$12: event,
# attempt, outcome, detail) in the same statement.
FINISH = f"""
WITH upd AS (
UPDATE orders
   SET status = $3, pending_deadline = $4, next_attempt_at = $5, last_error = $6,
       exchange_order_id = coalesce($7, exchange_order_id), lookup_failures = $8,
       failed_at = CASE WHEN $3 = 'FAILURE' THEN c.now END,
       {CLAIM_ENDS}
RETURNING {COLUMNS}
), learned AS (
INSERT INTO order_history (order_id, event, attempt, outcome, detail)
SELECT id, $9, $10, $11, $12 FROM upd
)
SELECT * FROM upd"""

# Claim due work (a placement or a cancel: next_attempt_at is set exactly while some is due) whose
# lease nobody holds alive. SKIP LOCKED lets instances share it.
CLAIM_DUE = f"""
UPDATE orders AS o
   SET lease_owner = $1, lease_token = nextval('orders_lease_token_seq'),
       lease_expires_at = clock_timestamp() + make_interval(secs => $2),
       sync_pending = false, updated_at = clock_timestamp()
  FROM (SELECT id FROM orders
         WHERE next_attempt_at <= statement_timestamp()
           AND (lease_expires_at IS NULL OR lease_expires_at <= statement_timestamp())
         ORDER BY next_attempt_at
         LIMIT $3
           FOR UPDATE SKIP LOCKED) AS due
 WHERE o.id = due.id
RETURNING {", ".join(f"o.{c}" for c in ROW_COLUMNS)}, {MARKET_STATUS.format(table="o")}"""

# Count the attempt and record its deadline before sending, while the claim is ours and alive.
# Whoever claims the order next finds it due no earlier than that deadline has surely passed, and
# the lease is renewed for the attempt (LEASE_S covers one exchange call and one write).
# The history gets the lookup that allowed it, if one did ($6), and the request about to be sent.
BEGIN_ATTEMPT = """
WITH upd AS (
UPDATE orders
   SET attempts = attempts + 1, pending_deadline = $3, next_attempt_at = $4,
       lease_expires_at = clock_timestamp() + make_interval(secs => $5),
       updated_at = clock_timestamp()
 WHERE id = $1 AND lease_token = $2 AND lease_expires_at > clock_timestamp()
   AND cancel_requested_at IS NULL
RETURNING id, attempts
), noted AS (
INSERT INTO order_history (order_id, event, attempt, outcome, detail)
SELECT upd.id, e.event, CASE WHEN e.n = 2 THEN upd.attempts END, e.outcome, e.detail
  FROM upd, (VALUES (1, 'lookup', 'absent', $6::text),
                    (2, 'placement_sent', NULL, 'valid until ' || $3::timestamptz)
            ) AS e (n, event, outcome, detail)
 WHERE e.n = 2 OR $6::text IS NOT NULL
 ORDER BY e.n
)
SELECT attempts FROM upd"""

# A clean stop: the instance's claims end; an order whose request is pending stays due no earlier
# than its deadline (next_attempt_at), so nobody trusts a "not found" for it too early.
RELEASE_ALL = """
UPDATE orders SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
 WHERE lease_owner = $1"""


@dataclass(frozen=True)
class CancelOutcome:
    """What to write after a cancel request to the exchange (CancelStatus PENDING: try again)."""

    status: OrderStatus
    last_error: str | None
    exchange_order_id: str | None
    pending_deadline: datetime | None
    next_attempt_at: datetime | None
    cancel_status: CancelStatus
    cancel_error: str | None


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
class Event:
    """One entry of an order's history: what a claim learned (order_history)."""

    event: str  # placement_answered | lookup
    attempt: int | None
    outcome: str
    detail: str | None


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


async def finish(
    pool: Pool, order_id: UUID, token: int, outcome: Outcome, event: Event
) -> asyncpg.Record | None:
    """The updated row, or None when the claim `token` is no longer the order's (then the
    history is not written either)."""
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
        event.event,
        event.attempt,
        event.outcome,
        event.detail,
    )


async def claim_due(pool: Pool, owner: str, lease_s: float, limit: int) -> list[asyncpg.Record]:
    return await pool.fetch(CLAIM_DUE, owner, lease_s, limit)


async def begin_attempt(
    pool: Pool,
    order_id: UUID,
    token: int,
    deadline: datetime,
    settled: datetime,
    lease_s: float,
    lookup: str | None = None,
) -> int | None:
    """The attempt's number, or None when the claim `token` was lost or has expired. `lookup`:
    what the lookup that allowed this attempt said, for the history."""
    attempts: int | None = await pool.fetchval(
        BEGIN_ATTEMPT, order_id, token, deadline, settled, lease_s, lookup
    )
    return attempts


async def release_all(pool: Pool, owner: str) -> None:
    await pool.execute(RELEASE_ALL, owner)
