"""Profiles: how much load, which faults, and the services' settings for one run.

`ci`, `long` and `bouncer` run today's code and expect every invariant to PASS. The targeted
profiles are for planted bugs (chaos.planted): each sets up the faults under which its bug shows,
and names the invariant that must then FAIL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# Every fault kind of chaos.faults that any stack can take (`ci` and `long` run them all).
ALL_FAULTS = (
    "api_kill",
    "api_term",
    "listener_kill",
    "listener_term",
    "venue_slow",
    "venue_slow_answers",
    "venue_accept_timeouts",
    "venue_outage",
    "db_terminate",
    "db_restart",
    "db_stall",
    "stream_faults",
    "stream_cut",
    "stream_stall",
)
# And those of a stack with a pooler and standbys (`bouncer`): PgBouncer stopped and started again
# on its port, and the process that holds a role's lock (pg_locks) killed with SIGKILL.
POOLER_FAULTS = ("bouncer_restart", "listener_leader_kill", "tracker_leader_kill")

# The placement rule at test speed. orders_api/settings.py checks that the lease outlives what
# it covers (PLACEMENT_TIMEOUT_S + DB_ACQUIRE_TIMEOUT_S + DB_COMMAND_TIMEOUT_S).
API: Mapping[str, Any] = MappingProxyType(
    {
        "placement_timeout_s": 0.8,
        "retry_base_s": 0.1,
        "retry_cap_s": 1.0,
        "max_retries": 5,
        "clock_skew_s": 0.2,
        "lease_s": 3.0,
        "sweep_interval_s": 0.1,
        "retry_concurrency": 200,
        "exchange_max_connections": 500,
        "db_pool_min_size": 2,
        "db_pool_max_size": 10,
        "db_command_timeout_s": 1.5,
        "db_acquire_timeout_s": 0.5,
        "log_level": "INFO",
        # Update streams (chaos.streams): a heartbeat often enough that a client notices a
        # silent connection within seconds.
        "sse_heartbeat_s": 2.0,
    }
)
LISTENER: Mapping[str, Any] = MappingProxyType(
    {
        "listener_dead_after_s": 3.0,
        "listener_gap_timeout_s": 1.0,
        "listener_reconnect_min_s": 0.2,
        "listener_reconnect_max_s": 2.0,
        "listener_leader_poll_s": 0.5,
    }
)
TRACKER: Mapping[str, Any] = MappingProxyType(
    {"tracker_poll_interval_s": 1.0, "tracker_stuck_after_s": 60.0}
)
# The exchange between faults: fast, a little unreliable, its lifecycle short enough to settle.
SIM: Mapping[str, Any] = MappingProxyType(
    {
        "failure_rate": 0.1,
        "reject_rate": 0.01,
        "latency_ms": 100,
        "lookup_latency_ms": 20,
        "timeout_rate": 0.0,
        "accept_duplicate_ids": False,
        "outage": False,
        "fill_delay_ms": 500,
        "limit_expiry_ms": 1500,
        "heartbeat_ms": 500,
        "drop_rate": 0.0,
        "lose_rate": 0.0,
        "duplicate_rate": 0.0,
        "reorder_window": 0,
    }
)

# The full profiles (ci, long, bouncer) cancel this share of their orders and follow the account's
# updates with this many clients (issue 12); the targeted ones neither, unless they say so.
CANCEL_SHARE = 0.12
FOLLOWERS = 2


@dataclass(frozen=True)
class Profile:
    name: str
    about: str
    orders: int  # how many orders, unless --minutes (then rate * duration)
    rate: float  # orders started per second
    minutes: float | None = None  # run for this long instead of `orders`
    apis: int = 2
    listeners: int = 2
    trackers: int = 1
    bouncer: bool = False  # the services' statements through a real PgBouncer (chaos.bouncer)
    faults: tuple[str, ...] = ALL_FAULTS  # each at least once
    fault_every_s: float = 12.0  # then one more fault about this often
    # db_stall: 1 freezes every connection; less, each statement freezes its connection with
    # that probability, for a little longer than the lease (a flaky network): some writes land
    # late while others go through.
    stall_shares: tuple[float, ...] = (0.05, 0.1, 0.2, 1.0)
    api: Mapping[str, Any] = field(default_factory=lambda: API)
    sim: Mapping[str, Any] = field(default_factory=lambda: SIM)
    answer_delay_s: float = 0.0  # every answer of the exchange reaches the APIs this much later
    key_share: float = 0.85  # orders sent with an Idempotency-Key
    twin_share: float = 0.1  # keyed orders sent twice at once
    cancel_share: float = 0.0  # orders cancelled (DELETE /orders/{id}; chaos.workload)
    followers: int = 0  # clients following GET /orders/updates all along (chaos.streams)
    quiesce_s: float = 150.0  # longest wait for every order to settle once healed
    expect_fail: str | None = None  # a targeted profile: the invariant its planted bug breaks

    def with_api(self, **overrides: Any) -> dict[str, Any]:
        return dict(self.api) | overrides


PROFILES = {
    p.name: p
    for p in (
        Profile(
            "ci",
            "CI: fixed seed, every fault at least once, about 3 minutes of load",
            orders=2200,
            rate=14.0,
            fault_every_s=6.0,
            cancel_share=CANCEL_SHARE,
            followers=FOLLOWERS,
        ),
        Profile(
            "long",
            "make chaos: random seed, 30 minutes of load, faults all along",
            orders=0,
            rate=12.0,
            minutes=30.0,
            fault_every_s=15.0,
            quiesce_s=300.0,
            cancel_share=CANCEL_SHARE,
            followers=FOLLOWERS,
        ),
        Profile(
            "bouncer",
            "CI: 3 APIs, 2 listeners and 2 trackers through a real PgBouncer in transaction "
            "mode; leaders killed, the bouncer restarted, every other fault too; ~3 minutes",
            orders=2000,
            rate=12.0,
            apis=3,
            trackers=2,
            bouncer=True,
            faults=ALL_FAULTS + POOLER_FAULTS,
            fault_every_s=6.0,
            cancel_share=CANCEL_SHARE,
            followers=FOLLOWERS,
        ),
        Profile(
            "double-placement",
            "timeouts after accept at a venue that accepts reused ids (for --planted no-lookup)",
            orders=150,
            rate=10.0,
            faults=(),
            sim=MappingProxyType(
                dict(SIM) | {"timeout_rate": 0.3, "accept_duplicate_ids": True, "failure_rate": 0}
            ),
            expect_fail="none doubled",
            quiesce_s=60.0,
        ),
        Profile(
            "stale-writer",
            "one instance, a venue slower than the timeout (nothing books, every order retries), "
            "statements stalled past the lease (for --planted fencing-by-instance)",
            orders=450,
            rate=15.0,
            apis=1,
            faults=("db_stall",),
            fault_every_s=3.0,
            stall_shares=(0.08,),
            # Room in the pool beside the frozen connections, so that the instance's own
            # sweeper re-claims while the stale writes are held; more attempts, more chances.
            api=MappingProxyType(dict(API) | {"db_pool_max_size": 40, "max_retries": 8}),
            sim=MappingProxyType(
                dict(SIM) | {"failure_rate": 0.2, "latency_ms": 1000, "lookup_latency_ms": 0}
            ),
            expect_fail="no two live claims",
            quiesce_s=90.0,
        ),
        Profile(
            "early-lookup",
            "clean stops mid-attempt, slow order entry, lookups that read at once and answer "
            "late (for --planted lookup-at-arrival)",
            orders=500,
            rate=20.0,
            faults=("api_term",),
            fault_every_s=2.0,
            answer_delay_s=0.75,
            sim=MappingProxyType(
                dict(SIM)
                | {
                    "failure_rate": 0.5,
                    "latency_ms": 700,
                    "lookup_latency_ms": 0,
                    "accept_duplicate_ids": True,
                }
            ),
            expect_fail="none doubled",
            quiesce_s=90.0,
        ),
        Profile(
            "pooled-leaders",
            "2 listeners and 2 trackers behind a PgBouncer, leaders killed (for --planted "
            "leadership-through-pooler)",
            orders=200,
            rate=10.0,
            apis=1,
            trackers=2,
            bouncer=True,
            faults=("listener_leader_kill", "tracker_leader_kill"),
            fault_every_s=4.0,
            expect_fail="one leader per role",
            quiesce_s=60.0,
        ),
    )
}
