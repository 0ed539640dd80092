"""Limits on what one client may take from a service (SPEC §7).

- `TokenBuckets`: a token bucket per key (the API's per-key rate limit).
- `LimitedRequestHandler` and `run`: the HTTP server of every service with three bounds aiohttp
  does not give as such: the time to send a request head (`CLIENT_HEADER_TIMEOUT_S`), the idle
  time of a kept-alive connection (`KEEPALIVE_TIMEOUT_S`, aiohttp's own `keepalive_timeout`),
  and the open connections of one process (`MAX_CONNECTIONS`).

aiohttp 3.14's only per-connection timer is `keepalive_timeout`: armed when a connection opens
and after each response, it closes a connection still waiting for a whole head when it fires, so
it bounds idle time and head time together, with one value. There is no hook for a protocol
class (`Server.__call__` always builds `RequestHandler`), hence our own listening socket whose
protocol factory builds the subclass below; the application still runs under `web.AppRunner`
(startup, graceful shutdown, cleanup).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from aiohttp import web
from prometheus_client import Counter, Gauge

from orders_core.settings import Settings

CONNECTIONS_CLOSED = Counter(
    "http_connections_closed_total",
    "Connections the server closed on a limit: head_timeout (no whole request head within "
    "CLIENT_HEADER_TIMEOUT_S), over_capacity (past MAX_CONNECTIONS)",
    ["reason"],
)
for _reason in ("head_timeout", "over_capacity"):
    CONNECTIONS_CLOSED.labels(_reason)
CONNECTIONS_OPEN = Gauge(
    "http_connections_open", "HTTP connections open now", multiprocess_mode="livesum"
)

# client_max_size of the services that take no request body (tracker, listener): a body is
# never read there, and one that is asked for past this gets a 413.
NO_BODY_MAX_BYTES = 16 * 1024

# What RequestHandler keeps that the subclass reads: fail at import if aiohttp renames them.
assert {"_waiter", "_messages"} <= set(web.RequestHandler.__slots__), "aiohttp changed"


class Verdict(NamedTuple):
    allowed: bool
    remaining: int  # whole tokens left
    reset_s: int  # seconds until the bucket is full again
    retry_after_s: int  # when refused: seconds until one token is back (>= 1); else 0


class TokenBuckets:
    """A token bucket per key: `rate` tokens a second, at most `burst` held; a request takes one.

    No lock, no I/O: one dict lookup and some arithmetic (the event loop is the only writer).
    A bucket idle long enough to be full again is the same as no bucket, so those are dropped as
    they come to the front of the least-recently-used order; `max_keys` bounds the rest."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._refill_s = burst / rate  # from empty to full
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key: tokens, at

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> Verdict:
        now = self._clock()
        buckets = self._buckets
        held = buckets.pop(key, None)
        tokens = (
            float(self.burst)
            if held is None
            else min(self.burst, held[0] + (now - held[1]) * self.rate)
        )
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        buckets[key] = (tokens, now)
        self._evict(now)
        reset_s = math.ceil((self.burst - tokens) / self.rate)
        if allowed:
            return Verdict(True, int(tokens), reset_s, 0)
        return Verdict(False, 0, reset_s, max(1, math.ceil((1.0 - tokens) / self.rate)))

    def _evict(self, now: float) -> None:
        buckets = self._buckets
        while buckets:
            key, (_, at) = next(iter(buckets.items()))
            if now - at < self._refill_s and len(buckets) <= self._max_keys:
                return
            del buckets[key]


@dataclass(frozen=True)
class ServerLimits:
    head_timeout_s: float = 10.0
    keepalive_timeout_s: float = 75.0
    max_connections: int = 10_000

    @classmethod
    def of(cls, settings: Settings) -> ServerLimits:
        return cls(
            settings.client_header_timeout_s,
            settings.keepalive_timeout_s,
            settings.max_connections,
        )


def _answer(status: str, message: str, *headers: str) -> bytes:
    """A whole `Connection: close` response with a JSON `message`, written before closing."""
    body = json.dumps({"message": message}).encode()
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", *headers,
             f"Content-Length: {len(body)}", "Connection: close", "", ""]  # fmt: skip
    return "\r\n".join(lines).encode() + body


