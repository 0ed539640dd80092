"""The listener's SQL: one statement writes a whole batch of events.

The batch goes in as arrays (one round trip): new events are inserted once (the (epoch, seq) key
drops duplicates), the latest new event per order moves `exchange_order_status` forward when the
state machine allows it, and the committed position advances, all in one implicit transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from orders_core.wire import ExecutionReport

WRITE_BATCH = """
WITH incoming AS (
    SELECT * FROM unnest($2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::bigint[],
                         $7::bigint[], $8::numeric[], $9::timestamptz[])
        AS t(seq, order_id, exchange_order_id, status, filled_quantity, quantity, avg_price, ts)
),
stored AS (
    INSERT INTO exchange_events (epoch, seq, order_id, exchange_order_id, status, filled_quantity,
                                 quantity, avg_price, exchange_ts, source)
    SELECT $1::text, seq, order_id, exchange_order_id, status, filled_quantity, quantity,
           avg_price, ts, $10::text
      FROM incoming
    ON CONFLICT (epoch, seq) DO NOTHING
    RETURNING *
),
latest AS (
    SELECT DISTINCT ON (order_id) * FROM stored ORDER BY order_id, seq DESC
),
moved AS (
    INSERT INTO exchange_order_status AS s (order_id, exchange_order_id, stock_market_order_status,
                                            filled_quantity, quantity, avg_price, epoch, seq)
    SELECT order_id, exchange_order_id, status, filled_quantity, quantity, avg_price, epoch, seq
      FROM latest
    ON CONFLICT (order_id) DO UPDATE
       SET exchange_order_id = excluded.exchange_order_id,
           stock_market_order_status = excluded.stock_market_order_status,
           filled_quantity = excluded.filled_quantity,
           quantity = excluded.quantity,
           avg_price = coalesce(excluded.avg_price, s.avg_price),
           epoch = excluded.epoch, seq = excluded.seq, updated_at = clock_timestamp()
     WHERE exchange_status_moves_forward(s.stock_market_order_status, s.filled_quantity,
                                         excluded.stock_market_order_status,
                                         excluded.filled_quantity)
    RETURNING 1
),
position AS (
    UPDATE exchange_stream_position
       SET epoch = $1::text, seq = $11::bigint, exchange_seq = greatest($12::bigint, $11::bigint),
           updated_at = clock_timestamp()
    RETURNING 1
)
SELECT (SELECT count(*) FROM stored) AS stored,
       -- the status table as it was before this statement: moves the state machine refused
       (SELECT count(*) FROM latest l JOIN exchange_order_status s USING (order_id)
         WHERE NOT exchange_status_moves_forward(s.stock_market_order_status, s.filled_quantity,
                                                 l.status, l.filled_quantity)
           AND (s.stock_market_order_status, s.filled_quantity)
               IS DISTINCT FROM (l.status, l.filled_quantity)) AS refused,
       (SELECT count(*) FROM stored WHERE NOT EXISTS
           (SELECT 1 FROM orders o WHERE o.id = stored.order_id)) AS unknown,
       (SELECT count(*) FROM position) AS position"""

READ_POSITION = "SELECT epoch, seq, exchange_seq FROM exchange_stream_position"
NOTE_EXCHANGE_SEQ = """
UPDATE exchange_stream_position SET exchange_seq = $1, updated_at = clock_timestamp()
 WHERE exchange_seq <> $1"""


@dataclass(frozen=True)
class Position:
    epoch: str | None
    seq: int
    exchange_seq: int


@dataclass(frozen=True)
class Written:
    stored: int  # new events (the rest were duplicates)
    refused: int  # orders whose latest event would have moved their status backwards
    unknown: int  # new events about orders we do not have (kept all the same)
    foreign: int  # events whose client order id is not one of ours at all (not a UUID): skipped


async def read_position(conn: asyncpg.Connection) -> Position:
    row = await conn.fetchrow(READ_POSITION)
    assert row is not None  # the migration inserts the one row
    return Position(row["epoch"], row["seq"], row["exchange_seq"])


async def note_exchange_seq(conn: asyncpg.Connection, exchange_seq: int) -> None:
    await conn.execute(NOTE_EXCHANGE_SEQ, exchange_seq)


async def write_batch(
    conn: asyncpg.Connection,
    epoch: str,
    events: Sequence[ExecutionReport],
    position: int,
    exchange_seq: int,
    source: str = "stream",
) -> Written:
    """Store the events and commit the stream position (after them, or a resync's snapshot)."""
    foreign = [e for e in events if _order_id(e) is None]
    events = [e for e in events if _order_id(e) is not None]
    row = await conn.fetchrow(
        WRITE_BATCH,
        epoch,
        [e.seq for e in events],
        [_order_id(e) for e in events],
        [e.exchange_order_id for e in events],
        [e.status for e in events],
        [e.filled_quantity for e in events],
        [e.quantity for e in events],
        [e.avg_price for e in events],
        [e.ts for e in events],
        source,
        position,
        exchange_seq,
    )
    assert row is not None
    return Written(row["stored"], row["refused"], row["unknown"], len(foreign))


def _order_id(event: ExecutionReport) -> UUID | None:
    try:
        return UUID(event.client_order_id)
    except ValueError:
        return None
