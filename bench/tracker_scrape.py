"""The cost of one tracker /metrics scrape with 1,000,000 orders, next to database baselines.

Fills a fresh database with N orders (generate_series: mostly SUCCESS, some FAILURE, a few
IN PROGRESS), starts the tracker as a process on loopback, and times, in the same run:
  - `SELECT 1` (one round trip: the floor of any scrape that reads the database),
  - the tracker's snapshot query alone,
  - GET /metrics end to end (HTTP, the query, rendering),
  - `count(*)` over orders grouped by status (what the triggers' counters avoid),
and prints each per-call time and its ratio to `SELECT 1`. Usage:

    python -m bench.tracker_scrape [--orders 1000000] [--scrapes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg

from bench.common import fresh_database
from orders_core.db import database_url
from tests.helpers import SystemSettings
from tests.procs import TrackerProcess
from tracker.system_metrics import SNAPSHOT

BENCH_DB = "orders_bench_tracker"
FILL = """
INSERT INTO orders (id, account_id, created_at, type, side, instrument, quantity, status,
                    failed_at, exchange_order_id, next_attempt_at, attempts)
SELECT gen_random_uuid(), gen_random_uuid(), now() - make_interval(secs => g), 'market', 'buy',
       'US0378331005', 1, s.status,
       CASE WHEN s.status = 'FAILURE' THEN now() - make_interval(secs => g) END,
       CASE WHEN s.status = 'SUCCESS' THEN 'x' END,
       CASE WHEN s.status = 'IN PROGRESS' THEN now() END, 1
  FROM generate_series(1, $1) AS g,
       LATERAL (SELECT CASE WHEN g % 100 = 0 THEN 'FAILURE' WHEN g % 1000 = 1 THEN 'IN PROGRESS'
                            ELSE 'SUCCESS' END AS status) AS s"""
COUNT_ALL = "SELECT status, count(*) FROM orders GROUP BY status"


async def _per_call(n: int, one: Callable[[], Awaitable[object]]) -> float:
    for _ in range(min(n, 5)):  # warm up
        await one()
    started = time.perf_counter()
    for _ in range(n):
        await one()
    return (time.perf_counter() - started) / n


async def _prepare(server: str, orders: int) -> str:
    dsn = await fresh_database(server, BENCH_DB)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(FILL, orders, timeout=600)
        await conn.execute("VACUUM ANALYZE orders", timeout=600)
    finally:
        await conn.close()
    return dsn


async def main(orders: int, scrapes: int) -> None:
    server = database_url(SystemSettings())
    print(f"filling {orders:,} orders ...", flush=True)
    dsn = await _prepare(server, orders)
    async with await TrackerProcess.start(SystemSettings(database_url=dsn)) as tracker:
        conn = await asyncpg.connect(dsn)
        async with aiohttp.ClientSession() as http:

            async def scrape() -> None:
                async with http.get(f"{tracker.url}/metrics") as resp:
                    await resp.read()

            results = {
                "SELECT 1": await _per_call(scrapes, lambda: conn.fetchval("SELECT 1")),
                "snapshot query": await _per_call(scrapes, lambda: conn.fetch(SNAPSHOT)),
                "GET /metrics": await _per_call(scrapes, scrape),
                "count(*) by status": await _per_call(max(scrapes // 20, 3),
                                                     lambda: conn.fetch(COUNT_ALL)),
            }  # fmt: skip
        await conn.close()
    floor = results["SELECT 1"]
    print(f"\n{orders:,} orders, {scrapes} scrapes")
    for name, seconds in results.items():
        print(f"  {name:<20} {seconds * 1000:9.3f} ms   {seconds / floor:8.1f} x SELECT 1")
    ratio = results["count(*) by status"] / results["GET /metrics"]
    print(f"  a scrape costs 1/{ratio:.0f} of one count(*) over the table")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.scrapes))


if __name__ == "__main__":
    cli()
