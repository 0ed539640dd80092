"""The tracker's acceptance test with real processes: 50 orders fail at an exchange that fails
every placement; each is reported exactly once in the log, to a real webhook receiver and in
/failures, also across a restart and with two trackers running (SPEC §5)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from tests.helpers import LIMIT, MARKET, eventually, fast_settings
from tests.procs import ApiProcess, TrackerProcess
from tests.sim import SimProcess
from tests.tcp_proxy import DbProxy
from tests.tracker_procs import WebhookReceiver

ORDERS = 50
ONE_MORE_FAILURE = """
INSERT INTO orders (id, account_id, type, side, instrument, quantity, status, failed_at, attempts,
                    last_error)
VALUES (gen_random_uuid(), gen_random_uuid(), 'market', 'buy', 'US0378331005', 1, 'FAILURE',
        clock_timestamp(), 6, 'exchange 503: Connection not available')
RETURNING id"""


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = WebhookReceiver(fail_first_every=5)
    await hook.start()
    yield hook
    await hook.stop()


async def _post(api: ApiProcess, count: int) -> list[str]:
    url = api.url
    async with aiohttp.ClientSession(headers=api.headers) as http:

        async def one(i: int) -> str:
            async with http.post(f"{url}/orders", json=MARKET if i % 2 else LIMIT) as resp:
                assert resp.status == 201
                order: dict[str, str] = await resp.json()
                return order["id"]

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _failures(url: str) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    async with aiohttp.ClientSession() as http:
        while True:
            params = {"limit": "7"} | ({"after": cursor} if cursor else {})
            async with http.get(f"{url}/failures", params=params) as resp:
                assert resp.status == 200
                page = await resp.json()
            ids += [f["id"] for f in page["failures"]]
            cursor = page["next"]
            if cursor is None:
                return ids


async def test_fifty_failures_reported_exactly_once_across_restart_and_two_trackers(
    db_url: str, exchange: SimProcess, db: asyncpg.Connection, receiver: WebhookReceiver
) -> None:
    await exchange.configure(failure_rate=1.0)
    settings = fast_settings(
        db_url,
        exchange.url,
        tracker_webhook_url=receiver.url,
        tracker_poll_interval_s=0.1,
        tracker_webhook_retry_base_s=0.1,
        tracker_webhook_retry_cap_s=0.5,
    )
    async with (
        await ApiProcess.start(settings) as api,
        await TrackerProcess.start(settings) as first,
        await TrackerProcess.start(settings) as second,
    ):
        ids = await _post(api, ORDERS)
        await eventually(
            lambda: db.fetchval("SELECT count(*) FROM orders WHERE status = 'FAILURE'"),
            lambda n: n == ORDERS,
            timeout_s=60,
        )
        await eventually(lambda: asyncio.sleep(0, len(receiver.order_ids())), lambda n: n == ORDERS)
        both = first.reported() + second.reported()
        assert Counter(both) == Counter(ids)  # each once, from whichever tracker led
        assert not (first.reported() and second.reported())  # one led
        assert receiver.order_ids() == Counter(ids)
        assert len(receiver.posts) == ORDERS + ORDERS // 5  # every 5th key was refused once
        assert sorted(await _failures(first.url)) == sorted(ids)
        assert sorted(await _failures(second.url)) == sorted(ids)
        line = next(x for x in first.lines() + second.lines() if x.get("order_id") == ids[0])
        assert line["level"] == "WARNING"
        assert line["attempts"] >= 1
        assert line["last_error"]

    async with await TrackerProcess.start(settings) as restarted:
        # Restarted, it leads (nobody else runs), and its cycles find nothing new: the proof that
        # they ran is one more failure, which they report (and deliver) alone.
        await eventually(lambda: _leading(restarted.url), bool, timeout_s=20)
        later = str(await db.fetchval(ONE_MORE_FAILURE))
        await eventually(lambda: asyncio.sleep(0, receiver.order_ids()[later]), lambda n: n == 1)
        assert restarted.reported() == [later]
    assert receiver.order_ids() == Counter([*ids, later])


async def _leading(url: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        return "tracker_leader 1.0" in await resp.text()


async def test_failures_during_a_database_outage_are_reported_once_it_is_back(
    db_url: str, exchange: SimProcess, db: asyncpg.Connection, receiver: WebhookReceiver
) -> None:
    await exchange.configure(failure_rate=1.0)
    proxy = DbProxy(db_url)
    await proxy.start()
    tracker_settings = fast_settings(
        proxy.dsn, exchange.url, tracker_webhook_url=receiver.url, tracker_poll_interval_s=0.1,
        tracker_webhook_retry_base_s=0.1, tracker_webhook_retry_cap_s=0.5, db_command_timeout_s=2.0,
    )  # fmt: skip
    api_settings = fast_settings(db_url, exchange.url)  # the API keeps its database
    try:
        # Both wait for their start without blocking this loop, on which the proxy serves.
        async with (
            await ApiProcess.start(api_settings) as api,
            await TrackerProcess.start(tracker_settings) as tracker,
        ):
            await proxy.cut()
            ids = await _post(api, 10)
            await eventually(
                lambda: db.fetchval("SELECT count(*) FROM orders WHERE status = 'FAILURE'"),
                lambda n: n == 10,
                timeout_s=60,
            )
            assert tracker.reported() == []
            await proxy.start()
            await eventually(
                lambda: asyncio.sleep(0, sorted(tracker.reported())), lambda r: r == sorted(ids)
            )
            await eventually(
                lambda: asyncio.sleep(0, receiver.order_ids()), lambda c: set(c) == set(ids)
            )
            assert all(n == 1 for n in receiver.order_ids().values())
    finally:
        await proxy.cut()
