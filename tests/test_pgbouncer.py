"""Many instances through a transaction pooler (issue 11): 2 API instances, 2 listeners and 2
trackers behind a real PgBouncer in transaction mode, sessions (leadership, migrations) on a
direct connection. Nothing answers 5xx, every order ends placed once or confirmed absent, the
stream is ingested, failures are reported exactly once, and one process leads per role."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from orders_core.domain import EXCHANGE_TERMINAL
from tests.helpers import LIMIT, MARKET, SystemSettings, eventually, fast_settings
from tests.pgbouncer import PgBouncer, require_pgbouncer
from tests.procs import ApiProcess, ListenerProcess, TrackerProcess
from tests.sim import SimProcess
from tests.sse import SseReader

ORDERS = 240
LISTENER_LOCK = 0x6F72646572735F6C
TRACKER_LOCK = 0x6F72646572735F74


@pytest.fixture
async def bouncer(db_url: str) -> AsyncIterator[PgBouncer]:
    require_pgbouncer()
    async with await PgBouncer(db_url, pool_size=8).start() as running:
        yield running


def _settings(db_url: str, bouncer: PgBouncer, exchange: SimProcess) -> SystemSettings:
    database = urlsplit(db_url).path.lstrip("/")
    return fast_settings(
        bouncer.dsn(database), exchange.url, database_direct_url=db_url,
        db_acquire_timeout_s=3.0, lease_s=6.0,
        listener_leader_poll_s=0.2, tracker_poll_interval_s=0.2, listener_gap_timeout_s=1.0,
        listener_dead_after_s=3.0, listener_reconnect_min_s=0.1, listener_reconnect_max_s=0.5,
    )  # fmt: skip


async def _post(api: ApiProcess, count: int, answers: Counter[int]) -> list[str]:
    """`count` orders, 24 clients at a time."""
    ids: list[str] = []
    connector = aiohttp.TCPConnector(limit=24)
    async with aiohttp.ClientSession(headers=api.headers, connector=connector) as http:

        async def one(i: int) -> None:
            async with http.post(f"{api.url}/orders", json=MARKET if i % 2 else LIMIT) as resp:
                answers[resp.status] += 1
                if resp.status == 201:
                    ids.append((await resp.json())["id"])

        await asyncio.gather(*(one(i) for i in range(count)))
    return ids


def _settled(ledger: dict[str, Any], ids: list[str]) -> bool:
    return all(ledger[i]["status"] in EXCHANGE_TERMINAL for i in ids)


async def _market_statuses(db: asyncpg.Connection) -> dict[str, str]:
    rows = await db.fetch(
        "SELECT order_id::text AS id, stock_market_order_status AS s FROM exchange_order_status"
    )
    return {r["id"]: r["s"] for r in rows}


async def _leaders(db: asyncpg.Connection, key: int) -> int:
    """Sessions holding a role's advisory lock now: the leaders' own record, not their metric."""
    held: int = await db.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND (classid::bigint << 32 | objid::bigint) = $1",
        key,
    )
    return held


async def test_two_of_each_through_pgbouncer_lose_and_double_nothing(
    db_url: str, db: asyncpg.Connection, bouncer: PgBouncer, exchange: SimProcess
) -> None:
    await exchange.configure(failure_rate=0.2, fill_delay_ms=50, limit_expiry_ms=300)
    settings = _settings(db_url, bouncer, exchange)
    apis = [await ApiProcess.start(settings) for _ in range(2)]
    listeners = [await ListenerProcess.start(settings) for _ in range(2)]
    trackers = [await TrackerProcess.start(settings) for _ in range(2)]
    try:
        answers: Counter[int] = Counter()
        batches = await asyncio.gather(*(_post(api, ORDERS // 2, answers) for api in apis))
        ids = [i for batch in batches for i in batch]
        errors = [ln for api in apis for ln in api.lines() if ln.get("level") == "ERROR"]
        assert answers == Counter({201: ORDERS}), [e.get("exc", "")[-600:] for e in errors[:2]]

        rows = await eventually(
            lambda: db.fetch("SELECT id::text, status FROM orders"),
            lambda rs: len(rs) == ORDERS and all(r["status"] != "IN PROGRESS" for r in rs),
            timeout_s=90,
        )
        ledger = await exchange.ledger()
        for row in rows:
            booked = ledger.get(row["id"])
            assert (row["status"] == "SUCCESS") == (booked is not None), row
            assert booked is None or booked["placements"] == 1, row
        # The stream reached us for every held order, through the leading listener.
        held = [i for i in ids if i in ledger]
        final = await eventually(exchange.ledger, lambda lg: _settled(lg, held), timeout_s=60)
        theirs = {i: final[i]["status"] for i in held}
        await eventually(lambda: _market_statuses(db), lambda ours: ours == theirs, timeout_s=60)
        # Each failure reported exactly once, by whichever tracker led.
        failed = {r["id"] for r in rows if r["status"] == "FAILURE"}
        reports = await eventually(
            lambda: asyncio.sleep(0, [i for t in trackers for i in t.reported()]),
            lambda got: set(got) >= failed,
        )
        assert sorted(reports) == sorted(failed)
        assert await _leaders(db, LISTENER_LOCK) == 1
        assert await _leaders(db, TRACKER_LOCK) == 1
    finally:
        for proc in [*apis, *listeners, *trackers]:
            await proc.stop()


async def test_a_killed_leader_is_replaced_and_there_are_never_two(
    db_url: str, db: asyncpg.Connection, bouncer: PgBouncer, exchange: SimProcess
) -> None:
    settings = _settings(db_url, bouncer, exchange)
    listeners = [await ListenerProcess.start(settings) for _ in range(2)]
    trackers = [await TrackerProcess.start(settings) for _ in range(2)]
    seen: list[int] = []  # sessions holding the role's lock, sampled during each takeover
    try:
        for role, lock, procs, gauge in (
            ("listener", LISTENER_LOCK, listeners, "exchange_stream_leader"),
            ("tracker", TRACKER_LOCK, trackers, "tracker_leader"),
        ):
            await eventually(partial(_leaders, db, lock), lambda n: n == 1)
            leading = [p for p in procs if await p.metric(gauge) == 1]
            assert len(leading) == 1, role
            await leading[0].kill()
            standby = next(p for p in procs if p is not leading[0])
            while await standby.metric(gauge) != 1:  # bounded by pytest's timeout
                seen.append(await _leaders(db, lock))
                await asyncio.sleep(0.05)
            assert await _leaders(db, lock) == 1
        assert all(n <= 1 for n in seen), seen  # never two sessions holding one role's lock
    finally:
        for proc in [*listeners, *trackers]:
            await proc.stop()


async def test_cancels_and_live_updates_work_through_pgbouncer(
    db_url: str, db: asyncpg.Connection, bouncer: PgBouncer, exchange: SimProcess
) -> None:
    # SPEC §8, §9 through a transaction pooler: the sequencer's lock is transaction-level, LISTEN
    # is on the direct connection. A change made on one instance streams from the other.
    await exchange.configure(fill_delay_ms=600_000, limit_expiry_ms=600_000)
    settings = _settings(db_url, bouncer, exchange)
    placing, serving = [await ApiProcess.start(settings) for _ in range(2)]
    try:
        async with (
            aiohttp.ClientSession(headers=placing.headers) as http,
            http.get(f"{serving.url}/orders/updates") as resp,
        ):
            assert resp.status == 200
            events = SseReader(resp)
            async with http.post(f"{placing.url}/orders", json=LIMIT) as created:
                order = await created.json()
            async with http.delete(f"{placing.url}/orders/{order['id']}") as asked:
                assert asked.status == 202
            got = await events.until(
                lambda es: es and es[-1].order["cancel_status"] == "CANCELED", timeout_s=30
            )
        assert [(e.order["status"], e.order["cancel_status"]) for e in got] == [
            ("IN PROGRESS", None),
            ("SUCCESS", None),
            ("SUCCESS", "PENDING"),
            ("SUCCESS", "CANCELED"),
        ]
        assert (await exchange.ledger())[order["id"]]["status"] == "canceled"
        errors = [ln for p in (placing, serving) for ln in p.lines() if ln.get("level") == "ERROR"]
        assert errors == []
    finally:
        await placing.stop()
        await serving.stop()
