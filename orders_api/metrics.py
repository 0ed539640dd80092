"""The API's event metrics. Label sets are created up front so `increase()` sees the first event."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from orders_core.domain import CancelStatus, OrderStatus
from orders_core.exchange import Cancelled, Found, Placed, PlaceResult

# The `outcome` label of orders_placement_attempts_total: what dashboards read as the exchange's
# error ratio is (unavailable + unknown) / all.
ATTEMPT_OUTCOMES = ("accepted", "rejected", "unavailable", "unknown")

ORDERS_CREATED = Counter("orders_created_total", "Orders accepted and stored by the API")
PLACEMENT_ATTEMPTS = Counter(
    "orders_placement_attempts_total",
    "Placement requests sent to the exchange, by what came back",
    ["outcome"],
)
PLACEMENT_LOOKUPS = Counter(
    "orders_placement_lookups_total",
    "Lookups of orders whose placement outcome was unknown, by result",
    ["outcome"],
)
RETRIES = Counter("orders_placement_retries_total", "Placement attempts after the synchronous one")
FINISHED = Counter(
    "orders_finished_total", "Orders that reached a final placement status", ["status"]
)
LEASES_LOST = Counter(
    "orders_placement_leases_lost_total",
    "Attempts abandoned because the order's lease had passed to another instance",
)
RETRY_JOBS = Gauge(
    "orders_retry_jobs", "Retry jobs running (all workers)", multiprocess_mode="livesum"
)
SWEEP_ERRORS = Counter(
    "orders_retry_sweep_errors_total", "Sweeps for due retries that failed (database unreachable)"
)

CANCELS_REQUESTED = Counter(
    "orders_cancels_requested_total", "Cancels asked by clients (DELETE /orders/{id}), repeats not"
)
CANCEL_REQUESTS = Counter(
    "orders_cancel_requests_total",
    "Cancel requests sent to the exchange, by what came back",
    ["outcome"],
)
CANCELS = Counter(
    "orders_cancels_total", "Cancels that reached their outcome, by outcome", ["outcome"]
)
UPDATE_STREAMS = Gauge(
    "orders_update_streams", "GET /orders/updates streams open", multiprocess_mode="livesum"
)
UPDATE_EVENTS_SENT = Counter("orders_update_events_sent_total", "Order updates sent to streams")
UPDATE_STREAM_ENDS = Counter(
    "orders_update_stream_ends_total",
    "Update streams ended, by why: client (went away), slow (took no write within "
    "SSE_SEND_TIMEOUT_S), database (the log could not be read), shutdown",
    ["reason"],
)
UPDATE_DELIVERY = Histogram(
    "orders_update_delivery_seconds",
    "From a change's commit-time write to its event sent on a stream (stream lag)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
UPDATES_SEQUENCED = Counter(
    "orders_updates_sequenced_total", "Order updates given their cursor by this process"
)
UPDATES_SEQUENCE_DELAY = Histogram(
    "orders_updates_sequence_delay_seconds",
    "Age of the oldest update in each batch numbered (write to cursor)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UPDATES_SEQUENCER_ERRORS = Counter(
    "orders_updates_sequencer_errors_total", "Numbering runs that failed (database unreachable)"
)
STREAM_END_REASONS = ("client", "slow", "database", "shutdown")

for _outcome in ATTEMPT_OUTCOMES:
    PLACEMENT_ATTEMPTS.labels(_outcome)
for _found in Found:
    PLACEMENT_LOOKUPS.labels(_found.value)
for _status in (OrderStatus.SUCCESS, OrderStatus.FAILURE):
    FINISHED.labels(_status.value)
for _cancelled in Cancelled:
    CANCEL_REQUESTS.labels(_cancelled.value)
for _final in (CancelStatus.CANCELED, CancelStatus.REFUSED):
    CANCELS.labels(_final.value)
for _reason in STREAM_END_REASONS:
    UPDATE_STREAM_ENDS.labels(_reason)


def attempt_outcome(result: PlaceResult) -> str:
    """accepted (booked or held), rejected (400), unavailable (503 or 408: said so, nothing
    booked), unknown (timeout, broken connection, other answers)."""
    if result.outcome is Placed.ACCEPTED:
        return "accepted"
    if result.outcome is Placed.REJECTED:
        return "rejected"
    if result.outcome is Placed.EXPIRED or result.http_status == 503:
        return "unavailable"
    return "unknown"
