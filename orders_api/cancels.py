"""Cancelling an order (SPEC §8): asking for it (DELETE /orders/{id}) and carrying it out.

The cancel lives in the order's row, like placement: asking takes over the order's claim (its
`lease_token` ends), so an attempt in flight writes and places nothing more, and the order is due
at once. Whoever claims it next (orders_api.placement dispatches here) asks the exchange to cancel
it; orders_api.policy.after_cancel decides what the answer means, and the outcome is written under
that claim, as placement's are.
"""

from __future__ import annotations

import logging
import random
from uuid import UUID

import asyncpg

from orders_api import metrics, store
from orders_api.policy import Policy, after_cancel, utcnow
from orders_api.store import CLAIM_ENDS, COLUMNS, MARKET_STATUS, ROW_COLUMNS, ROW_NAMES
from orders_core.db import Pool
from orders_core.domain import EXCHANGE_TERMINAL, CancelStatus, OrderStatus
from orders_core.exchange import ExchangeClient

log = logging.getLogger(__name__)

# DELETE /orders/{id} (SPEC §8), one statement: the order if it is the account's, and whether this
# request asked for its cancel. A cancelable order gets cancel_status PENDING and is due at once;
# its claim ends (lease_token NULL), so an attempt in flight writes nothing more and places
# nothing more: the cancel's claimant finds out what the exchange holds. A repeat changes nothing.
# $3: the exchange statuses after which nothing is left to cancel. Not cancelable: the order as
# `cur` locked it. A request that waited for the row lock of another one's cancel sees the row as
# that one left it (PENDING: a repeat, 202); reading `orders` again would show it as of this
# statement's start (no cancel asked: a 409 that names no reason).
REQUEST_CANCEL = f"""
WITH cur AS (
SELECT {", ".join(f"o.{c}" for c in ROW_COLUMNS)},
       s.stock_market_order_status, s.filled_quantity,
       o.status <> 'FAILURE' AND o.cancel_status IS NULL
             AND coalesce(s.stock_market_order_status <> ALL ($3::text[]), true) AS cancelable
  FROM orders AS o LEFT JOIN exchange_order_status AS s ON s.order_id = o.id
 WHERE o.id = $1 AND o.account_id = $2
   FOR NO KEY UPDATE OF o
), upd AS (
UPDATE orders AS o
   SET cancel_requested_at = c.now, cancel_status = 'PENDING', next_attempt_at = c.now,
       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, sync_pending = false,
       updated_at = c.now
  FROM cur, (SELECT clock_timestamp() AS now) AS c
 WHERE o.id = cur.id AND cur.cancelable
RETURNING {", ".join(f"o.{c}" for c in ROW_COLUMNS)}, {MARKET_STATUS.format(table="o")}
), noted AS (
INSERT INTO order_history (order_id, event) SELECT id, 'cancel_requested' FROM upd
)
SELECT *, true AS requested FROM upd
UNION ALL
SELECT {", ".join(ROW_NAMES)}, stock_market_order_status, filled_quantity, false FROM cur
 WHERE NOT EXISTS (SELECT 1 FROM upd)"""

# Record what a cancel request to the exchange decided, under the claim that sent it (as FINISH).
FINISH_CANCEL = f"""
WITH upd AS (
UPDATE orders
   SET status = $3, last_error = $4, exchange_order_id = coalesce($5, exchange_order_id),
       failed_at = CASE WHEN $3 = 'FAILURE' THEN coalesce(failed_at, c.now) END,
       pending_deadline = $6, next_attempt_at = $7, cancel_status = $8, cancel_error = $9,
       cancel_attempts = cancel_attempts + 1,
       {CLAIM_ENDS}
RETURNING {COLUMNS}
), learned AS (
INSERT INTO order_history (order_id, event, outcome, detail)
SELECT id, 'cancel_answered', $10, $11 FROM upd
)
SELECT * FROM upd"""


async def request_cancel(pool: Pool, account_id: UUID, order_id: UUID) -> asyncpg.Record | None:
    """Ask for the cancel of an account's order: the order (None when it is not the account's)
    with `requested`, whether this call asked for it. Whichever instance claims the order next
    carries it out: the request is durable in the row."""
    row = await pool.fetchrow(REQUEST_CANCEL, order_id, account_id, sorted(EXCHANGE_TERMINAL))
    if row is not None and row["requested"]:
        metrics.CANCELS_REQUESTED.inc()
    return row


async def _finish(
    pool: Pool, order_id: UUID, token: int, outcome: store.CancelOutcome, answer: str, detail: str
) -> asyncpg.Record | None:
    """The updated row, or None when the claim `token` is no longer the order's."""
    return await pool.fetchrow(
        FINISH_CANCEL,
        order_id,
        token,
        outcome.status.value,
        outcome.last_error,
        outcome.exchange_order_id,
        outcome.pending_deadline,
        outcome.next_attempt_at,
        outcome.cancel_status.value,
        outcome.cancel_error,
        answer,
        detail,
    )


class Canceller:
    """Carries out the cancels this instance has claimed."""

    def __init__(
        self, pool: Pool, exchange: ExchangeClient, policy: Policy, rng: random.Random
    ) -> None:
        self._pool = pool
        self._exchange = exchange
        self._policy = policy
        self._rng = rng

    async def run_claimed(self, row: asyncpg.Record) -> None:
        """Make sure the exchange holds no live order for a cancel that is asked: cancel it there
        (a "not found" counts once no placement request can still book it)."""
        order_id: UUID = row["id"]
        asked_at = utcnow()  # a "not found" speaks of when it was asked, not answered
        result = await self._exchange.cancel(str(order_id))
        metrics.CANCEL_REQUESTS.labels(result.outcome.value).inc()
        outcome = after_cancel(
            result,
            OrderStatus(row["status"]),
            row["pending_deadline"],
            row["last_error"],
            row["cancel_attempts"],
            self._policy,
            asked_at,
            utcnow(),
            self._rng,
        )
        updated = await _finish(
            self._pool, order_id, row["lease_token"], outcome, result.outcome.value, result.detail
        )
        if updated is None:
            claim_lost(order_id, row["lease_token"])
        elif outcome.cancel_status is not CancelStatus.PENDING:
            metrics.CANCELS.labels(outcome.cancel_status.value).inc()
            log.info(
                "cancel final",
                extra={
                    "order_id": str(order_id),
                    "cancel_status": outcome.cancel_status.value,
                    "status": outcome.status.value,
                    "cancel_error": outcome.cancel_error,
                },
            )


def claim_lost(order_id: UUID, token: int) -> None:
    """A claim's outcome found its claim taken over: nothing was written (placement's too)."""
    metrics.LEASES_LOST.inc()
    log.warning(
        "claim taken over before the outcome was written: nothing written",
        extra={"order_id": str(order_id), "lease_token": token},
    )
