"""The pages an on-call engineer reads: failed or stuck orders (`GET /`) and one order
(`GET /orders/{id}`). Here is what they show, worked out from the database; how it looks is in
templates/ (aiohttp-jinja2, autoescaped)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from uuid import UUID

import asyncpg
from pydantic import BeforeValidator, Field

from orders_core import cursor
from orders_core.db import Pool
from orders_core.domain import Isin
from orders_core.params import Cursor, Params, QueryInt, Uuid
from tracker import store

PAGE_SIZE = 50
COUNT_CAP = 10_000  # counts stop there: "more than 10,000"
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)
NEWEST = (EARLIEST, UUID(int=0))  # before every row: counting from here counts them all
STUCK_PREVIEW = 5
Kind = Literal["failure", "stuck"]


def _blank_is_none(value: object) -> object:
    """A form sends an empty field as `name=`: that is no filter."""
    return None if value == "" else value


def _form_time(value: object) -> object:
    """A time from the form's datetime-local field has no offset: it is UTC (the page says so)."""
    value = _blank_is_none(value)
    if isinstance(value, str):
        if len(value) > 64 or not value.isascii():
            raise ValueError("must be a date and time, like 2026-01-05T12:00")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be a date and time, like 2026-01-05T12:00") from None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return value


FormTime = Annotated[datetime | None, BeforeValidator(_form_time)]


class ReportQuery(Params):
    """`GET /`: which orders, which page, and whether the page reloads itself."""

    kind: Kind = "failure"
    since: FormTime = None
    until: FormTime = None
    instrument: Annotated[Isin | None, BeforeValidator(_blank_is_none)] = None
    after: Cursor | None = Field(default=None, description="older than this row")
    before: Cursor | None = Field(default=None, description="newer than this row")
    limit: QueryInt = Field(default=PAGE_SIZE, ge=1, le=500)
    refresh: QueryInt | None = Field(default=None, ge=5, le=3600, description="reload every N s")

    def link(self, **changes: Any) -> str:
        """This page's URL with `changes` (None drops a parameter)."""
        values = {
            "kind": self.kind if self.kind != "failure" else None,
            "since": _form_value(self.since),
            "until": _form_value(self.until),
            "instrument": self.instrument,
            "limit": self.limit if self.limit != PAGE_SIZE else None,
            "refresh": self.refresh,
        } | changes
        query = urlencode({k: v for k, v in values.items() if v is not None})
        return f"/?{query}" if query else "/"

    def csv_link(self) -> str:
        """The failures of these filters as CSV (`GET /failures`, at most one page of 1000)."""
        values = {
            "format": "csv",
            "limit": 1000,
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "instrument": self.instrument,
        }
        return "/failures?" + urlencode({k: v for k, v in values.items() if v is not None})


def _form_value(at: datetime | None) -> str | None:
    return None if at is None else at.strftime("%Y-%m-%dT%H:%M:%S")


class OrderPath(Params):
    id: Uuid


@dataclass
class Report:
    query: ReportQuery
    now: datetime
    stuck_after_s: float
    rows: list[asyncpg.Record]
    total: int
    offset: int
    older: str | None
    newer: str | None
    other_total: int  # the other kind's, with the same filters
    stuck_preview: list[asyncpg.Record] = field(default_factory=list)  # the oldest stuck

    @property
    def capped(self) -> bool:
        return self.total >= COUNT_CAP


def window(
    query: ReportQuery, kind: Kind, now: datetime, stuck_after_s: float
) -> tuple[datetime, datetime, str | None]:
    """(since, until, instrument) for `kind`: a stuck order is one created before now minus
    TRACKER_STUCK_AFTER_S, so that bound narrows `until`."""
    until = query.until or LATEST
    if kind == "stuck":
        until = min(until, now - timedelta(seconds=stuck_after_s))
    return (query.since or EARLIEST, until, query.instrument)


async def report(pool: Pool, query: ReportQuery, stuck_after_s: float) -> Report:
    now = datetime.now(UTC)
    kind = query.kind
    other: Kind = "stuck" if kind == "failure" else "failure"
    span = window(query, kind, now, stuck_after_s)
    newer = query.before is not None
    position = query.before or query.after or cursor.FIRST_PAGE
    rows = await store.report_rows(pool, kind, span, position, newer, query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    if newer:
        rows.reverse()
    ts = "failed_at" if kind == "failure" else "created_at"
    total = await store.count_newer(pool, kind, span, NEWEST, COUNT_CAP)
    offset = 0
    if rows:
        first = (rows[0][ts], rows[0]["id"])
        offset = await store.count_newer(pool, kind, span, first, COUNT_CAP)
    has_older = (more and not newer) or (newer and bool(rows))
    result = Report(
        query=query, now=now, stuck_after_s=stuck_after_s, rows=rows, total=total, offset=offset,
        older=query.link(after=cursor.encode(rows[-1][ts], rows[-1]["id"])) if has_older else None,
        newer=query.link(before=cursor.encode(rows[0][ts], rows[0]["id"])) if offset else None,
        other_total=await store.count_newer(
            pool, other, window(query, other, now, stuck_after_s), NEWEST, COUNT_CAP
        ),
    )  # fmt: skip
    if kind == "failure" and result.other_total:
        result.stuck_preview = await store.report_rows(
            pool, "stuck", window(query, "stuck", now, stuck_after_s), NEWEST, True, STUCK_PREVIEW
        )  # fmt: skip
    return result


def activity(row: asyncpg.Record, now: datetime) -> str:
    """What the API is doing about an unfinished order, from its placement state."""
    if row["lease_owner"] and row["lease_expires_at"] and row["lease_expires_at"] > now:
        return f"attempt {row['attempts']} in flight ({row['lease_owner']})"
    if row["pending_deadline"] is not None:
        failed = row["lookup_failures"]
        tail = f"; {failed} lookups failed in a row" if failed else ""
        return f"looking it up: did the exchange book attempt {row['attempts']}?{tail}"
    return f"placing it again: attempt {row['attempts'] + 1}"


def ago(at: datetime | None, now: datetime) -> str:
    """`at` relative to `now`: "3 min ago", "in 20 s"."""
    if at is None:
        return ""
    text = duration(abs(now - at))
    return f"{text} ago" if at <= now else f"in {text}"


def duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def exact(at: datetime | None) -> str:
    """The time to the millisecond, in UTC: what a hover shows."""
    return "" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


FILTERS: dict[str, Callable[..., str]] = {"ago": ago, "duration": duration, "exact": exact}
