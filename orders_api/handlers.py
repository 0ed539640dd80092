"""HTTP handlers: thin. Parameters arrive parsed (orders_core.params), errors are raised (the
middleware renders them), the work is in placement.py and store.py."""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal
from uuid import UUID

import asyncpg
from aiohttp import web
from pydantic import BaseModel

from orders_api import cancels, reads, store
from orders_api.keys import PLACER, POOL, PRINCIPAL
from orders_api.requests import json_object, validate
from orders_api.schemas import (
    CancelConflictModel,
    CreateOrderHeaders,
    CreateOrderModel,
    ExchangeEventModel,
    HistoryEntry,
    OrderEventsPage,
    OrderHistory,
    OrderModel,
    OrderPath,
    OrdersPage,
    OrdersQuery,
)
from orders_core.domain import CancelStatus, OrderStatus
from orders_core.errors import Conflict, NotFound, Unprocessable

ORDER_NOT_FOUND = "Order not found"


def order_response(row: asyncpg.Record, status: int = 200) -> web.Response:
    body = OrderModel.model_validate(dict(row)).model_dump_json()
    return web.Response(text=body, status=status, content_type="application/json")


async def create_order(request: web.Request, headers: CreateOrderHeaders) -> web.StreamResponse:
    order = validate(CreateOrderModel, await json_object(request), "Invalid order")
    new = _new_order(order, headers.idempotency_key, request[PRINCIPAL].account_id)
    row = await request.app[PLACER].place_new(new)
    if row["request_hash"] != new.request_hash:
        raise Unprocessable("Idempotency-Key was already used with a different request body")
    if row["id"] != new.id and row["sync_pending"]:
        raise Conflict("A request with this Idempotency-Key is still in progress")
    response = order_response(row, status=201)
    response.headers["Location"] = f"/orders/{row['id']}"
    return response


def _new_order(order: CreateOrderModel, key: str | None, account_id: UUID) -> store.NewOrder:
    price = None if order.limit_price is None else order.limit_price.quantize(Decimal("0.01"))
    fingerprint = None
    if key is not None:
        canonical = f"{order.type}|{order.side}|{order.instrument}|{price}|{order.quantity}"
        fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
    return store.NewOrder(
        id=uuid.uuid4(),
        type=order.type.value,
        side=order.side.value,
        instrument=order.instrument,
        limit_price=price,
        quantity=order.quantity,
        idempotency_key=key,
        request_hash=fingerprint,
        account_id=account_id,
    )


async def _own_order(request: web.Request, path: OrderPath) -> asyncpg.Record:
    """The order if it is the requesting account's; NotFound otherwise (as for an unknown id)."""
    row = await reads.by_id(request.app[POOL], request[PRINCIPAL].account_id, path.id)
    if row is None:
        raise NotFound(ORDER_NOT_FOUND)
    return row


def _json(model: BaseModel) -> web.Response:
    return web.Response(text=model.model_dump_json(), content_type="application/json")


async def get_order(request: web.Request, path: OrderPath) -> web.StreamResponse:
    return order_response(await _own_order(request, path))


async def order_events(request: web.Request, path: OrderPath) -> web.StreamResponse:
    await _own_order(request, path)
    rows = await reads.events(request.app[POOL], path.id)
    return _json(OrderEventsPage(events=[ExchangeEventModel.model_validate(dict(r)) for r in rows]))


async def list_orders(request: web.Request, query: OrdersQuery) -> web.StreamResponse:
    rows, next_page = query.cut(
        await reads.page(
            request.app[POOL],
            request[PRINCIPAL].account_id,
            query.status,
            query.before,
            query.fetch,
        ),
        at="created_at",
    )
    return _json(
        OrdersPage(orders=[OrderModel.model_validate(dict(r)) for r in rows], next=next_page)
    )


async def order_history(request: web.Request, path: OrderPath) -> web.StreamResponse:
    await _own_order(request, path)
    rows = await reads.history(request.app[POOL], path.id)
    return _json(OrderHistory(history=[HistoryEntry.model_validate(dict(r)) for r in rows]))


async def cancel_order(request: web.Request, path: OrderPath) -> web.StreamResponse:
    """DELETE /orders/{id} (SPEC §8): 202 once the cancel is asked (a repeat answers the same and
    asks nothing more); 409 when nothing is left to cancel."""
    row = await cancels.request_cancel(request.app[POOL], request[PRINCIPAL].account_id, path.id)
    if row is None:
        raise NotFound(ORDER_NOT_FOUND)
    if row["cancel_status"] == CancelStatus.PENDING:
        return order_response(row, status=202)
    order = OrderModel.model_validate(dict(row))
    body = CancelConflictModel(message=_not_cancelable(order), order=order)
    return web.Response(text=body.model_dump_json(), status=409, content_type="application/json")


def _not_cancelable(order: OrderModel) -> str:
    if order.cancel_status is not None:
        return f"The order's cancel is already final: {order.cancel_status.value}"
    if order.status is OrderStatus.FAILURE:
        return "The order failed: the exchange holds nothing to cancel"
    return f"The order is {order.stock_market_order_status} on the exchange: nothing to cancel"
