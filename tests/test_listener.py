"""exchange-listener against the real exchange-sim stream and a real PostgreSQL (SPEC §4):
our view of every order's status equals the exchange's, across drops, duplicates, reordering,
crashes, resets and restarts of the exchange."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from orders_core.domain import EXCHANGE_TERMINAL, exchange_status_moves_forward
from tests.api_fixtures import ApiFactory
from tests.helpers import LIMIT, MARKET, SystemSettings, eventually, fast_settings
from tests.procs import ListenerProcess
from tests.sim import SimProcess
from tests.tcp_proxy import DbProxy

Client = TestClient[web.Request, web.Application]

# A lively but quick exchange: fills within ~0.1 s, limit orders expire after 0.3 s.
LIFECYCLE: dict[str, Any] = {"fill_delay_ms": 50, "partial_fill_rate": 0.5, "limit_expiry_ms": 300,
             "limit_fill_rate": 0.5, "heartbeat_ms": 200}  # fmt: skip


def listener_settings(db_url: str, exchange: SimProcess, **overrides: Any) -> SystemSettings:
    return fast_settings(
        db_url, exchange.url, listener_dead_after_s=3.0, listener_gap_timeout_s=1.0,
        listener_reconnect_min_s=0.1, listener_reconnect_max_s=0.5, listener_leader_poll_s=0.2,
        **overrides,
    )  # fmt: skip


@pytest.fixture
async def listener(db_url: str, exchange: SimProcess) -> AsyncIterator[ListenerProcess]:
    async with await ListenerProcess.start(listener_settings(db_url, exchange)) as proc:
        yield proc


async def place(api: Client, count: int, concurrency: int = 16) -> list[str]:
    ids: list[str] = []

    async def worker(n: int) -> None:
        for i in range(n):
            resp = await api.post("/orders", json=MARKET if i % 3 else LIMIT)
            assert resp.status == 201
            ids.append((await resp.json())["id"])

    share = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(worker(n) for n in share))
    return ids


async def exchange_idle(exchange: SimProcess, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The ledger once every one of `ids` has reached a terminal status there."""
    return await eventually(
        exchange.ledger,
        lambda ledger: all(ledger[i]["status"] in EXCHANGE_TERMINAL for i in ids),
        timeout_s=60,
    )


async def ours(db: asyncpg.Connection) -> dict[str, tuple[str, int]]:
    rows = await db.fetch(
        "SELECT order_id, stock_market_order_status, filled_quantity FROM exchange_order_status"
    )
    return {
        str(r["order_id"]): (r["stock_market_order_status"], r["filled_quantity"]) for r in rows
    }


async def assert_equal_to_ledger(
    db: asyncpg.Connection, exchange: SimProcess, ids: list[str]
) -> None:
    ledger = await exchange_idle(exchange, ids)
    theirs = {i: (ledger[i]["status"], ledger[i]["filled_quantity"]) for i in ids}
    got = await eventually(lambda: ours(db), lambda o: all(o.get(i) == theirs[i] for i in ids))
    assert {i: got[i] for i in ids} == theirs


async def assert_never_backwards(db: asyncpg.Connection) -> None:
    rows = await db.fetch(
        "SELECT order_id, status, filled_quantity FROM exchange_events"
        " ORDER BY order_id, epoch, seq"
    )
    previous: dict[str, tuple[str, int]] = {}
    for r in rows:
        key = str(r["order_id"])
        if key in previous:
            assert exchange_status_moves_forward(*previous[key], r["status"], r["filled_quantity"])
        previous[key] = (r["status"], r["filled_quantity"])


