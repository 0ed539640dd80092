"""The exchange's wire format (SPEC §3), as our side of the wire reads and writes it.

exchange_sim writes its own side; tests between the two catch any drift.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class PlaceOrderRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    client_order_id: str
    instrument: str
    side: str
    type: str
    limit_price: str | None
    quantity: int
    valid_until: datetime


class ExchangeOrder(BaseModel):
    """An order as the exchange reports it; fields we do not use are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    exchange_order_id: str
    client_order_id: str
    status: str
    filled_quantity: int = 0


class ExchangeError(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    message: str = ""
