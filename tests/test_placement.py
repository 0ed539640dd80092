"""The placement rule against a misbehaving exchange (SPEC §2): retries, unknown outcomes,
deadlines, and FAILURE only when the exchange confirms it holds nothing."""

from __future__ import annotations

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.api_fixtures import ApiFactory
from tests.helpers import LIMIT, MARKET, eventually, final_row, order_row
from tests.sim import SimProcess
from tests.tcp_proxy import VenueLink

Client = TestClient[web.Request, web.Application]


async def test_failing_exchange_ends_in_failure_after_one_plus_five_attempts(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(failure_rate=1.0)
    resp = await api.post("/orders", json=MARKET)
    assert resp.status == 201
    order = await resp.json()
    assert order["status"] == "IN PROGRESS"

    row = await final_row(db, order["id"])
    assert row["status"] == "FAILURE"
    assert row["attempts"] == 6
    assert "Connection not available" in row["last_error"]
    assert row["failed_at"] is not None
    counts = (await exchange.requests())[order["id"]]
    assert counts["place"] == 6
    assert counts["lookup"] >= 1  # FAILURE only after the exchange confirmed it holds nothing
    assert order["id"] not in await exchange.ledger()
    got = await (await api.get(f"/orders/{order['id']}")).json()
    assert got["status"] == "FAILURE"


async def test_exchange_failing_three_calls_then_recovering_places_once(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(fail_next=3)
    order = await (await api.post("/orders", json=LIMIT)).json()
    assert order["status"] == "IN PROGRESS"

    row = await final_row(db, order["id"])
    assert row["status"] == "SUCCESS"
    assert row["attempts"] == 4
    assert (await exchange.requests())[order["id"]]["place"] == 4
    assert (await exchange.ledger())[order["id"]]["placements"] == 1


async def test_timeout_after_accepting_is_looked_up_not_placed_again(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    # The venue would book a second order under the same id: only our lookup prevents it.
    await exchange.configure(timeout_rate=1.0, accept_duplicate_ids=True)
    order = await (await api.post("/orders", json=MARKET)).json()
    assert order["status"] == "IN PROGRESS"
    await exchange.configure(timeout_rate=0.0)

    row = await final_row(db, order["id"])
    assert row["status"] == "SUCCESS"
    counts = (await exchange.requests())[order["id"]]
    assert counts["place"] == 1
    assert counts["lookup"] >= 1
    assert (await exchange.ledger())[order["id"]]["placements"] == 1


async def test_slow_venue_cannot_book_after_the_deadline(
    make_api: ApiFactory, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    # The first request reaches its decision 2.5 s after it was sent, long after our 0.5 s
    # timeout and after the retry has placed the order again. Only the deadline stops it booking.
    # Over the link, the exchange does not learn that we stopped waiting: it does decide.
    link = VenueLink(exchange.url)
    await link.start()
    try:
        api = await make_api(exchange_url=link.url)
        await exchange.configure(latency_ms=2500, accept_duplicate_ids=True)
        order = await (await api.post("/orders", json=MARKET)).json()
        assert order["status"] == "IN PROGRESS"
        await exchange.configure(latency_ms=0)

        row = await final_row(db, order["id"])
        assert row["status"] == "SUCCESS"
        assert (await exchange.requests())[order["id"]]["place"] == 2
        # The first request has reached its (late) decision once the exchange holds no request.
        await eventually(exchange.stats, lambda stats: stats["in_flight"] == 0, timeout_s=10)
        assert (await exchange.ledger())[order["id"]]["placements"] == 1
    finally:
        await link.stop()


async def test_rejected_order_fails_at_once_and_is_not_retried(
    api: Client, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    await exchange.configure(reject_rate=1.0)
    order = await (await api.post("/orders", json=LIMIT)).json()
    assert order["status"] == "FAILURE"
    row = await final_row(db, order["id"])
    assert row["attempts"] == 1
    assert "rejected" in row["last_error"]
    await exchange.configure(reject_rate=0.0)
    await sweeps_ran(api, exchange, db, 3)  # several sweeps: nothing may retry it
    assert (await exchange.requests())[order["id"]]["place"] == 1
    assert (await order_row(db, order["id"]))["attempts"] == 1


async def test_outage_keeps_order_in_progress_until_the_exchange_answers(
    make_api: ApiFactory, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    api = await make_api(max_retries=1)
    await exchange.configure(outage=True)
    order = await (await api.post("/orders", json=MARKET)).json()
    assert order["status"] == "IN PROGRESS"
    # Attempts are used up, but while lookups fail nothing can confirm absence: no FAILURE. A
    # lookup starts only once the one before it is recorded: at the third, two have been.

    async def progress() -> tuple[int, str]:
        lookups: int = (await exchange.requests())[order["id"]]["lookup"]
        return lookups, (await order_row(db, order["id"]))["status"]

    _, status = await eventually(progress, lambda p: p[0] >= 3 or p[1] != "IN PROGRESS")
    assert status == "IN PROGRESS"
    assert (await exchange.requests())[order["id"]]["lookup"] >= 2
    assert (await exchange.requests())[order["id"]]["place"] == 1
    await exchange.configure(outage=False, failure_rate=1.0)
    row = await final_row(db, order["id"])
    assert row["status"] == "FAILURE"
    assert (await exchange.requests())[order["id"]]["place"] == 2


async def test_exchange_down_answers_201_in_progress(
    make_api: ApiFactory, db: asyncpg.Connection
) -> None:
    api = await make_api(exchange_url="http://127.0.0.1:9")  # nothing listens on port 9
    resp = await api.post("/orders", json=MARKET)
    assert resp.status == 201
    order = await resp.json()
    assert order["status"] == "IN PROGRESS"
    row = await order_row(db, order["id"])
    assert row["last_error"].startswith("exchange connection error")


async def sweeps_ran(
    api: Client, exchange: SimProcess, db: asyncpg.Connection, sweeps: int
) -> None:
    """Return once the retry sweep has claimed work `sweeps` times since the call: an order whose
    first `sweeps` placement requests fail is placed only by that many claims of the sweep. Every
    order due meanwhile had the same chances to be claimed."""
    await exchange.configure(fail_next=sweeps)
    probe = await (await api.post("/orders", json=MARKET)).json()
    row = await final_row(db, probe["id"])
    assert (row["status"], row["attempts"]) == ("SUCCESS", sweeps + 1)
