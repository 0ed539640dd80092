"""`db_pool_connections{state}`: how the process's asyncpg pools are used, read at scrape time.

With several workers (orders_core.workers) a scrape reads every worker's values from files, not
this process's pools: each worker then writes its pools' state there every POOL_GAUGES_S."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from orders_core.db import Pool

_POOLS: list[Pool] = []  # asyncpg pools take no weak references; closed ones are dropped
POOL_GAUGES_S = 1.0
# The same families as PoolCollector's, for multiprocess mode only (in no registry: the
# multiprocess collector reads them from their files).
_CONNECTIONS = Gauge(
    "db_pool_connections",
    "Database pool connections by state",
    ["state"],
    registry=None,
    multiprocess_mode="livesum",
)
_MAX = Gauge(
    "db_pool_max_connections",
    "Largest number of connections the database pools may open",
    registry=None,
    multiprocess_mode="livesum",
)


def _usage() -> tuple[int, int, int]:
    """(in use, idle, max) over every tracked pool that is still open."""
    _POOLS[:] = pools = [p for p in _POOLS if not p.is_closing()]
    size = sum(p.get_size() for p in pools)
    idle = sum(p.get_idle_size() for p in pools)
    return size - idle, idle, sum(p.get_max_size() for p in pools)


class PoolCollector(Collector):
    """Sums every tracked pool that is still open: connections in use, idle, and the maximum."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_use, idle, most = _usage()
        connections = GaugeMetricFamily(
            "db_pool_connections", "Database pool connections by state", labels=["state"]
        )
        connections.add_metric(["in_use"], in_use)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily(
            "db_pool_max_connections",
            "Largest number of connections the database pools may open",
            value=most,
        )


async def refresh_pool_gauges() -> None:
    """With several workers: write this one's pool usage for any worker's scrape, until
    cancelled."""
    while True:
        in_use, idle, most = _usage()
        _CONNECTIONS.labels("in_use").set(in_use)
        _CONNECTIONS.labels("idle").set(idle)
        _MAX.set(most)
        await asyncio.sleep(POOL_GAUGES_S)


def track_pool(pool: Pool) -> None:
    """Count this pool in `db_pool_connections` until it is closed."""
    _POOLS.append(pool)


REGISTRY.register(PoolCollector())
