"""Puts stream events back in `seq` order, drops duplicates, and notices gaps.

Pure logic, no I/O: the consumer offers what arrives and gets back the events that are now
contiguous with what was already taken. A gap that reordering does not close within the
configured time means events were lost: the consumer then resynchronises over REST.
"""

from __future__ import annotations

from orders_core.wire import ExecutionReport


class Sequencer:
    def __init__(self, taken: int) -> None:
        self.taken = taken  # the highest seq handed out, every seq before it too
        self.exchange_seq = taken  # the highest seq the exchange said exists
        self._held: dict[int, ExecutionReport] = {}
        self._gap_since: float | None = None
        self.duplicates = 0

    def offer(self, event: ExecutionReport, now: float) -> list[ExecutionReport]:
        """The events that `event` makes contiguous, in seq order (often just `event`)."""
        if event.seq <= self.taken or event.seq in self._held:
            self.duplicates += 1
            return []
        self._held[event.seq] = event
        self.exchange_seq = max(self.exchange_seq, event.seq)
        ready: list[ExecutionReport] = []
        while (nxt := self._held.pop(self.taken + 1, None)) is not None:
            ready.append(nxt)
            self.taken = nxt.seq
        if ready:
            self._gap_since = None  # progress: the clock of a remaining gap starts again
        self._track_gap(now)
        return ready

    def exchange_at(self, seq: int, now: float) -> None:
        """The exchange announced that events up to `seq` exist (hello, heartbeat)."""
        self.exchange_seq = max(self.exchange_seq, seq)
        self._track_gap(now)

    def gap_age(self, now: float) -> float:
        """How long, without progress, events known to exist have been missing; 0 if none are."""
        return 0.0 if self._gap_since is None else now - self._gap_since

    @property
    def held(self) -> int:
        return len(self._held)

    def _track_gap(self, now: float) -> None:
        if self.exchange_seq <= self.taken:
            self._gap_since = None
        elif self._gap_since is None:
            self._gap_since = now
