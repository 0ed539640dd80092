"""aiohttp pieces every service uses: request ids, one JSON error shape, request metrics,
`/metrics`, and the health endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
import uvloop
from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.multiprocess import MultiProcessCollector

from orders_core import http_errors, limits, workers
from orders_core.db import DB_ERRORS, Pool, create_pool_when_up, database_url
from orders_core.errors import ApiError
from orders_core.pool_metrics import refresh_pool_gauges
from orders_core.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
S = TypeVar("S", bound=Settings)
REQUEST_ID = web.RequestKey("request_id", str)
UNREADABLE_BODY = "Request body could not be read: it does not match its encoding or framing"
OUT_OF_RANGE = "A value of the request is outside what the service can store or compare"

HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP requests served, by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


# What aiohttp's HTTP layer refuses before any middleware runs is answered in JSON too.
http_errors.install()


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id in and out, JSON for every error, and the latency histogram."""
    request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
    request[REQUEST_ID] = request_id[:64]
    started = time.perf_counter()
    status = 500
    try:
        response = await _as_json_errors(request, handler)
        status = response.status
        response.headers["X-Request-ID"] = request[REQUEST_ID]
        _end_undecodable_body(request, response)
        return response
    finally:
        HTTP_DURATION.labels(request.method, _route(request), str(status)).observe(
            time.perf_counter() - started
        )


def _end_undecodable_body(request: web.Request, response: web.StreamResponse) -> None:
    """A body that does not decode (Content-Encoding, chunking), read or not by the handler: no
    more of it can be read. It is ended here and the connection closed after the answer, or
    aiohttp would read on after the answer, meet the same error and log an "Unhandled
    exception" for what is the client's mistake."""
    if request.content.exception() is not None:
        request.content.feed_eof()
        response.force_close()


async def _as_json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place an error becomes an answer: every error is `{"message"[, "errors"]}`."""
    request_id = request[REQUEST_ID]
    try:
        return await handler(request)
    except ApiError as exc:
        if exc.status >= 500:
            cause = exc.__cause__ or exc
            log.error("%s", exc.message, exc_info=cause, extra={"request_id": request_id})
        return web.json_response(exc.body(), status=exc.status, headers=exc.headers)
    except web.HTTPException as exc:  # the router's own 404/405, the body limit's 413
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.json_response({"message": exc.reason}, status=exc.status, headers=headers)
    except web.RequestPayloadError:  # the body does not decode (Content-Encoding, chunking)
        return web.json_response({"message": UNREADABLE_BODY}, status=400)
    except asyncpg.DataError as exc:
        # SQLSTATE class 22 ("data exception"), or a value the driver cannot encode: a value of
        # the request does not fit; the database is fine. The client's 400, not an outage. The
        # driver's text may quote the value: only its class goes to the log.
        log.warning(
            "a value was refused by the database: %s (SQLSTATE %s)",
            type(exc).__name__,
            exc.sqlstate,
            extra={"request_id": request_id},
        )
        return web.json_response({"message": OUT_OF_RANGE}, status=400)
    except DB_ERRORS:
        log.exception("database unavailable", extra={"request_id": request_id})
        return web.json_response(
            {"message": "Service unavailable: database unreachable"}, status=503
        )
    except Exception:
        log.exception("unhandled error", extra={"request_id": request_id})
        return web.json_response({"message": "Internal server error"}, status=500)


async def live(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def ready_handler(pool_of: Callable[[web.Request], Pool]) -> Handler:
    """`/health/ready`: 200 while the database answers, 503 otherwise."""

    async def ready(request: web.Request) -> web.Response:
        try:
            await pool_of(request).fetchval("SELECT 1", timeout=2)
        except DB_ERRORS as exc:
            log.warning("not ready: database unreachable: %r", exc)
            return web.json_response(
                {"status": "unavailable", "message": "database unreachable"}, status=503
            )
        return web.json_response({"status": "ok"})

    return ready


def pool_context(
    settings_key: web.AppKey[S], pool_key: web.AppKey[Pool], max_size: int | None = None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A `cleanup_ctx` that opens the service's database pool first (waiting for the database:
    nothing listens meanwhile, so health checks see the service as not ready) and closes it last."""

    async def pool(app: web.Application) -> AsyncIterator[None]:
        settings = app[settings_key]
        if max_size is not None:
            settings = settings.model_copy(update={"db_pool_max_size": max_size})
        app[pool_key] = await create_pool_when_up(database_url(settings), settings)
        if workers.shared_metrics_on():  # the pool's gauges, for whichever worker is scraped
            async with running(refresh_pool_gauges(), "pool-gauges"):
                yield
        else:
            yield
        await app[pool_key].close()

    return pool


@contextlib.asynccontextmanager
async def running(job: Coroutine[Any, Any, None], name: str) -> AsyncIterator[asyncio.Task[None]]:
    """A background task owned by an app's `cleanup_ctx`: started on entry, cancelled and awaited
    on exit (`async with running(loop(), "name"): yield`)."""
    task = asyncio.create_task(job, name=name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def metrics_handler() -> Handler:
    """This process's metrics; with several workers (orders_core.workers), every worker's,
    summed (their live gauges: of the workers alive)."""
    if not workers.shared_metrics_on():
        return make_aiohttp_handler(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return make_aiohttp_handler(registry)


def serve(app: web.Application, name: str, settings: Settings, port: int) -> None:
    """Run a service's application until SIGINT/SIGTERM, on uvloop, on `BIND_HOST`, with the
    server limits of `settings` (`orders_core.limits`: head timeout, keep-alive, connection cap)."""
    host = settings.bind_host
    log.info("%s on http://%s:%d", name, host, port)
    loop = uvloop.new_event_loop()
    limits.run(app, host, port, limits.ServerLimits.of(settings), loop, workers.is_worker())
