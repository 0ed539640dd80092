"""What aiohttp's HTTP layer answers by itself, made JSON (SPEC §7).

A request the HTTP parser refuses (malformed request line or header, a head over the size
limits, bad framing: Content-Length, chunking, an undecodable Content-Encoding) never reaches the
application or its middlewares: aiohttp's connection handler answers it with
`RequestHandler.handle_error`, in `text/plain`, quoting the offending request bytes. aiohttp has
no public setting for that answer (the application, `AppRunner` and `run_app` only pass
constructor arguments to `RequestHandler`; `web.Server` always builds `RequestHandler` itself).
So `install()` replaces that one method on the class, for every server of the process: the same
status, `{"message": ...}` in JSON, a message chosen by the kind of error, never the bytes. It
checks the method's signature first, so an aiohttp that changed it fails at import, not quietly.
"""

from __future__ import annotations

import inspect
import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    ContentEncodingError,
    ContentLengthError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)

log = logging.getLogger(__name__)

# Most specific first: the message for the first class an error is an instance of.
MESSAGES: tuple[tuple[type[BaseException], str], ...] = (
    (LineTooLong, "The request line or a header is too long"),
    (BadHttpMethod, "Malformed request method"),
    (BadStatusLine, "Malformed request line"),
    (InvalidURLError, "Malformed request target"),
    (InvalidHeader, "Malformed request header"),
    (ContentEncodingError, "Unsupported Content-Encoding, or a body that does not match it"),
    (TransferEncodingError, "Malformed Transfer-Encoding or chunked body"),
    (ContentLengthError, "Malformed Content-Length"),
    (BadHttpMessage, "Malformed request"),
)
_SIGNATURE = ["self", "request", "status", "exc", "message"]
_original = web.RequestHandler.handle_error


def message_for(status: int, exc: BaseException | None) -> str:
    for kind, message in MESSAGES:
        if isinstance(exc, kind):
            return message
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
    """`RequestHandler.handle_error`, answering JSON. Like aiohttp's, it closes the connection
    after the answer, and raises ConnectionError when part of another answer is already out."""
    if status >= 500:
        self.log_exception("Error handling request", exc_info=exc)
    else:  # the client's mistake, or a scanner's: no traceback, no bytes of it in the log
        log.debug("refused by the HTTP layer: %d %s", status, type(exc).__name__)
    if request.writer.output_size > 0:
        raise ConnectionError(
            "Response is sent already, cannot send another response with the error message"
        )
    response = web.json_response({"message": message_for(status, exc)}, status=status)
    response.force_close()
    return response


def install() -> None:
    """Make every aiohttp server of this process answer its own errors in JSON (idempotent)."""
    if web.RequestHandler.handle_error is handle_error:
        return
    parameters = list(inspect.signature(_original).parameters)
    if parameters != _SIGNATURE:
        raise RuntimeError(f"aiohttp's RequestHandler.handle_error changed: {parameters}")
    web.RequestHandler.handle_error = handle_error  # type: ignore[method-assign]
