"""The stand-in's HTTP server limits: a bound on the time to send a request head, on idle
kept-alive connections, and on open connections (`EXCHANGE_SIM_CLIENT_HEADER_TIMEOUT_S`,
`EXCHANGE_SIM_KEEPALIVE_TIMEOUT_S`, `EXCHANGE_SIM_MAX_CONNECTIONS`).

The services have the same in `orders_core.limits`; the stand-in plays the outside world and
imports nothing of ours, so this is its own small version. aiohttp has no request-head timeout
and no hook for its protocol class: a subclass of its `RequestHandler` adds the head timer and
the cap, and `run` serves it from a listening socket of its own under `web.AppRunner`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_BODY_BYTES = 64 * 1024  # client_max_size: an order or a config change is a few hundred bytes


def _answer(status: str, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return f"{head}\r\nConnection: close\r\n\r\n".encode() + body


HEAD_TIMEOUT = _answer("408 Request Timeout", "The request head was not received in time")
OVER_CAPACITY = _answer("503 Service Unavailable", "Too many connections; retry shortly")

assert {"_waiter", "_messages"} <= set(web.RequestHandler.__slots__), "aiohttp changed"


class ServerLimits(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXCHANGE_SIM_", extra="ignore", frozen=True)

    client_header_timeout_s: float = Field(default=10.0, gt=0)
    keepalive_timeout_s: float = Field(default=75.0, gt=0)
    max_connections: int = Field(default=10_000, ge=1)


class _Open:
    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.count = 0


class _Handler(web.RequestHandler):
    """A head must be whole within the timeout of the connection's opening, or of the first
    byte after a response; past the cap a connection gets a 503 and is closed at once."""

    __slots__ = ("_admitted", "_begun", "_open", "_timer")

    def __init__(self, manager: web.Server, open_: _Open, **kwargs: Any) -> None:
        super().__init__(manager, keepalive_timeout=open_.limits.keepalive_timeout_s, **kwargs)
        self._open = open_
        self._timer: asyncio.TimerHandle | None = None
        self._begun = False
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._open.count >= self._open.limits.max_connections:
            cast(asyncio.Transport, transport).write(OVER_CAPACITY)
            transport.close()
            return
        self._open.count += 1
        self._admitted = True
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        if self._timer is None and self._waiter is not None and data:
            self._arm()
        super().data_received(data)
        if self._timer is not None:
            if self._messages:
                self._timer.cancel()
                self._timer = None
            elif data:
                self._begun = True

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._admitted:
            self._admitted = False
            self._open.count -= 1
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._begun = False
        self._timer = self._loop.call_later(
            self._open.limits.client_header_timeout_s, self._too_slow
        )

    def _too_slow(self) -> None:
        self._timer = None
        if self.transport is not None:
            if self._begun:
                self.transport.write(HEAD_TIMEOUT)
            self.force_close()


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    limits: ServerLimits,
    ready: Callable[[], None],
    **runner_kwargs: Any,
) -> None:
    runner = web.AppRunner(app, handle_signals=True, **runner_kwargs)
    await runner.setup()
    try:
        server = runner.server
        assert server is not None
        open_ = _Open(limits)
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(
            lambda: _Handler(server, open_, loop=loop, access_log=None), host, port
        )
        ready()
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
    ready: Callable[[], None],
    **runner_kwargs: Any,
) -> None:
    """`web.run_app` with these limits; `ready` is called once the port listens."""
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, host, port, limits, ready, **runner_kwargs))
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
