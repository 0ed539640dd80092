"""Placing orders on the exchange: the synchronous attempt and the durable retries (SPEC §2).

The order's row is the truth. An attempt is counted, and its deadline recorded, before the request
goes out; whatever the exchange answers is then written back under the lease. A crash at any point
leaves a row that the next claimant can finish safely: an unresolved request is looked up, never
blindly placed again.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime
from uuid import UUID

import asyncpg

from orders_api import metrics, store
from orders_api.policy import Policy, after_lookup, after_placement, utcnow
from orders_core.db import DB_ERRORS, Pool
from orders_core.domain import OrderStatus
from orders_core.errors import InternalError
from orders_core.exchange import ExchangeClient, PlaceResult
from orders_core.wire import PlaceOrderRequest

log = logging.getLogger(__name__)

# The one 5xx an order's creation may answer (SPEC §2); the cause goes to the log.
PLACEMENT_FAILED = "Internal server error while placing the order"


class Placer:
    def __init__(self, pool: Pool, exchange: ExchangeClient, policy: Policy, owner: str) -> None:
        self._pool = pool
        self._exchange = exchange
        self._policy = policy
        self._owner = owner
        self._rng = random.Random()

    async def place_new(self, order: store.NewOrder) -> asyncpg.Record:
        """Store the order and try the exchange once: the row as it stands. When the order's
        Idempotency-Key is taken, the row of the order that holds it, untouched.

        Raises InternalError (PLACEMENT_FAILED) when the order could not be stored.
        """
        deadline = self._policy.deadline(utcnow())
        try:
            row = await store.insert(
                self._pool,
                order,
                deadline,
                self._policy.settled(deadline),
                self._owner,
                self._policy.lease_s,
            )
            if row is None and order.idempotency_key is not None:
                row = await store.by_key(self._pool, order.idempotency_key)
        except DB_ERRORS as exc:
            raise InternalError(PLACEMENT_FAILED) from exc
        if row is None:  # the key's order vanished: nothing deletes orders, so this is a bug
            raise InternalError(PLACEMENT_FAILED)
        if row["id"] != order.id:
            return row
        metrics.ORDERS_CREATED.inc()
        result = await self._send(row, deadline)
        outcome = after_placement(result, 1, deadline, self._policy, utcnow(), self._rng)
        try:
            updated = await self._finish(order.id, outcome)
        except DB_ERRORS:
            # Stored and (maybe) placed, but the outcome is not written: the row still says
            # IN PROGRESS with the request pending, and the sweep reconciles it after the lease.
            log.exception(
                "outcome of the first attempt not recorded", extra={"order_id": str(order.id)}
            )
            return row
        return updated or row

    async def run_claimed(self, row: asyncpg.Record) -> None:
        """Advance one order this instance has claimed; errors leave it for the next claim."""
        metrics.RETRY_JOBS.inc()
        try:
            await self._advance(row)
        except DB_ERRORS:
            log.warning(
                "retry interrupted by the database",
                exc_info=True,
                extra={"order_id": str(row["id"])},
            )
        finally:
            metrics.RETRY_JOBS.dec()

    async def _advance(self, row: asyncpg.Record) -> None:
        order_id: UUID = row["id"]
        attempts: int = row["attempts"]
        if row["pending_deadline"] is not None or attempts >= self._policy.max_attempts:
            found = await self._exchange.lookup(str(order_id))
            metrics.PLACEMENT_LOOKUPS.labels(found.outcome.value).inc()
            outcome = after_lookup(
                found,
                attempts,
                row["pending_deadline"],
                row["last_error"],
                self._policy,
                utcnow(),
                self._rng,
            )
            if outcome is not None:
                await self._finish(order_id, outcome)
                return
        deadline = self._policy.deadline(utcnow())
        attempt = await store.begin_attempt(self._pool, order_id, self._owner, deadline)
        if attempt is None:
            metrics.LEASES_LOST.inc()
            return
        metrics.RETRIES.inc()
        result = await self._send(row, deadline)
        await self._finish(
            order_id, after_placement(result, attempt, deadline, self._policy, utcnow(), self._rng)
        )

    async def _send(self, row: asyncpg.Record, deadline: datetime) -> PlaceResult:
        price = row["limit_price"]
        request = PlaceOrderRequest(
            client_order_id=str(row["id"]),
            instrument=row["instrument"],
            side=row["side"],
            type=row["type"],
            limit_price=None if price is None else str(price),
            quantity=row["quantity"],
            valid_until=deadline,
        )
        result = await self._exchange.place(request)
        metrics.PLACEMENT_ATTEMPTS.labels(metrics.attempt_outcome(result)).inc()
        return result

    async def _finish(self, order_id: UUID, outcome: store.Outcome) -> asyncpg.Record | None:
        updated = await store.finish(self._pool, order_id, self._owner, outcome)
        if updated is None:
            metrics.LEASES_LOST.inc()
            log.warning(
                "lease lost before the outcome was written", extra={"order_id": str(order_id)}
            )
        elif outcome.status is not OrderStatus.IN_PROGRESS:
            metrics.FINISHED.labels(outcome.status.value).inc()
            log.info(
                "order final",
                extra={
                    "order_id": str(order_id),
                    "status": outcome.status.value,
                    "last_error": outcome.last_error,
                },
            )
        return updated
