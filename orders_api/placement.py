"""Placing orders on the exchange: the synchronous attempt and the durable retries (SPEC §2).

The order's row is the truth. An attempt is counted, and its deadline recorded, before the request
goes out; whatever the exchange answers is then written back under the lease. A crash at any point
leaves a row that the next claimant can finish safely: an unresolved request is looked up, never
blindly placed again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime
from uuid import UUID

import asyncpg

from orders_api import metrics, reads, store
from orders_api.cancels import Canceller, claim_lost
from orders_api.policy import Policy, after_lookup, after_placement, utcnow
from orders_core.db import DB_ERRORS, Pool, PooledConnection
from orders_core.domain import CancelStatus, OrderStatus
from orders_core.errors import InternalError
from orders_core.exchange import ExchangeClient, LookupResult, PlaceResult
from orders_core.wire import PlaceOrderRequest

log = logging.getLogger(__name__)

# The one 5xx an order's creation may answer (SPEC §2); the cause goes to the log.
PLACEMENT_FAILED = "Internal server error while placing the order"
# Tries to find out whether an insert whose connection broke was stored (each bounded by the
# pool's acquire and statement timeouts).
STORE_CHECKS = 3


class _StoreUnknown(Exception):
    """The insert's connection failed before its answer came: it may or may not have committed,
    until its deadline (the insert stores nothing once that has passed on the server)."""

    def __init__(self, deadline: datetime) -> None:
        super().__init__("outcome of the insert unknown")
        self.deadline = deadline


def _refused(exc: BaseException) -> bool:
    """Whether the server answered the statement with an error (so it did not commit), rather
    than the session ending under it: a lost connection (SQLSTATE class 08) or an operator or
    crash shutdown (57P) may have come after the commit."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and not sqlstate.startswith(("08", "57P"))


