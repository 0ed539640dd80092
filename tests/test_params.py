"""Request parameters and errors (issue 8): one model both parses a parameter and documents it,
every bad value is a 400 with the one JSON error shape, and handlers build no error answers."""

from __future__ import annotations

import ast
import base64
import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from orders_api.routes import SPEC
from orders_core.backoff import backoff_s
from orders_core.params import parameters
from tests.helpers import fast_settings
from tracker.app import create_app as create_tracker

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[..., Awaitable[Client]]
ROOT = Path(__file__).resolve().parent.parent


def _routes(app: web.Application) -> list[tuple[str, str, Any]]:
    return [
        (r.method.lower(), r.resource.canonical, r.handler)
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    ]


async def test_openapi_parameters_are_the_models_that_parse_them(api: Client) -> None:
    documented = 0
    for method, path, handler in _routes(api.app):
        models = getattr(handler, "parameter_models", {})
        op = SPEC["paths"][path][method]
        assert op.get("parameters", []) == parameters(models), (method, path)
        documented += len(models)
    assert documented >= 4  # POST /orders headers, GET /orders query, two {id} paths
    listing = {p["name"]: p for p in SPEC["paths"]["/orders"]["get"]["parameters"]}
    assert listing["limit"]["schema"] == {
        "type": "integer", "minimum": 1, "maximum": 1000, "default": 100,
    }  # fmt: skip
    assert listing["status"]["schema"]["enum"] == ["SUCCESS", "IN PROGRESS", "FAILURE"]
    assert listing["after"]["required"] is False
    (order_id,) = SPEC["paths"]["/orders/{id}"]["get"]["parameters"]
    assert (order_id["in"], order_id["required"], order_id["schema"]["format"]) == (
        "path", True, "uuid",
    )  # fmt: skip
    (key,) = SPEC["paths"]["/orders"]["post"]["parameters"]
    assert (key["name"], key["in"]) == ("Idempotency-Key", "header")


async def test_the_documented_bounds_are_the_enforced_ones(api: Client) -> None:
    """Every integer query parameter: its documented maximum passes, one more is refused. (The
    update stream's cursor is also checked against the log: tests/test_updates.py.)"""
    checked = 0
    for path, ops in SPEC["paths"].items():
        if path == "/orders/updates":
            continue
        for p in ops.get("get", {}).get("parameters", []):
            schema = p["schema"]
            if p["in"] != "query" or schema.get("type") != "integer":
                continue
            ok = await api.get(path, params={p["name"]: str(schema["maximum"])})
            assert ok.status == 200, (path, p["name"])
            for bad in (schema["maximum"] + 1, schema["minimum"] - 1):
                resp = await api.get(path, params={p["name"]: str(bad)})
                assert resp.status == 400, (path, p["name"], bad)
                assert (await resp.json())["errors"][0]["loc"] == ["query", p["name"]]
            checked += 1
    assert checked == 1


