"""Faults that lose no accepted order: the database going away, the API killed mid-work,
two API instances sharing one database (SPEC §2, the placement rule's step 6)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.api_fixtures import ApiFactory
from tests.helpers import LIMIT, MARKET, eventually, fast_settings, final_row
from tests.procs import ApiProcess, ListenerProcess, ServiceProcess, TrackerProcess, wait_http
from tests.sim import SimProcess
from tests.tcp_proxy import DbProxy

Client = TestClient[web.Request, web.Application]
PLACEMENT_FAILED = {"message": "Internal server error while placing the order"}


@pytest.fixture
async def proxy(db_url: str) -> AsyncIterator[DbProxy]:
    proxy = DbProxy(db_url)
    await proxy.start()
    yield proxy
    await proxy.cut()


async def test_database_down_is_500_not_ready_and_recovers(
    make_api: ApiFactory, proxy: DbProxy, db: asyncpg.Connection
) -> None:
    api = await make_api(database_url=proxy.dsn, db_command_timeout_s=2.0)
    assert (await api.post("/orders", json=MARKET)).status == 201

    await proxy.cut()
    resp = await api.post("/orders", json=LIMIT)
    assert resp.status == 500
    assert await resp.json() == PLACEMENT_FAILED
    assert (await api.get("/health/ready")).status == 503
    assert await db.fetchval("SELECT count(*) FROM orders") == 1

    await proxy.start()
    await eventually(lambda: _ready(api), lambda status: status == 200)
    assert (await api.post("/orders", json=LIMIT)).status == 201
    assert await db.fetchval("SELECT count(*) FROM orders") == 2


async def _ready(api: Client) -> int:
    return (await api.get("/health/ready")).status


async def test_database_lost_after_insert_still_places_the_order_once(
    make_api: ApiFactory, proxy: DbProxy, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    # The order is stored, the exchange books it, but its outcome cannot be written back.
    api = await make_api(database_url=proxy.dsn, db_command_timeout_s=1.0, lease_s=2.5)
    await exchange.configure(latency_ms=300)
    posting = asyncio.ensure_future(api.post("/orders", json=MARKET))
    await eventually(exchange.requests, lambda r: len(r) == 1)
    await proxy.cut()
    resp = await posting
    assert resp.status == 201
    order = await resp.json()
    assert order["status"] == "IN PROGRESS"  # what the database holds, not a guess

    await proxy.start()
    row = await final_row(db, order["id"])
    assert row["status"] == "SUCCESS"
    assert (await exchange.ledger())[order["id"]]["placements"] == 1
    assert (await exchange.requests())[order["id"]]["place"] == 1


async def _post_many(api: ApiProcess, count: int) -> list[str]:
    url = api.url
    async with aiohttp.ClientSession(headers=api.headers) as http:
        ids = []
        for i in range(count):
            body = MARKET if i % 2 else LIMIT
            async with http.post(f"{url}/orders", json=body) as resp:
                assert resp.status == 201
                ids.append((await resp.json())["id"])
        return ids


async def test_kill_9_loses_no_pending_retry(
    db_url: str, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    settings = fast_settings(db_url, exchange.url, retry_base_s=0.5, retry_cap_s=1.0)
    async with await ApiProcess.start(settings) as api:
        await exchange.configure(failure_rate=1.0)
        ids = await _post_many(api, 20)
        # Slow the venue down so that some attempts are in flight when the process dies.
        await exchange.configure(failure_rate=0.0, latency_ms=300)
        await eventually(exchange.requests, lambda r: sum(c["lookup"] for c in r.values()) > 3)
        await api.kill()
    assert await db.fetchval("SELECT count(*) FROM orders WHERE status = 'IN PROGRESS'") > 0

    async with await ApiProcess.start(settings):
        rows = await eventually(
            lambda: db.fetch("SELECT id, status FROM orders"),
            lambda rs: all(r["status"] != "IN PROGRESS" for r in rs),
            timeout_s=60,
        )
    assert {str(r["id"]) for r in rows} == set(ids)
    assert all(r["status"] == "SUCCESS" for r in rows)
    ledger = await exchange.ledger()
    assert all(ledger[i]["placements"] == 1 for i in ids)


async def test_two_instances_never_work_on_one_order_at_once(
    db_url: str, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(failure_rate=0.5, latency_ms=100, accept_duplicate_ids=True)
    settings = fast_settings(db_url, exchange.url)
    async with (
        await ApiProcess.start(settings) as first,
        await ApiProcess.start(settings) as second,
    ):
        batches = await asyncio.gather(_post_many(first, 20), _post_many(second, 20))
        ids = [order_id for batch in batches for order_id in batch]
        rows = await eventually(
            lambda: db.fetch("SELECT id, status FROM orders"),
            lambda rs: all(r["status"] != "IN PROGRESS" for r in rs),
            timeout_s=90,
        )
        retries = [await api.metric("orders_placement_retries_total") for api in (first, second)]
    assert len(rows) == len(ids) == 40
    assert all(r > 0 for r in retries), retries  # both instances did retry work
    assert (await exchange.stats())["overlapping_requests"] == 0
    ledger = await exchange.ledger()
    for row in rows:
        booked = ledger.get(str(row["id"]))
        if row["status"] == "SUCCESS":
            assert booked is not None
            assert booked["placements"] == 1
        else:
            assert booked is None


@pytest.mark.parametrize("service", [ApiProcess, ListenerProcess, TrackerProcess])
async def test_a_service_started_before_its_database_waits_for_it(
    db_url: str, exchange: SimProcess, service: type[ServiceProcess]
) -> None:
    # A restart that overlaps a database (or PgBouncer) restart must not end the process: it
    # waits, not listening (not ready), and serves once the database answers.
    proxy = DbProxy(db_url)  # not started yet: connections refused
    settings = fast_settings(proxy.dsn, exchange.url)
    proc = service(settings)
    try:
        await eventually(
            lambda: asyncio.sleep(0, proc.lines()),
            lambda lines: sum(ln["msg"] == "database unreachable at start; trying again"
                              for ln in lines) >= 2,
        )  # fmt: skip
        assert proc.proc.poll() is None
        await proxy.start()
        await wait_http(f"{proc.url}/health/ready", proc.proc, 30)
    finally:
        await proc.stop()
        await proxy.cut()
