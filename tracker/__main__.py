"""`tracker`: settings from the environment, then the server."""

from __future__ import annotations

import logging

import uvloop
from aiohttp import web

from orders_core.logs import setup_logging
from orders_core.settings import Settings
from tracker.app import create_app

log = logging.getLogger("tracker")


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level)
    log.info("tracker on http://%s:%d", settings.bind_host, settings.tracker_port)
    web.run_app(
        create_app(settings),
        host=settings.bind_host,
        port=settings.tracker_port,
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
