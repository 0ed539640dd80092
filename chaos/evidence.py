"""What the invariants are checked against: the database (read directly, not through our proxy),
the exchange's ledger, request counts and placement log, and what a watcher saw while it ran."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from chaos.leaders import LeaderWatch, RoleRecord
from chaos.stack import Stack
from chaos.workload import Sent
from orders_core.db import DB_ERRORS
from orders_core.domain import exchange_status_moves_forward

TERMINAL = frozenset({"filled", "canceled", "rejected", "expired"})
FINAL = frozenset({"SUCCESS", "FAILURE"})
WATCH_EVERY_S = 2.0
LATEST = "/v1/orders?updated_after_seq=999999999999"  # no orders, and the latest seq
# What a service logs when something failed that nothing expected: a retry job or a request
# that crashed, a loop that caught the unexpected, a task whose error nobody read.
CRASH_MARKS = (
    "Job processing failed",
    "unhandled error",
    "failed unexpectedly",
    "Error handling request",
    "exception was never retrieved",
    "Traceback (most recent call last)",
)

SNAPSHOT = """
SELECT o.id::text AS id, o.status, s.stock_market_order_status AS market, s.filled_quantity
  FROM orders o LEFT JOIN exchange_order_status s ON s.order_id = o.id"""
ORDERS = """
SELECT id::text AS id, status, attempts, idempotency_key, created_at, exchange_order_id, last_error
  FROM orders"""
MARKET = """
SELECT order_id::text AS id, stock_market_order_status AS status, filled_quantity,
       exchange_order_id
  FROM exchange_order_status"""
EVENTS = """
SELECT order_id::text AS id, status, filled_quantity, exchange_order_id
  FROM exchange_events ORDER BY order_id, epoch, seq"""


@dataclass
class Watcher:
    """Samples every order's placement and exchange status while the run goes on, and notes any
    move backwards between two samples (a client polling GET /orders/{id} would have seen it)."""

    dsn: str
    last: dict[str, tuple[str, str | None, int | None]] = field(default_factory=dict)
    backward: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    samples: int = 0

    async def run(self) -> None:
        while True:
            with contextlib.suppress(*DB_ERRORS):
                conn = await asyncpg.connect(self.dsn, timeout=3)
                try:
                    while True:
                        self.sample(await conn.fetch(SNAPSHOT, timeout=10))
                        await asyncio.sleep(WATCH_EVERY_S)
                finally:
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(WATCH_EVERY_S)

    def sample(self, rows: list[asyncpg.Record]) -> None:
        self.samples += 1
        counts: dict[str, int] = {}
        for row in rows:
            now = (row["status"], row["market"], row["filled_quantity"])
            counts[row["status"]] = counts.get(row["status"], 0) + 1
            before = self.last.get(row["id"])
            self.last[row["id"]] = now
            if before is None or row["id"] in self.backward:
                continue
            if before[0] in FINAL and now[0] != before[0]:
                self.backward[row["id"]] = f"status {before[0]} -> {now[0]}"
            elif (
                before[1] is not None
                and before[1:] != now[1:]
                and (
                    now[1] is None
                    or not exchange_status_moves_forward(
                        before[1], before[2] or 0, now[1], now[2] or 0
                    )
                )
            ):
                self.backward[row["id"]] = f"exchange {before[1:]} -> {now[1:]}"
        self.counts = counts


@dataclass
class Evidence:
    sent: list[Sent]
    orders: dict[str, dict[str, Any]]
    market: dict[str, dict[str, Any]]
    events: dict[str, list[tuple[str, int, str]]]  # order -> (status, filled, exchange id)
    ledger: dict[str, dict[str, Any]]
    requests: dict[str, dict[str, int]]
    placements: list[dict[str, Any]]
    backward_seen: dict[str, str]
    listener_seq: int
    exchange_seq: int
    max_attempts: int
    crashes: dict[str, int] = field(default_factory=dict)  # "<service>: <mark>" -> lines
    leaders: dict[str, RoleRecord] = field(default_factory=dict)  # role -> what pg_locks showed
    leader_samples: int = 0


@dataclass
class Quiet:
    waited_s: float
    in_progress: list[str]
    caught_up: bool
    open_at_exchange: int


async def quiesce(stack: Stack, timeout_s: float) -> Quiet:
    """Wait until no order is IN PROGRESS, the exchange holds no order that may still change,
    and the listener has committed every event the exchange announced (seen twice in a row)."""
    t0 = time.monotonic()
    calm = 0
    quiet = Quiet(0.0, [], False, 0)
    while True:
        with contextlib.suppress(*DB_ERRORS, RuntimeError, aiohttp.ClientError):
            quiet = await _look(stack, t0)
            calm = calm + 1 if not quiet.in_progress and quiet.caught_up else 0
        if calm >= 2 or time.monotonic() - t0 > timeout_s:
            return quiet
        await asyncio.sleep(1.0)


async def _look(stack: Stack, t0: float) -> Quiet:
    conn = await asyncpg.connect(stack.pg.dsn, timeout=5)
    try:
        stuck = await conn.fetch("SELECT id::text FROM orders WHERE status = 'IN PROGRESS'")
        seq = await conn.fetchval("SELECT seq FROM exchange_stream_position")
    finally:
        await conn.close()
    ledger = (await stack.sim_call("GET", "/_sim/ledger"))["orders"]
    open_orders = sum(1 for o in ledger if o["status"] not in TERMINAL)
    latest = (await stack.sim_call("GET", LATEST))["seq"]
    return Quiet(
        round(time.monotonic() - t0, 1),
        sorted(r["id"] for r in stuck),
        open_orders == 0 and seq == latest,
        open_orders,
    )


async def collect(
    stack: Stack, sent: list[Sent], watcher: Watcher, leaders: LeaderWatch
) -> Evidence:
    conn = await asyncpg.connect(stack.pg.dsn, timeout=10)
    try:
        orders = {r["id"]: dict(r) for r in await conn.fetch(ORDERS)}
        market = {r["id"]: dict(r) for r in await conn.fetch(MARKET)}
        events: dict[str, list[tuple[str, int, str]]] = {}
        for r in await conn.fetch(EVENTS):
            events.setdefault(r["id"], []).append(
                (r["status"], r["filled_quantity"], r["exchange_order_id"])
            )
        listener_seq = await conn.fetchval("SELECT seq FROM exchange_stream_position")
    finally:
        await conn.close()
    ledger = {
        o["client_order_id"]: o for o in (await stack.sim_call("GET", "/_sim/ledger"))["orders"]
    }
    return Evidence(
        sent=sent,
        orders=orders,
        market=market,
        events=events,
        ledger=ledger,
        requests=await stack.sim_call("GET", "/_sim/requests"),
        placements=(await stack.sim_call("GET", "/_sim/placements"))["placements"],
        backward_seen=dict(watcher.backward),
        listener_seq=listener_seq,
        exchange_seq=(await stack.sim_call("GET", LATEST))["seq"],
        max_attempts=1 + int(stack.profile.api["max_retries"]),
        crashes=crashes(stack),
        leaders=leaders.roles,
        leader_samples=leaders.samples,
    )


def crashes(stack: Stack) -> dict[str, int]:
    """Unexpected failures in the services' logs (JSON lines and whatever else they wrote)."""
    found: dict[str, int] = {}
    for service in stack.services():
        for line in service.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"exc"' in line and "Traceback" in line:
                line = line.split('"exc"', 1)[0]  # a logged exception: judged by its message
            for mark in CRASH_MARKS:
                if mark in line:
                    key = f"{service.name}: {mark}"
                    found[key] = found.get(key, 0) + 1
    return found
