"""`orders-stack`: the whole system on one machine, for development (SPEC §6).

Starts the embedded PostgreSQL unless DATABASE_URL is set, migrates, runs every service as a child
process, prints where they listen, and on Ctrl-C (or SIGTERM) stops them in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from urllib.error import URLError
from urllib.request import urlopen

from orders_core.apikeys import Scope
from orders_core.db import database_url, mask_dsn
from orders_core.logs import setup_logging
from orders_core.migrate import migrate
from orders_core.settings import Settings
from orders_ops.keys import create_key
from orders_ops.services import BY_NAME, SERVICES, Service

# The account of the key `orders-stack` makes at each start, for the developer at the keyboard.
DEV_ACCOUNT = "dev"


def settings_port(name: str) -> int:
    return BY_NAME[name].port


log = logging.getLogger("orders_stack")

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def banner(host: str, database: str, key: str) -> str:
    """Where everything is and what each is for, in aligned columns; the key once."""
    api, tracker, listener, sim = (
        f"http://{host}:{settings_port(name)}"
        for name in ("orders-api", "tracker", "exchange-listener", "exchange-sim")
    )
    rows = [
        ("API docs", f"{api}/docs", "every operation, with examples; Authorize with the api key"),
        ("orders API", f"{api}/orders", "create, list and read orders (Bearer api key)"),
        ("failures page", f"{tracker}/", "failed and stuck orders, for on-call"),
        ("failures JSON", f"{tracker}/failures", "the same as JSON; ?format=csv for a file"),
        ("API metrics", f"{api}/metrics", "Prometheus: requests, placement attempts"),
        ("system metrics", f"{tracker}/metrics", "Prometheus: orders by status, stream lag"),
        ("listener metrics", f"{listener}/metrics", "Prometheus: stream events, reconnects"),
        ("exchange-sim", f"{sim}/_sim/ledger", "the stand-in exchange; faults: POST /_sim/config"),
    ]
    label = max(len(r[0]) for r in rows)
    where = max(len(r[1]) for r in rows)
    lines = [f"  {name:<{label}}  {url:<{where}}  {note}" for name, url, note in rows]
    return "\n".join(
        [
            "\norders-stack is up:\n",
            *lines,
            "",
            f"  {'database':<{label}}  {database}",
            f"  {'api key':<{label}}  {key}  (account {DEV_ACCOUNT}, scope trade)",
            f'\nTry: curl -s {api}/orders -H "Authorization: Bearer $KEY"   (KEY: the api key)',
            "Ctrl-C stops everything.\n",
        ]
    )


def _healthy(url: str) -> bool:
    try:
        with urlopen(url, timeout=1) as resp:  # noqa: S310 (a loopback URL we built)
            return bool(resp.status == 200)
    except (URLError, OSError):
        return False


def _wait_healthy(service: Service, host: str, proc: subprocess.Popen[bytes]) -> None:
    url = f"http://{host}:{service.port}{service.health}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not _healthy(url):
        if proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} not healthy at {url} after {STARTUP_TIMEOUT_S}s")
        time.sleep(0.2)


def _stop(children: list[tuple[Service, subprocess.Popen[bytes]]]) -> None:
    for service, proc in reversed(children):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", service.name)
                proc.kill()
                proc.wait()


def _supervise(children: list[tuple[Service, subprocess.Popen[bytes]]]) -> int:
    """Block until a signal (0) or a child's unexpected exit (1)."""
    stop = {"signal": 0}

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop["signal"]:
        for service, proc in children:
            if proc.poll() is not None:
                log.error("%s exited with code %s; stopping", service.name, proc.returncode)
                return 1
        time.sleep(0.2)
    return 0


def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level)
    dsn = database_url(settings)
    asyncio.run(migrate(dsn))
    dev_key = asyncio.run(create_key(dsn, DEV_ACCOUNT, Scope.TRADE)).key
    env = {**os.environ, "DATABASE_URL": dsn}
    host = settings.bind_host
    children: list[tuple[Service, subprocess.Popen[bytes]]] = []
    code = 1
    try:
        for service in SERVICES:
            # Own session: Ctrl-C reaches only this process, which then stops the children in order.
            proc = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                [sys.executable, "-m", service.module], env=env, start_new_session=True
            )
            children.append((service, proc))
            _wait_healthy(service, host, proc)
        print(banner(host, mask_dsn(dsn), dev_key), flush=True)
        code = _supervise(children)
    except RuntimeError as exc:
        log.error("%s", exc)
    finally:
        _stop(children)
    sys.exit(code)


if __name__ == "__main__":
    main()
