"""Every SQL statement the tracker runs, next to the function that runs it.

Reporting walks a watermark (tracker_watermarks) instead of rescanning: each scan starts a margin
before the latest order reported (a row may commit a moment after its timestamp was taken) and
skips orders already in tracker_reports. Claiming a report is an INSERT ... ON CONFLICT DO NOTHING
on (order_id, kind): whoever inserts the row reports the order, so it is reported exactly once
across restarts and between two trackers. The claim commits only after the report is logged: a
crash in between leaves the order unclaimed, to be reported again, never lost.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from orders_core.db import Db, Pool

FAILURE_COLUMNS = (
    "o.id, o.instrument, o.side, o.type, o.quantity, o.created_at, o.failed_at, o.attempts, "
    "o.last_error"
)

# {kind}: the report's kind; {ts}: the column the watermark follows; {where}: what qualifies.
_REPORT = f"""
WITH found AS (
    SELECT o.id, o.{{ts}} AS ts FROM orders AS o
     WHERE {{where}}
       AND o.{{ts}} >= (SELECT position FROM tracker_watermarks WHERE kind = '{{kind}}')
                       - make_interval(secs => $1)
       AND NOT EXISTS (SELECT 1 FROM tracker_reports AS r
                        WHERE r.order_id = o.id AND r.kind = '{{kind}}')
     ORDER BY o.{{ts}}, o.id
     LIMIT $2
), reported AS (
    INSERT INTO tracker_reports (order_id, kind, next_delivery_at)
    SELECT id, '{{kind}}', CASE WHEN $3::boolean THEN clock_timestamp() END FROM found
    ON CONFLICT DO NOTHING
    RETURNING order_id
), moved AS (
    UPDATE tracker_watermarks
       SET position = greatest(position, (SELECT max(f.ts) FROM found AS f
                                            JOIN reported AS r ON r.order_id = f.id))
     WHERE kind = '{{kind}}' AND EXISTS (SELECT 1 FROM reported)
)
SELECT {FAILURE_COLUMNS} FROM orders AS o JOIN reported AS r ON r.order_id = o.id
 ORDER BY o.{{ts}}, o.id"""

REPORT_FAILURES = _REPORT.format(kind="failure", ts="failed_at", where="o.status = 'FAILURE'")
REPORT_STUCK = _REPORT.format(
    kind="stuck",
    ts="created_at",
    where="o.status = 'IN PROGRESS'"
    " AND o.created_at < statement_timestamp() - make_interval(secs => $4)",
)

DUE_DELIVERIES = f"""
SELECT r.kind, r.webhook_attempts, {FAILURE_COLUMNS}
  FROM tracker_reports AS r JOIN orders AS o ON o.id = r.order_id
 WHERE r.webhook_delivered_at IS NULL AND r.next_delivery_at <= statement_timestamp()
 ORDER BY r.next_delivery_at
 LIMIT $1"""
DELIVERED = """
UPDATE tracker_reports
   SET webhook_delivered_at = clock_timestamp(), webhook_attempts = webhook_attempts + 1,
       last_delivery_error = NULL
 WHERE order_id = $1 AND kind = $2"""
DELIVERY_FAILED = """
UPDATE tracker_reports
   SET webhook_attempts = webhook_attempts + 1, last_delivery_error = $4,
       next_delivery_at = clock_timestamp() + make_interval(secs => $3)
 WHERE order_id = $1 AND kind = $2"""

# Newest first, keyset pagination on (failed_at, id), over the partial index of failures.
FAILURES_PAGE = f"""
SELECT {FAILURE_COLUMNS} FROM orders AS o
 WHERE o.status = 'FAILURE' AND o.failed_at >= $1 AND o.failed_at < $2
   AND ($3::text IS NULL OR o.instrument = $3)
   AND (o.failed_at, o.id) < ($4, $5)
 ORDER BY o.failed_at DESC, o.id DESC
 LIMIT $6"""

STUCK_NOW = """
SELECT o.id, o.instrument, o.side, o.type, o.quantity, o.created_at, o.attempts, o.last_error
  FROM orders AS o
 WHERE o.status = 'IN PROGRESS' AND o.created_at < statement_timestamp() - make_interval(secs => $1)
 ORDER BY o.created_at, o.id
 LIMIT $2"""


async def report_failures(
    conn: Db, margin_s: float, limit: int, deliver: bool
) -> list[asyncpg.Record]:
    """Claim up to `limit` failures nobody reported yet; the claimed rows, oldest first."""
    return await conn.fetch(REPORT_FAILURES, margin_s, limit, deliver)


async def report_stuck(
    conn: Db, margin_s: float, limit: int, deliver: bool, stuck_after_s: float
) -> list[asyncpg.Record]:
    """Claim up to `limit` orders IN PROGRESS for longer than `stuck_after_s`, not yet reported."""
    return await conn.fetch(REPORT_STUCK, margin_s, limit, deliver, stuck_after_s)


async def due_deliveries(pool: Db, limit: int) -> list[asyncpg.Record]:
    return await pool.fetch(DUE_DELIVERIES, limit)


async def delivered(pool: Db, order_id: UUID, kind: str) -> None:
    await pool.execute(DELIVERED, order_id, kind)


async def delivery_failed(
    pool: Db, order_id: UUID, kind: str, retry_in_s: float, error: str
) -> None:
    await pool.execute(DELIVERY_FAILED, order_id, kind, retry_in_s, error[:500])


async def failures_page(
    pool: Pool,
    since: datetime,
    until: datetime,
    instrument: str | None,
    before: tuple[datetime, UUID],
    limit: int,
) -> list[asyncpg.Record]:
    return await pool.fetch(FAILURES_PAGE, since, until, instrument, *before, limit)


async def stuck_now(pool: Pool, stuck_after_s: float, limit: int) -> list[asyncpg.Record]:
    return await pool.fetch(STUCK_NOW, stuck_after_s, limit)
