"""HTTP handlers: /failures (JSON or CSV), the HTML page, and /metrics."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from orders_core import cursor
from orders_core.db import DB_ERRORS
from tracker import store
from tracker.keys import POOL, SETTINGS
from tracker.metrics import DATABASE_UP
from tracker.pages import render_index
from tracker.schemas import FAILURE_FIELDS, FailureModel, FailuresPage, FailuresQuery
from tracker.system_metrics import Snapshot, SnapshotCollector, read_snapshot

log = logging.getLogger(__name__)

RECENT = 50
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


async def failures(request: web.Request, query: FailuresQuery) -> web.StreamResponse:
    since, until = query.since or EARLIEST, query.until or LATEST
    rows, next_page = query.cut(
        await store.failures_page(
            request.app[POOL], since, until, query.instrument, query.before, query.fetch
        ),
        at="failed_at",
    )
    if query.format == "csv":
        return _csv(rows, next_page)
    page = FailuresPage(
        failures=[FailureModel.model_validate(dict(r)) for r in rows], next=next_page
    )
    return web.Response(text=page.model_dump_json(), content_type="application/json")


def _csv(rows: Sequence[asyncpg.Record], next_page: str | None) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(FAILURE_FIELDS)
    for row in rows:
        model = FailureModel.model_validate(dict(row)).model_dump(mode="json")
        writer.writerow(["" if model[f] is None else model[f] for f in FAILURE_FIELDS])
    response = web.Response(text=out.getvalue(), content_type="text/csv")
    if next_page is not None:
        response.headers["X-Next-Cursor"] = next_page
    return response


async def index(request: web.Request) -> web.Response:
    pool, stuck_after = request.app[POOL], request.app[SETTINGS].tracker_stuck_after_s
    recent = await store.failures_page(pool, EARLIEST, LATEST, None, cursor.FIRST_PAGE, RECENT)
    stuck = await store.stuck_now(pool, stuck_after, RECENT)
    return web.Response(text=render_index(recent, stuck, stuck_after), content_type="text/html")


class _Scrape(Collector):
    """This process's metrics, then the system gauges of one snapshot (if the DB answered)."""

    def __init__(self, snapshot: Snapshot | None) -> None:
        self._snapshot = snapshot

    def collect(self) -> list[Metric]:
        metrics = list(REGISTRY.collect())
        if self._snapshot is not None:
            metrics += SnapshotCollector(self._snapshot).collect()
        return metrics


async def metrics(request: web.Request) -> web.StreamResponse:
    """Await the database read, then render (the collectors themselves never block)."""
    snapshot: Snapshot | None = None
    try:
        snapshot = await read_snapshot(request.app[POOL])
    except DB_ERRORS as exc:
        log.warning("system metrics unavailable: %r", exc)
    DATABASE_UP.set(snapshot is not None)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(snapshot))
    return await make_aiohttp_handler(registry)(request)
