"""Every typed key the tracker's application holds."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from orders_core.db import Pool
from tracker.reporter import Reporter
from tracker.settings import TrackerSettings

SETTINGS = web.AppKey("settings", TrackerSettings)
POOL = web.AppKey("pool", Pool)
HTTP = web.AppKey("http", aiohttp.ClientSession)
REPORTER = web.AppKey("reporter", Reporter)
REPORT_URL = web.AppKey("report_url", str)
