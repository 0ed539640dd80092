"""The errors a request handler raises. One middleware (`orders_core.web.request_context`) renders
each as the one JSON shape of SPEC §2: `{"message": ...}`, plus `errors` for validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import ValidationError


class ApiError(Exception):
    """An answer other than success. The status is the class's; the message goes to the client
    as it is, so it never carries internal detail: a 5xx's cause goes to the log instead."""

    status: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    """No key, a malformed one, an unknown or a revoked one (SPEC §7)."""

    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="orders"'})


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Gone(ApiError):
    status = 410


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class Unprocessable(ApiError):
    status = 422


class TooManyRequests(ApiError):
    status = 429


class InternalError(ApiError):
    status = 500


class Unavailable(ApiError):
    status = 503


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as `[{loc, msg, type}]`, without echoing the input or linking docs."""
    return [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
