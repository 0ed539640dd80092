"""The promise under faults (issue 9): every outcome write fenced by its claim, every driver
error a database error, never a 500 once an order is stored, sweeps that use their index."""

from __future__ import annotations

import asyncio
import inspect
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import asyncpg.exceptions
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from orders_api import store
from orders_api.keys import POOL
from orders_core.db import DB_ERRORS, create_pool
from orders_core.domain import OrderStatus
from orders_core.exchange import ExchangeClient, Found, new_session
from tests.api_fixtures import ApiFactory
from tests.helpers import MARKET, eventually, fast_settings, final_row, order_row
from tests.sim import SimProcess
from tracker import store as tracker_store

NEW = store.NewOrder(uuid4(), "market", "buy", "US0378331005", None, 10, None, None, uuid4())


async def _claimable(db: asyncpg.Connection, order_id: object) -> None:
    """As if its lease ran out and it came due."""
    await db.execute(
        "UPDATE orders SET lease_expires_at = now() - interval '1 s',"
        " next_attempt_at = now() - interval '1 s' WHERE id = $1",
        order_id,
    )


async def test_a_stale_writer_of_the_same_instance_changes_nothing(
    make_api: ApiFactory, db: asyncpg.Connection
) -> None:
    """Finding 1: an outcome write delayed past its lease, after this instance's own sweeper
    re-claimed the order, must not put its FAILURE (or its deadline) over the new claim."""
    api = await make_api()
    pool = api.app[POOL]
    deadline = datetime.now(UTC) + timedelta(seconds=2)
    async with pool.acquire() as conn:
        first = await store.insert(conn, NEW, deadline, deadline, "instance-a", 30)
    assert first is not None
    await _claimable(db, NEW.id)
    (second,) = await store.claim_due(pool, "instance-a", 30, 10)  # the same instance again
    assert second["lease_token"] != first["lease_token"]

    stale = store.Outcome(OrderStatus.FAILURE, None, None, "gave up (stale)")
    learned = store.Event("lookup", None, "absent", "not found")
    assert await store.finish(pool, NEW.id, first["lease_token"], stale, learned) is None
    row = await order_row(db, str(NEW.id))
    assert (row["status"], row["lease_token"]) == ("IN PROGRESS", second["lease_token"])
    assert row["pending_deadline"] == deadline  # the stale claim put nothing back either
    assert (
        await store.begin_attempt(pool, NEW.id, first["lease_token"], deadline, deadline, 30)
        is None
    )

    fresh = store.Outcome(OrderStatus.SUCCESS, None, None, None, "X-1")
    assert await store.finish(pool, NEW.id, second["lease_token"], fresh, learned) is not None
    # The stale writer wrote no history either: only the fresh claim's lookup is there.
    history = await db.fetch("SELECT event, outcome FROM order_history WHERE order_id = $1", NEW.id)
    assert [tuple(r) for r in history] == [("placement_sent", None), ("lookup", "absent")]


def _driver_errors() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(asyncpg.exceptions, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__.startswith("asyncpg")
        and not issubclass(cls, Warning)
    ]  # fmt: skip


def test_every_error_of_the_driver_is_a_database_error() -> None:
    """Finding 3: InternalClientError ("cannot switch to state 12; another operation is in
    progress", when the server ends a pooled connection) reached the catch-all as a 500."""
    errors = _driver_errors()
    assert asyncpg.InternalClientError in errors
    assert [cls.__name__ for cls in errors if not issubclass(cls, DB_ERRORS)] == []