def _cursor(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


# Deeper than Python's recursion limit, short enough for a request line.
NESTED = base64.urlsafe_b64encode(b"[" * 2500 + b"]" * 2500).decode().rstrip("=")
BAD_LISTINGS = [
    "limit=%2B5",  # +5
    "limit=%205",  # " 5"
    "limit=5_000",
    "limit=%D9%A1%D9%A0",  # Arabic-Indic 10
    "limit=" + "9" * 5000,  # past Python's integer-string limit
    "limit=5&limit=6",
    "status=DONE",
    "status=SUCCESS&status=FAILURE",
    "colour=blue",
    "after=" + NESTED,
    "after=" + _cursor(["0001-01-01T00:00:00+05:00", "00000000-0000-0000-0000-000000000001"]),
    "after=" + _cursor(["2026-11-27T00:00:00", "00000000-0000-0000-0000-000000000001"]),
]


@pytest.mark.parametrize("query", BAD_LISTINGS)
async def test_bad_listing_parameters_are_400_with_a_message(api: Client, query: str) -> None:
    resp = await api.get(f"/orders?{query}")
    assert resp.status == 400
    body = await resp.json()
    assert body["message"]
    assert set(body) <= {"message", "errors"}


async def test_a_repeated_idempotency_key_header_is_400(api: Client) -> None:
    order = {"type": "market", "side": "buy", "instrument": "US0378331005", "quantity": 1}
    headers = [("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    resp = await api.post("/orders", json=order, headers=headers)
    assert resp.status == 400
    assert "Idempotency-Key" in (await resp.json())["message"]


async def test_router_errors_are_json_too(api: Client) -> None:
    missing = await api.get("/nothing-here")
    assert missing.status == 404
    assert (await missing.json())["message"]
    wrong = await api.put("/orders")
    assert wrong.status == 405
    assert "POST" in wrong.headers["Allow"]
    assert (await wrong.json())["message"]


@pytest.mark.parametrize(
    "query",
    [
        "since=2026-11-27T00:00:00",  # no offset
        "since=0001-01-01T00:00:00%2B05:00",  # not an instant in UTC
        "until=yesterday",
        "instrument=US0378331006",  # wrong check digit
        "format=xml",
        "limit=0",
        "limit=5&limit=5",
        "after=" + NESTED,
        "page=2",
    ],
)
async def test_tracker_refuses_bad_filters_with_400(
    aiohttp_client: AiohttpClient, db_url: str, query: str
) -> None:
    tracker = await aiohttp_client(create_tracker(fast_settings(db_url, "http://127.0.0.1:9")))
    resp = await tracker.get(f"/failures?{query}")
    assert resp.status == 400
    assert (await resp.json())["message"]


async def test_tracker_takes_the_same_paging_as_the_api(
    aiohttp_client: AiohttpClient, db_url: str
) -> None:
    tracker = await aiohttp_client(create_tracker(fast_settings(db_url, "http://127.0.0.1:9")))
    ok = await tracker.get("/failures?limit=1000&since=2026-11-27T00:00:00%2B00:00")
    assert ok.status == 200
    assert await ok.json() == {"failures": [], "next": None}


def _handlers_that_answer_errors_themselves(path: Path) -> list[str]:
    """Functions with an `except` clause that returns (builds an answer) instead of raising."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ExceptHandler) and any(
                    isinstance(n, ast.Return) for n in ast.walk(inner)
                ):
                    found.append(f"{path.name}:{node.name}")
    return found


def test_handlers_raise_errors_and_one_middleware_renders_them() -> None:
    modules = [ROOT / "orders_api" / "handlers.py", ROOT / "tracker" / "handlers.py"]
    assert [f for m in modules for f in _handlers_that_answer_errors_themselves(m)] == []
    # and there is one error type: no module defines its own beside orders_core.errors
    for module in ROOT.glob("*/*.py"):
        if module.parts[-2] in ("orders_api", "tracker", "exchange_listener", "orders_core"):
            assert "class RequestError" not in module.read_text(), module
            assert "class QueryError" not in module.read_text(), module


def test_a_bad_tracker_variable_does_not_stop_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    from orders_api.settings import ApiSettings
    from tracker.settings import TrackerSettings

    monkeypatch.setenv("TRACKER_POLL_INTERVAL_S", "-1")
    monkeypatch.setenv("LISTENER_BATCH_MAX", "many")
    assert ApiSettings().orders_api_port == 8000
    with pytest.raises(ValueError, match="tracker_poll_interval_s"):
        TrackerSettings()


@pytest.mark.parametrize("attempt", [1, 2, 5, 10, 100, 10_000])
def test_backoff_is_capped_jittered_and_floored(attempt: int) -> None:
    rng = random.Random(attempt)
    waits = [backoff_s(attempt, 0.5, 30, rng) for _ in range(500)]
    ceiling = 30 if attempt > 64 else min(30, 0.5 * 2 ** (attempt - 1))
    assert all(0 <= w <= ceiling for w in waits)
    assert max(waits) > ceiling * 0.8  # full jitter: the whole range is used
    assert min(waits) < ceiling * 0.2
    floored = [backoff_s(attempt, 0.5, 30, rng, floor_s=0.5) for _ in range(100)]
    assert all(0.5 <= w <= max(0.5, ceiling) for w in floored)
