"""Retention (issue 9): events, reports and Idempotency-Keys are kept for their documented
window, then purged by the tracker; what is inside the window, or still owed, stays."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from orders_core.db import create_pool
from tests.api_fixtures import ApiFactory
from tests.helpers import MARKET, eventually, fast_settings
from tracker import retention

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)

EVENT = """
INSERT INTO exchange_events (epoch, seq, order_id, exchange_order_id, status, filled_quantity,
                             quantity, exchange_ts, received_at, source)
VALUES ('e1', $1, $2, 'X', 'new', 0, 1, $3, $3, 'stream')"""
REPORT = """
INSERT INTO tracker_reports (order_id, kind, reported_at, next_delivery_at, webhook_delivered_at)
VALUES ($1, $2, $3, $4, $5)"""


async def test_each_kind_is_purged_past_its_window_and_only_then(
    make_api: ApiFactory, db: asyncpg.Connection, db_url: str
) -> None:
    api = await make_api()
    keyed = [
        await (await api.post("/orders", json=MARKET, headers={"Idempotency-Key": f"k{i}"})).json()
        for i in range(2)
    ]
    await db.execute("UPDATE orders SET created_at = $2 WHERE id = $1::uuid", keyed[0]["id"], OLD)
    # The first order's updates (the live streams' log) are old; the second's are not.
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM order_updates WHERE seq IS NULL"),
        lambda n: n == 0,
    )
    aged = await db.fetch(
        "UPDATE order_updates SET at = $2 WHERE order_id = $1::uuid RETURNING seq",
        keyed[0]["id"],
        OLD,
    )
    assert aged
    for seq, at in ((1, OLD), (2, NOW)):
        await db.execute(EVENT, seq, uuid.uuid4(), at)
    owed, delivered, silent, recent = (uuid.uuid4() for _ in range(4))
    await db.execute(REPORT, owed, "failure", OLD, OLD, None)  # webhook still owed: kept
    await db.execute(REPORT, delivered, "failure", OLD, OLD, OLD)
    await db.execute(REPORT, silent, "stuck", OLD, None, None)  # no webhook was set
    await db.execute(REPORT, recent, "failure", NOW, None, None)

    settings = fast_settings(
        db_url, "http://127.0.0.1:9", events_retention_days=30, reports_retention_days=30,
        idempotency_retention_days=30, updates_retention_days=30,
    )  # fmt: skip
    pool = await create_pool(db_url, settings)
    try:
        purged = await retention.purge(pool, settings)
        again = await retention.purge(pool, settings)
    finally:
        await pool.close()

    assert purged == {
        "exchange_events": 1, "tracker_reports": 2, "idempotency_keys": 1,
        "order_updates": len(aged),
    }  # fmt: skip
    assert set(again.values()) == {0}
    assert [r["seq"] for r in await db.fetch("SELECT seq FROM exchange_events")] == [2]
    kept = {r["order_id"] for r in await db.fetch("SELECT order_id FROM tracker_reports")}
    assert kept == {owed, recent}
    left = {r["order_id"] for r in await db.fetch("SELECT order_id::text FROM order_updates")}
    assert left == {keyed[1]["id"]}
    horizon = await db.fetchval("SELECT purged_through FROM order_updates_horizon")
    assert horizon == max(r["seq"] for r in aged)
    resumed = await api.get(f"/orders/updates?after={horizon - 1}")
    assert resumed.status == 410
    rows = await db.fetch("SELECT id::text AS id, idempotency_key FROM orders")
    keys = {r["id"]: r["idempotency_key"] for r in rows}
    assert keys == {keyed[0]["id"]: None, keyed[1]["id"]: "k1"}  # the order itself stays
    # A repeat of a forgotten key is a new order; a kept key still returns its order.
    repeat = await (
        await api.post("/orders", json=MARKET, headers={"Idempotency-Key": "k0"})
    ).json()
    assert repeat["id"] != keyed[0]["id"]
    kept_repeat = await api.post("/orders", json=MARKET, headers={"Idempotency-Key": "k1"})
    assert (await kept_repeat.json())["id"] == keyed[1]["id"]
