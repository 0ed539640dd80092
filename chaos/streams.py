"""Clients of `GET /orders/updates` (SPEC §9) that follow the chaos account's order changes for
the whole run, as a careful client would: the first connection asks from cursor 0 (every change
the log holds; this database's first cursor is 1), and whenever a stream ends or breaks (its
instance killed or stopped, the database restarted or frozen, nothing heard past a few
heartbeats) the client resumes with `Last-Event-ID` on the next instance after a short backoff.
It also leaves each instance after a while of its own, so that resuming is exercised without
faults too. Every event is recorded (cursor, order, the fields the invariants compare); the
invariants compare them with the update log once everything has settled (chaos.invariants).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

# What an event's order is compared by, with the update log's row and the order's final state.
FIELDS = ("status", "cancel_status", "stock_market_order_status", "filled_quantity")
HEARTBEAT_S = 2.0  # SSE_HEARTBEAT_S of the chaos API instances (chaos.profiles)
IDLE_S = 3 * HEARTBEAT_S + 2.0  # nothing heard this long, not even a heartbeat: reconnect
STAY_S = (4.0, 25.0)  # how long a connection stays on one instance before moving on
BACKOFF_S = (0.1, 2.0)  # after a failed connection: doubling from the first, capped
DOCUMENTED_503 = "Service unavailable: database unreachable"


@dataclass
class Seen:
    """One event as a client received it."""

    cursor: int
    order_id: str
    state: dict[str, Any]  # FIELDS of the event's order
    connection: int


@dataclass
class FollowerRecord:
    name: str
    events: list[Seen] = field(default_factory=list)
    connections: int = 0  # answered 200
    answers: dict[str, int] = field(default_factory=dict)  # every other answer, by status
    ends: dict[str, int] = field(default_factory=dict)  # why streams ended
    malformed: list[str] = field(default_factory=list)  # events that could not be read
    cursor: int = 0  # the last event's id: where it resumes


def state_of(order: dict[str, Any]) -> dict[str, Any]:
    return {k: order.get(k) for k in FIELDS}


class Follower:
    def __init__(self, name: str, urls: list[str], api_key: str | None, seed: int) -> None:
        self.record = FollowerRecord(name)
        self._urls = urls
        self._auth = {} if api_key is None else {"Authorization": f"Bearer {api_key}"}
        self._rng = random.Random(f"stream:{seed}:{name}")
        self._next = self._rng.randrange(len(urls))

    async def run(self) -> None:
        """Follow until cancelled."""
        timeout = aiohttp.ClientTimeout(total=None, connect=3.0, sock_read=IDLE_S)
        failures = 0
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                url = self._urls[self._next]
                self._next = (self._next + 1) % len(self._urls)
                stay_s = self._rng.uniform(*STAY_S)
                ended = await self._follow(http, url, stay_s)
                r = self.record
                r.ends[ended] = r.ends.get(ended, 0) + 1
                if ended == "moved on":
                    failures = 0
                    continue
                failures = 0 if ended.startswith("ended") else failures + 1
                base, cap = BACKOFF_S
                await asyncio.sleep(self._rng.uniform(0.5, 1.0) * min(cap, base * 2**failures))

    async def _follow(self, http: aiohttp.ClientSession, url: str, stay_s: float) -> str:
        r = self.record
        # The first connection names its cursor in the query, every later one as a browser does.
        if r.connections == 0 and r.cursor == 0:
            path, headers = "/orders/updates?after=0", self._auth
        else:
            path, headers = "/orders/updates", self._auth | {"Last-Event-ID": str(r.cursor)}
        try:
            async with http.get(url + path, headers=headers) as resp:
                if resp.status != 200:
                    body = (await resp.read())[:200].decode(errors="replace")
                    key = f"{resp.status} {_message(body)}"
                    r.answers[key] = r.answers.get(key, 0) + 1
                    return f"answered {resp.status}"
                r.connections += 1
                try:
                    await asyncio.wait_for(self._read(resp, r.connections), stay_s)
                except aiohttp.ServerTimeoutError:  # (a TimeoutError too) nothing heard
                    return "broken: silent"
                except TimeoutError:
                    return "moved on"
                return "ended by the server"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return f"broken: {type(exc).__name__}"

    async def _read(self, resp: aiohttp.ClientResponse, connection: int) -> None:
        """Events until the stream ends (a half-received event is dropped, as EventSource does)."""
        r = self.record
        cursor: str | None = None
        data: list[str] = []
        while True:
            line = await resp.content.readline()
            if not line:
                return
            text = line.decode().rstrip("\r\n")
            if text.startswith(":"):
                continue
            if text:
                name, _, value = text.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    cursor = value
                elif name == "data":
                    data.append(value)
                continue
            if cursor is None and not data:
                continue
            try:
                order = json.loads("\n".join(data))
                seen = Seen(int(cursor or ""), str(order["id"]), state_of(order), connection)
            except (ValueError, KeyError, TypeError) as exc:
                r.malformed.append(f"id {cursor!r}: {exc!r}"[:120])
            else:
                r.events.append(seen)
                r.cursor = seen.cursor
            cursor, data = None, []


def _message(body: str) -> str:
    with contextlib.suppress(ValueError, TypeError, KeyError):
        return str(json.loads(body)["message"])[:100]
    return body[:100]


async def catch_up(followers: list[Follower], head: int, timeout_s: float) -> bool:
    """Wait (bounded) until every follower has received the event `head`."""
    deadline = time.monotonic() + timeout_s
    while any(f.record.cursor < head for f in followers):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


def summary(records: list[FollowerRecord]) -> str:
    ends: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    for r in records:
        ends.update(r.ends)
        answers.update(r.answers)
    parts = [
        f"{len(records)} clients, "
        + ", ".join(f"{r.name} {len(r.events)} events/{r.connections} streams" for r in records)
    ]
    if ends:
        parts.append("ended: " + ", ".join(f"{k} {v}" for k, v in sorted(ends.items())))
    if answers:
        parts.append("refused: " + ", ".join(f"{k} x{v}" for k, v in sorted(answers.items())))
    return "; ".join(parts)
