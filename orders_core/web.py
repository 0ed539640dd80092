"""aiohttp pieces every service uses: request ids, one JSON error shape, request metrics,
`/metrics`, and the health endpoints."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import uvloop
from aiohttp import web
from prometheus_client import REGISTRY, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler

from orders_core.db import DB_ERRORS, Pool, create_pool, database_url
from orders_core.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = web.RequestKey("request_id", str)

HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP requests served, by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def json_error(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"message": message, **extra}, status=status)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


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
        return response
    finally:
        HTTP_DURATION.labels(request.method, _route(request), str(status)).observe(
            time.perf_counter() - started
        )


async def _as_json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = json_error(exc.status, exc.reason)
        for name in ("Allow",):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except DB_ERRORS:
        log.exception("database unavailable", extra={"request_id": request[REQUEST_ID]})
        return json_error(503, "Service unavailable: database unreachable")
    except Exception:
        log.exception("unhandled error", extra={"request_id": request[REQUEST_ID]})
        return json_error(500, "Internal server error")


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
    settings_key: web.AppKey[Settings], pool_key: web.AppKey[Pool], max_size: int | None = None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A `cleanup_ctx` that opens the service's database pool first and closes it last."""

    async def pool(app: web.Application) -> AsyncIterator[None]:
        settings = app[settings_key]
        if max_size is not None:
            settings = settings.model_copy(update={"db_pool_max_size": max_size})
        app[pool_key] = await create_pool(database_url(settings), settings)
        yield
        await app[pool_key].close()

    return pool


def metrics_handler() -> Handler:
    return make_aiohttp_handler(REGISTRY)


def serve(app: web.Application, name: str, host: str, port: int) -> None:
    """Run a service's application until SIGINT/SIGTERM, on uvloop."""
    log.info("%s on http://%s:%d", name, host, port)
    web.run_app(
        app, host=host, port=port, print=None, access_log=None, loop=uvloop.new_event_loop()
    )
