"""The leader's work: follow the exchange's stream into the database. A gap is replayed from the
stream (reconnecting from the committed position), so every event is stored; only what the
stream cannot give back (a `reset`: our position is older than it retains; a new epoch; a gap
that replays do not close) is resynchronised over REST, which knows each order's latest state."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import asyncpg
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from exchange_listener import metrics, store
from exchange_listener.sequencer import Sequencer
from exchange_listener.settings import ListenerSettings
from orders_core.backoff import backoff_s
from orders_core.wire import (
    STREAM_MESSAGE,
    ChangedOrders,
    ExecutionReport,
    Heartbeat,
    Hello,
    Reset,
)

log = logging.getLogger(__name__)

STREAM_ERRORS = (WebSocketException, OSError, TimeoutError, ValidationError, aiohttp.ClientError)


class Resync(Exception):
    def __init__(self, reason: str, epoch: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.epoch = epoch


class Replay(Exception):
    """Events known to exist stayed missing: reconnect, and the stream replays from our position."""

    def __init__(self, epoch: str, taken: int) -> None:
        super().__init__("gap")
        self.epoch = epoch
        self.taken = taken


# Replays in a row that leave a gap where it was before a REST resync closes it instead.
MAX_REPLAYS = 2


class DeadPeer(Exception):
    """Nothing, not even a heartbeat, arrived for too long."""


def stream_url(exchange_url: str, from_seq: int) -> str:
    base = exchange_url.rstrip("/").replace("https://", "wss://").replace("http://", "ws://")
    return f"{base}/v1/stream?from_seq={from_seq}"


@dataclass
class Batch:
    events: list[ExecutionReport] = field(default_factory=list)
    due: float = 0.0  # monotonic time by which it must be written


class Ingestor:
    def __init__(
        self, conn: asyncpg.Connection, http: aiohttp.ClientSession, settings: ListenerSettings
    ):
        self._conn = conn
        self._http = http
        self._settings = settings
        self._rng = random.Random()
        self._writing: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Forever, or until the database fails (the caller then gives up the lead)."""
        failures = 0
        stuck_at, replays = -1, 0  # where the last gap was, replays that did not get past it
        while True:
            position = await store.read_position(self._conn)
            metrics.COMMITTED_SEQ.set(position.seq)
            try:
                received = await self._follow(position)
            except Replay as gap:
                replays = replays + 1 if gap.taken <= stuck_at else 1
                stuck_at = gap.taken
                if replays > MAX_REPLAYS:
                    await self._resync(Resync("gap", gap.epoch))
                    stuck_at, replays = -1, 0
                else:
                    metrics.REPLAYS.inc()
                    log.info("gap in the stream: replaying", extra={"from_seq": gap.taken})
                continue
            except Resync as resync:
                await self._resync(resync)
                continue
            except (*STREAM_ERRORS, DeadPeer) as exc:
                log.warning("stream lost: %r", exc)
                received = False
            finally:
                metrics.CONNECTED.set(0)
            metrics.RECONNECTS.inc()
            failures = 0 if received else failures + 1
            await asyncio.sleep(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        """Jittered, with a floor: a peer that accepts then drops must not cause a tight loop."""
        low, high = self._settings.listener_reconnect_min_s, self._settings.listener_reconnect_max_s
        return backoff_s(failures + 1, low, high, self._rng, floor_s=low)

    async def _follow(self, position: store.Position) -> bool:
        """One connection; returns whether any event arrived before it ended."""
        url = stream_url(self._settings.exchange_url, position.seq)
        # No compression: it costs more CPU on both ends than it saves on a link to the venue.
        async with connect(
            url, open_timeout=10, close_timeout=2, max_queue=1024, compression=None
        ) as ws:
            hello = await self._hello(ws)
            if position.epoch is not None and hello.epoch != position.epoch:
                raise Resync("epoch", hello.epoch)
            metrics.CONNECTED.set(1)
            log.info("stream connected", extra={"epoch": hello.epoch, "from_seq": position.seq})
            sequencer = Sequencer(position.seq)
            sequencer.exchange_at(hello.seq, time.monotonic())
            return await self._consume(ws, hello.epoch, sequencer)

    async def _hello(self, ws: ClientConnection) -> Hello:
        raw = await asyncio.wait_for(ws.recv(), self._settings.listener_dead_after_s)
        message = STREAM_MESSAGE.validate_json(raw)
        if not isinstance(message, Hello):
            raise DeadPeer(f"expected hello, got {message.type}")
        return message

    async def _consume(self, ws: ClientConnection, epoch: str, sequencer: Sequencer) -> bool:
        batch = Batch()
        heard = time.monotonic()
        received = False
        try:
            while True:
                now = time.monotonic()
                if batch.events and now >= batch.due:
                    await self._write(epoch, batch, sequencer)
                if sequencer.gap_age(now) > self._settings.listener_gap_timeout_s:
                    raise Replay(epoch, sequencer.taken)
                wait = heard + self._settings.listener_dead_after_s - now
                if wait <= 0:
                    raise DeadPeer(f"silent for {self._settings.listener_dead_after_s}s")
                if batch.events:
                    wait = min(wait, batch.due - now)
                try:
                    async with asyncio.timeout(max(wait, 0.001)):
                        raw = await ws.recv()
                except TimeoutError:
                    continue
                heard = time.monotonic()
                received |= await self._handle(raw, epoch, sequencer, batch, heard)
                if len(batch.events) >= self._settings.listener_batch_max:
                    await self._write(epoch, batch, sequencer)
        finally:
            if batch.events:  # what was taken is committed before anything else happens
                await self._write(epoch, batch, sequencer)
            await self._written()

    async def _handle(
        self, raw: str | bytes, epoch: str, sequencer: Sequencer, batch: Batch, now: float
    ) -> bool:
        message = STREAM_MESSAGE.validate_json(raw)
        if isinstance(message, ExecutionReport):
            duplicates = sequencer.duplicates
            ready = sequencer.offer(message, now)
            metrics.EVENTS.labels("duplicate").inc(sequencer.duplicates - duplicates)
            if ready and not batch.events:
                batch.due = now + self._settings.listener_flush_ms / 1000
            batch.events += ready
            return True
        if isinstance(message, Heartbeat):
            sequencer.exchange_at(message.seq, now)
            if not batch.events and sequencer.exchange_seq == sequencer.taken:
                await self._written()  # the connection does one thing at a time
                await store.note_exchange_seq(self._conn, sequencer.exchange_seq)
        elif isinstance(message, Reset):
            raise Resync("reset", epoch)
        metrics.LAG.set(sequencer.exchange_seq - sequencer.taken)
        return False

    async def _write(self, epoch: str, batch: Batch, sequencer: Sequencer) -> None:
        """Start writing the batch while the next one fills; writes stay one at a time, in order."""
        events, batch.events = batch.events, []
        await self._written()
        self._writing = asyncio.create_task(self._store(epoch, events, sequencer.exchange_seq))

    async def _written(self) -> None:
        """Wait for the write in flight; its database error, if any, is raised here."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def _store(self, epoch: str, events: list[ExecutionReport], exchange_seq: int) -> None:
        written = await store.write_batch(self._conn, epoch, events, events[-1].seq, exchange_seq)
        self._count(written, len(events))
        metrics.COMMITTED_SEQ.set(events[-1].seq)
        metrics.LAG.set(exchange_seq - events[-1].seq)

    def _count(self, written: store.Written, offered: int) -> None:
        metrics.BATCH_SIZE.observe(offered)
        metrics.EVENTS.labels("stored").inc(written.stored)
        metrics.EVENTS.labels("duplicate").inc(offered - written.stored - written.foreign)
        metrics.EVENTS.labels("foreign").inc(written.foreign)
        metrics.UNKNOWN_ORDER_EVENTS.inc(written.unknown)
        metrics.REFUSED_MOVES.inc(written.refused)

    async def _resync(self, resync: Resync) -> None:
        """Fetch every order changed since our position and store its state as of its last event."""
        position = await store.read_position(self._conn)
        since = position.seq if resync.epoch == position.epoch else 0
        metrics.RESYNCS.labels(resync.reason).inc()
        log.info("resynchronising", extra={"reason": resync.reason, "since": since})
        url = f"{self._settings.exchange_url.rstrip('/')}/v1/orders"
        timeout = aiohttp.ClientTimeout(total=30)
        try:
            async with self._http.get(
                url, params={"updated_after_seq": str(since)}, timeout=timeout
            ) as resp:
                resp.raise_for_status()
                page = ChangedOrders.model_validate_json(await resp.read())
        except STREAM_ERRORS as exc:
            log.warning("resync failed: %r", exc)
            metrics.RECONNECTS.inc()
            await asyncio.sleep(self._backoff(1))
            return
        now = datetime.now(UTC)
        events = [
            ExecutionReport(type="execution_report", ts=now, **o.model_dump())
            for o in sorted(page.orders, key=lambda o: o.seq)
        ]
        written = await store.write_batch(
            self._conn, resync.epoch, events, page.seq, page.seq, source="resync"
        )
        self._count(written, len(events))
        metrics.COMMITTED_SEQ.set(page.seq)
        metrics.LAG.set(0)
