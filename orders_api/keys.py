"""Every typed key the API's application holds."""

from __future__ import annotations

import aiohttp
import aiojobs
from aiohttp import web

from orders_api.keyring import Keyring
from orders_api.placement import Placer
from orders_api.retrier import Retrier
from orders_api.settings import ApiSettings
from orders_api.updates import Hub
from orders_core.apikeys import Principal
from orders_core.db import Pool

SETTINGS = web.AppKey("settings", ApiSettings)
POOL = web.AppKey("pool", Pool)
HTTP = web.AppKey("http", aiohttp.ClientSession)
PLACER = web.AppKey("placer", Placer)
SCHEDULER = web.AppKey("scheduler", aiojobs.Scheduler)
RETRIER = web.AppKey("retrier", Retrier)
INSTANCE = web.AppKey("instance", str)
KEYRING = web.AppKey("keyring", Keyring)
HUB = web.AppKey("hub", Hub)
PRINCIPAL = web.RequestKey("principal", Principal)
