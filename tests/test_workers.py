"""ORDERS_API_WORKERS (issue 14): API processes sharing one port, their metrics summed, a dead
worker started again, a clean stop of them all."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import asyncpg
import psutil

from tests.helpers import MARKET, eventually, fast_settings
from tests.procs import ApiProcess
from tests.sim import SimProcess, wait_exit

ORDERS = 40


def _workers(api: ApiProcess) -> list[psutil.Process]:
    return [p for p in psutil.Process(api.proc.pid).children() if p.is_running()]


async def _created(http: aiohttp.ClientSession, api: ApiProcess) -> float:
    async with http.get(f"{api.url}/metrics") as resp:
        text = await resp.text()
    found = re.search(r"^orders_created_total (\S+)$", text, re.MULTILINE)
    assert found, text[:2000]
    return float(found.group(1))


async def test_workers_share_the_port_and_their_metrics(
    db_url: str, exchange: SimProcess, db: asyncpg.Connection
) -> None:
    api = await ApiProcess.start(fast_settings(db_url, exchange.url), ORDERS_API_WORKERS="2")
    try:
        first = _workers(api)
        assert len(first) == 2
        # A new connection per request: the kernel spreads them over both workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(headers=api.headers, connector=connector) as http:
            answers = await asyncio.gather(
                *(http.post(f"{api.url}/orders", json=MARKET) for _ in range(ORDERS))
            )
            assert [a.status for a in answers] == [201] * ORDERS
            # Whichever worker answers the scrape counts every worker's orders.
            seen = {await _created(http, api) for _ in range(10)}
            assert seen == {ORDERS}

            first[0].kill()  # a worker dies: it is started again, and the port keeps answering
            await eventually(
                lambda: asyncio.sleep(0, _workers(api)),
                lambda ws: len(ws) == 2 and first[0].pid not in {w.pid for w in ws},
            )
            await eventually(lambda: http.get(f"{api.url}/health/ready"), lambda r: r.status == 200)
            async with http.post(f"{api.url}/orders", json=MARKET) as resp:
                assert resp.status == 201
        assert await db.fetchval("SELECT count(*) FROM orders") == ORDERS + 1
        workers = _workers(api)
        api.proc.terminate()  # SIGTERM to the supervisor: every worker stops cleanly
        assert await wait_exit(api.proc, 30) == 0
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    finally:
        await api.stop()
