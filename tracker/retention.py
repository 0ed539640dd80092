"""Retention: exchange events, tracker reports and Idempotency-Keys are kept for a documented
window (`*_RETENTION_DAYS`), then purged by the leading tracker in small batches.

- exchange events older than EVENTS_RETENTION_DAYS are deleted (an order's current exchange status
  lives in exchange_order_status and stays);
- a report older than REPORTS_RETENTION_DAYS is deleted once it owes no webhook delivery (the
  report scans start from their watermark, so an old order is never reported again);
- an Idempotency-Key older than IDEMPOTENCY_RETENTION_DAYS is forgotten: the order stays, and a
  request repeating that key is a new order;
- order updates (the live streams' log) older than UPDATES_RETENTION_DAYS are deleted, oldest
  cursors first, and the cursor purged through is recorded: a stream resuming from before it is
  told (410) rather than silently missing events.
"""

from __future__ import annotations

import logging

from orders_core.db import Db
from tracker.metrics import PURGED
from tracker.settings import TrackerSettings

log = logging.getLogger(__name__)

BATCH = 5_000  # rows per statement: short transactions, short locks

PURGE_EVENTS = """
DELETE FROM exchange_events WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM exchange_events
     WHERE received_at < statement_timestamp() - make_interval(days => $1)
     ORDER BY received_at LIMIT $2))"""
PURGE_REPORTS = """
DELETE FROM tracker_reports WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM tracker_reports
     WHERE reported_at < statement_timestamp() - make_interval(days => $1)
       AND (webhook_delivered_at IS NOT NULL OR next_delivery_at IS NULL)
     ORDER BY reported_at LIMIT $2))"""
FORGET_KEYS = """
UPDATE orders SET idempotency_key = NULL, request_hash = NULL
 WHERE id = ANY (ARRAY(
    SELECT id FROM orders
     WHERE idempotency_key IS NOT NULL
       AND created_at < statement_timestamp() - make_interval(days => $1)
     ORDER BY created_at LIMIT $2))"""

# The statement's own count is the DELETE's; the horizon moves in the same transaction.
PURGE_UPDATES = """
WITH doomed AS (
    SELECT id, seq FROM order_updates
     WHERE seq IS NOT NULL AND at < statement_timestamp() - make_interval(days => $1)
     ORDER BY at LIMIT $2
), moved AS (
    UPDATE order_updates_horizon
       SET purged_through = greatest(purged_through, (SELECT max(seq) FROM doomed))
     WHERE EXISTS (SELECT 1 FROM doomed)
)
DELETE FROM order_updates WHERE id IN (SELECT id FROM doomed)"""

PURGES = {
    "exchange_events": (PURGE_EVENTS, "events_retention_days"),
    "tracker_reports": (PURGE_REPORTS, "reports_retention_days"),
    "idempotency_keys": (FORGET_KEYS, "idempotency_retention_days"),
    "order_updates": (PURGE_UPDATES, "updates_retention_days"),
}


async def purge(pool: Db, settings: TrackerSettings) -> dict[str, int]:
    """One pass: each kind purged in batches until nothing past its window is left."""
    purged: dict[str, int] = {}
    for name, (sql, setting) in PURGES.items():
        days: int = getattr(settings, setting)
        total = 0
        while True:
            status: str = await pool.execute(sql, days, BATCH)
            count = int(status.rsplit(" ", 1)[1])
            total += count
            if count < BATCH:
                break
        PURGED.labels(name).inc(total)
        purged[name] = total
    if any(purged.values()):
        log.info("retention purge", extra={"purged": purged})
    return purged
