"""The stand-in exchange's order lifecycle and status stream (SPEC §3), against the real process."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.sim import SimProcess

ISIN = "US0378331005"
WAIT_S = 5.0  # a generous bound for anything the exchange should do "soon"
# Fast lifecycle and heartbeats, so the whole file runs in a few seconds.
FAST: dict[str, Any] = {"fill_delay_ms": 30, "limit_expiry_ms": 30, "heartbeat_ms": 100}
CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)
Ws = aiohttp.ClientWebSocketResponse


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def order_body(order_type: str = "market", quantity: int = 10) -> dict[str, Any]:
    return {
        "client_order_id": str(uuid.uuid4()),
        "instrument": ISIN,
        "side": "buy",
        "type": order_type,
        "limit_price": "12.50" if order_type == "limit" else None,
        "quantity": quantity,
        "valid_until": (datetime.now(UTC) + timedelta(seconds=30)).isoformat(),
    }


async def place(http: aiohttp.ClientSession, sim: SimProcess, order_type: str = "market") -> str:
    body = order_body(order_type)
    async with http.post(f"{sim.url}/v1/orders", json=body) as resp:
        assert resp.status == 201, await resp.text()
    return str(body["client_order_id"])


async def cancel(http: aiohttp.ClientSession, sim: SimProcess, cid: str) -> None:
    async with http.delete(f"{sim.url}/v1/orders/{cid}") as resp:
        assert resp.status == 200, await resp.text()


async def updated(http: aiohttp.ClientSession, sim: SimProcess, after: int) -> Any:
    async with http.get(f"{sim.url}/v1/orders", params={"updated_after_seq": after}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def connect(
    http: aiohttp.ClientSession, sim: SimProcess, from_seq: int | None = None, autoping: bool = True
) -> Ws:
    query = "" if from_seq is None else f"?from_seq={from_seq}"
    return await http.ws_connect(f"{sim.url}/v1/stream{query}", autoping=autoping, heartbeat=None)


async def receive(ws: Ws, timeout: float = WAIT_S) -> Any:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def hello(ws: Ws) -> Any:
    first = await receive(ws)
    assert first["type"] == "hello", first
    return first


async def reports(ws: Ws, n: int) -> list[Any]:
    """The next `n` execution reports, skipping heartbeats."""
    got: list[Any] = []
    while len(got) < n:
        message = await receive(ws)
        if message["type"] != "heartbeat":
            assert message["type"] == "execution_report", message
            got.append(message)
    return got


async def assert_closed(ws: Ws) -> None:
    msg = await ws.receive(timeout=WAIT_S)
    assert msg.type in CLOSED, msg


async def statuses_until(ws: Ws, cid: str, final: set[str]) -> list[Any]:
    """Reports for `cid` until one has a status in `final`."""
    seen: list[Any] = []
    while not seen or seen[-1]["status"] not in final:
        message = (await reports(ws, 1))[0]
        if message["client_order_id"] == cid:
            seen.append(message)
    return seen


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = WAIT_S) -> None:
    for _ in range(int(within_s / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


# --- the stream: hello, replay, live -----------------------------------------------------------


async def test_hello_comes_first_with_epoch_and_latest_seq(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(lifecycle=False)
    for _ in range(2):
        await place(http, exchange)

    async with await connect(http, exchange) as ws:
        first = await hello(ws)

    assert set(first) == {"type", "epoch", "seq"}
    assert first["seq"] == 2 == (await updated(http, exchange, 0))["seq"]
    assert len(first["epoch"]) == 32
    assert int(first["epoch"], 16) >= 0


async def test_replay_from_zero_returns_every_event_in_order(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(lifecycle=False)
    cids = [await place(http, exchange) for _ in range(4)]
    await cancel(http, exchange, cids[1])

    async with await connect(http, exchange, from_seq=0) as ws:
        assert (await hello(ws))["seq"] == 5
        events = await reports(ws, 5)

    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert [(e["client_order_id"], e["status"]) for e in events] == [
        *((cid, "new") for cid in cids),
        (cids[1], "canceled"),
    ]
    assert set(events[0]) == {
        "type", "seq", "exchange_order_id", "client_order_id", "status",
        "filled_quantity", "quantity", "avg_price", "ts",
    }  # fmt: skip
    assert datetime.fromisoformat(events[0]["ts"]).tzinfo is not None


async def test_replay_joins_live_events_without_gap(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(lifecycle=False)
    await place(http, exchange)
    async with await connect(http, exchange, from_seq=0) as ws:
        await hello(ws)
        await place(http, exchange)
        assert [e["seq"] for e in await reports(ws, 2)] == [1, 2]


async def test_market_order_fills_live(exchange: SimProcess, http: aiohttp.ClientSession) -> None:
    await exchange.configure(**FAST, partial_fill_rate=1)
    async with await connect(http, exchange) as ws:
        await hello(ws)
        cid = await place(http, exchange)
        seen = await statuses_until(ws, cid, {"filled"})

    statuses = [e["status"] for e in seen]
    assert statuses[0] == "new"
    assert statuses[-1] == "filled"
    assert set(statuses[1:-1]) == {"partially_filled"}  # 2-3 parts
    assert [e["seq"] for e in seen] == sorted(e["seq"] for e in seen)
    assert [e["filled_quantity"] for e in seen] == sorted(e["filled_quantity"] for e in seen)
    assert seen[-1]["filled_quantity"] == seen[-1]["quantity"] == 10
    assert seen[-1]["avg_price"] is not None
    assert float(seen[-1]["avg_price"]) > 0


async def test_limit_order_fills_at_its_price_or_expires(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(**FAST, limit_fill_rate=1, partial_fill_rate=0)
    async with await connect(http, exchange) as ws:
        await hello(ws)
        filled = (await statuses_until(ws, await place(http, exchange, "limit"), {"filled"}))[-1]
        await exchange.configure(limit_fill_rate=0)
        expired = await statuses_until(ws, await place(http, exchange, "limit"), {"expired"})

    assert filled["avg_price"] == "12.50"
    assert [(e["status"], e["filled_quantity"]) for e in expired] == [("new", 0), ("expired", 0)]


async def test_cancel_produces_canceled(exchange: SimProcess, http: aiohttp.ClientSession) -> None:
    await exchange.configure(lifecycle=False)
    async with await connect(http, exchange) as ws:
        await hello(ws)
        cid = await place(http, exchange, "limit")
        await cancel(http, exchange, cid)
        events = await reports(ws, 2)

    assert [(e["client_order_id"], e["status"]) for e in events] == [
        (cid, "new"),
        (cid, "canceled"),
    ]


async def test_invalid_from_seq_is_refused_before_upgrading(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    for bad in ("-1", "x", "1.5"):
        async with http.get(f"{exchange.url}/v1/stream?from_seq={bad}") as resp:
            assert resp.status == 400
            assert "from_seq" in (await resp.json())["message"]


async def test_reset_when_from_seq_is_older_than_retention(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(lifecycle=False, retention=3)
    for _ in range(5):
        await place(http, exchange)  # seq 1..5, of which 3..5 are kept

    async with await connect(http, exchange, from_seq=1) as ws:
        assert (await hello(ws))["seq"] == 5
        assert await receive(ws) == {"type": "reset"}
        await assert_closed(ws)
    async with await connect(http, exchange, from_seq=2) as ws:
        await hello(ws)
        assert [e["seq"] for e in await reports(ws, 3)] == [3, 4, 5]


async def test_epoch_changes_and_seq_restarts_after_sim_reset(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(lifecycle=False)
    await place(http, exchange)
    async with await connect(http, exchange) as ws:
        before = await hello(ws)
        await exchange.reset()
        await assert_closed(ws)
    async with await connect(http, exchange) as ws:
        after = await hello(ws)

    assert before["seq"] == 1
    assert after["seq"] == 0
    assert after["epoch"] != before["epoch"]


async def test_heartbeat_when_idle(exchange: SimProcess, http: aiohttp.ClientSession) -> None:
    await exchange.configure(lifecycle=False, heartbeat_ms=50)
    await place(http, exchange)
    async with await connect(http, exchange) as ws:
        await hello(ws)
        beat = await receive(ws)

    assert (beat["type"], beat["seq"]) == ("heartbeat", 1)
    assert datetime.fromisoformat(beat["ts"]).tzinfo is not None


async def test_stall_sends_nothing_after_hello(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(**FAST, stall=True)
    async with await connect(http, exchange, autoping=False) as ws:
        await hello(ws)
        cid = await place(http, exchange)
        await ws.ping()
        # The exchange had an event, heartbeats and a pong to send: a connection opened later,
        # without the stall, gets all three.
        await exchange.configure(stall=False)
        async with await connect(http, exchange, from_seq=0, autoping=False) as live:
            await hello(live)
            await live.ping()
            seen = await _until_seen(live, {"report", "heartbeat", "pong"})
            assert seen["report"]["client_order_id"] == cid
        # Closed by the exchange, the stalled connection ends with what the exchange sent on it
        # before the close: nothing, not an event, a heartbeat nor a pong.
        await exchange.disconnect()
        msg = await ws.receive(timeout=WAIT_S)
        assert msg.type in CLOSED, msg


async def _until_seen(ws: Ws, kinds: set[str]) -> dict[str, Any]:
    """Read `ws` until it has brought one message of each kind (report, heartbeat, pong)."""
    seen: dict[str, Any] = {}
    while not kinds <= seen.keys():
        msg = await ws.receive(timeout=WAIT_S)
        if msg.type == aiohttp.WSMsgType.PONG:
            seen["pong"] = msg
            continue
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        message = json.loads(msg.data)
        kind = "report" if message["type"] == "execution_report" else message["type"]
        seen.setdefault(kind, message)
    return seen


async def test_without_stall_the_server_answers_pings(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(lifecycle=False, heartbeat_ms=60_000)
    async with await connect(http, exchange, autoping=False) as ws:
        await hello(ws)
        await ws.ping()
        assert (await ws.receive(timeout=WAIT_S)).type == aiohttp.WSMsgType.PONG


# --- stream faults ------------------------------------------------------------------------------


async def test_duplicate_rate_sends_every_event_twice(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(lifecycle=False, duplicate_rate=1)
    for _ in range(3):
        await place(http, exchange)
    async with await connect(http, exchange, from_seq=0) as ws:
        await hello(ws)
        events = await reports(ws, 6)

    assert [e["seq"] for e in events] == [1, 1, 2, 2, 3, 3]
    assert events[0] == events[1]


async def test_reorder_window_shuffles_but_delivers_the_same_set(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(lifecycle=False, reorder_window=4, heartbeat_ms=50)
    for _ in range(10):  # two full windows, and two events flushed when the stream goes idle
        await place(http, exchange)
    async with await connect(http, exchange, from_seq=0) as ws:
        await hello(ws)
        seqs = [e["seq"] for e in await reports(ws, 10)]

    assert seqs != sorted(seqs)
    assert sorted(seqs) == list(range(1, 11))
    assert sorted(seqs[:4]) == [1, 2, 3, 4]  # shuffled only within a window


async def test_drop_rate_closes_the_connection_after_an_event(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(lifecycle=False, drop_rate=1)
    for _ in range(3):
        await place(http, exchange)
    async with await connect(http, exchange, from_seq=0) as ws:
        await hello(ws)
        assert (await receive(ws))["seq"] == 1
        await assert_closed(ws)


async def test_sim_disconnect_closes_every_stream(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(lifecycle=False, heartbeat_ms=60_000)
    streams = [await connect(http, exchange) for _ in range(2)]
    stalled = await connect(http, exchange)  # connected before the stall: a normal stream
    await exchange.configure(stall=True)
    stalled_too = await connect(http, exchange)
    for ws in [*streams, stalled, stalled_too]:
        await hello(ws)

    async with http.post(f"{exchange.url}/_sim/disconnect") as resp:
        assert resp.status == 204
    for ws in [*streams, stalled, stalled_too]:
        await assert_closed(ws)
        await ws.close()


# --- resynchronising and the lifecycle ----------------------------------------------------------


async def test_updated_after_seq_returns_orders_changed_after_n(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(lifecycle=False)
    a, _b, c = [await place(http, exchange) for _ in range(3)]  # seq 1, 2, 3
    await cancel(http, exchange, a)  # seq 4

    answer = await updated(http, exchange, 2)

    assert answer["seq"] == 4
    assert [(o["client_order_id"], o["status"], o["seq"]) for o in answer["orders"]] == [
        (c, "new", 3),
        (a, "canceled", 4),
    ]
    assert (await updated(http, exchange, 4))["orders"] == []
    assert len((await updated(http, exchange, 0))["orders"]) == 3
    async with http.get(f"{exchange.url}/v1/orders?updated_after_seq=-1") as resp:
        assert resp.status == 400


async def test_lifecycle_off_leaves_orders_new(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(**(FAST | {"lifecycle": False, "heartbeat_ms": 30}))
    async with await connect(http, exchange) as ws:
        await hello(ws)
        cids = [await place(http, exchange, kind) for kind in ("market", "limit")]
        messages = [await receive(ws) for _ in range(8)]  # a few fill delays' worth

    statuses = [(m["client_order_id"], m["status"]) for m in messages if "status" in m]
    assert statuses == [(cids[0], "new"), (cids[1], "new")]
    assert {e["status"] for e in (await exchange.ledger()).values()} == {"new"}


async def _statuses_of_a_run(exchange: SimProcess, http: aiohttp.ClientSession) -> list[Any]:
    """Place 8 orders, wait until each is done; every order's status history, in placing order."""
    await exchange.reset()
    await exchange.configure(**FAST, seed=5)
    cids = [await place(http, exchange, kind) for kind in ("market", "limit") * 4]

    async def all_done() -> bool:
        orders = (await updated(http, exchange, 0))["orders"]
        return all(o["status"] in ("filled", "expired") for o in orders)

    await eventually(all_done)
    async with await connect(http, exchange, from_seq=0) as ws:
        await hello(ws)
        latest = (await updated(http, exchange, 0))["seq"]
        events = await reports(ws, latest)
    return [
        [(e["status"], e["filled_quantity"]) for e in events if e["client_order_id"] == cid]
        for cid in cids
    ]


