"""Where no handler runs (issue 10, SPEC §7): what aiohttp's HTTP layer refuses by itself is
answered 400 in JSON with a `message`, never quoting the request's bytes, by the API (a real
process), the tracker and the stand-in; and a value PostgreSQL refuses is the client's 400 at
the one error boundary, not a database outage."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from orders_core.web import request_context
from tests.helpers import fast_settings
from tests.procs import ApiProcess
from tests.sim import SimProcess
from tracker.app import create_app as create_tracker

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[..., Awaitable[Client]]
MARK = b"SECRET"  # in every request below; never in an answer
HOST = b"Host: x\r\n"


def _head(line: bytes, *headers: bytes) -> bytes:
    return line + b"\r\n" + HOST + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


def _post(*headers: bytes) -> bytes:
    return _head(b"POST /orders HTTP/1.1", *headers)


MALFORMED: dict[str, bytes] = {
    "control character in the method": _head(b"G\x01T /" + MARK + b" HTTP/1.1"),
    "unknown HTTP version": _head(b"GET / HTTP/9." + MARK),
    "control character in the target": _head(b"GET /\x7f" + MARK + b" HTTP/1.1"),
    "request line over the limit": _head(b"GET /" + MARK * 1500 + b" HTTP/1.1"),
    "space in a header name": _head(b"GET / HTTP/1.1", b"X " + MARK + b": y"),
    "control character in a header value": _head(b"GET / HTTP/1.1", b"X: " + MARK + b"\x01"),
    "header over the limit": _head(b"GET / HTTP/1.1", b"X: " + MARK * 1500),
    "too many headers": _head(b"GET / HTTP/1.1", *(b"X-%d: %s" % (i, MARK) for i in range(200))),
    "Content-Length not a number": _post(b"Content-Length: " + MARK),
    "Content-Length twice": _post(b"Content-Length: 1", b"Content-Length: 2") + b"ab",
    "unknown Transfer-Encoding": _post(b"Transfer-Encoding: " + MARK),
    "Transfer-Encoding and Content-Length": _post(
        b"Transfer-Encoding: chunked", b"Content-Length: 3"
    )
    + b"0\r\n\r\n",
    "chunk size not hexadecimal": _post(b"Transfer-Encoding: chunked") + MARK + b"\r\nab\r\n",
    "a TLS handshake": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + MARK + b"\r\n\r\n",
    "no HTTP at all": MARK + b" " + MARK + b"\r\n\r\n",
}


async def _exchange_raw(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)  # the answer, then the server closes
    finally:
        writer.close()


def _problems(answer: bytes) -> str | None:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(b":") for h in lines[1:])}
    try:
        message = json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        message = None
    if lines[0].split(b" ")[1:2] != [b"400"]:
        return f"not a 400: {lines[0]!r}"
    if not headers.get(b"content-type", b"").startswith(b"application/json") or not message:
        return f"not a JSON message: {answer[:300]!r}"
    if MARK in answer:
        return f"the request's bytes are quoted: {answer[:300]!r}"
    return None


async def _check_every_malformed_request(port: int) -> None:
    wrong = {}
    for name, raw in MALFORMED.items():
        if problem := _problems(await _exchange_raw(port, raw)):
            wrong[name] = problem
    assert not wrong, wrong


@pytest.fixture
async def api_process(db_url: str, exchange: SimProcess) -> AsyncIterator[ApiProcess]:
    async with await ApiProcess.start(fast_settings(db_url, exchange.url)) as api:
        yield api


# A body no handler reads, that does not decode: answered, then the connection closed, with no
# "Unhandled exception" logged by aiohttp when it would read the rest.
UNREAD = (
    b"GET /%s HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 6\r\n\r\n" + MARK
)


async def _undecodable_body_is_dropped(port: int, path: bytes) -> None:
    answer = await _exchange_raw(port, UNREAD % path)  # returns once the server closes
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


async def test_the_api_process_answers_malformed_requests_in_json(api_process: ApiProcess) -> None:
    await _check_every_malformed_request(api_process.port)
    await _undecodable_body_is_dropped(api_process.port, b"health/live")
    log = api_process.output()
    assert "SECRET" not in log  # its log does not quote them either
    assert "Unhandled exception" not in log


async def test_the_tracker_answers_malformed_requests_in_json(
    aiohttp_client: AiohttpClient, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = await aiohttp_client(create_tracker(fast_settings(db_url, "http://127.0.0.1:9")))
    assert tracker.server.port is not None
    caplog.set_level(logging.ERROR)
    await _check_every_malformed_request(tracker.server.port)
    await _undecodable_body_is_dropped(tracker.server.port, b"health/live")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_the_stand_in_answers_malformed_requests_in_json(exchange: SimProcess) -> None:
    crashes = exchange.output().count("Unhandled exception")
    await _check_every_malformed_request(exchange.port)
    await _undecodable_body_is_dropped(exchange.port, b"health")
    assert exchange.output().count("Unhandled exception") == crashes


# --- a value PostgreSQL refuses ------------------------------------------------------------------

REFUSED_VALUES: dict[str, tuple[str, object]] = {
    "numeric out of range (22003)": ("SELECT $1::int8 * 4", 2**62),
    "not a number (22P02)": ("SELECT $1::text::int", "x"),
    "date out of range (22008)": ("SELECT make_date($1, 1, 1)", 0),
    "NUL in text (22021)": ("SELECT $1::text", "a\x00b"),
    "too large for the driver to send": ("SELECT $1::int8", 2**70),
}


async def test_a_value_postgres_refuses_is_the_clients_400_not_an_outage(
    aiohttp_client: AiohttpClient, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def query(request: web.Request) -> web.Response:
        dsn = db_url if request.query["db"] == "up" else "postgresql://postgres@127.0.0.1:9/x"
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            sql, value = REFUSED_VALUES[request.query["case"]]
            return web.json_response({"value": str(await conn.fetchval(sql, value))})
        finally:
            await conn.close()

    app = web.Application(middlewares=[request_context])
    app.router.add_get("/", query)
    client = await aiohttp_client(app)
    caplog.set_level(logging.WARNING, logger="orders_core.web")
    for case in REFUSED_VALUES:
        resp = await client.get("/", params={"db": "up", "case": case})
        assert resp.status == 400, (case, await resp.text())
        assert (await resp.json())["message"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * len(REFUSED_VALUES)
    assert all("refused by the database" in r.getMessage() for r in caplog.records)
    # The database itself unreachable is still an outage.
    down = await client.get("/", params={"db": "down", "case": "not a number (22P02)"})
    assert down.status == 503
