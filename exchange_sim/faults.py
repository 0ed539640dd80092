"""Fault injection: the current knobs and the one seeded random generator behind every decision."""

from __future__ import annotations

import random
from typing import Any

from exchange_sim.config import SimConfig


class Faults:
    def __init__(self, initial: SimConfig) -> None:
        self._initial = initial
        self.config = initial
        self._rng = random.Random(initial.seed)

    def update(self, changes: Any) -> SimConfig:
        """Apply a subset of knobs (ValueError if any is unknown or invalid, nothing changed).
        Setting `seed` restarts the random sequence."""
        self.config = self.config.updated(changes)
        if "seed" in changes:
            self._rng = random.Random(self.config.seed)
        return self.config

    def reset(self) -> None:
        """Back to the knobs the process started with, and the seeded sequence from its start."""
        self.config = self._initial
        self._rng = random.Random(self._initial.seed)

    @property
    def latency_s(self) -> float:
        return self.config.latency_ms / 1000

    @property
    def lookup_latency_s(self) -> float:
        lookup_ms = self.config.lookup_latency_ms
        return (self.config.latency_ms if lookup_ms is None else lookup_ms) / 1000

    def placement_unavailable(self) -> bool:
        """Whether a placement gets the immediate 503: `fail_next` first, then `failure_rate`."""
        if self.config.fail_next > 0:
            self.config = self.config.model_copy(update={"fail_next": self.config.fail_next - 1})
            return True
        return self.chance(self.config.failure_rate)

    def rejects(self) -> bool:
        return self.chance(self.config.reject_rate)

    def hangs(self) -> bool:
        return self.chance(self.config.timeout_rate)

    def chance(self, rate: float) -> bool:
        """True with probability `rate`; draws nothing when the outcome is certain, so a knob
        at 0 or 1 leaves the seeded sequence of every other decision as it was."""
        if rate <= 0 or rate >= 1:
            return rate >= 1
        return self._rng.random() < rate

    def split(self, quantity: int, rate: float) -> list[int]:
        """`quantity` as one fill, or (with probability `rate`) as 2-3 partial fills."""
        if quantity < 2 or not self.chance(rate):
            return [quantity]
        parts = self._rng.randint(2, min(3, quantity))
        cuts = sorted(self._rng.sample(range(1, quantity), parts - 1))
        return [b - a for a, b in zip([0, *cuts], [*cuts, quantity], strict=True)]

    def shuffle(self, items: list[Any]) -> None:
        self._rng.shuffle(items)
