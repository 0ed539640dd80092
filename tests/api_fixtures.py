"""The API under test, in process on a real loopback socket, against the test's database and
the real exchange-sim process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from orders_api.app import create_app
from tests.helpers import auth_headers, fast_settings
from tests.sim import SimProcess

ApiFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
def make_api(
    db_url: str,
    exchange: SimProcess,
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
) -> ApiFactory:
    # Requested after the database: apps stop before their database is dropped.
    """Start an API instance; keyword arguments override the fast test settings."""

    async def make(**overrides: Any) -> TestClient[web.Request, web.Application]:
        """Its client sends a `trade` key of the account `test` unless `headers` say otherwise."""
        headers = overrides.pop("headers", None) or await auth_headers(db_url)
        settings = fast_settings(db_url, overrides.pop("exchange_url", exchange.url), **overrides)
        return await aiohttp_client(create_app(settings), headers=headers)

    return make


@pytest.fixture
async def api(make_api: ApiFactory) -> TestClient[web.Request, web.Application]:
    return await make_api()
