"""The exchange status state machine: Python and SQL agree on every move."""

from __future__ import annotations

import itertools

import asyncpg

from orders_core.domain import EXCHANGE_STATUSES, exchange_status_moves_forward

FILLS = (0, 3, 10)


async def test_sql_and_python_agree_on_every_move(db: asyncpg.Connection) -> None:
    cases = list(itertools.product(EXCHANGE_STATUSES, FILLS, EXCHANGE_STATUSES, FILLS))
    rows = await db.fetch(
        "SELECT exchange_status_moves_forward(a, b, c, d) AS ok "
        "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[]) AS t(a, b, c, d)",
        *(list(column) for column in zip(*cases, strict=True)),
    )
    assert [r["ok"] for r in rows] == [exchange_status_moves_forward(*c) for c in cases]


def test_moves() -> None:
    forward = exchange_status_moves_forward
    assert forward("new", 0, "partially_filled", 3)
    assert forward("partially_filled", 3, "partially_filled", 5)
    assert forward("partially_filled", 3, "filled", 10)
    assert forward("new", 0, "canceled", 0)
    assert forward("canceled", 3, "filled", 10)  # the late fill
    assert forward("expired", 0, "filled", 10)
    assert not forward("filled", 10, "partially_filled", 10)
    assert not forward("filled", 10, "canceled", 10)
    assert not forward("canceled", 0, "new", 0)
    assert not forward("partially_filled", 5, "partially_filled", 3)
    assert not forward("new", 0, "new", 0)
    assert not forward("canceled", 5, "filled", 3)  # fills never shrink
