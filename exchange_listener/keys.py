"""Every typed key the listener's application holds."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from orders_core.db import Pool
from orders_core.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", Pool)
HTTP = web.AppKey("http", aiohttp.ClientSession)
