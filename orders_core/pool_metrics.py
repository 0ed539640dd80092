"""`db_pool_connections{state}`: how the process's asyncpg pools are used, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from orders_core.db import Pool

_POOLS: list[Pool] = []  # asyncpg pools take no weak references; closed ones are dropped


class PoolCollector(Collector):
    """Sums every tracked pool that is still open: connections in use, idle, and the maximum."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        _POOLS[:] = pools = [p for p in _POOLS if not p.is_closing()]
        size = sum(p.get_size() for p in pools)
        idle = sum(p.get_idle_size() for p in pools)
        connections = GaugeMetricFamily(
            "db_pool_connections", "Database pool connections by state", labels=["state"]
        )
        connections.add_metric(["in_use"], size - idle)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily(
            "db_pool_max_connections",
            "Largest number of connections the database pools may open",
            value=sum(p.get_max_size() for p in pools),
        )


def track_pool(pool: Pool) -> None:
    """Count this pool in `db_pool_connections` until it is closed."""
    _POOLS.append(pool)


REGISTRY.register(PoolCollector())
