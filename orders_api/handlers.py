"""HTTP handlers: thin; the work is in placement.py and store.py."""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from aiohttp import web

from orders_api import store
from orders_api.keys import PLACER, POOL
from orders_api.requests import RequestError, json_object, validate
from orders_api.schemas import (
    CreateOrderModel,
    ExchangeEventModel,
    OrderEventsPage,
    OrderModel,
    OrdersPage,
)
from orders_core import cursor
from orders_core.db import DB_ERRORS
from orders_core.domain import OrderStatus
from orders_core.web import REQUEST_ID, json_error

log = logging.getLogger(__name__)

PLACEMENT_FAILED = "Internal server error while placing the order"
IDEMPOTENCY_KEY_RE = re.compile(r"^[!-~]{1,255}$")
MAX_PAGE = 1000
DEFAULT_PAGE = 100


def order_response(row: asyncpg.Record, status: int = 200) -> web.Response:
    body = OrderModel.model_validate(dict(row)).model_dump_json()
    return web.Response(text=body, status=status, content_type="application/json")


async def create_order(request: web.Request) -> web.StreamResponse:
    try:
        order = validate(CreateOrderModel, await json_object(request), "Invalid order")
        key = _idempotency_key(request)
    except RequestError as exc:
        return exc.response()
    new = _new_order(order, key)
    try:
        row = await request.app[PLACER].place_new(new)
        if row is None and key is not None:
            row = await store.by_key(request.app[POOL], key)
    except DB_ERRORS:
        log.exception("order not stored", extra={"request_id": request[REQUEST_ID]})
        return json_error(500, PLACEMENT_FAILED)
    if row is None:  # the key's order vanished: nothing deletes orders, so this is a bug
        log.error("idempotency key without order", extra={"request_id": request[REQUEST_ID]})
        return json_error(500, PLACEMENT_FAILED)
    if row["request_hash"] != new.request_hash:
        return json_error(422, "Idempotency-Key was already used with a different request body")
    if row["id"] != new.id and row["sync_pending"]:
        return json_error(409, "A request with this Idempotency-Key is still in progress")
    response = order_response(row, status=201)
    response.headers["Location"] = f"/orders/{row['id']}"
    return response


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY_RE.match(key):
        raise RequestError(400, "Idempotency-Key must be 1 to 255 visible ASCII characters")
    return key


def _new_order(order: CreateOrderModel, key: str | None) -> store.NewOrder:
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
    )


async def get_order(request: web.Request) -> web.StreamResponse:
    try:
        order_id = _order_id(request)
    except RequestError as exc:
        return exc.response()
    row = await store.by_id(request.app[POOL], order_id)
    if row is None:
        return json_error(404, "Order not found")
    return order_response(row)


async def order_events(request: web.Request) -> web.StreamResponse:
    try:
        order_id = _order_id(request)
    except RequestError as exc:
        return exc.response()
    pool = request.app[POOL]
    if await store.by_id(pool, order_id) is None:
        return json_error(404, "Order not found")
    rows = await store.events(pool, order_id)
    page = OrderEventsPage(events=[ExchangeEventModel.model_validate(dict(r)) for r in rows])
    return web.Response(text=page.model_dump_json(), content_type="application/json")


def _order_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        raise RequestError(400, "Order id must be a UUID") from None


async def list_orders(request: web.Request) -> web.StreamResponse:
    try:
        status, limit, before = _page_query(request.query)
    except RequestError as exc:
        return exc.response()
    rows = await store.page(request.app[POOL], status, before, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    page = OrdersPage(
        orders=[OrderModel.model_validate(dict(r)) for r in rows],
        next=cursor.encode(rows[-1]["created_at"], rows[-1]["id"]) if more else None,
    )
    return web.Response(text=page.model_dump_json(), content_type="application/json")


def _page_query(query: Any) -> tuple[OrderStatus | None, int, tuple[datetime, uuid.UUID]]:
    raw_status = query.get("status")
    try:
        status = None if raw_status is None else OrderStatus(raw_status)
    except ValueError:
        allowed = ", ".join(s.value for s in OrderStatus)
        raise RequestError(400, f"status must be one of: {allowed}") from None
    raw_limit = query.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise RequestError(400, f"limit must be an integer from 1 to {MAX_PAGE}")
    after = query.get("after")
    try:
        before = cursor.FIRST_PAGE if after is None else cursor.decode(after)
    except cursor.CursorError as exc:
        raise RequestError(400, str(exc)) from None
    return status, int(raw_limit), before
