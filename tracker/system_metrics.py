"""System gauges read from the database at scrape time, at a bounded cost per scrape.

One round trip: orders per status from the trigger-maintained counters (16 rows per status, not
a count over `orders`), the oldest unfinished order from the partial index's first entry, pending
retries counted through the partial index up to a cap, and the stream lag from its one row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orders_core.db import Pool
from orders_core.domain import OrderStatus

RETRIES_PENDING_CAP = 10_000

SNAPSHOT = f"""
SELECT status, sum(orders)::bigint AS orders, sum(entered)::bigint AS entered,
       (SELECT extract(epoch FROM clock_timestamp() - min(created_at))::float8
          FROM orders WHERE status = 'IN PROGRESS') AS oldest_age_s,
       (SELECT count(*) FROM (SELECT 1 FROM orders
                               WHERE status = 'IN PROGRESS' AND next_attempt_at IS NOT NULL
                               LIMIT {RETRIES_PENDING_CAP}) AS p) AS retries_pending,
       (SELECT greatest(exchange_seq - seq, 0) FROM exchange_stream_position) AS stream_lag,
       (SELECT count(*) FROM (SELECT 1 FROM orders WHERE cancel_status = 'PENDING'
                               LIMIT {RETRIES_PENDING_CAP}) AS c) AS cancels_pending,
       (SELECT extract(epoch FROM clock_timestamp() - min(cancel_requested_at))::float8
          FROM orders WHERE cancel_status = 'PENDING') AS oldest_cancel_s
  FROM orders_status_counts
 GROUP BY status"""


@dataclass(frozen=True)
class Snapshot:
    by_status: dict[str, int]
    failed_total: int
    oldest_in_progress_age_s: float
    retries_pending: int
    stream_lag_events: int
    cancels_pending: int
    oldest_cancel_pending_age_s: float


async def read_snapshot(pool: Pool) -> Snapshot:
    rows = await pool.fetch(SNAPSHOT, timeout=5)
    by_status = {s.value: 0 for s in OrderStatus} | {r["status"]: r["orders"] for r in rows}
    entered = {r["status"]: r["entered"] for r in rows}
    first = rows[0] if rows else None
    return Snapshot(
        by_status=by_status,
        failed_total=entered.get(OrderStatus.FAILURE.value, 0),
        oldest_in_progress_age_s=max(first["oldest_age_s"] or 0.0, 0.0) if first else 0.0,
        retries_pending=first["retries_pending"] if first else 0,
        stream_lag_events=(first["stream_lag"] or 0) if first else 0,
        cancels_pending=first["cancels_pending"] if first else 0,
        oldest_cancel_pending_age_s=max(first["oldest_cancel_s"] or 0.0, 0.0) if first else 0.0,
    )


class SnapshotCollector(Collector):
    """Renders one snapshot; built per scrape, after the snapshot was awaited."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot
        by_status = GaugeMetricFamily(
            "orders_by_status", "Orders in each placement status now", labels=["status"]
        )
        for status, count in sorted(s.by_status.items()):
            by_status.add_metric([status], count)
        yield by_status
        yield CounterMetricFamily(
            "orders_failed", "Orders that reached FAILURE, ever", value=s.failed_total
        )
        yield GaugeMetricFamily(
            "orders_in_progress_oldest_age_seconds",
            "Age of the oldest order still IN PROGRESS (0 when none is)",
            value=s.oldest_in_progress_age_s,
        )
        yield GaugeMetricFamily(
            "orders_retries_pending",
            f"Orders IN PROGRESS with a retry scheduled (counted up to {RETRIES_PENDING_CAP})",
            value=s.retries_pending,
        )
        yield GaugeMetricFamily(
            "orders_cancels_pending",
            f"Orders whose cancel is PENDING (counted up to {RETRIES_PENDING_CAP})",
            value=s.cancels_pending,
        )
        yield GaugeMetricFamily(
            "orders_cancel_pending_oldest_age_seconds",
            "Age of the oldest cancel still PENDING (0 when none is)",
            value=s.oldest_cancel_pending_age_s,
        )
        yield GaugeMetricFamily(
            "exchange_stream_lag_events",
            "Stream events the exchange announced that the listener has not committed yet",
            value=s.stream_lag_events,
        )
