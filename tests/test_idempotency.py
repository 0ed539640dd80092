"""Idempotency-Key (SPEC §2): one order per key, whatever the concurrency."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.api_fixtures import ApiFactory
from tests.helpers import LIMIT, MARKET, eventually
from tests.sim import SimProcess

Client = TestClient[web.Request, web.Application]
IN_FLIGHT = {"message": "A request with this Idempotency-Key is still in progress"}


async def _stored(db: asyncpg.Connection, key: str) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT id, sync_pending FROM orders WHERE idempotency_key = $1", key)


async def test_ten_concurrent_repeats_make_one_order(
    make_api: ApiFactory, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    # The exchange holds the first request 1.5 s, well inside its placement timeout (the lease
    # outlives the attempt): the repeats below arrive while it is certainly in flight.
    api = await make_api(placement_timeout_s=3.0, lease_s=10.0)
    await exchange.configure(latency_ms=1500)
    key = "order-2026-11-24-0001"
    headers = {"Idempotency-Key": key}
    first = asyncio.ensure_future(api.post("/orders", json=LIMIT, headers=headers))
    # In flight: the order is stored and its synchronous attempt has not come back.
    row = await eventually(lambda: _stored(db, key), lambda r: r is not None and r["sync_pending"])
    assert row is not None

    repeats = await asyncio.gather(
        *(api.post("/orders", json=LIMIT, headers=headers) for _ in range(10))
    )
    assert [r.status for r in repeats] == [409] * 10
    assert [await r.json() for r in repeats] == [IN_FLIGHT] * 10
    assert not first.done(), "the first request must still be in flight for this test to mean it"

    created = await first
    assert created.status == 201
    order = await created.json()
    assert order["id"] == str(row["id"])
    assert order["status"] == "SUCCESS"
    again = await api.post("/orders", json=LIMIT, headers=headers)
    assert again.status == 201
    assert await again.json() == await (await api.get(f"/orders/{order['id']}")).json()
    assert (await again.json())["id"] == order["id"]
    assert await db.fetchval("SELECT count(*) FROM orders") == 1
    assert (await exchange.requests())[order["id"]]["place"] == 1
    assert (await exchange.ledger())[order["id"]]["placements"] == 1


async def test_ten_simultaneous_first_requests_store_one_order(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    # No request is first here: all ten race to insert. Whichever loses sees the winner's order,
    # in flight (409) or done (201): one order, placed once.
    await exchange.configure(latency_ms=300)
    headers = {"Idempotency-Key": "order-2026-11-24-0002"}
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
            assert await r.json() == IN_FLIGHT
    assert await db.fetchval("SELECT count(*) FROM orders") == 1
    order_id = created[0]["id"]
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
