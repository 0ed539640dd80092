"""The order lifecycle (SPEC §3): market orders fill, sometimes in parts, within `fill_delay_ms`;
limit orders fill the same way or expire after `limit_expiry_ms`.

Each order's whole plan is drawn from the seeded generator when it is booked, so the sequence of
decisions repeats with `seed` whatever the timing; one background task carries the plans out.
"""

from __future__ import annotations

import asyncio
import heapq
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from exchange_sim.book import Book, Order
from exchange_sim.faults import Faults

Action = Literal["fill", "expire"]


@dataclass(order=True)
class Step:
    due: float
    n: int
    order: Order = field(compare=False)
    action: Action = field(compare=False)
    quantity: int = field(compare=False, default=0)


def market_price(instrument: str) -> str:
    """A deterministic price per instrument, 10.00 to 99.99."""
    cents = 1000 + sum(instrument.encode()) * 7919 % 9000
    return str(Decimal(cents) / 100)


class Lifecycle:
    def __init__(self, book: Book, faults: Faults) -> None:
        self._book = book
        self._faults = faults
        self._steps: list[Step] = []
        self._count = 0
        self._wake = asyncio.Event()

    def schedule(self, order: Order) -> None:
        """Draw the order's plan now (nothing when the `lifecycle` knob is off)."""
        config = self._faults.config
        if not config.lifecycle:
            return
        now = asyncio.get_running_loop().time()
        if order.type == "limit" and not self._faults.chance(config.limit_fill_rate):
            self._push(Step(now + config.limit_expiry_ms / 1000, 0, order, "expire"))
            return
        parts = self._faults.split(order.quantity, config.partial_fill_rate)
        delay_s = config.fill_delay_ms / 1000
        for i, quantity in enumerate(parts, start=1):
            self._push(Step(now + delay_s * i / len(parts), 0, order, "fill", quantity))

    def clear(self) -> None:
        self._steps.clear()

    def _push(self, step: Step) -> None:
        self._count += 1
        step.n = self._count  # steps due at once run in the order they were planned
        heapq.heappush(self._steps, step)
        self._wake.set()

    def _apply(self, step: Step) -> None:
        order = step.order
        if order.terminal:  # canceled meanwhile: the rest of its plan lapses
            return
        if step.action == "expire":
            self._book.expire(order)
        else:
            price = order.limit_price or market_price(order.instrument)
            self._book.fill(order, step.quantity, price)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while self._steps and self._steps[0].due <= now:
                self._apply(heapq.heappop(self._steps))
            self._wake.clear()
            wait_s = self._steps[0].due - now if self._steps else None
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)
