"""The API's application factory: middlewares, routes, and the resources in dependency order."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import aiojobs
from aiohttp import web

from orders_api.auth import authenticate
from orders_api.keyring import Keyring
from orders_api.keys import (
    HTTP,
    HUB,
    INSTANCE,
    KEYRING,
    PLACER,
    POOL,
    RETRIER,
    SCHEDULER,
    SETTINGS,
)
from orders_api.placement import Placer
from orders_api.policy import Policy
from orders_api.ratelimit import rate_limit
from orders_api.requests import MAX_BODY_BYTES
from orders_api.retrier import Retrier
from orders_api.routes import setup_routes
from orders_api.settings import ApiSettings
from orders_api.updates import Hub
from orders_core.db import direct_database_url
from orders_core.exchange import ExchangeClient, new_session
from orders_core.web import pool_context, request_context, running


async def _exchange(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[HTTP] = new_session(settings.exchange_max_connections)
    client = ExchangeClient(app[HTTP], settings.exchange_url, settings.placement_timeout_s)
    app[PLACER] = Placer(app[POOL], client, Policy.from_settings(settings), app[INSTANCE])
    yield
    await app[HTTP].close()


async def _keys(app: web.Application) -> AsyncIterator[None]:
    app[KEYRING] = Keyring(app[POOL], app[SETTINGS].key_cache_s)
    yield


async def _retries(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[SCHEDULER] = scheduler = aiojobs.Scheduler(
        limit=settings.retry_concurrency, pending_limit=settings.retry_concurrency
    )
    app[RETRIER] = retrier = Retrier(
        app[POOL],
        app[PLACER],
        scheduler,
        app[INSTANCE],
        settings.lease_s,
        settings.sweep_interval_s,
        settings.retry_concurrency,
    )
    async with running(retrier.run(), "retry-sweep"):
        yield
    await scheduler.close()
    await retrier.release()


async def _updates(app: web.Application) -> AsyncIterator[None]:
    """The update log's sequencer and this instance's LISTEN (SPEC §9); streams end first."""
    settings = app[SETTINGS]
    app[HUB] = hub = Hub()
    listen = hub.listen(
        direct_database_url(settings), settings.updates_poll_s, settings.db_acquire_timeout_s
    )
    sequencer = hub.sequence_forever(app[POOL], settings.updates_sequence_interval_s)
    async with running(listen, "updates-listen"), running(sequencer, "updates-sequencer"):
        yield


async def _end_streams(app: web.Application) -> None:
    app[HUB].stop()


def create_app(settings: ApiSettings) -> web.Application:
    # request_context first: it renders what the others and the handlers raise. rate_limit
    # after authenticate: only a proven key spends its tokens.
    app = web.Application(
        middlewares=[request_context, authenticate, rate_limit(settings)],
        client_max_size=MAX_BODY_BYTES,
    )
    app[SETTINGS] = settings
    app[INSTANCE] = f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"
    app.cleanup_ctx.extend([pool_context(SETTINGS, POOL), _keys, _exchange, _retries, _updates])
    app.on_shutdown.append(_end_streams)
    setup_routes(app)
    return app
