"""Reading a request body: a JSON object, or a clear 4xx (SPEC §2), never a 5xx."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from orders_core.errors import (
    BadRequest,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
    validation_errors,
)

MAX_BODY_BYTES = 64 * 1024
TOO_LARGE = f"Request body must be at most {MAX_BODY_BYTES} bytes"
M = TypeVar("M", bound=BaseModel)


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a dict; numbers with a fraction arrive as exact Decimals, never floats."""
    if request.content_type != "application/json" and not request.content_type.endswith("+json"):
        raise UnsupportedMediaType("Content-Type must be application/json")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(TOO_LARGE)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(TOO_LARGE) from exc
    try:
        data = json.loads(raw, parse_float=Decimal, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest("Request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    return data


def validate(model: type[M], data: dict[str, Any], message: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Unprocessable(message, errors=validation_errors(exc)) from exc
