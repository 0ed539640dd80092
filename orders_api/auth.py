"""Who may call `/orders` (SPEC §7): a Bearer API key (orders_api.keyring); writes need the
`trade` scope. `/health/*`, `/metrics` and the docs are open."""

from __future__ import annotations

from aiohttp import web

from orders_api.keys import KEYRING, PRINCIPAL
from orders_api.placement import PLACEMENT_FAILED
from orders_core.apikeys import Scope
from orders_core.db import DB_ERRORS
from orders_core.errors import Forbidden, InternalError
from orders_core.web import Handler

PROTECTED = "/orders"
READ_METHODS = frozenset({"GET", "HEAD"})


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`/orders…` needs a key; writes need the `trade` scope. Health and metrics are open."""
    path = request.path
    if path != PROTECTED and not path.startswith(PROTECTED + "/"):
        return await handler(request)
    try:
        principal = await request.app[KEYRING].principal(
            request.headers.getall("Authorization", [])
        )
    except DB_ERRORS as exc:
        if request.method == "POST" and path == PROTECTED:
            # Creating an order has one answer for a database failure (SPEC §2).
            raise InternalError(PLACEMENT_FAILED) from exc
        raise
    if request.method not in READ_METHODS and principal.scope is not Scope.TRADE:
        raise Forbidden("This API key may only read (scope read)")
    request[PRINCIPAL] = principal
    return await handler(request)
