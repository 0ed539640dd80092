"""Faults on a schedule drawn from the seed: what each kind does, and when.

Every kind of the profile happens at least once, then more are drawn until the load ends. A
fault holds its resource (an instance, the database, a knob group of the exchange, a proxy) while
it lasts, so two faults never fight over one; faults on different resources overlap freely, but
one API instance always runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from chaos.leaders import leader_of
from chaos.profiles import LISTENER, Profile
from chaos.stack import Stack

LEADER_WAIT_S = 15.0  # longest a leader kill waits for a leader to kill


@dataclass
class Fault:
    kind: str
    at_s: float  # planned start, seconds into the load
    duration_s: float
    target: int
    params: dict[str, Any] = field(default_factory=dict)
    started_s: float | None = None
    ended_s: float | None = None
    note: str = ""
    error: str | None = None

    @property
    def targeted(self) -> bool:
        """Whether it strikes instance `target` (a leader kill finds its own as it strikes)."""
        leader_kill = self.kind.endswith("_leader_kill")
        return self.kind.startswith(("api_", "listener_")) and not leader_kill

    @property
    def resource(self) -> str:
        if self.targeted:
            return f"{self.kind.split('_')[0]}{self.target}"
        if self.kind.startswith("db_"):
            return "db"
        return self.kind

    def describe(self) -> str:
        target = f" #{self.target}" if self.targeted else ""
        params = " ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        return f"{self.kind}{target} {params}".rstrip()


def _short(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _draw(kind: str, profile: Profile, rng: random.Random) -> tuple[float, int, dict[str, Any]]:
    """Duration, target instance and parameters of one fault."""
    timeout = float(profile.api["placement_timeout_s"])
    lease = float(profile.api["lease_s"])
    dead_after = float(LISTENER["listener_dead_after_s"])
    target = rng.randrange(profile.apis if kind.startswith("api_") else profile.listeners)
    duration = rng.uniform(2.0, 6.0)
    params: dict[str, Any] = {}
    if kind == "venue_slow":
        params = {"latency_ms": int(timeout * 1000 * rng.uniform(0.8, 2.5))}
        params["slow_lookups"] = rng.random() < 0.5
        duration = rng.uniform(4.0, 10.0)
    elif kind == "venue_slow_answers":
        params = {"delay_s": timeout * rng.uniform(0.3, 0.9)}
        duration = rng.uniform(4.0, 10.0)
    elif kind == "venue_accept_timeouts":
        params = {"timeout_rate": rng.uniform(0.2, 0.6)}
        duration = rng.uniform(4.0, 10.0)
    elif kind == "venue_outage":
        duration = rng.uniform(3.0, 12.0)
    elif kind == "db_terminate":
        params = {"times": rng.randint(1, 3)}
    elif kind == "db_restart":
        params = {"how": rng.choice(["kill -9", "immediate"])}
        duration = rng.uniform(1.0, 4.0)
    elif kind == "db_stall":
        params = {"share": rng.choice(profile.stall_shares), "hold_s": lease + 0.3}
        duration = lease * rng.uniform(1.1, 2.0)
    elif kind == "stream_faults":
        params = {
            "drop_rate": rng.uniform(0.005, 0.03),
            "lose_rate": rng.uniform(0.005, 0.03),
            "duplicate_rate": rng.uniform(0.05, 0.2),
            "reorder_window": rng.randint(2, 8),
        }
        duration = rng.uniform(5.0, 12.0)
    elif kind == "stream_cut":
        params = {"times": rng.randint(1, 3)}
    elif kind == "stream_stall":
        duration = dead_after * rng.uniform(1.2, 2.0)
    elif kind == "bouncer_restart":
        params = {"how": rng.choice(["SIGTERM", "kill -9"])}
        duration = rng.uniform(0.5, 3.0)
    return duration, target, params


def plan(profile: Profile, load_s: float, rng: random.Random) -> list[Fault]:
    """Every kind of the profile once, in a random order spread over the load, then more drawn
    at random about every `fault_every_s`. Nothing starts in the first or last few seconds."""
    if not profile.faults:
        return []
    start, end = min(5.0, load_s * 0.1), max(load_s - 12.0, load_s * 0.6)
    required = list(profile.faults)
    rng.shuffle(required)
    extra = max(0, int((end - start) / profile.fault_every_s) - len(required))
    kinds = required + [rng.choice(profile.faults) for _ in range(extra)]
    slot = (end - start) / len(kinds)
    faults = []
    for i, kind in enumerate(kinds):
        duration, target, params = _draw(kind, profile, rng)
        at = start + slot * i + rng.uniform(0, slot * 0.8)
        faults.append(Fault(kind, round(at, 2), round(duration, 2), target, params))
    return sorted(faults, key=lambda f: f.at_s)


class Injector:
    """Carries out a plan against a running stack."""

    def __init__(self, stack: Stack, faults: list[Fault], seed: int) -> None:
        self._stack = stack
        self.faults = faults
        self._seed = seed
        self._locks: dict[str, asyncio.Lock] = {}
        # At most all but one API instance down at once: clients always have somewhere to go.
        self._apis_down = asyncio.Semaphore(max(1, len(stack.apis) - 1))
        self.active: set[str] = set()
        self._t0 = 0.0

    async def run(self, t0: float) -> None:
        self._t0 = t0
        await asyncio.gather(*(self._one(i, f) for i, f in enumerate(self.faults)))

    def _now(self) -> float:
        return time.monotonic() - self._t0

    async def _one(self, index: int, fault: Fault) -> None:
        await asyncio.sleep(max(0.0, fault.at_s - self._now()))
        lock = self._locks.setdefault(fault.resource, asyncio.Lock())
        apis = self._apis_down if fault.kind.startswith("api_") else contextlib.nullcontext()
        async with apis, lock:
            fault.started_s = round(self._now(), 1)
            self.active.add(fault.kind)
            rng = random.Random(f"{self._seed}:{index}")
            try:
                await self._apply(fault, rng)
            except Exception as exc:  # a fault that could not be applied is reported, not fatal
                fault.error = repr(exc)[:200]
            finally:
                self.active.discard(fault.kind)
                fault.ended_s = round(self._now(), 1)

    async def _apply(self, fault: Fault, rng: random.Random) -> None:
        s, p, d = self._stack, fault.params, fault.duration_s
        knobs = s.sim_knobs()
        if fault.kind in ("api_kill", "api_term", "listener_kill", "listener_term"):
            group = s.apis if fault.kind.startswith("api") else s.listeners
            service = group[fault.target]
            await (service.kill() if fault.kind.endswith("kill") else service.terminate())
            await asyncio.sleep(d)
            await service.start()
        elif fault.kind == "venue_slow":
            slow = {"latency_ms": p["latency_ms"]}
            if p["slow_lookups"]:
                slow["lookup_latency_ms"] = p["latency_ms"]
            await self._knobs(slow, d, knobs)
        elif fault.kind == "venue_slow_answers":
            assert s.venue_link is not None
            s.venue_link.answer_delay_s = p["delay_s"]
            await asyncio.sleep(d)
            s.venue_link.answer_delay_s = s.profile.answer_delay_s
        elif fault.kind == "venue_accept_timeouts":
            await self._knobs(
                {"timeout_rate": p["timeout_rate"], "accept_duplicate_ids": True}, d, knobs
            )
        elif fault.kind == "venue_outage":
            await self._knobs({"outage": True}, d, knobs)
        elif fault.kind == "db_terminate":
            ended = [await _spaced(s.pg.terminate_backends, d, i) for i in range(p["times"])]
            fault.note = f"backends ended: {ended}"
        elif fault.kind == "db_restart":
            await (s.pg.crash() if p["how"] == "kill -9" else s.pg.shutdown_immediate())
            await asyncio.sleep(d)
            await s.pg.start()
        elif fault.kind == "db_stall":
            s.db_proxy.stall(d, p["share"], rng, p["hold_s"])
            await asyncio.sleep(d)
            if p["share"] < 1:
                fault.note = f"connections stalled: {s.db_proxy.stalled}"
        elif fault.kind == "stream_faults":
            await self._knobs(dict(p), d, knobs)
        elif fault.kind == "stream_cut":
            assert s.stream_link is not None
            cut = [await _spaced(_sync(s.stream_link.cut), d, i) for i in range(p["times"])]
            fault.note = f"connections cut: {cut}"
        elif fault.kind == "stream_stall":
            assert s.stream_link is not None
            s.stream_link.stall(d, 1.0, rng)
            await asyncio.sleep(d)
        elif fault.kind == "bouncer_restart":
            # SIGTERM is PgBouncer's immediate shutdown; kill -9 a crash. Back on its port.
            assert s.bouncer is not None
            s.bouncer_held = True
            try:
                await s.bouncer.halt(signal.SIGKILL if p["how"] == "kill -9" else signal.SIGTERM)
                await asyncio.sleep(d)
                if not s.bouncer.running:  # its supervisor may have, if it was at it
                    await s.bouncer.start()
            finally:
                s.bouncer_held = False
        elif fault.kind in ("listener_leader_kill", "tracker_leader_kill"):
            fault.note = await self._kill_leader(fault.kind.split("_")[0], d)
        else:
            raise ValueError(f"unknown fault {fault.kind}")

    async def _kill_leader(self, role: str, down_s: float) -> str:
        """kill -9 of the process whose session holds the role's lock, started again after
        `down_s`. Held like that instance's own faults (listener_kill), so that none restarts it
        meanwhile; one that stopped leading while it waited for them is not the one to kill."""
        for _ in range(3):
            leader = await leader_of(self._stack, role, LEADER_WAIT_S)
            if leader is None:
                raise RuntimeError(f"no {role} led for {LEADER_WAIT_S:.0f}s")
            async with self._locks.setdefault(leader.name, asyncio.Lock()):
                if await leader_of(self._stack, role, 0) is not leader:
                    continue
                await leader.kill()
                await asyncio.sleep(down_s)
                await leader.start()
                return f"killed {leader.name}"
        raise RuntimeError(f"the {role} leader kept changing")

    async def _knobs(
        self, changes: dict[str, Any], duration_s: float, base: dict[str, Any]
    ) -> None:
        await self._stack.configure_sim(**changes)
        try:
            await asyncio.sleep(duration_s)
        finally:
            await self._stack.configure_sim(**{k: base.get(k) for k in changes})


async def _spaced(action: Callable[[], Awaitable[int]], window_s: float, i: int) -> int:
    """Run `action` the i-th time, spread over the window (the first at once)."""
    if i:
        await asyncio.sleep(window_s / 3)
    return await action()


def _sync(action: Callable[[], int]) -> Callable[[], Awaitable[int]]:
    async def run() -> int:
        return action()

    return run
