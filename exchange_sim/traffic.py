"""What the exchange has been asked: requests per client order id, overlapping requests
(two requests on one id handled at the same time), and a log of placement requests with their
times, so tests can prove who did what and when."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Kind = Literal["place", "lookup", "cancel"]
KINDS: tuple[Kind, ...] = ("place", "lookup", "cancel")
# Placement requests the log keeps (the newest): a bound on memory for a long-running exchange.
PLACEMENTS_KEPT = 500_000


@dataclass
class Placement:
    """One placement request: when it arrived, the `valid_until` it carried (None when it carried
    none that reads as an aware instant), and the status it was answered with (None while
    unanswered, or for good when it hung or its client left before the answer)."""

    client_order_id: str | None
    received_at: datetime
    valid_until: datetime | None = None
    status: int | None = None
    answered_at: datetime | None = None

    def answered(self, status: int) -> None:
        self.status = status
        self.answered_at = datetime.now(UTC)

    def as_json(self) -> dict[str, Any]:
        return {
            "client_order_id": self.client_order_id,
            "received_at": self.received_at.isoformat(),
            "valid_until": None if self.valid_until is None else self.valid_until.isoformat(),
            "status": self.status,
            "answered_at": None if self.answered_at is None else self.answered_at.isoformat(),
        }


class Traffic:
    def __init__(self) -> None:
        self._counts: dict[str, dict[Kind, int]] = {}
        self._in_flight: dict[str, int] = {}
        self._overlapping = 0
        self._max_in_flight = 0
        self._placements: deque[Placement] = deque(maxlen=PLACEMENTS_KEPT)

    def placement(
        self, client_order_id: str | None, received_at: datetime, valid_until: datetime | None
    ) -> Placement:
        """Log a placement request that arrived at `received_at`; its answer comes later."""
        record = Placement(client_order_id, received_at, valid_until)
        self._placements.append(record)
        return record

    def placements(self) -> list[dict[str, Any]]:
        return [record.as_json() for record in self._placements]

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
        self._placements = deque(maxlen=PLACEMENTS_KEPT)
