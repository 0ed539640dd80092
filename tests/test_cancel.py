"""Cancelling an order (SPEC §8) against the real exchange-sim: each outcome, repeats, other
accounts, an attempt in flight when the cancel comes, and a cancel that outlives its instance."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from orders_core.apikeys import Scope
from tests.api_fixtures import ApiFactory
from tests.helpers import (
    LIMIT,
    MARKET,
    auth_headers,
    bearer,
    eventually,
    fast_settings,
    make_key,
    order_row,
)
from tests.procs import ApiProcess
from tests.sim import SimProcess

Client = TestClient[web.Request, web.Application]

# The exchange keeps orders open (nothing fills or expires during a test) unless a test says so.
HELD: dict[str, Any] = {"fill_delay_ms": 600_000, "limit_expiry_ms": 600_000}


async def cancel_final(api: Client, order_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The order as the API returns it once its cancel is no longer PENDING."""

    async def read() -> dict[str, Any]:
        resp = await api.get(f"/orders/{order_id}")
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body

    return await eventually(read, lambda o: o["cancel_status"] != "PENDING", timeout_s)


async def test_a_held_order_is_canceled_on_the_exchange(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(**HELD)
    order = await (await api.post("/orders", json=LIMIT)).json()
    assert order["status"] == "SUCCESS"
    assert order["cancel_status"] is None
    assert order["cancel_requested_at"] is None

    resp = await api.delete(f"/orders/{order['id']}")
    assert resp.status == 202
    asked = await resp.json()
    assert asked["cancel_status"] == "PENDING"
    assert asked["cancel_requested_at"] is not None

    done = await cancel_final(api, order["id"])
    assert done["cancel_status"] == "CANCELED"
    assert done["status"] == "SUCCESS"  # it was booked; now it is canceled there
    assert done["cancel_error"] is None
    assert (await exchange.ledger())[order["id"]]["status"] == "canceled"
    assert (await exchange.requests())[order["id"]]["cancel"] == 1

    again = await api.delete(f"/orders/{order['id']}")
    assert again.status == 409
    body = await again.json()
    assert "CANCELED" in body["message"]
    assert body["order"]["id"] == order["id"]
    assert (await exchange.requests())[order["id"]]["cancel"] == 1  # nothing more sent
    history = await (await api.get(f"/orders/{order['id']}/history")).json()
    events = [e["event"] for e in history["history"]]
    assert "cancel_requested" in events
    assert "cancel_answered" in events


async def test_repeats_while_pending_answer_the_same_and_ask_nothing_more(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(**HELD)
    order = await (await api.post("/orders", json=MARKET)).json()
    await exchange.configure(outage=True)  # the cancel cannot get through: it stays PENDING
    first = await api.delete(f"/orders/{order['id']}")
    repeats = await asyncio.gather(*(api.delete(f"/orders/{order['id']}") for _ in range(5)))
    assert first.status == 202
    assert all(r.status == 202 for r in repeats)
    asked = {(await r.json())["cancel_requested_at"] for r in (first, *repeats)}
    assert len(asked) == 1  # one request, answered alike
    history = await db.fetchval(
        "SELECT count(*) FROM order_history WHERE order_id = $1::uuid AND event = "
        "'cancel_requested'",
        order["id"],
    )
    assert history == 1
    row = await eventually(lambda: order_row(db, order["id"]), lambda r: r["cancel_attempts"] >= 2)
    assert row["cancel_status"] == "PENDING"  # failed cancel requests confirm nothing
    assert row["cancel_error"] is not None
    await exchange.configure(outage=False)
    done = await cancel_final(api, order["id"])
    assert done["cancel_status"] == "CANCELED"


async def test_two_cancels_at_once_both_answer_the_same(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    # Found by the chaos suite (seed 7: one order's cancel sent twice at once): the DELETE that
    # waited for the other's row lock answered 409 "The order is None on the exchange" with the
    # order as it was before the other's cancel (cancel_status null), not 202 as a repeat does.
    await exchange.configure(**HELD)
    order = await (await api.post("/orders", json=MARKET)).json()
    blocked = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    async with db.transaction():  # both requests wait for this lock, then one for the other
        await db.execute("SELECT 1 FROM orders WHERE id = $1::uuid FOR UPDATE", order["id"])
        both = [asyncio.ensure_future(api.delete(f"/orders/{order['id']}")) for _ in range(2)]
        await eventually(lambda: db.fetchval(blocked), lambda n: n >= 2)
    answers = await asyncio.gather(*both)
    assert [r.status for r in answers] == [202, 202], [await r.text() for r in answers]
    bodies = [await r.json() for r in answers]
    assert {b["cancel_status"] for b in bodies} == {"PENDING"}
    assert len({b["cancel_requested_at"] for b in bodies}) == 1  # one cancel, answered alike
    done = await cancel_final(api, order["id"])
    assert done["cancel_status"] == "CANCELED"
    assert (await exchange.requests())[order["id"]]["cancel"] == 1


async def test_an_order_not_yet_placed_is_canceled_before_placement(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(failure_rate=1.0)  # every placement 503: it keeps retrying
    order = await (await api.post("/orders", json=MARKET)).json()
    assert order["status"] == "IN PROGRESS"
    assert (await api.delete(f"/orders/{order['id']}")).status == 202

    done = await cancel_final(api, order["id"])
    assert done["cancel_status"] == "CANCELED"
    assert done["status"] == "FAILURE"
    assert done["last_error"] == "canceled before placement"
    assert done["failed_at"] is not None
    assert order["id"] not in await exchange.ledger()
    placed = (await exchange.requests())[order["id"]]["place"]
    await asyncio.sleep(0.5)  # retries were due every ~0.1 s: none may follow the cancel
    assert (await exchange.requests())[order["id"]]["place"] == placed
    row = await order_row(db, order["id"])
    assert row["next_attempt_at"] is None
    assert row["lease_owner"] is None


async def test_an_order_the_venue_booked_without_answering_is_found_and_canceled(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    # The venue books the order and never answers: we do not know it holds it. The cancel must
    # not be confirmed on a "not found" sent before the request's deadline, and must cancel it.
    await exchange.configure(timeout_rate=1.0, **HELD)
    order = await (await api.post("/orders", json=LIMIT)).json()
    assert order["status"] == "IN PROGRESS"
    assert (await api.delete(f"/orders/{order['id']}")).status == 202
    await exchange.configure(timeout_rate=0.0)

    done = await cancel_final(api, order["id"])
    assert done["cancel_status"] == "CANCELED"
    assert done["status"] == "SUCCESS"
    held = (await exchange.ledger())[order["id"]]
    assert held["status"] == "canceled"
    assert held["placements"] == 1


async def test_an_order_filled_first_is_refused(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(fill_delay_ms=0)
    order = await (await api.post("/orders", json=MARKET)).json()
    await eventually(exchange.ledger, lambda led: led[order["id"]]["status"] == "filled")
    # No listener runs here: the API does not know it is filled, the exchange refuses.
    assert (await api.delete(f"/orders/{order['id']}")).status == 202
    done = await cancel_final(api, order["id"])
    assert done["cancel_status"] == "REFUSED"
    assert done["cancel_error"] == "the order is filled"
    assert done["status"] == "SUCCESS"


async def test_an_order_known_filled_answers_409_and_asks_nothing(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(**HELD)
    order = await (await api.post("/orders", json=MARKET)).json()
    # What the listener writes when the exchange reports the fill.
    await db.execute(
        "INSERT INTO exchange_order_status (order_id, exchange_order_id, "
        "stock_market_order_status, filled_quantity, quantity, epoch, seq) "
        "VALUES ($1::uuid, 'x', 'filled', 10, 10, 'e', 1)",
        order["id"],
    )
    resp = await api.delete(f"/orders/{order['id']}")
    assert resp.status == 409
    body = await resp.json()
    assert body["message"] == "The order is filled on the exchange: nothing to cancel"
    assert body["order"]["cancel_status"] is None
    assert body["order"]["stock_market_order_status"] == "filled"
    assert (await exchange.requests())[order["id"]].get("cancel", 0) == 0


async def test_a_failed_order_answers_409(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(reject_rate=1.0)
    order = await (await api.post("/orders", json=MARKET)).json()
    assert order["status"] == "FAILURE"
    resp = await api.delete(f"/orders/{order['id']}")
    assert resp.status == 409
    assert (await resp.json())["message"] == (
        "The order failed: the exchange holds nothing to cancel"
    )
    row = await order_row(db, order["id"])
    assert row["cancel_status"] is None
    assert row["next_attempt_at"] is None


async def test_unknown_and_other_accounts_orders_answer_404(
    api: Client, make_api: ApiFactory, db_url: str, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(**HELD)
    order = await (await api.post("/orders", json=MARKET)).json()
    other = await make_api(headers=await auth_headers(db_url, "other"))
    theirs = await other.delete(f"/orders/{order['id']}")
    unknown = await api.delete("/orders/8b5f1d1e-4a9b-4a57-9d3c-1e7a3f0c2b11")
    assert theirs.status == 404
    assert unknown.status == 404
    assert (await theirs.json()) == (await unknown.json()) == {"message": "Order not found"}
    assert (await api.delete("/orders/not-a-uuid")).status == 400
    row = await order_row(db, order["id"])
    assert row["cancel_status"] is None


async def test_a_cancel_during_an_attempt_takes_its_claim(
    make_api: ApiFactory, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    # The synchronous attempt is in flight (the venue decides after 0.3 s) when the cancel comes:
    # that attempt's outcome is no longer written, nothing is placed again, and the cancel finds
    # the order the attempt booked and cancels it.
    api = await make_api(placement_timeout_s=1.5, lease_s=5.0)
    await exchange.configure(latency_ms=300, **HELD)
    posting = asyncio.ensure_future(api.post("/orders", json=LIMIT))
    order_id = await eventually(
        lambda: db.fetchval("SELECT id::text FROM orders ORDER BY created_at DESC LIMIT 1"),
        lambda found: found is not None,
    )
    assert (await api.delete(f"/orders/{order_id}")).status == 202
    posted = await posting
    assert posted.status == 201

    done = await cancel_final(api, order_id)
    assert done["cancel_status"] == "CANCELED"
    assert done["status"] == "SUCCESS"
    held = (await exchange.ledger())[order_id]
    assert held["status"] == "canceled"
    assert held["placements"] == 1


async def test_a_cancel_survives_the_instance_that_took_it(
    db_url: str, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(**HELD)
    settings = fast_settings(db_url, exchange.url)
    first = await ApiProcess.start(settings)
    try:
        async with aiohttp.ClientSession(headers=first.headers) as http:
            async with http.post(f"{first.url}/orders", json=MARKET) as resp:
                order = await resp.json()
            assert order["status"] == "SUCCESS"
            await exchange.configure(outage=True)  # its cancel requests fail: it keeps the work
            async with http.delete(f"{first.url}/orders/{order['id']}") as resp:
                assert resp.status == 202
            await eventually(
                lambda: order_row(db, order["id"]), lambda r: r["cancel_attempts"] >= 1
            )
    finally:
        await first.kill()  # a crash: its lease is not given back
        await first.stop()
    row = await order_row(db, order["id"])
    assert row["cancel_status"] == "PENDING"

    await exchange.configure(outage=False)
    async with await ApiProcess.start(settings) as second:
        done = await eventually(
            lambda: order_row(db, order["id"]), lambda r: r["cancel_status"] != "PENDING"
        )
        assert done["cancel_status"] == "CANCELED"
        assert second.proc.poll() is None
    assert (await exchange.ledger())[order["id"]]["status"] == "canceled"


async def test_a_read_key_may_not_cancel(
    api: Client, make_api: ApiFactory, db_url: str, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(**HELD)
    order = await (await api.post("/orders", json=MARKET)).json()
    reader = await make_api(headers=bearer(await make_key(db_url, "test", Scope.READ)))
    resp = await reader.delete(f"/orders/{order['id']}")
    assert resp.status == 403
    assert (await order_row(db, order["id"]))["cancel_status"] is None
