"""The tracker against a real database: status counters kept by triggers, /failures, the HTML
page, the system gauges of /metrics, stuck orders, webhook retries and leadership (SPEC §5)."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from orders_core.migrate import DEFAULT_DIR, migrate
from tests.helpers import eventually, fast_settings
from tests.pg import _admin, with_database
from tests.tracker_procs import WebhookReceiver
from tracker.app import create_app
from tracker.keys import REPORTER

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[..., Awaitable[Client]]
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
INSERT = """
INSERT INTO orders (id, type, side, instrument, quantity, status, failed_at, created_at,
                    exchange_order_id, attempts, last_error, account_id)
SELECT gen_random_uuid(), 'market', 'buy', $1, 1, $2,
       CASE WHEN $2 = 'FAILURE' THEN $3::timestamptz + make_interval(secs => g) END,
       $3::timestamptz + make_interval(secs => g),
       CASE WHEN $2 = 'SUCCESS' THEN 'x' END, 6, CASE WHEN $2 = 'FAILURE' THEN 'exchange 503' END,
       gen_random_uuid()
  FROM generate_series(1, $4) AS g"""
# The same rows as a database before accounts (migration 0006) takes them.
INSERT_BEFORE_ACCOUNTS = INSERT.replace(", account_id)", ")").replace(
    "END,\n       gen_random_uuid()", "END"
)
COUNTS = "SELECT status, sum(orders) AS n FROM orders_status_counts GROUP BY status"
LATER = "GB0002634946"  # the instrument of an order inserted later than the others
DELIVERED_AT = """
SELECT r.webhook_delivered_at FROM tracker_reports AS r JOIN orders AS o ON o.id = r.order_id
 WHERE o.instrument = $1"""
TRUTH = "SELECT status, count(*) AS n FROM orders GROUP BY status"


async def _insert(
    db: asyncpg.Connection, status: str, n: int, at: datetime = T0, isin: str = "US0378331005"
) -> None:
    await db.execute(INSERT, isin, status, at, n)


async def _tracker(aiohttp_client: AiohttpClient, db_url: str, **overrides: Any) -> Client:
    values: dict[str, Any] = {"tracker_poll_interval_s": 0.05} | overrides
    return await aiohttp_client(create_app(fast_settings(db_url, "http://127.0.0.1:9", **values)))


async def _counts(db: asyncpg.Connection, sql: str) -> dict[str, int]:
    return {r["status"]: r["n"] for r in await db.fetch(sql) if r["n"]}


async def test_status_counters_follow_every_write(db: asyncpg.Connection, db_url: str) -> None:
    await _insert(db, "IN PROGRESS", 30)
    await _insert(db, "FAILURE", 4)
    other = await asyncpg.connect(db_url)  # another backend: another shard
    try:
        await other.execute(INSERT, "DE0007164600", "IN PROGRESS", T0, 10)
        await other.execute(
            "UPDATE orders SET status = 'SUCCESS', exchange_order_id = 'x', next_attempt_at = NULL"
            " WHERE id IN (SELECT id FROM orders WHERE status = 'IN PROGRESS' LIMIT 25)"
        )
    finally:
        await other.close()
    await db.execute("UPDATE orders SET attempts = attempts + 1")  # no status change
    await db.execute("DELETE FROM orders WHERE id IN (SELECT id FROM orders LIMIT 3)")
    assert await _counts(db, COUNTS) == await _counts(db, TRUTH)
    shards = await db.fetchval(
        "SELECT count(DISTINCT shard) FROM orders_status_counts WHERE orders <> 0"
    )
    assert shards >= 2
    # Rows that reached FAILURE, ever: 4 (deleting rows does not make the counter go back).
    entered = "SELECT sum(entered) FROM orders_status_counts WHERE status = 'FAILURE'"
    assert await db.fetchval(entered) == 4


async def test_migration_counts_rows_that_existed_before_it(pg_server: str, tmp_path: Path) -> None:
    name = f"orders_t_{uuid.uuid4().hex[:12]}"
    await _admin(pg_server, f'CREATE DATABASE "{name}"')
    dsn = with_database(pg_server, name)
    try:
        for sql in sorted(DEFAULT_DIR.glob("000[12]_*.sql")):
            (tmp_path / sql.name).write_text(sql.read_text())
        await migrate(dsn, tmp_path)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(INSERT_BEFORE_ACCOUNTS, "US0378331005", "SUCCESS", T0, 7)
            await conn.execute(INSERT_BEFORE_ACCOUNTS, "US0378331005", "FAILURE", T0, 2)
            await migrate(dsn)
            assert await _counts(conn, COUNTS) == {"SUCCESS": 7, "FAILURE": 2}
            # ... and those orders now belong to the account `legacy` (migration 0006).
            owners = await conn.fetch(
                "SELECT a.name, count(*) FROM orders o JOIN accounts a ON a.id = o.account_id"
                " GROUP BY a.name"
            )
            assert [tuple(r) for r in owners] == [("legacy", 9)]
        finally:
            await conn.close()
    finally:
        await _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_failures_filters_pages_and_csv(
    db_url: str, db: asyncpg.Connection, aiohttp_client: AiohttpClient
) -> None:
    await _insert(db, "FAILURE", 5, T0, "US0378331005")
    await _insert(db, "FAILURE", 3, T0 + timedelta(hours=1), "DE0007164600")
    await _insert(db, "SUCCESS", 4)
    tracker = await _tracker(aiohttp_client, db_url)

    body = await (await tracker.get("/failures")).json()
    assert len(body["failures"]) == 8
    assert body["next"] is None
    first = body["failures"][0]
    assert set(first) == {"id", "instrument", "side", "type", "quantity", "created_at",
                          "failed_at", "attempts", "last_error"}  # fmt: skip
    assert first["instrument"] == "DE0007164600"  # newest first
    assert first["last_error"] == "exchange 503"
    assert first["attempts"] == 6

    seen, cursor = [], None
    while True:
        query = {"limit": "3"} | ({"after": cursor} if cursor else {})
        page = await (await tracker.get("/failures", params=query)).json()
        seen += [f["id"] for f in page["failures"]]
        if (cursor := page["next"]) is None:
            break
    assert seen == [f["id"] for f in body["failures"]]

    by_isin = await (await tracker.get("/failures?instrument=US0378331005")).json()
    assert {f["instrument"] for f in by_isin["failures"]} == {"US0378331005"}
    until = (T0 + timedelta(seconds=3)).isoformat()
    window = await tracker.get("/failures", params={"since": T0.isoformat(), "until": until})
    assert len((await window.json())["failures"]) == 2  # failed_at T0+1 s and T0+2 s

    resp = await tracker.get("/failures", params={"format": "csv", "limit": "2"})
    assert resp.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [r["id"] for r in rows] == seen[:2]
    assert resp.headers["X-Next-Cursor"]
    for bad in ("limit=0", "since=yesterday", "after=nope", "instrument=X", "format=xml", "x=1"):
        assert (await tracker.get(f"/failures?{bad}")).status == 400, bad


async def test_index_page_lists_failures_and_stuck_orders(
    db_url: str, db: asyncpg.Connection, aiohttp_client: AiohttpClient
) -> None:
    await _insert(db, "FAILURE", 1)
    await db.execute("UPDATE orders SET last_error = '<script>x</script>'")
    await _insert(db, "IN PROGRESS", 1, datetime.now(UTC) - timedelta(hours=1))
    failed, stuck = [
        str(r["id"]) for r in await db.fetch("SELECT id FROM orders ORDER BY status DESC")
    ]  # fmt: skip
    tracker = await _tracker(aiohttp_client, db_url, tracker_stuck_after_s=60)
    resp = await tracker.get("/")
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert failed in page
    assert stuck in page
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


def _samples(text: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


async def test_metrics_read_the_system_from_the_database(
    db_url: str, db: asyncpg.Connection, aiohttp_client: AiohttpClient
) -> None:
    await _insert(db, "SUCCESS", 6)
    await _insert(db, "FAILURE", 2)
    await _insert(db, "IN PROGRESS", 3, datetime.now(UTC) - timedelta(seconds=100))
    await db.execute("UPDATE orders SET next_attempt_at = now() WHERE status = 'IN PROGRESS'")
    await db.execute("UPDATE exchange_stream_position SET seq = 40, exchange_seq = 47")
    tracker = await _tracker(aiohttp_client, db_url)
    m = _samples(await (await tracker.get("/metrics")).text())
    assert m["orders_by_status{status=SUCCESS}"] == 6
    assert m["orders_by_status{status=FAILURE}"] == 2
    assert m["orders_by_status{status=IN PROGRESS}"] == 3
    assert m["orders_failed_total"] == 2
    assert 90 <= m["orders_in_progress_oldest_age_seconds"] < 200
    assert m["orders_retries_pending"] == 3
    assert m["exchange_stream_lag_events"] == 7
    assert m["tracker_database_up"] == 1
    assert m["db_pool_connections{state=idle}"] + m["db_pool_connections{state=in_use}"] >= 1


async def test_stuck_orders_reported_once_and_webhook_retried(
    db_url: str, db: asyncpg.Connection, aiohttp_client: AiohttpClient
) -> None:
    hook = WebhookReceiver(fail_first_every=1)  # every report's first POST is refused
    await hook.start()
    try:
        await _insert(db, "IN PROGRESS", 2, datetime.now(UTC) - timedelta(seconds=30))
        await _insert(db, "IN PROGRESS", 1, datetime.now(UTC))  # not stuck yet
        await _tracker(
            aiohttp_client, db_url, tracker_stuck_after_s=10, tracker_webhook_url=hook.url,
            tracker_webhook_retry_base_s=0.05, tracker_webhook_retry_cap_s=0.1,
        )  # fmt: skip
        delivered = await eventually(
            lambda: asyncio.sleep(0, hook.order_ids("stuck")), lambda c: len(c) == 2
        )
        # More cycles report nothing again. The proof that they ran: one more stuck order, which
        # they report and deliver (refused once: two delivery rounds) after the first two.
        await _insert(db, "IN PROGRESS", 1, datetime.now(UTC) - timedelta(seconds=30), LATER)
        seen = await eventually(
            lambda: asyncio.sleep(0, hook.order_ids("stuck")), lambda c: len(c) == 3
        )
    finally:
        await hook.stop()
    assert set(delivered.values()) == {1}
    assert delivered.keys() <= seen.keys()
    assert set(seen.values()) == {1}  # the first two not again
    assert len(hook.posts) == 6  # each refused once, then delivered
    assert {b["kind"] for _, b in hook.posts} == {"stuck"}
    await eventually(lambda: db.fetchval(DELIVERED_AT, LATER), lambda at: at is not None)
    rows = await db.fetch("SELECT webhook_attempts FROM tracker_reports WHERE kind = 'stuck'")
    assert [r["webhook_attempts"] for r in rows] == [2, 2, 2]


async def test_two_trackers_one_leads_and_the_other_takes_over(
    db_url: str, db: asyncpg.Connection, aiohttp_client: AiohttpClient
) -> None:
    first = await _tracker(aiohttp_client, db_url)
    second = await _tracker(aiohttp_client, db_url)
    await _insert(db, "FAILURE", 3)
    await eventually(lambda: db.fetchval("SELECT count(*) FROM tracker_reports"), lambda n: n == 3)
    reporters = [c.app for c in (first, second)]
    leading = [a for a in reporters if a[REPORTER].leading]
    assert len(leading) == 1
    leader = first if leading[0] is first.app else second
    follower = second if leader is first else first
    await leader.close()
    await eventually(lambda: asyncio.sleep(0, follower.app[REPORTER].leading), bool)
    await _insert(db, "FAILURE", 2, T0 + timedelta(minutes=1))
    await eventually(lambda: db.fetchval("SELECT count(*) FROM tracker_reports"), lambda n: n == 5)


async def test_cancels_pending_are_measured_and_stuck_ones_reported_once(
    db_url: str, db: asyncpg.Connection, aiohttp_client: AiohttpClient
) -> None:
    # SPEC §8: a cancel PENDING past TRACKER_CANCEL_STUCK_AFTER_S is reported once (log and
    # webhook); a cancel that ended an order FAILURE before placement is not a placement failure.
    hook = WebhookReceiver()
    await hook.start()
    try:
        await _insert(db, "SUCCESS", 3)
        await _insert(db, "FAILURE", 1)
        await _insert(db, "IN PROGRESS", 1)
        ids = [r["id"] for r in await db.fetch("SELECT id FROM orders WHERE status = 'SUCCESS'")]
        asked = [datetime.now(UTC) - timedelta(seconds=s) for s in (100, 30, 1)]
        for order_id, at in zip(ids, asked, strict=True):
            await db.execute(
                "UPDATE orders SET cancel_status = 'PENDING', cancel_requested_at = $2, "
                "next_attempt_at = now() WHERE id = $1",
                order_id,
                at,
            )
        await db.execute(
            "UPDATE orders SET status = 'FAILURE', failed_at = now(), next_attempt_at = NULL, "
            "cancel_status = 'CANCELED', cancel_requested_at = now(), "
            "last_error = 'canceled before placement' WHERE status = 'IN PROGRESS'"
        )
        tracker = await _tracker(
            aiohttp_client, db_url, tracker_cancel_stuck_after_s=10, tracker_webhook_url=hook.url
        )
        reported = await eventually(
            lambda: asyncio.sleep(0, hook.order_ids("cancel_stuck")), lambda c: len(c) == 2
        )
        m = _samples(await (await tracker.get("/metrics")).text())
    finally:
        await hook.stop()
    assert set(reported) == {str(i) for i in ids[:2]}  # not the one asked a second ago
    assert m["orders_cancels_pending"] == 3
    assert 90 <= m["orders_cancel_pending_oldest_age_seconds"] < 200
    assert m["orders_by_status{status=FAILURE}"] == 2
    assert m["orders_failed_total"] == 1  # the canceled one is not counted
    assert m["tracker_reports_total{kind=cancel_stuck}"] == 2
