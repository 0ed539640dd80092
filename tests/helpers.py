"""Small tools the tests share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from exchange_listener.settings import ListenerSettings
from orders_api.settings import ApiSettings
from orders_core import apikeys
from orders_core.apikeys import Scope
from tracker.settings import TrackerSettings

T = TypeVar("T")

MARKET = {"type": "market", "side": "buy", "instrument": "US0378331005", "quantity": 10}
LIMIT = {
    "type": "limit",
    "side": "sell",
    "instrument": "DE0007164600",
    "limit_price": "123.45",
    "quantity": 5,
}


class SystemSettings(ApiSettings, ListenerSettings, TrackerSettings):
    """Every service's settings in one object, for tests that start several services alike
    (each service reads only its own from the environment)."""


def fast_settings(db_url: str, exchange_url: str, **overrides: Any) -> SystemSettings:
    """Settings for tests: the placement rule at test speed, same shape as in production."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "exchange_url": exchange_url,
        "placement_timeout_s": 0.5,
        "retry_base_s": 0.05,
        "retry_cap_s": 0.2,
        "clock_skew_s": 0.1,
        "lease_s": 3.5,
        "db_acquire_timeout_s": 0.5,
        "db_command_timeout_s": 2.0,
        "sweep_interval_s": 0.05,
        "db_pool_min_size": 1,
        "db_pool_max_size": 10,
        # Tests send from one key as fast as the API answers; tests/test_limits.py sets its own.
        "rate_limit_per_s": 1e9,
        "rate_limit_burst": 10**9,
    }
    values.update(overrides)
    return SystemSettings(**values)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout_s: float = 30.0,
) -> T:
    """Poll `probe` until `done(value)`; fail with the last value after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout_s}s; last value: {value!r}")
        await asyncio.sleep(0.05)


async def order_row(db: asyncpg.Connection, order_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM orders WHERE id = $1::uuid", order_id)
    assert row is not None
    return row


async def final_row(
    db: asyncpg.Connection, order_id: str, timeout_s: float = 30.0
) -> asyncpg.Record:
    """The order's row once it is SUCCESS or FAILURE."""
    return await eventually(
        lambda: order_row(db, order_id), lambda r: r["status"] != "IN PROGRESS", timeout_s
    )


async def make_key(dsn: str, account: str = "test", scope: Scope = Scope.TRADE) -> str:
    """A new API key of `account` (made if new) in the database at `dsn`."""
    conn = await asyncpg.connect(dsn)
    try:
        return (await apikeys.create(conn, account, scope)).key
    finally:
        await conn.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def auth_headers(dsn: str, account: str = "test") -> dict[str, str]:
    """Headers that let a client trade for `account`."""
    return bearer(await make_key(dsn, account))
