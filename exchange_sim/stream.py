"""The status stream (SPEC §3): `WS /v1/stream?from_seq=N` and `GET /v1/orders?updated_after_seq=N`,
with the stream's faults (drop, duplicate, reorder, stall) and `POST /_sim/disconnect`."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import UTC, datetime

from aiohttp import WSMsgType, web

from exchange_sim.events import Event, EventLog, Subscriber
from exchange_sim.faults import Faults
from exchange_sim.handlers import json_error, outage
from exchange_sim.keys import BOOK, FAULTS

# Seconds a server-side close waits for the client's close frame.
CLOSE_TIMEOUT_S = 1.0


def _position(request: web.Request, name: str) -> int | None:
    """A non-negative integer query parameter, None when absent; ValueError when invalid."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if not (0 < len(raw) <= 18 and raw.isascii() and raw.isdigit()):
        raise ValueError(f"{name} must be a non-negative integer of at most 18 digits 0-9")
    return int(raw)


async def updated_orders(request: web.Request) -> web.Response:
    if request.app[FAULTS].config.outage:
        return outage()
    try:
        after = _position(request, "updated_after_seq") or 0
    except ValueError as exc:
        return json_error(400, str(exc))
    book = request.app[BOOK]
    orders = [order.as_json() | {"seq": order.seq} for order in book.updated_after(after)]
    return web.json_response({"orders": orders, "seq": book.events.latest})


async def disconnect(request: web.Request) -> web.Response:
    request.app[BOOK].events.disconnect_all()
    return web.Response(status=204)


async def stream(request: web.Request) -> web.StreamResponse:
    faults, log = request.app[FAULTS], request.app[BOOK].events
    if faults.config.outage:
        return outage()
    try:
        from_seq = _position(request, "from_seq")
    except ValueError as exc:
        return json_error(400, str(exc))
    stall = faults.config.stall
    # No server pings ever (the stream has its own heartbeat); stalled, not even pongs.
    ws = web.WebSocketResponse(timeout=CLOSE_TIMEOUT_S, autoping=not stall, heartbeat=None)
    await ws.prepare(request)
    # From here to the subscription there is no await: replay and live events join exactly.
    start = log.latest if from_seq is None else from_seq
    backlog = log.retained_after(start)
    subscriber = log.subscribe()
    reader = asyncio.create_task(_read_until_closed(ws, subscriber))
    try:
        await ws.send_json({"type": "hello", "epoch": log.epoch, "seq": log.latest})
        if backlog is None:
            await ws.send_json({"type": "reset"})
        elif stall:
            await _silent(subscriber)
        else:
            await _Sender(ws, faults, log, subscriber).run(backlog)
    except ConnectionError:
        pass  # the client went away mid-send
    finally:
        log.unsubscribe(subscriber)
        await ws.close()
        reader.cancel()
        with suppress(asyncio.CancelledError):
            await reader
    return ws


async def _read_until_closed(ws: web.WebSocketResponse, subscriber: Subscriber) -> None:
    """Read (and ignore) what the client sends; when it closes, tell the sender."""
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            break
    subscriber.put_nowait(None)


async def _silent(subscriber: Subscriber) -> None:
    """Stalled: send nothing at all until told to close."""
    while await subscriber.get() is not None:
        pass


def _now() -> str:
    return datetime.now(UTC).isoformat()


class _Sender:
    """One connection's outgoing side: replay, then live events, heartbeats when idle."""

    def __init__(
        self, ws: web.WebSocketResponse, faults: Faults, log: EventLog, subscriber: Subscriber
    ) -> None:
        self._ws = ws
        self._faults = faults
        self._log = log
        self._subscriber = subscriber
        self._buffer: list[Event] = []

    async def run(self, backlog: list[Event]) -> None:
        for event in backlog:
            if not await self._emit(event):
                return
        while not self._faults.config.stall:
            heartbeat_s = self._faults.config.heartbeat_ms / 1000
            try:
                live = await asyncio.wait_for(self._subscriber.get(), heartbeat_s)
            except TimeoutError:
                if not await self._idle():
                    return
                continue
            if live is None or not await self._emit(live):
                return
        await _silent(self._subscriber)

    async def _idle(self) -> bool:
        """Nothing new for a heartbeat period: flush what reordering holds, else a heartbeat."""
        if self._buffer:
            return await self._flush()
        await self._ws.send_json({"type": "heartbeat", "seq": self._log.latest, "ts": _now()})
        return True

    async def _emit(self, event: Event) -> bool:
        """Send (or buffer, when reordering) one event; False once the connection must close."""
        self._buffer.append(event)
        if len(self._buffer) < self._faults.config.reorder_window:
            return True
        return await self._flush()

    async def _flush(self) -> bool:
        batch, self._buffer = self._buffer, []
        if len(batch) > 1:
            self._faults.shuffle(batch)
        config = self._faults.config
        for event in batch:
            if self._faults.chance(config.lose_rate):
                continue  # lost on the way: the log keeps it for a replay
            copies = 2 if self._faults.chance(config.duplicate_rate) else 1
            for _ in range(copies):
                await self._ws.send_json(event)
            if self._faults.chance(config.drop_rate):
                return False
        return True