HEAD_TIMEOUT = _answer("408 Request Timeout", "The request head was not received in time")
OVER_CAPACITY = _answer(
    "503 Service Unavailable", "Too many connections; retry shortly", "Retry-After: 1"
)


class Connections:
    """What the connections of one server share: their limits, and how many are open."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.open = 0


class LimitedRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, plus a head timer and the connection cap.

    The head timer runs from the connection's opening, and on a kept-alive connection from the
    first byte after a response, until a whole head has been parsed; if it fires first, the
    client gets a 408 (or nothing, if it sent nothing) and the connection is closed. A connection
    past the cap gets a 503 and is closed at once, before any task is made for it."""

    __slots__ = ("_admitted", "_connections", "_head_begun", "_head_timer", "_kept_alive")

    def __init__(self, manager: web.Server, connections: Connections, **kwargs: Any) -> None:
        super().__init__(
            manager, keepalive_timeout=connections.limits.keepalive_timeout_s, **kwargs
        )
        self._connections = connections
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_begun = False
        self._kept_alive = False  # the timer runs from a response's end, not the connection's start
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        connections = self._connections
        if connections.open >= connections.limits.max_connections:
            CONNECTIONS_CLOSED.labels("over_capacity").inc()
            tcp = cast(asyncio.Transport, transport)
            tcp.write(OVER_CAPACITY)
            tcp.close()
            return
        connections.open += 1
        self._admitted = True
        CONNECTIONS_OPEN.inc()
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.transport is None:  # refused, or already closed
            return
        if self._head_timer is None and self._waiter is not None and data:
            self._arm_head_timer()  # idle between requests: the next head begins
        super().data_received(data)
        if self._head_timer is not None:
            if self._messages:  # a whole head (or one aiohttp rejects, and answers)
                self._head_timer.cancel()
                self._head_timer = None
            elif data:
                self._head_begun = True

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._admitted:
            self._admitted = False
            self._connections.open -= 1
            CONNECTIONS_OPEN.dec()
        super().connection_lost(exc)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        """After a response: the next head's time runs from now. Armed here, not only on the
        next byte, so that a byte arriving before aiohttp waits again is not missed."""
        result = await super().finish_response(request, resp, start_time)
        if self._head_timer is None and not self._messages and self.transport is not None:
            self._arm_head_timer(kept_alive=True)
        return result

    def _arm_head_timer(self, kept_alive: bool = False) -> None:
        self._head_begun = False
        self._kept_alive = kept_alive
        self._head_timer = self._loop.call_later(
            self._connections.limits.head_timeout_s, self._head_too_slow
        )

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport is None:
            return
        if self._kept_alive and not self._head_begun:
            return  # idle between requests: KEEPALIVE_TIMEOUT_S decides; the next byte re-arms
        CONNECTIONS_CLOSED.labels("head_timeout").inc()
        if self._head_begun:
            self.transport.write(HEAD_TIMEOUT)
        self.force_close()


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    limits: ServerLimits,
    reuse_port: bool,
    **runner_kwargs: Any,
) -> None:
    runner = web.AppRunner(app, handle_signals=True, **runner_kwargs)
    await runner.setup()
    try:
        server = runner.server
        assert server is not None
        connections = Connections(limits)
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(
            lambda: LimitedRequestHandler(server, connections, loop=loop, access_log=None),
            host,
            port,
            reuse_port=reuse_port or None,
        )
        try:
            await asyncio.Event().wait()  # until SIGINT/SIGTERM (GracefulExit)
        finally:
            listener.close()
    finally:
        await runner.cleanup()


def run(
    app: web.Application,
    host: str,
    port: int,
    limits: ServerLimits,
    loop: asyncio.AbstractEventLoop,
    reuse_port: bool = False,
    **runner_kwargs: Any,
) -> None:
    """`web.run_app` with our limits: serve until SIGINT/SIGTERM, then stop gracefully.
    `reuse_port`: share the port with the service's other workers (SO_REUSEPORT)."""
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, host, port, limits, reuse_port, **runner_kwargs))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        rest = asyncio.all_tasks(loop)
        for task in rest:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
