"""The exchange's wire format (SPEC §3), as our side of the wire reads and writes it.

exchange_sim writes its own side; tests between the two catch any drift.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


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


# The status stream (WS /v1/stream) and its resynchronisation (GET /v1/orders?updated_after_seq=).

ExchangeStatus = Literal["new", "partially_filled", "filled", "canceled", "rejected", "expired"]


class Hello(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["hello"]
    epoch: str
    seq: int


class OrderState(BaseModel):
    """An order as of one event: what an execution report says, and what a resync returns per
    changed order (with the seq of its latest event)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    seq: int = Field(gt=0)
    exchange_order_id: str
    client_order_id: str
    status: ExchangeStatus
    filled_quantity: int = Field(ge=0)
    quantity: int = Field(gt=0)
    avg_price: Decimal | None = None


class ExecutionReport(OrderState):
    type: Literal["execution_report"]
    ts: datetime


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["heartbeat"]
    seq: int


class Reset(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["reset"]


AnyMessage = Hello | ExecutionReport | Heartbeat | Reset
STREAM_MESSAGE: TypeAdapter[AnyMessage] = TypeAdapter(
    Annotated[AnyMessage, Field(discriminator="type")]
)


class ChangedOrders(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    orders: list[OrderState]
    seq: int
