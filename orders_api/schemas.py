"""The API's request and response bodies (SPEC §2). The OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationInfo,
    field_serializer,
    field_validator,
)

from orders_core.domain import (
    MAX_QUANTITY,
    IdempotencyKey,
    Isin,
    OrderStatus,
    OrderType,
    Side,
)
from orders_core.params import PageQuery, Params

Price = Annotated[
    Decimal,
    Field(
        gt=0,
        decimal_places=2,
        max_digits=18,
        description="> 0, at most 2 decimal places; a JSON number or a decimal string",
    ),
]


class CreateOrderModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: OrderType
    side: Side
    instrument: Isin
    limit_price: Price | None = Field(
        default=None,
        validate_default=True,
        description="required for limit orders, absent or null for market orders",
    )
    quantity: StrictInt = Field(ge=1, le=MAX_QUANTITY)

    @field_validator("limit_price", mode="after")
    @classmethod
    def _price_matches_type(cls, price: Decimal | None, info: ValidationInfo) -> Decimal | None:
        order_type = info.data.get("type")
        if order_type is OrderType.LIMIT and price is None:
            raise ValueError("limit_price is required for limit orders")
        if order_type is OrderType.MARKET and price is not None:
            raise ValueError("limit_price must be absent or null for market orders")
        return price


class OrderModel(BaseModel):
    """An order as the API returns it."""

    id: UUID
    created_at: datetime
    type: OrderType
    side: Side
    instrument: str
    limit_price: Annotated[str, Field(pattern=r"^\d+\.\d{2}$")] | None
    quantity: int
    status: OrderStatus = Field(
        description="SUCCESS: acknowledged by the exchange; IN PROGRESS: stored, placement not yet "
        "acknowledged, retries scheduled; FAILURE: every attempt failed and the exchange confirmed "
        "it holds no such order"
    )
    stock_market_order_status: str | None = Field(
        description="the latest status the exchange reported over its stream, or null"
    )

    @field_serializer("created_at")
    def _iso(self, value: datetime) -> str:
        return value.isoformat()


class OrdersPage(BaseModel):
    orders: list[OrderModel]
    next: str | None = Field(description="cursor for the next page (`after=`), null on the last")


class ExchangeEventModel(BaseModel):
    """One status update the exchange streamed about an order (or a resync's snapshot of it)."""

    seq: int
    epoch: str
    status: str
    filled_quantity: int
    quantity: int
    avg_price: str | None
    exchange_ts: datetime
    received_at: datetime
    source: str = Field(description="stream, or resync when fetched over REST after a gap")

    @field_serializer("exchange_ts", "received_at")
    def _iso(self, value: datetime) -> str:
        return value.isoformat()


class OrderEventsPage(BaseModel):
    events: list[ExchangeEventModel]


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorModel(BaseModel):
    message: str
    errors: list[ErrorItem] | None = None


class HealthModel(BaseModel):
    status: str
    message: str | None = None


class OrderPath(Params):
    id: UUID = Field(description="the order's id (UUID)")


class OrdersQuery(PageQuery):
    status: OrderStatus | None = Field(
        default=None, description="only orders in this placement status"
    )


class CreateOrderHeaders(Params):
    model_config = ConfigDict(extra="ignore", frozen=True)

    idempotency_key: IdempotencyKey | None = Field(default=None, alias="Idempotency-Key")
