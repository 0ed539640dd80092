"""Every service's /metrics follows Prometheus conventions (SPEC §5): `_total` counters, base
units (`_seconds`), no ids in labels, label sets present from the first scrape (so `increase()`
sees the first event), fewer than 500 series per process."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import fast_settings
from tests.sim import SimProcess
from tests.tracker_procs import MONITORED, Running

MAX_SERIES = 500
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
NOT_BASE_UNITS = re.compile(r"_(ms|milliseconds|microseconds|minutes|hours|kb|mb|percent)(_|$)")
TIME_WORDS = re.compile(r"(duration|latency|_age|_time|delay|elapsed)")
ID_LABEL = re.compile(r"(^id$|_id$|^uuid$)")
# What dashboards and alerts rely on (SPEC §5), per service.
REQUIRED = {
    "orders-api": {
        "orders_placement_attempts_total": {"outcome": {"accepted", "rejected", "unavailable",
                                                        "unknown"}},
        "http_request_duration_seconds": {},
        "orders_placement_retries_total": {},
        "db_pool_connections": {"state": {"in_use", "idle"}},
    },
    "exchange-listener": {
        "exchange_stream_events_total": {"result": {"stored", "duplicate", "foreign"}},
        "exchange_stream_reconnects_total": {},
        "exchange_stream_resyncs_total": {"reason": {"gap", "reset", "epoch"}},
        "exchange_stream_connected": {},
        "exchange_stream_listener_lag_events": {},
    },
    "tracker": {
        "orders_by_status": {"status": {"SUCCESS", "IN PROGRESS", "FAILURE"}},
        "orders_failed_total": {},
        "orders_in_progress_oldest_age_seconds": {},
        "orders_retries_pending": {},
        "exchange_stream_lag_events": {},
        "db_pool_connections": {"state": {"in_use", "idle"}},
    },
}  # fmt: skip


async def _scrape(url: str) -> list[Metric]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        families = list(text_string_to_metric_families(await resp.text()))
    # client_python's creation timestamps of counters and histograms come as `<name>_created`.
    names = {f.name for f in families}
    return [f for f in families if not (f.name.endswith("_created") and f.name[:-8] in names)]


def _sample_name(family: Metric) -> str:
    return f"{family.name}_total" if family.type == "counter" else family.name


@pytest.fixture(params=[name for name, _ in MONITORED])
async def service(
    request: pytest.FixtureRequest, db_url: str, exchange: SimProcess
) -> AsyncIterator[tuple[str, Running]]:
    name = request.param
    start = dict(MONITORED)[name]
    running = await start(fast_settings(db_url, exchange.url))
    try:
        yield name, running
    finally:
        await running.stop()


async def test_metrics_follow_prometheus_conventions(service: tuple[str, Running]) -> None:
    name, running = service
    fresh = await _scrape(running.url)  # before any event: label sets must already be there
    for family in fresh:
        if family.type == "counter":
            assert family.samples, f"{name}: counter {family.name} has no series before its event"
    async with aiohttp.ClientSession() as http, http.get(f"{running.url}/health/live"):
        pass
    families = await _scrape(running.url)
    series = sum(len(f.samples) for f in families)
    assert series < MAX_SERIES, f"{name}: {series} series"
    for family in families:
        metric = _sample_name(family)
        assert NAME_RE.match(metric), metric
        assert not NOT_BASE_UNITS.search(metric), f"{metric}: use base units"
        if family.type == "counter":
            assert metric.endswith("_total"), metric
        else:
            assert not metric.endswith("_total"), f"{metric}: only counters end in _total"
        if TIME_WORDS.search(metric):
            assert metric.endswith(("_seconds", "_seconds_total")), f"{metric}: seconds"
        for sample in family.samples:
            for label, value in sample.labels.items():
                assert not ID_LABEL.search(label), f"{metric}: id label {label}"
                assert not UUID_RE.search(value), f"{metric}: id in label value {value}"
    _check_required(name, families)


def _check_required(name: str, families: list[Metric]) -> None:
    by_name = {_sample_name(f): f for f in families}
    for metric, labels in REQUIRED.get(name, {}).items():
        assert metric in by_name, f"{name} does not export {metric}"
        for label, values in labels.items():
            seen = {s.labels.get(label) for s in by_name[metric].samples}
            assert values <= seen, f"{metric}{{{label}}}: {values - seen} missing"
