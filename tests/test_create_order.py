"""POST /orders: the happy path and every row of the validation table (SPEC §2)."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.helpers import LIMIT, MARKET, order_row
from tests.sim import SimProcess

Client = TestClient[web.Request, web.Application]
ORDER_KEYS = {
    "id", "created_at", "type", "side", "instrument", "limit_price", "quantity", "status",
    "stock_market_order_status", "attempts", "last_error", "failed_at", "updated_at",
    "filled_quantity", "cancel_requested_at", "cancel_status", "cancel_error",
}  # fmt: skip


@pytest.mark.parametrize("body", [MARKET, LIMIT], ids=["market", "limit"])
async def test_valid_order_is_placed_once(
    api: Client, exchange: SimProcess, db: asyncpg.Connection, body: dict[str, Any]
) -> None:
    resp = await api.post("/orders", json=body)
    assert resp.status == 201
    order = await resp.json()
    assert set(order) == ORDER_KEYS
    assert order["status"] == "SUCCESS"
    assert order["stock_market_order_status"] is None
    assert (order["attempts"], order["last_error"], order["failed_at"]) == (1, None, None)
    assert datetime.fromisoformat(order["updated_at"]) >= datetime.fromisoformat(
        order["created_at"]
    )
    assert resp.headers["Location"] == f"/orders/{order['id']}"
    assert datetime.fromisoformat(order["created_at"]).utcoffset() is not None
    for field in ("type", "side", "instrument", "quantity"):
        assert order[field] == body[field]
    assert order["limit_price"] == body.get("limit_price")

    ledger = await exchange.ledger()
    assert ledger[order["id"]]["placements"] == 1
    assert (await exchange.requests())[order["id"]]["place"] == 1
    row = await order_row(db, order["id"])
    assert row["exchange_order_id"] == ledger[order["id"]]["exchange_order_id"]
    assert row["attempts"] == 1


async def test_limit_price_as_json_number_keeps_its_exact_value(api: Client) -> None:
    resp = await api.post(
        "/orders", data='{"type":"limit","side":"buy","instrument":"GB0002634946",'
        '"limit_price":0.07,"quantity":1}', headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert resp.status == 201
    assert (await resp.json())["limit_price"] == "0.07"


async def test_market_order_with_explicit_null_price_is_valid(api: Client) -> None:
    resp = await api.post("/orders", json={**MARKET, "limit_price": None})
    assert resp.status == 201


def _with(**changes: Any) -> dict[str, Any]:
    body = dict(LIMIT)
    for key, value in changes.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return body


INVALID = {
    "type unknown": _with(type="stop"),
    "type missing": _with(type=...),
    "side unknown": _with(side="short"),
    "side missing": _with(side=...),
    "instrument bad check digit": _with(instrument="US0378331006"),
    "instrument later-version example": _with(instrument="DE000A0Q4RZ3"),
    "instrument lowercase": _with(instrument="us0378331005"),
    "instrument too short": _with(instrument="US037833100"),
    "instrument not a string": _with(instrument=378331005),
    "limit price missing for limit": _with(limit_price=...),
    "limit price null for limit": _with(limit_price=None),
    "limit price zero": _with(limit_price="0"),
    "limit price negative": _with(limit_price=-1),
    "limit price three decimals": _with(limit_price="1.234"),
    "limit price three decimals as number": _with(limit_price=Decimal("1.234")),
    "limit price not a number": _with(limit_price="abc"),
    "limit price NaN string": _with(limit_price="NaN"),
    "limit price bool": _with(limit_price=True),
    "limit price too large": _with(limit_price="12345678901234567.00"),
    "market with limit price": {**MARKET, "limit_price": "10.00"},
    "quantity zero": _with(quantity=0),
    "quantity too large": _with(quantity=1_000_000_001),
    "quantity fractional": _with(quantity=1.5),
    "quantity as string": _with(quantity="10"),
    "quantity bool": _with(quantity=True),
    "quantity missing": _with(quantity=...),
    "unknown field": _with(account="X1"),
}


@pytest.mark.parametrize("body", INVALID.values(), ids=INVALID.keys())
async def test_invalid_order_is_422_and_stores_nothing(
    api: Client, exchange: SimProcess, db: asyncpg.Connection, body: dict[str, Any]
) -> None:
    raw = _json(body)
    resp = await api.post("/orders", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 422, await resp.text()
    error = await resp.json()
    assert error["message"]
    assert error["errors"]
    assert all(set(e) == {"loc", "msg", "type"} for e in error["errors"])
    assert await db.fetchval("SELECT count(*) FROM orders") == 0
    assert await exchange.requests() == {}


def _json(body: dict[str, Any]) -> str:
    """JSON with Decimals written as JSON numbers."""
    return json.dumps(body, default=float)


BAD_REQUESTS = {
    "not json": ("application/json", b"{not json", 400),
    "json array": ("application/json", b"[1, 2]", 400),
    "json string": ("application/json", b'"order"', 400),
    "NaN literal": ("application/json", b'{"type": "limit", "limit_price": NaN}', 400),
    "empty body": ("application/json", b"", 400),
    "invalid utf-8": ("application/json", b'{"type": "\xff"}', 400),
    "form content type": ("application/x-www-form-urlencoded", b"type=market", 415),
    "text content type": ("text/plain", b"{}", 415),
    "over 64 KiB": ("application/json", b'{"pad": "' + b"x" * 70_000 + b'"}', 413),
}


@pytest.mark.parametrize(
    ("content_type", "raw", "status"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys()
)
async def test_malformed_request_is_rejected_and_stores_nothing(
    api: Client, db: asyncpg.Connection, content_type: str, raw: bytes, status: int
) -> None:
    resp = await api.post("/orders", data=raw, headers={"Content-Type": content_type})
    assert resp.status == status
    assert (await resp.json())["message"]
    assert await db.fetchval("SELECT count(*) FROM orders") == 0


@pytest.mark.parametrize("key", ["", "a" * 256, "with space", "tab\tkey", "cl\u00e9"])
async def test_bad_idempotency_key_is_400(api: Client, db: asyncpg.Connection, key: str) -> None:
    resp = await api.post("/orders", json=MARKET, headers={"Idempotency-Key": key})
    assert resp.status == 400
    assert "Idempotency-Key" in (await resp.json())["message"]
    assert await db.fetchval("SELECT count(*) FROM orders") == 0
