"""The tracker's route table."""

from __future__ import annotations

from aiohttp import web

from orders_core.params import typed
from orders_core.web import live, ready_handler
from tracker import handlers
from tracker.keys import POOL


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", typed(handlers.index))
    app.router.add_get("/orders/{id}", typed(handlers.order_page))
    app.router.add_get("/failures", typed(handlers.failures))
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready_handler(lambda r: r.app[POOL]))