async def test_stream_with_drops_duplicates_and_reordering_ends_exact(
    make_api: ApiFactory, exchange: SimProcess, listener: ListenerProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(**LIFECYCLE, drop_rate=0.002, duplicate_rate=0.1, reorder_window=5)
    api = await make_api()
    ids = await place(api, 2000)
    await assert_equal_to_ledger(db, exchange, ids)
    await assert_never_backwards(db)
    assert await listener.metric("exchange_stream_reconnects_total") >= 1  # the drops happened
    assert await listener.metric('exchange_stream_events_total{result="duplicate"}') > 0
    order = await (await api.get(f"/orders/{ids[0]}")).json()
    assert order["stock_market_order_status"] in EXCHANGE_TERMINAL
    events = (await (await api.get(f"/orders/{ids[0]}/events")).json())["events"]
    assert events[0]["status"] == "new"
    assert events[-1]["status"] == order["stock_market_order_status"]


async def test_killed_listener_resumes_from_its_committed_position(
    make_api: ApiFactory, exchange: SimProcess, db_url: str, db: asyncpg.Connection
) -> None:
    await exchange.configure(**LIFECYCLE)
    api = await make_api()
    async with await ListenerProcess.start(listener_settings(db_url, exchange)) as first:
        ids = await place(api, 150)
        await eventually(
            lambda: db.fetchval("SELECT seq FROM exchange_stream_position"), lambda s: s > 0
        )
        await first.kill()
        ids += await place(api, 150)  # while nobody listens
    async with await ListenerProcess.start(listener_settings(db_url, exchange)) as second:
        await assert_equal_to_ledger(db, exchange, ids)
        assert await second.metric('exchange_stream_resyncs_total{reason="gap"}') == 0
    # Resumed, not resynchronised: every event the exchange sent is stored once, none missing.
    last = await db.fetchval("SELECT max(seq) FROM exchange_events")
    seqs = [r["seq"] for r in await db.fetch("SELECT seq FROM exchange_events ORDER BY seq")]
    assert seqs == list(range(1, last + 1))


async def test_position_older_than_retention_resyncs_over_rest(
    make_api: ApiFactory, exchange: SimProcess, db_url: str, db: asyncpg.Connection
) -> None:
    await exchange.configure(**LIFECYCLE, retention=20)
    api = await make_api()
    ids = await place(api, 100)  # far more than 20 events, while no listener runs
    await exchange_idle(exchange, ids)
    async with await ListenerProcess.start(listener_settings(db_url, exchange)) as listener:
        await assert_equal_to_ledger(db, exchange, ids)
        assert await listener.metric('exchange_stream_resyncs_total{reason="reset"}') >= 1


async def test_new_epoch_resyncs_instead_of_resuming(
    make_api: ApiFactory, exchange: SimProcess, listener: ListenerProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(**LIFECYCLE)
    api = await make_api()
    before = await place(api, 30)
    await assert_equal_to_ledger(db, exchange, before)
    await exchange.reset()  # the exchange "restarts": new epoch, seq from 0, empty book
    await exchange.configure(**LIFECYCLE)
    after = await place(api, 30)
    await assert_equal_to_ledger(db, exchange, after)
    assert await listener.metric('exchange_stream_resyncs_total{reason="epoch"}') >= 1


async def test_two_listeners_one_leads_and_the_other_takes_over(
    make_api: ApiFactory, exchange: SimProcess, db_url: str, db: asyncpg.Connection
) -> None:
    await exchange.configure(**LIFECYCLE)
    settings = listener_settings(db_url, exchange)
    async with (
        await ListenerProcess.start(settings) as a,
        await ListenerProcess.start(settings) as b,
    ):
        leaders = await eventually(lambda: _leaders(a, b), lambda ls: sum(ls) == 1, timeout_s=10)
        leader, standby = (a, b) if leaders[0] else (b, a)
        api = await make_api()
        ids = await place(api, 50)
        await assert_equal_to_ledger(db, exchange, ids)
        assert await standby.metric('exchange_stream_events_total{result="stored"}') == 0
        await leader.kill()
        await eventually(lambda: _leaders(standby), lambda ls: ls == [1], timeout_s=10)
        ids += await place(api, 50)
        await assert_equal_to_ledger(db, exchange, ids)


async def _leaders(*listeners: ListenerProcess) -> list[int]:
    return [int(await p.metric("exchange_stream_leader")) for p in listeners]


async def test_silent_peer_is_detected_and_left(
    exchange: SimProcess, listener: ListenerProcess
) -> None:
    connected = "exchange_stream_connected"
    await eventually(lambda: listener.metric(connected), lambda c: c == 1)
    reconnects = await listener.metric("exchange_stream_reconnects_total")
    await exchange.configure(stall=True)
    await exchange.disconnect()  # the next connection gets a hello, then silence
    await eventually(
        lambda: listener.metric("exchange_stream_reconnects_total"),
        lambda n: n >= reconnects + 2,  # the forced close, then the silent connection given up
        timeout_s=40,
    )
    await exchange.configure(stall=False)
    await eventually(lambda: listener.metric(connected), lambda c: c == 1, timeout_s=40)


async def test_database_outage_loses_no_event(
    make_api: ApiFactory, exchange: SimProcess, db_url: str, db: asyncpg.Connection
) -> None:
    await exchange.configure(**LIFECYCLE)
    proxy = DbProxy(db_url)
    await proxy.start()
    try:
        # Its start is awaited without blocking this loop, on which the proxy serves.
        async with await ListenerProcess.start(listener_settings(proxy.dsn, exchange)) as listener:
            api = await make_api()  # straight to the database: only the listener loses it
            ids = await place(api, 100)
            await proxy.cut()
            ids += await place(api, 100)  # their fills stream while the listener cannot write
            await exchange_idle(exchange, ids)
            await proxy.start()
            await assert_equal_to_ledger(db, exchange, ids)
            await assert_never_backwards(db)
            messages = [line["msg"] for line in listener.lines()]
            assert any(m.startswith("database failed; giving up the lead") for m in messages)
    finally:
        await proxy.cut()
