"""The route table: one list drives both the router and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from orders_api import docs, handlers, streams
from orders_api.keys import POOL
from orders_api.openapi import Endpoint, build
from orders_api.schemas import (
    CancelConflictModel,
    CreateOrderModel,
    ErrorModel,
    HealthModel,
    OrderEventsPage,
    OrderHistory,
    OrderModel,
    OrdersPage,
)
from orders_core.params import typed
from orders_core.web import live, metrics_handler, ready_handler

TITLE = "Orders API"
VERSION = "1.0.0"


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(SPEC)


ENDPOINTS = [
    Endpoint(
        "POST",
        "/orders",
        handlers.create_order,
        "Create an order and place it on the exchange",
        {
            201: (OrderModel, "stored; status SUCCESS or IN PROGRESS (retries follow)"),
            400: (ErrorModel, "body is not a JSON object, or a bad Idempotency-Key"),
            409: (ErrorModel, "the first request with this Idempotency-Key is still in flight"),
            413: (ErrorModel, "body over 64 KiB"),
            415: (ErrorModel, "Content-Type is not JSON"),
            422: (ErrorModel, "invalid order, or Idempotency-Key reused with another body"),
            500: (ErrorModel, "the database failed while storing the order"),
        },
        body=CreateOrderModel,
    ),
    Endpoint(
        "GET",
        "/orders",
        handlers.list_orders,
        "List orders, newest first",
        {200: (OrdersPage, "one page"), 400: (ErrorModel, "bad query parameter")},
    ),
    Endpoint(
        "GET",
        "/orders/updates",
        streams.order_updates,
        "The account's order changes as they commit (Server-Sent Events): each placement "
        "status, cancel status, exchange status or fill is one `event: order` whose `id` is a "
        "cursor; Last-Event-ID (or ?after=) resumes right after it, nothing missed or repeated",
        {
            200: (None, "text/event-stream: `id: <cursor>`, `event: order`, `data: <order>`"),
            400: (ErrorModel, "a cursor that is not a whole number, or that was never sent"),
            410: (ErrorModel, "the cursor is older than the log keeps (retention)"),
        },
        media_type="text/event-stream",
    ),
    Endpoint(
        "GET",
        "/orders/{id}",
        handlers.get_order,
        "Read one order",
        {
            200: (OrderModel, "the order"),
            400: (ErrorModel, "id is not a UUID"),
            404: (ErrorModel, "no such order"),
        },
    ),
    Endpoint(
        "DELETE",
        "/orders/{id}",
        handlers.cancel_order,
        "Cancel an order: asked at once, carried out durably (cancel_status PENDING, then "
        "CANCELED or REFUSED)",
        {
            202: (OrderModel, "the cancel is asked (or was already): cancel_status PENDING"),
            400: (ErrorModel, "id is not a UUID"),
            404: (ErrorModel, "no such order"),
            409: (CancelConflictModel, "nothing left to cancel (failed, ended, or cancel final)"),
        },
    ),
    Endpoint(
        "GET",
        "/orders/{id}/events",
        handlers.order_events,
        "The exchange's status updates for one order, oldest first",
        {
            200: (OrderEventsPage, "the events"),
            400: (ErrorModel, "id is not a UUID"),
            404: (ErrorModel, "no such order"),
        },
    ),
    Endpoint(
        "GET",
        "/orders/{id}/history",
        handlers.order_history,
        "What happened to one order, oldest first: each placement request and answer, each "
        "lookup, the exchange's status changes",
        {
            200: (OrderHistory, "the history"),
            400: (ErrorModel, "id is not a UUID"),
            404: (ErrorModel, "no such order"),
        },
    ),
    Endpoint("GET", "/health/live", live, "The process is up", {200: (HealthModel, "alive")}),
    Endpoint(
        "GET",
        "/health/ready",
        ready_handler(lambda r: r.app[POOL]),
        "The database is reachable",
        {200: (HealthModel, "ready"), 503: (HealthModel, "database unreachable")},
    ),
    Endpoint(
        "GET",
        "/metrics",
        metrics_handler(),
        "Prometheus metrics",
        {200: (None, "text format")},
        media_type="text/plain",
    ),
    Endpoint("GET", "/openapi.json", openapi_json, "This document", {200: (None, "OpenAPI 3.1")}),
    Endpoint(
        "GET",
        "/docs",
        docs.docs_page,
        "This document as a page (Swagger UI, served from this API: nothing from elsewhere)",
        {200: (None, "HTML")},
        media_type="text/html",
    ),
    Endpoint(
        "GET",
        "/docs/static/{file}",
        docs.docs_file,
        "A script, style sheet or icon of the docs page",
        {200: (None, "the file"), 400: (ErrorModel, "not a file of the docs page")},
        media_type=docs.MEDIA_TYPES,
    ),
    Endpoint(
        "GET", "/", docs.root, "Where to start: redirects to /docs", {302: (None, "to /docs")}
    ),
]

SPEC = build(ENDPOINTS, TITLE, VERSION)


def setup_routes(app: web.Application) -> None:
    for endpoint in ENDPOINTS:
        app.router.add_route(endpoint.method, endpoint.path, typed(endpoint.handler))
