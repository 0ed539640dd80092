"""The one backoff of the system: capped exponential, full jitter, with an optional floor.

Placement retries and lookups, webhook deliveries and stream reconnects all wait by it, so that
many clients failing at once do not come back at once.
"""

from __future__ import annotations

import random


def backoff_s(
    attempt: int, base_s: float, cap_s: float, rng: random.Random, floor_s: float = 0.0
) -> float:
    """Seconds to wait after failure number `attempt` (1, 2, ...): uniform over
    [floor, max(floor, min(cap, base * 2^(attempt-1)))]."""
    ceiling = max(floor_s, min(cap_s, base_s * 2 ** min(max(attempt - 1, 0), 64)))
    return rng.uniform(floor_s, ceiling)
