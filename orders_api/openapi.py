"""The OpenAPI 3.1 document, generated from the route table and the pydantic models, with the
examples of orders_api.examples (made by the same models). `/docs` shows it (orders_api.docs)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from orders_api.auth import PROTECTED, READ_METHODS
from orders_api.examples import error_examples, request_examples, response_examples
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
    media_type: str | tuple[str, ...] = "application/json"  # of a success without a model


def protected(e: Endpoint) -> bool:
    """Whether the route needs an API key (orders_api.auth decides the same way)."""
    return e.path == PROTECTED or e.path.startswith(PROTECTED + "/")


# What orders_api.auth and .ratelimit answer on every protected route (403: a write with a
# read-only key).
UNAUTHORIZED = (ErrorModel, "no API key, or a malformed, unknown or revoked one")
FORBIDDEN = (ErrorModel, "this API key may only read (scope read)")
TOO_MANY = (ErrorModel, "past this API key's rate limit; retry after Retry-After seconds")
RETRY_AFTER = {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}
LOCATION = {"description": "where to go instead", "schema": {"type": "string"}}
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
        content = _json(refs[(e.body, "validation")], request_examples(e.body))
        op["requestBody"] = {"required": True, "content": content}
    parts = {m.__name__ for m in declared(e.handler).values()}
    if e.body is not None:
        parts.add("body")
    op["responses"] = {}
    for status, (model, description) in sorted(e.responses.items()):
        response: dict[str, Any] = {"description": description}
        if model is not None:
            examples = (
                error_examples(model, status, parts) if model is ErrorModel
                else response_examples(model)
            )  # fmt: skip
            response["content"] = _json(refs[(model, "serialization")], examples)
        elif status < 300:
            types = (e.media_type,) if isinstance(e.media_type, str) else e.media_type
            response["content"] = {t: {"schema": {"type": "string"}} for t in types}
        if 300 <= status < 400:
            response["headers"] = {"Location": LOCATION}
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


def _json(schema: Any, examples: dict[str, Any]) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = examples
    return {"application/json": media}
