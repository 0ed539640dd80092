"""`orders-stack` (what `make run` runs): from nothing to a served order, then a clean stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

import aiohttp

from orders_ops.stack import banner
from tests.helpers import MARKET, bearer, eventually
from tests.procs import wait_http
from tests.sim import free_port, wait_exit

KEY_LINE = re.compile(r"^  api key +(ok_[0-9a-f]{12}_[A-Za-z0-9_-]{43}) ", re.M)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_stack_with_embedded_database_serves_an_order_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    api_port, sim_port, listener_port, tracker_port = (free_port() for _ in range(4))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # the embedded path
    env |= {
        "ORDERS_API_PORT": str(api_port),
        "EXCHANGE_SIM_PORT": str(sim_port),
        "LISTENER_PORT": str(listener_port),
        "TRACKER_PORT": str(tracker_port),
        "EXCHANGE_URL": f"http://127.0.0.1:{sim_port}",
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed below, once the stack has stopped)
    stack = subprocess.Popen(
        [sys.executable, "-m", "orders_ops.stack"], cwd=tmp_path, env=env, stdout=log
    )
    try:
        # SPEC §6: a fresh start (initdb included) serves POST /orders within 60 s.
        await wait_http(f"http://127.0.0.1:{api_port}/health/ready", stack, timeout_s=60)
        # The banner prints a development key (SPEC §7): make run stays one command.
        key = await eventually(lambda: _printed_key(log), lambda k: k is not None)
        assert key is not None
        headers = bearer(key)
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.post(f"http://127.0.0.1:{api_port}/orders", json=MARKET) as resp,
        ):
            assert resp.status == 201
            order_id = (await resp.json())["id"]
        # The listener runs too: the exchange's "new" for the order reaches the API.
        await eventually(
            lambda: _market_status(api_port, order_id, headers), lambda status: status is not None
        )
        assert (tmp_path / ".data" / "pg" / "PG_VERSION").exists()
    finally:
        stack.send_signal(signal.SIGINT)
        code = await wait_exit(stack, 60)
        if code is None:
            stack.kill()
            await wait_exit(stack, 10)
        log.seek(0)
        out = log.read().decode(errors="replace")
        log.close()
    assert code == 0, out
    for port in (api_port, sim_port, listener_port, tracker_port):
        assert f"http://127.0.0.1:{port}" in out
    assert not _listening(api_port)
    assert not _listening(sim_port)
    assert not _listening(listener_port)
    assert not _listening(tracker_port)
    # The embedded PostgreSQL stopped with the stack.
    await eventually(lambda: _exists(tmp_path / ".data" / "pg" / "postmaster.pid"), lambda e: not e)


async def _exists(path: Path) -> bool:
    return path.exists()


async def _printed_key(log: IO[bytes]) -> str | None:
    log.seek(0)
    found = re.search(
        r"^  api key +(ok_[0-9a-f]{12}_[A-Za-z0-9_-]{43}) ", log.read().decode(), re.M
    )
    log.seek(0, 2)
    return found[1] if found else None


async def _market_status(port: int, order_id: str, headers: dict[str, str]) -> str | None:
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(f"http://127.0.0.1:{port}/orders/{order_id}") as resp,
    ):
        status: str | None = (await resp.json())["stock_market_order_status"]
        return status


def test_banner_says_where_everything_is_aligned_with_the_key_once() -> None:
    key = "ok_0123456789ab_" + "k" * 43
    text = banner("127.0.0.1", "postgresql://postgres@127.0.0.1:5432/orders", key)
    assert text.count(key) == 1
    assert KEY_LINE.search(text)[1] == key  # type: ignore[index]
    rows = [line for line in text.splitlines() if "http://" in line and line.startswith("  ")]
    for wanted in ("/docs", ":8002/ ", "/failures", "/metrics", "/orders"):
        assert any(wanted in row for row in rows), wanted
    assert len({row.index("http://") for row in rows}) == 1  # one column of URLs
    notes = {row.rindex("  ") for row in rows}  # where the last column starts, less 2
    assert len(notes) == 1  # and one of what each is for
