"""HTTP handlers: /failures (JSON or CSV), the HTML page, and /metrics."""

from __future__ import annotations

import csv
import io
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from orders_core import cursor
from orders_core.db import DB_ERRORS
from orders_core.web import json_error
from tracker import store
from tracker.keys import POOL, SETTINGS
from tracker.metrics import DATABASE_UP
from tracker.pages import render_index
from tracker.schemas import FAILURE_FIELDS, FailureModel, FailuresPage
from tracker.system_metrics import Snapshot, SnapshotCollector, read_snapshot

log = logging.getLogger(__name__)

MAX_PAGE = 1000
DEFAULT_PAGE = 100
RECENT = 50
INSTRUMENT_RE = re.compile(r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$")
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


class QueryError(Exception):
    pass


@dataclass(frozen=True)
class FailuresQuery:
    since: datetime
    until: datetime
    instrument: str | None
    before: tuple[datetime, uuid.UUID]
    limit: int
    csv: bool


async def failures(request: web.Request) -> web.StreamResponse:
    try:
        q = _failures_query(request.query)
    except QueryError as exc:
        return json_error(400, str(exc))
    pool = request.app[POOL]
    rows = await store.failures_page(pool, q.since, q.until, q.instrument, q.before, q.limit + 1)
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    next_page = cursor.encode(rows[-1]["failed_at"], rows[-1]["id"]) if more else None
    if q.csv:
        return _csv(rows, next_page)
    page = FailuresPage(
        failures=[FailureModel.model_validate(dict(r)) for r in rows], next=next_page
    )
    return web.Response(text=page.model_dump_json(), content_type="application/json")


def _csv(rows: list[asyncpg.Record], next_page: str | None) -> web.Response:
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


def _failures_query(query: Mapping[str, str]) -> FailuresQuery:
    unknown = set(query) - {"since", "until", "instrument", "limit", "after", "format"}
    if unknown:
        raise QueryError(f"unknown query parameters: {', '.join(sorted(unknown))}")
    fmt = query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise QueryError("format must be json or csv")
    instrument = query.get("instrument")
    if instrument is not None and not INSTRUMENT_RE.match(instrument):
        raise QueryError("instrument must be an ISIN")
    raw_limit = query.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise QueryError(f"limit must be an integer from 1 to {MAX_PAGE}")
    after = query.get("after")
    return FailuresQuery(
        since=_instant(query, "since", EARLIEST),
        until=_instant(query, "until", LATEST),
        instrument=instrument,
        before=_position(after),
        limit=int(raw_limit),
        csv=fmt == "csv",
    )


def _position(after: str | None) -> cursor.Position:
    try:
        return cursor.FIRST_PAGE if after is None else cursor.decode(after)
    except cursor.CursorError as exc:
        raise QueryError(str(exc)) from None


def _instant(query: Mapping[str, str], name: str, default: datetime) -> datetime:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise QueryError(f"{name} must be an ISO 8601 timestamp with a UTC offset") from None
    if value.tzinfo is None:
        raise QueryError(f"{name} must be an ISO 8601 timestamp with a UTC offset")
    return value


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
