"""`exchange-sim`: run the stand-in exchange, knobs from `EXCHANGE_SIM_*` (SPEC §3, §6)."""

from __future__ import annotations

import logging
import sys

import uvloop
from pydantic import ValidationError

from exchange_sim.app import create_app
from exchange_sim.config import SimSettings, describe_errors
from exchange_sim.limits import ServerLimits, run

log = logging.getLogger("exchange_sim")

# Seconds a stop waits for requests still in flight; a hung placement would otherwise hold it.
SHUTDOWN_TIMEOUT_S = 1.0


def _env_name(field: str) -> str:
    return field if field.isupper() else f"EXCHANGE_SIM_{field.upper()}"


def load_settings() -> tuple[SimSettings, ServerLimits]:
    try:
        return SimSettings(), ServerLimits()
    except ValidationError as exc:
        sys.exit(f"exchange-sim: invalid settings: {describe_errors(exc, _env_name)}")


def main() -> None:
    settings, limits = load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    url = f"http://{settings.bind_host}:{settings.port}"

    def announce() -> None:
        log.info("exchange-sim listening on %s with %s", url, settings.knobs())

    run(
        create_app(settings.knobs()),
        settings.bind_host,
        settings.port,
        limits,
        uvloop.new_event_loop(),
        announce,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )


if __name__ == "__main__":
    main()
