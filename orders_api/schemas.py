"""The API's request and response bodies (SPEC §2). The OpenAPI document is generated from these."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StrictInt,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    field_serializer,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from orders_core.domain import (
    MAX_QUANTITY,
    CancelStatus,
    IdempotencyKey,
    Isin,
    OrderStatus,
    OrderType,
    Side,
)
from orders_core.params import PageQuery, Params, QueryInt, Uuid

# A decimal string as a person writes one: ASCII digits, at most 16 before the point (what
# numeric(18, 2) holds) and 2 after. Not `_`, spaces, `+`, exponents or other scripts' digits,
# all of which Decimal() would take (SPEC §7). A JSON number is exact (a Decimal) already.
PRICE_PATTERN = r"^[0-9]{1,16}(\.[0-9]{1,2})?$"
_PRICE_TEXT = re.compile(PRICE_PATTERN)
MAX_PRICE_EXCLUSIVE = 10**16
PRICE_RULE = "> 0, at most 2 decimal places and 16 digits before the point"


def _price_text(value: object) -> object:
    if isinstance(value, str):
        if not _PRICE_TEXT.fullmatch(value):
            raise ValueError(
                "limit_price must be a JSON number or a decimal string of digits 0-9 with at "
                'most 2 decimal places, like "123.45"'
            )
        return Decimal(value)
    return value


Price = Annotated[
    Decimal,
    BeforeValidator(_price_text),
    Field(gt=0, decimal_places=2, max_digits=18, lt=MAX_PRICE_EXCLUSIVE),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "exclusiveMaximum": MAX_PRICE_EXCLUSIVE,
                    "multipleOf": 0.01,
                },
                {"type": "string", "pattern": PRICE_PATTERN},
            ],
            "description": f'{PRICE_RULE}: a JSON number, or a decimal string like "123.45"',
        }
    ),
]
Quantity = Annotated[
    StrictInt,
    Field(ge=1, le=MAX_QUANTITY, description='a JSON integer (not 10.0, "10" or true)'),
]


class CreateOrderModel(BaseModel):
    """`POST /orders`. One model validates every order; the document describes it as the two
    shapes it takes (`LimitOrderRequest`, `MarketOrderRequest`, built from the same field
    types), one of them by `type`."""

    model_config = ConfigDict(extra="forbid")

    type: OrderType
    side: Side
    instrument: Isin
    limit_price: Price | None = Field(
        default=None,
        validate_default=True,
        description="required for limit orders, absent or null for market orders",
    )
    quantity: Quantity

    @field_validator("limit_price", mode="after")
    @classmethod
    def _price_matches_type(cls, price: Decimal | None, info: ValidationInfo) -> Decimal | None:
        order_type = info.data.get("type")
        if order_type is OrderType.LIMIT and price is None:
            raise ValueError("limit_price is required for limit orders")
        if order_type is OrderType.MARKET and price is not None:
            raise ValueError("limit_price must be absent or null for market orders")
        return price

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(_DOCUMENTED.core_schema)
        return {**schema, "title": "CreateOrderModel", "description": "a limit or a market order"}


class LimitOrderRequest(BaseModel):
    """A limit order: `limit_price` is required."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[OrderType.LIMIT]
    side: Side
    instrument: Isin
    limit_price: Price
    quantity: Quantity


class MarketOrderRequest(BaseModel):
    """A market order: `limit_price` is absent or null."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[OrderType.MARKET]
    side: Side
    instrument: Isin
    limit_price: None = None
    quantity: Quantity


_DOCUMENTED: TypeAdapter[LimitOrderRequest | MarketOrderRequest] = TypeAdapter(
    Annotated[LimitOrderRequest | MarketOrderRequest, Field(discriminator="type")]
)


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
    attempts: int = Field(description="placement requests sent so far (the first included)")
    last_error: str | None = Field(
        description="why the last attempt, or the order, failed; null when nothing failed"
    )
    failed_at: datetime | None = Field(description="when the order became FAILURE, or null")
    updated_at: datetime = Field(description="when the order last changed")
    filled_quantity: int | None = Field(
        description="how much the exchange has filled (from its stream), or null"
    )
    cancel_requested_at: datetime | None = Field(
        description="when a cancel was asked (DELETE /orders/{id}), or null"
    )
    cancel_status: CancelStatus | None = Field(
        description="PENDING: asked, the exchange has not answered for it yet; CANCELED: the "
        "exchange canceled the order, or confirmed it never booked it (status FAILURE, last_error "
        "'canceled before placement'); REFUSED: the exchange filled or ended it first "
        "(cancel_error says why); null when no cancel was asked",
    )
    cancel_error: str | None = Field(
        description="why the cancel was refused, or why the last cancel request failed"
    )

    @field_serializer("created_at", "updated_at")
    def _iso(self, value: datetime) -> str:
        return value.isoformat()

    @field_serializer("failed_at", "cancel_requested_at")
    def _iso_or_null(self, value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()


class CancelConflictModel(BaseModel):
    """Why the order can no longer be canceled, and the order."""

    message: str
    order: OrderModel


class HistoryEntry(BaseModel):
    """One thing that happened to an order."""

    at: datetime
    event: str = Field(
        description="created; placement_sent (a request to the exchange, with its deadline); "
        "placement_answered (outcome accepted, rejected, expired or unknown); lookup (outcome "
        "found, absent or error); exchange_status (the exchange's status, from its stream)"
    )
    attempt: int | None = Field(description="the placement attempt it concerns, if one")
    outcome: str | None
    detail: str | None

    @field_serializer("at")
    def _iso(self, value: datetime) -> str:
        return value.isoformat()


class OrderHistory(BaseModel):
    history: list[HistoryEntry] = Field(description="oldest first")


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
    id: Uuid = Field(description="the order's id (UUID)")


class OrdersQuery(PageQuery):
    status: OrderStatus | None = Field(
        default=None, description="only orders in this placement status"
    )


class UpdatesQuery(Params):
    after: QueryInt | None = Field(
        default=None,
        ge=0,
        description="resume right after this event id (as Last-Event-ID, which wins when both "
        "are given); without either, the stream starts with the next change",
    )


class UpdatesHeaders(Params):
    model_config = ConfigDict(extra="ignore", frozen=True)

    last_event_id: QueryInt | None = Field(
        default=None,
        ge=0,
        alias="Last-Event-ID",
        description="the id of the last event received: the stream resumes right after it",
    )


class CreateOrderHeaders(Params):
    model_config = ConfigDict(extra="ignore", frozen=True)

    idempotency_key: IdempotencyKey | None = Field(default=None, alias="Idempotency-Key")
