"""Stream ingest throughput next to a raw COPY of the same rows into the same table.

In one run, against one PostgreSQL server: N synthetic execution reports go through a real
WebSocket (a minimal stream server on loopback) into the listener's ingest path, which writes
them in batches; then the same rows are COPYed straight into `exchange_events`. Prints both rates
and their ratio. The orders exist (as placed orders of one account), so the listener's writes
also add the live updates' log (`order_updates`, written by triggers), as in production. Usage:

    python -m bench.stream_ingest [--events 50000] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bench.common import fresh_database
from exchange_listener.ingest import Ingestor
from orders_core.db import database_url
from tests.helpers import SystemSettings
from tests.sim import free_port

BENCH_DB = "orders_bench_stream"
LIFE = (("new", 0), ("partially_filled", 4), ("partially_filled", 7), ("filled", 10))


def synthetic(count: int) -> list[dict[str, Any]]:
    """Execution reports for count/4 orders, each going new → partial → partial → filled."""
    now = datetime.now(UTC).isoformat()
    events: list[dict[str, Any]] = []
    while len(events) < count:
        order, exchange_id = str(uuid.uuid4()), str(uuid.uuid4())
        for status, filled in LIFE[: count - len(events)]:
            events.append({
                "type": "execution_report", "seq": len(events) + 1, "ts": now,
                "exchange_order_id": exchange_id, "client_order_id": order, "status": status,
                "filled_quantity": filled, "quantity": 10, "avg_price": "12.34" if filled else None,
            })  # fmt: skip
    return events


async def _serve(frames: list[str], port: int) -> None:
    """A minimal exchange stream: hello, every event (from from_seq on), then heartbeats."""
    heartbeat = json.dumps({"type": "heartbeat", "seq": len(frames)})

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        start = int(request.query.get("from_seq", "0"))
        with contextlib.suppress(ConnectionError):
            await ws.send_json({"type": "hello", "epoch": "bench", "seq": len(frames)})
            for frame in frames[start:]:
                await ws.send_str(frame)
            while not ws.closed:
                await ws.send_str(heartbeat)
                await asyncio.sleep(0.5)
        return ws

    app = web.Application()
    app.router.add_get("/v1/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def _serve_forever(frames: list[str], port: int) -> None:
    asyncio.run(_serve(frames, port))


@contextlib.contextmanager
def stream_process(events: list[dict[str, Any]]) -> Iterator[str]:
    """The stream server in a process of its own, so that it does not share the listener's CPU."""
    port = free_port()
    frames = [json.dumps(e) for e in events]
    proc = multiprocessing.get_context("spawn").Process(target=_serve_forever, args=(frames, port))
    proc.start()
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline, "the stream server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.join()


async def seed_orders(dsn: str, events: list[dict[str, Any]]) -> None:
    """The orders the events are about, placed, of one account: what the live updates need."""
    ids = list(dict.fromkeys(uuid.UUID(e["client_order_id"]) for e in events))
    conn = await asyncpg.connect(dsn)
    try:
        account = await conn.fetchval("INSERT INTO accounts (name) VALUES ('bench') RETURNING id")
        await conn.execute(
            "INSERT INTO orders (id, type, side, instrument, quantity, status, exchange_order_id, "
            "account_id) SELECT id, 'market', 'buy', 'US0378331005', 10, 'SUCCESS', 'x', $2 "
            "FROM unnest($1::uuid[]) AS id",
            ids,
            account,
        )
    finally:
        await conn.close()


async def through_listener(dsn: str, url: str, count: int, batch: int) -> float:
    settings = SystemSettings(database_url=dsn, exchange_url=url, listener_batch_max=batch)
    conn, probe = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        task = asyncio.create_task(Ingestor(conn, http, settings).run())
        committed = 0
        while committed < count:
            await asyncio.sleep(0.01)
            committed = await probe.fetchval("SELECT seq FROM exchange_stream_position")
        elapsed = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    stored = await probe.fetchval("SELECT count(*) FROM exchange_events")
    assert stored == count, stored
    updates = await probe.fetchval("SELECT count(*) FROM order_updates")
    print(f"  order updates written (live updates' log, with the orders' own): {updates}")
    await conn.close()
    await probe.close()
    return count / elapsed


async def raw_copy(dsn: str, events: list[dict[str, Any]]) -> float:
    rows = [
        ("bench", e["seq"], uuid.UUID(e["client_order_id"]), e["exchange_order_id"], e["status"],
         e["filled_quantity"], e["quantity"], e["avg_price"] and Decimal(e["avg_price"]),
         datetime.fromisoformat(e["ts"]), "stream")
        for e in events
    ]  # fmt: skip
    columns = ["epoch", "seq", "order_id", "exchange_order_id", "status", "filled_quantity",
               "quantity", "avg_price", "exchange_ts", "source"]  # fmt: skip
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await conn.copy_records_to_table("exchange_events", records=rows, columns=columns)
        return len(events) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def main(count: int, batch: int) -> tuple[float, float]:
    """Prints both rates and their ratio; returns (listener, COPY) events/s."""
    server = database_url(SystemSettings())
    events = synthetic(count)
    with stream_process(events) as url:
        dsn = await fresh_database(server, BENCH_DB)
        await seed_orders(dsn, events)
        listener_rate = await through_listener(dsn, url, len(events), batch)
    copy_rate = await raw_copy(await fresh_database(server, BENCH_DB), events)
    print(f"events={count} batch={batch}")
    print(
        f"  WebSocket → listener → PostgreSQL : {listener_rate:9.0f} events/s"
        "  (stream server in another process)"
    )
    print(f"  COPY of the same rows              : {copy_rate:9.0f} events/s")
    print(f"  ratio listener / COPY              : {listener_rate / copy_rate:9.2f}")
    return listener_rate, copy_rate


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.batch))
