"""The tracker's pages as on-call uses them, in a headless browser against a real database:
58 failures paged 50 at a time both ways, the filter form (instrument, time range, kind), stuck
orders with what is being tried and when next, an order's page with its history and exchange
events, opt-in auto-refresh, a narrow screen; plus the CSV's file name and the pages' refusals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.browser import Page, announce, beyond_loopback, browser
from tests.helpers import fast_settings
from tracker.app import create_app

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[..., Awaitable[Client]]
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
US, DE = "US0378331005", "DE0007164600"
FAILURES = """
INSERT INTO orders (id, type, side, instrument, quantity, status, created_at, failed_at, attempts,
                    last_error, account_id)
SELECT gen_random_uuid(), 'market', 'buy', $1, 1, 'FAILURE',
       $2::timestamptz + make_interval(secs => g), $2::timestamptz + make_interval(secs => g),
       6, 'exchange 503: Connection not available', gen_random_uuid()
  FROM generate_series(1, $3) AS g"""
STUCK = """
INSERT INTO orders (id, type, side, instrument, quantity, status, created_at, attempts, last_error,
                    pending_deadline, next_attempt_at, lookup_failures, account_id)
SELECT gen_random_uuid(), 'market', 'sell', $1, 7, 'IN PROGRESS', now() - interval '1 hour', 6,
       'exchange 503: Connection not available', now() - interval '59 minutes',
       now() + interval '20 minutes', 2, gen_random_uuid()
  FROM generate_series(1, $2)"""
ROWS = "[...document.querySelectorAll('#orders tbody tr')]"
CELLS = f"{ROWS}.map(r => [...r.cells].map(c => c.textContent.trim()))"


@pytest.fixture
async def tracker(db_url: str, db: asyncpg.Connection, aiohttp_client: AiohttpClient) -> Client:
    """A tracker on a database with 58 failures (50 of US, then 8 of DE an hour later) and 3
    orders stuck for an hour."""
    await db.execute(FAILURES, US, T0, 50)
    await db.execute(FAILURES, DE, T0 + timedelta(hours=1), 8)
    await db.execute(STUCK, US, 3)
    settings = fast_settings(db_url, "http://127.0.0.1:9", tracker_stuck_after_s=60)
    return await aiohttp_client(create_app(settings))


async def _rows(page: Page) -> list[list[str]]:
    rows: list[list[str]] = await page.evaluate(CELLS)
    return rows


async def _text(page: Page, selector: str) -> str:
    text: str = await page.evaluate(f"document.querySelector('{selector}').textContent")
    return " ".join(text.split())


async def _submit(page: Page, **fields: str) -> None:
    for name, value in fields.items():
        await page.evaluate(f"document.querySelector('form.filters [name={name}]').value = "
                            f"'{value}'")  # fmt: skip
    await page.click("form.filters button")


async def test_report_pages_filters_and_links_in_a_browser(
    tracker: Client, db: asyncpg.Connection, request: pytest.FixtureRequest
) -> None:
    newest = await db.fetchval("SELECT id FROM orders ORDER BY failed_at DESC NULLS LAST LIMIT 1")
    await _history_of(db, newest)
    async with browser() as chrome:
        page = await chrome.new_page()
        await page.goto(str(tracker.make_url("/")))
        assert await _text(page, "#totals") == "showing 50 of 58 failed (1-50, newest first)"
        first = await _rows(page)
        assert len(first) == 50
        assert [r[1] for r in first[:8]] == [DE] * 8
        assert await page.evaluate("document.querySelector('a[rel=prev]') === null")
        assert "3 stuck in progress" in await _text(page, "#stuck-warning")
        times = await page.evaluate(
            "[...document.querySelectorAll('#orders time')].map(t => [t.dateTime, t.title])"
        )
        assert len(times) == 100  # failed and created, each row
        assert all(at and title.endswith(" UTC") for at, title in times)
        announce(request.config, await page.screenshot("tracker-failures.png"), "tracker page")

        await page.click("a[rel=next]")  # older
        assert await _text(page, "#totals") == "showing 8 of 58 failed (51-58, newest first)"
        assert len(await _rows(page)) == 8
        assert await page.evaluate("document.querySelector('a[rel=next]') === null")
        await page.click("a[rel=prev]")  # newer: the first page again
        assert await _rows(page) == first

        await _submit(page, instrument=DE)
        assert await _text(page, "#totals") == "showing 8 of 8 failed (1-8, newest first)"
        await _submit(page, instrument="", since="2026-01-05T12:00:10", until="2026-01-05T12:00:20")
        rows = await _rows(page)
        assert len(rows) == 10  # failed at T0+10 s .. T0+19 s
        assert {r[1] for r in rows} == {US}

        await _submit(page, kind="stuck", since="", until="")
        stuck = await _rows(page)
        assert len(stuck) == 3
        assert stuck[0][3] == "1 h"  # stuck for
        assert stuck[0][4] == "6"  # attempts
        assert stuck[0][5].startswith("looking it up: did the exchange book attempt 6?")
        assert stuck[0][6] in {"in 19 min", "in 20 min"}  # the next attempt
        assert stuck[0][7] == "exchange 503: Connection not available"

        await page.goto(str(tracker.make_url("/")))
        await page.click("#orders a.id")  # the newest failure's page
        assert str(newest) in await _text(page, "h2")
        assert "exchange 503" in await _text(page, "#fields")
        history = await page.evaluate("document.querySelectorAll('#history tbody tr').length")
        assert history == 2
        assert "rejected" in await _text(page, "#events")
        announce(request.config, await page.screenshot("tracker-order.png"), "an order's page")

        assert await page.evaluate("document.querySelector('meta[http-equiv=refresh]') === null")
        await page.goto(str(tracker.make_url("/?refresh=30")))
        refresh = "document.querySelector('meta[http-equiv=refresh]').content"
        assert await page.evaluate(refresh) == "30"
        await page.click("a[rel=next]")
        assert await page.evaluate(refresh) == "30"  # paging keeps it

        await page.viewport(390, 844, mobile=True)
        await page.goto(str(tracker.make_url("/")))
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        wrap = "document.querySelector('.table-wrap')"
        assert await page.evaluate(f"{wrap}.scrollWidth > {wrap}.clientWidth")  # it scrolls
        assert await page.evaluate("document.querySelector('meta[name=viewport]') !== null")
        announce(request.config, await page.screenshot("tracker-narrow.png"), "narrow screen")
    assert beyond_loopback(page.requests) == []
    assert page.failed == []
    assert page.errors == []


async def _history_of(db: asyncpg.Connection, order_id: Any) -> None:
    await db.execute(
        "INSERT INTO order_history (order_id, at, event, attempt, outcome, detail) VALUES"
        " ($1, $2, 'placement_sent', 1, NULL, 'valid until ...'),"
        " ($1, $2 + interval '1 second', 'placement_answered', 1, 'unknown', 'exchange 503')",
        order_id, T0,
    )  # fmt: skip
    await db.execute(
        "INSERT INTO exchange_events (epoch, seq, order_id, exchange_order_id, status,"
        " filled_quantity, quantity, exchange_ts, source)"
        " VALUES ('e1', 1, $1, 'x-1', 'rejected', 0, 1, $2, 'stream')",
        order_id, T0,
    )  # fmt: skip


async def test_csv_is_a_download_with_a_file_name(tracker: Client) -> None:
    resp = await tracker.get("/failures", params={"format": "csv", "instrument": DE})
    assert resp.status == 200
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="failures-')
    assert disposition.endswith('.csv"')
    assert len((await resp.text()).splitlines()) == 1 + 8
    page = await (await tracker.get("/", params={"instrument": DE})).text()
    assert "/failures?format=csv&amp;limit=1000&amp;instrument=DE0007164600" in page


async def test_pages_escape_refuse_and_survive_without_history(
    tracker: Client, db: asyncpg.Connection
) -> None:
    await db.execute("UPDATE orders SET last_error = '<script>alert(1)</script>'")
    page = await (await tracker.get("/")).text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for bad in ("refresh=1", "kind=all", "since=yesterday", "instrument=X", "limit=0", "x=1"):
        assert (await tracker.get(f"/?{bad}")).status == 400, bad
    assert (await tracker.get("/orders/nope")).status == 400
    missing = await tracker.get("/orders/6f1c6a56-6f64-4cf1-9b8e-3a3c6c1f0e59")
    assert missing.status == 404
    assert missing.content_type == "text/html"
    await db.execute("DROP TABLE order_history")  # a database from before that table
    order_id = await db.fetchval("SELECT id FROM orders LIMIT 1")
    resp = await tracker.get(f"/orders/{order_id}")
    assert resp.status == 200
    assert "keeps no placement history" in await resp.text()
