"""The tracker's own event metrics. Label sets are created up front so `increase()` sees the
first event; the system-wide gauges read from the database live in system_metrics.py."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REPORT_KINDS = ("failure", "stuck", "cancel_stuck")
DELIVERY_OUTCOMES = ("delivered", "failed")

REPORTS = Counter(
    "tracker_reports_total", "Orders reported by this process, by kind of report", ["kind"]
)
WEBHOOK_DELIVERIES = Counter(
    "tracker_webhook_deliveries_total", "Webhook POSTs of reports, by outcome", ["outcome"]
)
CYCLE_ERRORS = Counter(
    "tracker_cycle_errors_total", "Report cycles that failed (database unreachable, ...)"
)
PURGED = Counter(
    "tracker_retention_purged_total",
    "Rows purged past their retention window, by what they were",
    ["kind"],
)
LEADER = Gauge("tracker_leader", "1 while this process holds the reporting lock, else 0")
DATABASE_UP = Gauge("tracker_database_up", "1 when the last scrape could read the database")

for _kind in REPORT_KINDS:
    REPORTS.labels(_kind)
for _outcome in DELIVERY_OUTCOMES:
    WEBHOOK_DELIVERIES.labels(_outcome)
for _purged in ("exchange_events", "tracker_reports", "idempotency_keys", "order_updates"):
    PURGED.labels(_purged)
