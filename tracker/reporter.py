"""The reporting loop: one tracker leads (a session advisory lock on a dedicated connection); the
leader claims new failures and stuck orders, logs each once, and delivers the webhook.

The lock keeps a second tracker idle rather than racing; correctness does not depend on it: the
claim is an INSERT ... ON CONFLICT DO NOTHING (tracker/store.py), so a report happens once even
if two trackers ever ran a cycle at the same time.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from orders_core.db import DB_ERRORS, Pool
from orders_core.leader import Leadership
from tracker import retention, store
from tracker.metrics import CYCLE_ERRORS, LEADER, REPORTS, WEBHOOK_DELIVERIES
from tracker.settings import TrackerSettings
from tracker.webhook import Webhook, report_body, retry_delay

log = logging.getLogger("tracker.reports")

LOCK_KEY = 0x6F72646572735F74  # "orders_t": the tracker's leadership
BATCH = 500  # orders claimed per statement
DELIVERY_BATCH = 50  # webhook POSTs in flight at once
# How far before the watermark a scan starts: covers a row that commits a moment after it took
# its timestamp (failed_at and created_at are set by single-statement, autocommitted writes).
MARGIN_S = 60.0

MESSAGES = {
    "failure": "order failed",
    "stuck": "order stuck in progress",
    "cancel_stuck": "cancel stuck pending",
}


class Reporter:
    def __init__(
        self,
        pool: Pool,
        dsn: str,
        settings: TrackerSettings,
        webhook: Webhook | None,
        report_url: str,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._webhook = webhook
        self._report_url = report_url
        self._next_purge = 0.0  # monotonic time of the next retention purge: at once
        self._leadership = Leadership(
            "tracker", dsn, LOCK_KEY, LEADER, settings.db_command_timeout_s
        )

    @property
    def leading(self) -> bool:
        return self._leadership.leading

    @property
    def _conn(self) -> asyncpg.Connection:
        """The leader's own session, which holds the lock: every write of a cycle goes through
        it, so a tracker whose session (and with it the lead) is gone cannot commit one."""
        conn = self._leadership.conn
        assert conn is not None, "a cycle runs only while leading"
        return conn

    async def run(self) -> None:
        """Forever: lead if possible, then report; survives database outages."""
        while True:
            try:
                if await self._leadership.try_lead():
                    await self.cycle()
            except DB_ERRORS as exc:
                CYCLE_ERRORS.inc()
                log.warning("report cycle failed: %r", exc)
                self._leadership.resign()
            except Exception:
                CYCLE_ERRORS.inc()
                log.exception("report cycle failed unexpectedly")
            await asyncio.sleep(self._settings.tracker_poll_interval_s)

    async def close(self) -> None:
        self._leadership.resign()

    async def cycle(self) -> None:
        """Report everything new, deliver what the webhook is owed, and purge what is past its
        retention window (every TRACKER_RETENTION_INTERVAL_S)."""
        while await self._report_batch("failure") == BATCH:
            pass
        while await self._report_batch("stuck") == BATCH:
            pass
        while await self._report_batch("cancel_stuck") == BATCH:
            pass
        if self._webhook is not None:
            await self._deliver(self._webhook)
        if time.monotonic() >= self._next_purge:
            await retention.purge(self._conn, self._settings)
            self._next_purge = time.monotonic() + self._settings.retention_interval_s

    async def _report_batch(self, kind: str) -> int:
        """Claim and log one batch; the claim commits after the log lines are written, so a
        crash in between reports those orders again rather than never."""
        deliver = self._webhook is not None
        conn = self._conn
        async with conn.transaction():
            if kind == "failure":
                rows = await store.report_failures(conn, MARGIN_S, BATCH, deliver)
            elif kind == "stuck":
                stuck_after = self._settings.tracker_stuck_after_s
                rows = await store.report_stuck(conn, MARGIN_S, BATCH, deliver, stuck_after)
            else:
                stuck_after = self._settings.tracker_cancel_stuck_after_s
                rows = await store.report_cancel_stuck(conn, MARGIN_S, BATCH, deliver, stuck_after)
            self._log_reports(kind, rows)
        return len(rows)

    def _log_reports(self, kind: str, rows: list[asyncpg.Record]) -> None:
        for row in rows:
            body = report_body(kind, row, self._report_url)
            log.warning(
                MESSAGES[kind],
                extra={"event": "order_reported", "kind": kind, **body["order"],
                       "order_id": body["order_id"], "report_url": self._report_url},
            )  # fmt: skip
        REPORTS.labels(kind).inc(len(rows))

    async def _deliver(self, webhook: Webhook) -> None:
        """POST what is due, all at once; then record each outcome, one statement at a time on
        the leader's connection."""
        due = await store.due_deliveries(self._conn, DELIVERY_BATCH)
        errors = await asyncio.gather(*(self._post(webhook, row) for row in due))
        for row, error in zip(due, errors, strict=True):
            await self._record_delivery(row, error)

    async def _post(self, webhook: Webhook, row: asyncpg.Record) -> str | None:
        kind, order_id = row["kind"], row["id"]
        return await webhook.post(kind, order_id, report_body(kind, row, self._report_url))

    async def _record_delivery(self, row: asyncpg.Record, error: str | None) -> None:
        kind, order_id = row["kind"], row["id"]
        if error is None:
            WEBHOOK_DELIVERIES.labels("delivered").inc()
            await store.delivered(self._conn, order_id, kind)
            return
        WEBHOOK_DELIVERIES.labels("failed").inc()
        delay = retry_delay(self._settings, row["webhook_attempts"] + 1)
        log.info(
            "webhook delivery failed; retrying",
            extra={"order_id": str(order_id), "kind": kind, "error": error, "retry_in_s": delay},
        )
        await store.delivery_failed(self._conn, order_id, kind, delay, error)
