"""The exchange's HTTP endpoints (SPEC §3). Thin: decisions live in `Faults`, state in `Book`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiohttp import web

from exchange_sim import strict_json
from exchange_sim.keys import BOOK, FAULTS, LIFECYCLE, TRAFFIC
from exchange_sim.schemas import (
    PlaceOrder,
    parse_place_order,
    peek_client_order_id,
    peek_valid_until,
)

UNAVAILABLE = "Connection not available"


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def outage() -> web.Response:
    return json_error(503, "exchange unavailable (outage)")


async def _latency(app: web.Application) -> None:
    await asyncio.sleep(app[FAULTS].latency_s)


# --- /v1: the exchange's API ----------------------------------------------------------------


# What aiohttp decodes; another coding would reach a handler still encoded (br and zstd only
# with libraries not installed here: aiohttp refuses those itself).
CONTENT_CODINGS = frozenset({"identity", "gzip", "deflate"})


async def read_body(request: web.Request) -> bytes:
    """The body, decoded; 400 for a Content-Encoding the venue cannot read."""
    codings = request.headers.getall("Content-Encoding", [])
    if len(codings) > 1 or any(c.strip().lower() not in CONTENT_CODINGS for c in codings):
        raise web.HTTPBadRequest(reason="Content-Encoding must be gzip, deflate or identity")
    return await request.read()


async def place_order(request: web.Request) -> web.Response:
    traffic = request.app[TRAFFIC]
    received_at = datetime.now(UTC)
    raw = await read_body(request)
    client_order_id = peek_client_order_id(raw)
    record = traffic.placement(client_order_id, received_at, peek_valid_until(raw))
    with traffic.track(client_order_id, "place"):
        response = await _place(request.app, raw)
    record.answered(response.status)
    return response


async def _place(app: web.Application, raw: bytes) -> web.Response:
    faults = app[FAULTS]
    if faults.config.outage:
        return outage()
    if faults.placement_unavailable():
        return json_error(503, UNAVAILABLE)
    try:
        order_request = parse_place_order(raw)
    except ValueError as exc:
        return json_error(400, str(exc))
    # The decision is the venue's, not the client's: a client that gives up (its request is
    # cancelled here) does not stop it, so a slow venue really books orders after the client's
    # timeout (SPEC §3). Only the wait of a booked-but-never-answered request is cancelled.
    response, hang = await asyncio.shield(asyncio.ensure_future(_decide_later(app, order_request)))
    if hang:
        await asyncio.Event().wait()  # booked, never answered: cancelled when the client leaves
    return response


async def _decide_later(
    app: web.Application, order_request: PlaceOrder
) -> tuple[web.Response, bool]:
    await _latency(app)
    return _decide(app, order_request)


def _decide(app: web.Application, order_request: PlaceOrder) -> tuple[web.Response, bool]:
    """After the latency, with no await until booked: deadline, refusal, duplicate, booking.
    Also whether to leave the answer unsent (timeout_rate)."""
    faults, book = app[FAULTS], app[BOOK]
    now = datetime.now(UTC)
    if now > order_request.valid_until:
        return json_error(408, "deadline passed"), False
    if faults.rejects():
        return json_error(400, "order rejected: risk limits exceeded"), False
    held = book.get(order_request.client_order_id)
    if held is not None and not faults.config.accept_duplicate_ids:
        return web.json_response(held.as_json(), status=409), False
    hang = faults.hangs()
    order = book.book(order_request, now)
    app[LIFECYCLE].schedule(order)
    return web.json_response(order.as_json(), status=201), hang


async def get_order(request: web.Request) -> web.Response:
    client_order_id = request.match_info["client_order_id"]
    with request.app[TRAFFIC].track(client_order_id, "lookup"):
        if request.app[FAULTS].config.outage:
            return outage()
        await asyncio.sleep(request.app[FAULTS].lookup_latency_s)
        order = request.app[BOOK].get(client_order_id)
        if order is None:
            return json_error(404, "order not found")
        return web.json_response(order.as_json())


async def cancel_order(request: web.Request) -> web.Response:
    client_order_id = request.match_info["client_order_id"]
    with request.app[TRAFFIC].track(client_order_id, "cancel"):
        if request.app[FAULTS].config.outage:
            return outage()
        await _latency(request.app)
        book = request.app[BOOK]
        order = book.get(client_order_id)
        if order is None:
            return json_error(404, "order not found")
        if order.terminal:
            return web.json_response(order.as_json(), status=409)
        book.cancel(order)
        return web.json_response(order.as_json())


# --- /_sim: test and operator controls --------------------------------------------------------


async def get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS].config.model_dump())


async def update_config(request: web.Request) -> web.Response:
    try:
        changes = strict_json.loads(await read_body(request))
        config = request.app[FAULTS].update(changes)
    except ValueError as exc:
        return json_error(400, f"invalid config: {exc}")
    return web.json_response(config.model_dump())


async def ledger(request: web.Request) -> web.Response:
    return web.json_response({"orders": request.app[BOOK].ledger()})


async def requests_seen(request: web.Request) -> web.Response:
    return web.json_response(request.app[TRAFFIC].requests())


async def placements(request: web.Request) -> web.Response:
    return web.json_response({"placements": request.app[TRAFFIC].placements()})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[TRAFFIC].stats())


async def reset(request: web.Request) -> web.Response:
    request.app[LIFECYCLE].clear()
    request.app[BOOK].clear()  # a new epoch of the stream: seq from 0, connections closed
    request.app[TRAFFIC].clear()
    request.app[FAULTS].reset()
    return web.Response(status=204)


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
