"""`tracker`: settings from the environment, then the server."""

from __future__ import annotations

from orders_core.logs import setup_logging
from orders_core.web import serve
from tracker.app import create_app
from tracker.settings import TrackerSettings


def main() -> None:
    settings = TrackerSettings()
    setup_logging(settings.log_level)
    serve(create_app(settings), "tracker", settings, settings.tracker_port)


if __name__ == "__main__":
    main()
