"""Limits (SPEC §7, issue 10): a token bucket per API key; on every service a bound on the time
to send a request head, on idle kept-alive connections and on open connections.

The server limits live in the process's own server (`orders_core.web.serve`, the stand-in's
`exchange_sim.limits`), so those tests run the services as processes and talk raw TCP to them.
Every wait is bounded; nothing is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from orders_core.limits import TokenBuckets
from tests.api_fixtures import ApiFactory
from tests.helpers import MARKET, bearer, eventually, fast_settings, make_key
from tests.procs import ApiProcess, ListenerProcess, ServiceProcess, TrackerProcess
from tests.sim import SimProcess

SERVICES = ["orders-api", "tracker", "exchange-listener", "exchange-sim"]
PROCESSES: dict[str, type[ServiceProcess]] = {
    "orders-api": ApiProcess,
    "tracker": TrackerProcess,
    "exchange-listener": ListenerProcess,
}
# A head that never ends: header lines keep coming, far below the line and header limits.
ENDLESS_HEAD = b"GET /health/live HTTP/1.1\r\nHost: test\r\nX-Pad: " + b"a" * 4000
BOUND_S = 15.0  # how long a test waits for the server to act (it should take 0.5 s)
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


# --- the rate limit -------------------------------------------------------------------------


async def test_past_the_burst_429_with_retry_after(make_api: ApiFactory) -> None:
    api = await make_api(rate_limit_per_s=0.01, rate_limit_burst=2)  # a token per 100 s
    for remaining in ("1", "0"):
        resp = await api.get("/orders")
        assert resp.status == 200
        assert resp.headers["RateLimit-Limit"] == "2"
        assert resp.headers["RateLimit-Remaining"] == remaining
    resp = await api.get("/orders")
    assert resp.status == 429
    assert resp.headers["Retry-After"].isdigit()
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.headers["RateLimit-Remaining"] == "0"
    assert int(resp.headers["RateLimit-Reset"]) >= int(resp.headers["Retry-After"])
    assert "Rate limit" in (await resp.json())["message"]
    assert (await api.post("/orders", json=MARKET)).status == 429  # writes share the bucket
    health = await api.get("/health/live")  # open routes are not limited
    assert health.status == 200
    assert "RateLimit-Limit" not in health.headers


async def test_each_key_has_its_own_bucket(make_api: ApiFactory, db_url: str) -> None:
    api = await make_api(rate_limit_per_s=0.01, rate_limit_burst=1)
    first, second = bearer(await make_key(db_url, "a")), bearer(await make_key(db_url, "b"))
    assert (await api.get("/orders", headers=first)).status == 200
    assert (await api.get("/orders", headers=first)).status == 429
    assert (await api.get("/orders", headers=second)).status == 200
    assert (await api.get("/orders", headers=second)).status == 429


async def test_an_emptied_bucket_refills(make_api: ApiFactory) -> None:
    api = await make_api(rate_limit_per_s=1, rate_limit_burst=1)
    statuses = [(await api.get("/orders")).status for _ in range(5)]
    assert 429 in statuses
    await eventually(lambda: _status(api.get("/orders")), lambda s: s == 200, timeout_s=10)


async def _status(request: Any) -> int:
    async with request as resp:
        status: int = resp.status
        return status


def test_idle_buckets_are_dropped() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=10, burst=20, max_keys=1000, clock=lambda: now[0])
    for n in range(500):
        assert buckets.take(f"key{n}").allowed
    assert len(buckets) == 500
    now[0] += 2.0  # burst / rate: every bucket is full again, as good as none
    buckets.take("another")
    assert len(buckets) == 1
    for n in range(1500):
        buckets.take(f"key{n}")
    assert len(buckets) == 1000  # max_keys bounds keys that are all busy


def test_retry_after_is_when_one_token_is_back() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=0.5, burst=1, clock=lambda: now[0])
    assert buckets.take("k").allowed
    verdict = buckets.take("k")
    assert not verdict.allowed
    assert verdict.retry_after_s == 2
    now[0] += 1.5
    assert buckets.take("k").retry_after_s == 1  # 0.75 of a token: whole seconds, at least 1
    now[0] += 0.5
    assert buckets.take("k").allowed


# --- server limits, per process ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def _service(name: str, db_url: str, exchange_url: str, **limits: Any) -> AsyncIterator[int]:
    """The named service as a process with these server limits; yields its port."""
    if name == "exchange-sim":
        env = {f"EXCHANGE_SIM_{key.upper()}": str(value) for key, value in limits.items()}
        async with SimProcess.start_async(env) as sim:
            yield sim.port
        return
    settings = fast_settings(db_url, exchange_url, **limits)
    async with await PROCESSES[name].start(settings) as proc:
        yield proc.port


@contextlib.asynccontextmanager
async def _connections(port: int, n: int) -> AsyncIterator[list[Conn]]:
    conns: list[Conn] = []
    try:
        for _ in range(n):
            conns.append(await asyncio.open_connection("127.0.0.1", port))
        yield conns
    finally:
        for _, writer in conns:
            writer.close()


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection; fails if it stays open."""
    got = b""
    try:
        async with asyncio.timeout(BOUND_S):
            while chunk := await reader.read(4096):
                got += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {BOUND_S}s; received {got!r}") from None
    except ConnectionError:
        pass
    return got


