"""Live order updates (SPEC §9): `GET /orders/updates` against a real PostgreSQL and exchange-sim,
served by one instance for changes made by another; resuming by cursor; isolation; heartbeats;
and the update log's numbering under concurrent writers and sequencers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from orders_api import updates
from orders_core.db import create_pool
from tests.api_fixtures import ApiFactory
from tests.helpers import LIMIT, MARKET, auth_headers, eventually, fast_settings
from tests.procs import ApiProcess
from tests.sim import SimProcess, wait_exit
from tests.sse import Event, SseReader

Client = TestClient[web.Request, web.Application]
HELD: dict[str, Any] = {"fill_delay_ms": 600_000, "limit_expiry_ms": 600_000}


@contextlib.asynccontextmanager
async def stream(api: Client, **headers: str) -> AsyncIterator[SseReader]:
    after = headers.pop("after", None)
    path = "/orders/updates" + (f"?after={after}" if after is not None else "")
    resp = await api.get(path, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/event-stream"
    try:
        yield SseReader(resp)
    finally:
        resp.close()


async def numbered(db: asyncpg.Connection) -> None:
    """Wait until every committed update has its cursor."""
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM order_updates WHERE seq IS NULL"),
        lambda n: n == 0,
    )


def ids_of(events: list[Event]) -> list[int]:
    return [int(e.id or "0") for e in events]


async def test_a_change_made_on_one_instance_streams_from_another(
    make_api: ApiFactory, exchange: SimProcess, db_url: str
) -> None:
    await exchange.configure(**HELD)
    headers = await auth_headers(db_url, "streamer")
    placing = await make_api(headers=headers)
    serving = await make_api(headers=headers)
    async with stream(serving) as events:
        order = await (await placing.post("/orders", json=LIMIT)).json()
        assert order["status"] == "SUCCESS"
        got = await events.until(lambda es: es and es[-1].order["status"] == "SUCCESS")
    assert {e.event for e in got} == {"order"}
    assert [e.order["status"] for e in got] == ["IN PROGRESS", "SUCCESS"]
    assert all(e.order["id"] == order["id"] for e in got)
    assert ids_of(got) == sorted(set(ids_of(got)))
    # The event carries the order exactly as GET /orders/{id} returns it at that change.
    now = await (await serving.get(f"/orders/{order['id']}")).json()
    assert got[-1].order == now


async def test_every_change_of_an_order_in_commit_order(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(failure_rate=1.0, **HELD)
    async with stream(api) as events:
        order = await (await api.post("/orders", json=MARKET)).json()
        assert (await api.delete(f"/orders/{order['id']}")).status == 202
        got = await events.until(lambda es: es and es[-1].order["cancel_status"] == "CANCELED")
    seen = [(e.order["status"], e.order["cancel_status"]) for e in got]
    assert seen == [
        ("IN PROGRESS", None),
        ("IN PROGRESS", "PENDING"),
        ("FAILURE", "CANCELED"),
    ]
    assert got[-1].order["last_error"] == "canceled before placement"


async def test_the_exchanges_status_and_fills_are_events(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    # What the listener writes (exchange_order_status), streamed like the API's own changes.
    await exchange.configure(**HELD)
    order = await (await api.post("/orders", json=MARKET)).json()
    await numbered(db)  # the stream starts after the order's own events
    async with stream(api) as events:
        for status, filled in (("new", 0), ("partially_filled", 4), ("filled", 10)):
            await db.execute(
                "INSERT INTO exchange_order_status AS s (order_id, exchange_order_id, "
                "stock_market_order_status, filled_quantity, quantity, epoch, seq) "
                "VALUES ($1::uuid, 'x', $2, $3::bigint, 10, 'e', $3::bigint + 1) "
                "ON CONFLICT (order_id) DO UPDATE "
                "SET stock_market_order_status = excluded.stock_market_order_status, "
                "filled_quantity = excluded.filled_quantity",
                order["id"],
                status,
                filled,
            )
        # An update that changes neither status nor fill is no event.
        await db.execute("UPDATE exchange_order_status SET epoch = 'f'")
        got = await events.take(3)
        await db.execute("UPDATE exchange_order_status SET filled_quantity = 10")  # unchanged
        try:
            extra: Event | None = await events.next(timeout_s=1.0)
        except TimeoutError:
            extra = None
    assert [(e.order["stock_market_order_status"], e.order["filled_quantity"]) for e in got] == [
        ("new", 0),
        ("partially_filled", 4),
        ("filled", 10),
    ]
    assert extra is None


async def test_resuming_by_last_event_id_gives_exactly_what_was_missed(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(**HELD)
    async with stream(api) as events:
        first = await (await api.post("/orders", json=MARKET)).json()
        before = await events.take(2)  # IN PROGRESS, SUCCESS
    last = before[-1].id
    assert last is not None
    # Disconnected: changes go on.
    missed_orders = [(await (await api.post("/orders", json=LIMIT)).json())["id"] for _ in range(3)]
    assert (await api.delete(f"/orders/{first['id']}")).status == 202
    await numbered(db)
    expected = await db.fetch(
        "SELECT seq FROM order_updates WHERE account_id = (SELECT account_id FROM orders WHERE "
        "id = $1::uuid) AND seq > $2 ORDER BY seq",
        first["id"],
        int(last),
    )
    want = [r["seq"] for r in expected]
    assert len(want) >= 3 * 2 + 1  # each missed order twice, the cancel at least once

    for how in ({"Last-Event-ID": last}, {"after": last}):
        async with stream(api, **how) as resumed:
            again = await resumed.take(len(want))
            try:
                more: Event | None = await resumed.next(timeout_s=0.5)
            except TimeoutError:
                more = None
        assert ids_of(again) == want
        assert more is None or int(more.id or 0) > want[-1]  # only a change made since
        assert {e.order["id"] for e in again} >= set(missed_orders)


async def test_an_account_streams_only_its_own_orders(
    make_api: ApiFactory, exchange: SimProcess, db_url: str
) -> None:
    await exchange.configure(**HELD)
    mine = await make_api(headers=await auth_headers(db_url, "mine"))
    theirs = await make_api(headers=await auth_headers(db_url, "theirs"))
    async with stream(mine) as events:
        other = await (await theirs.post("/orders", json=MARKET)).json()
        own = await (await mine.post("/orders", json=MARKET)).json()
        got = await events.take(2)
        try:
            extra: Event | None = await events.next(timeout_s=0.5)
        except TimeoutError:
            extra = None
    assert {e.order["id"] for e in got} == {own["id"]}
    assert extra is None
    assert other["id"] != own["id"]


async def test_idle_streams_get_heartbeats(make_api: ApiFactory) -> None:
    api = await make_api(sse_heartbeat_s=0.2)
    async with stream(api) as events:
        assert (await events.comment(timeout_s=5)).startswith(":")
        assert (await events.comment(timeout_s=5)).startswith(":")


async def test_bad_and_unknown_cursors_are_refused(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    for bad in ("abc", "-1", "1.5"):
        resp = await api.get(f"/orders/updates?after={bad}")
        assert resp.status == 400
        assert "after" in (await resp.json())["message"]
    resp = await api.get("/orders/updates", headers={"Last-Event-ID": "x"})
    assert resp.status == 400
    head = await db.fetchval("SELECT coalesce(max(seq), 0) FROM order_updates")
    resp = await api.get(f"/orders/updates?after={head + 1000}")
    assert resp.status == 400
    assert "never" in (await resp.json())["message"] or "No event" in (await resp.json())["message"]
    await db.execute("UPDATE order_updates_horizon SET purged_through = $1", head + 1)
    await api.post("/orders", json=MARKET)
    await numbered(db)
    resp = await api.get(f"/orders/updates?after={head}")
    assert resp.status == 410
    assert "purged" in (await resp.json())["message"]


async def test_no_update_is_lost_or_repeated_under_concurrent_writers_and_sequencers(
    db_url: str, db: asyncpg.Connection
) -> None:
    # Transactions that commit out of the order they wrote in, for the same orders and others;
    # two sequencers at once; a reader following by cursor throughout. The reader must see every
    # change once, and each order's changes in the order they were committed (filled counts up).
    account = await db.fetchval("INSERT INTO accounts (name) VALUES ('log') RETURNING id")
    orders = [uuid.uuid4() for _ in range(8)]
    for order_id in orders:
        await db.execute(
            "INSERT INTO orders (id, type, side, instrument, quantity, account_id) "
            "VALUES ($1, 'market', 'buy', 'US0378331005', 1000, $2)",
            order_id,
            account,
        )
        await db.execute(
            "INSERT INTO exchange_order_status (order_id, exchange_order_id, "
            "stock_market_order_status, filled_quantity, quantity, epoch, seq) "
            "VALUES ($1, 'x', 'partially_filled', 0, 1000, 'e', 0)",
            order_id,
        )
    rounds = 40
    settings = fast_settings(db_url, "http://127.0.0.1:9", db_pool_max_size=20)
    pool = await create_pool(db_url, settings)
    stop = asyncio.Event()
    seen: list[tuple[int, uuid.UUID, int]] = []
    changes = [0]

    async def writer(n: int) -> None:
        for i in range(rounds):
            async with pool.acquire() as conn, conn.transaction():
                # Two orders per transaction (in one order: no deadlock), held open a while.
                for order_id in sorted({orders[n % 8], orders[(n + i) % 8]}):
                    changes[0] += 1
                    await conn.execute(
                        "UPDATE exchange_order_status SET filled_quantity = filled_quantity + 1 "
                        "WHERE order_id = $1",
                        order_id,
                    )
                await asyncio.sleep(0.001 * (i % 3))

    async def sequencer() -> None:
        while not stop.is_set():
            await updates.sequence(pool, batch=7)
            await asyncio.sleep(0)

    async def reader() -> None:
        cursor = 0
        while True:
            rows = await updates.after(pool, account, cursor, 50)
            for row in rows:
                order = Event(data=[row["body"]]).order
                seen.append((row["seq"], uuid.UUID(order["id"]), order["filled_quantity"]))
                cursor = row["seq"]
            if not rows:
                if stop.is_set():
                    return
                await asyncio.sleep(0.005)

    try:
        background = [asyncio.ensure_future(f()) for f in (sequencer, sequencer, reader)]
        await asyncio.gather(*(writer(n) for n in range(12)))
        await eventually(
            lambda: db.fetchval("SELECT count(*) FROM order_updates WHERE seq IS NULL"),
            lambda n: n == 0,
        )
        stop.set()
        await asyncio.gather(*background)
    finally:
        await pool.close()

    total = await db.fetchval(
        "SELECT count(*) FROM order_updates WHERE account_id = $1 AND seq IS NOT NULL", account
    )
    assert len(seen) == total == 8 * 2 + changes[0]  # each order's two inserts, every change
    assert len({s for s, _, _ in seen}) == len(seen)  # none twice
    for order_id in orders:
        fills = [f for _, o, f in seen if o == order_id and f is not None]
        assert fills == sorted(fills)
        assert len(fills) == len(set(fills))  # each change once, in commit order


async def test_a_clean_stop_ends_open_streams_and_the_client_resumes_elsewhere(
    db_url: str, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    settings = fast_settings(db_url, exchange.url)
    first = await ApiProcess.start(settings)
    try:
        async with aiohttp.ClientSession(headers=first.headers) as http:
            async with http.get(f"{first.url}/orders/updates") as resp:
                events = SseReader(resp)
                async with http.post(f"{first.url}/orders", json=MARKET) as created:
                    order = await created.json()
                seen = await events.take(2)
                first.proc.terminate()  # SIGTERM: the stream ends, the process exits cleanly
                try:
                    while True:
                        await events.next(timeout_s=20)
                except EOFError:
                    pass
            assert await wait_exit(first.proc, 20) == 0
            assert [e.order["id"] for e in seen] == [order["id"], order["id"]]
            async with await ApiProcess.start(settings) as second:
                async with http.post(f"{second.url}/orders", json=LIMIT) as created:
                    later = await created.json()
                resume = {"Last-Event-ID": seen[-1].id or ""}
                async with http.get(f"{second.url}/orders/updates", headers=resume) as resp:
                    got = await SseReader(resp).take(2)
            assert [e.order["id"] for e in got] == [later["id"], later["id"]]
    finally:
        await first.stop()


async def test_a_client_that_stops_reading_is_disconnected(
    make_api: ApiFactory, db: asyncpg.Connection, exchange: SimProcess
) -> None:
    # Memory per stream stays bounded: the server holds one batch, and a client that takes no
    # write for SSE_SEND_TIMEOUT_S is cut off (it resumes with its cursor when it reads again).
    api = await make_api(sse_send_timeout_s=0.5)
    order = await (await api.post("/orders", json=MARKET)).json()
    await numbered(db)
    _reader, writer = await asyncio.open_connection(api.host, api.port, limit=2**16)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    auth = api.session.headers["Authorization"]
    writer.write(
        f"GET /orders/updates?after=0 HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n".encode()
    )
    await writer.drain()
    # Far more than the socket buffers hold: ~10 MB of events for a client that reads nothing.
    await db.execute(
        "INSERT INTO exchange_order_status (order_id, exchange_order_id, "
        "stock_market_order_status, filled_quantity, quantity, epoch, seq) "
        "VALUES ($1::uuid, 'x', 'partially_filled', 0, 1000000, 'e', 1)",
        order["id"],
    )
    await db.execute(
        "DO $$ BEGIN FOR i IN 1..15000 LOOP UPDATE exchange_order_status "
        "SET filled_quantity = filled_quantity + 1; END LOOP; END $$"
    )

    async def ended_slow() -> float:
        text = await (await api.get("/metrics")).text()
        line = next(ln for ln in text.splitlines()
                    if ln.startswith('orders_update_stream_ends_total{reason="slow"}'))  # fmt: skip
        return float(line.rsplit(" ", 1)[1])

    try:
        assert await eventually(ended_slow, lambda n: n >= 1, timeout_s=60) == 1
        assert await (await api.get("/metrics")).text()  # the server itself is fine
    finally:
        writer.close()


async def test_the_sequencer_outlives_an_unexpected_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Like the retry sweep: a bug in one run must not stop the numbering for good.
    results: list[int | Exception] = [ValueError("a bug"), 1]

    async def sequence(pool: object, batch: int = 0) -> int:
        outcome = results.pop(0) if results else 0
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(updates, "sequence", sequence)
    hub = updates.Hub()
    woken = hub.changed
    task = asyncio.ensure_future(hub.sequence_forever(None, 0.01))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(woken.wait(), 5)  # the run after the error numbered something
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert results == []
