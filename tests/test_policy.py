"""The placement rule's decisions, one by one (no I/O: orders_api/policy.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from orders_api.policy import Policy, after_cancel, after_lookup, after_placement
from orders_api.store import CancelOutcome
from orders_core.domain import CancelStatus, OrderStatus
from orders_core.exchange import (
    Cancelled,
    CancelResult,
    Found,
    LookupResult,
    Placed,
    PlaceResult,
)
from orders_core.wire import ExchangeOrder

POLICY = Policy(timeout_s=2, base_s=1, cap_s=30, max_attempts=6, skew_s=1, lease_s=15)
NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(seconds=2)
SETTLED = DEADLINE + timedelta(seconds=1)
RNG = random.Random(7)


def placed(outcome: Placed, order_id: str | None = None) -> PlaceResult:
    return PlaceResult(outcome, f"detail {outcome.value}", exchange_order_id=order_id)


def test_accepted_is_success_with_the_exchange_id() -> None:
    out = after_placement(placed(Placed.ACCEPTED, "X-1"), 1, DEADLINE, POLICY, NOW, RNG)
    assert (out.status, out.exchange_order_id, out.pending_deadline) == ("SUCCESS", "X-1", None)


def test_rejected_is_final_failure() -> None:
    out = after_placement(placed(Placed.REJECTED), 1, DEADLINE, POLICY, NOW, RNG)
    assert out.status is OrderStatus.FAILURE
    assert out.next_attempt_at is None


def test_expired_retries_without_lookup() -> None:
    out = after_placement(placed(Placed.EXPIRED), 2, DEADLINE, POLICY, NOW, RNG)
    assert out.status is OrderStatus.IN_PROGRESS
    assert out.pending_deadline is None
    assert out.next_attempt_at is not None
    assert NOW <= out.next_attempt_at <= NOW + timedelta(seconds=2)


def test_unknown_waits_for_the_deadline_before_anything_else() -> None:
    out = after_placement(placed(Placed.UNKNOWN), 1, DEADLINE, POLICY, NOW, RNG)
    assert out.pending_deadline == DEADLINE
    assert out.next_attempt_at is not None
    assert out.next_attempt_at >= SETTLED


@pytest.mark.parametrize("outcome", [Placed.UNKNOWN, Placed.EXPIRED])
def test_last_attempt_is_never_failure_before_a_lookup(outcome: Placed) -> None:
    out = after_placement(placed(outcome), 6, DEADLINE, POLICY, NOW, RNG)
    assert out.status is OrderStatus.IN_PROGRESS
    assert out.pending_deadline == DEADLINE
    assert out.next_attempt_at == SETTLED


@pytest.mark.parametrize("attempts", range(1, 12))
def test_backoff_is_full_jitter_capped(attempts: int) -> None:
    rng = random.Random(attempts)
    delays = [POLICY.backoff(attempts, rng).total_seconds() for _ in range(200)]
    ceiling = min(30, 2 ** (attempts - 1))
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling / 2  # jitter spreads over the whole range, not a fixed delay


def lookup(outcome: Found) -> LookupResult:
    order = ExchangeOrder(exchange_order_id="X-9", client_order_id="c", status="new")
    return LookupResult(outcome, outcome.value, order if outcome is Found.FOUND else None)


def test_lookup_found_is_success() -> None:
    out = after_lookup(lookup(Found.FOUND), 3, DEADLINE, "e", 0, POLICY, NOW, NOW, RNG)
    assert out is not None
    assert (out.status, out.exchange_order_id) == ("SUCCESS", "X-9")


def test_not_found_before_the_deadline_settles_proves_nothing() -> None:
    early = SETTLED - timedelta(milliseconds=1)
    out = after_lookup(lookup(Found.ABSENT), 6, DEADLINE, "e", 0, POLICY, early, early, RNG)
    assert out is not None
    assert out.status is OrderStatus.IN_PROGRESS
    assert out.next_attempt_at == SETTLED


def test_not_found_after_the_deadline_means_place_again() -> None:
    assert (
        after_lookup(lookup(Found.ABSENT), 3, DEADLINE, "e", 0, POLICY, SETTLED, SETTLED, RNG)
        is None
    )


def test_not_found_after_the_last_attempt_is_failure() -> None:
    out = after_lookup(lookup(Found.ABSENT), 6, DEADLINE, "503", 0, POLICY, SETTLED, SETTLED, RNG)
    assert out is not None
    assert out.status is OrderStatus.FAILURE
    assert out.last_error is not None
    assert "503" in out.last_error


def test_lookup_error_keeps_the_request_pending() -> None:
    out = after_lookup(lookup(Found.ERROR), 6, DEADLINE, "e", 0, POLICY, SETTLED, SETTLED, RNG)
    assert out is not None
    assert out.status is OrderStatus.IN_PROGRESS
    assert out.pending_deadline == DEADLINE


def test_not_found_asked_before_the_deadline_proves_nothing_however_late_it_arrives() -> None:
    """Issue 9, finding 2: the lookup is judged by when it was sent, not when it came back."""
    asked = SETTLED - timedelta(milliseconds=1)
    answered = SETTLED + timedelta(seconds=5)
    out = after_lookup(lookup(Found.ABSENT), 3, DEADLINE, "e", 0, POLICY, asked, answered, RNG)
    assert out is not None, "a not-found asked while the request could be in flight was trusted"
    assert out.status is OrderStatus.IN_PROGRESS
    assert out.pending_deadline == DEADLINE


def test_failed_lookups_back_off_exponentially_capped() -> None:
    """Issue 9, finding 5: an order whose first attempt met an outage is not looked up once a
    second for as long as the exchange is down."""
    rng = random.Random(5)
    failures = 0
    for _ in range(10):
        out = after_lookup(lookup(Found.ERROR), 1, DEADLINE, "e", failures, POLICY, NOW, NOW, rng)
        assert out is not None
        assert out.lookup_failures == failures + 1
        failures = out.lookup_failures
    delays = []
    for _ in range(200):
        out = after_lookup(lookup(Found.ERROR), 1, DEADLINE, "e", failures, POLICY, NOW, NOW, rng)
        assert out is not None
        assert out.next_attempt_at is not None
        delays.append((out.next_attempt_at - NOW).total_seconds())
    assert max(delays) <= POLICY.cap_s
    assert max(delays) > POLICY.cap_s / 2  # grown to the cap, not stuck at the base
    # A lookup that answers resets the count.
    out = after_lookup(lookup(Found.ABSENT), 1, DEADLINE, "e", failures, POLICY, NOW, NOW, rng)
    assert out is not None
    assert out.lookup_failures == 0


# --- cancels (SPEC §8) ---------------------------------------------------------------------


def cancelled(outcome: Cancelled, status: str | None = None) -> CancelResult:
    order = (
        None
        if status is None
        else ExchangeOrder(exchange_order_id="X-9", client_order_id="c", status=status)
    )
    return CancelResult(outcome, f"detail {outcome.value}", order)


def cancel_after(
    result: CancelResult, status: OrderStatus, pending: datetime | None, asked_at: datetime
) -> CancelOutcome:
    return after_cancel(result, status, pending, "before", 0, POLICY, asked_at, asked_at, RNG)


@pytest.mark.parametrize("status", [OrderStatus.IN_PROGRESS, OrderStatus.SUCCESS])
def test_a_cancel_the_exchange_did_is_canceled_and_the_order_was_booked(
    status: OrderStatus,
) -> None:
    out = cancel_after(cancelled(Cancelled.CANCELED, "canceled"), status, DEADLINE, NOW)
    assert (out.cancel_status, out.status, out.exchange_order_id) == ("CANCELED", "SUCCESS", "X-9")
    assert out.next_attempt_at is None
    assert out.pending_deadline is None


@pytest.mark.parametrize(
    ("held", "cancel_status", "error"),
    [("filled", "REFUSED", "the order is filled"), ("expired", "REFUSED", "the order is expired"),
     ("canceled", "CANCELED", None)],
)  # fmt: skip
def test_an_order_ended_on_the_exchange_is_refused_unless_canceled(
    held: str, cancel_status: str, error: str | None
) -> None:
    out = cancel_after(cancelled(Cancelled.TERMINAL, held), OrderStatus.SUCCESS, None, NOW)
    assert (out.cancel_status, out.cancel_error, out.status) == (cancel_status, error, "SUCCESS")


def test_not_found_before_the_pending_deadline_confirms_nothing() -> None:
    # A placement request may still be in flight: asking again once it cannot book any more.
    asked = SETTLED - timedelta(milliseconds=1)
    out = cancel_after(cancelled(Cancelled.ABSENT), OrderStatus.IN_PROGRESS, DEADLINE, asked)
    assert out.cancel_status is CancelStatus.PENDING
    assert out.status is OrderStatus.IN_PROGRESS
    assert out.next_attempt_at == SETTLED
    assert out.pending_deadline == DEADLINE


def test_not_found_after_the_deadline_is_canceled_before_placement() -> None:
    out = cancel_after(cancelled(Cancelled.ABSENT), OrderStatus.IN_PROGRESS, DEADLINE, SETTLED)
    assert (out.cancel_status, out.status) == ("CANCELED", "FAILURE")
    assert out.last_error == "canceled before placement"
    assert out.next_attempt_at is None
    assert out.pending_deadline is None


def test_not_found_for_a_booked_order_is_refused_not_claimed_canceled() -> None:
    out = cancel_after(cancelled(Cancelled.ABSENT), OrderStatus.SUCCESS, None, NOW)
    assert (out.cancel_status, out.status) == ("REFUSED", "SUCCESS")
    assert out.cancel_error == "the exchange no longer holds the order"


def test_a_failed_cancel_request_stays_pending_and_backs_off() -> None:
    failures = []
    for attempts in range(12):
        out = after_cancel(
            cancelled(Cancelled.ERROR), OrderStatus.IN_PROGRESS, DEADLINE, None, attempts,
            POLICY, NOW, NOW, RNG,
        )  # fmt: skip
        assert out.cancel_status is CancelStatus.PENDING
        assert out.pending_deadline == DEADLINE  # still owed its lookup past the deadline
        assert out.next_attempt_at is not None
        failures.append((out.next_attempt_at - NOW).total_seconds())
    assert max(failures) <= POLICY.cap_s
    assert all(f >= 0 for f in failures)