async def _dribble_until_closed(port: int, head: bytes) -> bytes:
    """Send `head` a byte every 0.1 s, reading in between; what the server sent before it
    closed the connection (possibly nothing, if a reset came first). Fails if it stays open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(BOUND_S):
            for byte in head:
                writer.write(bytes([byte]))
                try:
                    async with asyncio.timeout(0.1):
                        chunk = await reader.read(4096)
                except TimeoutError:
                    continue
                return chunk + await _until_closed(reader) if chunk else b""
    except TimeoutError:
        raise AssertionError(f"a slow head was not cut within {BOUND_S}s") from None
    except ConnectionError:
        return b""
    finally:
        writer.close()
    raise AssertionError("the whole head was sent and the connection stayed open")


def _is_json_error(answer: bytes, status: int) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["message"]


@pytest.mark.parametrize("name", SERVICES)
async def test_a_slow_head_is_cut(name: str, db_url: str, exchange: SimProcess) -> None:
    async with _service(name, db_url, exchange.url, client_header_timeout_s=0.5) as port:
        answer = await _dribble_until_closed(port, ENDLESS_HEAD)
    if answer:  # a reset may come before the answer does, when a byte was still on its way
        _is_json_error(answer, 408)


async def test_a_slow_head_after_a_request_is_cut(db_url: str, exchange: SimProcess) -> None:
    limits = {"client_header_timeout_s": 0.5, "keepalive_timeout_s": 60}
    async with _service("orders-api", db_url, exchange.url, **limits) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n")
            async with asyncio.timeout(BOUND_S):
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: test\r\n")  # and nothing more
            answer = await _until_closed(reader)
        finally:
            writer.close()
    _is_json_error(answer[answer.index(b"HTTP/1.1 408") :], 408)


async def test_an_idle_kept_alive_connection_is_closed(db_url: str, exchange: SimProcess) -> None:
    limits = {"client_header_timeout_s": 60, "keepalive_timeout_s": 0.5}
    async with _service("orders-api", db_url, exchange.url, **limits) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n")
            answer = await _until_closed(reader)
        finally:
            writer.close()
    assert answer.startswith(b"HTTP/1.1 200")


async def test_idle_sockets_do_not_stop_a_normal_request(db_url: str, exchange: SimProcess) -> None:
    settings = fast_settings(db_url, exchange.url, client_header_timeout_s=60)
    async with (
        await ApiProcess.start(settings) as api,
        _connections(api.port, 200) as idle,
        _connections(api.port, 50) as half,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=BOUND_S)) as http,
    ):
        for _, writer in half:
            writer.write(ENDLESS_HEAD[:30])
        async with http.post(f"{api.url}/orders", json=MARKET, headers=api.headers) as resp:
            assert resp.status == 201
        async with http.get(f"{api.url}/orders", headers=api.headers) as resp:
            assert resp.status == 200
        assert len(idle) + len(half) == 250


@pytest.mark.parametrize("name", ["orders-api", "exchange-sim"])
async def test_connections_past_the_cap_are_closed(
    name: str, db_url: str, exchange: SimProcess
) -> None:
    cap = 5
    limits = {"client_header_timeout_s": 60, "max_connections": cap}
    async with (
        _service(name, db_url, exchange.url, **limits) as port,
        _connections(port, cap) as held,
    ):
        # Once the server has seen them all (it may still count its readiness probe), a new
        # connection is answered 503 and closed; one it admitted stays open, and is held too.
        for _ in range(cap):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            held.append((reader, writer))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    answer = await _until_closed(reader)
                break
        else:
            raise AssertionError(f"no connection refused past {cap} open")
        _is_json_error(answer, 503)
        for _, writer in held:
            writer.close()
        url = f"http://127.0.0.1:{port}/health" + ("" if name == "exchange-sim" else "/live")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            await eventually(lambda: _ok(http, url), bool, timeout_s=BOUND_S)


async def _ok(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False
