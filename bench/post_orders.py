"""POST /orders throughput next to PostgreSQL's own limit for the minimal SQL per order.

Runs, in one go and against the same PostgreSQL server:
  1. the baseline: one INSERT of the order row per order (the least any design must write),
     from an asyncpg pool, at the same concurrency;
  2. the real thing: orders-api and exchange-sim as processes on loopback, N orders POSTed at the
     same concurrency, each stored, placed and its outcome recorded;
and prints both rates and their ratio. Usage:

    python -m bench.post_orders [--orders 3000] [--concurrency 64] [--latency-ms 0] [--workers 1]

With --latency-ms 500 (the original exchange) the API's rate is bounded by concurrency / 0.5 s:
what it shows then is that the HTTP connection pool does not throttle below that.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg
import psutil

from bench.common import fresh_database
from orders_core.db import database_url
from tests.helpers import SystemSettings
from tests.procs import ApiProcess
from tests.sim import SimProcess

BENCH_DB = "orders_bench"
ORDER = {"type": "limit", "side": "buy", "instrument": "US0378331005", "limit_price": "1.50",
         "quantity": 1}  # fmt: skip
# The least any design must write per order: one row, with the same columns, checks and indexes
# as `orders` but none of our triggers (LIKE ... INCLUDING ALL copies no triggers).
BASELINE_TABLE = "CREATE TABLE orders_baseline (LIKE orders INCLUDING ALL)"
MINIMAL_INSERT = (
    "INSERT INTO orders_baseline (id, account_id, type, side, instrument, limit_price, quantity) "
    "VALUES ($1, $2, 'limit', 'buy', 'US0378331005', 1.50, 1)"
)
ACCOUNT = uuid.uuid4()


async def _run(count: int, concurrency: int, one: Callable[[], Awaitable[None]]) -> float:
    """Orders per second for `count` calls of `one`, `concurrency` at a time."""
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            await one()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """As in the service's pool: no reset query (one round trip) between two uses."""


async def baseline(dsn: str, count: int, concurrency: int) -> float:
    connections = min(concurrency, 50)  # PostgreSQL's max_connections is 100 by default
    async with asyncpg.create_pool(
        dsn, min_size=connections, max_size=connections, reset=_no_reset
    ) as pool:
        await pool.execute(BASELINE_TABLE)

        async def one() -> None:
            await pool.execute(MINIMAL_INSERT, uuid.uuid4(), ACCOUNT)

        return await _run(count, concurrency, one)


async def through_api(api: ApiProcess, count: int, concurrency: int) -> float:
    url = api.url
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=api.headers) as http:

        async def one() -> None:
            async with http.post(f"{url}/orders", json=ORDER) as resp:
                assert resp.status == 201, await resp.text()

        return await _run(count, concurrency, one)


def _cpu(pid: int) -> float:
    """CPU seconds of a process and its children (ORDERS_API_WORKERS > 1: the workers)."""
    process = psutil.Process(pid)
    total = 0.0
    for p in (process, *process.children(recursive=True)):
        times = p.cpu_times()
        total += times.user + times.system
    return total


async def main(count: int, concurrency: int, latency_ms: int, workers: int) -> None:
    server = database_url(SystemSettings())
    dsn = await fresh_database(server, BENCH_DB)
    pg_rate = await baseline(dsn, count, concurrency)
    dsn = await fresh_database(server, BENCH_DB)
    env = {
        "EXCHANGE_SIM_LATENCY_MS": str(latency_ms),
        "EXCHANGE_SIM_FAILURE_RATE": "0",
        "EXCHANGE_SIM_LIFECYCLE": "false",  # fills and their stream are not what is measured
    }
    async with SimProcess.start_async(env) as sim:
        # One key sends everything: its rate limit (SPEC 7) lifted, the service's rate is measured.
        settings = SystemSettings(
            database_url=dsn,
            exchange_url=sim.url,
            log_level="WARNING",
            rate_limit_per_s=1e9,
            rate_limit_burst=10**9,
        )
        async with await ApiProcess.start(settings, ORDERS_API_WORKERS=str(workers)) as api:
            await through_api(api, min(count, 200), concurrency)  # warm-up
            cpu_before = _cpu(api.proc.pid), _cpu(sim.proc.pid)
            api_rate = await through_api(api, count, concurrency)
            cpu_api, cpu_sim = (
                _cpu(p) - b for p, b in zip((api.proc.pid, sim.proc.pid), cpu_before, strict=True)
            )
    print(
        f"orders={count} concurrency={concurrency} exchange latency={latency_ms} ms "
        f"API workers={workers}"
    )
    print(f"  PostgreSQL, one INSERT per order : {pg_rate:8.0f} orders/s")
    print(f"  POST /orders (store, place, record): {api_rate:8.0f} orders/s")
    print(f"  ratio API / PostgreSQL minimal    : {api_rate / pg_rate:8.2f}")
    print(
        f"  CPU per order: orders-api {cpu_api / count * 1e3:.2f} ms, "
        f"exchange-sim {cpu_sim / count * 1e3:.2f} ms (2 cores shared with the load generator)"
    )
    if latency_ms:
        bound = concurrency / (latency_ms / 1000)
        print(f"  ratio API / concurrency-bound ({bound:.0f}/s): {api_rate / bound:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="ORDERS_API_WORKERS")
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency, args.latency_ms, args.workers))
