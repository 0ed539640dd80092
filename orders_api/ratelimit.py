"""The per-key rate limit (SPEC §7): a token bucket per API key, per API instance.

Placed after `authenticate`: only a request whose key was proven spends that key's tokens, so
nobody can drain another client's bucket by naming its key id. Past the bucket: 429 with
`Retry-After`; every limited answer carries `RateLimit-Limit` (the burst), `RateLimit-Remaining`
and `RateLimit-Reset` (seconds until the bucket is full again).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from orders_api.keys import PRINCIPAL
from orders_api.settings import ApiSettings
from orders_core.errors import ApiError, TooManyRequests
from orders_core.limits import TokenBuckets
from orders_core.web import Handler


def rate_limit(settings: ApiSettings) -> Middleware:
    """The middleware, with the buckets of this application."""
    buckets = TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst)
    limit = str(settings.rate_limit_burst)
    rate = f"{settings.rate_limit_per_s:g}"

    @web.middleware
    async def limited(request: web.Request, handler: Handler) -> web.StreamResponse:
        principal = request.get(PRINCIPAL)
        if principal is None:  # an open route
            return await handler(request)
        verdict = buckets.take(principal.key_id)
        headers = {
            "RateLimit-Limit": limit,
            "RateLimit-Remaining": str(verdict.remaining),
            "RateLimit-Reset": str(verdict.reset_s),
        }
        if not verdict.allowed:
            retry = str(verdict.retry_after_s)
            raise TooManyRequests(
                f"Rate limit of this API key exceeded ({rate} requests/s, bursts of {limit}); "
                f"retry after {retry} s",
                headers=headers | {"Retry-After": retry},
            )
        try:
            response = await handler(request)
        except ApiError as exc:
            exc.headers.update(headers)
            raise
        if not response.prepared:  # a stream has sent its headers already
            response.headers.update(headers)
        return response

    return limited
