"""Who leads, as PostgreSQL records it: the listener's and the tracker's leadership is a session
advisory lock (orders_core.leader), so the leaders are the sessions that hold a granted lock on
the role's key in pg_locks, each traced back to the process it belongs to. Read on a connection
of the suite's own, straight to PostgreSQL (past the proxy and any pooler), not from the
processes' leader metrics, which say what a process believes, not what it holds.

`LeaderWatch` samples that through a run for the invariant "one leader per role";
`leader_of` finds the process to kill for a `*_leader_kill` fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from chaos.procs import Service
from chaos.profiles import LISTENER, TRACKER
from chaos.stack import Stack
from exchange_listener.leader import LOCK_KEY as LISTENER_KEY
from orders_core.db import DB_ERRORS
from tracker.reporter import LOCK_KEY as TRACKER_KEY

ROLES = {"listener": LISTENER_KEY, "tracker": TRACKER_KEY}
SAMPLE_EVERY_S = 0.2
# Longer than this between two samples that answered: the database was out of reach, and a
# stretch without a leader is counted again from the next sample.
GAP_S = 1.0
# A standby tries the lock every poll (LISTENER_LEADER_POLL_S, TRACKER_POLL_INTERVAL_S): once the
# lock is free it leads within one poll, two when that try meets the database error that freed
# it; the slack covers connecting and a busy two-core machine.
SLACK_S = 2.0
POLL_S = {
    "listener": float(LISTENER["listener_leader_poll_s"]),
    "tracker": float(TRACKER["tracker_poll_interval_s"]),
}
# A bigint advisory lock is recorded as classid (high half), objid (low half), objsubid 1.
HOLDERS = """
SELECT l.classid::bigint << 32 | l.objid::bigint AS key, l.pid, a.client_port
  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
   AND (l.classid::bigint << 32 | l.objid::bigint) = ANY($1::bigint[])"""


@dataclass(frozen=True)
class Holder:
    role: str
    backend: int  # the session's server process
    owner: str | None  # the service whose session it is, "pgbouncer", or None: not found


def role_services(stack: Stack, role: str) -> list[Service]:
    return stack.listeners if role == "listener" else stack.trackers


async def holders(conn: asyncpg.Connection, stack: Stack) -> list[Holder]:
    """Every session holding a role's lock now, and whose it is."""
    roles = {key: role for role, key in ROLES.items()}
    rows = await conn.fetch(HOLDERS, list(ROLES.values()), timeout=5)
    return [
        Holder(
            roles[r["key"]],
            r["pid"],
            None if r["client_port"] is None else stack.owner(r["client_port"]),
        )
        for r in rows
    ]


async def leader_of(stack: Stack, role: str, wait_s: float) -> Service | None:
    """The process of `role` whose own session holds the role's lock; waits up to `wait_s` for
    one (while a database fault lasts there may be none)."""
    deadline = time.monotonic() + wait_s
    while True:
        with contextlib.suppress(*DB_ERRORS):
            conn = await asyncpg.connect(stack.pg.dsn, timeout=3)
            try:
                found = await holders(conn, stack)
            finally:
                await conn.close()
            for service in role_services(stack, role):
                if any(h.role == role and h.owner == service.name for h in found):
                    return service
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(SAMPLE_EVERY_S)


@dataclass
class RoleRecord:
    """What the samples showed of one role's leadership."""

    role: str
    bound_s: float  # the longest a running role may go without a leader
    holders: dict[str, int] = field(default_factory=dict)  # who held the lock: samples
    handovers: int = 0
    doubled: list[str] = field(default_factory=list)  # samples with two or more holders
    foreign: list[str] = field(default_factory=list)  # first sample of each session holding it
    # that is no process's of the role (a pooled connection of the bouncer, another service)
    orphaned: int = 0  # samples whose holder's process was not found (it had just died)
    longest_leaderless_s: float = 0.0
    longest_leaderless_at: float | None = None  # seconds into the load, when it began
    _leader: str | None = None
    _leaderless_since: float | None = None

    def observe(self, t: float, found: list[Holder], counted: bool, names: set[str]) -> None:
        """One sample at `t` s into the load; `counted`: a process of the role ran and nothing
        kept it from the database, so a stretch without a leader counts."""
        mine = [h for h in found if h.role == self.role]
        if len(mine) > 1:
            self.doubled.append(f"t={t:.1f} {self.role} held by {_who(mine)}")
        for h in mine:
            if h.owner is None:
                self.orphaned += 1
            elif h.owner not in names and not any(f"({h.backend})" in f for f in self.foreign):
                self.foreign.append(f"t={t:.1f} {self.role} held by {h.owner} ({h.backend})")
        leaders = [h.owner for h in mine if h.owner in names]
        for name in leaders:
            self.holders[name] = self.holders.get(name, 0) + 1
        if leaders:
            if self._leader is not None and leaders[0] != self._leader:
                self.handovers += 1
            self._leader = leaders[0]
            self._leaderless_since = None
        elif not counted:
            self._leaderless_since = None
        else:
            if self._leaderless_since is None:
                self._leaderless_since = t
            stretch = t - self._leaderless_since
            if stretch > self.longest_leaderless_s:
                self.longest_leaderless_s = round(stretch, 2)
                self.longest_leaderless_at = round(self._leaderless_since, 1)


def _who(found: list[Holder]) -> str:
    return ", ".join(f"{h.owner or '?'} ({h.backend})" for h in found)


class LeaderWatch:
    """Samples the roles' lock holders every SAMPLE_EVERY_S from `t0` on, until cancelled.
    `impaired()`: whether a fault keeps the services from the database now (its stretches
    without a leader are not held against them)."""

    def __init__(self, stack: Stack, impaired: Callable[[], bool]) -> None:
        self._stack = stack
        self._impaired = impaired
        self.roles = {
            role: RoleRecord(role, round(2 * POLL_S[role] + SLACK_S, 1))
            for role in ROLES
            if role_services(stack, role)
        }
        self.samples = 0
        self.unanswered = 0
        self._last_answer = 0.0

    async def run(self, t0: float) -> None:
        while True:
            try:
                conn = await asyncpg.connect(self._stack.pg.dsn, timeout=3)
            except DB_ERRORS:
                self.unanswered += 1
                await asyncio.sleep(SAMPLE_EVERY_S)
                continue
            try:
                while True:
                    self.observe(time.monotonic() - t0, await holders(conn, self._stack))
                    await asyncio.sleep(SAMPLE_EVERY_S)
            except DB_ERRORS:
                self.unanswered += 1
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()

    def observe(self, t: float, found: list[Holder]) -> None:
        self.samples += 1
        answered_before, self._last_answer = self._last_answer, t
        reachable = t - answered_before <= GAP_S and not self._impaired()
        for record in self.roles.values():
            services = role_services(self._stack, record.role)
            running = any(s.running for s in services)
            names = {s.name for s in services}
            record.observe(t, found, reachable and running, names)
