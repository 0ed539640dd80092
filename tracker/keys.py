"""Every typed key the tracker's application holds."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from orders_core.db import Pool
from orders_core.settings import Settings
from tracker.reporter import Reporter

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", Pool)
HTTP = web.AppKey("http", aiohttp.ClientSession)
REPORTER = web.AppKey("reporter", Reporter)
REPORT_URL = web.AppKey("report_url", str)
