"""`exchange-listener`: settings from the environment, then the server."""

from __future__ import annotations

from exchange_listener.app import create_app
from exchange_listener.settings import ListenerSettings
from orders_core.logs import setup_logging
from orders_core.web import serve


def main() -> None:
    settings = ListenerSettings()
    setup_logging(settings.log_level)
    serve(create_app(settings), "exchange-listener", settings, settings.listener_port)


if __name__ == "__main__":
    main()
