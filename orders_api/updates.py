"""The update log behind `GET /orders/updates` (SPEC §9): numbering it, reading it, waking streams.

Triggers (migrations/0008) write one `order_updates` row per committed change of an order, in the
change's own transaction, with `seq` NULL. The sequencer gives committed rows their cursor in the
order they were written (for one order: the order of its commits). It runs in every instance, one
at a time under a transaction-level advisory lock (which a transaction pooler carries), and sends
one NOTIFY per batch. Each instance LISTENs on one dedicated direct connection (asyncpg-listen:
reconnects after a restart) and wakes its streams; with or without notifications they also look
every UPDATES_POLL_S, so the table, not the notification, is the truth.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from asyncpg_listen import ListenPolicy, NotificationListener, NotificationOrTimeout, connect_func

from orders_api import metrics
from orders_core.db import DB_ERRORS, Pool

log = logging.getLogger(__name__)

CHANNEL = "order_updates"
SEQUENCER_LOCK = 0x6F72646572735F75  # "orders_u"
SEQUENCE_BATCH = 5_000

# Volatile functions in a select list run after its ORDER BY: nextval follows `id`.
SEQUENCE = f"""
WITH go AS (SELECT pg_try_advisory_xact_lock({SEQUENCER_LOCK}) AS got),
todo AS (
    SELECT id FROM order_updates
     WHERE seq IS NULL AND (SELECT got FROM go)
     ORDER BY id
     LIMIT $1
       FOR UPDATE
),
numbered AS (
    SELECT id, nextval('order_updates_seq') AS seq FROM todo ORDER BY id
),
done AS (
    UPDATE order_updates AS u SET seq = n.seq FROM numbered AS n WHERE u.id = n.id
    RETURNING u.seq, u.at
),
stats AS (
    SELECT count(*) AS n, max(seq) AS head,
           extract(epoch FROM clock_timestamp() - min(at))::float8 AS oldest_s
      FROM done
)
SELECT n, head, oldest_s, CASE WHEN n > 0 THEN pg_notify('{CHANNEL}', head::text) END AS notified
  FROM stats"""

BOUNDS = """
SELECT (SELECT coalesce(max(seq), 0) FROM order_updates) AS head,
       (SELECT purged_through FROM order_updates_horizon) AS purged_through"""

AFTER = """
SELECT seq, at, body::text AS body FROM order_updates
 WHERE account_id = $1 AND seq > $2 AND seq IS NOT NULL
 ORDER BY seq
 LIMIT $3"""


@dataclass(frozen=True)
class Bounds:
    head: int  # the latest cursor given
    purged_through: int  # retention deleted every update up to this cursor


async def sequence(pool: Pool, batch: int = SEQUENCE_BATCH) -> int:
    """Number the committed updates nobody numbered yet (none when another instance is at it)."""
    row = await pool.fetchrow(SEQUENCE, batch)
    assert row is not None
    if row["n"]:
        metrics.UPDATES_SEQUENCED.inc(row["n"])
        metrics.UPDATES_SEQUENCE_DELAY.observe(max(row["oldest_s"], 0.0))
    count: int = row["n"]
    return count


async def bounds(pool: Pool) -> Bounds:
    row = await pool.fetchrow(BOUNDS)
    assert row is not None
    return Bounds(row["head"], row["purged_through"])


async def after(pool: Pool, account_id: UUID, cursor: int, limit: int) -> list[asyncpg.Record]:
    """The account's updates after `cursor`, oldest first."""
    return await pool.fetch(AFTER, account_id, cursor, limit)


class Hub:
    """Wakes this instance's streams when the log may have grown. A stream takes `changed`
    before it reads the log, then waits on it: a wake between the two is not lost."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self.stopping = asyncio.Event()

    @property
    def changed(self) -> asyncio.Event:
        return self._changed

    def wake(self) -> None:
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake()

    async def listen(self, dsn: str, poll_s: float, connect_timeout_s: float) -> None:
        """LISTEN until cancelled; wakes on each notification, and every `poll_s` without one."""
        listener = NotificationListener(
            connect_func(dsn, timeout=connect_timeout_s), reconnect_delay=1.0
        )

        async def woken(_: NotificationOrTimeout) -> None:
            self.wake()

        await listener.run({CHANNEL: woken}, policy=ListenPolicy.LAST, notification_timeout=poll_s)

    async def sequence_forever(self, pool: Pool, interval_s: float) -> None:
        """The sequencer's loop: a full batch goes again at once; a failure waits and retries."""
        while True:
            try:
                numbered = await sequence(pool)
            except DB_ERRORS:
                metrics.UPDATES_SEQUENCER_ERRORS.inc()
                log.warning("numbering order updates failed; trying again", exc_info=True)
                numbered = 0
            except Exception:  # a bug must not stop the numbering for good
                metrics.UPDATES_SEQUENCER_ERRORS.inc()
                log.exception("numbering order updates failed unexpectedly; trying again")
                numbered = 0
            if numbered:
                self.wake()
            await asyncio.sleep(0 if numbered >= SEQUENCE_BATCH else interval_s)
