"""Every typed key of the exchange's application."""

from __future__ import annotations

from aiohttp import web

from exchange_sim.book import Book
from exchange_sim.faults import Faults
from exchange_sim.lifecycle import Lifecycle
from exchange_sim.traffic import Traffic

BOOK = web.AppKey("book", Book)
FAULTS = web.AppKey("faults", Faults)
TRAFFIC = web.AppKey("traffic", Traffic)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
