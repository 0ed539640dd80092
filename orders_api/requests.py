"""Reading a request body: a JSON object, or a clear 4xx (SPEC §2, §7), never a 5xx."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from orders_core import strict_json
from orders_core.errors import (
    BadRequest,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
    validation_errors,
)

MAX_BODY_BYTES = 64 * 1024
TOO_LARGE = f"Request body must be at most {MAX_BODY_BYTES} bytes"
# The codings aiohttp decodes (br and zstd only with libraries we do not install; aiohttp answers
# those itself). Anything else would reach us still encoded.
CONTENT_CODINGS = frozenset({"identity", "gzip", "deflate"})
BAD_CODING = "Content-Encoding must be one of: gzip, deflate, identity"
M = TypeVar("M", bound=BaseModel)


def _check_coding(request: web.Request) -> None:
    codings = request.headers.getall("Content-Encoding", [])
    if len(codings) > 1 or any(c.strip().lower() not in CONTENT_CODINGS for c in codings):
        raise BadRequest(BAD_CODING)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a dict, read by `orders_core.strict_json`: numbers with a fraction arrive as
    exact Decimals, never floats; a duplicate key, deep nesting or bad UTF-8 is a 400. A body
    that does not decode (not gzip after all) raises web.RequestPayloadError: the middleware
    answers 400."""
    if request.content_type != "application/json" and not request.content_type.endswith("+json"):
        raise UnsupportedMediaType("Content-Type must be application/json")
    _check_coding(request)
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(TOO_LARGE)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(TOO_LARGE) from exc
    try:
        data = strict_json.loads(raw)
    except strict_json.JsonInputError as exc:
        raise BadRequest(f"Request body {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    return data


def validate(model: type[M], data: dict[str, Any], message: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Unprocessable(message, errors=validation_errors(exc)) from exc
