"""Idempotency-Key (SPEC §2): one order per key, whatever the concurrency."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.helpers import LIMIT, MARKET
from tests.sim import SimProcess

Client = TestClient[web.Request, web.Application]


async def test_ten_concurrent_repeats_make_one_order(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(latency_ms=300)  # keep the first request in flight a while
    headers = {"Idempotency-Key": "order-2026-11-24-0001"}
    responses = await asyncio.gather(
        *(api.post("/orders", json=LIMIT, headers=headers) for _ in range(10))
    )
    statuses = sorted(r.status for r in responses)
    assert set(statuses) <= {201, 409}
    assert 201 in statuses
    created = [await r.json() for r in responses if r.status == 201]
    assert len({o["id"] for o in created}) == 1
    for r in responses:
        if r.status == 409:
            assert "in progress" in (await r.json())["message"]
    assert await db.fetchval("SELECT count(*) FROM orders") == 1
    order_id = created[0]["id"]
    assert (await exchange.requests())[order_id]["place"] == 1

    again = await api.post("/orders", json=LIMIT, headers=headers)
    assert again.status == 201
    assert await again.json() == await (await api.get(f"/orders/{order_id}")).json()
    assert (await again.json())["id"] == order_id
    assert (await exchange.requests())[order_id]["place"] == 1


async def test_same_key_same_order_in_other_spelling_is_a_repeat(api: Client) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = await (await api.post("/orders", json=LIMIT, headers=headers)).json()
    same = {**LIMIT, "limit_price": 123.450}
    second = await api.post("/orders", json=same, headers=headers)
    assert second.status == 201
    assert (await second.json())["id"] == first["id"]


async def test_same_key_different_body_is_422(api: Client, db: asyncpg.Connection) -> None:
    headers = {"Idempotency-Key": "k-2"}
    first = await api.post("/orders", json=LIMIT, headers=headers)
    assert first.status == 201
    other = await api.post("/orders", json=MARKET, headers=headers)
    assert other.status == 422
    assert "different request body" in (await other.json())["message"]
    assert await db.fetchval("SELECT count(*) FROM orders") == 1


async def test_no_key_means_every_request_is_a_new_order(
    api: Client, db: asyncpg.Connection
) -> None:
    for _ in range(3):
        assert (await api.post("/orders", json=MARKET)).status == 201
    assert await db.fetchval("SELECT count(*) FROM orders") == 3
