"""The tracker as a real process (its JSON log captured), and a real webhook receiver."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from tests.helpers import SystemSettings
from tests.procs import ApiProcess, ListenerProcess, TrackerProcess
from tests.sim import free_port


@dataclass
class WebhookReceiver:
    """A real HTTP server on loopback that records each report POSTed to it. It answers 500 to
    the first POST of every `fail_first_every`-th key, so the tracker must retry those."""

    fail_first_every: int = 0
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)
    _seen: set[str] = field(default_factory=set)
    _runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        body = await request.json()
        self.posts.append((key, body))
        first = key not in self._seen
        self._seen.add(key)
        if first and self.fail_first_every and len(self._seen) % self.fail_first_every == 0:
            return web.json_response({"message": "try again"}, status=500)
        self.accepted[key] += 1
        return web.json_response({"ok": True})

    def order_ids(self, kind: str = "failure") -> Counter[str]:
        """Accepted deliveries per order id of this kind."""
        return Counter(
            key.split(":", 1)[1] for key, n in self.accepted.items() for _ in range(n)
            if key.startswith(f"{kind}:")
        )  # fmt: skip


class Running(Protocol):
    url: str
    headers: dict[str, str]

    async def stop(self) -> None: ...


# Every service that exports /metrics, as (Prometheus job, how to start it). The conventions test
# and the real-Prometheus test run over this list: the listener joins with one line here.
MONITORED: list[tuple[str, Callable[[SystemSettings], Awaitable[Running]]]] = [
    ("orders-api", ApiProcess.start),
    ("exchange-listener", ListenerProcess.start),
    ("tracker", TrackerProcess.start),
]
