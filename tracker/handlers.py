"""HTTP handlers: /failures (JSON or CSV), the pages (tracker/pages.py), and /metrics."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import aiohttp_jinja2
import asyncpg
from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from orders_core.db import DB_ERRORS
from tracker import pages, store
from tracker.keys import POOL, SETTINGS
from tracker.metrics import DATABASE_UP
from tracker.pages import OrderPath, ReportQuery
from tracker.schemas import FAILURE_FIELDS, FailureModel, FailuresPage, FailuresQuery
from tracker.system_metrics import Snapshot, SnapshotCollector, read_snapshot

log = logging.getLogger(__name__)

ORDER_ROWS = 500  # history entries and exchange events shown on an order's page
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
        return _csv(rows, next_page, datetime.now(UTC))
    page = FailuresPage(
        failures=[FailureModel.model_validate(dict(r)) for r in rows], next=next_page
    )
    return web.Response(text=page.model_dump_json(), content_type="application/json")


def _csv(rows: Sequence[asyncpg.Record], next_page: str | None, now: datetime) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(FAILURE_FIELDS)
    for row in rows:
        model = FailureModel.model_validate(dict(row)).model_dump(mode="json")
        writer.writerow(["" if model[f] is None else model[f] for f in FAILURE_FIELDS])
    response = web.Response(text=out.getvalue(), content_type="text/csv")
    name = f"failures-{now:%Y%m%dT%H%M%SZ}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    if next_page is not None:
        response.headers["X-Next-Cursor"] = next_page
    return response


async def index(request: web.Request, query: ReportQuery) -> web.StreamResponse:
    stuck_after_s = request.app[SETTINGS].tracker_stuck_after_s
    report = await pages.report(request.app[POOL], query, stuck_after_s)
    context = {"r": report, "now": report.now, "activity": pages.activity}
    return aiohttp_jinja2.render_template("index.html", request, context)


async def order_page(request: web.Request, path: OrderPath) -> web.StreamResponse:
    pool, now = request.app[POOL], datetime.now(UTC)
    order = await store.order(pool, path.id)
    if order is None:
        context = {"now": now, "order_id": path.id}
        return aiohttp_jinja2.render_template("missing.html", request, context, status=404)
    context = {
        "now": now,
        "o": order,
        "history": await store.history(pool, path.id, ORDER_ROWS),
        "events": await store.events(pool, path.id, ORDER_ROWS),
        "activity": pages.activity(order, now) if order["status"] == "IN PROGRESS" else None,
    }
    return aiohttp_jinja2.render_template("order.html", request, context)


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
