"""The exchange's side of the wire (SPEC §3): what a placement request must look like.

Written independently of `orders_core.wire` on purpose; the tests between the two catch any drift.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from exchange_sim import strict_json
from exchange_sim.config import describe_errors

ClientOrderId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
_DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")


class PlaceOrder(BaseModel):
    """`POST /v1/orders`. Strict: a venue takes exact types, money as decimal strings."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    client_order_id: ClientOrderId
    instrument: str = Field(min_length=1, max_length=32)
    side: Literal["buy", "sell"]
    type: Literal["market", "limit"]
    limit_price: str | None
    quantity: int = Field(ge=1)
    valid_until: AwareDatetime

    @model_validator(mode="after")
    def _price_fits_type(self) -> Self:
        if self.type == "market":
            if self.limit_price is not None:
                raise ValueError("limit_price must be null for a market order")
        elif self.limit_price is None or not _is_positive_decimal(self.limit_price):
            raise ValueError("limit_price must be a positive decimal string for a limit order")
        return self


def _is_positive_decimal(text: str) -> bool:
    return bool(_DECIMAL.match(text)) and Decimal(text) > 0


def parse_place_order(raw: bytes) -> PlaceOrder:
    """The request body as a `PlaceOrder`; ValueError with a readable message otherwise."""
    try:  # first what pydantic would take quietly: a duplicate key, deep nesting
        strict_json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"invalid order: {exc}") from None
    try:
        return PlaceOrder.model_validate_json(raw)
    except ValidationError as exc:
        raise ValueError(f"invalid order: {describe_errors(exc)}") from exc


def peek_client_order_id(raw: bytes) -> str | None:
    """The `client_order_id` of a body, however invalid the rest, so every request is counted."""
    data = _peek(raw, "client_order_id")
    return data if isinstance(data, str) else None


def peek_valid_until(raw: bytes) -> datetime | None:
    """The `valid_until` of a body (aware), however invalid the rest, None when it has none."""
    data = _peek(raw, "valid_until")
    try:
        moment = datetime.fromisoformat(data) if isinstance(data, str) else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _peek(raw: bytes, name: str) -> object:
    try:
        data = strict_json.loads(raw)
    except ValueError:
        return None
    return data.get(name) if isinstance(data, dict) else None
