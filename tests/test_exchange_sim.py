"""The stand-in exchange (SPEC §3), driven over HTTP as a real process on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.conftest import SIM_ENV
from tests.sim import ROOT, SimProcess, child_env

ISIN = "US0378331005"


def order_body(client_order_id: str | None = None, valid_in_s: float = 30, **fields: Any) -> Any:
    deadline = datetime.now(UTC) + timedelta(seconds=valid_in_s)
    body = {
        "client_order_id": client_order_id or str(uuid.uuid4()),
        "instrument": ISIN,
        "side": "buy",
        "type": "limit",
        "limit_price": "12.50",
        "quantity": 10,
        "valid_until": deadline.isoformat(),
    }
    return body | fields


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as resp:
        return resp.status, await resp.json()


async def place(http: aiohttp.ClientSession, sim: SimProcess, body: Any) -> tuple[int, Any]:
    return await call(http, "POST", f"{sim.url}/v1/orders", body)


async def lookup(http: aiohttp.ClientSession, sim: SimProcess, cid: str) -> tuple[int, Any]:
    return await call(http, "GET", f"{sim.url}/v1/orders/{cid}")


async def cancel(http: aiohttp.ClientSession, sim: SimProcess, cid: str) -> tuple[int, Any]:
    return await call(http, "DELETE", f"{sim.url}/v1/orders/{cid}")


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 10) -> None:
    """Poll `check` until it holds; fail if it never does within a generous bound."""
    for _ in range(int(within_s / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


# --- placing, looking up, cancelling ----------------------------------------------------------


async def test_place_books_the_order_once(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    body = order_body()
    status, order = await place(http, exchange, body)

    assert status == 201
    assert {k: order[k] for k in body if k != "valid_until"} == {
        k: v for k, v in body.items() if k != "valid_until"
    }
    assert datetime.fromisoformat(order["valid_until"]) == datetime.fromisoformat(
        body["valid_until"]
    )
    assert order["status"] == "new"
    assert order["filled_quantity"] == 0
    assert uuid.UUID(order["exchange_order_id"])
    assert datetime.fromisoformat(order["created_at"]).tzinfo is not None
    assert await exchange.ledger() == {
        body["client_order_id"]: {
            "client_order_id": body["client_order_id"],
            "exchange_order_id": order["exchange_order_id"],
            "status": "new",
            "filled_quantity": 0,
            "placements": 1,
        }
    }


async def test_market_order_has_no_price(exchange: SimProcess, http: aiohttp.ClientSession) -> None:
    status, order = await place(http, exchange, order_body(type="market", limit_price=None))
    assert (status, order["type"], order["limit_price"]) == (201, "market", None)


async def test_duplicate_id_gets_409_with_the_existing_order(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    body = order_body()
    _, first = await place(http, exchange, body)
    status, again = await place(http, exchange, order_body(body["client_order_id"], quantity=99))

    assert (status, again) == (409, first)
    assert (await exchange.ledger())[body["client_order_id"]]["placements"] == 1


async def test_accept_duplicate_ids_books_a_second_order(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(accept_duplicate_ids=True)
    cid = str(uuid.uuid4())
    _, first = await place(http, exchange, order_body(cid))
    status, second = await place(http, exchange, order_body(cid))

    assert status == 201
    assert second["exchange_order_id"] != first["exchange_order_id"]
    entry = (await exchange.ledger())[cid]
    assert (entry["placements"], entry["exchange_order_id"]) == (2, second["exchange_order_id"])
    assert await lookup(http, exchange, cid) == (200, second)


async def test_lookup(exchange: SimProcess, http: aiohttp.ClientSession) -> None:
    cid = str(uuid.uuid4())
    assert await lookup(http, exchange, cid) == (404, {"message": "order not found"})
    _, order = await place(http, exchange, order_body(cid))
    assert await lookup(http, exchange, cid) == (200, order)


async def test_cancel(exchange: SimProcess, http: aiohttp.ClientSession) -> None:
    cid = str(uuid.uuid4())
    assert await cancel(http, exchange, cid) == (404, {"message": "order not found"})
    _, order = await place(http, exchange, order_body(cid))

    status, canceled = await cancel(http, exchange, cid)
    assert (status, canceled) == (200, order | {"status": "canceled"})
    assert await cancel(http, exchange, cid) == (409, canceled)
    assert await lookup(http, exchange, cid) == (200, canceled)
    assert (await exchange.ledger())[cid]["status"] == "canceled"


# --- faults -------------------------------------------------------------------------------------


async def test_failure_rate_fails_placements_only(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    held = order_body()
    await place(http, exchange, held)
    await exchange.configure(failure_rate=1)
    body = order_body()

    assert await place(http, exchange, body) == (503, {"message": "Connection not available"})
    assert body["client_order_id"] not in await exchange.ledger()
    assert (await lookup(http, exchange, held["client_order_id"]))[0] == 200


async def test_fail_next_fails_exactly_that_many(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(fail_next=3)
    body = order_body()
    statuses = [(await place(http, exchange, body))[0] for _ in range(4)]

    assert statuses == [503, 503, 503, 201]
    assert (await exchange.config())["fail_next"] == 0
    assert (await exchange.ledger())[body["client_order_id"]]["placements"] == 1


async def test_outage_fails_every_endpoint(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    held = order_body()
    await place(http, exchange, held)
    cid = held["client_order_id"]
    await exchange.configure(outage=True)

    assert (await place(http, exchange, order_body()))[0] == 503
    assert (await lookup(http, exchange, cid))[0] == 503
    assert (await cancel(http, exchange, cid))[0] == 503
    await exchange.configure(outage=False)
    assert list(await exchange.ledger()) == [cid]
    assert (await lookup(http, exchange, cid))[1]["status"] == "new"


async def test_reject_rate_refuses_and_books_nothing(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(reject_rate=1)
    status, answer = await place(http, exchange, order_body())

    assert status == 400
    assert answer["message"].startswith("order rejected")
    assert await exchange.ledger() == {}


async def test_past_deadline_gets_408_and_books_nothing(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    status, answer = await place(http, exchange, order_body(valid_in_s=-1))
    assert (status, answer) == (408, {"message": "deadline passed"})
    assert await exchange.ledger() == {}


async def test_latency_elapses_before_the_deadline_is_checked(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(latency_ms=1500)
    assert (await place(http, exchange, order_body(valid_in_s=0.5)))[0] == 408
    assert await exchange.ledger() == {}

    await exchange.configure(latency_ms=0)
    assert (await place(http, exchange, order_body(valid_in_s=0.5)))[0] == 201


async def test_timeout_rate_books_then_never_answers(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(timeout_rate=1)
    body = order_body()
    posting = asyncio.ensure_future(http.post(f"{exchange.url}/v1/orders", json=body))

    async def booked() -> bool:
        return body["client_order_id"] in await exchange.ledger()

    await eventually(booked)
    # Decided and booked, yet the request is still in flight and its client has no answer.
    assert (await exchange.stats())["in_flight"] == 1
    assert not posting.done()
    assert (await exchange.ledger())[body["client_order_id"]]["placements"] == 1
    posting.cancel()  # the client gives up
    with contextlib.suppress(asyncio.CancelledError):
        await posting

    async def released() -> bool:  # the client left, so the hung handler was cancelled
        return (await exchange.stats())["in_flight"] == 0

    await eventually(released)


async def test_lookup_latency_reads_the_book_before_a_slow_placement_decides(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    """Reads faster than order entry: a lookup sent while a placement is in flight reads the
    book at once and finds nothing, though the placement books the order a moment later."""
    await exchange.configure(latency_ms=800, lookup_latency_ms=0)
    body = order_body()
    posting = asyncio.ensure_future(place(http, exchange, body))
    await asyncio.sleep(0.1)
    started = asyncio.get_running_loop().time()
    assert (await lookup(http, exchange, body["client_order_id"]))[0] == 404
    assert asyncio.get_running_loop().time() - started < 0.5
    assert (await posting)[0] == 201
    assert (await lookup(http, exchange, body["client_order_id"]))[0] == 200


async def _placements(sim: SimProcess, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
    status, body = await call(http, "GET", f"{sim.url}/_sim/placements")
    assert status == 200
    placements: list[dict[str, Any]] = body["placements"]
    return placements


async def test_placements_log_every_request_with_its_times(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    """`GET /_sim/placements`: each placement request with when it arrived, the valid_until it
    carried and how it was answered, so a test can prove no two requests for one id were live
    at once."""
    body = order_body()
    before = datetime.now(UTC)
    assert (await place(http, exchange, body))[0] == 201
    assert (await place(http, exchange, body))[0] == 409
    await exchange.configure(fail_next=1)
    assert (await place(http, exchange, body))[0] == 503
    assert (await place(http, exchange, order_body(valid_until="tomorrow")))[0] == 400

    log = await _placements(exchange, http)
    assert [(p["client_order_id"], p["status"]) for p in log] == [
        (body["client_order_id"], 201),
        (body["client_order_id"], 409),
        (body["client_order_id"], 503),
        (log[3]["client_order_id"], 400),
    ]
    first = log[0]
    received = datetime.fromisoformat(first["received_at"])
    assert before <= received <= datetime.fromisoformat(first["answered_at"])
    # The valid_until each request carried, even one answered 503 before its body is read;
    # none for a body without one that reads as an instant.
    sent_until = datetime.fromisoformat(body["valid_until"])
    assert [p["valid_until"] and datetime.fromisoformat(p["valid_until"]) for p in log] == [
        sent_until,
        sent_until,
        sent_until,
        None,
    ]

    await exchange.reset()
    assert await _placements(exchange, http) == []


async def test_a_placement_that_hangs_stays_unanswered_in_the_log(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(timeout_rate=1)
    body = order_body()
    with contextlib.suppress(TimeoutError):
        async with http.post(
            f"{exchange.url}/v1/orders", json=body, timeout=aiohttp.ClientTimeout(total=0.3)
        ):
            pass
    (entry,) = await _placements(exchange, http)
    assert (entry["client_order_id"], entry["status"], entry["answered_at"]) == (
        body["client_order_id"],
        None,
        None,
    )


INVALID_BODIES: dict[str, bytes] = {
    "not json": b"{nope",
    "not an object": b"[1, 2]",
    "missing field": json.dumps({k: v for k, v in order_body().items() if k != "side"}).encode(),
    "unknown field": json.dumps(order_body(note="x")).encode(),
    "bad side": json.dumps(order_body(side="hold")).encode(),
    "bad type": json.dumps(order_body(type="stop")).encode(),
    "limit without price": json.dumps(order_body(limit_price=None)).encode(),
    "price as number": json.dumps(order_body(limit_price=12.5)).encode(),
    "price zero": json.dumps(order_body(limit_price="0")).encode(),
    "price negative": json.dumps(order_body(limit_price="-1.00")).encode(),
    "price not decimal": json.dumps(order_body(limit_price="twelve")).encode(),
    "market with price": json.dumps(order_body(type="market", limit_price="1.00")).encode(),
    "quantity zero": json.dumps(order_body(quantity=0)).encode(),
    "quantity string": json.dumps(order_body(quantity="10")).encode(),
    "quantity fraction": json.dumps(order_body(quantity=1.5)).encode(),
    "deadline naive": json.dumps(order_body(valid_until="2030-01-01T00:00:00")).encode(),
    "deadline garbage": json.dumps(order_body(valid_until="tomorrow")).encode(),
    "deadline number": json.dumps(order_body(valid_until=1900000000)).encode(),
    "empty client id": json.dumps(order_body() | {"client_order_id": ""}).encode(),
}


@pytest.mark.parametrize("raw", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
async def test_invalid_body_gets_400(
    exchange: SimProcess, http: aiohttp.ClientSession, raw: bytes
) -> None:
    headers = {"Content-Type": "application/json"}
    async with http.post(f"{exchange.url}/v1/orders", data=raw, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["message"].startswith("invalid order")
    assert await exchange.ledger() == {}


async def test_invalid_body_is_still_counted(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    body = order_body(quantity=0)
    assert (await place(http, exchange, body))[0] == 400
    assert (await exchange.requests())[body["client_order_id"]]["place"] == 1


# --- the /_sim controls -------------------------------------------------------------------------

START_KNOBS = {
    "failure_rate": 0.0,
    "outage": False,
    "latency_ms": 0,
    "lookup_latency_ms": None,
    "timeout_rate": 0.0,
    "reject_rate": 0.0,
    "accept_duplicate_ids": False,
    "fail_next": 0,
    "seed": 1,
    "lifecycle": True,
    "fill_delay_ms": 1000,
    "partial_fill_rate": 0.3,
    "limit_fill_rate": 0.5,
    "limit_expiry_ms": 5000,
    "retention": 100000,
    "heartbeat_ms": 1000,
    "drop_rate": 0.0,
    "lose_rate": 0.0,
    "duplicate_rate": 0.0,
    "reorder_window": 0,
    "stall": False,
}


async def test_config_returns_every_knob_as_started(exchange: SimProcess) -> None:
    assert await exchange.config() == START_KNOBS


async def test_config_update_returns_every_knob(exchange: SimProcess) -> None:
    assert await exchange.configure(reject_rate=0.25) == START_KNOBS | {"reject_rate": 0.25}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"failure_rate": 0.5, "bogus": 1}',
        b'{"failure_rate": 2}',
        b'{"latency_ms": -1}',
        b'{"outage": "yes"}',
        b"[]",
        b"{nope",
    ],
)
async def test_config_refuses_bad_knobs_and_changes_nothing(
    exchange: SimProcess, http: aiohttp.ClientSession, raw: bytes
) -> None:
    async with http.post(f"{exchange.url}/_sim/config", data=raw) as resp:
        assert resp.status == 400
        assert (await resp.json())["message"].startswith("invalid config")
    assert await exchange.config() == START_KNOBS


async def test_reset_forgets_everything_and_restores_knobs(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    cid = str(uuid.uuid4())
    await place(http, exchange, order_body(cid))
    await lookup(http, exchange, cid)
    await exchange.configure(latency_ms=5, outage=True, seed=None)

    await exchange.reset()

    assert await exchange.config() == START_KNOBS
    assert await exchange.ledger() == {}
    assert await exchange.requests() == {}
    assert await exchange.stats() == {
        "overlapping_requests": 0,
        "max_in_flight_per_id": 0,
        "in_flight": 0,
    }


async def test_requests_counts_every_request_per_id(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    body = order_body()
    cid = body["client_order_id"]
    await place(http, exchange, body)
    await place(http, exchange, body)  # 409
    for _ in range(2):
        await lookup(http, exchange, cid)
    await cancel(http, exchange, cid)
    await exchange.configure(outage=True)
    await lookup(http, exchange, cid)  # answered 503, counted all the same

    assert await exchange.requests() == {cid: {"place": 2, "lookup": 3, "cancel": 1}}


async def test_stats_count_overlapping_requests_on_one_id(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    cid = str(uuid.uuid4())
    await place(http, exchange, order_body(cid))
    await exchange.configure(latency_ms=500)

    await asyncio.gather(lookup(http, exchange, cid), lookup(http, exchange, cid))

    stats = await exchange.stats()
    assert (stats["overlapping_requests"], stats["max_in_flight_per_id"]) == (1, 2)


async def test_stats_count_nothing_when_requests_take_turns(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    cid = str(uuid.uuid4())
    await place(http, exchange, order_body(cid))
    await exchange.configure(latency_ms=20)
    await lookup(http, exchange, cid)
    await lookup(http, exchange, cid)
    await cancel(http, exchange, cid)
    # Concurrent requests on *different* ids do not overlap either.
    await asyncio.gather(*(lookup(http, exchange, str(uuid.uuid4())) for _ in range(5)))

    stats = await exchange.stats()
    assert (stats["overlapping_requests"], stats["max_in_flight_per_id"]) == (0, 1)


async def _placement_statuses(sim: SimProcess, http: aiohttp.ClientSession, n: int) -> list[int]:
    return [(await place(http, sim, order_body()))[0] for _ in range(n)]


async def test_seed_makes_fresh_processes_repeat(http: aiohttp.ClientSession) -> None:
    env = {"EXCHANGE_SIM_SEED": "7", "EXCHANGE_SIM_FAILURE_RATE": "0.5"} | {
        "EXCHANGE_SIM_LATENCY_MS": "0"
    }
    runs = []
    for _ in range(2):
        async with SimProcess.start_async(env) as sim:
            runs.append(await _placement_statuses(sim, http, 24))

    assert runs[0] == runs[1]
    assert set(runs[0]) == {201, 503}


async def test_setting_seed_restarts_the_sequence(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    await exchange.configure(seed=3, failure_rate=0.5)
    first = await _placement_statuses(exchange, http, 24)
    await exchange.configure(seed=3)
    assert await _placement_statuses(exchange, http, 24) == first
    assert set(first) == {201, 503}


async def test_health_and_json_errors(exchange: SimProcess, http: aiohttp.ClientSession) -> None:
    assert await call(http, "GET", f"{exchange.url}/health") == (200, {"status": "ok"})
    status, answer = await call(http, "GET", f"{exchange.url}/no/such/route")
    assert (status, set(answer)) == (404, {"message"})
    status, answer = await call(http, "PUT", f"{exchange.url}/health")
    assert (status, set(answer)) == (405, {"message"})


def test_bad_setting_stops_the_process_with_a_clear_error() -> None:
    env = child_env(0, SIM_ENV | {"EXCHANGE_SIM_FAILURE_RATE": "2"})
    done = subprocess.run(
        [sys.executable, "-m", "exchange_sim"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "EXCHANGE_SIM_FAILURE_RATE" in done.stderr


async def test_killed_exchange_restarts_on_its_port_having_forgotten_everything(
    http: aiohttp.ClientSession,
) -> None:
    async with SimProcess.start_async(SIM_ENV) as sim:
        cid = str(uuid.uuid4())
        assert (await place(http, sim, order_body(cid)))[0] == 201
        await sim.kill_async()
        assert sim.proc.returncode == -signal.SIGKILL
        await sim.restart_async()
        assert sim.url == f"http://127.0.0.1:{sim.port}"
        assert await lookup(http, sim, cid) == (404, {"message": "order not found"})


async def test_a_slow_venue_books_after_the_client_gave_up(
    exchange: SimProcess, http: aiohttp.ClientSession
) -> None:
    """SPEC §3: the latency elapses before the decision, and a client that gives up does not
    stop it: the venue books the order later (its deadline still ahead)."""
    await exchange.configure(latency_ms=600)
    body = order_body()
    with contextlib.suppress(TimeoutError):
        async with http.post(
            f"{exchange.url}/v1/orders", json=body, timeout=aiohttp.ClientTimeout(total=0.2)
        ):
            pass

    async def booked() -> bool:
        return body["client_order_id"] in await exchange.ledger()

    await eventually(booked)
