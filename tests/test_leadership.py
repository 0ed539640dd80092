"""Leadership on a dedicated connection (orders_core.leader): one leader at a time, and a leader
whose connection hangs gives the lead up instead of holding it forever (issue 9, finding 7)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Gauge

from orders_core.db import DB_ERRORS
from orders_core.leader import Leadership

KEY = 0x7465737400000001


def _gauge() -> Gauge:
    return Gauge("leading", "test", registry=CollectorRegistry())


async def test_one_leader_at_a_time_and_the_next_takes_over(db_url: str) -> None:
    first = Leadership("first", db_url, KEY, _gauge(), command_timeout_s=5)
    second = Leadership("second", db_url, KEY, _gauge(), command_timeout_s=5)
    try:
        assert await first.try_lead()
        assert not await second.try_lead()
        first.resign()
        conn = await asyncio.wait_for(second.wait(poll_s=0.05), 10)
        assert second.leading
        assert conn is second.conn
    finally:
        first.resign()
        second.resign()


async def test_a_hanging_statement_on_the_leaders_connection_ends_by_itself(db_url: str) -> None:
    leadership = Leadership("leader", db_url, KEY, _gauge(), command_timeout_s=0.3)
    try:
        conn = await asyncio.wait_for(leadership.wait(poll_s=0.05), 10)
        hanging = asyncio.ensure_future(conn.execute("SELECT pg_sleep(30)"))
        done, _ = await asyncio.wait({hanging}, timeout=20)
        assert hanging in done, "a statement on the leader's connection hung past its bound"
        with pytest.raises(DB_ERRORS):
            hanging.result()
    finally:
        leadership.resign()
