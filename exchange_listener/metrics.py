"""The listener's metrics. Label sets are created up front so `increase()` sees the first event."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "exchange_stream_events_total",
    "Execution reports received, by what became of them",
    ["result"],
)
EVENT_RESULTS = ("stored", "duplicate", "foreign")
UNKNOWN_ORDER_EVENTS = Counter(
    "exchange_stream_unknown_order_events_total",
    "Stored events about orders this system does not have",
)
REFUSED_MOVES = Counter(
    "exchange_stream_refused_moves_total",
    "Status updates refused because they would move an order's status backwards",
)
RECONNECTS = Counter(
    "exchange_stream_reconnects_total", "Stream connections lost or refused, then retried"
)
RESYNCS = Counter(
    "exchange_stream_resyncs_total", "Resynchronisations over REST, by cause", ["reason"]
)
RESYNC_REASONS = ("gap", "reset", "epoch")
REPLAYS = Counter(
    "exchange_stream_replays_total",
    "Gaps in the stream closed by reconnecting and replaying from the committed position",
)
BATCH_SIZE = Histogram(
    "exchange_stream_batch_size_events",
    "Events per database write",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
LAG = Gauge(
    "exchange_stream_listener_lag_events",
    "Events the exchange announced that this listener has not committed yet",
)
COMMITTED_SEQ = Gauge("exchange_stream_committed_seq", "The last stream position committed")
CONNECTED = Gauge("exchange_stream_connected", "1 while connected to the exchange's stream")
LEADER = Gauge("exchange_stream_leader", "1 while this listener is the one that ingests")

for _result in EVENT_RESULTS:
    EVENTS.labels(_result)
for _reason in RESYNC_REASONS:
    RESYNCS.labels(_reason)
