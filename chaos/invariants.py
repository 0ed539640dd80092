"""The promise, as invariants over the evidence of one run. Each gives PASS or FAIL with up to a
few counterexample ids (the report shows them; the full lists go to the JSON result)."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chaos.evidence import Evidence, Quiet
from chaos.streams import DOCUMENTED_503, FIELDS
from chaos.workload import Sent
from orders_core.domain import exchange_status_moves_forward

DOCUMENTED_500 = {"message": "Internal server error while placing the order"}
LIVE = frozenset({"new", "partially_filled"})  # an order the exchange may still fill
CANCEL_FINAL = frozenset({"CANCELED", "REFUSED"})
NO_LONGER_HELD = "the exchange no longer holds the order"  # orders_api.policy, REFUSED
CANCEL_RANK = {None: 0, "PENDING": 1, "CANCELED": 2, "REFUSED": 2}
# A 409's message names why nothing is left to cancel (orders_api.handlers).
CANCEL_409 = re.compile(
    r"The order failed: .+|The order's cancel is already final: (CANCELED|REFUSED)"
    r"|The order is (filled|canceled|rejected|expired) on the exchange: nothing to cancel"
)


@dataclass
class Check:
    name: str
    what: str
    bad: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool:
        return not self.bad


def check(ev: Evidence, quiet: Quiet) -> list[Check]:
    return [
        none_lost(ev),
        none_doubled(ev),
        success_iff_held(ev),
        failure_not_held(ev),
        no_5xx(ev),
        attempts_bounded(ev),
        no_two_live_claims(ev),
        status_matches_ledger(ev),
        no_backward_moves(ev),
        all_settled(ev, quiet),
        nothing_crashed(ev),
        one_leader_per_role(ev),
        cancels_final(ev),
        canceled_not_held(ev),
        streams_complete(ev),
    ]


def _answered(ev: Evidence) -> list[Sent]:
    return [s for s in ev.sent if s.status == 201 and s.order_id is not None]


def none_lost(ev: Evidence) -> Check:
    c = Check(
        "none lost",
        "every 201 is stored; a key's 201s name its one order; "
        "every order the exchange holds is ours",
    )
    by_key = {row["idempotency_key"]: oid for oid, row in ev.orders.items()}
    for s in _answered(ev):
        if s.order_id not in ev.orders:
            c.bad.append(s.order_id or "?")
        elif s.key is not None and by_key.get(s.key) != s.order_id:
            c.bad.append(f"key {s.key} -> {s.order_id}, stored {by_key.get(s.key)}")
    c.bad += [f"{oid} (held, not stored)" for oid in ev.ledger if oid not in ev.orders]
    return c


def none_doubled(ev: Evidence) -> Check:
    c = Check("none doubled", "placements per id in the exchange's ledger = 1")
    c.bad = [f"{oid} x{o['placements']}" for oid, o in ev.ledger.items() if o["placements"] != 1]
    return c


def success_iff_held(ev: Evidence) -> Check:
    c = Check("SUCCESS iff held", "SUCCESS (stored or answered) <=> the exchange holds it")
    for oid, row in ev.orders.items():
        if row["status"] == "SUCCESS" and oid not in ev.ledger:
            c.bad.append(f"{oid} SUCCESS, not held")
        elif oid in ev.ledger and row["status"] != "SUCCESS":
            c.bad.append(f"{oid} held, {row['status']}")
    for s in _answered(ev):
        if s.placement == "SUCCESS" and s.order_id not in ev.ledger:
            c.bad.append(f"{s.order_id} answered SUCCESS, not held")
    return c


def failure_not_held(ev: Evidence) -> Check:
    c = Check("FAILURE not held", "FAILURE (stored or answered) => the exchange holds nothing")
    failed = {oid for oid, row in ev.orders.items() if row["status"] == "FAILURE"}
    failed |= {s.order_id for s in _answered(ev) if s.placement == "FAILURE" and s.order_id}
    c.bad = sorted(oid for oid in failed if oid in ev.ledger)
    c.note = f"{len(failed)} failed"
    return c


def no_5xx(ev: Evidence) -> Check:
    c = Check(
        "no 5xx but the documented 500",
        "only 500 {message: ...while placing the order}, never for a stored order",
    )
    keyed: dict[str, list[Sent]] = defaultdict(list)
    for s in ev.sent:
        if s.key is not None:
            keyed[s.key].append(s)
    stored = {row["idempotency_key"]: (oid, row["created_at"]) for oid, row in ev.orders.items()}
    documented = ambiguous = 0
    other: dict[str, list[int]] = defaultdict(list)  # an undocumented answer -> its orders
    for s in ev.sent:
        if s.status is None or s.status < 500:
            continue
        if s.status != 500 or _json(s.message) != DOCUMENTED_500:
            other[f"{s.status} {s.message or ''}"[:90]].append(s.order)
            continue
        documented += 1
        if s.key is None or s.key not in stored:
            continue
        oid, at = stored[s.key]
        # Who stored it: a request with its key sent before the row was created (a resend
        # after the 500 may store it, legitimately).
        creators = [r for r in keyed[s.key] if r.sent_at <= at]
        if creators == [s]:
            late = (at - s.answered_at).total_seconds() if s.answered_at else 0.0
            c.bad.append(f"{oid} stored by a request answered 500 ({late:+.2f}s)")
        elif s in creators:
            ambiguous += 1
    for answer, orders in other.items():
        shown = ", ".join(f"#{n}" for n in sorted(set(orders))[:3])
        c.bad.insert(0, f"{answer} x{len(orders)} (orders {shown}...)")
    c.note = f"{documented} documented 500s"
    c.note += f", {ambiguous} whose order another request may have stored" if ambiguous else ""
    return c


def _json(text: str | None) -> object:
    try:
        return json.loads(text or "")
    except ValueError:
        return None


def attempts_bounded(ev: Evidence) -> Check:
    n = ev.max_attempts
    c = Check(f"attempts <= {n}", "attempts stored, and placements the exchange received, per id")
    c.bad = [f"{oid} attempts {r['attempts']}" for oid, r in ev.orders.items() if r["attempts"] > n]
    c.bad += [f"{oid} placed {q['place']}x" for oid, q in ev.requests.items() if q["place"] > n]
    return c


def no_two_live_claims(ev: Evidence) -> Check:
    c = Check(
        "no two live claims", "no placement for an id arrives before an earlier one's valid_until"
    )
    by_id: dict[str, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for p in ev.placements:
        if p["client_order_id"] is not None:
            until = None if p["valid_until"] is None else datetime.fromisoformat(p["valid_until"])
            by_id[p["client_order_id"]].append((datetime.fromisoformat(p["received_at"]), until))
    for oid, requests in by_id.items():
        live_until: datetime | None = None
        for received, until in sorted(requests, key=lambda r: r[0]):
            if live_until is not None and received <= live_until:
                overlap = (live_until - received).total_seconds()
                c.bad.append(f"{oid} (overlap {overlap:.2f}s)")
                break
            if until is not None:
                live_until = until if live_until is None else max(live_until, until)
    c.note = f"{len(ev.placements)} placement requests"
    return c


def status_matches_ledger(ev: Evidence) -> Check:
    c = Check("exchange status = ledger", "exchange_order_status = the ledger, every held order")
    for oid, held in ev.ledger.items():
        row = ev.market.get(oid)
        if row is None:
            c.bad.append(f"{oid} missing")
        elif (row["status"], row["filled_quantity"], row["exchange_order_id"]) != (
            held["status"],
            held["filled_quantity"],
            held["exchange_order_id"],
        ):
            ours = f"{row['status']}/{row['filled_quantity']} {row['exchange_order_id']}"
            theirs = f"{held['status']}/{held['filled_quantity']} {held['exchange_order_id']}"
            c.bad.append(f"{oid} {ours} != {theirs}")
    return c


def no_backward_moves(ev: Evidence) -> Check:
    c = Check(
        "no backward moves",
        "stored events per order, and statuses sampled during the run, only move forward",
    )
    for oid, events in ev.events.items():
        for (s0, f0, x0), (s1, f1, x1) in itertools.pairwise(events):
            if (
                x0 == x1
                and (s0, f0) != (s1, f1)
                and not exchange_status_moves_forward(s0, f0, s1, f1)
            ):
                c.bad.append(f"{oid} events {s0}/{f0} -> {s1}/{f1}")
                break
    c.bad += [f"{oid} sampled {move}" for oid, move in ev.backward_seen.items()]
    return c


def all_settled(ev: Evidence, quiet: Quiet) -> Check:
    c = Check("all settled", "healed: no order IN PROGRESS, the listener caught up")
    c.bad = list(quiet.in_progress)
    if ev.listener_seq != ev.exchange_seq:
        c.bad.append(f"listener at seq {ev.listener_seq}, exchange at {ev.exchange_seq}")
    c.note = f"settled in {quiet.waited_s:.0f}s"
    return c


def nothing_crashed(ev: Evidence) -> Check:
    c = Check("nothing crashed", "no job, request or loop failed unexpectedly, no process died")
    c.bad = [f"{what} x{n}" for what, n in sorted(ev.crashes.items())]
    return c


def one_leader_per_role(ev: Evidence) -> Check:
    c = Check(
        "one leader per role",
        "pg_locks, sampled every 0.2 s: a role's lock held by at most one session, its own "
        "process's, and never longer without a leader than its bound while one may lead",
    )
    if not ev.leader_samples:
        c.bad.append("pg_locks never sampled")
    notes = []
    for r in ev.leaders.values():
        c.bad += r.doubled + r.foreign
        if r.longest_leaderless_s > r.bound_s:
            c.bad.append(
                f"{r.role}: no leader for {r.longest_leaderless_s:.1f}s from "
                f"t={r.longest_leaderless_at} (bound {r.bound_s}s)"
            )
        notes.append(
            f"{r.role}: {len(r.holders)} led, {r.handovers} handovers, longest without "
            f"{r.longest_leaderless_s:.1f}s of {r.bound_s}s"
            + (f", {r.orphaned} samples held by a dying process" if r.orphaned else "")
        )
    c.note = f"{ev.leader_samples} samples; " + "; ".join(notes)
    return c


def cancels_final(ev: Evidence) -> Check:
    c = Check(
        "cancels final",
        "every cancel asked ends CANCELED or REFUSED, none PENDING once settled (none lost, "
        "kill -9 or not); DELETE answers 202 PENDING (repeats too), 409 naming why nothing is "
        "left to cancel, or the documented 503",
    )
    asked = {x.order_id for x in ev.cancels if x.status == 202}
    tried = {x.order_id for x in ev.cancels}
    for x in ev.cancels:
        if x.status == 202 and x.cancel_status != "PENDING":
            c.bad.append(f"{x.order_id} DELETE answered 202 with cancel_status {x.cancel_status}")
        elif x.status == 409 and not CANCEL_409.fullmatch(x.message or ""):
            c.bad.append(f"{x.order_id} DELETE answered 409 {x.message}")
        elif x.status == 503 and x.message != DOCUMENTED_503:
            c.bad.append(f"{x.order_id} DELETE answered 503 {x.message}")
        elif x.status not in (None, 202, 409, 503):
            c.bad.append(f"{x.order_id} DELETE answered {x.status} {x.message}"[:160])
    for oid in sorted(asked):
        row = ev.orders.get(oid)
        if row is None:
            c.bad.append(f"{oid} cancel answered 202, order not stored")
        elif row["cancel_status"] not in CANCEL_FINAL:
            c.bad.append(f"{oid} cancel answered 202, {row['cancel_status']} once settled")
    for oid, row in ev.orders.items():
        if row["cancel_status"] is None:
            continue
        if oid not in tried:
            c.bad.append(f"{oid} cancel {row['cancel_status']} that nobody asked")
        elif oid not in asked and row["cancel_status"] not in CANCEL_FINAL:
            c.bad.append(f"{oid} cancel {row['cancel_status']} once settled (asked, no answer)")
    answers = Counter("no answer" if x.status is None else str(x.status) for x in ev.cancels)
    outcome = Counter(
        str(ev.orders[oid]["cancel_status"] or "not asked") for oid in tried if oid in ev.orders
    )
    c.note = (
        f"{len(tried)} orders, {len(ev.cancels)} DELETEs: "
        + ", ".join(f"{k} {v}" for k, v in sorted(answers.items()))
        + "; stored "
        + ", ".join(f"{k} {v}" for k, v in sorted(outcome.items()))
    )
    return c


def canceled_not_held(ev: Evidence) -> Check:
    c = Check(
        "CANCELED not held",
        "CANCELED: the exchange holds no live order with that id (placement FAILURE: none at "
        "all; SUCCESS: it holds it canceled); REFUSED: it ended the order otherwise; no "
        "placement reaches it once the cancel is final",
    )
    final_at: dict[str, datetime] = {}
    for u in ev.updates:
        if u["state"]["cancel_status"] in CANCEL_FINAL:
            final_at.setdefault(u["id"], u["at"])
    placed: dict[str, list[datetime]] = defaultdict(list)
    for p in ev.placements:
        if p["client_order_id"] is not None:
            placed[p["client_order_id"]].append(datetime.fromisoformat(p["received_at"]))
    for oid, row in ev.orders.items():
        cancel, held = row["cancel_status"], ev.ledger.get(oid)
        status = None if held is None else held["status"]
        if cancel == "CANCELED":
            if status in LIVE:
                c.bad.append(f"{oid} CANCELED, held {status}")
            elif row["status"] == "FAILURE" and held is not None:
                c.bad.append(f"{oid} CANCELED before placement, held {status}")
            elif row["status"] == "SUCCESS" and status != "canceled":
                c.bad.append(f"{oid} CANCELED, SUCCESS, held {status}")
        elif cancel == "REFUSED":
            if held is None and row["cancel_error"] != NO_LONGER_HELD:
                c.bad.append(f"{oid} REFUSED ({row['cancel_error']}), not held")
            elif status in LIVE or status == "canceled":
                c.bad.append(f"{oid} REFUSED ({row['cancel_error']}), held {status}")
        at = final_at.get(oid)
        late = [r for r in placed.get(oid, []) if at is not None and r > at]
        if late and at is not None:
            c.bad.append(f"{oid} placed {(late[0] - at).total_seconds():.2f}s after {cancel}")
    canceled = [row for row in ev.orders.values() if row["cancel_status"] == "CANCELED"]
    before = sum(1 for row in canceled if row["status"] == "FAILURE")
    c.note = f"{len(canceled)} CANCELED, {before} of them before placement"
    return c


def streams_complete(ev: Evidence) -> Check:
    c = Check(
        "streams: every change once, in order",
        "each client resuming by cursor received every update of the log, none twice, in "
        "cursor order, each as the log holds it; its last event of each order is the order's "
        "final state; the log moves each order forward",
    )
    if not ev.followers:
        c.note = "no update streams in this profile"
        return c
    log = {u["seq"]: u for u in ev.updates}
    if ev.unsequenced:
        c.bad.append(f"{ev.unsequenced} updates never numbered")
    if not ev.followers_caught_up:
        c.bad.append("a client did not receive the log's last update in time")
    final = _final_states(ev)
    updated = {u["id"] for u in ev.updates}
    c.bad += [f"{oid} no update at all" for oid in final if oid not in updated]
    for r in ev.followers:
        c.bad += [
            f"{r.name}: answered {answer} x{n}"
            for answer, n in sorted(r.answers.items())
            if answer != f"503 {DOCUMENTED_503}"
        ]
        c.bad += [f"{r.name}: unreadable event {m}" for m in r.malformed]
        counts = Counter(e.cursor for e in r.events)
        c.bad += [f"{r.name}: {cur} received {n}x" for cur, n in counts.items() if n > 1]
        previous = 0
        last: dict[str, dict[str, Any]] = {}
        for e in r.events:
            if e.cursor <= previous:
                c.bad.append(f"{r.name}: {e.cursor} after {previous}")
            previous = e.cursor
            held = log.get(e.cursor)
            if held is None:
                c.bad.append(f"{r.name}: {e.cursor} not in the log")
            elif (e.order_id, e.state) != (held["id"], held["state"]):
                c.bad.append(f"{r.name}: {e.cursor} {e.order_id} {e.state} != the log's")
            last[e.order_id] = e.state
        missed = [seq for seq in log if seq not in counts]
        c.bad += [f"{r.name}: missed {seq} ({log[seq]['id']})" for seq in missed]
        c.bad += [
            f"{r.name}: {oid} last {last.get(oid)}, final {state}"
            for oid, state in final.items()
            if last.get(oid) != state
        ]
    c.bad += _log_backward(ev)
    c.note = f"log {len(log)} updates; " + ", ".join(
        f"{r.name} {len(r.events)} events over {r.connections} streams" for r in ev.followers
    )
    return c


def _final_states(ev: Evidence) -> dict[str, dict[str, Any]]:
    """Every order's state at the end, as FIELDS (as an update's body holds them)."""
    out = {}
    for oid, row in ev.orders.items():
        market = ev.market.get(oid) or {}
        out[oid] = {
            "status": row["status"],
            "cancel_status": row["cancel_status"],
            "stock_market_order_status": market.get("status"),
            "filled_quantity": market.get("filled_quantity"),
        }
        assert set(out[oid]) == set(FIELDS)
    return out


def _log_backward(ev: Evidence) -> list[str]:
    """The log in commit order per order: a placement status never leaves SUCCESS or FAILURE,
    a cancel never goes back (none, PENDING, final), the exchange's status only forward."""
    bad = []
    by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for u in ev.updates:
        by_order[u["id"]].append(u["state"])
    for oid, states in by_order.items():
        for a, b in itertools.pairwise(states):
            if a["status"] != "IN PROGRESS" and b["status"] != a["status"]:
                bad.append(f"{oid} log: status {a['status']} -> {b['status']}")
            elif CANCEL_RANK[a["cancel_status"]] > CANCEL_RANK[b["cancel_status"]] or (
                a["cancel_status"] in CANCEL_FINAL and b["cancel_status"] != a["cancel_status"]
            ):
                bad.append(f"{oid} log: cancel {a['cancel_status']} -> {b['cancel_status']}")
            elif _market_back(a, b):
                bad.append(f"{oid} log: exchange {_market(a)} -> {_market(b)}")
            else:
                continue
            break
    return bad


def _market(state: dict[str, Any]) -> tuple[Any, Any]:
    return state["stock_market_order_status"], state["filled_quantity"]


def _market_back(a: dict[str, Any], b: dict[str, Any]) -> bool:
    (s0, f0), (s1, f1) = _market(a), _market(b)
    if s0 is None or (s0, f0) == (s1, f1):
        return False
    if s1 is None:
        return True
    return not exchange_status_moves_forward(str(s0), f0 or 0, str(s1), f1 or 0)
