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

# A cancel asked longer ago than TRACKER_CANCEL_STUCK_AFTER_S and still PENDING: the exchange
# has not answered for it (down, or refusing our requests).
REPORT_CANCEL_STUCK = _REPORT.format(
    kind="cancel_stuck",
    ts="cancel_requested_at",
    where="o.cancel_status = 'PENDING'"
    " AND o.cancel_requested_at < statement_timestamp() - make_interval(secs => $4)",
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


async def report_cancel_stuck(
    conn: Db, margin_s: float, limit: int, deliver: bool, stuck_after_s: float
) -> list[asyncpg.Record]:
    """Claim up to `limit` cancels PENDING for longer than `stuck_after_s`, not yet reported."""
    return await conn.fetch(REPORT_CANCEL_STUCK, margin_s, limit, deliver, stuck_after_s)


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


# The report page (tracker/pages.py): failed or stuck orders, newest first by the time that makes
# them what they are, keyset-paged both ways, with bounded counts.
PAGE_COLUMNS = (
    f"{FAILURE_COLUMNS}, o.pending_deadline, o.next_attempt_at, o.lease_owner, "
    "o.lease_expires_at, o.lookup_failures"
)
# kind -> (its timestamp, what qualifies). A stuck order's age bound is the page's `until`.
KINDS = {
    "failure": ("failed_at", "o.status = 'FAILURE'"),
    "stuck": ("created_at", "o.status = 'IN PROGRESS'"),
}
_FILTERED = (
    """{where} AND o.{ts} >= $1 AND o.{ts} < $2 AND ($3::text IS NULL OR o.instrument = $3)"""
)
_OLDER = """
SELECT {cols} FROM orders AS o
 WHERE {filtered} AND (o.{ts}, o.id) < ($4, $5)
 ORDER BY o.{ts} DESC, o.id DESC
 LIMIT $6"""
_NEWER = """
SELECT {cols} FROM orders AS o
 WHERE {filtered} AND (o.{ts}, o.id) > ($4, $5)
 ORDER BY o.{ts}, o.id
 LIMIT $6"""
# Rows newer than a position, counted up to a cap: the total (from the very start), or how many
# come before a page (its offset).
_COUNT_NEWER = """
SELECT count(*) FROM (SELECT 1 FROM orders AS o
                       WHERE {filtered} AND (o.{ts}, o.id) > ($4, $5) LIMIT $6) AS t"""


def _page_sql(template: str) -> dict[str, str]:
    return {
        kind: template.format(
            cols=PAGE_COLUMNS, ts=ts, filtered=_FILTERED.format(where=where, ts=ts)
        )
        for kind, (ts, where) in KINDS.items()
    }


OLDER, NEWER, COUNT_NEWER = _page_sql(_OLDER), _page_sql(_NEWER), _page_sql(_COUNT_NEWER)
ORDER = """
SELECT o.*, a.name AS account, s.stock_market_order_status, s.filled_quantity, s.avg_price,
       s.exchange_order_id AS exchange_id
  FROM orders AS o
  LEFT JOIN accounts AS a ON a.id = o.account_id
  LEFT JOIN exchange_order_status AS s ON s.order_id = o.id
 WHERE o.id = $1"""
HAS_HISTORY = "SELECT to_regclass('order_history') IS NOT NULL"
HISTORY = """
SELECT at, event, attempt, outcome, detail FROM order_history
 WHERE order_id = $1 ORDER BY at, seq LIMIT $2"""
EVENTS = """
SELECT seq, epoch, status, filled_quantity, quantity, avg_price, exchange_ts, received_at, source
  FROM exchange_events WHERE order_id = $1 ORDER BY received_at, seq LIMIT $2"""


async def report_rows(
    pool: Pool, kind: str, window: tuple[datetime, datetime, str | None],
    position: tuple[datetime, UUID], newer: bool, limit: int,
) -> list[asyncpg.Record]:  # fmt: skip
    """Up to `limit` rows of `kind` past `position`: older ones (newest first), or `newer` ones
    (oldest first)."""
    sql = (NEWER if newer else OLDER)[kind]
    return await pool.fetch(sql, *window, *position, limit)


async def count_newer(
    pool: Pool, kind: str, window: tuple[datetime, datetime, str | None],
    position: tuple[datetime, UUID], cap: int,
) -> int:  # fmt: skip
    count: int = await pool.fetchval(COUNT_NEWER[kind], *window, *position, cap)
    return count


async def order(pool: Pool, order_id: UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(ORDER, order_id)


async def history(pool: Pool, order_id: UUID, limit: int) -> list[asyncpg.Record] | None:
    """What happened to the order (table order_history), or None where that table is not."""
    async with pool.acquire() as conn:
        if not await conn.fetchval(HAS_HISTORY):
            return None
        return await conn.fetch(HISTORY, order_id, limit)


async def events(pool: Pool, order_id: UUID, limit: int) -> list[asyncpg.Record]:
    return await pool.fetch(EVENTS, order_id, limit)
