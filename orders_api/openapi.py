"""The OpenAPI 3.1 document, generated from the route table and the pydantic models, and `/docs`:
a server-rendered page of it (no JavaScript, nothing fetched from elsewhere)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from orders_api.auth import PROTECTED, READ_METHODS
from orders_api.schemas import ErrorModel
from orders_core.params import TypedHandler, declared, parameters

Mode = Literal["validation", "serialization"]


@dataclass(frozen=True)
class Endpoint:
    """One route. Its parameters are those its handler's signature declares (orders_core.params):
    the router parses with the same models that this document describes."""

    method: str
    path: str
    handler: TypedHandler
    summary: str
    responses: dict[int, tuple[type[BaseModel] | None, str]]
    body: type[BaseModel] | None = None
    media_type: str = "application/json"


def protected(e: Endpoint) -> bool:
    """Whether the route needs an API key (orders_api.auth decides the same way)."""
    return e.path == PROTECTED or e.path.startswith(PROTECTED + "/")


# What orders_api.auth and .ratelimit answer on every protected route (403: a write with a
# read-only key).
UNAUTHORIZED = (ErrorModel, "no API key, or a malformed, unknown or revoked one")
FORBIDDEN = (ErrorModel, "this API key may only read (scope read)")
TOO_MANY = (ErrorModel, "past this API key's rate limit; retry after Retry-After seconds")
RETRY_AFTER = {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "an API key, `ok_<id>_<secret>` (orders-keys create)",
}


def build(endpoints: list[Endpoint], title: str, version: str) -> dict[str, Any]:
    endpoints = [_with_auth_answers(e) for e in endpoints]
    models: list[tuple[type[BaseModel], Mode]] = []
    for e in endpoints:
        if e.body is not None:
            models.append((e.body, "validation"))
        models += [(m, "serialization") for m, _ in e.responses.values() if m is not None]
    refs, defs = models_json_schema(
        list(dict.fromkeys(models)), ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e, refs, endpoints)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"apiKey": SECURITY_SCHEME},
        },
    }


def _with_auth_answers(e: Endpoint) -> Endpoint:
    if not protected(e):
        return e
    responses = {401: UNAUTHORIZED, 429: TOO_MANY, **e.responses}
    if e.method not in READ_METHODS:
        responses.setdefault(403, FORBIDDEN)
    return replace(e, responses=responses)


def _operation_id(e: Endpoint) -> str:
    return re.sub(r"\W+", "_", f"{e.method} {e.path}").strip("_").lower()


def _operation(
    e: Endpoint, refs: Mapping[tuple[Any, Mode], Any], endpoints: list[Endpoint]
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": e.summary, "operationId": _operation_id(e)}
    if protected(e):
        op["security"] = [{"apiKey": []}]
    params = parameters(declared(e.handler))
    if params:
        op["parameters"] = params
    if e.body is not None:
        content = {"application/json": {"schema": refs[(e.body, "validation")]}}
        op["requestBody"] = {"required": True, "content": content}
    op["responses"] = {}
    for status, (model, description) in sorted(e.responses.items()):
        response: dict[str, Any] = {"description": description}
        if model is not None:
            response["content"] = {"application/json": {"schema": refs[(model, "serialization")]}}
        elif status < 300:
            response["content"] = {e.media_type: {"schema": {"type": "string"}}}
        if status == 429:
            response["headers"] = {"Retry-After": RETRY_AFTER}
        if status == 201 and (links := _links(e, model, endpoints)):
            response["links"] = links
        op["responses"][str(status)] = response
    return op


def _links(
    e: Endpoint, created: type[BaseModel] | None, endpoints: list[Endpoint]
) -> dict[str, Any]:
    """What a client can do next with what it created: every operation on `{path}/{id}` (and
    below it), its `id` taken from the answer's body."""
    if created is None or "id" not in created.model_fields:
        return {}
    item = f"{e.path}/{{id}}"
    return {
        _operation_id(other): {
            "operationId": _operation_id(other),
            "parameters": {"id": "$response.body#/id"},
        }
        for other in endpoints
        if other.path == item or other.path.startswith(item + "/")
    }


def render_docs(spec: dict[str, Any]) -> str:
    """A readable page of the document: every operation, its parameters, bodies and answers."""
    info = spec["info"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(info['title'])}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "code,pre{background:#f4f4f4}pre{padding:.5em;overflow:auto}"
        "h2{border-top:1px solid #ccc;padding-top:.5em}</style></head><body>",
        f"<h1>{html.escape(info['title'])} {html.escape(info['version'])}</h1>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>",
    ]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            parts.append(f"<h2><code>{method.upper()} {html.escape(path)}</code></h2>")
            parts.append(f"<p>{html.escape(op['summary'])}</p>")
            for p in op.get("parameters", []):
                parts.append(
                    f"<p>{p['in']} <code>{html.escape(p['name'])}</code>: "
                    f"{html.escape(p['description'])}</p>"
                )
            if "requestBody" in op:
                parts.append(f"<p>Body:</p>{_schema_html(op['requestBody'])}")
            for status, r in op["responses"].items():
                parts.append(f"<p><b>{status}</b> {html.escape(r['description'])}</p>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in spec["components"]["schemas"].items():
        parts.append(f"<h3 id='{html.escape(name)}'>{html.escape(name)}</h3>")
        parts.append(f"<pre>{html.escape(json.dumps(schema, indent=2))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _schema_html(body: dict[str, Any]) -> str:
    ref = body["content"]["application/json"]["schema"].get("$ref", "")
    name = ref.rsplit("/", 1)[-1]
    return f"<p><a href='#{html.escape(name)}'>{html.escape(name)}</a></p>"
