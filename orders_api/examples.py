"""Examples for the OpenAPI document, made by the models they illustrate.

Every example is validated by its model and written back by it (`model_dump(mode="json")`), at
import: one that no longer fits its model stops the API from starting rather than lie in `/docs`.
The order bodies are those of SPEC §2 (a market and a limit order); the orders the API returns
are built from them. Error examples carry the messages the code answers with (tests compare them
with real answers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ValidationError

from orders_api.docs import DocsFile
from orders_api.requests import TOO_LARGE
from orders_api.schemas import (
    CreateOrderHeaders,
    CreateOrderModel,
    OrderPath,
    OrdersQuery,
    UpdatesQuery,
)
from orders_core import cursor
from orders_core.errors import validation_errors

Example = dict[str, Any]  # an OpenAPI Example Object: summary, value
AT = datetime(2026, 11, 24, 8, 0, 0, 123456, tzinfo=UTC)
MARKET_ID = UUID("9b2f6a0e-3f1c-4c57-9a51-0d7e5b1c2a10")
LIMIT_ID = UUID("4c0d1e2f-8a7b-4e6d-b5c4-a3b2c1d0e9f8")
FAILED_ID = UUID("e1d2c3b4-a596-4877-8695-a4b3c2d1e0f9")

MARKET = CreateOrderModel.model_validate(
    {"type": "market", "side": "buy", "instrument": "US0378331005", "quantity": 10}
)
LIMIT = CreateOrderModel.model_validate(
    {
        "type": "limit",
        "side": "sell",
        "instrument": "DE0007164600",
        "limit_price": "123.45",
        "quantity": 5,
    }
)


def _body(order: CreateOrderModel) -> dict[str, Any]:
    """A request body as a client writes it: a market order leaves `limit_price` out."""
    return order.model_dump(mode="json", exclude_none=True)


def _order(request: CreateOrderModel, **state: Any) -> dict[str, Any]:
    """An order the API returns, for `request`: its fields and the placement state given. The
    fields of SPEC §2 that the order model of the moment does not have are left out."""
    return {
        "created_at": AT,
        "updated_at": AT,
        "stock_market_order_status": None,
        "filled_quantity": None,
        "attempts": 1,
        "last_error": None,
        "failed_at": None,
        "cancel_requested_at": None,
        "cancel_status": None,
        "cancel_error": None,
        **_body(request),
        "limit_price": None if request.limit_price is None else f"{request.limit_price:.2f}",
        **state,
    }


ORDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "market": (
        "a market order, acknowledged and filled",
        _order(
            MARKET,
            id=MARKET_ID,
            status="SUCCESS",
            stock_market_order_status="filled",
            filled_quantity=10,
        ),
    ),
    "limit": (
        "a limit order whose first attempt the exchange did not acknowledge: retries follow",
        _order(
            LIMIT,
            id=LIMIT_ID,
            status="IN PROGRESS",
            updated_at=AT + timedelta(seconds=2),
            last_error="exchange 503: Connection not available",
        ),
    ),
    "failed": (
        "an order that failed: why, when and after how many attempts",
        _order(
            MARKET,
            id=FAILED_ID,
            status="FAILURE",
            attempts=6,
            last_error="exchange 503: Connection not available",
            failed_at=AT + timedelta(seconds=45),
            updated_at=AT + timedelta(seconds=45),
        ),
    ),
}
CANCELING = (
    "a limit order whose cancel is asked: the exchange has not answered for it yet",
    _order(
        LIMIT,
        id=LIMIT_ID,
        status="SUCCESS",
        stock_market_order_status="new",
        filled_quantity=0,
        cancel_requested_at=AT + timedelta(seconds=30),
        cancel_status="PENDING",
        updated_at=AT + timedelta(seconds=30),
    ),
)
NOT_CANCELABLE = {
    "filled": (
        "the exchange filled the order: nothing to cancel",
        {
            "message": "The order is filled on the exchange: nothing to cancel",
            "order": ORDERS["market"][1],
        },
    ),
    "failed": (
        "the order failed: the exchange holds nothing",
        {
            "message": "The order failed: the exchange holds nothing to cancel",
            "order": ORDERS["failed"][1],
        },
    ),
}


def _invalid(model: type[BaseModel], data: Mapping[str, Any]) -> list[dict[str, Any]]:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return validation_errors(exc)
    raise AssertionError(f"{dict(data)} is valid for {model.__name__}")  # pragma: no cover


def _bad_parameter(source: str, model: type[BaseModel], data: Mapping[str, Any]) -> Example:
    """What orders_core.params.parse answers for `data`: the same errors, the same summary."""
    errors = [{**e, "loc": [source, *e["loc"]]} for e in _invalid(model, data)]
    summary = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in errors[:3])
    return {"message": f"Invalid {source} parameter: {summary}", "errors": errors}


def _unlimited_limit_order() -> Example:
    errors = _invalid(CreateOrderModel, {**_body(LIMIT), "limit_price": None})
    return {"message": "Invalid order", "errors": errors}


# The errors each status stands for, by what went wrong: `body` (operations that take one), the
# name of a parameter model (operations whose handlers declare it), `any` (every operation).
ERRORS: dict[int, list[tuple[str, str, str, Callable[[], Example]]]] = {
    400: [
        ("body", "not_an_object", "the body is JSON but not an object",
         lambda: {"message": "Request body must be a JSON object"}),
        ("CreateOrderHeaders", "bad_idempotency_key",
         "Idempotency-Key is not 1-255 visible ASCII characters",
         lambda: _bad_parameter("header", CreateOrderHeaders, {"Idempotency-Key": "a b"})),
        ("OrderPath", "bad_id", "the id is not a UUID",
         lambda: _bad_parameter("path", OrderPath, {"id": "42"})),
        ("OrdersQuery", "bad_limit", "limit out of range",
         lambda: _bad_parameter("query", OrdersQuery, {"limit": "0"})),
        ("UpdatesQuery", "bad_cursor", "a cursor that is not a whole number",
         lambda: _bad_parameter("query", UpdatesQuery, {"after": "abc"})),
        ("UpdatesQuery", "unknown_cursor", "a cursor no stream has sent yet",
         lambda: {"message": "No event 90210 yet: resume from an id this stream sent"}),
        ("DocsFile", "no_such_file", "not a file of the docs page",
         lambda: _bad_parameter("path", DocsFile, {"file": "index.html"})),
    ],
    401: [
        ("any", "no_key", "no Authorization header",
         lambda: {"message": "Authorization: Bearer <API key> is required"}),
        ("any", "unknown_key", "a key that was never issued",
         lambda: {"message": "Unknown API key"}),
    ],
    403: [("any", "read_only", "a key of scope read on a write",
           lambda: {"message": "This API key may only read (scope read)"})],
    404: [("any", "not_found", "no such order (or another account's)",
           lambda: {"message": "Order not found"})],
    409: [("any", "in_flight", "the first request with this key is still being placed",
           lambda: {"message": "A request with this Idempotency-Key is still in progress"})],
    410: [("UpdatesQuery", "purged", "the cursor is older than the update log keeps",
           lambda: {"message": "Events up to 5120 were purged (retention): read the orders "
                               "with GET /orders, then open the stream without a cursor"})],
    413: [("any", "too_large", "body over 64 KiB", lambda: {"message": TOO_LARGE})],
    415: [("any", "not_json", "Content-Type is not JSON",
           lambda: {"message": "Content-Type must be application/json"})],
    422: [
        ("body", "invalid_order", "a limit order without limit_price", _unlimited_limit_order),
        ("CreateOrderHeaders", "key_reused", "Idempotency-Key reused with another body",
         lambda: {"message": "Idempotency-Key was already used with a different request body"}),
    ],
    429: [("any", "rate_limited", "past the key's rate limit",
           lambda: {"message": "Rate limit of this API key exceeded (200 requests/s, bursts of "
                               "400); retry after 1 s"})],
    500: [("any", "database_failed", "the database failed while storing the order",
           lambda: {"message": "Internal server error while placing the order"})],
}  # fmt: skip


def _samples(model: type[BaseModel]) -> dict[str, tuple[str, Any]]:
    """Example data for a response model, by its name (so a model added later finds its own
    here once there is one): key -> (summary, data)."""
    orders = [data for _, data in ORDERS.values()]
    by_name: dict[str, dict[str, tuple[str, Any]]] = {
        "OrderModel": ORDERS | {"canceling": CANCELING},
        "CancelConflictModel": NOT_CANCELABLE,
        "OrdersPage": {
            "page": (
                "a page with another after it",
                {"orders": orders, "next": cursor.encode(AT, FAILED_ID)},
            )
        },
        "OrderEventsPage": {"events": ("a market order's fills", {"events": _events()})},
        "OrderHistory": {"history": ("a retried order's story", {"history": _history()})},
        "HealthModel": {
            "ok": ("up", {"status": "ok"}),
            "unavailable": (
                "not ready", {"status": "unavailable", "message": "database unreachable"}
            ),
        },
    }  # fmt: skip
    return by_name.get(model.__name__, {})


def _events() -> list[dict[str, Any]]:
    def event(seq: int, status: str, filled: int, price: str | None) -> dict[str, Any]:
        at = AT + timedelta(milliseconds=300 * seq)
        return {
            "seq": seq, "epoch": "e1", "status": status, "filled_quantity": filled,
            "quantity": 10, "avg_price": price, "exchange_ts": at,
            "received_at": at + timedelta(milliseconds=4), "source": "stream",
        }  # fmt: skip

    return [event(41, "new", 0, None), event(42, "partially_filled", 3, "187.20"),
            event(43, "filled", 10, "187.25")]  # fmt: skip


def _history() -> list[dict[str, Any]]:
    def entry(s: float, event: str, attempt: int | None, outcome: str | None,
              detail: str | None) -> dict[str, Any]:  # fmt: skip
        return {"at": AT + timedelta(seconds=s), "event": event, "attempt": attempt,
                "outcome": outcome, "detail": detail}  # fmt: skip

    return [
        entry(0, "created", None, None, None),
        entry(0.01, "placement_sent", 1, None, "valid until 2026-11-24T08:00:02.133456+00:00"),
        entry(0.02, "placement_answered", 1, "unknown", "exchange 503: Connection not available"),
        entry(2.3, "lookup", 1, "absent", None),
        entry(2.31, "placement_sent", 2, None, "valid until 2026-11-24T08:00:04.433456+00:00"),
        entry(2.5, "placement_answered", 2, "accepted", None),
        entry(2.8, "exchange_status", None, "new", None),
    ]


def _fit(model: type[BaseModel], data: Mapping[str, Any]) -> Any:
    """`data` as `model` writes it, after `model` validated it (keys it has no field for are
    ignored, as pydantic does by default)."""
    return model.model_validate(data).model_dump(mode="json")


def response_examples(model: type[BaseModel]) -> dict[str, Example]:
    return {
        key: {"summary": summary, "value": _fit(model, data)}
        for key, (summary, data) in _samples(model).items()
    }


def request_examples(model: type[BaseModel]) -> dict[str, Example]:
    if model is not CreateOrderModel:
        return {}
    return {
        "market": {"summary": "a market order", "value": _body(MARKET)},
        "limit": {"summary": "a limit order", "value": _body(LIMIT)},
    }


def error_examples(
    error_model: type[BaseModel], status: int, parts: set[str]
) -> dict[str, Example]:
    """The examples of error `status` for an operation made of `parts` (as in ERRORS)."""
    return {
        key: {"summary": summary, "value": error_model.model_validate(make()).model_dump(
            mode="json", exclude_none=True)}
        for part, key, summary, make in ERRORS.get(status, [])
        if part == "any" or part in parts
    }  # fmt: skip
