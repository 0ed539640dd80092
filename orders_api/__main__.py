"""`orders-api`: settings from the environment, then the server."""

from __future__ import annotations

import os
import sys

from orders_api.app import create_app
from orders_api.settings import ApiSettings
from orders_core import workers
from orders_core.logs import setup_logging
from orders_core.web import serve


def main() -> None:
    settings = ApiSettings()
    setup_logging(settings.log_level)
    if settings.orders_api_workers > 1 and not workers.is_worker():
        argv = [sys.executable, "-m", "orders_api"]
        sys.exit(workers.supervise(settings.orders_api_workers, argv, os.environ))
    serve(create_app(settings), "orders-api", settings, settings.orders_api_port)


if __name__ == "__main__":
    main()
