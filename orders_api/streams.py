"""`GET /orders/updates` (SPEC §9): an account's order changes as Server-Sent Events.

Each event is one row of the update log (orders_api.updates): `event: order`, `id: <cursor>`,
`data: <the order>`. A stream reads the log after its cursor in batches and waits for the hub
between them, so it holds one batch at most; a client that takes no write for SSE_SEND_TIMEOUT_S
is disconnected (aiohttp-sse), and resumes with its cursor. Heartbeats are aiohttp-sse's comment
lines every SSE_HEARTBEAT_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from orders_api import metrics, updates
from orders_api.keys import HUB, POOL, PRINCIPAL, SETTINGS
from orders_api.schemas import OrderModel, UpdatesHeaders, UpdatesQuery
from orders_core.db import DB_ERRORS
from orders_core.errors import BadRequest, Gone

log = logging.getLogger(__name__)

BATCH = 200  # events read (and held) at once per stream


async def order_updates(
    request: web.Request, query: UpdatesQuery, headers: UpdatesHeaders
) -> web.StreamResponse:
    settings, pool, hub = request.app[SETTINGS], request.app[POOL], request.app[HUB]
    account_id = request[PRINCIPAL].account_id
    asked = headers.last_event_id if headers.last_event_id is not None else query.after
    known = await updates.bounds(pool)
    if asked is not None and asked > known.head:
        raise BadRequest(f"No event {asked} yet: resume from an id this stream sent")
    if asked is not None and asked < known.purged_through:
        raise Gone(
            f"Events up to {known.purged_through} were purged (retention): read the orders "
            "with GET /orders, then open the stream without a cursor"
        )
    cursor = known.head if asked is None else asked

    stream = EventSourceResponse(
        ping_interval=settings.sse_heartbeat_s, send_timeout=settings.sse_send_timeout_s
    )
    stream.headers["X-Accel-Buffering"] = "no"  # no proxy may hold events back
    await stream.prepare(request)
    metrics.UPDATE_STREAMS.inc()
    reason = "client"
    gone = asyncio.ensure_future(stream.wait())  # done once the client is gone
    try:
        while not hub.stopping.is_set():
            changed = hub.changed
            try:
                rows = await updates.after(pool, account_id, cursor, BATCH)
            except DB_ERRORS:
                log.warning("update stream ended: the log could not be read", exc_info=True)
                reason = "database"
                break
            for row in rows:
                await stream.send(_order_json(row["body"]), id=str(row["seq"]), event="order")
                cursor = row["seq"]
                metrics.UPDATE_EVENTS_SENT.inc()
                metrics.UPDATE_DELIVERY.observe(_age_s(row["at"]))
            if len(rows) < BATCH and not await _woken(changed, gone):
                break
        else:
            reason = "shutdown"
    except TimeoutError:
        reason = "slow"
    except ConnectionResetError:
        reason = "client"
    finally:
        metrics.UPDATE_STREAMS.dec()
        metrics.UPDATE_STREAM_ENDS.labels(reason).inc()
        stream.stop_streaming()
        with contextlib.suppress(Exception):
            await gone
    return stream


async def _woken(changed: asyncio.Event, gone: asyncio.Future[None]) -> bool:
    """Wait until the log may have grown; False when the client is gone meanwhile. (`gone` is
    not cancelled here: that would cancel the heartbeats it waits for.)"""
    waiting = asyncio.ensure_future(changed.wait())
    try:
        done, _ = await asyncio.wait((waiting, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    return gone not in done


def _order_json(body: str) -> str:
    """The order as GET /orders/{id} writes it."""
    return OrderModel.model_validate_json(body).model_dump_json()


def _age_s(at: datetime) -> float:
    return max((datetime.now(UTC) - at).total_seconds(), 0.0)
