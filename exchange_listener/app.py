"""The listener's application: the ingest task, plus /metrics and /health on LISTENER_PORT."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from exchange_listener.keys import HTTP, POOL, SETTINGS
from exchange_listener.leader import lead_forever
from exchange_listener.settings import ListenerSettings
from orders_core.db import direct_database_url
from orders_core.limits import NO_BODY_MAX_BYTES
from orders_core.web import (
    live,
    metrics_handler,
    pool_context,
    ready_handler,
    request_context,
    running,
)


async def _ingest(app: web.Application) -> AsyncIterator[None]:
    app[HTTP] = aiohttp.ClientSession()
    dsn = direct_database_url(app[SETTINGS])
    async with running(lead_forever(dsn, app[HTTP], app[SETTINGS]), "ingest"):
        yield
    await app[HTTP].close()


def create_app(settings: ListenerSettings) -> web.Application:
    app = web.Application(middlewares=[request_context], client_max_size=NO_BODY_MAX_BYTES)
    app[SETTINGS] = settings
    # The pool serves /health/ready; the leader writes on a connection of its own.
    app.cleanup_ctx.extend([pool_context(SETTINGS, POOL, max_size=2), _ingest])
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready_handler(lambda r: r.app[POOL]))
    app.router.add_get("/metrics", metrics_handler())
    return app