async def test_same_seed_repeats_the_statuses(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    first = await _statuses_of_a_run(exchange, http)
    second = await _statuses_of_a_run(exchange, http)

    assert first == second
    finals = {history[-1][0] for history in first}
    assert finals == {"filled", "expired"}
    assert any(status == "partially_filled" for history in first for status, _ in history)


async def test_knobs_from_env_and_a_new_epoch_per_start(http: aiohttp.ClientSession) -> None:
    env = {"EXCHANGE_SIM_LATENCY_MS": "0", "EXCHANGE_SIM_FAILURE_RATE": "0"} | {
        "EXCHANGE_SIM_LIFECYCLE": "false",
        "EXCHANGE_SIM_RETENTION": "2",
        "EXCHANGE_SIM_REORDER_WINDOW": "3",
    }
    async with SimProcess.start_async(env) as sim:
        config = await sim.config()
        await place(http, sim)
        async with await connect(http, sim) as ws:
            first = await hello(ws)
            await sim.stop_async()  # stopping the process closes its streams
            await assert_closed(ws)
        await sim.restart_async()
        async with await connect(http, sim) as ws:
            second = await hello(ws)

    assert (config["lifecycle"], config["retention"], config["reorder_window"]) == (False, 2, 3)
    assert (first["seq"], second["seq"]) == (1, 0)
    assert first["epoch"] != second["epoch"]
