"""The one-screen report at the end, and the progress line while the run goes on."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable

from chaos.evidence import Evidence
from chaos.faults import Fault
from chaos.invariants import Check
from chaos.streams import summary

EXAMPLES = 5
FAULT_LINES = 24  # more faults than this: one line per kind


def render(
    header: str, ev: Evidence, faults: list[Fault], checks: list[Check], footer: list[str]
) -> str:
    lines = [header, ""]
    answers = Counter(str(s.status) if s.status != 201 else f"201 {s.placement}" for s in ev.sent)
    orders = len({s.order for s in ev.sent})
    lines.append(
        f"load     {orders} orders, {len(ev.sent)} requests: "
        + ", ".join(f"{k.replace('None', 'no answer')} {v}" for k, v in sorted(answers.items()))
    )
    stored = Counter(row["status"] for row in ev.orders.values())
    lines.append(
        f"stored   {len(ev.orders)} orders: "
        + ", ".join(f"{k} {v}" for k, v in sorted(stored.items()))
        + f"; exchange holds {len(ev.ledger)}, received {len(ev.placements)} placements"
    )
    if ev.cancels:
        answers = Counter("no answer" if c.status is None else str(c.status) for c in ev.cancels)
        asked = {c.order_id for c in ev.cancels}
        ended = Counter(
            str(ev.orders[o]["cancel_status"] or "not asked") for o in asked if o in ev.orders
        )
        lines.append(
            f"cancels  {len(asked)} orders, {len(ev.cancels)} DELETEs: "
            + ", ".join(f"{k} {v}" for k, v in sorted(answers.items()))
            + "; stored "
            + ", ".join(f"{k} {v}" for k, v in sorted(ended.items()))
        )
    if ev.followers:
        lines.append(f"streams  log {len(ev.updates)} updates; {summary(ev.followers)}")
    lines.append(f"faults   {len(faults)} (t = seconds into the load):")
    lines += _faults(faults) if len(faults) <= FAULT_LINES else _fault_kinds(faults)
    lines.append("invariants:")
    for c in checks:
        verdict = "PASS" if c.passed else "FAIL"
        note = f" ({c.note})" if c.note else ""
        lines.append(f"  {verdict}  {c.name}{note}")
        if not c.passed:
            more = f" ... {len(c.bad) - EXAMPLES} more" if len(c.bad) > EXAMPLES else ""
            lines.append(
                f"        {len(c.bad)} counterexamples: " + "; ".join(c.bad[:EXAMPLES]) + more
            )
    lines += ["", *footer]
    return "\n".join(lines)


def _faults(faults: list[Fault]) -> list[str]:
    lines = []
    for f in faults:
        when = "not run" if f.started_s is None else f"{f.started_s:6.1f}-{f.ended_s or 0:6.1f}"
        extra = f" [{f.note}]" if f.note else ""
        extra += f" ERROR {f.error}" if f.error else ""
        lines.append(f"  {when}  {f.describe()}{extra}")
    return lines


def _fault_kinds(faults: list[Fault]) -> list[str]:
    """One line per kind: how many, when they started (--json has every detail)."""
    lines = []
    for kind in sorted({f.kind for f in faults}):
        these = [f for f in faults if f.kind == kind]
        starts = [f"{f.started_s:.0f}" for f in these if f.started_s is not None]
        shown = ", ".join(starts[:12]) + (", ..." if len(starts) > 12 else "")
        errors = sum(1 for f in these if f.error)
        extra = f"; {errors} could not be applied" if errors else ""
        lines.append(f"  {kind:<22} x{len(these):<3} at {shown}{extra}")
    return lines


class Progress:
    """A line on stderr every few seconds (rewritten in place on a terminal)."""

    def __init__(self, describe: Callable[[], str], every_s: float = 5.0) -> None:
        self._describe = describe
        self._every_s = every_s if not sys.stderr.isatty() else 0.5
        self._tty = sys.stderr.isatty()
        self._t0 = time.monotonic()

    async def run(self) -> None:
        while True:
            self.show(self._describe())
            await asyncio.sleep(self._every_s)

    def show(self, text: str) -> None:
        line = f"[{time.monotonic() - self._t0:6.0f}s] {text}"
        if self._tty:
            sys.stderr.write("\r\x1b[2K" + line[:160])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self._tty:
            sys.stderr.write("\n")


def bar(done: int, total: int, width: int = 24) -> str:
    filled = width if total <= 0 else min(width, width * done // total)
    percent = 100 if total <= 0 else min(100, 100 * done // total)
    return f"[{'#' * filled}{'.' * (width - filled)}] {percent:3d}%"
