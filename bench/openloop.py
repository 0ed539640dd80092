"""An open-loop load generator: requests leave at fixed instants, whatever the answers do.

A closed loop (wrk, or N clients each waiting for its answer) sends less when the server slows
down, and so measures less of the slowness it causes (coordinated omission). Here request i is
due at start + i / rate; it goes out on an idle keep-alive connection (a new one when none is
idle), and its latency is counted from when it was due, not from when it could be sent. One
process, uvloop, raw HTTP/1.1 over asyncio protocols: it costs little CPU next to the server.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_CONNECTIONS = 2000


@dataclass
class Result:
    rate: float  # asked, requests/s
    duration_s: float
    latencies_s: list[float] = field(default_factory=list)  # from due time to answer, answered
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0  # broken connections, refused connects
    late_s: float = 0.0  # the generator's own lag at the worst moment (sanity: should be ~0)
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (due offset, latency)

    def percentile(self, p: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class _Conn(asyncio.Protocol):
    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.due = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes, due: float) -> None:
        assert self.transport is not None
        self.busy, self.due = True, due
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            self.busy = False
            self.pool.answered(self, int(head[0].split(" ", 2)[1]), self.due)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost(self)


class _Pool:
    def __init__(self, host: str, port: int, result: Result, start: float) -> None:
        self.host, self.port, self.result, self.start = host, port, result, start
        self.idle: list[_Conn] = []
        self.all: set[_Conn] = set()
        self.outstanding = 0
        self.finished = asyncio.Event()

    async def connection(self) -> _Conn | None:
        if self.idle:
            return self.idle.pop()
        if len(self.all) >= MAX_CONNECTIONS:
            return None
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError:
            self.result.errors += 1
            return None
        self.all.add(conn)
        return conn

    def answered(self, conn: _Conn, status: int, due: float) -> None:
        now = time.perf_counter()
        self.result.statuses[status] += 1
        self.result.latencies_s.append(now - due)
        self.result.timeline.append((due - self.start, now - due))
        self.idle.append(conn)
        self._done_one()

    def lost(self, conn: _Conn) -> None:
        self.all.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.busy:
            self.result.errors += 1
            self._done_one()

    def _done_one(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.finished.set()

    def close(self) -> None:
        for conn in list(self.all):
            if conn.transport is not None:
                conn.transport.close()


async def run(
    url: str, body: bytes, headers: dict[str, str], rate: float, duration_s: float
) -> Result:
    """POST `body` to `url` at `rate` a second for `duration_s`; waits for every answer."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    result = Result(rate=rate, duration_s=duration_s)
    start = time.perf_counter()
    pool = _Pool(host, port, result, start)
    total = int(rate * duration_s)
    pool.outstanding = total
    for i in range(total):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            result.late_s = max(result.late_s, -wait)
        conn = await pool.connection()
        if conn is None:
            pool._done_one()
            continue
        conn.send(request, due)
    try:
        await asyncio.wait_for(pool.finished.wait(), timeout=60)
    except TimeoutError:
        result.errors += pool.outstanding
    pool.close()
    return result
