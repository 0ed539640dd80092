"""TCP proxies of the suite's own, between the services and what they talk to.

One class, three uses: in front of PostgreSQL (connections cut, or stalled so that statements
hang past a lease and land late), in front of the exchange's HTTP API (answers delayed; a client
that gives up does not cancel the request at the venue, as with a real venue), and in front of
the exchange's stream (connections cut or stalled: a half-open peer). A stalled connection holds
its bytes and delivers them when it thaws, as TCP does after a partition heals, even if one side
has closed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

from chaos.netutil import free_port

CHUNK = 65536
# How long a venue link keeps the exchange's side open for an answer nobody awaits any more.
ORPHAN_ANSWER_S = 30.0


@dataclass(eq=False)
class Link:
    """One proxied connection: its two sockets and until when it is frozen."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    frozen_until: float = 0.0
    client_gone: asyncio.Event = field(default_factory=asyncio.Event)

    async def thawed(self) -> None:
        while (wait := self.frozen_until - time.monotonic()) > 0:  # noqa: ASYNC110 (it may move)
            await asyncio.sleep(min(wait, 0.05))

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


@dataclass
class Flaky:
    """A window in which requests may freeze their connection."""

    until: float = 0.0
    share: float = 0.0
    hold_s: float = 0.0
    rng: random.Random = field(default_factory=random.Random)


class Proxy:
    """Listens on a free loopback port and forwards to `target_port`.

    `keep_venue_side`: when the client closes, the upstream side stays open until its next
    answer (the venue still decides a request whose client gave up)."""

    def __init__(self, name: str, target_port: int, *, keep_venue_side: bool = False) -> None:
        self.name = name
        self.port = free_port()
        self._target_port = target_port
        self._keep_venue_side = keep_venue_side
        self._server: asyncio.Server | None = None
        self._links: set[Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.answer_delay_s = 0.0  # added to every chunk from the upstream side
        self.frozen_until = 0.0  # new connections too are frozen until then
        self._flaky = Flaky()
        self.stalled = 0  # connections frozen in the latest flaky window

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def dsn(self, user: str = "postgres", database: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def connections(self) -> int:
        return len(self._links)

    def client_port(self, upstream_port: int) -> int | None:
        """The client's own port of the connection that reaches the target from
        `upstream_port` (what the target sees as its client's port), while it is open."""
        for link in self._links:
            if link.upstream.get_extra_info("sockname")[1] == upstream_port:
                port: int = link.client.get_extra_info("peername")[1]
                return port
        return None

    def cut(self) -> int:
        """Reset every open connection; new ones are accepted. How many were cut."""
        links, self._links = self._links, set()
        for link in links:
            link.abort()
        return len(links)

    def stall(
        self, duration_s: float, share: float, rng: random.Random, hold_s: float = 0.0
    ) -> None:
        """For `duration_s`: with share 1, every connection, new ones too, is frozen; else the
        network is flaky: each request (a statement, a message) sent meanwhile freezes its
        connection with probability `share`, for `hold_s` from then. What a frozen connection
        holds lands when it thaws, long after its sender may have given up on it."""
        until = time.monotonic() + duration_s
        if share >= 1:
            self.frozen_until = until
            for link in self._links:
                link.frozen_until = max(link.frozen_until, until)
        else:
            self._flaky = Flaky(until, share, hold_s, rng)
        self.stalled = 0

    @property
    def holding(self) -> bool:
        """Whether a stall holds a connection frozen now, or may freeze one (its window)."""
        now = time.monotonic()
        if self.frozen_until > now or self._flaky.until > now:
            return True
        return any(link.frozen_until > now for link in self._links)

    def _judge(self, link: Link) -> None:
        """In a flaky window, whether this request freezes its connection."""
        flaky, now = self._flaky, time.monotonic()
        if link.frozen_until < now < flaky.until and flaky.rng.random() < flaky.share:
            link.frozen_until = now + flaky.hold_s
            self.stalled += 1

    def thaw(self) -> None:
        self.frozen_until = 0.0
        self._flaky = Flaky()
        for link in self._links:
            link.frozen_until = 0.0

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except OSError:
            writer.transport.abort()
            return
        link = Link(writer, up_writer, frozen_until=self.frozen_until)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._forward(link, reader, up_writer, upstream=False),
                self._forward(link, up_reader, writer, upstream=True),
            )
        finally:
            self._links.discard(link)
            link.abort()

    async def _forward(
        self,
        link: Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        """Copy one direction until EOF; held while the link is frozen, delayed if asked."""
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(CHUNK):
                if upstream and link.client_gone.is_set():
                    break  # the venue's answer to a client that left: it has decided
                if not upstream:
                    self._judge(link)
                await link.thawed()
                if upstream and self.answer_delay_s > 0:
                    await asyncio.sleep(self.answer_delay_s)
                writer.write(data)
                await writer.drain()
        if not upstream and self._keep_venue_side:
            link.client_gone.set()  # the venue's side stays open for its answer, for a while
            link.client.transport.abort()
            loop = asyncio.get_running_loop()
            loop.call_later(ORPHAN_ANSWER_S, link.upstream.transport.abort)
            return
        with contextlib.suppress(ConnectionError, OSError):
            await link.thawed()  # what a frozen link held goes first, then the end
            if writer.can_write_eof():
                writer.write_eof()
        if upstream:
            link.abort()