class Placer:
    def __init__(self, pool: Pool, exchange: ExchangeClient, policy: Policy, owner: str) -> None:
        self._pool = pool
        self._exchange = exchange
        self._policy = policy
        self._owner = owner
        self._rng = random.Random()
        self._cancels = Canceller(pool, exchange, policy, self._rng)

    async def place_new(self, order: store.NewOrder) -> asyncpg.Record:
        """Store the order and try the exchange once: the row as it stands. When the order's
        Idempotency-Key is taken, the row of the order that holds it, untouched.

        Raises InternalError (PLACEMENT_FAILED) only when the order is not stored, or when
        whether it is cannot be found out. Once it is stored, whatever fails answers the row.
        """
        try:
            row, deadline = await self._store(order)
        except _StoreUnknown as unknown:
            found = await self._stored_after_all(order, unknown)
            if found is None:
                raise InternalError(PLACEMENT_FAILED) from unknown.__cause__
            return found  # stored, never sent: the sweep places it once its lease runs out
        if row["id"] != order.id:
            return row  # the Idempotency-Key's order
        metrics.ORDERS_CREATED.inc()
        try:
            result = await self._send(row, deadline)
            outcome = after_placement(result, 1, deadline, self._policy, utcnow(), self._rng)
            updated = await self._finish(
                order.id, row["lease_token"], outcome, _answered(result, 1)
            )
        except Exception:
            # Stored and (maybe) placed, but the outcome is not written: the row still says
            # IN PROGRESS with the request pending, and the sweep reconciles it after the lease.
            log.exception(
                "outcome of the first attempt not recorded", extra={"order_id": str(order.id)}
            )
            return row
        return updated or row

    async def _store(self, order: store.NewOrder) -> tuple[asyncpg.Record, datetime]:
        """The inserted row (or the Idempotency-Key's) and the deadline of the first attempt.

        The deadline is taken once a connection is in hand, so no pool wait eats into it; it also
        bounds the insert itself, which stores nothing if it reaches the server later. Raises
        InternalError when nothing was stored, _StoreUnknown when that is not known yet."""
        try:
            conn = await self._pool.acquire()
        except DB_ERRORS as exc:
            raise InternalError(PLACEMENT_FAILED) from exc
        try:
            deadline = self._policy.deadline(utcnow())
            row = await self._insert(conn, order, deadline)
        finally:
            await self._release(conn)
        if row is None:  # the key's order vanished: nothing deletes orders, so this is a bug
            raise InternalError(PLACEMENT_FAILED)
        return row, deadline

    async def _insert(
        self, conn: PooledConnection, order: store.NewOrder, deadline: datetime
    ) -> asyncpg.Record | None:
        try:
            row = await store.insert(
                conn,
                order,
                deadline,
                self._policy.settled(deadline),
                self._owner,
                self._policy.lease_s,
            )
        except DB_ERRORS as exc:
            if _refused(exc):  # the server refused the statement: nothing was stored
                raise InternalError(PLACEMENT_FAILED) from exc
            raise _StoreUnknown(deadline) from exc  # it may commit, until its deadline
        if row is None and order.idempotency_key is not None:
            try:
                row = await reads.by_key(conn, order.account_id, order.idempotency_key)
            except DB_ERRORS as exc:
                raise InternalError(PLACEMENT_FAILED) from exc
        return row

    async def _release(self, conn: PooledConnection) -> None:
        """Give the connection back; a failure to (asyncpg then closes it) must not hide what
        happened to the insert."""
        try:
            await self._pool.release(conn)
        except DB_ERRORS:
            log.warning("pool connection closed after an error", exc_info=True)

    async def _stored_after_all(
        self, order: store.NewOrder, unknown: _StoreUnknown
    ) -> asyncpg.Record | None:
        """After an insert whose outcome is unknown: the order's row if it exists, else None
        (also when the database cannot tell). It is looked for once the insert's deadline (plus
        the clock-skew margin) has passed: an insert still on its way after that stores nothing."""
        log.warning(
            "outcome of storing the order unknown; looking for it",
            extra={"order_id": str(order.id), "error": repr(unknown.__cause__)},
        )
        wait_s = (self._policy.settled(unknown.deadline) - utcnow()).total_seconds()
        await asyncio.sleep(max(wait_s, 0.0))
        for _ in range(STORE_CHECKS):
            try:
                return await reads.any_by_id(self._pool, order.id)
            except DB_ERRORS as exc:
                log.warning(
                    "could not look for the order",
                    extra={"order_id": str(order.id), "error": repr(exc)},
                )
        return None

    async def run_claimed(self, row: asyncpg.Record) -> None:
        """Advance one order this instance has claimed (its placement, or its cancel once one
        is asked); errors leave it for the next claim."""
        metrics.RETRY_JOBS.inc()
        try:
            if row["cancel_status"] == CancelStatus.PENDING:
                await self._cancels.run_claimed(row)
            else:
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
        token: int = row["lease_token"]
        absent = None  # what a lookup that allows placing again said, for the history
        if row["pending_deadline"] is not None or row["attempts"] >= self._policy.max_attempts:
            found, outcome = await self._look_up(row)
            if outcome is not None:
                await self._finish(order_id, token, outcome, _learned_by_lookup(found))
                return
            absent = found.detail
        deadline = self._policy.deadline(utcnow())
        attempt = await store.begin_attempt(
            self._pool,
            order_id,
            token,
            deadline,
            self._policy.settled(deadline),
            self._policy.lease_s,
            absent,
        )
        if attempt is None:
            metrics.LEASES_LOST.inc()
            return
        metrics.RETRIES.inc()
        result = await self._send(row, deadline)
        outcome = after_placement(result, attempt, deadline, self._policy, utcnow(), self._rng)
        await self._finish(order_id, token, outcome, _answered(result, attempt))

    async def _look_up(self, row: asyncpg.Record) -> tuple[LookupResult, store.Outcome | None]:
        """Ask the exchange for the order; what that decides (None: absent, place again)."""
        asked_at = utcnow()  # a "not found" speaks of when it was asked, not answered
        found = await self._exchange.lookup(str(row["id"]))
        metrics.PLACEMENT_LOOKUPS.labels(found.outcome.value).inc()
        outcome = after_lookup(
            found,
            row["attempts"],
            row["pending_deadline"],
            row["last_error"],
            row["lookup_failures"],
            self._policy,
            asked_at,
            utcnow(),
            self._rng,
        )
        return found, outcome

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

    async def _finish(
        self, order_id: UUID, token: int, outcome: store.Outcome, event: store.Event
    ) -> asyncpg.Record | None:
        updated = await store.finish(self._pool, order_id, token, outcome, event)
        if updated is None:
            claim_lost(order_id, token)
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


def _answered(result: PlaceResult, attempt: int) -> store.Event:
    return store.Event("placement_answered", attempt, result.outcome.value, result.detail)


def _learned_by_lookup(found: LookupResult) -> store.Event:
    return store.Event("lookup", None, found.outcome.value, found.detail)
