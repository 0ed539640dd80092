"""Domain types every service shares: order statuses, types, sides, and the ISIN rule."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field


class OrderStatus(StrEnum):
    """Placement status: where our order stands with the exchange (SPEC §2)."""

    SUCCESS = "SUCCESS"
    IN_PROGRESS = "IN PROGRESS"
    FAILURE = "FAILURE"


class CancelStatus(StrEnum):
    """Where a cancel stands (SPEC §8): asked and not yet answered for, or its outcome."""

    PENDING = "PENDING"
    CANCELED = "CANCELED"  # the exchange canceled it, or confirmed it never booked it
    REFUSED = "REFUSED"  # the exchange filled or ended it first


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


MAX_QUANTITY = 1_000_000_000


def isin_check_digit_ok(isin: str) -> bool:
    """ISO 6166: letters become 10..35, then Luhn over all the digits, check digit included."""
    if len(isin) != 12 or not isin.isascii() or not isin.isalnum():
        return False
    if not isin[:2].isalpha() or not isin[:2].isupper() or not isin[11].isdigit():
        return False
    if any(c.isalpha() and not c.isupper() for c in isin):
        return False
    digits = "".join(str(int(c, 36)) for c in isin)
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return total % 10 == 0


ISIN_PATTERN = r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$"


def _check_isin(value: str) -> str:
    if not isin_check_digit_ok(value):
        raise ValueError("instrument must be an ISIN (ISO 6166) with a matching check digit")
    return value


Isin = Annotated[
    str,
    Field(
        pattern=ISIN_PATTERN,
        examples=["US0378331005"],
        description="ISIN: 2 letters, 9 letters or digits, 1 check digit (ISO 6166)",
    ),
    AfterValidator(_check_isin),
]

# Idempotency-Key (SPEC §2): 1..255 visible ASCII characters. migrations/0001 mirrors it in SQL.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"
IdempotencyKey = Annotated[
    str,
    Field(
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="1..255 visible ASCII characters; a repeat with the same body returns the "
        "same order",
    ),
]


# The exchange's view of an order (SPEC §3): statuses only move forward.
EXCHANGE_STATUSES = ("new", "partially_filled", "filled", "canceled", "rejected", "expired")
EXCHANGE_TERMINAL = frozenset({"filled", "canceled", "rejected", "expired"})


def _rank(status: str) -> int:
    return {"new": 0, "partially_filled": 1}.get(status, 2)


def exchange_status_moves_forward(
    old_status: str, old_filled: int, new_status: str, new_filled: int
) -> bool:
    """Whether an order's exchange status may move from old to new. Mirrors the SQL function
    `exchange_status_moves_forward` (migrations/0002), which is what the listener applies."""
    if new_filled < old_filled:
        return False
    return (
        _rank(new_status) > _rank(old_status)
        or (new_status == old_status == "partially_filled" and new_filled > old_filled)
        or (new_status == "filled" and old_status in ("canceled", "expired"))
    )
