"""The application factory of the stand-in exchange."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress

from aiohttp import web

from exchange_sim import handlers, http_errors, stream
from exchange_sim.book import Book
from exchange_sim.config import SimConfig
from exchange_sim.events import EventLog
from exchange_sim.faults import Faults
from exchange_sim.keys import BOOK, FAULTS, LIFECYCLE, TRAFFIC
from exchange_sim.lifecycle import Lifecycle
from exchange_sim.limits import MAX_BODY_BYTES
from exchange_sim.traffic import Traffic

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# What aiohttp's HTTP layer refuses before any middleware runs is answered in JSON too.
http_errors.install()


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One error shape, `{"message": ...}`, for unknown routes, wrong methods, bodies that do not
    decode, and crashes."""
    try:
        response = await _answer(request, handler)
    except web.HTTPException:  # below 400: a redirect, aiohttp's to answer
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = handlers.json_error(500, "Internal server error")
    if request.content.exception() is not None:
        # A body that does not decode (Content-Encoding, chunking), read or not: ended here and
        # closed after the answer, or aiohttp reads on, meets the error and logs a crash.
        request.content.feed_eof()
        response.force_close()
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.RequestPayloadError:
        return handlers.json_error(400, "request body could not be read: bad encoding")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = handlers.json_error(exc.status, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/v1/orders", handlers.place_order)
    app.router.add_get("/v1/orders", stream.updated_orders)
    app.router.add_get("/v1/stream", stream.stream)
    app.router.add_get("/v1/orders/{client_order_id}", handlers.get_order)
    app.router.add_delete("/v1/orders/{client_order_id}", handlers.cancel_order)
    app.router.add_get("/_sim/config", handlers.get_config)
    app.router.add_post("/_sim/config", handlers.update_config)
    app.router.add_get("/_sim/ledger", handlers.ledger)
    app.router.add_get("/_sim/requests", handlers.requests_seen)
    app.router.add_get("/_sim/placements", handlers.placements)
    app.router.add_get("/_sim/stats", handlers.stats)
    app.router.add_post("/_sim/reset", handlers.reset)
    app.router.add_post("/_sim/disconnect", stream.disconnect)
    app.router.add_get("/health", handlers.health)


async def run_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """The lifecycle engine runs while the app does."""
    task = asyncio.create_task(app[LIFECYCLE].run())
    yield
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def close_streams(app: web.Application) -> None:
    """on_shutdown: end every stream connection, so a stop need not wait for them."""
    app[BOOK].events.disconnect_all()


def create_app(config: SimConfig) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY_BYTES)
    faults = Faults(config)
    app[FAULTS] = faults
    app[BOOK] = Book(EventLog(lambda: faults.config.retention))
    app[LIFECYCLE] = Lifecycle(app[BOOK], faults)
    app[TRAFFIC] = Traffic()
    app.cleanup_ctx.append(run_lifecycle)
    app.on_shutdown.append(close_streams)
    setup_routes(app)
    return app
