"""Reading orders, health, metrics, and the OpenAPI document kept equal to the code."""

from __future__ import annotations

import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from orders_api.routes import SPEC
from orders_api.schemas import ErrorModel, OrderModel, OrdersPage
from tests.helpers import LIMIT, MARKET
from tests.sim import SimProcess

Client = TestClient[web.Request, web.Application]


async def test_get_order(api: Client) -> None:
    created = await (await api.post("/orders", json=LIMIT)).json()
    resp = await api.get(f"/orders/{created['id']}")
    assert resp.status == 200
    assert await resp.json() == created


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/orders/6f1c6a56-6f64-4cf1-9b8e-3a3c6c1f0e59", 404),
        ("/orders/not-a-uuid", 400),
        ("/orders/6f1c6a56-6f64-4cf1-9b8e-3a3c6c1f0e59/events", 404),
        ("/orders/not-a-uuid/events", 400),
    ],
)
async def test_get_unknown_or_malformed_id(api: Client, path: str, status: int) -> None:
    resp = await api.get(path)
    assert resp.status == status
    ErrorModel.model_validate(await resp.json())


async def test_events_of_an_order_without_any_yet_is_an_empty_list(api: Client) -> None:
    created = await (await api.post("/orders", json=LIMIT)).json()
    resp = await api.get(f"/orders/{created['id']}/events")
    assert resp.status == 200
    assert await resp.json() == {"events": []}


async def test_list_is_newest_first_with_keyset_pages(api: Client) -> None:
    ids = [(await (await api.post("/orders", json=MARKET)).json())["id"] for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2"} | ({"after": cursor} if cursor else {})
        page = await (await api.get("/orders", params=params)).json()
        OrdersPage.model_validate(page)
        seen += [o["id"] for o in page["orders"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


async def test_list_filters_by_status(api: Client, exchange: SimProcess) -> None:
    ok = (await (await api.post("/orders", json=MARKET)).json())["id"]
    await exchange.configure(reject_rate=1.0)
    failed = (await (await api.post("/orders", json=MARKET)).json())["id"]
    page = await (await api.get("/orders", params={"status": "FAILURE"})).json()
    assert [o["id"] for o in page["orders"]] == [failed]
    page = await (await api.get("/orders", params={"status": "SUCCESS"})).json()
    assert [o["id"] for o in page["orders"]] == [ok]
    assert (await (await api.get("/orders", params={"status": "IN PROGRESS"})).json())[
        "orders"
    ] == []


@pytest.mark.parametrize(
    "params",
    [
        {"status": "DONE"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"after": "@@"},
        {"after": "WzEsMl0"},
    ],
)
async def test_list_rejects_bad_parameters(api: Client, params: dict[str, str]) -> None:
    resp = await api.get("/orders", params=params)
    assert resp.status == 400
    assert (await resp.json())["message"]


async def test_health(api: Client) -> None:
    assert (await api.get("/health/live")).status == 200
    ready = await api.get("/health/ready")
    assert ready.status == 200
    assert (await ready.json())["status"] == "ok"


async def test_metrics_count_placements_by_outcome(api: Client, exchange: SimProcess) -> None:
    await exchange.configure(reject_rate=1.0)
    before = _metric(await (await api.get("/metrics")).text(), 'outcome="rejected"')
    await api.post("/orders", json=MARKET)
    text = await (await api.get("/metrics")).text()
    assert _metric(text, 'outcome="rejected"') == before + 1
    for outcome in ("accepted", "unavailable", "unknown"):
        assert f'orders_placement_attempts_total{{outcome="{outcome}"}}' in text
    assert 'http_request_duration_seconds_count{method="POST",route="/orders",status="201"}' in text


def _metric(text: str, label: str) -> float:
    for line in text.splitlines():
        if line.startswith("orders_placement_attempts_total{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample with {label}")


async def test_openapi_matches_the_router(api: Client) -> None:
    doc = await (await api.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in api.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented


async def test_openapi_schemas_describe_real_responses(api: Client) -> None:
    order = await (await api.post("/orders", json=LIMIT)).json()
    schemas = SPEC["components"]["schemas"]
    assert set(schemas["OrderModel"]["required"]) == set(order)
    OrderModel.model_validate(order)
    body = schemas["CreateOrderModel"]  # one of two shapes, by `type`
    assert body["discriminator"]["propertyName"] == "type"
    for variant in body["oneOf"]:
        shape = schemas[variant["$ref"].rsplit("/", 1)[-1]]
        assert set(shape["properties"]) == set(LIMIT)
        assert shape["additionalProperties"] is False
    op = SPEC["paths"]["/orders"]["post"]
    assert set(op["responses"]) >= {"201", "400", "409", "413", "415", "422", "500"}


async def test_docs_page_is_swagger_ui_served_from_here(api: Client) -> None:
    """The page and every file it loads come from this API (tests/test_docs_page.py renders it
    in a browser); `/` leads to it."""
    resp = await api.get("/docs")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "connect-src 'self'" in resp.headers["Content-Security-Policy"]
    page = await resp.text()
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "/docs/static/swagger-ui-bundle.js" in loaded
    for url in loaded:
        assert url.startswith("/"), url  # nothing from elsewhere
        if not url.startswith("/docs/static/"):
            continue  # a link (/openapi.json), not a file the page loads
        file = await api.get(url)
        assert file.status == 200, url
        assert file.content_type in {"text/javascript", "text/css", "image/png"}, url
    assert '"/openapi.json"' in await (await api.get("/docs/static/docs.js")).text()
    assert (await api.get("/docs/static/index.html")).status == 400  # only the page's files
    root = await api.get("/", allow_redirects=False)
    assert root.status == 302
    assert root.headers["Location"] == "/docs"
