"""The order tells its story (issue 13): why, when and after how many attempts it failed, and
its history: every placement request and answer, every lookup, the exchange's status changes."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from tests.api_fixtures import ApiFactory
from tests.helpers import MARKET, bearer, final_row, make_key
from tests.sim import SimProcess

EVENT = """
INSERT INTO exchange_events (epoch, seq, order_id, exchange_order_id, status, filled_quantity,
                             quantity, exchange_ts, source)
VALUES ('e1', $1, $2::uuid, 'X-1', $3, $4, 10, now(), 'stream')"""


async def test_a_failed_order_says_why_when_and_after_how_many_attempts(
    make_api: ApiFactory, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    api = await make_api()
    await exchange.configure(failure_rate=1.0)
    created = await (await api.post("/orders", json=MARKET)).json()
    await final_row(db, created["id"])

    order = await (await api.get(f"/orders/{created['id']}")).json()
    assert order["status"] == "FAILURE"
    assert order["attempts"] == 6
    assert "Connection not available" in order["last_error"]
    failed_at = datetime.fromisoformat(order["failed_at"])
    assert datetime.fromisoformat(order["created_at"]) < failed_at <= datetime.now(UTC)
    assert datetime.fromisoformat(order["updated_at"]) >= failed_at

    resp = await api.get(f"/orders/{created['id']}/history")
    assert resp.status == 200
    history = (await resp.json())["history"]
    assert history[0]["event"] == "created"
    sent = [h["attempt"] for h in history if h["event"] == "placement_sent"]
    answered = [(h["attempt"], h["outcome"]) for h in history if h["event"] == "placement_answered"]
    assert sent == [1, 2, 3, 4, 5, 6]
    assert answered == [(n, "unknown") for n in range(1, 7)]  # a 503 may have booked: unknown
    assert all("503" in h["detail"] for h in history if h["event"] == "placement_answered")
    lookups = [h["outcome"] for h in history if h["event"] == "lookup"]
    assert lookups  # FAILURE only after the exchange confirmed it holds nothing
    assert lookups[-1] == "absent"
    times = [datetime.fromisoformat(h["at"]) for h in history]
    assert times == sorted(times)


async def test_the_history_shows_the_exchanges_status_changes_and_is_the_accounts_own(
    make_api: ApiFactory, exchange: SimProcess, db: asyncpg.Connection, db_url: str
) -> None:
    api = await make_api()
    order = await (await api.post("/orders", json=MARKET)).json()
    await db.execute(EVENT, 1, order["id"], "new", 0)
    await db.execute(EVENT, 2, order["id"], "filled", 10)
    history = (await (await api.get(f"/orders/{order['id']}/history")).json())["history"]
    assert [h["event"] for h in history] == [
        "created", "placement_sent", "placement_answered", "exchange_status", "exchange_status",
    ]  # fmt: skip
    assert history[2]["outcome"] == "accepted"
    assert [h["outcome"] for h in history[3:]] == ["new", "filled"]

    stranger = await make_api(headers=bearer(await make_key(db_url, "stranger")))
    assert (await stranger.get(f"/orders/{order['id']}/history")).status == 404
