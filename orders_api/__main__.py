"""`orders-api`: settings from the environment, then the server."""

from __future__ import annotations

import logging

import uvloop
from aiohttp import web

from orders_api.app import create_app
from orders_core.logs import setup_logging
from orders_core.settings import Settings

log = logging.getLogger("orders_api")


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level)
    log.info("orders-api on http://%s:%d", settings.bind_host, settings.orders_api_port)
    web.run_app(
        create_app(settings),
        host=settings.bind_host,
        port=settings.orders_api_port,
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
