"""Every typed key the listener's application holds."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from exchange_listener.settings import ListenerSettings
from orders_core.db import Pool

SETTINGS = web.AppKey("settings", ListenerSettings)
POOL = web.AppKey("pool", Pool)
HTTP = web.AppKey("http", aiohttp.ClientSession)
