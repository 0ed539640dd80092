"""The tracker's application factory: middlewares, routes, and the resources in dependency order:
pool → HTTP session (webhook) → the reporting loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web

from orders_core.db import direct_database_url
from orders_core.limits import NO_BODY_MAX_BYTES
from orders_core.web import pool_context, request_context, running
from tracker.keys import HTTP, POOL, REPORT_URL, REPORTER, SETTINGS
from tracker.pages import FILTERS
from tracker.reporter import Reporter
from tracker.routes import setup_routes
from tracker.settings import TrackerSettings
from tracker.webhook import Webhook


async def _http(app: web.Application) -> AsyncIterator[None]:
    app[HTTP] = aiohttp.ClientSession()
    yield
    await app[HTTP].close()


async def _reporter(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    webhook = None
    if settings.tracker_webhook_url:
        webhook = Webhook(
            app[HTTP], settings.tracker_webhook_url, settings.tracker_webhook_timeout_s
        )
    dsn = direct_database_url(settings)
    app[REPORTER] = reporter = Reporter(app[POOL], dsn, settings, webhook, app[REPORT_URL])
    async with running(reporter.run(), "tracker-reports"):
        yield
    await reporter.close()


def report_url(settings: TrackerSettings) -> str:
    """Where a person reads the failure report: TRACKER_REPORT_URL, else the bind address."""
    base = settings.tracker_report_url or f"http://{settings.bind_host}:{settings.tracker_port}"
    return base.rstrip("/") + "/failures"


def create_app(settings: TrackerSettings) -> web.Application:
    app = web.Application(middlewares=[request_context], client_max_size=NO_BODY_MAX_BYTES)
    app[SETTINGS] = settings
    app[REPORT_URL] = report_url(settings)
    app.cleanup_ctx.extend([pool_context(SETTINGS, POOL), _http, _reporter])
    # The pages' templates: autoescaped, and a name a template misspells is an error, not "".
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("tracker", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        filters=FILTERS,
    )
    setup_routes(app)
    return app
