"""The listener's reordering, deduplication and gap detection (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

from exchange_listener.sequencer import Sequencer
from orders_core.wire import ExecutionReport


def report(seq: int) -> ExecutionReport:
    return ExecutionReport(
        type="execution_report", seq=seq, exchange_order_id="x", client_order_id="c",
        status="new", filled_quantity=0, quantity=1, ts=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip


def seqs(events: list[ExecutionReport]) -> list[int]:
    return [e.seq for e in events]


def test_in_order_events_pass_straight_through() -> None:
    s = Sequencer(taken=10)
    assert seqs(s.offer(report(11), 0)) == [11]
    assert seqs(s.offer(report(12), 0)) == [12]
    assert s.taken == 12


def test_reordered_events_come_out_in_order() -> None:
    s = Sequencer(taken=0)
    assert s.offer(report(3), 0) == []
    assert s.offer(report(2), 0) == []
    assert seqs(s.offer(report(1), 0)) == [1, 2, 3]


def test_duplicates_and_old_events_are_dropped() -> None:
    s = Sequencer(taken=5)
    assert s.offer(report(5), 0) == []
    assert s.offer(report(7), 0) == []
    assert s.offer(report(7), 0) == []
    assert s.duplicates == 2
    assert seqs(s.offer(report(6), 0)) == [6, 7]


def test_gap_age_grows_only_while_nothing_progresses() -> None:
    s = Sequencer(taken=0)
    s.offer(report(2), now=100.0)
    assert s.gap_age(103.0) == 3.0
    s.offer(report(1), now=104.0)
    assert s.gap_age(110.0) == 0.0


def test_heartbeat_ahead_of_us_opens_a_gap() -> None:
    s = Sequencer(taken=4)
    s.exchange_at(4, now=1.0)
    assert s.gap_age(50.0) == 0.0
    s.exchange_at(6, now=1.0)
    assert s.gap_age(3.0) == 2.0
    s.offer(report(5), now=4.0)
    assert s.gap_age(5.0) == 1.0  # progress restarted the clock; 6 is still missing
    s.offer(report(6), now=5.0)
    assert s.gap_age(9.0) == 0.0
