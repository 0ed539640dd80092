"""What aiohttp's HTTP layer answers by itself, made JSON: a malformed request line or header, a
head over the limits, bad framing. Those never reach a middleware: aiohttp answers them with
`RequestHandler.handle_error`, in text/plain, quoting the request's bytes, and has no setting
for it. `install()` replaces that method (its signature checked first): same status, a JSON
`message`, never the bytes. The services do the same (orders_core.http_errors); the stand-in
imports nothing of ours, so this is its own."""

from __future__ import annotations

import inspect
import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, ContentEncodingError, LineTooLong

log = logging.getLogger(__name__)
_original = web.RequestHandler.handle_error


def _message(status: int, exc: BaseException | None) -> str:
    if isinstance(exc, LineTooLong):
        return "The request line or a header is too long"
    if isinstance(exc, ContentEncodingError):
        return "Unsupported Content-Encoding, or a body that does not match it"
    if isinstance(exc, BadHttpMessage):
        return "Malformed request"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def handle_error(
    self: web.RequestHandler,
    request: web.BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,  # aiohttp's text, which quotes the request: never sent
) -> web.StreamResponse:
    if status >= 500:
        self.log_exception("Error handling request", exc_info=exc)
    else:
        log.debug("refused by the HTTP layer: %d %s", status, type(exc).__name__)
    if request.writer.output_size > 0:
        raise ConnectionError("Response is sent already, cannot send another response")
    response = web.json_response({"message": _message(status, exc)}, status=status)
    response.force_close()
    return response


def install() -> None:
    if web.RequestHandler.handle_error is handle_error:
        return
    parameters = list(inspect.signature(_original).parameters)
    if parameters != ["self", "request", "status", "exc", "message"]:
        raise RuntimeError(f"aiohttp's RequestHandler.handle_error changed: {parameters}")
    web.RequestHandler.handle_error = handle_error  # type: ignore[method-assign]
