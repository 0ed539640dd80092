"""One chaos run: bring the system up, drive the load while faults strike, heal, wait for the
orders to settle, collect the evidence, check the invariants, report, and tear everything down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from chaos.evidence import Watcher, collect, quiesce
from chaos.faults import Injector, plan
from chaos.invariants import check
from chaos.leaders import LeaderWatch
from chaos.profiles import Profile
from chaos.report import Progress, bar, render
from chaos.stack import Stack
from chaos.streams import Follower
from chaos.workload import Workload, cancel_plans, specs


@dataclass(frozen=True)
class RunConfig:
    profile: Profile
    seed: int
    orders: int
    planted: str | None = None
    report_path: Path | None = None
    json_path: Path | None = None
    keep: bool = False

    @property
    def load_s(self) -> float:
        return self.orders / self.profile.rate

    def replay(self) -> str:
        command = f"python -m chaos --profile {self.profile.name} --seed {self.seed}"
        command += f" --orders {self.orders}"
        return command + (f" --planted {self.planted}" if self.planted else "")


async def run(cfg: RunConfig) -> int:
    """0 when every invariant holds, 1 when one fails."""
    run_dir = Path(tempfile.mkdtemp(prefix="chaos-"))
    # PostgreSQL may run as another user: it must get through (nothing secret lies in here).
    os.chmod(run_dir, 0o755)  # noqa: S103
    print(
        f"chaos: profile {cfg.profile.name}, seed {cfg.seed}, {cfg.orders} orders over "
        f"{cfg.load_s:.0f}s; replay: {cfg.replay()}",
        flush=True,
    )
    t0 = time.monotonic()
    try:
        return await _run(cfg, run_dir, t0)
    finally:
        if cfg.keep:
            print(f"chaos: logs and data kept in {run_dir}", file=sys.stderr)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


async def _run(cfg: RunConfig, run_dir: Path, t0: float) -> int:
    profile = cfg.profile
    phase = ["starting"]
    async with Stack(profile, cfg.seed, run_dir, cfg.planted) as stack:
        started_s = time.monotonic() - t0
        urls = [api.url for api in stack.apis]
        load = Workload(
            urls,
            specs(cfg.seed, cfg.orders, profile.apis, profile.key_share, profile.twin_share),
            profile.rate,
            stack.api_key,
            cancel_plans(cfg.seed, cfg.orders, profile.apis, profile.cancel_share),
        )
        # Live-update clients, from before the first order until the evidence is collected.
        followers = [
            Follower(f"sse{i}", urls, stack.api_key, cfg.seed) for i in range(profile.followers)
        ]
        injector = Injector(stack, plan(profile, cfg.load_s, random.Random(cfg.seed)), cfg.seed)
        watcher = Watcher(stack.pg.dsn)
        leaders = LeaderWatch(
            stack,
            lambda: stack.db_proxy.holding or any(k.startswith("db_") for k in injector.active),
        )

        def describe() -> str:
            faults_done = sum(1 for f in injector.faults if f.ended_s is not None)
            db = " ".join(f"{k} {v}" for k, v in sorted(watcher.counts.items()))
            return (
                f"{phase[0]} {bar(load.started, cfg.orders)} answered {load.finished}/"
                f"{cfg.orders} faults {faults_done}/{len(injector.faults)} "
                f"{','.join(sorted(injector.active)) or '-'} | db {db}"
            )

        progress = Progress(describe)
        load_t0 = time.monotonic()
        background = [
            asyncio.create_task(watcher.run()),
            asyncio.create_task(progress.run()),
            asyncio.create_task(leaders.run(load_t0)),
            *(asyncio.create_task(f.run()) for f in followers),
        ]
        try:
            phase[0] = "load"
            await asyncio.gather(load.run(), injector.run(load_t0))
            load_s = time.monotonic() - load_t0
            phase[0] = "healing"
            healed = await stack.heal()
            phase[0] = "settling"
            quiet = await quiesce(stack, profile.quiesce_s)
            phase[0] = "checking"
            evidence = await collect(stack, load.sent, watcher, leaders, load.cancels, followers)
            bouncer_ended = [f"t={at - load_t0:.1f} {said}" for at, said in stack.bouncer_ended]
            for what in healed:  # every fault restarts what it stopped: this died by itself
                evidence.crashes[f"{what.removesuffix(' started')}: found dead when healing"] = 1
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            progress.done()
    if cfg.keep:  # everything the invariants were checked against, for a closer look
        (run_dir / "evidence.json").write_text(json.dumps(asdict(evidence), default=str))
    checks = check(evidence, quiet)
    failed = [c for c in checks if not c.passed]
    wall_s = time.monotonic() - t0
    header = (
        f"chaos report  profile {profile.name}  seed {cfg.seed}  planted "
        f"{cfg.planted or '-'}  wall {wall_s:.0f}s (start {started_s:.0f}s, load "
        f"{load_s:.0f}s, settle {quiet.waited_s:.0f}s)"
    )
    verdict = "PASS" if not failed else f"FAIL ({len(failed)} of {len(checks)} invariants)"
    footer = [f"healed: {', '.join(healed) or 'nothing to restart'}"]
    if bouncer_ended:  # PgBouncer's own failing, not ours (chaos.stack): shown, not judged
        footer.append(f"pgbouncer ended by itself, restarted: {'; '.join(bouncer_ended)}")
    footer += [f"result: {verdict}", f"replay: {cfg.replay()}"]
    report = render(header, evidence, injector.faults, checks, footer)
    print(report, flush=True)
    if cfg.report_path is not None:
        path = cfg.report_path
        if path.is_dir():  # a folder: a file named after the run
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            path = path / f"{profile.name}-{stamp}-seed{cfg.seed}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report + "\n")
        print(f"chaos: report written to {path}", file=sys.stderr)
    if cfg.json_path is not None:
        result = {
            "profile": profile.name,
            "seed": cfg.seed,
            "orders": cfg.orders,
            "planted": cfg.planted,
            "passed": not failed,
            "wall_s": round(wall_s, 1),
            "invariants": {
                c.name: {"passed": c.passed, "bad": c.bad, "note": c.note} for c in checks
            },
            "faults": [asdict(f) for f in injector.faults],
            "no_answer": Counter(s.error.split("(")[0] for s in load.sent if s.error),
            "cancels": Counter(str(c.status) for c in load.cancels),
            "streams": {
                r.name: {"events": len(r.events), "connections": r.connections}
                for r in evidence.followers
            },
            "bouncer_ended": bouncer_ended,
        }
        cfg.json_path.write_text(json.dumps(result, indent=1, default=str))
    return 0 if not failed else 1