async def test_an_order_whose_outcome_write_breaks_is_201_and_placed_once(
    make_api: ApiFactory,
    exchange: SimProcess,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 3: the order is stored and sent; the connection dies under the outcome write."""
    api = await make_api()
    real_finish = store.finish
    broken = {"left": 1}

    async def finish(*args: Any) -> asyncpg.Record | None:
        if broken["left"]:
            broken["left"] -= 1
            raise asyncpg.InternalClientError("cannot switch to state 12")
        return await real_finish(*args)

    monkeypatch.setattr(store, "finish", finish)
    resp = await api.post("/orders", json=MARKET)
    assert resp.status == 201
    order = await resp.json()
    assert order["status"] == "IN PROGRESS"
    row = await final_row(db, order["id"])
    assert row["status"] == "SUCCESS"
    assert (await exchange.ledger())[order["id"]]["placements"] == 1


@pytest.mark.parametrize("committed", [True, False])
async def test_an_insert_whose_answer_is_lost_is_found_out(
    make_api: ApiFactory,
    exchange: SimProcess,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    committed: bool,
) -> None:
    """Finding 4: the connection breaks around the insert's commit. Stored: 201 IN PROGRESS and
    placed once by the sweep (no 500 that a client would answer by placing it again). Not
    stored: the documented 500."""
    api = await make_api()
    real_insert = store.insert

    async def insert(*args: Any) -> asyncpg.Record | None:
        if committed:
            await real_insert(*args)
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")

    monkeypatch.setattr(store, "insert", insert)
    resp = await api.post("/orders", json=MARKET)
    if not committed:
        assert resp.status == 500
        assert await resp.json() == {"message": "Internal server error while placing the order"}
        assert await db.fetchval("SELECT count(*) FROM orders") == 0
        return
    assert resp.status == 201
    order = await resp.json()
    assert order["status"] == "IN PROGRESS"
    row = await final_row(db, order["id"])
    assert row["status"] == "SUCCESS"
    assert (await exchange.ledger())[order["id"]]["placements"] == 1


BACKLOG = """
INSERT INTO orders (id, account_id, type, side, instrument, quantity, attempts, next_attempt_at,
                    lease_owner, lease_expires_at, created_at)
SELECT gen_random_uuid(), gen_random_uuid(), 'market', 'buy', 'US0378331005', 1, 1,
       now() + make_interval(secs => g), CASE WHEN g % 100 = 0 THEN 'i-' || g END,
       CASE WHEN g % 100 = 0 THEN now() + interval '1 min' END,
       now() - make_interval(secs => g)
  FROM generate_series(1, 5000) AS g"""


def _plan_nodes(plan: Any) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


async def _index_conditions(db: asyncpg.Connection, sql: str, *args: Any) -> dict[str, str]:
    """Index name -> its Index Cond, in the plan PostgreSQL picks when it may not seq-scan."""
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off")
        (plan,) = json.loads(await db.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
    nodes = _plan_nodes(plan["Plan"])
    return {n["Index Name"]: n.get("Index Cond", "") for n in nodes if "Index Name" in n}


async def test_the_sweeps_use_their_indexes(db: asyncpg.Connection) -> None:
    """Finding 6: a volatile clock_timestamp() in a WHERE clause keeps the planner from using it
    as an index condition: every sweep read the whole partial index."""
    await db.execute(BACKLOG)  # unfinished orders, most not yet due, a few leased
    await db.execute("ANALYZE orders")
    claim = await _index_conditions(db, store.CLAIM_DUE, "x", 1.0, 10)
    assert "next_attempt_at" in claim.get("orders_due_idx", ""), claim
    stuck = await _index_conditions(db, tracker_store.STUCK_NOW, 300.0, 10)
    assert "created_at" in stuck.get("orders_in_progress_created_idx", ""), stuck
    release = await _index_conditions(db, store.RELEASE_ALL, "x")
    assert "lease_owner" in release.get("orders_lease_owner_idx", ""), release


async def test_a_404_that_is_not_the_venues_answer_is_no_absence() -> None:
    """Finding 8: any 404 (a proxy's, a wrong path's) counted as "the exchange holds nothing"."""
    app = web.Application()  # answers every path with aiohttp's own text 404
    async with TestServer(app) as server, new_session(10) as http:
        client = ExchangeClient(http, str(server.make_url("/")), 2.0)
        found = await client.lookup(str(uuid4()))
    assert found.outcome is Found.ERROR


async def test_the_venues_own_404_is_absence(exchange: SimProcess) -> None:
    async with new_session(10) as http:
        found = await ExchangeClient(http, exchange.url, 2.0).lookup(str(uuid4()))
    assert found.outcome is Found.ABSENT


async def test_a_clean_stop_gives_pending_orders_back_due_after_their_deadline(
    make_api: ApiFactory, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    """A clean stop mid-attempt: the order comes back due no earlier than its request's deadline
    (plus the skew margin), so nobody trusts a "not found" for it too early."""
    api = await make_api(placement_timeout_s=2.0, lease_s=8.0)
    # The first attempt meets a 503; the retry, after a lookup, is in flight for 1.5 s.
    await exchange.configure(fail_next=1, latency_ms=1500)
    order = await (await api.post("/orders", json=MARKET)).json()
    # The sweep's retry: looked up past the first deadline, its attempt counted and in flight...
    await eventually(lambda: order_row(db, order["id"]), lambda r: r["attempts"] == 2)
    await api.close()  # ... when the instance stops cleanly
    row = await order_row(db, order["id"])
    assert row["lease_owner"] is None
    assert row["pending_deadline"] is not None
    assert row["next_attempt_at"] > row["pending_deadline"]


async def test_a_wait_for_a_pooled_connection_is_bounded(db_url: str) -> None:
    """Finding 1's cause: an unbounded pool wait let an outcome write land long after its lease.
    Every wait for a connection ends by itself (DB_ACQUIRE_TIMEOUT_S), as a database error."""
    settings = fast_settings(
        db_url, "http://127.0.0.1:9", db_pool_min_size=1, db_pool_max_size=1,
        db_acquire_timeout_s=0.2,
    )  # fmt: skip
    pool = await create_pool(db_url, settings)
    try:
        async with pool.acquire():  # the only connection, held
            waiting = asyncio.ensure_future(pool.fetchval("SELECT 1"))
            done, _ = await asyncio.wait({waiting}, timeout=20)
            assert waiting in done, "the wait for a connection did not end by itself"
            with pytest.raises(DB_ERRORS):
                waiting.result()
    finally:
        await pool.close()


async def test_a_requests_deadline_starts_once_it_has_a_connection(
    make_api: ApiFactory, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    """Finding 8: valid_until was computed before the wait for a pool connection, so a request
    that waited long enough reached the venue already expired (408) though nothing failed."""
    api = await make_api(db_pool_min_size=1, db_pool_max_size=1, db_acquire_timeout_s=3.0,
                         lease_s=6.0)  # fmt: skip
    pool = api.app[POOL]
    assert (await api.get("/orders")).status == 200  # the key is checked now, and cached
    async with pool.acquire():  # the only connection, held longer than the placement timeout
        posting = asyncio.ensure_future(api.post("/orders", json=MARKET))
        await asyncio.sleep(0.8)  # the request is waiting for the connection meanwhile
        assert not posting.done()
    resp = await posting
    assert resp.status == 201
    order = await resp.json()
    assert order["status"] == "SUCCESS"  # booked on its first attempt, not expired on arrival
    assert (await exchange.requests())[order["id"]]["place"] == 1


async def test_an_insert_timed_out_and_a_failed_release_still_find_the_order(
    make_api: ApiFactory,
    exchange: SimProcess,
    db: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the chaos suite (profile stale-writer, seed 1): the insert timed out client-side,
    then giving its connection back to the pool timed out too, and that error hid the unknown
    outcome: a 500 for an order that was stored and then placed."""
    api = await make_api()
    assert (await api.get("/orders")).status == 200  # the key checked and cached first
    real_insert, real_release = store.insert, api.app[POOL].release

    async def insert(*args: Any) -> asyncpg.Record | None:
        await real_insert(*args)
        raise TimeoutError  # asyncpg's command timeout: the statement's fate unknown

    failing = {"left": 1}

    async def release(*args: Any, **kwargs: Any) -> None:
        await real_release(*args, **kwargs)
        if failing["left"]:  # the insert's connection only
            failing["left"] -= 1
            raise TimeoutError  # asyncpg waiting for the cancelled statement, in vain

    monkeypatch.setattr(store, "insert", insert)
    monkeypatch.setattr(api.app[POOL], "release", release)
    resp = await api.post("/orders", json=MARKET)
    assert resp.status == 201
    order = await resp.json()
    assert (await final_row(db, order["id"]))["status"] == "SUCCESS"
    assert (await exchange.ledger())[order["id"]]["placements"] == 1


async def test_an_insert_that_reaches_the_server_after_its_deadline_stores_nothing(
    make_api: ApiFactory, db: asyncpg.Connection
) -> None:
    """The other half: an insert still on its way when the service looks for it must not land
    afterwards (the 500 answered meanwhile would then be for a stored order)."""
    api = await make_api()
    late = datetime.now(UTC) - timedelta(milliseconds=1)
    async with api.app[POOL].acquire() as conn:
        assert await store.insert(conn, NEW, late, late, "instance-a", 30) is None
    assert await db.fetchval("SELECT count(*) FROM orders") == 0
