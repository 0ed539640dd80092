"""A gap in the stream is replayed from the stream, not papered over by a REST resync (issue 9,
finding 8): the resync only knows each order's latest state, so its intermediate events (a
partial fill, say) would never reach exchange_events."""

from __future__ import annotations

import asyncpg

from tests.api_fixtures import ApiFactory
from tests.procs import ListenerProcess
from tests.sim import SimProcess
from tests.test_listener import LIFECYCLE, assert_equal_to_ledger, listener_settings, place


async def test_events_lost_on_the_way_are_replayed_and_every_one_is_stored(
    make_api: ApiFactory, exchange: SimProcess, db_url: str, db: asyncpg.Connection
) -> None:
    await exchange.configure(**LIFECYCLE, lose_rate=0.02)
    api = await make_api()
    async with await ListenerProcess.start(listener_settings(db_url, exchange)) as listener:
        ids = await place(api, 300)
        await assert_equal_to_ledger(db, exchange, ids)
        assert await listener.metric("exchange_stream_replays_total") >= 1  # gaps happened
        assert await listener.metric('exchange_stream_resyncs_total{reason="gap"}') == 0
    last = await db.fetchval("SELECT max(seq) FROM exchange_events")
    rows = await db.fetch("SELECT seq, source FROM exchange_events ORDER BY seq")
    assert [r["seq"] for r in rows] == list(range(1, last + 1))  # none missing
    assert {r["source"] for r in rows} == {"stream"}


async def test_a_gap_the_stream_cannot_fill_ends_in_a_resync(
    make_api: ApiFactory, exchange: SimProcess, db_url: str, db: asyncpg.Connection
) -> None:
    """Every live event lost, every replay too: the listener falls back to REST and still ends
    equal to the exchange."""
    await exchange.configure(**LIFECYCLE, lose_rate=1.0)
    api = await make_api()
    settings = listener_settings(db_url, exchange).model_copy(
        update={"listener_gap_timeout_s": 0.3}
    )
    async with await ListenerProcess.start(settings) as listener:
        ids = await place(api, 20)
        await assert_equal_to_ledger(db, exchange, ids)
        assert await listener.metric('exchange_stream_resyncs_total{reason="gap"}') >= 1
