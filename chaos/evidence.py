"""What the invariants are checked against: the database (read directly, not through our proxy),
the exchange's ledger, request counts and placement log, and what a watcher saw while it ran."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from chaos.leaders import LeaderWatch, RoleRecord
from chaos.stack import Stack
from chaos.streams import Follower, FollowerRecord, catch_up, state_of
from chaos.workload import Cancel, Sent
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
SELECT id::text AS id, status, attempts, idempotency_key, created_at, exchange_order_id, last_error,
       cancel_requested_at, cancel_status, cancel_error
  FROM orders"""
MARKET = """
SELECT order_id::text AS id, stock_market_order_status AS status, filled_quantity,
       exchange_order_id
  FROM exchange_order_status"""
EVENTS = """
SELECT order_id::text AS id, status, filled_quantity, exchange_order_id
  FROM exchange_events ORDER BY order_id, epoch, seq"""
# The update log (every row is the chaos account's: the run's database holds no other orders).
UNSEQUENCED = "SELECT count(*) FROM order_updates WHERE seq IS NULL"
UPDATES = """
SELECT seq, order_id::text AS id, at, body::text AS body
  FROM order_updates WHERE seq IS NOT NULL ORDER BY seq"""
SEQUENCED_S = 30.0  # longest wait for the sequencer to number the last updates
CAUGHT_UP_S = 30.0  # longest wait for the update streams' clients to receive the last one


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
    cancels: list[Cancel] = field(default_factory=list)  # every DELETE of the workload
    # The update log once settled: {"seq", "id", "at", "state"} (chaos.streams.FIELDS), by seq.
    updates: list[dict[str, Any]] = field(default_factory=list)
    unsequenced: int = 0  # updates the sequencer had not numbered when the log was read
    followers: list[FollowerRecord] = field(default_factory=list)  # what the clients received
    followers_caught_up: bool = True


@dataclass
class Quiet:
    waited_s: float
    in_progress: list[str]
    caught_up: bool
    open_at_exchange: int
    cancels_pending: list[str] = field(default_factory=list)


async def quiesce(stack: Stack, timeout_s: float) -> Quiet:
    """Wait until no order is IN PROGRESS and no cancel PENDING, the exchange holds no order
    that may still change, and the listener has committed every event the exchange announced
    (seen twice in a row)."""
    t0 = time.monotonic()
    calm = 0
    quiet = Quiet(0.0, [], False, 0)
    while True:
        with contextlib.suppress(*DB_ERRORS, RuntimeError, aiohttp.ClientError):
            quiet = await _look(stack, t0)
            settled = not quiet.in_progress and not quiet.cancels_pending
            calm = calm + 1 if settled and quiet.caught_up else 0
        if calm >= 2 or time.monotonic() - t0 > timeout_s:
            return quiet
        await asyncio.sleep(1.0)


async def _look(stack: Stack, t0: float) -> Quiet:
    conn = await asyncpg.connect(stack.pg.dsn, timeout=5)
    try:
        stuck = await conn.fetch("SELECT id::text FROM orders WHERE status = 'IN PROGRESS'")
        pending = await conn.fetch("SELECT id::text FROM orders WHERE cancel_status = 'PENDING'")
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
        sorted(r["id"] for r in pending),
    )


async def collect(
    stack: Stack,
    sent: list[Sent],
    watcher: Watcher,
    leaders: LeaderWatch,
    cancels: list[Cancel] | None = None,
    followers: list[Follower] | None = None,
) -> Evidence:
    conn = await asyncpg.connect(stack.pg.dsn, timeout=10)
    try:
        updates, unsequenced, caught_up = await _update_log(conn, followers or [])
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
        cancels=list(cancels or []),
        updates=updates,
        unsequenced=unsequenced,
        followers=[f.record for f in followers or []],
        followers_caught_up=caught_up,
    )


async def _update_log(
    conn: asyncpg.Connection, followers: list[Follower]
) -> tuple[list[dict[str, Any]], int, bool]:
    """The update log once the sequencer has numbered every row (bounded wait), after the
    followers received its last event (bounded too): its rows, how many were left unnumbered,
    and whether the followers caught up. Read again if it grew meanwhile."""
    deadline = time.monotonic() + SEQUENCED_S
    while True:
        unsequenced: int = await conn.fetchval(UNSEQUENCED)
        if not unsequenced or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    rows = await _updates(conn)
    caught_up = True
    for _ in range(3):
        head = rows[-1]["seq"] if rows else 0
        caught_up = await catch_up(followers, head, CAUGHT_UP_S)
        rows = await _updates(conn)
        if (rows[-1]["seq"] if rows else 0) == head:
            break
    return rows, unsequenced, caught_up


async def _updates(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [
        {"seq": r["seq"], "id": r["id"], "at": r["at"], "state": state_of(json.loads(r["body"]))}
        for r in await conn.fetch(UPDATES, timeout=30)
    ]


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
