"""What the exchange has been asked: requests per client order id, and overlapping requests
(two requests on one id handled at the same time), so tests can prove who did what and when."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

Kind = Literal["place", "lookup", "cancel"]
KINDS: tuple[Kind, ...] = ("place", "lookup", "cancel")


class Traffic:
    def __init__(self) -> None:
        self._counts: dict[str, dict[Kind, int]] = {}
        self._in_flight: dict[str, int] = {}
        self._overlapping = 0
        self._max_in_flight = 0

    @contextmanager
    def track(self, client_order_id: str | None, kind: Kind) -> Iterator[None]:
        """Count a request from its arrival and hold it in flight until its handler ends,
        however it ends (answered, failed, or cancelled because the client went away)."""
        if client_order_id is None:
            yield
            return
        counts = self._counts.setdefault(client_order_id, dict.fromkeys(KINDS, 0))
        counts[kind] += 1
        in_flight = self._in_flight  # the table this request entered, even if reset meanwhile
        if in_flight.get(client_order_id, 0) > 0:
            self._overlapping += 1
        in_flight[client_order_id] = in_flight.get(client_order_id, 0) + 1
        self._max_in_flight = max(self._max_in_flight, in_flight[client_order_id])
        try:
            yield
        finally:
            in_flight[client_order_id] -= 1
            if in_flight[client_order_id] == 0:
                del in_flight[client_order_id]

    def requests(self) -> dict[str, dict[Kind, int]]:
        return {client_id: dict(counts) for client_id, counts in self._counts.items()}

    def stats(self) -> dict[str, int]:
        return {
            "overlapping_requests": self._overlapping,
            "max_in_flight_per_id": self._max_in_flight,
            "in_flight": sum(self._in_flight.values()),
        }

    def clear(self) -> None:
        self._counts = {}
        self._in_flight = {}
        self._overlapping = 0
        self._max_in_flight = 0
