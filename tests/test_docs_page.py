"""`/docs` as a user sees it: Swagger UI in a headless browser with no network beyond loopback,
every operation of `/openapi.json` rendered; and the document's examples, which must be there
for every operation and must be what the API really answers."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from orders_api.routes import SPEC
from orders_core.apikeys import Scope
from tests.api_fixtures import ApiFactory
from tests.browser import announce, beyond_loopback, browser
from tests.helpers import bearer, make_key

Client = TestClient[web.Request, web.Application]
# The operations' summaries as Swagger UI shows them: (METHOD, path) of every rendered block.
RENDERED = """[...document.querySelectorAll('.opblock')].map(b => [
    b.querySelector('.opblock-summary-method').textContent,
    b.querySelector('.opblock-summary-path').getAttribute('data-path')])"""


def _operations() -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in SPEC["paths"].items() for m in ops}


async def test_docs_render_every_operation_with_no_network_beyond_loopback(
    api: Client, request: pytest.FixtureRequest
) -> None:
    async with browser() as chrome:
        page = await chrome.new_page()
        await page.goto(str(api.make_url("/docs")))
        await page.wait_for(f"document.querySelectorAll('.opblock').length >= {len(_operations())}")
        rendered = {tuple(op) for op in await page.evaluate(RENDERED)}
        assert rendered == _operations()
        assert await page.evaluate("document.querySelector('.errors-wrapper') === null")
        # The request body's examples are offered: open POST /orders.
        await page.evaluate("document.querySelector('#operations-default-post_orders "
                            ".opblock-summary-control').click()")  # fmt: skip
        options = await page.wait_for(
            "[...document.querySelectorAll('#operations-default-post_orders select option')]"
            ".map(o => o.textContent).join('|') || null"
        )
        assert "market" in options
        assert "limit" in options
        announce(request.config, await page.screenshot("docs.png"), "/docs")
    assert any(url.endswith("/openapi.json") for url in page.requests)
    assert beyond_loopback(page.requests) == []
    assert page.failed == []
    assert page.errors == []


def _media(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every JSON body of every operation that a model describes: (operation, what, media)."""
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            name = f"{method.upper()} {path}"
            if "requestBody" in op:
                out.append((name, "request", op["requestBody"]["content"]["application/json"]))
            for status, response in op["responses"].items():
                media = response.get("content", {}).get("application/json")
                if media is not None and "$ref" in media["schema"]:
                    out.append((name, status, media))
    return out


def test_every_operation_has_examples_that_fit_its_schemas() -> None:
    for operation, what, media in _media(SPEC):
        examples = media.get("examples")
        assert examples, (operation, what)
        validator = jsonschema_rs.validator_for(
            {**media["schema"], "components": SPEC["components"]}
        )
        for key, example in examples.items():
            assert example["summary"], (operation, what, key)
            validator.validate(example["value"])
    body = SPEC["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]
    assert {e["value"]["type"] for e in body["examples"].values()} == {"market", "limit"}


def _example(method: str, path: str, status: int, key: str) -> Any:
    responses = SPEC["paths"][path][method]["responses"]
    return responses[str(status)]["content"]["application/json"]["examples"][key]["value"]


@pytest.mark.parametrize(
    ("method", "path", "url", "kwargs", "status", "key"),
    [
        ("get", "/orders/{id}", "/orders/42", {}, 400, "bad_id"),
        ("get", "/orders", "/orders?limit=0", {}, 400, "bad_limit"),
        ("post", "/orders", "/orders", {"json": []}, 400, "not_an_object"),
        ("post", "/orders", "/orders", {"json": {}, "headers": {"Idempotency-Key": "a b"}},
         400, "bad_idempotency_key"),
        ("post", "/orders", "/orders", {"data": "{}"}, 415, "not_json"),
        ("post", "/orders", "/orders", {"json": {"type": "limit", "side": "sell",
         "instrument": "DE0007164600", "limit_price": None, "quantity": 5}}, 422, "invalid_order"),
        ("post", "/orders", "/orders", {"data": b"x" * 70_000,
         "headers": {"Content-Type": "application/json"}}, 413, "too_large"),
        ("get", "/orders/{id}", "/orders/6f1c6a56-6f64-4cf1-9b8e-3a3c6c1f0e59", {}, 404,
         "not_found"),
        ("get", "/docs/static/{file}", "/docs/static/index.html", {}, 400, "no_such_file"),
    ],
)  # fmt: skip
async def test_error_examples_are_what_the_api_answers(
    api: Client,
    method: str,
    path: str,
    url: str,
    kwargs: dict[str, Any],
    status: int,
    key: str,
) -> None:
    resp = await api.request(method.upper(), url, **kwargs)
    assert resp.status == status
    assert await resp.json() == _example(method, path, status, key)


async def test_key_errors_are_what_the_api_answers(make_api: ApiFactory, db_url: str) -> None:
    reader = await make_api(headers=bearer(await make_key(db_url, "r", Scope.READ)))
    resp = await reader.post("/orders", json={})
    assert resp.status == 403
    assert await resp.json() == _example("post", "/orders", 403, "read_only")
    nobody = await make_api(headers={"Accept": "application/json"})
    resp = await nobody.get("/orders")
    assert resp.status == 401
    assert await resp.json() == _example("get", "/orders", 401, "no_key")
    stranger = await make_api(headers=bearer("ok_000000000000_" + "x" * 43))
    resp = await stranger.get("/orders")
    assert resp.status == 401
    assert await resp.json() == _example("get", "/orders", 401, "unknown_key")
