"""Reading a request body: JSON object or a clear 4xx (SPEC §2), never a 5xx."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

MAX_BODY_BYTES = 64 * 1024
M = TypeVar("M", bound=BaseModel)


class RequestError(Exception):
    def __init__(self, status: int, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    def response(self) -> web.Response:
        body: dict[str, Any] = {"message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        return web.json_response(body, status=self.status)


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a dict; numbers with a fraction arrive as exact Decimals, never floats."""
    if request.content_type != "application/json" and not request.content_type.endswith("+json"):
        raise RequestError(415, "Content-Type must be application/json")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise RequestError(413, f"Request body must be at most {MAX_BODY_BYTES} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise RequestError(413, f"Request body must be at most {MAX_BODY_BYTES} bytes") from exc
    try:
        data = json.loads(raw, parse_float=Decimal, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, "Request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise RequestError(400, "Request body must be a JSON object")
    return data


def validate(model: type[M], data: dict[str, Any], message: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise RequestError(422, message, errors) from exc
