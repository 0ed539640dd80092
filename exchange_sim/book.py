"""The exchange's order book and ledger: every order it holds, by client order id. Pure Python.

Every change of an order goes through `Book`, which records it in the event log of the stream.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exchange_sim.events import Event, EventLog
from exchange_sim.schemas import PlaceOrder

TERMINAL = frozenset({"filled", "canceled", "rejected", "expired"})


@dataclass
class Order:
    exchange_order_id: str
    client_order_id: str
    instrument: str
    side: str
    type: str
    limit_price: str | None
    quantity: int
    valid_until: datetime
    created_at: datetime
    status: str = "new"
    filled_quantity: int = 0
    avg_price: str | None = None
    seq: int = 0  # the seq of the order's latest event

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def as_json(self) -> dict[str, Any]:
        return {
            "exchange_order_id": self.exchange_order_id,
            "client_order_id": self.client_order_id,
            "instrument": self.instrument,
            "side": self.side,
            "type": self.type,
            "limit_price": self.limit_price,
            "quantity": self.quantity,
            "status": self.status,
            "filled_quantity": self.filled_quantity,
            "avg_price": self.avg_price,
            "valid_until": self.valid_until.isoformat(),
            "created_at": self.created_at.isoformat(),
        }

    def report(self) -> Event:
        """The order's current state as an execution report, without its `seq`."""
        return {
            "exchange_order_id": self.exchange_order_id,
            "client_order_id": self.client_order_id,
            "status": self.status,
            "filled_quantity": self.filled_quantity,
            "quantity": self.quantity,
            "avg_price": self.avg_price,
            "ts": datetime.now(UTC).isoformat(),
        }


class Book:
    """Orders by client order id (the newest one when an id was booked twice) and placements."""

    def __init__(self, events: EventLog) -> None:
        self.events = events
        self._by_client_id: dict[str, Order] = {}
        self._placements: dict[str, int] = {}

    def get(self, client_order_id: str) -> Order | None:
        return self._by_client_id.get(client_order_id)

    def book(self, request: PlaceOrder, now: datetime) -> Order:
        order = Order(
            exchange_order_id=str(uuid.uuid4()),
            client_order_id=request.client_order_id,
            instrument=request.instrument,
            side=request.side,
            type=request.type,
            limit_price=request.limit_price,
            quantity=request.quantity,
            valid_until=request.valid_until,
            created_at=now,
        )
        self._by_client_id[order.client_order_id] = order
        self._placements[order.client_order_id] = self.placements(order.client_order_id) + 1
        self._changed(order)
        return order

    def cancel(self, order: Order) -> None:
        order.status = "canceled"
        self._changed(order)

    def expire(self, order: Order) -> None:
        order.status = "expired"
        self._changed(order)

    def fill(self, order: Order, quantity: int, price: str) -> None:
        """Fill `quantity` more at `price` (every fill of an order is at the same price)."""
        order.filled_quantity = min(order.quantity, order.filled_quantity + quantity)
        order.avg_price = price
        order.status = "filled" if order.filled_quantity == order.quantity else "partially_filled"
        self._changed(order)

    def _changed(self, order: Order) -> None:
        order.seq = self.events.append(order.report())["seq"]

    def updated_after(self, seq: int) -> list[Order]:
        """Orders whose latest event is after `seq`, oldest change first."""
        changed = [order for order in self._by_client_id.values() if order.seq > seq]
        return sorted(changed, key=lambda order: order.seq)

    def placements(self, client_order_id: str) -> int:
        return self._placements.get(client_order_id, 0)

    def ledger(self) -> list[dict[str, Any]]:
        return [
            {
                "client_order_id": order.client_order_id,
                "exchange_order_id": order.exchange_order_id,
                "status": order.status,
                "filled_quantity": order.filled_quantity,
                "placements": self.placements(order.client_order_id),
            }
            for order in self._by_client_id.values()
        ]

    def clear(self) -> None:
        self._by_client_id.clear()
        self._placements.clear()
        self.events.reset()
