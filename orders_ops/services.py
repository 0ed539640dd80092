"""Every long-running process of the system: its console script, module, port and health URL.

Each port is read from that service's own settings class, and only when asked for, so a bad
variable of one service never stops another's health check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exchange_listener.settings import ListenerSettings
from exchange_sim.config import SimSettings
from orders_api.settings import ApiSettings
from tracker.settings import TrackerSettings


@dataclass(frozen=True)
class Service:
    name: str  # its console script
    module: str
    port_of: Callable[[], int]
    health: str
    note: str = ""

    @property
    def port(self) -> int:
        return self.port_of()


# In start order; they stop in reverse.
SERVICES = (
    Service("exchange-sim", "exchange_sim", lambda: SimSettings().port, "/health"),
    Service(
        "exchange-listener",
        "exchange_listener",
        lambda: ListenerSettings().listener_port,
        "/health/ready",
        "the exchange's status stream into PostgreSQL; metrics at /metrics",
    ),
    Service(
        "tracker",
        "tracker",
        lambda: TrackerSettings().tracker_port,
        "/health/ready",
        "failures at /failures, a page at /, metrics at /metrics",
    ),
    Service(
        "orders-api",
        "orders_api",
        lambda: ApiSettings().orders_api_port,
        "/health/ready",
        "POST /orders, docs at /docs, metrics at /metrics",
    ),
)
BY_NAME = {service.name: service for service in SERVICES}
