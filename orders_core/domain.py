"""Domain types every service shares: order statuses, types, sides, and the ISIN rule."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    """Placement status: where our order stands with the exchange (SPEC §2)."""

    SUCCESS = "SUCCESS"
    IN_PROGRESS = "IN PROGRESS"
    FAILURE = "FAILURE"


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
