"""The placement rule's decisions (SPEC §2), as pure functions of what the exchange answered.

Every decision is an `Outcome` for the order's row. Nothing here does I/O, so each rule is tested
directly, and `placement.py` only moves data between the database, the exchange and these functions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orders_api.settings import ApiSettings
from orders_api.store import CancelOutcome, Outcome
from orders_core.backoff import backoff_s
from orders_core.domain import CancelStatus, OrderStatus
from orders_core.exchange import Cancelled, CancelResult, Found, LookupResult, Placed, PlaceResult

IN_PROGRESS = OrderStatus.IN_PROGRESS


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Policy:
    timeout_s: float
    base_s: float
    cap_s: float
    max_attempts: int  # the synchronous attempt plus the retries
    skew_s: float
    lease_s: float

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> Policy:
        return cls(
            timeout_s=settings.placement_timeout_s,
            base_s=settings.retry_base_s,
            cap_s=settings.retry_cap_s,
            max_attempts=1 + settings.max_retries,
            skew_s=settings.clock_skew_s,
            lease_s=settings.lease_s,
        )

    def deadline(self, now: datetime) -> datetime:
        """valid_until of a request sent now: the venue books nothing after it."""
        return now + timedelta(seconds=self.timeout_s)

    def settled(self, deadline: datetime) -> datetime:
        """From when a 'not found' for a request with this deadline means it was never booked."""
        return deadline + timedelta(seconds=self.skew_s)

    def backoff(self, attempts: int, rng: random.Random) -> timedelta:
        """Exponential backoff with full jitter after `attempts` attempts."""
        return timedelta(seconds=backoff_s(attempts, self.base_s, self.cap_s, rng))


def after_placement(
    result: PlaceResult,
    attempts: int,
    deadline: datetime,
    policy: Policy,
    now: datetime,
    rng: random.Random,
) -> Outcome:
    """What attempt number `attempts`, sent with `deadline`, leaves the order as."""
    if result.outcome is Placed.ACCEPTED:
        return Outcome(OrderStatus.SUCCESS, None, None, None, result.exchange_order_id)
    if result.outcome is Placed.REJECTED:
        return Outcome(OrderStatus.FAILURE, None, None, result.detail)
    last = attempts >= policy.max_attempts
    if result.outcome is Placed.EXPIRED and not last:
        # Nothing was booked: retry after the backoff, no lookup needed.
        return Outcome(IN_PROGRESS, None, now + policy.backoff(attempts, rng), result.detail)
    # Unknown (or the last attempt): look the order up once its deadline has surely passed.
    due = policy.settled(deadline)
    if not last:
        due = max(due, now + policy.backoff(attempts, rng))
    return Outcome(IN_PROGRESS, deadline, due, result.detail)


def after_lookup(
    result: LookupResult,
    attempts: int,
    pending_deadline: datetime | None,
    last_error: str | None,
    lookup_failures: int,
    policy: Policy,
    asked_at: datetime,
    now: datetime,
    rng: random.Random,
) -> Outcome | None:
    """What a lookup of an order with an unresolved request decides; None: absent, place again.

    `asked_at` is when the lookup was sent: a "not found" speaks of that instant, however late it
    arrives (`now`). Failed lookups back off like failed placements, counted apart.
    """
    if result.outcome is Found.FOUND:
        assert result.order is not None
        return Outcome(OrderStatus.SUCCESS, None, None, None, result.order.exchange_order_id)
    if result.outcome is Found.ERROR:
        failures = lookup_failures + 1
        due = now + policy.backoff(failures, rng)
        return Outcome(IN_PROGRESS, pending_deadline, due, result.detail, None, failures)
    if pending_deadline is not None and asked_at < policy.settled(pending_deadline):
        # The request may still have been in flight at the venue when it was asked: placing
        # again could book it twice.
        return Outcome(IN_PROGRESS, pending_deadline, policy.settled(pending_deadline), last_error)
    if attempts >= policy.max_attempts:
        reason = f"gave up after {attempts} attempts, exchange holds no such order: {last_error}"
        return Outcome(OrderStatus.FAILURE, None, None, reason)
    return None


CANCELED_BEFORE_PLACEMENT = "canceled before placement"
NO_LONGER_HELD = "the exchange no longer holds the order"


def after_cancel(
    result: CancelResult,
    status: OrderStatus,
    pending_deadline: datetime | None,
    last_error: str | None,
    cancel_attempts: int,
    policy: Policy,
    asked_at: datetime,
    now: datetime,
    rng: random.Random,
) -> CancelOutcome:
    """What a cancel request to the exchange, sent at `asked_at`, decides for an order in
    placement `status` whose latest placement request (if unresolved) had `pending_deadline`.

    CANCELED only once the exchange can no longer hold a live order: it canceled it, it holds it
    canceled, or it held none when asked after every placement request's deadline had passed.
    """
    pending = CancelStatus.PENDING
    if result.outcome in (Cancelled.CANCELED, Cancelled.TERMINAL):
        assert result.order is not None
        held = result.order
        ended = CancelStatus.CANCELED if held.status == "canceled" else CancelStatus.REFUSED
        error = None if ended is CancelStatus.CANCELED else f"the order is {held.status}"
        return CancelOutcome(
            OrderStatus.SUCCESS, None, held.exchange_order_id, None, None, ended, error
        )
    if result.outcome is Cancelled.ERROR:
        due = now + policy.backoff(cancel_attempts + 1, rng)
        return CancelOutcome(
            status, last_error, None, pending_deadline, due, pending, result.detail
        )
    # Absent, as of asked_at.
    if pending_deadline is not None and asked_at < policy.settled(pending_deadline):
        # A placement request may still book it: ask again once that cannot happen.
        due = policy.settled(pending_deadline)
        return CancelOutcome(status, last_error, None, pending_deadline, due, pending, None)
    if status is OrderStatus.SUCCESS:
        # Booked once, gone now (the venue forgot it): nothing is live, but we did not cancel it.
        return CancelOutcome(
            status, last_error, None, None, None, CancelStatus.REFUSED, NO_LONGER_HELD
        )
    return CancelOutcome(
        OrderStatus.FAILURE,
        CANCELED_BEFORE_PLACEMENT,
        None,
        None,
        None,
        CancelStatus.CANCELED,
        None,
    )
